"""`dragoman diagram`: a Mermaid flowchart of the model a config or a model directory builds.

The chart is drawn from the nn.Module that `build_model` returns, not from the config's keys, so
it shows what runs: every layer with its class and sizes, shared and tied weights, and where
attention reads the encoder's memory (dotted edges). A bare config gives the vocabulary sizes of
`data.tokenizer` (upper bounds); a model directory gives its tokenizers' real ones (no weights
are loaded). Read top to bottom: Flowchart → diagram → draw → one function per part of a model.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from torch import nn

from dragoman.config import Config, VectorsConfig, load_config
from dragoman.data.prepare import load_tokenizers
from dragoman.errors import DragomanError
from dragoman.models import build_model
from dragoman.models.attention import BahdanauAttention
from dragoman.models.classifier import EncoderClassifier
from dragoman.models.conv import ConvEncoder
from dragoman.models.layers import FeedForward, MultiHeadAttention, PositionalEmbedding
from dragoman.models.lm import LanguageModel
from dragoman.models.rnn import RNNDecoder, RNNEncoder
from dragoman.models.transformer import Transformer, TransformerEncoder

SHAPES = {"box": ('["', '"]'), "tokens": ('(["', '"])'), "memory": ('[("', '")]')}
STYLES = {
    "note": "fill:#f6f6f6,stroke:#999,stroke-dasharray:4",
    "embed": "fill:#e8f1fb,stroke:#4a7ab5",
    "layer": "fill:#e9f6ea,stroke:#4c9a52",
    "attn": "fill:#fdf0dc,stroke:#c98a2b",
    "io": "fill:#f7e6f3,stroke:#a0508f",
}


def _escape(text: str) -> str:
    """Text safe inside a quoted Mermaid label: Mermaid's entity codes (`#quot;`) for the characters
    that would end the label, open HTML, or start an entity code (`#`)."""
    for char, code in (("#", "#35;"), ("&", "#amp;"), ('"', "#quot;"), ("<", "#lt;"), (">", "#gt;")):
        text = text.replace(char, code)
    return text


class Flowchart:
    """Mermaid text being built: nodes in (nested) subgraphs first, then all edges, then styles.

    Edges come last so that no edge line sits inside a subgraph and pulls a node into it."""

    def __init__(self) -> None:
        self.nodes: list[str] = []
        self.edges: list[str] = []
        self.indent = "    "

    def node(self, id: str, label: str, style: str = "layer", shape: str = "box") -> str:
        """`label`'s lines become `<br/>` line breaks."""
        left, right = SHAPES[shape]
        text = "<br/>".join(_escape(line) for line in label.split("\n"))
        self.nodes.append(f"{self.indent}{id}{left}{text}{right}:::{style}")
        return id

    def edge(self, a: str, b: str, label: str = "", dotted: bool = False) -> None:
        text = f'|"{_escape(label)}"|' if label else ""
        self.edges.append(f"    {a} {'-.->' if dotted else '-->'}{text} {b}")

    def chain(self, prev: str, id: str, label: str, style: str = "layer", shape: str = "box") -> str:
        """A node fed by `prev`."""
        self.edge(prev, self.node(id, label, style, shape))
        return id

    @contextmanager
    def subgraph(self, id: str, label: str) -> Iterator[None]:
        self.nodes.append(f'{self.indent}subgraph {id} ["{_escape(label)}"]')
        self.indent += "    "
        yield
        self.indent = self.indent[:-4]
        self.nodes.append(f"{self.indent}end")

    def text(self) -> str:
        styles = [f"    classDef {name} {css}" for name, css in STYLES.items()]
        return "\n".join(["flowchart TD", *self.nodes, *self.edges, *styles]) + "\n"


def diagram(path: Path) -> str:
    """Mermaid flowchart (`flowchart TD`) of the model a YAML config or a model directory describes."""
    path = Path(path)
    if not path.exists():
        fix = "give a YAML config (see configs/) or the directory of a trained model"
        raise DragomanError("no such config file or model directory", file=path, fix=fix)
    if path.is_dir():
        config = load_config(path / "config.yaml")
        src_tok, tgt_tok = load_tokenizers(path, config)
        vocab, source = (src_tok.vocab_size, tgt_tok.vocab_size), "vocab sizes: trained tokenizers"
    else:
        config = load_config(path)
        data = config.data
        tgt = data.tokenizer if data.joint_vocab else data.tgt_tokenizer or data.tokenizer
        vocab, source = (data.tokenizer.vocab_size, tgt.vocab_size), "vocab sizes: data.tokenizer"
        if config.task == "classify":  # the classes come from the training data
            vocab, source = (vocab[0], 2), "vocab size: data.tokenizer; 2 classes drawn"
    model = build_model(config.model, *vocab, config.task)
    if config.task == "classify":
        return draw_classifier(model, config, source)
    if config.task == "lm":
        return draw_language_model(model, config, source)
    return draw(model, config, source)


