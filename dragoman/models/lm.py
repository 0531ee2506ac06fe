"""Decoder-only language model (GPT; Radford et al., 2018): the Transformer's EncoderLayer, masked
causally, predicting each next token.

It implements the decoding contract of `models/base.py` with the prompt in place of an encoder
memory: `prefill(prompt)` runs the prompt once and returns the state (each layer's key/value cache)
and the token the search starts from, so greedy, beam search and sampling in `search.py` drive it
unchanged.

Shapes: B batch, T length, D model width, H heads, Dh = D / H, V vocab.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from dragoman.data.tokenizers import PAD
from dragoman.models.base import repeat_rows
from dragoman.models.layers import KV, PositionalEmbedding, TokenEmbedding
from dragoman.models.transformer import EncoderLayer


@dataclass
class LMState:
    """Per layer the keys/values of every position fed so far; `position` counts them."""

    cache: list[KV]
    position: int

    def select(self, index: Tensor) -> LMState:
        return LMState([kv.select(index) for kv in self.cache], self.position)

    def expand(self, beams: int) -> LMState:
        return self.select(repeat_rows(self.cache[0].key, beams))


class LanguageModel(nn.Module):
    """Embedding with positions, a stack of causal EncoderLayers, a final norm, the output layer."""

    def __init__(
        self,
        vocab: int,
        dim: int = 512,
        heads: int = 8,
        ff: int = 2048,
        layers: int = 6,
        dropout: float = 0.1,
        attention_dropout: float = 0.0,
        pre_norm: bool = True,
        positions: str = "learned",
        max_positions: int = 1024,
        tie_output: bool = True,
    ) -> None:
        super().__init__()
        self.tgt_embed = TokenEmbedding(vocab, dim, PAD)
        self.input = PositionalEmbedding(self.tgt_embed, positions, max_positions, dropout)
        self.layers = nn.ModuleList(
            EncoderLayer(dim, heads, ff, dropout, attention_dropout, pre_norm) for _ in range(layers)
        )
        self.norm = nn.LayerNorm(dim) if pre_norm else nn.Identity()
        self.output = nn.Linear(dim, vocab, bias=False)
        if tie_output:
            self.output.weight = self.tgt_embed.weight
        else:
            nn.init.normal_(self.output.weight, mean=0.0, std=dim**-0.5)
        self.max_positions = max_positions

    def forward(self, ids: Tensor) -> Tensor:
        """ids (B, T), right-padded → next-token logits (B, T, V). Padding needs no mask: a causal
        position never sees the pads after it, and the loss ignores the pads' own outputs."""
        x = self.input(ids)
        for layer in self.layers:
            x, _ = layer(x, None, causal=True)
        return self.output(self.norm(x))

    def prefill(self, prompt: Tensor) -> tuple[LMState, Tensor]:
        """prompt (B, P), BOS first, all rows of equal length → the state after the first P - 1
        tokens, and the last tokens (B,), which the search feeds first."""
        B, P = prompt.shape
        if P == 1:
            heads = self.layers[0].attention.heads
            empty = self.tgt_embed.weight.new_zeros(B, heads, 0, self.tgt_embed.embedding_dim // heads)
            return LMState([KV(empty, empty) for _ in self.layers], 0), prompt[:, 0]
        x = self.input(prompt[:, :-1])
        cache = []
        for layer in self.layers:
            x, kv = layer(x, None, causal=True)
            cache.append(kv)
        return LMState(cache, P - 1), prompt[:, -1]

    def step(self, tokens: Tensor, state: LMState) -> tuple[Tensor, LMState]:
        """One decoding step: tokens (B,) → logits (B, V), using and growing the cache."""
        x = self.input(tokens[:, None], state.position)  # (B, 1, D)
        cache = []
        for layer, past in zip(self.layers, state.cache):
            x, kv = layer(x, None, past=past)
            cache.append(kv)
        return self.output(self.norm(x[:, 0])), LMState(cache, state.position + 1)

    @torch.no_grad()
    def perplexity(self, ids: Tensor) -> Tensor:
        """exp of the mean next-token loss of each row of ids (B, T), BOS first; for tests and demos."""
        logp = self(ids[:, :-1]).float().log_softmax(-1).gather(-1, ids[:, 1:, None])[..., 0]
        real = ids[:, 1:] != PAD
        return torch.exp(-(logp * real).sum(1) / real.sum(1))
