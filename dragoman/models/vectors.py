"""Pretrained word vectors (word2vec, GloVe) copied into an embedding before training.

The file is read with gensim's KeyedVectors (the optional extra `pip install dragoman[vectors]`).
Each vocabulary entry is looked up as the piece itself, then without SentencePiece's word-initial
"▁", then lowercased; the specials (ids 0-3) are never looked up. Rows not found keep their
initialisation, so a subword vocabulary is typically only partly covered: the log says how much.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch
from torch import nn

from dragoman.config import VectorsConfig
from dragoman.data.tokenizers import SPECIALS
from dragoman.errors import DragomanError

log = logging.getLogger("dragoman")

_FORMATS = {  # format → keyword arguments of KeyedVectors.load_word2vec_format
    "word2vec": {"binary": False},
    "word2vec_binary": {"binary": True},
    "glove": {"binary": False, "no_header": True},
}


@dataclass
class Coverage:
    found: int  # vocabulary entries that got a pretrained vector
    total: int  # vocabulary entries considered (specials excluded)

    def __str__(self) -> str:
        share = 100.0 * self.found / self.total if self.total else 0.0
        return f"{self.found} of {self.total} vocabulary entries ({share:.1f}%)"


def load_vectors(
    embedding: nn.Embedding, pieces: list[str], spec: VectorsConfig, name: str = "model.src_vectors"
) -> Coverage:
    """Copy the pretrained vector of every vocabulary entry found in `spec.path` into its row.

    `pieces[i]` is the token of id i (`tokenizer.pieces(range(tokenizer.vocab_size))`). Rows not
    found, and the specials (PAD stays zero), keep their initialisation. An embedding with a
    `scale` attribute (TokenEmbedding multiplies by it in forward) stores vector / scale, so that
    it outputs the pretrained vector itself. With `spec.freeze` the weight stops requiring grad;
    if it is shared (an output layer tied to it), that layer is frozen too.
    """
    if len(pieces) != embedding.num_embeddings:
        raise ValueError(f"{len(pieces)} pieces for an embedding of {embedding.num_embeddings} rows")
    vectors = _read(spec, name)
    if vectors.vector_size != embedding.embedding_dim:
        problem = (
            f"{name}: the vectors have {vectors.vector_size} dimensions but the embedding has "
            f"{embedding.embedding_dim} (model.d_model)"
        )
        fix = f"set model.d_model: {vectors.vector_size} or use other vectors"
        raise DragomanError(problem, file=spec.path, fix=fix)

    rows, indices = [], []
    for row, piece in enumerate(pieces[len(SPECIALS) :], start=len(SPECIALS)):
        index = _lookup(vectors.key_to_index, piece)
        if index is not None:
            rows.append(row)
            indices.append(index)
    scale = float(getattr(embedding, "scale", 1.0))
    weight = embedding.weight
    with torch.no_grad():
        found = torch.as_tensor(vectors.vectors[indices], dtype=weight.dtype, device=weight.device)
        weight[torch.tensor(rows, dtype=torch.long, device=weight.device)] = found / scale
    if spec.freeze:
        weight.requires_grad_(False)

    coverage = Coverage(found=len(rows), total=len(pieces) - len(SPECIALS))
    log.info("%s: %s covers %s", name, spec.path, coverage)
    return coverage


def _lookup(key_to_index: dict[str, int], piece: str) -> int | None:
    """The file's index for `piece`: exact, then without a word-initial "▁", then lowercased."""
    word = piece[1:] if piece.startswith("▁") and len(piece) > 1 else piece
    for key in (piece, word, word.lower()):
        index = key_to_index.get(key)
        if index is not None:
            return index
    return None


def _read(spec: VectorsConfig, name: str):  # -> gensim KeyedVectors
    try:
        from gensim.models import KeyedVectors
    except ImportError:
        fix = "pip install gensim (or pip install dragoman[vectors])"
        raise DragomanError(f"{name} needs gensim, which is not installed", fix=fix) from None
    fix = f"check {name}.path and {name}.format (word2vec, word2vec_binary or glove)"
    try:
        return KeyedVectors.load_word2vec_format(spec.path, **_FORMATS[spec.format])
    except FileNotFoundError:
        raise DragomanError(f"{name}: file not found", file=spec.path, fix=fix) from None
    except OSError as error:
        problem = f"{name}: cannot read ({error.strerror or error})"
        raise DragomanError(problem, file=spec.path, fix=fix) from None
    except (ValueError, EOFError, TypeError, IndexError, KeyError) as error:
        problem = f"{name}: not a {spec.format} vectors file ({error})"
        raise DragomanError(problem, file=spec.path, fix=fix) from None
