"""A trained dragoman Transformer as an OpenNMT-py 3.5 checkpoint and a JoeyNMT 2.3 model, so that
benchmarks/speed.py --same-weights decodes one model with every system.

    /work/peers/onmt/bin/python benchmarks/peer_weights.py onmt MODEL_DIR OUT.pt
    /work/peers/joeynmt/bin/python benchmarks/peer_weights.py joeynmt MODEL_DIR OUT_DIR

Run it with the peer's own Python: the checkpoints are that peer's pickles (torch.save), and the
sine tables come from its own PositionalEncoding. It reads MODEL_DIR (model.safetensors,
config.yaml, tokenizer.spm) without importing dragoman. CTranslate2 converts the OpenNMT-py file.

What makes the three compute the same function, checked against each peer's code:
- the layers map one to one: pre-norm blocks with a final encoder and decoder norm, biases on
  every attention and feed-forward linear (OpenNMT-py: add_qkvbias, add_ffnbias), dragoman's
  fused key_value split into keys and values; the embedding is shared by encoder, decoder and
  output layer (OpenNMT-py's generator gets a zero bias) and scaled by sqrt(D) everywhere;
- the sinusoids are the same (sin on even, cos on odd dimensions: OpenNMT-py's
  SinusoidalInterleaved, JoeyNMT's only kind), so no dimension needs permuting;
- the vocabulary is the SentencePiece model's pieces in order; both peers put <unk> at 0 and
  padding at 1, dragoman the reverse, so embedding rows 0 and 1 are swapped;
- layer-norm epsilon: dragoman's 1e-5 is OpenNMT-py's norm_eps and CTranslate2's default; JoeyNMT
  hard-codes 1e-6 (set to 1e-5, it changed none of 200 greedy test translations).
Neither peer adds BOS to the source, as dragoman; JoeyNMT appends EOS, which speed.py stops.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import sentencepiece as spm
import torch
import yaml

DRAGOMAN_SPECIALS = ("<pad>", "<unk>", "<s>", "</s>")
PEER_ORDER = [1, 0, 2, 3]  # peer row i = dragoman row PEER_ORDER[i]: <unk> first, then padding


def read_safetensors(path: Path) -> dict[str, torch.Tensor]:
    """The tensors of a .safetensors file (an 8-byte header size, a JSON header, raw data)."""
    data = path.read_bytes()
    size = int.from_bytes(data[:8], "little")
    header = json.loads(data[8 : 8 + size])
    header.pop("__metadata__", None)
    dtypes = {"F32": np.float32, "F16": np.float16}
    tensors = {}
    for name, t in header.items():
        begin, end = (8 + size + offset for offset in t["data_offsets"])
        array = np.frombuffer(data[begin:end], dtype=dtypes[t["dtype"]]).reshape(t["shape"])
        tensors[name] = torch.from_numpy(array.astype(np.float32))
    return tensors


def load_dragoman(model_dir: Path) -> tuple[dict[str, torch.Tensor], dict, list[str]]:
    """Weights, the config's model section, and the vocabulary (pieces by id) of a dragoman
    Transformer that both peers can express; anything else fails here, saying why."""
    config = yaml.safe_load((model_dir / "config.yaml").read_text())
    m = config["model"]
    wanted = {
        "encoder": "transformer",
        "decoder": "transformer",
        "norm": "pre",
        "positions": "sinusoidal",
        "share_embeddings": True,
        "tie_output": True,
    }
    wrong = {k: m.get(k) for k, v in wanted.items() if m.get(k) != v}
    if wrong:
        raise ValueError(f"{model_dir}: the peers' Transformers need {wanted}; this model has {wrong}")
    sp = spm.SentencePieceProcessor(model_file=str(model_dir / "tokenizer.spm"))
    pieces = [sp.id_to_piece(i) for i in range(sp.get_piece_size())]
    assert tuple(pieces[:4]) == DRAGOMAN_SPECIALS, pieces[:4]
    weights = read_safetensors(model_dir / "model.safetensors")
    assert weights["src_embed.weight"].shape == (len(pieces), m["d_model"])
    return weights, m, pieces


def peer_rows(embedding: torch.Tensor) -> torch.Tensor:
    order = PEER_ORDER + list(range(len(PEER_ORDER), embedding.size(0)))
    return embedding[order].contiguous()


def copy_linear(state: dict, peer: str, weights: dict, ours: str) -> None:
    """weight and bias of a linear layer or a layer norm."""
    state[f"{peer}.weight"], state[f"{peer}.bias"] = weights[f"{ours}.weight"], weights[f"{ours}.bias"]


def copy_attention(state: dict, peer: str, weights: dict, ours: str, names: tuple[str, ...]) -> None:
    """Query, keys, values and output projections, named `names` in the peer's model."""
    copy_linear(state, f"{peer}.{names[0]}", weights, f"{ours}.query")
    kv_weights = weights[f"{ours}.key_value.weight"].chunk(2)  # (2D, D) → keys, values
    kv_biases = weights[f"{ours}.key_value.bias"].chunk(2)
    for name, weight, bias in zip(names[1:3], kv_weights, kv_biases):
        state[f"{peer}.{name}.weight"], state[f"{peer}.{name}.bias"] = weight.contiguous(), bias.contiguous()
    copy_linear(state, f"{peer}.{names[3]}", weights, f"{ours}.out")


