"""Sentence embeddings and semantic search with the encoder of any trained model.

    from dragoman.embed import Embedder, SemanticSearch
    embedder = Embedder.load("runs/transformer")
    vectors = embedder.embed(["Open the file", "Close it"], normalize=True)   # (2, D) float32
    search = SemanticSearch.build(embedder, corpus_lines)
    for hit in search.search(["open a file"], k=3)[0]:
        print(hit.rank, hit.score, hit.line, hit.text)

A sentence's vector is its encoder states pooled (`models.layers.pool`): the mean over its real
tokens, so padding never counts and a sentence gets the same vector alone or in a batch, or the
first token's state. The config's `model.pooling` is the default. Inputs longer than
`data.max_len` tokens are truncated, like for translation.

An empty line (no tokens) gets the zero vector, also with `normalize=True`. Search never returns
an empty corpus line, and an empty query has no hits.

Search is cosine similarity: unit vectors, query chunk × corpus chunk matrix products, torch.topk
per corpus chunk merged into a running top k, so memory stays bounded however big the corpus is.

An index cache, `FILE.npy` with its sidecar `FILE.npy.json`, keeps the corpus vectors between runs
(numpy format, no pickle). The sidecar records the corpus (path, size, mtime, SHA-256), the model
(directory, SHA-256 of its weights), the pooling and max_len, and the SHA-256 of FILE.npy. The
SHA-256s decide: while they and the settings match, the vectors are loaded; otherwise the index is
stale and is rebuilt (with a warning), or refused when `rebuild=False`. A FILE.npy without a
readable sidecar was not written here and is never overwritten.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from dragoman.config import Config, load_config
from dragoman.data.batches import pad
from dragoman.data.text import read_lines
from dragoman.data.tokenizers import Tokenizer
from dragoman.errors import DragomanError
from dragoman.io import atomic_write_bytes, atomic_write_text
from dragoman.models.layers import pool
from dragoman.translator import Translator, load_model, truncate

log = logging.getLogger("dragoman")

POOLINGS = ("mean", "first")
INDEX_FORMAT = "dragoman-embedding-index/1"


def _check_encoder(config: Config, where: Path | None = None) -> None:
    if config.task == "lm":
        raise DragomanError(
            "this is a decoder-only language model (task: lm); sentence embeddings pool an "
            "encoder's states and it has no encoder",
            file=where,
            fix="use a model with an encoder (task: seq2seq or classify)",
        )


def unit(vectors: np.ndarray) -> np.ndarray:
    """Rows scaled to length 1; zero rows (empty lines) stay zero."""
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return (vectors / np.maximum(norms, 1e-12)).astype(np.float32)


class Embedder:
    """One vector per text: the model's encoder states, pooled. Puts the model in eval mode."""

    def __init__(self, model: nn.Module, config: Config, src_tok: Tokenizer) -> None:
        _check_encoder(config)
        self.model, self.config, self.src_tok = model.eval(), config, src_tok
        self.device = next(model.parameters()).device
        self.model_dir: Path | None = None  # set by `load`; recorded in index sidecars
        self._weights_sha256: str | None = None

    @classmethod
    def load(cls, model_dir: str | Path, checkpoint: str = "best", device: str = "cpu") -> Embedder:
        model_dir = Path(model_dir)
        config_file = model_dir / "config.yaml"
        if config_file.is_file():  # refuse a language model before building it
            _check_encoder(load_config(config_file), config_file)
        model, config, src_tok, _ = load_model(model_dir, checkpoint, device)
        embedder = cls(model, config, src_tok)
        embedder.model_dir = model_dir
        return embedder

    @property
    def dim(self) -> int:
        """D, the width of the encoder's states and of each vector."""
        return self.config.model.enc_out

    @property
    def weights_sha256(self) -> str:
        """SHA-256 of the model's tensors (names and bytes): which weights made a vector."""
        if self._weights_sha256 is None:
            sha = hashlib.sha256()
            for name, tensor in sorted(self.model.state_dict().items()):
                sha.update(name.encode())
                sha.update(tensor.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
            self._weights_sha256 = sha.hexdigest()
        return self._weights_sha256

    def pooling(self, pooling: str | None = None) -> str:
        """`pooling`, or the config's default; checked."""
        kind = pooling or self.config.model.pooling
        if kind not in POOLINGS:
            raise DragomanError(f"unknown pooling {kind!r}", fix=f"use one of {', '.join(POOLINGS)}")
        return kind

    @torch.inference_mode()
    def embed(
        self,
        texts: list[str],
        pooling: str | None = None,
        normalize: bool = False,
        batch_tokens: int | None = None,
    ) -> np.ndarray:
        """(N, D) float32: row i pools the encoder states of texts[i]; the zero vector when it is
        empty. `normalize`: unit rows, so dot products are cosine similarities."""
        kind = self.pooling(pooling)
        ids = self._encode(texts)
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for batch in Translator.batches(ids, batch_tokens or self.config.decode.batch_tokens):
            src = pad([np.asarray(ids[i]) for i in batch]).to(self.device)  # (B, S)
            memory = self.model.encode(src)
            out[batch] = pool(memory.states, memory.mask, kind).float().cpu().numpy()  # (B, D)
        return unit(out) if normalize else out

    def _encode(self, texts: list[str]) -> list[list[int]]:
        return truncate(self.src_tok.encode_batch(texts), self.config.data.max_len)


def top_k(
    queries: np.ndarray, corpus: np.ndarray, k: int, chunk: int = 8192, query_chunk: int = 512
) -> tuple[np.ndarray, np.ndarray]:
    """The k corpus rows with the largest dot product with each query row, best first.

    queries (Q, D), corpus (N, D), both float32 (unit rows: cosine similarity). Returns scores and
    row indices, each (Q, min(k, N)). Zero rows never match: a zero corpus row is never chosen and
    a zero query chooses nothing; places left empty have score -inf and index -1. At most
    query_chunk × (chunk + k) scores exist at a time.
    """
    if k < 1:
        raise DragomanError(f"k must be at least 1, got {k}")
    q = torch.from_numpy(np.ascontiguousarray(queries, np.float32))  # (Q, D)
    c = torch.from_numpy(np.ascontiguousarray(corpus, np.float32))  # (N, D)
    k = min(k, len(c))
    usable = c.norm(dim=1) > 0  # (N,)
    scores = torch.full((len(q), k), -torch.inf)
    index = torch.full((len(q), k), -1, dtype=torch.long)
    for qs in range(0, len(q), query_chunk):
        best_s, best_i = scores[qs : qs + query_chunk, :0], index[qs : qs + query_chunk, :0]  # (q, 0)
        for cs in range(0, len(c), chunk):
            s = q[qs : qs + query_chunk] @ c[cs : cs + chunk].T  # (q, c)
            s.masked_fill_(~usable[cs : cs + chunk], -torch.inf)
            s, i = s.topk(min(k, s.size(1)), dim=1)
            merged_s, merged_i = torch.cat([best_s, s], dim=1), torch.cat([best_i, i + cs], dim=1)
            best_s, order = merged_s.topk(min(k, merged_s.size(1)), dim=1)  # (q, ≤k)
            best_i = merged_i.gather(1, order)
        scores[qs : qs + query_chunk], index[qs : qs + query_chunk] = best_s, best_i
    empty_query = q.norm(dim=1) == 0
    scores[empty_query] = -torch.inf
    index[scores == -torch.inf] = -1
    return scores.numpy(), index.numpy()


@dataclass
class Hit:
    rank: int  # 1 = the nearest
    score: float  # cosine similarity
    line: int  # 1-based line number in the corpus
    text: str


class SemanticSearch:
    """Corpus lines with their unit vectors; `search` finds each query's nearest lines."""

    def __init__(self, embedder: Embedder, lines: list[str], vectors: np.ndarray, pooling: str | None = None):
        """`vectors`: (N, D) unit rows (zero for empty lines), as `embed(..., normalize=True)` gives."""
        if vectors.shape != (len(lines), embedder.dim):
            raise ValueError(f"vectors {vectors.shape} do not fit {len(lines)} lines of width {embedder.dim}")
        norms = np.linalg.norm(vectors, axis=1)
        if not np.all((np.abs(norms - 1) < 1e-3) | (norms == 0)):
            raise ValueError("vectors must be unit rows (or zero); use unit(vectors)")
        self.embedder, self.lines, self.vectors = embedder, lines, vectors
        self.pooling = embedder.pooling(pooling)

    @classmethod
    def build(cls, embedder: Embedder, lines: list[str], pooling: str | None = None) -> SemanticSearch:
        return cls(embedder, lines, embedder.embed(lines, pooling, normalize=True), pooling)

    @classmethod
    def from_file(
        cls,
        embedder: Embedder,
        corpus: str | Path,
        index: str | Path | None = None,
        pooling: str | None = None,
        rebuild: bool = True,
    ) -> SemanticSearch:
        """The lines of `corpus` (a UTF-8 file, one per line); with `index`, their vectors come
        from that cache when it is up to date (see the module docstring)."""
        corpus = Path(corpus)
        lines = read_lines(corpus)
        if index is None:
            return cls.build(embedder, lines, pooling)
        vectors = load_or_build_index(
            embedder, corpus, lines, Path(index), embedder.pooling(pooling), rebuild
        )
        return cls(embedder, lines, vectors, pooling)

    def search(self, queries: list[str], k: int = 5) -> list[list[Hit]]:
        """The k nearest corpus lines of each query, nearest first (fewer when the corpus has fewer
        non-empty lines; none for an empty query)."""
        vectors = self.embedder.embed(queries, self.pooling, normalize=True)
        scores, index = top_k(vectors, self.vectors, k)
        return [
            [
                Hit(rank, float(s), int(i) + 1, self.lines[i])
                for rank, (s, i) in enumerate(zip(row_s, row_i), start=1)
                if i >= 0
            ]
            for row_s, row_i in zip(scores, index)
        ]


# The index cache.


def write_npy(path: Path, array: np.ndarray) -> bytes:
    """Write `array` as a .npy file (no pickle), atomically; returns the bytes written."""
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    atomic_write_bytes(path, buffer.getvalue())
    return buffer.getvalue()


def sidecar_path(index: Path) -> Path:
    return index.with_name(index.name + ".json")


def _describe(embedder: Embedder, corpus: Path, pooling: str) -> dict:
    stat = corpus.stat()
    with open(corpus, "rb") as file:
        corpus_sha = hashlib.file_digest(file, "sha256").hexdigest()
    model_dir = None if embedder.model_dir is None else str(embedder.model_dir.resolve())
    return {
        "format": INDEX_FORMAT,
        "corpus": {
            "path": str(corpus.resolve()),
            "size": stat.st_size,
            "mtime_ns": stat.st_mtime_ns,
            "sha256": corpus_sha,
        },
        "model": {"dir": model_dir, "weights_sha256": embedder.weights_sha256},
        "pooling": pooling,
        "max_len": embedder.config.data.max_len,
    }


def _read_sidecar(index: Path) -> dict:
    sidecar = sidecar_path(index)
    fix = f"it was not written by `dragoman search --index`; delete {index} or choose another --index file"
    try:
        recorded = json.loads(sidecar.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DragomanError(f"exists but has no sidecar {sidecar.name}", file=index, fix=fix) from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise DragomanError(f"unreadable index sidecar ({error})", file=sidecar, fix=fix) from None
    if not isinstance(recorded, dict) or recorded.get("format") != INDEX_FORMAT:
        raise DragomanError(f"not an index sidecar (no format: {INDEX_FORMAT})", file=sidecar, fix=fix)
    return recorded


def _stale_reason(recorded: dict, expected: dict) -> str | None:
    """Why an index described by `recorded` cannot serve `expected`; None when it can."""
    old, new = recorded.get("corpus") or {}, expected["corpus"]
    if old.get("sha256") != new["sha256"]:
        return (
            f"the corpus changed since the index was built ({old.get('path')}: {old.get('size')} bytes, "
            f"now {new['path']}: {new['size']} bytes, other SHA-256)"
        )
    if (recorded.get("model") or {}).get("weights_sha256") != expected["model"]["weights_sha256"]:
        return f"it was built with other weights (model {(recorded.get('model') or {}).get('dir')})"
    for key in ("pooling", "max_len"):
        if recorded.get(key) != expected[key]:
            return f"it was built with {key} {recorded.get(key)}, not {expected[key]}"
    return None


def _load_vectors(index: Path, recorded: dict, rows: int, dim: int) -> tuple[np.ndarray | None, str | None]:
    data = index.read_bytes()
    if hashlib.sha256(data).hexdigest() != recorded.get("index_sha256"):
        return None, f"{index.name} does not match its sidecar (other SHA-256)"
    try:
        buffer = io.BytesIO(data)
        vectors = np.load(buffer, allow_pickle=False)
    except (ValueError, OSError) as error:
        return None, f"not a readable .npy file ({error})"
    if vectors.dtype != np.float32 or vectors.shape != (rows, dim):
        return None, f"holds {vectors.dtype} {vectors.shape}, not float32 ({rows}, {dim})"
    return vectors, None


def load_or_build_index(
    embedder: Embedder, corpus: Path, lines: list[str], index: Path, pooling: str, rebuild: bool = True
) -> np.ndarray:
    """The unit vectors of `lines` (read from `corpus`): from `index` when it is up to date, else
    embedded and written there (FILE.npy and its sidecar FILE.npy.json)."""
    if index.suffix != ".npy":
        raise DragomanError("an index file must end in .npy", file=index, fix="e.g. --index corpus.npy")
    expected = _describe(embedder, corpus, pooling)
    if index.exists():
        recorded = _read_sidecar(index)
        reason = _stale_reason(recorded, expected)
        if reason is None:
            vectors, reason = _load_vectors(index, recorded, len(lines), embedder.dim)
            if vectors is not None:
                log.info("index %s: %d vectors loaded", index, len(vectors))
                return vectors
        if not rebuild:
            fix = "rebuild it (leave out --no-rebuild) or delete it"
            raise DragomanError(f"stale index: {reason}", file=index, fix=fix)
        log.warning("index %s is stale (%s); rebuilding it", index, reason)
    vectors = embedder.embed(lines, pooling, normalize=True)
    data = write_npy(index, vectors)
    sidecar = {
        **expected,
        "rows": len(lines),
        "dim": embedder.dim,
        "index_sha256": hashlib.sha256(data).hexdigest(),
    }
    atomic_write_text(sidecar_path(index), json.dumps(sidecar, indent=2) + "\n")
    log.info("index %s: %d vectors written", index, len(vectors))
    return vectors
