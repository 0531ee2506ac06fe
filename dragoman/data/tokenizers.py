"""Tokenizers: text ↔ token ids, with the same four special ids everywhere.

Four kinds share one small interface, `Tokenizer`:

- "bpe" and "unigram": subwords learned by sentencepiece (Sennrich et al. 2016, "Neural Machine
  Translation of Rare Words with Subword Units"; Kudo 2018, "Subword Regularization"). Byte
  fallback spells any unseen character as UTF-8 byte pieces, so nothing becomes <unk>. Text is not
  normalized (rule "identity": "…" stays "…"), but sentencepiece collapses runs of whitespace to one
  space and strips both ends, so decode(encode(x)) == x up to whitespace runs.
- "word": whitespace-separated words; decoding joins them with single spaces.
- "char": every character, the space included; decoding restores the text exactly.

Ids 0-3 are always PAD, UNK, BOS, EOS. `encode` adds no BOS/EOS; `decode` drops PAD/BOS/EOS.
A tokenizer is saved as `{prefix}.json` (its kind, and for word/char the token list) and, for
subwords, `{prefix}.spm` (the sentencepiece model protobuf). JSON and protobuf only, no pickle anywhere
"""

from __future__ import annotations

import io
import json
import os
import random
import re
from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Protocol

import sentencepiece as spm

from dragoman.data.text import open_binary
from dragoman.errors import DragomanError
from dragoman.io import atomic_write_bytes, atomic_write_text

PAD, UNK, BOS, EOS = 0, 1, 2, 3
SPECIALS = ("<pad>", "<unk>", "<s>", "</s>")
KINDS = ("bpe", "unigram", "word", "char")

_SKIPPED_BY_DECODE = frozenset((PAD, BOS, EOS))
_RETRAIN = "train the tokenizer again (or point to the right prefix)"


class Tokenizer(Protocol):
    """Text ↔ ids. Every kind uses ids 0-3 for SPECIALS."""

    kind: str  # "bpe" | "unigram" | "word" | "char"
    vocab_size: int  # including the specials

    def encode(self, text: str) -> list[int]: ...
    def encode_batch(self, texts: list[str]) -> list[list[int]]: ...
    def decode(self, ids: Sequence[int]) -> str: ...
    def pieces(self, ids: Sequence[int]) -> list[str]: ...
    def save(self, prefix: str | Path) -> None: ...


def _kept(ids: Sequence[int]) -> list[int]:
    """`ids` as plain ints (tensors and numpy arrays welcome), without PAD, BOS and EOS."""
    return [i for i in map(int, ids) if i not in _SKIPPED_BY_DECODE]


def _path(prefix: str | Path, suffix: str) -> Path:
    return Path(f"{prefix}{suffix}")  # not with_suffix: "tok.en" must become "tok.en.json"


class SentencePieceTokenizer:
    """Subwords from a sentencepiece model (BPE or unigram), held as its serialized bytes."""

    def __init__(self, kind: str, model: bytes) -> None:
        self.kind = kind
        self.model = model
        self._sp = spm.SentencePieceProcessor(model_proto=model)
        self.vocab_size: int = self._sp.get_piece_size()

    def encode(self, text: str) -> list[int]:
        return self._sp.encode(text)

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        return self._sp.encode(texts)  # one call: batched (and threaded) in C++

    def decode(self, ids: Sequence[int]) -> str:
        return self._sp.decode(_kept(ids))

    def pieces(self, ids: Sequence[int]) -> list[str]:
        return self._sp.id_to_piece([int(i) for i in ids])

    def save(self, prefix: str | Path) -> None:
        atomic_write_bytes(_path(prefix, ".spm"), self.model)
        atomic_write_text(_path(prefix, ".json"), json.dumps({"kind": self.kind}) + "\n")


