"""Optimizers and learning-rate schedules, built from the config with torch's own classes."""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch
from torch import nn

from dragoman.config import OptimizerConfig, ScheduleConfig


def build_optimizer(params: Iterable[nn.Parameter], cfg: OptimizerConfig) -> torch.optim.Optimizer:
    params = list(params)
    common = {"lr": cfg.lr, "weight_decay": cfg.weight_decay}
    if cfg.name in ("adam", "adamw"):
        cls = torch.optim.Adam if cfg.name == "adam" else torch.optim.AdamW
        # fused: one kernel over all parameters (on a 2-core CPU 6x faster than foreach's per-op
        # kernels over the parameter list, which are in turn faster than a Python loop)
        return cls(params, betas=cfg.betas, eps=cfg.eps, fused=True, **common)
    if cfg.name == "sgd":
        return torch.optim.SGD(params, momentum=cfg.momentum, nesterov=cfg.nesterov, fused=True, **common)
    if cfg.name == "rmsprop":
        return torch.optim.RMSprop(params, momentum=cfg.momentum, eps=cfg.eps, foreach=True, **common)
    return torch.optim.Adagrad(params, eps=cfg.eps, foreach=True, **common)


def lr_factor(step: int, cfg: ScheduleConfig, total_steps: int | None) -> float:
    """Multiplier of the base lr after `step` optimizer steps (LambdaLR schedules)."""
    warmup = max(cfg.warmup, 1)
    if cfg.name == "constant" or cfg.name == "plateau":
        return 1.0
    if step < cfg.warmup:
        return (step + 1) / warmup
    if cfg.name == "inverse_sqrt":  # Vaswani et al. (2017): peak at the end of warm-up
        return math.sqrt(warmup / (step + 1))
    # cosine: from 1 down to min_lr over the remaining steps (Loshchilov & Hutter, 2017)
    total = max(total_steps or step + 1, cfg.warmup + 1)
    progress = min(1.0, (step - cfg.warmup) / max(1, total - cfg.warmup))
    return 0.5 * (1.0 + math.cos(math.pi * progress))


def build_scheduler(
    optimizer: torch.optim.Optimizer, cfg: ScheduleConfig, total_steps: int | None, mode: str
):
    """A LambdaLR stepped after every optimizer step, or ReduceLROnPlateau stepped after every
    validation with the early-stopping metric (`mode` 'min' or 'max')."""
    if cfg.name == "plateau":
        return torch.optim.lr_scheduler.ReduceLROnPlateau(
            optimizer, mode=mode, factor=cfg.factor, patience=cfg.patience, min_lr=cfg.min_lr
        )
    base = optimizer.param_groups[0]["lr"]
    floor = cfg.min_lr / base if cfg.name == "cosine" else 0.0
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: max(floor, lr_factor(step, cfg, total_steps))
    )