def draw(model: nn.Module, config: Config, note: str = "") -> str:
    """The flowchart of a built model (Transformer or RNNSeq2Seq); `note` goes into the title node."""
    chart = Flowchart()
    params = sum(p.numel() for p in model.parameters())  # shared weights count once
    chart.node("info", f"{config.name}\n{config.model.name}\n{params:,} parameters\n{note}", "note")
    prev = chart.node("src", "source tokens (B, S)", "io", "tokens")
    if isinstance(model.encoder, RNNEncoder) and model.encoder.reverse_source:
        prev = chart.chain(prev, "reverse", "reverse each source sentence\n(Sutskever et al., 2014)", "note")
    _embedding(chart, prev, "src_embed", "source embedding", model.encoder.embed, config.model.src_vectors)
    memory = _encoder(chart, model.encoder, "src_embed")
    shared = " (shared with the source)" if model.tgt_embed is model.src_embed else ""
    tgt = chart.node("tgt", "target tokens, shifted right (B, T)", "io", "tokens")
    transformer = isinstance(model, Transformer)
    tgt_input = model.tgt_input if transformer else model.tgt_embed
    _embedding(chart, tgt, "tgt_embed", f"target embedding{shared}", tgt_input, config.model.tgt_vectors)
    if transformer:
        prev, output = _transformer_decoder(chart, model, memory), model.output
    else:
        has_final = isinstance(model.encoder, RNNEncoder)
        prev, output = _rnn_decoder(chart, model.decoder, memory, has_final), model.decoder.output
    tied = "weight tied to the target embedding" if output.weight is model.tgt_embed.weight else "own weight"
    bias = "" if output.bias is not None else ", no bias"
    sizes = f"Linear {output.in_features} → {output.out_features}{bias}"
    chart.chain(prev, "logits", f"output layer\n{sizes}\n{tied}", "io")
    chart.chain("logits", "probs", f"softmax over {output.out_features} target tokens", "io", "tokens")
    return chart.text()


def _title(chart: Flowchart, model: nn.Module, config: Config, kind: str, note: str) -> None:
    params = sum(p.numel() for p in model.parameters())
    chart.node("info", f"{config.name}\n{kind}\n{params:,} parameters\n{note}", "note")


def draw_classifier(model: EncoderClassifier, config: Config, note: str = "") -> str:
    """An encoder-only classifier: BOS + tokens → encoder → pooling → linear head."""
    chart = Flowchart()
    _title(chart, model, config, f"{config.model.encoder} encoder classifier", note)
    prev = chart.node("src", "<s> + text tokens (B, 1 + S)", "io", "tokens")
    _embedding(chart, prev, "src_embed", "token embedding", model.encoder.embed, config.model.src_vectors)
    memory = _encoder(chart, model.encoder, "src_embed")
    how = "mean over the real tokens" if model.pooling == "mean" else "the first position's state (<s>)"
    prev = chart.chain(memory, "pool", f"pooling: {how}\n(B, D)", "attn")
    head = model.head[1]
    label = f"head: dropout {model.head[0].p:g}, Linear {head.in_features} → {head.out_features}"
    prev = chart.chain(prev, "logits", label, "io")
    chart.chain(prev, "probs", f"softmax over {head.out_features} classes", "io", "tokens")
    return chart.text()


def draw_language_model(model: LanguageModel, config: Config, note: str = "") -> str:
    """A decoder-only language model: causal EncoderLayers, then the output layer."""
    chart = Flowchart()
    _title(chart, model, config, "decoder-only Transformer language model", note)
    prev = chart.node("tgt", "<s> + tokens (B, T)", "io", "tokens")
    _embedding(chart, prev, "tgt_embed", "token embedding", model.input, config.model.tgt_vectors)
    title = f"decoder-only: {_layers(len(model.layers))}"
    prev = _encoder_layers(chart, "tgt_embed", model.layers, model.norm, "decoder", title, causal=True)
    output = model.output
    tied = "weight tied to the embedding" if output.weight is model.tgt_embed.weight else "own weight"
    chart.chain(
        prev,
        "logits",
        f"output layer\nLinear {output.in_features} → {output.out_features}, no bias\n{tied}",
        "io",
    )
    chart.chain("logits", "probs", f"softmax over {output.out_features} next tokens", "io", "tokens")
    return chart.text()


