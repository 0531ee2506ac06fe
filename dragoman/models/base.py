"""The decoding contract every model implements, so that `search.py` never asks which model it has.

    memory = model.encode(src)             # source ids (B, S) → Memory
    state = model.init_state(memory)       # decoder state for B rows
    logits, state = model.step(tokens, state)   # tokens (B,) → logits (B, V), next state
    state = state.select(index)            # keep/reorder rows: drop finished sentences
    state = state.expand(K)                # each row K times in a row: the beams of beam search

After `expand(K)`, `select` takes whole groups of K rows (one sentence's beams, in any order
within the group) in sentence order, so a state may keep what a sentence's beams share (the
Transformer's encoder memory) once per sentence.

An RNN decoder carries its hidden state in the same way. A decoder-only language model
(models/lm.py) has no memory: `state, start = model.prefill(prompt)` runs the prompt instead, and
the search starts from `start`, the prompt's last tokens, rather than from BOS.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import torch
from torch import Tensor


@dataclass
class Memory:
    """The encoder's output: states (B, S, D) and mask (B, S), True at real (non-pad) tokens.

    A recurrent encoder also gives its final state, per layer: (h,) or, for an LSTM, (h, c), each
    (layers, B, D) with the two directions concatenated; the decoder's bridge starts from it.
    """

    states: Tensor
    mask: Tensor
    final: tuple[Tensor, ...] | None = None


def repeat_rows(rows: Tensor, beams: int) -> Tensor:
    """The index that repeats each row of `rows` (dim 0) `beams` times: 0 0 0 1 1 1 …"""
    return torch.arange(rows.size(0), device=rows.device).repeat_interleave(beams)


def memory_rows(index: Tensor, beams: int, rows: int) -> Tensor | None:
    """Which memory rows the state rows `index` need when each memory row serves `beams` rows;
    None when they are the `rows` memory rows as they are (only beams were reordered)."""
    sentences = index[::beams] // beams
    return None if beams > 1 and sentences.numel() == rows else sentences


class DecoderState(Protocol):
    def select(self, index: Tensor) -> DecoderState:
        """Rows `index` (1-D LongTensor) of every cached tensor, in that order."""
        ...

    def expand(self, beams: int) -> DecoderState:
        """Each row repeated `beams` times, consecutively."""
        ...


class Decoding(Protocol):
    """What the search needs from a model."""

    def init_state(self, memory: Memory) -> DecoderState: ...

    def step(self, tokens: Tensor, state: DecoderState) -> tuple[Tensor, DecoderState]: ...
