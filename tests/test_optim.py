"""Optimizers, schedules and gradient accumulation."""

from __future__ import annotations

import pytest
import torch

from conftest import tiny_transformer
from dragoman.config import OptimizerConfig, ScheduleConfig, parse_config
from dragoman.data.batches import Batch
from dragoman.optim import build_optimizer, build_scheduler, lr_factor
from dragoman.train import train_step


def _batch(seed: int, n: int = 4) -> Batch:
    g = torch.Generator().manual_seed(seed)
    src = torch.randint(4, 20, (n, 5), generator=g)
    tgt = torch.randint(4, 20, (n, 4), generator=g)
    bos, eos = torch.full((n, 1), 2), torch.full((n, 1), 3)
    return Batch(src, torch.cat([bos, tgt], 1), torch.cat([tgt, eos], 1))


def _config(**train):
    return parse_config(
        {"data": {"src": "a", "tgt": "b", "train": "x"}, "train": {"model_dir": "m", "max_steps": 1, **train}}
    )


@pytest.mark.parametrize("name", ["adam", "adamw", "sgd", "rmsprop", "adagrad"])
def test_every_optimizer_lowers_the_loss_on_a_fixed_batch(name):
    model = tiny_transformer().train()
    config = _config(optimizer={"name": name, "lr": 0.05 if name == "sgd" else 0.003, "momentum": 0.5})
    optimizer = build_optimizer(model.parameters(), config.train.optimizer)
    batch = _batch(0)
    first = train_step(model, optimizer, [batch], config)
    for _ in range(10):
        last = train_step(model, optimizer, [batch], config)
    assert last < first


def test_gradient_accumulation_equals_one_big_batch():
    config = _config(optimizer={"name": "sgd", "lr": 0.1}, clip_grad_norm=None)
    a, b = _batch(1), _batch(2)
    merged = Batch(
        *(torch.cat([x, y]) for x, y in zip((a.src, a.tgt_in, a.tgt_out), (b.src, b.tgt_in, b.tgt_out)))
    )
    models = [tiny_transformer(seed=9).train() for _ in range(2)]
    for model, batches in zip(models, ([a, b], [merged])):
        train_step(model, build_optimizer(model.parameters(), config.train.optimizer), batches, config)
    for p, q in zip(models[0].parameters(), models[1].parameters()):
        torch.testing.assert_close(p, q, atol=1e-6, rtol=1e-5)


def test_schedules_warm_up_then_decay():
    inverse = ScheduleConfig(name="inverse_sqrt", warmup=100)
    assert lr_factor(0, inverse, None) == pytest.approx(0.01)
    assert lr_factor(99, inverse, None) == pytest.approx(1.0)
    assert lr_factor(399, inverse, None) == pytest.approx(0.5)
    cosine = ScheduleConfig(name="cosine", warmup=10)
    assert lr_factor(9, cosine, 110) == pytest.approx(1.0)
    assert lr_factor(60, cosine, 110) == pytest.approx(0.5)
    assert lr_factor(110, cosine, 110) == pytest.approx(0.0)
    assert lr_factor(5000, ScheduleConfig(name="constant"), None) == 1.0


def test_plateau_halves_the_rate_after_patience_validations_without_improvement():
    model = tiny_transformer()
    optimizer = build_optimizer(model.parameters(), OptimizerConfig(lr=1.0))
    scheduler = build_scheduler(
        optimizer, ScheduleConfig(name="plateau", patience=1, factor=0.5), None, "max"
    )
    for bleu in (10.0, 9.0, 8.0):
        scheduler.step(bleu)
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.5)