def _embedding(
    chart: Flowchart, prev: str, id: str, title: str, embed: nn.Module, vectors: VectorsConfig | None
) -> None:
    """A TokenEmbedding, alone (RNN encoders and decoders) or in a PositionalEmbedding."""
    token = embed.embed if isinstance(embed, PositionalEmbedding) else embed
    label = f"{title}\nnn.Embedding {token.num_embeddings} × {token.embedding_dim}\n× √{token.embedding_dim}"
    if isinstance(embed, PositionalEmbedding):
        kind = type(embed.positions).__name__.removesuffix("Positions").lower()
        label += f" + {kind} positions\n(up to {embed.max_len}), dropout {embed.dropout.p:g}"
    if vectors is not None:
        label += f"\ninitialised from {vectors.format} vectors" + (", frozen" if vectors.freeze else "")
    chart.chain(prev, id, label, "embed")


def _encoder(chart: Flowchart, encoder: nn.Module, prev: str) -> str:
    """The encoder's layers in a subgraph, then its memory; returns the memory's node id."""
    kinds = {TransformerEncoder: _transformer_encoder, RNNEncoder: _rnn_encoder, ConvEncoder: _conv_encoder}
    prev, width, extra = kinds[type(encoder)](chart, encoder, prev)
    return chart.chain(prev, "memory", f"memory: states (B, S, {width}){extra}", "embed", "memory")


def _layers(n: int) -> str:
    return f"{n} layer" + ("s" if n > 1 else "")


def _encoder_layers(
    chart: Flowchart, prev: str, layers: nn.ModuleList, norm: nn.Module, group: str, title: str, causal: bool
) -> str:
    """A stack of EncoderLayers and its final norm: a Transformer encoder's (nodes enc1_attn, …,
    enc_norm), or a language model's, masked causally (dec1_self, …, dec_norm)."""
    short, kind = ("dec", "self") if causal else ("enc", "attn")
    with chart.subgraph(group, title):
        for i, layer in enumerate(layers, 1):
            with chart.subgraph(f"{short}{i}", f"EncoderLayer {i}" + (", causal" if causal else "")):
                what = "causal self-attention" if causal else "self-attention"
                prev = chart.chain(
                    prev, f"{short}{i}_{kind}", _attention(what, layer.attention, layer.pre_norm)
                )
                prev = chart.chain(prev, f"{short}{i}_ff", _feed_forward(layer.feed_forward, layer.pre_norm))
        if isinstance(norm, nn.LayerNorm):
            prev = chart.chain(prev, f"{short}_norm", f"LayerNorm {norm.normalized_shape[0]}")
    return prev


def _transformer_encoder(chart: Flowchart, encoder: TransformerEncoder, prev: str) -> tuple[str, int, str]:
    title = f"encoder: {_layers(len(encoder.layers))}"
    prev = _encoder_layers(chart, prev, encoder.layers, encoder.norm, "encoder", title, causal=False)
    return prev, encoder.embed.embed.embedding_dim, ""


def _rnn_encoder(chart: Flowchart, encoder: RNNEncoder, prev: str) -> tuple[str, int, str]:
    rnn, name = encoder.rnn, f"nn.{type(encoder.rnn).__name__}"
    width = rnn.hidden_size * (2 if rnn.bidirectional else 1)
    hidden = f"2 × {rnn.hidden_size}\n(bidirectional)" if rnn.bidirectional else str(rnn.hidden_size)
    with chart.subgraph("encoder", f"encoder: {name}, {_layers(rnn.num_layers)}"):
        for i in range(1, rnn.num_layers + 1):
            size = rnn.input_size if i == 1 else width
            prev = chart.chain(prev, f"enc{i}", f"{name} layer {i}\ninput {size} → hidden {hidden}")
    final = "h, c" if isinstance(rnn, nn.LSTM) else "h"
    return prev, width, f"\n+ final {final} of each layer"


def _conv_encoder(chart: Flowchart, encoder: ConvEncoder, prev: str) -> tuple[str, int, str]:
    project = encoder.project
    with chart.subgraph("encoder", f"encoder: {_layers(len(encoder.convolutions))} of nn.Conv1d"):
        prev = chart.chain(prev, "enc_in", f"Linear {project.in_features} → {project.out_features} channels")
        for i, conv in enumerate(encoder.convolutions, 1):
            c, k = conv.in_channels, conv.kernel_size[0]
            label = f"nn.Conv1d {c} → 2 × {c}, kernel {k}\nGLU, + residual, × √0.5"
            prev = chart.chain(prev, f"enc{i}", label)
    return prev, project.out_features, ""


def _residual(sublayer: str, pre_norm: bool) -> str:
    return f"pre-norm: x + {sublayer}(LN(x))" if pre_norm else f"post-norm: LN(x + {sublayer}(x))"


