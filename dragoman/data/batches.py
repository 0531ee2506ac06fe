"""Length-bucketed batches by token count, in a seeded order that a resumed run can replay.

Examples are sorted by length (ties broken at random per epoch), cut into batches whose padded size
stays under `batch_tokens`, and the batches shuffled. A batch's size is its number of sentences
times its longest side (source, or target + 1 for BOS/EOS), as in fairseq and OpenNMT-py.

One class per task, differing only in what an example is and how a batch is put together:
PairBatches (seq2seq: source → target), LabelBatches (classify: text → class id) and TextBatches
(lm: a document, or a block of the joined documents, predicting each next token).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor

from dragoman.data.shards import Shard
from dragoman.data.tokenizers import BOS, EOS, PAD


@dataclass
class Batch:
    src: Tensor | None  # (B, S) source ids, PAD-padded; None for a decoder-only model
    tgt_in: Tensor | None  # (B, T) BOS y1 … yn; None for a classifier
    tgt_out: Tensor  # (B, T) y1 … yn EOS; for a classifier (B,) class ids
    # Counted where the batch is made (on the CPU) and kept by `to`: counting on a GPU would make
    # the training loop wait for the GPU at every step.
    src_tokens: int = field(init=False)  # non-padding source tokens
    tgt_tokens: int = field(init=False)  # the number of predictions: target tokens, or texts

    def __post_init__(self) -> None:
        self.src_tokens = 0 if self.src is None else int((self.src != PAD).sum())
        classify = self.tgt_in is None
        self.tgt_tokens = len(self.tgt_out) if classify else int((self.tgt_out != PAD).sum())

    def to(self, device: torch.device) -> Batch:
        moved = copy.copy(self)
        moved.src, moved.tgt_in, moved.tgt_out = (
            None if t is None else t.to(device, non_blocking=True)
            for t in (self.src, self.tgt_in, self.tgt_out)
        )
        return moved


def pad(sequences: list[np.ndarray], prefix: int | None = None, suffix: int | None = None) -> Tensor:
    """Right-pad int sequences into a (B, L) LongTensor, optionally adding a first/last token."""
    extra = (prefix is not None) + (suffix is not None)
    out = np.full((len(sequences), max(map(len, sequences)) + extra), PAD, dtype=np.int64)
    for i, seq in enumerate(sequences):
        start = int(prefix is not None)
        if prefix is not None:
            out[i, 0] = prefix
        out[i, start : start + len(seq)] = seq
        if suffix is not None:
            out[i, start + len(seq)] = suffix
    return torch.from_numpy(out)


def bucket(lengths: np.ndarray, batch_tokens: int) -> np.ndarray:
    """Where each batch starts in `lengths` (padded sizes in batch order), then len(lengths).

    A batch is the longest run whose count × max length ≤ batch_tokens; an example longer than that
    is a batch of its own. One numpy step per batch, not a Python step per example.
    """
    bounds, start = [0], 0
    while start < len(lengths):
        # count × running max only grows, and exceeds batch_tokens by count batch_tokens // first + 1
        window = lengths[start : start + batch_tokens // max(int(lengths[start]), 1) + 1]
        sizes = np.maximum.accumulate(window) * np.arange(1, len(window) + 1)
        over = np.flatnonzero(sizes[1:] > batch_tokens)
        start += int(over[0]) + 1 if len(over) else len(window)
        bounds.append(start)
    return np.array(bounds)


class Batches:
    """The batches of any epoch: `epoch(e)` is a list of index arrays, `collate` makes one a Batch.

    `lengths` is each example's padded size; examples sort by `keys` (the first most significant).
    The sort and the cut into batches happen once: an epoch only shuffles examples with equal keys
    (which leaves every batch's lengths as they were) and the order of the batches. N examples
    cost a few int32 arrays of N (lengths, the sorted order, an epoch's order), nothing per example
    in Python.
    """

    def __init__(
        self, lengths: np.ndarray, keys: tuple[np.ndarray, ...], batch_tokens: int, seed: int
    ) -> None:
        self.lengths, self.batch_tokens, self.seed = lengths, batch_tokens, seed
        self.order = np.lexsort(keys[::-1]).astype(np.int32)  # stable: equal keys in index order
        starts = np.zeros(len(self.order), dtype=bool)  # of each run of equal keys
        starts[:1] = True
        for key in keys:
            key = key[self.order]
            starts[1:] |= key[1:] != key[:-1]
        self.runs = np.append(np.flatnonzero(starts), len(self.order))  # the run starts, then N
        self.bounds = bucket(lengths[self.order], batch_tokens)

    def __len__(self) -> int:
        return len(self.order)

    def epoch(self, epoch: int, shuffle: bool = True) -> list[np.ndarray]:
        order = self.order
        if shuffle:
            rng = np.random.default_rng([self.seed, epoch])
            order = order.copy()
            for start, end in zip(self.runs[:-1].tolist(), self.runs[1:].tolist()):
                rng.shuffle(order[start:end])  # ties in a new order every epoch
        bounds = self.bounds.tolist()
        batches = [order[start:end] for start, end in zip(bounds[:-1], bounds[1:])]
        if shuffle:
            batches = [batches[i] for i in rng.permutation(len(batches))]
        return batches

    def collate(self, indices: np.ndarray) -> Batch:
        raise NotImplementedError


class PairBatches(Batches):
    """Source → target pairs (seq2seq)."""

    def __init__(self, src: Shard, tgt: Shard, batch_tokens: int, seed: int) -> None:
        self.src, self.tgt = src, tgt
        src_lengths, tgt_lengths = src.lengths, tgt.lengths
        lengths = np.maximum(src_lengths, tgt_lengths + 1)
        super().__init__(lengths, (src_lengths, tgt_lengths), batch_tokens, seed)

    def collate(self, indices: np.ndarray) -> Batch:
        src = [self.src[i] for i in indices.tolist()]
        tgt = [self.tgt[i] for i in indices.tolist()]
        return Batch(pad(src), pad(tgt, prefix=BOS), pad(tgt, suffix=EOS))


class LabelBatches(Batches):
    """Texts with one class id each (classify); the classifier adds its own BOS (+1 in lengths)."""

    def __init__(self, src: Shard, labels: np.ndarray, batch_tokens: int, seed: int) -> None:
        self.src, self.labels = src, labels
        super().__init__(src.lengths + 1, (src.lengths,), batch_tokens, seed)

    def collate(self, indices: np.ndarray) -> Batch:
        src = pad([self.src[i] for i in indices.tolist()])
        return Batch(src, None, torch.from_numpy(self.labels[indices].astype(np.int64)))


class TextBatches(Batches):
    """Monolingual text for a language model: each document as BOS x1 … xn → x1 … xn EOS, or
    (`blocks`) each stored block of the joined documents as x[:-1] → x[1:]."""

    def __init__(self, text: Shard, batch_tokens: int, seed: int, blocks: bool = False) -> None:
        self.text, self.blocks = text, blocks
        lengths = text.lengths - 1 if blocks else text.lengths + 1
        super().__init__(lengths, (lengths,), batch_tokens, seed)

    def collate(self, indices: np.ndarray) -> Batch:
        seqs = [self.text[i] for i in indices.tolist()]
        if self.blocks:
            return Batch(None, pad([s[:-1] for s in seqs]), pad([s[1:] for s in seqs]))
        return Batch(None, pad(seqs, prefix=BOS), pad(seqs, suffix=EOS))
