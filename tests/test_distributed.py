"""Two processes (DDP or FSDP, Gloo on the CPU) train like one process whose every step takes both
processes' batches: the ranks keep identical weights, match that single-process run step for step,
resume together, stop together, and only rank 0 writes files.

The single process takes `accumulate: 2` batches a step; rank r of two takes the batches r, r + 2,
... of the same epoch, so step k sees batches 2k and 2k + 1 in both runs. SGD with momentum, an L1
term and no clipping keep the check sensitive to the gradient's scale, which Adam would hide.

Starting a process costs seconds of imports, so one pair of spawned ranks runs every scenario in
turn (`Job`), each a `train` call with its own process group, as torchrun would start it.
"""

from __future__ import annotations

import itertools
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import torch.multiprocessing as mp
import yaml
from safetensors.torch import load_file, save_file
from torch.optim.optimizer import register_optimizer_step_post_hook

import dragoman.train
from conftest import tiny_config, write_copy_task
from dragoman.config import parse_config
from dragoman.translator import Translator

STEPS = 6
HALF = STEPS // 2


def _config(data: dict, model_dir: Path, **train) -> dict:
    settings = {
        "max_steps": STEPS,
        "batch_tokens": 64,
        "validate_every": 3,
        "log_every": 1,
        "dev_sentences": 5,
        "l1": 1e-4,
        "clip_grad_norm": None,
        "optimizer": {"name": "sgd", "lr": 0.5, "momentum": 0.9},
    }
    return tiny_config(data, model_dir, {"enc_layers": 1, "dec_layers": 1}, **{**settings, **train})


def _clock_1000x_faster_on_rank_1(rank: int) -> None:
    if rank == 1:
        clock = time.perf_counter
        dragoman.train.time = SimpleNamespace(perf_counter=lambda: 1000 * clock())


def _dev_loss_rising_on_rank_0_falling_on_rank_1(rank: int) -> None:
    calls = itertools.count(1)
    sign = 1.0 if rank == 0 else -1.0
    dragoman.train.validate = lambda *args: {"loss": sign * next(calls), "ppl": 1.0}


@dataclass
class Job:
    """One `dragoman train` on both ranks; `patch(rank)` changes dragoman.train for this job only."""

    name: str
    config: dict
    resume: bool = False
    patch: Callable[[int], None] | None = None


def _record_steps(steps: list):
    """After every optimizer step, append a copy of its parameters (made whole under FSDP)."""

    def whole(p: torch.Tensor) -> torch.Tensor:
        return p.full_tensor() if hasattr(p, "full_tensor") else p

    def hook(optimizer, args, kwargs) -> None:
        steps.append([whole(p).detach().clone() for g in optimizer.param_groups for p in g["params"]])

    return register_optimizer_step_post_hook(hook)


def _note_writes(job: dict, event: str, args: tuple) -> None:
    """An audit hook: what this process creates, changes or deletes under the job's model_dir."""
    if event == "open":
        paths = args[:1] if args[2] & (os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND) else ()
    elif event == "os.rename":  # also os.replace
        paths = args[:2]
    elif event in ("os.mkdir", "os.remove", "os.rmdir", "shutil.rmtree"):
        paths = args[:1]
    else:
        return
    for path in paths:
        if "model_dir" in job and isinstance(path, (str, bytes, os.PathLike)):
            path = os.path.abspath(os.fsdecode(path))
            if path.startswith(job["model_dir"] + os.sep):
                job["writes"].append(f"{event} {path}")


