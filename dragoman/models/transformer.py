"""Transformer encoder-decoder (Vaswani et al., 2017, "Attention Is All You Need").

Read leaves first: EncoderLayer → DecoderLayer → TransformerEncoder → Transformer. The layers come
from `layers.py`; the encoder-only classifier (classifier.py) reuses TransformerEncoder and the
decoder-only language model (lm.py) reuses EncoderLayer, masked causally.

Shapes: B batch, S source length, T target length, D model width, H heads, Dh = D / H, V vocab.
Pre-norm is the default (stable without long warm-up, Xiong et al., 2020); post-norm is the
original. Attention runs through torch's scaled_dot_product_attention.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from dragoman.data.tokenizers import PAD
from dragoman.models.base import Memory, memory_rows, repeat_rows
from dragoman.models.layers import (
    KV,
    Block,
    FeedForward,
    MultiHeadAttention,
    PositionalEmbedding,
    TokenEmbedding,
)


class EncoderLayer(Block):
    """Self-attention over the whole sequence, then a feed-forward network.

    Causal and with a cache of the earlier positions' keys/values, it is a decoder-only layer.
    """

    def __init__(
        self,
        dim: int,
        heads: int,
        ff: int,
        dropout: float,
        attention_dropout: float,
        pre_norm: bool,
    ):
        super().__init__(dropout, pre_norm)
        self.attention = MultiHeadAttention(dim, heads, attention_dropout)
        self.feed_forward = FeedForward(dim, ff, dropout)
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)

    def forward(
        self, x: Tensor, mask: Tensor | None, causal: bool = False, past: KV | None = None
    ) -> tuple[Tensor, KV]:
        """x (B, L, D) → (B, L, D), and the self-attention keys/values of every position so far."""
        attended, kv = self.attention.self_attend(self.sub_in(x, self.norm1), mask, causal, past)
        x = self.sub_out(x, attended, self.norm1)
        return self.sub_out(x, self.feed_forward(self.sub_in(x, self.norm2)), self.norm2), kv


class DecoderLayer(Block):
    """Causal self-attention, attention over the encoder memory, feed-forward.

    `cache` holds the keys/values of the positions decoded so far: given, x is the newest step
    only and attends to the cache plus itself; absent, x is the whole sequence, masked causally.
    """

    def __init__(
        self,
        dim: int,
        heads: int,
        ff: int,
        dropout: float,
        attention_dropout: float,
        pre_norm: bool,
    ):
        super().__init__(dropout, pre_norm)
        self.self_attention = MultiHeadAttention(dim, heads, attention_dropout)
        self.cross_attention = MultiHeadAttention(dim, heads, attention_dropout)
        self.feed_forward = FeedForward(dim, ff, dropout)
        self.norm1, self.norm2, self.norm3 = nn.LayerNorm(dim), nn.LayerNorm(dim), nn.LayerNorm(dim)

    def forward(
        self, x: Tensor, memory: KV, memory_mask: Tensor, cache: KV | None = None
    ) -> tuple[Tensor, KV]:
        attended, kv = self.self_attention.self_attend(
            self.sub_in(x, self.norm1), causal=cache is None, past=cache
        )
        x = self.sub_out(x, attended, self.norm1)
        h = self.sub_in(x, self.norm2)
        x = self.sub_out(x, self.attend_memory(h, memory, memory_mask), self.norm2)
        x = self.sub_out(x, self.feed_forward(self.sub_in(x, self.norm3)), self.norm3)
        return x, kv

    def attend_memory(self, h: Tensor, memory: KV, mask: Tensor) -> Tensor:
        """Cross-attention; when beam search keeps one memory row for the K beams of a sentence,
        the K rows of h attend to it together, as K query positions of one row."""
        B, T, D = h.shape
        rows = memory.key.size(0)
        out = self.cross_attention(h.reshape(rows, B // rows * T, D), memory.key, memory.value, mask)
        return out.reshape(B, T, D)


@dataclass
class TransformerState:
    """Decoder state for search: per layer the memory's keys/values and the self-attention cache."""

    memory: list[KV]
    memory_mask: Tensor  # (B, 1, 1, S)
    cache: list[KV]
    position: int  # how many target tokens were fed so far

    beams: int = 1  # rows per memory row: beam search keeps the memory once per sentence

    def select(self, index: Tensor) -> TransformerState:
        memory, mask = self.memory, self.memory_mask
        sentences = memory_rows(index, self.beams, mask.size(0))
        if sentences is not None:
            memory = [kv.select(sentences) for kv in memory]
            mask = mask.index_select(0, sentences)
        cache = [kv.select(index) for kv in self.cache]
        return TransformerState(memory, mask, cache, self.position, self.beams)

    def expand(self, beams: int) -> TransformerState:
        cache = [kv.select(repeat_rows(kv.key, beams)) for kv in self.cache]
        return TransformerState(self.memory, self.memory_mask, cache, self.position, self.beams * beams)


