"""Export a trained Transformer to CTranslate2 (github.com/OpenNMT/CTranslate2), a C++ inference
engine for fast CPU and GPU decoding, optionally with int8/int16/float16 weights.

    dragoman export runs/transformer --to ctranslate2 runs/transformer-ct2 --quantization int8

    from dragoman.export import CTranslate2Translator
    translator = CTranslate2Translator.load("runs/transformer-ct2", intra_threads=2)
    print(translator.translate(["Hello world"], beam=5))

The weights go through CTranslate2's own model spec (`TransformerSpec`), one variable at a time;
nothing is converted by name matching. How our Transformer (models/transformer.py, layers.py)
maps onto it:

- norms: `model.norm` pre/post → the spec's `pre_norm`; per layer norm1 → self-attention's norm,
  (decoder) norm2 → cross-attention's norm, the last one → the feed-forward's norm. Pre-norm has a
  final norm after each stack (`encoder.norm`, `dec_norm`); post-norm has none, nor does the spec.
  Epsilon 1e-5 (torch's default) is also CTranslate2's; we write it into config.json anyway.
- positions: written out as an explicit table, row p for position p, from our own module (the
  sinusoidal table or the learned embedding). CTranslate2's built-in sinusoids are
  tensor2tensor's (all sines, then all cosines, frequencies 10000**(-i / (D/2 - 1))); ours
  interleave sin/cos with frequencies 10000**(-i / (D/2)), so its default would be another
  function (tests/test_export.py fails with it).
- embeddings: ours are multiplied by sqrt(d_model) before the positions are added, which is the
  spec's `scale_embeddings`. Shared source/target embeddings and the tied output layer are the
  same array in the spec; `optimize` stores it once (an alias).
- attention: our query is one linear and keys/values one fused linear [K; V]. Self-attention in
  the spec is one fused [Q; K; V] linear, cross-attention a query linear and a fused [K; V]
  linear, then the output linear. Heads split the same way (contiguous blocks of D/H).
- feed-forward: Linear → ReLU → Linear, the spec's default activation. The output layer has no bias.
- tokens: the vocabularies are our tokenizers' pieces in id order, so piece i is id i in both.
  Ids 0-3 are <pad> <unk> <s> </s>; the decoder starts from <s> and stops at </s> as ours does.
  Our encoder reads the source ids alone, so add_source_bos and add_source_eos stay off.

The export directory also holds config.yaml and the tokenizer files, so it is self-contained:
`CTranslate2Translator` tokenizes with our tokenizer, hands CTranslate2 the pieces, and maps the
output pieces back to ids to detokenize.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from dragoman.config import Config, load_config
from dragoman.data.prepare import load_tokenizers, tokenizer_prefixes
from dragoman.data.tokenizers import BOS, EOS, SPECIALS, UNK, Tokenizer
from dragoman.errors import DragomanError
from dragoman.models.layers import MultiHeadAttention, SinusoidalPositions
from dragoman.models.transformer import Transformer

LAYER_NORM_EPSILON = 1e-5  # torch.nn.LayerNorm's default, which every dragoman norm uses


def _import_ctranslate2() -> Any:
    try:
        import ctranslate2
    except ImportError:
        raise DragomanError(
            "exporting to CTranslate2 needs the ctranslate2 package",
            fix='pip install "dragoman[export]"',
        ) from None
    return ctranslate2


def export_ctranslate2(
    model_dir: Path, out_dir: Path, quantization: str | None = None, checkpoint: str = "best"
) -> Path:
    """Write the Transformer of `model_dir` as a CTranslate2 model directory `out_dir`.

    `quantization` is the weight type CTranslate2 stores (None keeps float32). An existing
    `out_dir` is replaced only if it holds an earlier export; the new one is written beside it
    and renamed into place, so a failure leaves nothing half-written.
    """
    _import_ctranslate2()
    from dragoman.translator import load_model

    model_dir, out_dir = Path(model_dir), Path(out_dir)
    model, config, src_tok, tgt_tok = load_model(model_dir, checkpoint)
    if not isinstance(model, Transformer):
        raise DragomanError(
            f"only Transformer models can be exported to CTranslate2, not model.encoder: "
            f"{config.model.encoder} with model.decoder: {config.model.decoder}",
            file=model_dir / "config.yaml",
            fix="export a model trained with encoder: transformer and decoder: transformer",
        )
    _check_out_dir(out_dir, model_dir)
    spec = build_spec(model, config, src_tok, tgt_tok)
    spec.validate()
    try:
        spec.optimize(quantization=quantization)
    except ValueError as exc:
        raise DragomanError(f"cannot store the weights as {quantization!r} ({exc})") from None

    tmp = out_dir.parent / f".{out_dir.name}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        spec.save(str(tmp))
        shutil.copy(model_dir / "config.yaml", tmp / "config.yaml")
        for prefix in set(tokenizer_prefixes(model_dir, config.data)):
            for suffix in (".json", ".spm"):
                if (path := Path(f"{prefix}{suffix}")).exists():
                    shutil.copy(path, tmp / path.name)
        shutil.rmtree(out_dir, ignore_errors=True)
        os.replace(tmp, out_dir)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out_dir


def _check_out_dir(out_dir: Path, model_dir: Path) -> None:
    if out_dir.resolve() == model_dir.resolve():
        raise DragomanError(
            "the export would overwrite the model", file=out_dir, fix="choose another OUT_DIR"
        )
    earlier_export = (out_dir / "model.bin").is_file()
    if out_dir.exists() and not earlier_export and (not out_dir.is_dir() or any(out_dir.iterdir())):
        raise DragomanError(
            "output directory exists and is not a CTranslate2 export",
            file=out_dir,
            fix="choose a new OUT_DIR, or empty this one",
        )


def _array(tensor: Tensor) -> np.ndarray:
    return tensor.detach().float().cpu().numpy()


def _set_linear(spec: Any, linears: list[nn.Linear]) -> None:
    """One spec linear from one torch linear, or several fused along the output dimension."""
    spec.weight = np.concatenate([_array(linear.weight) for linear in linears])
    biases = [linear.bias for linear in linears]
    if all(bias is not None for bias in biases):
        spec.bias = np.concatenate([_array(bias) for bias in biases])


def _set_norm(spec: Any, norm: nn.LayerNorm) -> None:
    spec.gamma, spec.beta = _array(norm.weight), _array(norm.bias)


def _set_attention(spec: Any, attention: MultiHeadAttention, norm: nn.LayerNorm, fused: bool) -> None:
    """fused: self-attention, one [Q; K; V] linear; else cross-attention, Q and [K; V]."""
    _set_norm(spec.layer_norm, norm)
    if fused:
        _set_linear(spec.linear[0], [attention.query, attention.key_value])
    else:
        _set_linear(spec.linear[0], [attention.query])
        _set_linear(spec.linear[1], [attention.key_value])
    _set_linear(spec.linear[-1], [attention.out])


def _set_feed_forward(spec: Any, feed_forward: nn.Sequential, norm: nn.LayerNorm) -> None:
    _set_norm(spec.layer_norm, norm)
    _set_linear(spec.linear_0, [feed_forward[0]])
    _set_linear(spec.linear_1, [feed_forward[3]])


def _set_inputs(spec: Any, embedding: nn.Module) -> None:
    """Token embedding (scaled by sqrt(D) in both) and an explicit position table."""
    embeddings = spec.embeddings[0] if isinstance(spec.embeddings, list) else spec.embeddings
    embeddings.weight = _array(embedding.embed.weight)  # the encoder's is a list (source factors)
    spec.scale_embeddings = True
    positions = embedding.positions
    if isinstance(positions, SinusoidalPositions):
        table = positions.table
    else:
        table = positions.embedding.weight  # LearnedPositions
    spec.position_encodings.encodings = _array(table)  # (max_positions, D)


def build_spec(model: Transformer, config: Config, src_tok: Tokenizer, tgt_tok: Tokenizer) -> Any:
    """CTranslate2's TransformerSpec holding `model`'s weights and the tokenizers' vocabularies."""
    from ctranslate2.specs import common_spec, transformer_spec

    encoder, decoder = model.encoder, model.decoder
    pre_norm = config.model.norm == "pre"
    spec = transformer_spec.TransformerSpec.from_config(
        (len(encoder.layers), len(decoder)),
        decoder[0].self_attention.heads,
        pre_norm=pre_norm,
        activation=common_spec.Activation.RELU,
    )
    spec.config.layer_norm_epsilon = LAYER_NORM_EPSILON
    spec.config.unk_token = SPECIALS[UNK]
    spec.config.bos_token = spec.config.decoder_start_token = SPECIALS[BOS]
    spec.config.eos_token = SPECIALS[EOS]
    spec.config.add_source_bos = spec.config.add_source_eos = False

    _set_inputs(spec.encoder, encoder.embed)
    for layer_spec, layer in zip(spec.encoder.layer, encoder.layers):
        _set_attention(layer_spec.self_attention, layer.attention, layer.norm1, fused=True)
        _set_feed_forward(layer_spec.ffn, layer.feed_forward, layer.norm2)
    if pre_norm:
        _set_norm(spec.encoder.layer_norm, encoder.norm)

    _set_inputs(spec.decoder, model.tgt_input)
    for layer_spec, layer in zip(spec.decoder.layer, decoder):
        _set_attention(layer_spec.self_attention, layer.self_attention, layer.norm1, fused=True)
        _set_attention(layer_spec.attention, layer.cross_attention, layer.norm2, fused=False)
        _set_feed_forward(layer_spec.ffn, layer.feed_forward, layer.norm3)
    if pre_norm:
        _set_norm(spec.decoder.layer_norm, model.dec_norm)
    _set_linear(spec.decoder.projection, [model.output])

    spec.register_source_vocabulary(_vocabulary(src_tok))
    spec.register_target_vocabulary(_vocabulary(tgt_tok))
    return spec