def _rank(rank: int, jobs: list[Job], ports: list[int], out: Path) -> None:
    """One of two processes, started as torchrun would start it, running every job in turn."""
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE="2", MASTER_ADDR="127.0.0.1")
    steps, current = [], {}
    _record_steps(steps)
    sys.addaudithook(partial(_note_writes, current))
    for job, port in zip(jobs, ports):
        os.environ["MASTER_PORT"] = str(port)  # a fresh process group per job
        steps.clear()
        current.update(model_dir=os.path.abspath(job.config["train"]["model_dir"]), writes=[])
        unpatched = vars(dragoman.train).copy()
        if job.patch is not None:
            job.patch(rank)
        dragoman.train.train(parse_config(job.config), resume=job.resume)
        vars(dragoman.train).update(unpatched)
        tensors = {f"{step}.{i}": p for step, params in enumerate(steps) for i, p in enumerate(params)}
        save_file(tensors, out / f"{job.name}-steps-{rank}.safetensors")
        (out / f"{job.name}-writes-{rank}.json").write_text(json.dumps(current["writes"]))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _steps(path: Path) -> list[list[torch.Tensor]]:
    """What `_rank` saved: the parameters after each step."""
    steps: dict[int, dict[int, torch.Tensor]] = {}
    for key, tensor in load_file(path).items():
        step, i = map(int, key.split("."))
        steps.setdefault(step, {})[i] = tensor
    return [[params[i] for i in sorted(params)] for _, params in sorted(steps.items())]


def _two_ranks(jobs: list[Job], out: Path) -> dict[str, SimpleNamespace]:
    """Run `jobs` on two spawned ranks: per job, each rank's parameters after every step and the
    files it wrote."""
    out.mkdir(parents=True, exist_ok=True)
    ports = [_free_port() for _ in jobs]
    ranks = mp.start_processes(_rank, (jobs, ports, out), nprocs=2, join=False, start_method="spawn")
    deadline = time.monotonic() + 120
    while not ranks.join(timeout=1):
        if time.monotonic() > deadline:
            for process in ranks.processes:
                process.kill()
            pytest.fail("the ranks did not finish: one waits for a step the other does not take")
    return {
        job.name: SimpleNamespace(
            steps=[_steps(out / f"{job.name}-steps-{rank}.safetensors") for rank in (0, 1)],
            writes=[json.loads((out / f"{job.name}-writes-{rank}.json").read_text()) for rank in (0, 1)],
            model_dir=Path(job.config["train"]["model_dir"]),
        )
        for job in jobs
    }


def _losses(model_dir: Path, kind: str = "train") -> dict[int, float]:
    rows = [json.loads(r) for r in (model_dir / "metrics.jsonl").read_text().splitlines()]
    return {r["step"]: r["loss"] for r in rows if r["kind"] == kind}


def _assert_close(got: list[torch.Tensor], expected: list[torch.Tensor]) -> None:
    assert len(got) == len(expected)
    for a, b in zip(got, expected):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> dict:
    return write_copy_task(tmp_path_factory.mktemp("distributed") / "data", n_train=400, n_dev=20)


@pytest.fixture(scope="module")
def one_process(data, tmp_path_factory) -> SimpleNamespace:
    """One process, two batches a step: the run the two ranks must reproduce."""
    model_dir = tmp_path_factory.mktemp("one") / "model"
    steps = []
    handle = _record_steps(steps)
    try:
        dragoman.train.train(parse_config(_config(data, model_dir, accumulate=2)))
    finally:
        handle.remove()
    return SimpleNamespace(steps=steps, model_dir=model_dir)


@pytest.fixture(scope="module")
def runs(data, tmp_path_factory) -> dict[str, SimpleNamespace]:
    root = tmp_path_factory.mktemp("two")
    ddp, fsdp = root / "ddp", root / "fsdp"
    stopping = {"metric": "loss", "patience": 2}
    jobs = [
        Job("ddp", _config(data, ddp, max_steps=HALF)),
        Job("ddp-resumed", _config(data, ddp), resume=True),  # from rank 0's checkpoint
        Job("fsdp", _config(data, fsdp, max_steps=HALF, distributed="fsdp")),  # resumed by torchrun
        Job(
            "out-of-time",
            _config(data, root / "out-of-time", max_steps=50, max_minutes=0.5, validate_every=100),
            patch=_clock_1000x_faster_on_rank_1,
        ),
        Job(  # accumulating: DDP averages only the last batch's gradients, summed locally first
            "early-stop",
            _config(data, root / "early-stop", validate_every=1, early_stopping=stopping, accumulate=2),
            patch=_dev_loss_rising_on_rank_0_falling_on_rank_1,
        ),
    ]
    return _two_ranks(jobs, root / "out")


