"""Recurrent encoder-decoders: the fixed-vector model of Sutskever et al. (2014, "Sequence to
Sequence Learning with Neural Networks") and the attention models of Bahdanau et al. (2015) and
Luong et al. (2015), with torch's own nn.RNN / nn.GRU / nn.LSTM.

Read top to bottom: RNNEncoder → Bridge → RNNState → RNNDecoder → RNNSeq2Seq. The decoder reads
the memory of any encoder (RNNEncoder, conv.ConvEncoder, transformer.TransformerEncoder).

One decoder step, for the three kinds of `attention`:
    none      h_t = RNN([y_{t-1}; (o_{t-1})], h_{t-1});  o_t = h_t
    bahdanau  c_t = attend(h_{t-1});  h_t = RNN([y_{t-1}; c_t; (o_{t-1})], h_{t-1});  o_t = tanh(W[h_t; c_t])
    luong_*   h_t = RNN([y_{t-1}; (o_{t-1})], h_{t-1});  c_t = attend(h_t);  o_t = tanh(W[h_t; c_t])
and logits_t = W_out dropout(o_t). (o_{t-1}) is input feeding (Luong et al., 3.3), when enabled.

Shapes: B batch, S source length, T target length, E embedding width, H encoder hidden size per
direction, Dm memory width (H or 2H), Hd decoder hidden size, L layers, V vocabulary.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from dragoman.data.tokenizers import PAD
from dragoman.models.attention import BahdanauAttention, build_attention
from dragoman.models.base import Memory, memory_rows, repeat_rows
from dragoman.models.layers import Dropout, TokenEmbedding

RNNS = {"rnn": nn.RNN, "gru": nn.GRU, "lstm": nn.LSTM}


def _reverse_padded(x: Tensor, lengths: Tensor) -> Tensor:
    """Reverse each row's first `lengths[b]` positions along dim 1, leaving the padding in place."""
    positions = torch.arange(x.size(1), device=x.device)[None, :]  # (1, S)
    index = torch.where(positions < lengths[:, None], lengths[:, None] - 1 - positions, positions)
    return x.gather(1, index if x.dim() == 2 else index[:, :, None].expand_as(x))


class RNNEncoder(nn.Module):
    """Embeddings → a (bi)directional RNN over packed sequences, so padding changes nothing."""

    def __init__(
        self,
        embed: TokenEmbedding,
        kind: str,
        hidden: int,
        layers: int,
        bidirectional: bool,
        dropout: float,
        reverse_source: bool = False,
    ) -> None:
        super().__init__()
        self.embed = embed
        self.rnn = RNNS[kind](
            embed.embedding_dim,
            hidden,
            layers,
            batch_first=True,
            dropout=dropout if layers > 1 else 0.0,
            bidirectional=bidirectional,
        )
        self.dropout = Dropout(dropout)
        self.reverse_source = reverse_source

    def forward(self, src: Tensor) -> Memory:
        """src (B, S) → Memory: states (B, S, Dm), final state per layer (L, B, Dm)."""
        mask = src != PAD
        lengths = mask.sum(dim=1).clamp(min=1)  # (B,) an empty source reads one PAD
        if self.reverse_source:  # Sutskever et al.: short paths between the first words of each side
            src = _reverse_padded(src, lengths)
        packed = pack_padded_sequence(
            self.dropout(self.embed(src)), lengths.cpu(), batch_first=True, enforce_sorted=False
        )
        out, final = self.rnn(packed)
        states, _ = pad_packed_sequence(out, batch_first=True, total_length=src.size(1))  # (B, S, Dm)
        if self.reverse_source:  # back in source order, so attention weights line up with the words
            states = _reverse_padded(states, lengths)
        finals = final if isinstance(final, tuple) else (final,)
        layers, directions = self.rnn.num_layers, 2 if self.rnn.bidirectional else 1
        # (L·dirs, B, H) → (L, B, dirs·H): forward and backward final states side by side.
        finals = tuple(
            f.view(layers, directions, *f.shape[1:]).permute(0, 2, 1, 3).reshape(layers, f.size(1), -1)
            for f in finals
        )
        return Memory(states, mask, finals)


