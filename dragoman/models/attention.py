"""Attention for recurrent decoders: additive (Bahdanau et al., 2015, "Neural Machine Translation
by Jointly Learning to Align and Translate") and multiplicative (Luong et al., 2015, "Effective
Approaches to Attention-based Neural Machine Translation", the `dot` and `general` scores).

The Transformer's multi-head attention lives in layers.py. Shapes: B batch, T decoder steps (1 in
search), S source length, Dq query width, Dm memory width. The memory's keys are projected once per
sentence (`keys`) and reused at every step. Weights are exactly 0 on padding and sum to 1 over S.
"""

from __future__ import annotations

from torch import Tensor, nn


def _attend(scores: Tensor, memory: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
    """scores (B, T, S) → context (B, T, Dm) and weights (B, T, S), padding masked out."""
    weights = scores.masked_fill(~mask[:, None, :], float("-inf")).softmax(dim=-1)
    return weights @ memory, weights


class BahdanauAttention(nn.Module):
    """score(q, m) = vᵀ tanh(W_q q + W_m m)."""

    def __init__(self, query_dim: int, memory_dim: int, hidden: int) -> None:
        super().__init__()
        self.query = nn.Linear(query_dim, hidden, bias=False)
        self.key = nn.Linear(memory_dim, hidden)
        self.energy = nn.Linear(hidden, 1, bias=False)

    def keys(self, memory: Tensor) -> Tensor:
        return self.key(memory)  # (B, S, hidden)

    def forward(self, query: Tensor, keys: Tensor, memory: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        """query (B, T, Dq) → context (B, T, Dm), weights (B, T, S)."""
        hidden = (self.query(query)[:, :, None, :] + keys[:, None, :, :]).tanh()  # (B, T, S, hidden)
        return _attend(self.energy(hidden)[..., 0], memory, mask)


class LuongAttention(nn.Module):
    """score(q, m) = qᵀ m (`dot`, equal widths) or qᵀ W m (`general`)."""

    def __init__(self, query_dim: int, memory_dim: int, score: str) -> None:
        super().__init__()
        if score == "dot" and query_dim != memory_dim:
            raise ValueError(f"dot attention needs equal widths, got {query_dim} and {memory_dim}")
        self.key = nn.Linear(memory_dim, query_dim, bias=False) if score == "general" else nn.Identity()

    def keys(self, memory: Tensor) -> Tensor:
        return self.key(memory)  # (B, S, Dq)

    def forward(self, query: Tensor, keys: Tensor, memory: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        """query (B, T, Dq) → context (B, T, Dm), weights (B, T, S)."""
        return _attend(query @ keys.transpose(1, 2), memory, mask)


def build_attention(kind: str, query_dim: int, memory_dim: int) -> nn.Module | None:
    """`none`, `bahdanau`, `luong_dot` or `luong_general` (the config's `model.attention`)."""
    if kind == "none":
        return None
    if kind == "bahdanau":
        return BahdanauAttention(query_dim, memory_dim, query_dim)
    return LuongAttention(query_dim, memory_dim, kind.removeprefix("luong_"))
