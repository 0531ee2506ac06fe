"""Length-bucketed batches by token count, in a seeded order that a resumed run can replay.

Pairs are sorted by length (ties broken at random per epoch), cut into batches whose padded size
stays under `batch_tokens`, and the batches shuffled. A batch's size is its number of sentences
times its longest side (source, or target + 1 for BOS/EOS), as in fairseq and OpenNMT-py.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from dragoman.data.shards import Shard
from dragoman.data.tokenizers import BOS, EOS, PAD


@dataclass
class Batch:
    src: Tensor  # (B, S) source ids, PAD-padded
    tgt_in: Tensor  # (B, T) BOS y1 … yn
    tgt_out: Tensor  # (B, T) y1 … yn EOS

    @property
    def src_tokens(self) -> int:
        return int((self.src != PAD).sum())

    @property
    def tgt_tokens(self) -> int:
        return int((self.tgt_out != PAD).sum())

    def to(self, device: torch.device) -> Batch:
        return Batch(*(t.to(device, non_blocking=True) for t in (self.src, self.tgt_in, self.tgt_out)))


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


def bucket(lengths: np.ndarray, batch_tokens: int, order: np.ndarray) -> list[np.ndarray]:
    """Cut `order` (indices sorted by length) into runs whose count × max length ≤ batch_tokens."""
    batches, start, longest = [], 0, 0
    for end, length in enumerate(lengths[order].tolist()):
        longest = max(longest, length)
        if (end - start + 1) * longest > batch_tokens and end > start:
            batches.append(order[start:end])
            start, longest = end, length
    if start < len(order):
        batches.append(order[start:])
    return batches


class PairBatches:
    """The batches of a source/target shard pair for any epoch: `epoch(e)` is a list of index arrays."""

    def __init__(self, src: Shard, tgt: Shard, batch_tokens: int, seed: int) -> None:
        self.src, self.tgt = src, tgt
        self.batch_tokens, self.seed = batch_tokens, seed
        self.src_lengths, self.tgt_lengths = src.lengths, tgt.lengths
        self.lengths = np.maximum(self.src_lengths, self.tgt_lengths + 1)

    def __len__(self) -> int:
        return len(self.src)

    def epoch(self, epoch: int, shuffle: bool = True) -> list[np.ndarray]:
        rng = np.random.default_rng([self.seed, epoch])
        ties = rng.random(len(self)) if shuffle else np.arange(len(self))
        order = np.lexsort((ties, self.tgt_lengths, self.src_lengths))
        batches = bucket(self.lengths, self.batch_tokens, order)
        if shuffle:
            batches = [batches[i] for i in rng.permutation(len(batches))]
        return batches

    def collate(self, indices: np.ndarray) -> Batch:
        src = [self.src[i] for i in indices.tolist()]
        tgt = [self.tgt[i] for i in indices.tolist()]
        return Batch(pad(src), pad(tgt, prefix=BOS), pad(tgt, suffix=EOS))
