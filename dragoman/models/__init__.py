"""Models and the one place that maps a config's `arch` to a class."""

from __future__ import annotations

from torch import nn

from dragoman.config import ModelConfig
from dragoman.models.transformer import Transformer


def build_model(config: ModelConfig, src_vocab: int, tgt_vocab: int) -> nn.Module:
    """The model a config describes, with freshly initialised weights."""
    if config.arch == "transformer":
        return Transformer(
            src_vocab,
            tgt_vocab,
            dim=config.d_model,
            heads=config.heads,
            ff=config.ff,
            enc_layers=config.enc_layers,
            dec_layers=config.dec_layers,
            dropout=config.dropout,
            attention_dropout=config.attention_dropout,
            pre_norm=config.norm == "pre",
            positions=config.positions,
            max_positions=config.max_positions,
            share_embeddings=config.share_embeddings,
            tie_output=config.tie_output,
        )
    raise ValueError(f"unknown arch {config.arch!r}")  # config validation makes this unreachable