def _vocabulary(tokenizer: Tokenizer) -> list[str]:
    pieces = tokenizer.pieces(range(tokenizer.vocab_size))
    if len(set(pieces)) != len(pieces):  # CTranslate2 looks tokens up by string
        raise DragomanError(
            "the tokenizer has duplicate pieces", fix="train the tokenizer again before exporting"
        )
    return pieces


class CTranslate2Translator:
    """Translates with an exported model: our tokenizers around a `ctranslate2.Translator`.

    Decoding mirrors `dragoman.Translator`: the config's decode section (overridable per call),
    inputs truncated to data.max_len, batches of ≤ batch_tokens source tokens sorted by length,
    at most max_len_a × length + max_len_b output tokens. Greedy search gives the same tokens as
    dragoman's; beam search is CTranslate2's own, whose length penalty divides by length**alpha
    rather than GNMT's ((5 + length) / 6)**alpha, so beam outputs can differ a little.
    """

    def __init__(self, translator: Any, config: Config, src_tok: Tokenizer, tgt_tok: Tokenizer) -> None:
        self.translator, self.config = translator, config
        self.src_tok, self.tgt_tok = src_tok, tgt_tok
        self.ids = {piece: i for i, piece in enumerate(_vocabulary(tgt_tok))}

    @classmethod
    def load(cls, export_dir: str | Path, device: str = "cpu", **options) -> CTranslate2Translator:
        """`options` go to ctranslate2.Translator (compute_type, intra_threads, inter_threads, ...)."""
        ctranslate2 = _import_ctranslate2()
        export_dir = Path(export_dir)
        if not (export_dir / "model.bin").exists():
            raise DragomanError(
                "not a CTranslate2 export (no model.bin)",
                file=export_dir,
                fix="write one with `dragoman export MODEL_DIR --to ctranslate2 OUT_DIR`",
            )
        config = load_config(export_dir / "config.yaml")
        src_tok, tgt_tok = load_tokenizers(export_dir, config)
        translator = ctranslate2.Translator(str(export_dir), device=device, **options)
        return cls(translator, config, src_tok, tgt_tok)

    def translate(self, texts: list[str], **options) -> list[str]:
        """One translation per text; `options` override the config's decode section."""
        ids = [seq[: self.config.data.max_len] for seq in self.src_tok.encode_batch(texts)]
        return [self.tgt_tok.decode(out) for out in self.translate_ids(ids, **options)]

    def translate_ids(self, ids: list[list[int]], **options) -> list[list[int]]:
        """Source ids (no BOS/EOS) → the best output's ids (no BOS/EOS), one per input."""
        from dragoman.translator import Translator, override

        decode = override(self.config.decode, **options)
        if decode.sampling:
            raise DragomanError("CTranslate2Translator does beam and greedy search, not sampling")
        # The limits computed as Translator._search does (float32), so they round alike.
        lengths = torch.tensor([len(seq) for seq in ids])
        limit = self.config.model.max_positions - 1
        max_len = (lengths * decode.max_len_a + decode.max_len_b).long().clamp(max=limit).tolist()
        outputs: list[list[int]] = [[] for _ in ids]
        for batch in Translator.batches(ids, decode.batch_tokens):
            longest = max(max_len[i] for i in batch)
            if longest == 0:
                continue  # nothing but EOS allowed (CTranslate2 refuses a limit of 0)
            results = self.translator.translate_batch(
                [self.src_tok.pieces(ids[i]) for i in batch],
                beam_size=decode.beam,
                length_penalty=decode.length_penalty,
                max_decoding_length=longest,
                min_decoding_length=0,
                max_input_length=0,  # already truncated to data.max_len
            )
            for i, result in zip(batch, results):
                # Sentences in a batch share one limit; cut to each one's own limit, a greedy
                # output is what our search gives when it forces EOS at that limit.
                outputs[i] = [self.ids[piece] for piece in result.hypotheses[0]][: max_len[i]]
        return outputs