def test_both_ranks_hold_identical_weights_after_every_step(runs):
    for job in ("ddp", "ddp-resumed", "fsdp", "early-stop"):
        rank0, rank1 = runs[job].steps
        assert len(rank0) == len(rank1) == HALF
        for step, (a, b) in enumerate(zip(rank0, rank1), start=1):
            assert all(torch.equal(x, y) for x, y in zip(a, b)), f"{job}: the ranks differ after step {step}"


def test_two_ranks_step_like_one_process_with_the_doubled_batch(runs, one_process):
    for job in ("ddp", "fsdp"):
        for step in range(HALF):
            _assert_close(runs[job].steps[1][step], one_process.steps[step])
    expected = _losses(one_process.model_dir)
    assert _losses(runs["ddp"].model_dir) == pytest.approx(expected, rel=1e-5)  # the loss of both ranks


def test_both_ranks_resume_from_rank_0s_checkpoint(runs, one_process):
    # momentum makes the optimizer state matter: a rank that did not load it would step differently
    for step in range(HALF):
        _assert_close(runs["ddp-resumed"].steps[1][step], one_process.steps[HALF + step])
    assert sorted(_losses(runs["ddp"].model_dir)) == list(range(1, STEPS + 1))


def test_only_rank_0_writes_files(runs):
    for job in ("ddp", "ddp-resumed", "fsdp", "early-stop"):
        assert runs[job].writes[1] == [], job
    written = "\n".join(runs["ddp"].writes[0])
    for name in ("config.yaml", "data/prepared.json", "metrics.jsonl", "model.safetensors", "last.json"):
        assert str(runs["ddp"].model_dir / name) in written
    assert str(runs["ddp"].model_dir / "checkpoints" / f"step-{HALF:08d}") in written


def test_ranks_stop_together_when_one_rank_sees_the_time_run_out(runs):
    rank0, rank1 = runs["out-of-time"].steps
    assert len(rank0) == len(rank1) < 50  # rank 1's clock ended the run of both


def test_ranks_stop_early_together_on_rank_0s_dev_scores(runs):
    # rank 0: best at step 1, then two worse validations; rank 1 alone would have trained on
    rank0, rank1 = runs["early-stop"].steps
    assert len(rank0) == len(rank1) == 3
    assert _losses(runs["early-stop"].model_dir, "valid") == {1: 1.0, 2: 2.0, 3: 3.0}


def test_torchrun_resumes_an_fsdp_run_and_saves_whole_weights(data, runs, one_process, tmp_path):
    model_dir = runs["fsdp"].model_dir  # trained to step HALF by the spawned ranks
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(_config(data, model_dir, distributed="fsdp")))
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    done = subprocess.run(
        [*torchrun, "-m", "dragoman", "train", str(config), "--resume"],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("model saved in") == 1  # rank 0's
    assert _losses(model_dir) == pytest.approx(_losses(one_process.model_dir), rel=1e-4)
    checkpoint = f"checkpoints/step-{STEPS:08d}/model.safetensors"
    got, expected = load_file(model_dir / checkpoint), load_file(one_process.model_dir / checkpoint)
    assert got.keys() == expected.keys()  # tied weights stored once, under the one-process names
    _assert_close(list(got.values()), list(expected.values()))
    Translator.load(model_dir).translate(["a b c"])  # whole weights, as one process loads them


def test_torchrun_with_one_process_trains_in_a_process_group_of_one(monkeypatch):
    # the path of many processes (DDP; NCCL on a GPU) on a single device
    from torch.nn.parallel import DistributedDataParallel

    from dragoman import distributed

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {"TORCHELASTIC_RUN_ID": "none", "RANK": "0", "LOCAL_RANK": "0", "WORLD_SIZE": "1"}
    for name, value in {**env, "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)}.items():
        monkeypatch.setenv(name, value)
    distributed.start(torch.device("cpu"))
    try:
        assert torch.distributed.is_initialized() and distributed.size() == 1
        model = distributed.wrap(torch.nn.Linear(2, 2), "ddp", torch.device("cpu"))
        assert isinstance(model, DistributedDataParallel)
        model(torch.ones(1, 2)).sum().backward()  # gradients all-reduced over the group of one
        del model
    finally:
        distributed.stop()
    assert not torch.distributed.is_initialized()