class TransformerEncoder(nn.Module):
    """Embedding with positions, a stack of EncoderLayers, a final norm (pre-norm): src → Memory.

    Also the encoder of an RNN decoder (rnn.py) and of the encoder-only classifier (classifier.py).
    """

    def __init__(
        self,
        embed: TokenEmbedding,
        heads: int,
        ff: int,
        layers: int,
        dropout: float,
        attention_dropout: float,
        pre_norm: bool,
        positions: str,
        max_positions: int,
    ) -> None:
        super().__init__()
        dim = embed.embedding_dim
        self.embed = PositionalEmbedding(embed, positions, max_positions, dropout)
        self.layers = nn.ModuleList(
            EncoderLayer(dim, heads, ff, dropout, attention_dropout, pre_norm) for _ in range(layers)
        )
        # Pre-norm leaves the residual stream un-normalised: one last norm.
        self.norm = nn.LayerNorm(dim) if pre_norm else nn.Identity()

    def forward(self, src: Tensor) -> Memory:
        """src: (B, S) token ids, PAD-padded → Memory with states (B, S, D)."""
        mask = src != PAD  # (B, S)
        x = self.embed(src)
        attn_mask = mask[:, None, None, :]  # (B, 1, 1, S)
        for layer in self.layers:
            x, _ = layer(x, attn_mask)
        return Memory(self.norm(x), mask)


class Transformer(nn.Module):
    """Encoder-decoder; implements the decoding contract of `models/base.py`."""

    def __init__(
        self,
        src_vocab: int,
        tgt_vocab: int,
        dim: int = 512,
        heads: int = 8,
        ff: int = 2048,
        enc_layers: int = 6,
        dec_layers: int = 6,
        dropout: float = 0.1,
        attention_dropout: float = 0.0,
        pre_norm: bool = True,
        positions: str = "sinusoidal",
        max_positions: int = 1024,
        share_embeddings: bool = False,
        tie_output: bool = True,
    ) -> None:
        super().__init__()
        self.src_embed = TokenEmbedding(src_vocab, dim, PAD)
        if share_embeddings:
            if src_vocab != tgt_vocab:
                raise ValueError("shared embeddings need one joint vocabulary")
            self.tgt_embed = self.src_embed
        else:
            self.tgt_embed = TokenEmbedding(tgt_vocab, dim, PAD)
        self.encoder = TransformerEncoder(
            self.src_embed,
            heads,
            ff,
            enc_layers,
            dropout,
            attention_dropout,
            pre_norm,
            positions,
            max_positions,
        )
        self.tgt_input = PositionalEmbedding(self.tgt_embed, positions, max_positions, dropout)
        self.decoder = nn.ModuleList(
            DecoderLayer(dim, heads, ff, dropout, attention_dropout, pre_norm) for _ in range(dec_layers)
        )
        self.dec_norm = nn.LayerNorm(dim) if pre_norm else nn.Identity()
        self.output = nn.Linear(dim, tgt_vocab, bias=False)
        if tie_output:
            self.output.weight = self.tgt_embed.weight  # Press & Wolf (2017)
        else:
            nn.init.normal_(self.output.weight, mean=0.0, std=dim**-0.5)
        self.max_positions = max_positions

    def encode(self, src: Tensor) -> Memory:
        """src: (B, S) token ids, PAD-padded → Memory with states (B, S, D)."""
        return self.encoder(src)

    def _memory_kv(self, memory: Memory) -> list[KV]:
        return [KV(*layer.cross_attention.project_kv(memory.states)) for layer in self.decoder]

    def decode(self, tgt_in: Tensor, memory: Memory) -> Tensor:
        """Teacher-forced decoding of whole sequences: tgt_in (B, T) → logits (B, T, V)."""
        x = self.tgt_input(tgt_in)
        mask = memory.mask[:, None, None, :]
        for layer, kv in zip(self.decoder, self._memory_kv(memory)):
            x, _ = layer(x, kv, mask)
        return self.output(self.dec_norm(x))

    def forward(self, src: Tensor, tgt_in: Tensor) -> Tensor:
        return self.decode(tgt_in, self.encode(src))

    @torch.no_grad()
    def attention_weights(self, src: Tensor, tgt_in: Tensor) -> Tensor:
        """Cross-attention probabilities of teacher-forced decoding: (layers, B, H, T, S)."""
        attentions = [layer.cross_attention for layer in self.decoder]
        for attention in attentions:
            attention.recorded = src.new_empty(0)
        try:
            self.decode(tgt_in, self.encode(src))
            return torch.stack([attention.recorded for attention in attentions])
        finally:
            for attention in attentions:
                attention.recorded = None

    def init_state(self, memory: Memory) -> TransformerState:
        B, _, D = memory.states.shape
        heads = self.decoder[0].self_attention.heads
        empty = memory.states.new_zeros(B, heads, 0, D // heads)  # (B, H, 0, Dh)
        return TransformerState(
            self._memory_kv(memory),
            memory.mask[:, None, None, :],
            [KV(empty, empty) for _ in self.decoder],
            0,
        )

    def step(self, tokens: Tensor, state: TransformerState) -> tuple[Tensor, TransformerState]:
        """One decoding step: tokens (B,) → logits (B, V), using and growing the cache."""
        x = self.tgt_input(tokens[:, None], state.position)  # (B, 1, D)
        cache = []
        for layer, kv, past in zip(self.decoder, state.memory, state.cache):
            x, new = layer(x, kv, state.memory_mask, past)
            cache.append(new)
        logits = self.output(self.dec_norm(x[:, 0]))  # (B, V)
        return logits, TransformerState(
            state.memory, state.memory_mask, cache, state.position + 1, state.beams
        )