class VocabTokenizer(ABC):
    """A fixed token list; subclasses say how text splits into tokens and how tokens join."""

    kind: str

    def __init__(self, tokens: Sequence[str]) -> None:
        self.tokens = list(tokens)
        self.vocab_size = len(self.tokens)
        # Specials never come from text: a literal "<s>" in the input is just an unknown word.
        self._ids = {token: i for i, token in enumerate(self.tokens) if i >= len(SPECIALS)}

    @staticmethod
    @abstractmethod
    def split(text: str) -> list[str]: ...

    @staticmethod
    @abstractmethod
    def join(tokens: list[str]) -> str: ...

    @classmethod
    def train(cls, texts: Iterable[str], vocab_size: int, min_freq: int) -> VocabTokenizer:
        """Keep tokens seen at least `min_freq` times, most frequent first (ties: first seen),
        at most `vocab_size` in all counting the specials (no limit if `vocab_size` <= 0)."""
        counts = Counter(token for text in texts for token in cls.split(text))
        if not any(token.strip() for token in counts):
            raise _no_text_error()
        kept = [t for t, n in counts.most_common() if n >= min_freq and t not in SPECIALS]
        if vocab_size > 0:
            kept = kept[: vocab_size - len(SPECIALS)]
        return cls([*SPECIALS, *kept])

    def encode(self, text: str) -> list[int]:
        return [self._ids.get(token, UNK) for token in self.split(text)]

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        return [self.encode(text) for text in texts]

    def decode(self, ids: Sequence[int]) -> str:
        return self.join([self.tokens[i] for i in _kept(ids)])

    def pieces(self, ids: Sequence[int]) -> list[str]:
        return [self.tokens[i] for i in map(int, ids)]

    def save(self, prefix: str | Path) -> None:
        meta = {"kind": self.kind, "tokens": self.tokens}
        atomic_write_text(_path(prefix, ".json"), json.dumps(meta, ensure_ascii=False, indent=1))


class WordTokenizer(VocabTokenizer):
    """Whitespace-separated words; decoding joins with single spaces."""

    kind = "word"

    @staticmethod
    def split(text: str) -> list[str]:
        return text.split()

    @staticmethod
    def join(tokens: list[str]) -> str:
        return " ".join(tokens)


class CharTokenizer(VocabTokenizer):
    """One token per character, spaces included."""

    kind = "char"

    @staticmethod
    def split(text: str) -> list[str]:
        return list(text)

    @staticmethod
    def join(tokens: list[str]) -> str:
        return "".join(tokens)


_VOCAB_KINDS: dict[str, type[VocabTokenizer]] = {"word": WordTokenizer, "char": CharTokenizer}


def train_tokenizer(
    kind: str,
    texts: Iterable[str],
    vocab_size: int,
    *,
    min_freq: int = 1,
    sample_size: int = 1_000_000,
    seed: int = 1,
) -> Tokenizer:
    """Learn a tokenizer of `kind` from `texts` (one segment each).

    `vocab_size` counts the specials; sentencepiece may give fewer pieces on a small corpus, and
    for word/char 0 means no limit. `min_freq` applies to word/char. Every kind learns from a
    uniform sample of `sample_size` texts (all if <= 0), drawn reproducibly from `seed`: `texts` is
    read once, and a corpus larger than the sample is never held in memory.
    """
    _check_options(kind, vocab_size)
    sample = _sample(texts, sample_size, seed)
    if kind in _VOCAB_KINDS:
        return _VOCAB_KINDS[kind].train(sample, vocab_size, min_freq)
    if not any(text.strip() for text in sample):
        raise _no_text_error()
    return _train_sentencepiece(kind, sample, vocab_size)


def _check_options(kind: str, vocab_size: int) -> None:
    if kind not in KINDS:
        fix = f"use one of {', '.join(KINDS)}"
        raise DragomanError(f"unknown tokenizer kind {kind!r}", fix=fix)
    unlimited = vocab_size <= 0 and kind in _VOCAB_KINDS
    if vocab_size <= len(SPECIALS) and not unlimited:
        problem = f"vocab_size {vocab_size} leaves no room beside the {len(SPECIALS)} specials"
        raise DragomanError(problem, fix="use a vocab_size of a few hundred or more")


def _no_text_error() -> DragomanError:
    return DragomanError(
        "no text to learn a tokenizer from", fix="check that the training files are not empty"
    )


def _sample(texts: Iterable[str], size: int, seed: int) -> list[str]:
    """A uniform sample of `size` texts (all of them if fewer, or if `size` <= 0).

    Reservoir sampling (Vitter's algorithm R): one pass, `size` texts in memory. We sample here
    rather than let sentencepiece do it because its sampler ignores any seed: the same corpus gave
    a different model in every process.
    """
    if size <= 0:
        return list(texts)
    rng = random.Random(seed)
    sample: list[str] = []
    for seen, text in enumerate(texts):
        if seen < size:
            sample.append(text)
        elif (slot := rng.randrange(seen + 1)) < size:
            sample[slot] = text
    return sample


