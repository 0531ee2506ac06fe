"""Training end to end: a toy task is learned, saved, loaded and translated; a killed run resumes
with exactly the losses of an uninterrupted one."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from dragoman.config import parse_config
from dragoman.data.text import read_lines
from dragoman.train import train
from dragoman.translator import Translator


def tiny_config(data: dict, model_dir: Path, **train_overrides) -> dict:
    return {
        "data": data,
        "model": {"d_model": 64, "heads": 4, "ff": 128, "enc_layers": 1, "dec_layers": 1, "dropout": 0.1},
        "train": {
            "model_dir": str(model_dir),
            "batch_tokens": 512,
            "max_steps": 400,
            "threads": 1,
            "optimizer": {"name": "adam", "lr": 3e-3},
            "schedule": {"name": "inverse_sqrt", "warmup": 50},
            "validate_every": 200,
            "log_every": 10,
            **train_overrides,
        },
        "decode": {"beam": 1, "max_len_a": 1.0, "max_len_b": 3},
    }


def test_a_tiny_model_learns_to_reverse_and_translates_after_reload(copy_task, tmp_path):
    config = tiny_config(copy_task, tmp_path / "model", max_steps=600, validate_every=300)
    config["model"]["dropout"] = 0.0
    model_dir = train(parse_config(config))
    translator = Translator.load(model_dir)
    sources = read_lines(Path(copy_task["test"] + ".src"))
    references = read_lines(Path(copy_task["test"] + ".tgt"))
    greedy = translator.translate(sources)
    accuracy = sum(h == r for h, r in zip(greedy, references)) / len(references)
    assert accuracy >= 0.9, f"exact match {accuracy:.2f}"
    beam = translator.translate(sources, beam=4)
    assert sum(h == r for h, r in zip(beam, references)) / len(references) >= 0.9
    # the best checkpoint and the last one both load; what was saved is what is used
    assert Translator.load(model_dir, checkpoint="last").translate(sources[:10]) == greedy[:10]
    rows = [json.loads(r) for r in (model_dir / "metrics.jsonl").read_text().splitlines()]
    valid = [r for r in rows if r["kind"] == "valid"]
    assert [r["step"] for r in valid] == [300, 600]
    assert {"loss", "ppl", "bleu", "chrf"} <= set(valid[0])


def _run(config_path: Path, *args: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen(
        [sys.executable, "-m", "dragoman", "train", str(config_path), *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env=env,
    )


def _losses(model_dir: Path) -> dict[int, float]:
    rows = [json.loads(r) for r in (model_dir / "metrics.jsonl").read_text().splitlines()]
    return {r["step"]: r["loss"] for r in rows if r["kind"] == "train"}


def test_sigkill_then_resume_gives_the_losses_of_an_uninterrupted_run(copy_task, tmp_path):
    settings = {"max_steps": 40, "validate_every": 8, "log_every": 1, "batch_tokens": 256}
    configs = {}
    for name in ("whole", "killed"):
        configs[name] = tmp_path / f"{name}.yaml"
        configs[name].write_text(yaml.safe_dump(tiny_config(copy_task, tmp_path / name, **settings)))

    whole = _run(configs["whole"])
    assert whole.wait(timeout=300) == 0, whole.stderr.read().decode()

    killed = _run(configs["killed"])
    metrics = tmp_path / "killed" / "metrics.jsonl"
    deadline = time.time() + 300
    while time.time() < deadline:  # kill once it is past its second checkpoint
        if metrics.exists() and any(json.loads(r)["step"] >= 19 for r in metrics.read_text().splitlines()):
            break
        time.sleep(0.05)
    killed.send_signal(signal.SIGKILL)
    killed.wait()
    assert killed.returncode == -signal.SIGKILL
    assert json.loads((tmp_path / "killed" / "last.json").read_text())["step"] in (16, 24)

    resumed = _run(configs["killed"], "--resume")
    assert resumed.wait(timeout=300) == 0, resumed.stderr.read().decode()
    expected, got = _losses(tmp_path / "whole"), _losses(tmp_path / "killed")
    assert sorted(got) == list(range(1, 41))
    assert got == pytest.approx(expected, rel=1e-5, abs=1e-6)


def test_resume_forgets_later_metrics_and_a_line_cut_short_by_a_kill(tmp_path):
    from dragoman.train import MetricsLog

    log = tmp_path / "metrics.jsonl"
    log.write_text(
        '{"kind": "train", "step": 50, "loss": 2.0}\n{"kind": "train", "step": 100, "loss": 1.5}\n{"kind": "tr'
    )
    MetricsLog(tmp_path, resume_step=50).close()
    assert log.read_text() == '{"kind": "train", "step": 50, "loss": 2.0}\n'
