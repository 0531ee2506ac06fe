"""Shared fixtures: tiny models and toy data, nothing downloaded."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
import torch

from dragoman.models.transformer import Transformer


def tiny_transformer(vocab: int = 20, seed: int = 0, **overrides) -> Transformer:
    torch.manual_seed(seed)
    args = dict(dim=32, heads=4, ff=64, enc_layers=2, dec_layers=2, dropout=0.0, max_positions=128)
    return Transformer(vocab, vocab, **{**args, **overrides}).eval()


def write_copy_task(
    directory: Path, n_train: int = 2000, n_dev: int = 100, seed: int = 0, reverse: bool = True
) -> dict:
    """Sequences of 1–6 letters → the same letters reversed; word-level, space-separated."""
    rng = random.Random(seed)
    letters = "a b c d e f g h".split()
    directory.mkdir(parents=True, exist_ok=True)
    for split, n in (("train", n_train), ("dev", n_dev), ("test", n_dev)):
        src = [" ".join(rng.choice(letters) for _ in range(rng.randint(1, 6))) for _ in range(n)]
        tgt = [" ".join(s.split()[::-1]) if reverse else s for s in src]
        (directory / f"{split}.src").write_text("".join(s + "\n" for s in src))
        (directory / f"{split}.tgt").write_text("".join(t + "\n" for t in tgt))
    return {
        "src": "src",
        "tgt": "tgt",
        "train": str(directory / "train"),
        "dev": str(directory / "dev"),
        "test": str(directory / "test"),
        "max_len": 16,
        "tokenizer": {"kind": "word", "vocab_size": 32},
    }


def tiny_config(data: dict, model_dir: Path, model: dict | None = None, **train) -> dict:
    """A config for a tiny model that learns `data` (write_copy_task) in seconds: width 32, no dropout,
    one thread, Adam at a constant 0.01; `model` and `train` add to or override those sections."""
    return {
        "data": data,
        "model": {"d_model": 32, "dropout": 0.0, **(model or {})},
        "train": {
            "model_dir": str(model_dir),
            "batch_tokens": 256,
            "threads": 1,
            "optimizer": {"name": "adam", "lr": 0.01},
            "schedule": {"name": "constant", "warmup": 0},
            **train,
        },
        "decode": {"max_len_a": 1.0, "max_len_b": 3},
    }


@pytest.fixture
def copy_task(tmp_path: Path) -> dict:
    return write_copy_task(tmp_path / "data")
