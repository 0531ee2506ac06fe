"""Leaves shared by every model: embeddings, positions, multi-head attention, feed-forward.

Shapes: B batch, S source length, T target length, D model width, H heads, Dh = D / H, V vocab.
Masks are boolean and True where a position may be attended to (the convention of
torch.nn.functional.scaled_dot_product_attention).
"""

from __future__ import annotations

import math
from contextlib import nullcontext
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.attention import SDPBackend, sdpa_kernel

# On a GPU, every SDPA kernel except cuDNN's: cuDNN builds a plan for every new shape (~10 ms of
# CPU per call on an H100, torch 2.11), and batches of varying lengths keep bringing new shapes.
SDPA_BACKENDS = [SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION, SDPBackend.MATH]


class Dropout(nn.Module):
    """nn.Dropout with the mask drawn from random 16-bit integers on the CPU.

    torch's CPU dropout draws one Bernoulli sample per element, and in a Transformer's training
    step that took a fifth of the time (benchmarks/speed.py); four 15-bit uniforms cut from each
    64-bit random number are 2x cheaper. p is rounded to a multiple of 1/32768. Elsewhere (CUDA)
    this is F.dropout.
    """

    def __init__(self, p: float) -> None:
        super().__init__()
        self.p = p
        self.threshold = round(p * 32768)  # keep an element when its 15 bits are >= this

    def forward(self, x: Tensor) -> Tensor:
        if not self.training or self.p == 0.0:
            return x
        if x.device.type != "cpu":
            return F.dropout(x, self.p, training=True)
        n = x.numel()
        bits = torch.empty((n + 3) // 4, dtype=torch.int64).random_().view(torch.int16)[:n]
        keep = (bits & 0x7FFF).view(x.shape) >= self.threshold  # random_() leaves the sign bit 0
        return x * keep * (1.0 / (1.0 - self.p))

    def extra_repr(self) -> str:
        return f"p={self.p}"


class TokenEmbedding(nn.Embedding):
    """Token embeddings scaled by sqrt(D), as in Vaswani et al. (2017)."""

    def __init__(self, vocab_size: int, dim: int, pad_id: int) -> None:
        super().__init__(vocab_size, dim, padding_idx=pad_id)
        nn.init.normal_(self.weight, mean=0.0, std=dim**-0.5)
        with torch.no_grad():
            self.weight[pad_id].zero_()
        self.scale = math.sqrt(dim)

    def forward(self, ids: Tensor) -> Tensor:
        return super().forward(ids) * self.scale


class SinusoidalPositions(nn.Module):
    """Fixed sine/cosine position encodings; `offset` lets a decoder step start mid-sequence."""

    def __init__(self, max_len: int, dim: int) -> None:
        super().__init__()
        position = torch.arange(max_len).unsqueeze(1)
        freq = torch.exp(torch.arange(0, dim, 2) * (-math.log(10000.0) / dim))
        table = torch.zeros(max_len, dim)
        table[:, 0::2] = torch.sin(position * freq)
        table[:, 1::2] = torch.cos(position * freq)
        # Not saved: it is a function of the config, and a checkpoint should hold only weights.
        self.register_buffer("table", table, persistent=False)

    def forward(self, length: int, offset: int = 0) -> Tensor:
        return self.table[offset : offset + length]  # (L, D)


class LearnedPositions(nn.Module):
    """One trained vector per position (BERT, GPT-2)."""

    def __init__(self, max_len: int, dim: int) -> None:
        super().__init__()
        self.embedding = nn.Embedding(max_len, dim)
        nn.init.normal_(self.embedding.weight, mean=0.0, std=dim**-0.5)

    def forward(self, length: int, offset: int = 0) -> Tensor:
        return self.embedding.weight[offset : offset + length]  # (L, D)


def build_positions(kind: str, max_len: int, dim: int) -> nn.Module:
    return {"sinusoidal": SinusoidalPositions, "learned": LearnedPositions}[kind](max_len, dim)


class PositionalEmbedding(nn.Module):
    """Token embedding + position encoding, then dropout: the input of Transformer and CNN stacks.

    The token embedding is passed in, so two of these can share one (joint vocabulary).
    """

    def __init__(self, embed: TokenEmbedding, kind: str, max_len: int, dropout: float) -> None:
        super().__init__()
        self.embed = embed
        self.positions = build_positions(kind, max_len, embed.embedding_dim)
        self.dropout = Dropout(dropout)
        self.max_len = max_len

    def forward(self, ids: Tensor, offset: int = 0) -> Tensor:
        """ids (B, L), the first at position `offset` → (B, L, D)."""
        if offset + ids.size(1) > self.max_len:
            raise ValueError(
                f"sequence of {offset + ids.size(1)} tokens is longer than max_positions={self.max_len}"
            )
        return self.dropout(self.embed(ids) + self.positions(ids.size(1), offset))


@dataclass
class KV:
    """Projected keys and values, each (B, H, L, Dh): an encoder memory or a self-attention cache."""

    key: Tensor
    value: Tensor

    def select(self, index: Tensor) -> KV:
        return KV(self.key.index_select(0, index), self.value.index_select(0, index))


class MultiHeadAttention(nn.Module):
    """Multi-head attention through scaled_dot_product_attention.

    Keys and values are projected separately from queries (`project_kv`) so a decoder can
    project the encoder memory once and cache it, and append one step at a time to its own
    self-attention cache.
    """

    def __init__(self, dim: int, heads: int, dropout: float) -> None:
        super().__init__()
        self.heads = heads
        self.dropout = Dropout(dropout)  # on the attention probabilities, bf16 CPU path only
        self.recorded: Tensor | None = None  # set to an empty tensor to keep the next weights (plots)
        self.query = nn.Linear(dim, dim)
        self.key_value = nn.Linear(dim, 2 * dim)
        self.out = nn.Linear(dim, dim)
        for linear in (self.query, self.key_value, self.out):
            nn.init.xavier_uniform_(linear.weight)
            nn.init.zeros_(linear.bias)

    def _split(self, x: Tensor) -> Tensor:
        B, L, D = x.shape
        return x.view(B, L, self.heads, D // self.heads).transpose(1, 2)  # (B, H, L, Dh)

    def project_kv(self, x: Tensor) -> tuple[Tensor, Tensor]:
        key, value = self.key_value(x).chunk(2, dim=-1)  # (B, L, D) each
        return self._split(key), self._split(value)

    def self_attend(
        self, x: Tensor, mask: Tensor | None = None, causal: bool = False, past: KV | None = None
    ) -> tuple[Tensor, KV]:
        """x attending to itself, after `past`, the cached keys/values of the earlier positions
        (incremental decoding: then x is the newest position and `causal` stays False).
        Returns the output and the keys/values of every position so far."""
        key, value = self.project_kv(x)
        if past is not None:
            key, value = torch.cat([past.key, key], dim=2), torch.cat([past.value, value], dim=2)
        return self(x, key, value, mask, causal), KV(key, value)

    def forward(
        self,
        x: Tensor,
        key: Tensor,
        value: Tensor,
        mask: Tensor | None = None,
        causal: bool = False,
    ) -> Tensor:
        """x: (B, T, D) queries; key/value: (B, H, L, Dh); mask broadcastable to (B, H, T, L)."""
        query = self._split(self.query(x))  # (B, H, T, Dh)
        if self.recorded is not None:
            self.recorded = self.weights(query, key, mask)
        if query.dtype == torch.bfloat16 and query.device.type == "cpu":
            # In bf16 on the CPU, SDPA's kernels are 3-5x slower than these matmuls (torch 2.13).
            out = self.dropout(self.weights(query, key, mask, causal)) @ value
        else:
            with sdpa_kernel(SDPA_BACKENDS) if query.is_cuda else nullcontext():
                out = F.scaled_dot_product_attention(
                    query,
                    key,
                    value,
                    attn_mask=mask,
                    dropout_p=self.dropout.p if self.training else 0.0,
                    is_causal=causal,
                )
        B, H, T, Dh = out.shape
        return self.out(out.transpose(1, 2).reshape(B, T, H * Dh))  # (B, T, D)

    @staticmethod
    def weights(query: Tensor, key: Tensor, mask: Tensor | None = None, causal: bool = False) -> Tensor:
        """The attention probabilities (B, H, T, L), softmax in float32, in the query's dtype."""
        scores = query @ key.transpose(-2, -1) / math.sqrt(query.size(-1))
        if causal:
            T, L = scores.shape[-2:]
            scores = scores.masked_fill(scores.new_ones(T, L, dtype=torch.bool).triu(L - T + 1), float("-inf"))
        if mask is not None:
            scores = scores.masked_fill(~mask, float("-inf"))
        return scores.float().softmax(dim=-1).to(query.dtype)


class FeedForward(nn.Sequential):
    """Position-wise two-layer network: Linear → ReLU → dropout → Linear."""

    def __init__(self, dim: int, hidden: int, dropout: float) -> None:
        super().__init__(nn.Linear(dim, hidden), nn.ReLU(), Dropout(dropout), nn.Linear(hidden, dim))
        for linear in (self[0], self[3]):
            nn.init.xavier_uniform_(linear.weight)
            nn.init.zeros_(linear.bias)


class Block(nn.Module):
    """What every Transformer layer shares: a residual connection around each sub-layer, with
    layer norm before it (pre-norm, Xiong et al., 2020) or after the sum (post-norm, the original).
    """

    def __init__(self, dropout: float, pre_norm: bool) -> None:
        super().__init__()
        self.dropout = Dropout(dropout)
        self.pre_norm = pre_norm

    def sub_in(self, x: Tensor, norm: nn.LayerNorm) -> Tensor:
        return norm(x) if self.pre_norm else x

    def sub_out(self, x: Tensor, y: Tensor, norm: nn.LayerNorm) -> Tensor:
        x = x + self.dropout(y)
        return x if self.pre_norm else norm(x)


def pool(states: Tensor, mask: Tensor, kind: str = "mean") -> Tensor:
    """One vector per sequence from encoder states (B, S, D) and mask (B, S): the mean over the
    real tokens, or the first token's state (BERT's [CLS] position) → (B, D)."""
    if kind == "first":
        return states[:, 0]
    weights = mask.unsqueeze(-1).to(states.dtype)  # (B, S, 1)
    return (states * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1.0)