def _train_sentencepiece(kind: str, sample: list[str], vocab_size: int) -> SentencePieceTokenizer:
    model = io.BytesIO()
    try:
        spm.SentencePieceTrainer.train(
            sentence_iterator=iter(sample),
            model_writer=model,
            model_type=kind,
            vocab_size=vocab_size,
            pad_id=PAD,
            unk_id=UNK,
            bos_id=BOS,
            eos_id=EOS,
            pad_piece=SPECIALS[PAD],
            unk_piece=SPECIALS[UNK],
            bos_piece=SPECIALS[BOS],
            eos_piece=SPECIALS[EOS],
            normalization_rule_name="identity",  # keep "…", full-width forms, etc. as written
            byte_fallback=True,  # unseen characters become UTF-8 byte pieces, not <unk>
            character_coverage=1.0,
            hard_vocab_limit=False,  # a toy corpus may not support vocab_size pieces
            input_sentence_size=0,  # already sampled, see _sample
            num_threads=os.cpu_count() or 1,
            minloglevel=2,  # errors only: training logs hundreds of lines to stderr
        )
    except RuntimeError as error:
        raise _explain_training_failure(error, kind, vocab_size) from None
    return SentencePieceTokenizer(kind, model.getvalue())


def _explain_training_failure(error: RuntimeError, kind: str, vocab_size: int) -> DragomanError:
    too_small = re.search(r"smaller than required_chars\. \d+ vs (\d+)", str(error))
    if too_small is None:
        problem = f"sentencepiece could not train a {kind} model ({error})"
        return DragomanError(problem, fix="check the training text and the tokenizer settings")
    needed = int(too_small[1])
    characters = needed - len(SPECIALS) - 256
    problem = (
        f"vocab_size {vocab_size} is too small for {kind}: the {len(SPECIALS)} specials, 256 byte "
        f"pieces and {characters} distinct characters need at least {needed}"
    )
    return DragomanError(problem, fix=f"set vocab_size to {needed} or more (thousands is typical)")


def load_tokenizer(prefix: str | Path) -> Tokenizer:
    """Load what `save(prefix)` wrote; missing or corrupt files raise a `DragomanError`."""
    meta_path = _path(prefix, ".json")
    meta = _read_json(meta_path)
    kind = meta.get("kind")
    if kind in _VOCAB_KINDS:
        return _VOCAB_KINDS[kind](_checked_tokens(meta.get("tokens"), meta_path))
    if kind in ("bpe", "unigram"):
        return _load_sentencepiece(kind, _path(prefix, ".spm"))
    fix = f"use one of {', '.join(KINDS)}, or {_RETRAIN}"
    raise DragomanError(f"unknown tokenizer kind {kind!r}", file=meta_path, fix=fix)


def _read_json(path: Path) -> dict:
    with open_binary(path) as file:
        data = file.read()
    try:
        meta = json.loads(data)
    except ValueError as error:  # bad JSON or bad UTF-8
        raise DragomanError(f"corrupt tokenizer file ({error})", file=path, fix=_RETRAIN) from None
    if not isinstance(meta, dict):
        raise DragomanError("corrupt tokenizer file (not a JSON object)", file=path, fix=_RETRAIN)
    return meta


def _checked_tokens(tokens: object, path: Path) -> list[str]:
    valid = (
        isinstance(tokens, list)
        and all(isinstance(token, str) for token in tokens)
        and tuple(tokens[: len(SPECIALS)]) == SPECIALS
        and len(set(tokens)) == len(tokens)
    )
    if not valid:
        problem = f"corrupt tokenizer file (tokens must be distinct and start {' '.join(SPECIALS)})"
        raise DragomanError(problem, file=path, fix=_RETRAIN)
    return tokens


def _load_sentencepiece(kind: str, path: Path) -> SentencePieceTokenizer:
    with open_binary(path) as file:
        model = file.read()
    try:
        tokenizer = SentencePieceTokenizer(kind, model)
    except RuntimeError:
        problem = "corrupt sentencepiece model (cannot parse it)"
        raise DragomanError(problem, file=path, fix=_RETRAIN) from None
    specials = range(len(SPECIALS))
    if tokenizer.vocab_size < len(specials) or tokenizer.pieces(specials) != list(SPECIALS):
        problem = f"not a dragoman model: ids 0-3 must be {' '.join(SPECIALS)}"
        raise DragomanError(problem, file=path, fix=_RETRAIN)
    return tokenizer
