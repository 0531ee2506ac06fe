"""The example configs under configs/: each one loads, builds the model it describes, and trains a
few steps on a tiny generated corpus with its own model, optimizer and schedule sections."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml
from torch import nn

from conftest import write_copy_task
from dragoman.config import Config, load_config, parse_config
from dragoman.models import build_model
from dragoman.models.attention import BahdanauAttention, LuongAttention
from dragoman.models.classifier import EncoderClassifier
from dragoman.models.conv import ConvEncoder
from dragoman.models.lm import LanguageModel
from dragoman.models.rnn import RNNEncoder, RNNSeq2Seq
from dragoman.models.transformer import Transformer, TransformerEncoder
from dragoman.train import train
from dragoman.translator import load_model

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
PATHS = sorted(CONFIGS.glob("*.yaml"))
DOCUMENTED = {
    "transformer",
    "lstm-bahdanau",
    "gru-luong",
    "sutskever-lstm",
    "cnn-lstm",
    "char-lstm",
    "toy-reverse",
    "sentiment",
    "debian-lm",
}


def check_transformer(model: nn.Module, config: Config) -> None:
    assert isinstance(model, Transformer)
    assert len(model.encoder.layers) == len(model.decoder) == 3
    assert model.src_embed is model.tgt_embed  # joint vocabulary → shared embeddings
    assert model.output.weight is model.tgt_embed.weight


def check_toy_reverse(model: nn.Module, config: Config) -> None:
    assert isinstance(model, Transformer)
    assert len(model.encoder.layers) == len(model.decoder) == 1
    assert model.src_embed.embedding_dim == 64


def check_lstm_bahdanau(model: nn.Module, config: Config) -> None:
    encoder, decoder = model.encoder, model.decoder
    assert isinstance(model, RNNSeq2Seq) and isinstance(encoder, RNNEncoder)
    assert isinstance(encoder.rnn, nn.LSTM) and encoder.rnn.bidirectional and encoder.rnn.num_layers == 1
    assert isinstance(decoder.rnn, nn.LSTM) and decoder.rnn.hidden_size == 512
    assert isinstance(decoder.attention, BahdanauAttention)
    assert decoder.bridge.kind == "project" and not decoder.input_feeding
    assert decoder.output.weight is decoder.embed.weight


def check_gru_luong(model: nn.Module, config: Config) -> None:
    encoder, decoder = model.encoder, model.decoder
    assert isinstance(model, RNNSeq2Seq) and isinstance(encoder, RNNEncoder)
    assert isinstance(encoder.rnn, nn.GRU) and encoder.rnn.bidirectional and encoder.rnn.num_layers == 2
    assert isinstance(decoder.rnn, nn.GRU) and decoder.rnn.hidden_size == 512
    assert isinstance(decoder.attention, LuongAttention)
    assert isinstance(decoder.attention.key, nn.Linear)  # general: qᵀ W m, not dot
    assert decoder.input_feeding
    assert decoder.rnn.input_size == 2 * 256  # the embedding and the fed-back attentional vector


def check_sutskever_lstm(model: nn.Module, config: Config) -> None:
    encoder, decoder = model.encoder, model.decoder
    assert isinstance(model, RNNSeq2Seq) and isinstance(encoder, RNNEncoder)
    assert isinstance(encoder.rnn, nn.LSTM) and not encoder.rnn.bidirectional
    assert encoder.rnn.num_layers == decoder.rnn.num_layers == 2
    assert encoder.rnn.hidden_size == decoder.rnn.hidden_size == 384
    assert isinstance(decoder.rnn, nn.LSTM)
    assert decoder.attention is None and encoder.reverse_source
    assert decoder.bridge.kind == "copy"
    assert decoder.output.weight is not decoder.embed.weight


def check_cnn_lstm(model: nn.Module, config: Config) -> None:
    encoder, decoder = model.encoder, model.decoder
    assert isinstance(model, RNNSeq2Seq) and isinstance(encoder, ConvEncoder)
    assert len(encoder.convolutions) == 6 and encoder.convolutions[0].kernel_size == (3,)
    assert isinstance(decoder.rnn, nn.LSTM)
    assert isinstance(decoder.attention, LuongAttention) and isinstance(decoder.attention.key, nn.Linear)
    assert decoder.bridge.kind == "project"


def check_char_lstm(model: nn.Module, config: Config) -> None:
    encoder, decoder = model.encoder, model.decoder
    assert config.data.tokenizer.kind == config.data.tgt_tokenizer.kind == "char"
    assert not config.data.joint_vocab and model.src_embed is not model.tgt_embed
    assert isinstance(model, RNNSeq2Seq) and isinstance(encoder, RNNEncoder)
    assert isinstance(encoder.rnn, nn.LSTM) and not encoder.rnn.bidirectional
    assert isinstance(decoder.rnn, nn.LSTM)
    assert encoder.rnn.num_layers == decoder.rnn.num_layers == 1
    assert encoder.rnn.hidden_size == decoder.rnn.hidden_size == 256
    assert decoder.attention is None and decoder.bridge.kind == "copy"


def check_sentiment(model: nn.Module, config: Config) -> None:
    assert config.task == "classify"
    assert isinstance(model, EncoderClassifier) and isinstance(model.encoder, TransformerEncoder)
    assert len(model.encoder.layers) == 3 and model.pooling == "mean"


def check_debian_lm(model: nn.Module, config: Config) -> None:
    assert config.task == "lm" and config.data.block_size == 128
    assert isinstance(model, LanguageModel) and len(model.layers) == 4
    assert model.output.weight is model.tgt_embed.weight


CHECKS: dict[str, Callable[[nn.Module, Config], None]] = {
    "transformer": check_transformer,
    "toy-reverse": check_toy_reverse,
    "lstm-bahdanau": check_lstm_bahdanau,
    "gru-luong": check_gru_luong,
    "sutskever-lstm": check_sutskever_lstm,
    "cnn-lstm": check_cnn_lstm,
    "char-lstm": check_char_lstm,
    "sentiment": check_sentiment,
    "debian-lm": check_debian_lm,
}


def test_every_documented_config_is_there_and_checked():
    assert DOCUMENTED <= {p.stem for p in PATHS}
    assert DOCUMENTED == set(CHECKS)


@pytest.mark.parametrize("path", PATHS, ids=[p.stem for p in PATHS])
def test_config_loads_and_builds_the_model_it_describes(path):
    config = load_config(path)
    model = build_model(config.model, 40, 40, config.task)
    CHECKS.get(path.stem, lambda model, config: None)(model, config)


def _tokenizer(section: dict | None) -> dict | None:
    """The config's word/char tokenizer as it is; subword ones become word-level (BPE needs far
    more text than the toy corpus has)."""
    if section is None or section.get("kind") in ("word", "char"):
        return section
    return {"kind": "word", "vocab_size": 32}


def on_a_toy_corpus(path: Path, root: Path) -> dict:
    """The config of `path` with its data on a tiny generated corpus and 3 training steps."""
    raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    data = write_copy_task(root / "data", n_train=200, n_dev=12)
    original = raw["data"]
    if raw.get("task") == "lm":  # one side of text
        del data["tgt"]
        data["block_size"] = original.get("block_size")
    if raw.get("task") == "classify":  # label: the sequence's first letter
        for split in ("train", "dev", "test"):
            texts = Path(data[split] + ".src").read_text().splitlines()
            Path(data[split] + ".label").write_text("".join(t.split()[0] + "\n" for t in texts))
        data["tgt"] = "label"
    data["joint_vocab"] = original.get("joint_vocab", True)
    data["max_len"] = original.get("max_len", data["max_len"])
    data["tokenizer"] = _tokenizer(original.get("tokenizer")) or data["tokenizer"]
    if (tgt := _tokenizer(original.get("tgt_tokenizer"))) is not None:
        data["tgt_tokenizer"] = tgt
    raw["data"] = data
    raw["train"].update(
        model_dir=str(root / "model"),
        max_steps=3,
        batch_tokens=256,
        validate_every=3,
        log_every=1,
        dev_sentences=4,
        threads=1,
    )
    return raw


@pytest.mark.parametrize("path", PATHS, ids=[p.stem for p in PATHS])
def test_config_trains_a_few_steps_on_a_toy_corpus(path, tmp_path):
    original = load_config(path)
    model_dir = train(parse_config(on_a_toy_corpus(path, tmp_path), str(path)))

    saved = load_config(model_dir / "config.yaml")
    assert saved.model == original.model  # the model, optimizer and schedule are the config's own
    assert saved.train.optimizer == original.train.optimizer
    assert saved.train.schedule == original.train.schedule
    rows = [json.loads(r) for r in (model_dir / "metrics.jsonl").read_text().splitlines()]
    losses = {r["step"]: r["loss"] for r in rows if r["kind"] == "train"}
    valid = [r for r in rows if r["kind"] == "valid"]
    assert sorted(losses) == [1, 2, 3] and all(math.isfinite(v) for v in losses.values())
    assert [r["step"] for r in valid] == [3] and math.isfinite(valid[0]["loss"])
    assert (model_dir / "model.safetensors").exists()
    last = json.loads((model_dir / "last.json").read_text())
    assert last["step"] == 3
    assert (model_dir / "checkpoints" / last["checkpoint"] / "model.safetensors").exists()

    model, config, src_tok, tgt_tok = load_model(model_dir)
    CHECKS.get(path.stem, lambda model, config: None)(model, config)
    expected = [
        _tokenizer(t.model_dump())["kind"]
        for t in (original.data.tokenizer, original.data.tgt_tokenizer or original.data.tokenizer)
    ]
    if config.task == "classify":  # the target side is the labels
        assert src_tok.kind == expected[0] and tgt_tok.names == list("abcdefgh")
    else:
        assert [src_tok.kind, tgt_tok.kind] == expected