class Bridge(nn.Module):
    """The decoder's initial state from the encoder's (Memory.final).

    project: tanh(W s) for every decoder layer from the encoder's top-layer final state (its h for
             the decoder's h, its c, or h again for a GRU/RNN encoder, for an LSTM decoder's c);
             encoders without a final state (cnn, transformer) give the mean of their states
             (Cho et al., 2014 use the same tanh projection).
    copy:    the encoder's final states as they are (same kind, layers and width; Sutskever et al.).
    zeros:   all zeros; the decoder learns about the source from attention alone.
    """

    def __init__(self, kind: str, memory_dim: int, hidden: int, layers: int, lstm: bool) -> None:
        super().__init__()
        self.kind, self.hidden, self.layers = kind, hidden, layers
        self.parts = 2 if lstm else 1
        if kind == "project":
            self.project = nn.ModuleList(nn.Linear(memory_dim, layers * hidden) for _ in range(self.parts))

    def forward(self, memory: Memory) -> tuple[Tensor, ...]:
        B = memory.states.size(0)
        if self.kind == "copy":
            return tuple(f.contiguous() for f in memory.final)
        if self.kind == "zeros":
            zeros = memory.states.new_zeros(self.layers, B, self.hidden)
            return (zeros,) * self.parts
        if memory.final is not None:
            sources = [memory.final[min(i, len(memory.final) - 1)][-1] for i in range(self.parts)]
        else:
            keep = memory.mask[:, :, None].to(memory.states.dtype)  # (B, S, 1)
            mean = (memory.states * keep).sum(1) / keep.sum(1).clamp(min=1)  # (B, Dm)
            sources = [mean] * self.parts
        return tuple(
            proj(s).tanh().view(B, self.layers, self.hidden).transpose(0, 1).contiguous()  # (L, B, Hd)
            for proj, s in zip(self.project, sources)
        )


@dataclass
class RNNState:
    """Decoder state for search: the recurrent state, the last attentional vector, the memory."""

    hidden: tuple[Tensor, ...]  # (L, B, Hd) each: (h,) or (h, c)
    feed: Tensor | None  # (B, E) o_{t-1} for input feeding
    memory: Tensor  # (B, S, Dm)
    keys: Tensor  # (B, S, ·) the memory projected for attention
    mask: Tensor  # (B, S)
    beams: int = 1  # rows per memory row: beam search keeps the memory once per sentence

    def select(self, index: Tensor) -> RNNState:
        memory, keys, mask = self.memory, self.keys, self.mask
        sentences = memory_rows(index, self.beams, mask.size(0))
        if sentences is not None:
            memory = self.memory.index_select(0, sentences)
            # No attention and luong_dot use the memory itself as keys: copy it once, not twice.
            keys = memory if self.keys is self.memory else self.keys.index_select(0, sentences)
            mask = self.mask.index_select(0, sentences)
        hidden = tuple(h.index_select(1, index) for h in self.hidden)
        feed = None if self.feed is None else self.feed.index_select(0, index)
        return RNNState(hidden, feed, memory, keys, mask, self.beams)

    def expand(self, beams: int) -> RNNState:
        index = repeat_rows(self.hidden[0][0], beams)
        hidden = tuple(h.index_select(1, index) for h in self.hidden)
        feed = None if self.feed is None else self.feed.index_select(0, index)
        return RNNState(hidden, feed, self.memory, self.keys, self.mask, self.beams * beams)