def _attention(title: str, attention: MultiHeadAttention, pre_norm: bool) -> str:
    dim, heads = attention.query.in_features, attention.heads
    return f"{title}\n{heads} heads × {dim // heads} = {dim}\n{_residual('attn', pre_norm)}"


def _feed_forward(ff: FeedForward, pre_norm: bool) -> str:
    inner, outer = ff[0], ff[3]
    sizes = f"{inner.in_features} → {inner.out_features} → {outer.out_features}, ReLU"
    return f"feed-forward\n{sizes}\n{_residual('ff', pre_norm)}"


def _transformer_decoder(chart: Flowchart, model: Transformer, memory: str) -> str:
    prev = "tgt_embed"
    with chart.subgraph("decoder", f"decoder: {_layers(len(model.decoder))}"):
        for i, layer in enumerate(model.decoder, 1):
            with chart.subgraph(f"dec{i}", f"DecoderLayer {i}"):
                masked = _attention("masked self-attention", layer.self_attention, layer.pre_norm)
                prev = chart.chain(prev, f"dec{i}_self", masked)
                cross = _attention("cross-attention", layer.cross_attention, layer.pre_norm)
                prev = chart.chain(prev, f"dec{i}_cross", cross, "attn")
                chart.edge(memory, prev, "keys, values", dotted=True)
                prev = chart.chain(prev, f"dec{i}_ff", _feed_forward(layer.feed_forward, layer.pre_norm))
        if isinstance(model.dec_norm, nn.LayerNorm):
            prev = chart.chain(prev, "dec_norm", f"LayerNorm {model.dec_norm.normalized_shape[0]}")
    return prev


def _bridge(chart: Flowchart, decoder: RNNDecoder, memory: str, has_final: bool) -> str:
    bridge, state = decoder.bridge, "h, c" if isinstance(decoder.rnn, nn.LSTM) else "h"
    if bridge.kind == "project":
        proj = bridge.project[0]
        label = f"bridge: tanh(Linear {proj.in_features} → {bridge.layers} × {bridge.hidden})\nfor {state}"
        chart.edge(memory, "bridge", "top layer's final state" if has_final else "mean of the states")
    elif bridge.kind == "copy":
        label = f"bridge: copy\nthe encoder's final {state}, layer by layer"
        chart.edge(memory, "bridge", "final states")
    else:
        label = f"bridge: zeros\ninitial {state} = 0"
    return chart.node("bridge", label, "note")


def _rnn_decoder(chart: Flowchart, decoder: RNNDecoder, memory: str, has_final: bool) -> str:
    """Recurrent layers; then, with attention, the attention module and the attentional vector."""
    rnn, attention, name = decoder.rnn, decoder.attention, f"nn.{type(decoder.rnn).__name__}"
    bridge = _bridge(chart, decoder, memory, has_final)
    embed, feed = decoder.embed.embedding_dim, decoder.output.in_features if decoder.input_feeding else 0
    sizes = {"y(t-1)": embed, "context": rnn.input_size - embed - feed, "o(t-1)": feed}  # [y; c; o]
    inputs = " + ".join(f"{what} {size}" for what, size in sizes.items() if size)
    prev = "tgt_embed"
    with chart.subgraph("decoder", f"decoder: {name}, {_layers(rnn.num_layers)}"):
        for i in range(1, rnn.num_layers + 1):
            size = inputs if i == 1 else rnn.hidden_size
            prev = chart.chain(prev, f"dec{i}", f"{name} layer {i}\ninput {size} → hidden {rnn.hidden_size}")
            chart.edge(bridge, prev, "initial state", dotted=True)
    if attention is None:
        return prev
    if isinstance(attention, BahdanauAttention):
        label = f"Bahdanau attention\nvᵀ tanh(W h + U m), {attention.key.out_features} wide"
        chart.edge(prev, chart.node("attn", label, "attn"), "query: previous h", dotted=True)
        chart.edge("attn", "dec1", "context c(t)")
    else:
        general = isinstance(attention.key, nn.Linear)
        label = "Luong attention, general\nscore hᵀ W m" if general else "Luong attention, dot\nscore hᵀ m"
        chart.edge(prev, chart.node("attn", label, "attn"), "query h(t)")
    chart.edge(memory, "attn", "keys, values", dotted=True)
    combine = decoder.combine
    label = f"attentional vector o(t)\ntanh(Linear {combine.in_features} → {combine.out_features})"
    chart.chain(prev, "combine", label)
    chart.edge("attn", "combine", "context c(t)")
    if decoder.input_feeding:
        chart.edge("combine", "dec1", "input feeding: o(t-1)", dotted=True)
    return "combine"