# ---------------------------------------------------------------------------------------------
# OpenNMT-py 3.5


def onmt_checkpoint(model_dir: Path) -> dict:
    """{'model', 'generator', 'vocab', 'opt'}, what onmt_translate and ct2-opennmt-py-converter load."""
    from onmt import opts
    from onmt.modules.embeddings import PositionalEncoding
    from onmt.utils.parse import ArgumentParser

    w, m, pieces = load_dragoman(model_dir)
    D = m["d_model"]
    parser = ArgumentParser()
    opts.train_opts(parser)  # onmt_train's options, as its checkpoints hold them; two are required:
    opt = parser.parse_args(["-data", "{}", "-src_vocab", "(in the checkpoint)"])
    vars(opt).update(
        encoder_type="transformer", decoder_type="transformer",
        enc_layers=m["enc_layers"], dec_layers=m["dec_layers"], heads=m["heads"],
        hidden_size=D, word_vec_size=D, transformer_ff=m["ff"],
        position_encoding=True, position_encoding_type="SinusoidalInterleaved",
        share_embeddings=True, share_decoder_embeddings=True, add_qkvbias=True, add_ffnbias=True,
        layer_norm="standard", norm_eps=1e-5, self_attn_type="scaled-dot",  # CT2 accepts only this name
        dropout=[0.0], attention_dropout=[0.0], data_task="seq2seq",
    )  # fmt: skip
    ArgumentParser.update_model_opts(opt)
    ArgumentParser.validate_model_opts(opt)

    embedding = peer_rows(w["src_embed.weight"])
    pe = PositionalEncoding(D, opt.position_encoding_type).pe  # (5000, 1, D)
    state = {}
    for side in ("encoder", "decoder"):
        state[f"{side}.embeddings.make_embedding.emb_luts.0.weight"] = embedding
        state[f"{side}.embeddings.make_embedding.pe.pe"] = pe
    attention = ("linear_query", "linear_keys", "linear_values", "final_linear")
    for i in range(m["enc_layers"]):
        peer, ours = f"encoder.transformer.{i}", f"encoder.layers.{i}"
        copy_linear(state, f"{peer}.layer_norm", w, f"{ours}.norm1")
        copy_attention(state, f"{peer}.self_attn", w, f"{ours}.attention", attention)
        onmt_feed_forward(state, f"{peer}.feed_forward", w, ours, "norm2")
    for i in range(m["dec_layers"]):
        peer, ours = f"decoder.transformer_layers.{i}", f"decoder.{i}"
        copy_linear(state, f"{peer}.layer_norm_1", w, f"{ours}.norm1")
        copy_attention(state, f"{peer}.self_attn", w, f"{ours}.self_attention", attention)
        copy_linear(state, f"{peer}.layer_norm_2", w, f"{ours}.norm2")
        copy_attention(state, f"{peer}.context_attn", w, f"{ours}.cross_attention", attention)
        onmt_feed_forward(state, f"{peer}.feed_forward", w, ours, "norm3")
    copy_linear(state, "encoder.layer_norm", w, "encoder.norm")
    copy_linear(state, "decoder.layer_norm", w, "dec_norm")
    generator = {"weight": embedding, "bias": torch.zeros(len(pieces))}  # dragoman's has no bias
    vocab = ["<unk>", "<blank>", "<s>", "</s>", *pieces[4:]]
    return {
        "model": state,
        "generator": generator,
        "vocab": {"src": vocab, "tgt": vocab, "data_task": "seq2seq", "decoder_start_token": "<s>"},
        "opt": opt,
    }


def onmt_feed_forward(state: dict, peer: str, w: dict, ours: str, norm: str) -> None:
    copy_linear(state, f"{peer}.layer_norm", w, f"{ours}.{norm}")  # OpenNMT-py keeps it in the FFN
    copy_linear(state, f"{peer}.w_1", w, f"{ours}.feed_forward.0")
    copy_linear(state, f"{peer}.w_2", w, f"{ours}.feed_forward.3")


# ---------------------------------------------------------------------------------------------
# JoeyNMT 2.3