class RNNDecoder(nn.Module):
    def __init__(
        self,
        embed: TokenEmbedding,
        vocab: int,
        kind: str,
        hidden: int,
        layers: int,
        memory_dim: int,
        attention: str,
        input_feeding: bool,
        bridge: str,
        dropout: float,
        tie_output: bool,
        scheduled_sampling: float = 0.0,
    ) -> None:
        super().__init__()
        E = embed.embedding_dim
        self.embed = embed
        self.attention = build_attention(attention, hidden, memory_dim)
        self.feeds_context = isinstance(self.attention, BahdanauAttention)  # c_t goes into the RNN
        self.input_feeding = input_feeding
        out_dim = hidden if self.attention is None else E
        inputs = E + (memory_dim if self.feeds_context else 0) + (out_dim if input_feeding else 0)
        self.rnn = RNNS[kind](
            inputs, hidden, layers, batch_first=True, dropout=dropout if layers > 1 else 0.0
        )
        self.bridge = Bridge(bridge, memory_dim, hidden, layers, lstm=kind == "lstm")
        self.combine = None if self.attention is None else nn.Linear(hidden + memory_dim, E)
        self.dropout = Dropout(dropout)
        self.output = nn.Linear(out_dim, vocab, bias=False)
        if tie_output:
            if out_dim != E:
                raise ValueError(f"a tied output layer needs width {E}, the decoder gives {out_dim}")
            self.output.weight = embed.weight
        self.scheduled_sampling = scheduled_sampling

    def init_state(self, memory: Memory) -> RNNState:
        B = memory.states.size(0)
        feed = memory.states.new_zeros(B, self.output.in_features) if self.input_feeding else None
        keys = memory.states if self.attention is None else self.attention.keys(memory.states)
        return RNNState(self.bridge(memory), feed, memory.states, keys, memory.mask)

    def _advance(self, x: Tensor, state: RNNState) -> tuple[Tensor, RNNState, Tensor | None]:
        """x (B, T, E) embedded inputs → attentional vectors o (B, T, ·), next state, weights (B, T, S).

        T > 1 only when no step depends on the previous one's output (no Bahdanau context, no
        input feeding): then the RNN and the attention run over the whole sequence at once.
        """
        weights = None
        hidden = state.hidden if len(state.hidden) == 2 else state.hidden[0]
        inputs = [x]
        if self.feeds_context:
            query = state.hidden[0][-1][:, None, :]  # (B, 1, Hd) the top layer's h_{t-1}
            context, weights = self._attend(query, state)
            inputs.append(context)
        if self.input_feeding:
            inputs.append(state.feed[:, None, :])
        out, hidden = self.rnn(torch.cat(inputs, dim=-1), hidden)  # (B, T, Hd)
        hidden = hidden if isinstance(hidden, tuple) else (hidden,)
        if self.attention is None:
            o = out
        else:
            if not self.feeds_context:
                context, weights = self._attend(out, state)
            o = self.combine(torch.cat([out, context], dim=-1)).tanh()  # (B, T, E)
        feed = o[:, -1] if self.input_feeding else None
        return o, RNNState(hidden, feed, state.memory, state.keys, state.mask, state.beams), weights

    def _attend(self, query: Tensor, state: RNNState) -> tuple[Tensor, Tensor]:
        """Attention over the memory; when beam search keeps one memory row for the K beams of a
        sentence, the K rows of the query attend to it together, as K steps of one row."""
        B, T, _ = query.shape
        rows = state.memory.size(0)
        context, weights = self.attention(
            query.reshape(rows, B // rows * T, -1), state.keys, state.memory, state.mask
        )
        return context.reshape(B, T, -1), weights.reshape(B, T, -1)

    def step(self, tokens: Tensor, state: RNNState) -> tuple[Tensor, RNNState]:
        """tokens (B,) → logits (B, V), next state."""
        o, state, _ = self._advance(self.dropout(self.embed(tokens[:, None])), state)
        return self.output(self.dropout(o[:, 0])), state

    def run(self, tgt_in: Tensor, memory: Memory) -> tuple[Tensor, Tensor | None]:
        """Teacher forcing (with scheduled sampling, Bengio et al., 2015, when training with it on):
        tgt_in (B, T) → logits (B, T, V) and attention weights (B, T, S) or None."""
        state = self.init_state(memory)
        sampling = self.training and self.scheduled_sampling > 0
        if not (self.feeds_context or self.input_feeding or sampling):  # all steps at once
            o, _, weights = self._advance(self.dropout(self.embed(tgt_in)), state)
            return self.output(self.dropout(o)), weights
        logits, weights = [], []
        tokens = tgt_in[:, 0]
        for t in range(tgt_in.size(1)):
            if sampling and t > 0:  # feed the model's own guess instead of the reference, now and then
                own = torch.rand(tokens.shape, device=tokens.device) < self.scheduled_sampling
                tokens = torch.where(own, logits[-1].argmax(-1).detach(), tgt_in[:, t])
            elif t > 0:
                tokens = tgt_in[:, t]
            o, state, w = self._advance(self.dropout(self.embed(tokens[:, None])), state)
            logits.append(self.output(self.dropout(o[:, 0])))
            weights.append(w)
        return torch.stack(logits, dim=1), None if weights[0] is None else torch.cat(weights, dim=1)


class RNNSeq2Seq(nn.Module):
    """Any encoder with an RNN decoder; implements the decoding contract of `models/base.py`."""

    def __init__(self, encoder: nn.Module, decoder: RNNDecoder, max_positions: int) -> None:
        super().__init__()
        self.encoder, self.decoder = encoder, decoder
        self.max_positions = max_positions

    @property
    def src_embed(self) -> TokenEmbedding:
        embed = self.encoder.embed
        return getattr(embed, "embed", embed)  # inside a PositionalEmbedding for cnn/transformer

    @property
    def tgt_embed(self) -> TokenEmbedding:
        return self.decoder.embed

    def encode(self, src: Tensor) -> Memory:
        return self.encoder(src)

    def forward(self, src: Tensor, tgt_in: Tensor) -> Tensor:
        return self.decoder.run(tgt_in, self.encode(src))[0]

    @torch.no_grad()
    def attention_weights(self, src: Tensor, tgt_in: Tensor) -> Tensor:
        """Attention probabilities of teacher-forced decoding: (1, B, 1, T, S), like the Transformer's
        (layers, B, heads, T, S)."""
        _, weights = self.decoder.run(tgt_in, self.encode(src))
        if weights is None:
            raise ValueError("this model has no attention (model.attention: none)")
        return weights[None, :, None]

    def init_state(self, memory: Memory) -> RNNState:
        return self.decoder.init_state(memory)

    def step(self, tokens: Tensor, state: RNNState) -> tuple[Tensor, RNNState]:
        return self.decoder.step(tokens, state)
