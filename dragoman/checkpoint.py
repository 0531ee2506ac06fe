"""Checkpoints without pickle: safetensors for tensors, JSON for everything else.

A model directory holds `config.yaml`, the tokenizer files, `model.safetensors` (the best weights,
what `translate` loads), and for resuming `checkpoints/step-N/` (model, optimizer and RNG tensors
plus `trainer.json`) with `last.json` naming the newest. Every file is written atomically and a
checkpoint directory is renamed into place only when complete, so a crash mid-save leaves the
previous checkpoint intact. Each tensor file carries a SHA-256 of its tensors, checked on load.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save as safetensors_bytes
from torch import Tensor, nn

from dragoman.errors import DragomanError
from dragoman.io import atomic_write_bytes, atomic_write_text


def _digest(tensors: dict[str, Tensor]) -> str:
    sha = hashlib.sha256()
    for key in sorted(tensors):
        sha.update(key.encode())
        sha.update(tensors[key].contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return sha.hexdigest()


def save_tensors(path: Path, tensors: dict[str, Tensor], metadata: dict[str, str] | None = None) -> None:
    tensors = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
    meta = {**(metadata or {}), "sha256": _digest(tensors)}
    atomic_write_bytes(path, safetensors_bytes(tensors, metadata=meta))


def load_tensors(path: Path) -> tuple[dict[str, Tensor], dict[str, str]]:
    """Tensors and metadata of a safetensors file; any damage is a DragomanError naming it."""
    fix = "the file is damaged: train again or restore it from a copy"
    try:
        with safe_open(str(path), framework="pt") as file:
            metadata = file.metadata() or {}
            tensors = {key: file.get_tensor(key) for key in file.keys()}
    except FileNotFoundError:
        raise DragomanError("file not found", file=path) from None
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise DragomanError(f"not a readable safetensors file ({exc})", file=path, fix=fix) from None
    if "sha256" in metadata and metadata["sha256"] != _digest(tensors):
        raise DragomanError("checksum mismatch: the tensors are corrupted", file=path, fix=fix)
    return tensors, metadata


def _unique(state: dict[str, Tensor]) -> dict[str, Tensor]:
    """Drop the second name of tied weights (safetensors stores each storage once)."""
    seen, out = set(), {}
    for key, tensor in state.items():
        if tensor.data_ptr() not in seen:
            seen.add(tensor.data_ptr())
            out[key] = tensor
    return out


def save_weights(model: nn.Module, path: Path) -> None:
    write_weights(model.state_dict(), path)


def write_weights(weights: dict[str, Tensor], path: Path) -> None:
    save_tensors(path, _unique(weights), {"format": "dragoman"})


def load_weights(model: nn.Module, path: Path) -> None:
    tensors, _ = load_tensors(path)
    expected = _unique(model.state_dict())
    missing, unexpected = expected.keys() - tensors.keys(), tensors.keys() - expected.keys()
    if missing or unexpected:
        problem = f"weights do not fit the model of config.yaml (missing: {sorted(missing)[:3]}, unexpected: {sorted(unexpected)[:3]})"
        raise DragomanError(problem, file=path, fix="use the config.yaml the model was trained with")
    for key, tensor in tensors.items():
        if tensor.shape != expected[key].shape:
            raise DragomanError(
                f"{key} has shape {list(tensor.shape)}, the config says {list(expected[key].shape)}",
                file=path,
            )
    model.load_state_dict(tensors, strict=False)


def _split_optimizer(state: dict[str, Any]) -> tuple[dict[str, Tensor], dict[str, Any]]:
    tensors, scalars = {}, {}
    for pid, values in state["state"].items():
        for name, value in values.items():
            if isinstance(value, Tensor):
                tensors[f"optimizer.{pid}.{name}"] = value
            else:
                scalars.setdefault(str(pid), {})[name] = value
    return tensors, {"param_groups": state["param_groups"], "scalars": scalars}


def _join_optimizer(tensors: dict[str, Tensor], saved: dict[str, Any]) -> dict[str, Any]:
    state: dict[int, dict[str, Any]] = {}
    for key, tensor in tensors.items():
        if key.startswith("optimizer."):
            _, pid, name = key.split(".", 2)
            state.setdefault(int(pid), {})[name] = tensor
    for pid, values in saved["scalars"].items():
        state.setdefault(int(pid), {}).update(values)
    groups = [{k: tuple(v) if k == "betas" else v for k, v in g.items()} for g in saved["param_groups"]]
    return {"state": state, "param_groups": groups}


def save_checkpoint(
    model_dir: Path,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    progress: dict[str, Any],
    keep_last: int = 1,
) -> Path:
    """Write checkpoints/step-N/ completely, then point last.json at it; prune older ones."""
    states = model.state_dict(), optimizer.state_dict(), scheduler.state_dict()
    return write_checkpoint(model_dir, *states, progress, keep_last)


def write_checkpoint(
    model_dir: Path,
    weights: dict[str, Tensor],
    optimizer: dict[str, Any],
    scheduler: dict[str, Any],
    progress: dict[str, Any],
    keep_last: int = 1,
) -> Path:
    """`save_checkpoint` from the state dicts (those of a model trained in shards, made whole)."""
    root = model_dir / "checkpoints"
    final = root / f"step-{progress['step']:08d}"
    tmp = root / f".{final.name}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    write_weights(weights, tmp / "model.safetensors")
    tensors, optimizer_json = _split_optimizer(optimizer)
    tensors["rng.torch"] = torch.get_rng_state()
    if torch.cuda.is_available():
        for i, rng in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"rng.cuda.{i}"] = rng
    save_tensors(tmp / "trainer.safetensors", tensors)
    trainer = {
        "progress": progress,
        "optimizer": optimizer_json,
        "scheduler": scheduler,
    }
    atomic_write_text(tmp / "trainer.json", json.dumps(trainer))
    shutil.rmtree(final, ignore_errors=True)
    os.replace(tmp, final)
    atomic_write_text(
        model_dir / "last.json", json.dumps({"checkpoint": final.name, "step": progress["step"]})
    )
    older = sorted(p for p in root.glob("step-*") if p != final)
    for old in older[: max(0, len(older) - (keep_last - 1))]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def last_checkpoint(model_dir: Path) -> Path:
    pointer = model_dir / "last.json"
    try:
        name = json.loads(pointer.read_text())["checkpoint"]
    except FileNotFoundError:
        raise DragomanError(
            "no checkpoint to resume from", file=pointer, fix="train without --resume first"
        ) from None
    except (ValueError, KeyError):
        raise DragomanError(
            "damaged checkpoint pointer", file=pointer, fix="delete it to start over"
        ) from None
    return model_dir / "checkpoints" / name


def load_checkpoint(
    model_dir: Path, model: nn.Module, optimizer: torch.optim.Optimizer, scheduler: Any
) -> dict[str, Any]:
    """Restore model, optimizer, scheduler and RNG state in place; return the saved progress."""
    path = last_checkpoint(model_dir)
    load_weights(model, path / "model.safetensors")
    return load_trainer(path, optimizer, scheduler)


def load_trainer(path: Path, optimizer: torch.optim.Optimizer, scheduler: Any) -> dict[str, Any]:
    """Restore optimizer, scheduler and RNG state from checkpoint `path`; return the saved progress."""
    tensors, _ = load_tensors(path / "trainer.safetensors")
    try:
        trainer = json.loads((path / "trainer.json").read_text())
    except (OSError, ValueError) as exc:
        raise DragomanError(f"cannot read trainer state ({exc})", file=path / "trainer.json") from None
    optimizer.load_state_dict(_join_optimizer(tensors, trainer["optimizer"]))
    scheduler.load_state_dict(trainer["scheduler"])
    torch.set_rng_state(tensors["rng.torch"])
    cuda_states = [tensors[k] for k in sorted(k for k in tensors if k.startswith("rng.cuda."))]
    if cuda_states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(cuda_states)
    return trainer["progress"]