def joeynmt_model(model_dir: Path, out: Path) -> None:
    """OUT/config.yaml, OUT/vocab.txt, OUT/spm.model and OUT/latest.ckpt: a JoeyNMT model directory
    (`python -m joeynmt translate OUT/config.yaml`; see speed.py for its workarounds)."""
    from joeynmt.transformer_layers import PositionalEncoding

    w, m, pieces = load_dragoman(model_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "spm.model").write_bytes((model_dir / "tokenizer.spm").read_bytes())
    vocab = ["<unk>", "<pad>", "<s>", "</s>", *pieces[4:]]
    (out / "vocab.txt").write_text("".join(piece + "\n" for piece in vocab), encoding="utf-8")

    embedding = peer_rows(w["src_embed.weight"])
    pe = PositionalEncoding(m["d_model"]).pe  # (1, 5000, D)
    state = {"src_embed.lut.weight": embedding, "trg_embed.lut.weight": embedding}
    state |= {"encoder.pe.pe": pe, "decoder.pe.pe": pe, "decoder.output_layer.weight": embedding}
    attention = ("q_layer", "k_layer", "v_layer", "output_layer")
    for i in range(m["enc_layers"]):
        peer, ours = f"encoder.layers.{i}", f"encoder.layers.{i}"
        copy_linear(state, f"{peer}.layer_norm", w, f"{ours}.norm1")
        copy_attention(state, f"{peer}.src_src_att", w, f"{ours}.attention", attention)
        joeynmt_feed_forward(state, f"{peer}.feed_forward", w, ours, "norm2")
    for i in range(m["dec_layers"]):
        peer, ours = f"decoder.layers.{i}", f"decoder.{i}"
        copy_linear(state, f"{peer}.x_layer_norm", w, f"{ours}.norm1")
        copy_attention(state, f"{peer}.trg_trg_att", w, f"{ours}.self_attention", attention)
        copy_linear(state, f"{peer}.dec_layer_norm", w, f"{ours}.norm2")
        copy_attention(state, f"{peer}.src_trg_att", w, f"{ours}.cross_attention", attention)
        joeynmt_feed_forward(state, f"{peer}.feed_forward", w, ours, "norm3")
    copy_linear(state, "encoder.layer_norm", w, "encoder.norm")
    copy_linear(state, "decoder.layer_norm", w, "dec_norm")
    torch.save({"model_state": state}, out / "latest.ckpt")

    config = yaml.safe_load((model_dir / "config.yaml").read_text())
    (out / "config.yaml").write_text(yaml.safe_dump(joeynmt_config(config, out), sort_keys=False))


def joeynmt_feed_forward(state: dict, peer: str, w: dict, ours: str, norm: str) -> None:
    copy_linear(state, f"{peer}.layer_norm", w, f"{ours}.{norm}")
    copy_linear(state, f"{peer}.pwff_layer.0", w, f"{ours}.feed_forward.0")
    copy_linear(state, f"{peer}.pwff_layer.3", w, f"{ours}.feed_forward.3")


def joeynmt_config(config: dict, out: Path) -> dict:
    """A JoeyNMT config for decoding the converted model (greedy; speed.py sets the beam)."""
    m, data, decode = config["model"], config["data"], config["decode"]
    side = {
        "level": "bpe",
        "lowercase": False,
        "normalize": False,
        "max_length": data["max_len"],
        "voc_file": str(out / "vocab.txt"),
        "tokenizer_type": "sentencepiece",
        "tokenizer_cfg": {"model_file": str(out / "spm.model")},
    }
    specials = {"unk": "<unk>", "pad": "<pad>", "bos": "<s>", "eos": "</s>"}
    symbols = {f"{k}_token": v for k, v in specials.items()}
    symbols |= {f"{k}_id": i for i, k in enumerate(specials)}
    embeddings = {"embedding_dim": m["d_model"], "scale": True}
    layer = {"type": "transformer", "num_heads": m["heads"], "hidden_size": m["d_model"]}
    layer |= {"ff_size": m["ff"], "dropout": 0.0, "layer_norm": "pre", "embeddings": embeddings}
    return {
        "name": f"{config['name']}-from-dragoman",
        "joeynmt_version": "2.3.0",
        "model_dir": str(out),
        "use_cuda": False,
        "data": {
            "dataset_type": "plain",
            "test": str(out / "test"),  # JoeyNMT wants a path, though `translate` never reads it
            "src": side | {"lang": data["src"]},
            "trg": side | {"lang": data["tgt"]},
            "special_symbols": symbols,
        },
        "testing": {
            "load_model": str(out / "latest.ckpt"),
            "n_best": 1,
            "beam_size": 1,
            "beam_alpha": decode["length_penalty"],
            "batch_size": decode["batch_tokens"],
            "batch_type": "token",
            "max_output_length": -1,  # 1.5 × the batch's longest source
        },
        "training": {"batch_size": decode["batch_tokens"], "batch_type": "token"},  # read when decoding too
        "model": {
            "tied_embeddings": True,
            "tied_softmax": True,
            "encoder": layer | {"num_layers": m["enc_layers"]},
            "decoder": layer | {"num_layers": m["dec_layers"]},
        },
    }


def main() -> None:
    peer, model_dir, out = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])
    if peer == "onmt":
        out.parent.mkdir(parents=True, exist_ok=True)
        torch.save(onmt_checkpoint(model_dir), out)
    elif peer == "joeynmt":
        joeynmt_model(model_dir, out)
    else:
        raise SystemExit(f"usage: {sys.argv[0]} onmt|joeynmt MODEL_DIR OUT")


if __name__ == "__main__":
    main()
