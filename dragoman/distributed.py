"""Training on several processes: DistributedDataParallel (Li et al., 2020) or FSDP (Zhao et al., 2023).

`torchrun --nproc_per_node=N -m dragoman train CONFIG` starts N copies of `dragoman train` and tells
each its RANK, LOCAL_RANK and WORLD_SIZE in the environment. Every copy (a "rank") builds the same
model from the same seed and trains on its own share of every epoch's batches (`shard`); the
gradients are averaged over the ranks before each optimizer step, so the ranks keep identical
weights. Rank 0 alone writes files, and every decision that ends the run or changes the learning
rate is rank 0's, sent to the others (`agree`), so that no rank waits for a step the others skip.

DDP keeps a whole copy of the model, its gradients and its optimizer state on every rank. FSDP
(`train.distributed: fsdp`) keeps 1/N of each per rank and gathers the weights only while the
model runs: for models whose training state does not fit one device. Checkpoints hold whole
tensors either way, the same files a single process writes and reads.

Without torchrun there is no process group, and every function here is the identity or does
nothing. `torchrun --nproc_per_node=1` makes a group of one: the same code path as many processes
(DDP, NCCL on a GPU), for checking it on one device.
"""

from __future__ import annotations

import gc
import logging
import os
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import Any, TypeVar

import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel

from dragoman.errors import DragomanError

T = TypeVar("T")
log = logging.getLogger("dragoman")


def _launched() -> bool:
    """Whether torchrun (which names its run in TORCHELASTIC_RUN_ID) or a launcher like it started
    this process."""
    return "TORCHELASTIC_RUN_ID" in os.environ or int(os.environ.get("WORLD_SIZE", "1")) > 1


def start(device: torch.device) -> torch.device:
    """Join torchrun's process group (NCCL between GPUs, Gloo between CPUs); the device of this
    process: GPU number LOCAL_RANK of its machine."""
    if not _launched():
        return device
    if device.type == "cuda":
        device = torch.device("cuda", int(os.environ["LOCAL_RANK"]))
        if device.index >= torch.cuda.device_count():
            raise DragomanError(
                f"torchrun started process {device.index + 1} on a machine with "
                f"{torch.cuda.device_count()} GPUs",
                fix="give torchrun --nproc_per_node at most the number of GPUs (one process each)",
            )
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    if not is_main():  # one log, rank 0's; warnings and errors from every rank
        log.setLevel(logging.WARNING)
    log.info("process group: %d processes, %s", size(), dist.get_backend())
    return device


def stop() -> None:
    """Leave the process group, once the caller has let go of its model. A DDP model freed after
    the group would destroy the group itself while holding the GIL, which gloo's threads may be
    waiting for (a hang); it sits in a reference cycle, so only a garbage collection frees it."""
    if dist.is_initialized():
        gc.collect()
        dist.destroy_process_group()


def rank() -> int:
    if dist.is_initialized():
        return dist.get_rank()
    return int(os.environ.get("RANK", "0")) if _launched() else 0


def size() -> int:
    return dist.get_world_size() if dist.is_initialized() else 1


def is_main() -> bool:
    """Whether this is rank 0, the one that writes files (also true in a single process)."""
    return rank() == 0


def shard(batches: list[T]) -> list[T]:
    """This rank's share of an epoch: every size()-th batch from batch rank() on, cut to the same
    number of batches on every rank so that all take the same steps (the last few may go unused)."""
    if size() == 1:
        return batches
    steps = len(batches) // size()
    if steps == 0:
        raise DragomanError(
            f"an epoch has {len(batches)} batches, fewer than the {size()} processes",
            fix="lower train.batch_tokens or start fewer processes",
        )
    return batches[rank() :: size()][:steps]


def _reduce(value: float, op: dist.ReduceOp) -> float:
    if size() == 1:
        return value
    device = torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else None
    tensor = torch.tensor([value], dtype=torch.float64, device=device)
    dist.all_reduce(tensor, op)
    return tensor.item()


def mean(value: float) -> float:
    """The average of `value` over the ranks."""
    return value if size() == 1 else _reduce(value, dist.ReduceOp.SUM) / size()


def total(value: float) -> float:
    """The sum of `value` over the ranks."""
    return _reduce(value, dist.ReduceOp.SUM)


def most(value: float) -> float:
    """The largest `value` of any rank."""
    return _reduce(value, dist.ReduceOp.MAX)


def agree(value: T) -> T:
    """Rank 0's `value` (any picklable object) on every rank: for decisions all must take together."""
    if size() == 1:
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def main_first(work: Callable[[], Any]) -> None:
    """Do `work` on rank 0 while the other ranks wait (preparing the data once); if it fails
    there, fail on every rank rather than leave the others waiting."""
    error = None
    if is_main():
        try:
            work()
        except Exception as exc:  # noqa: BLE001 (raised again below, after telling the others)
            error = exc
    if agree(error is not None):
        raise error or DragomanError("rank 0 failed before training (its error is above)")


def wrap(model: nn.Module, kind: str, device: torch.device) -> nn.Module:
    """The model as every rank trains it: in DDP, or cut into FSDP shards; the model itself in a
    single process (without torchrun).

    FSDP shards the model as one unit, gathering all its weights for a forward and backward pass:
    the models reach into their layers from outside them (the Transformer projects the memory for
    every decoder layer's cross-attention at once), which per-layer units would not allow."""
    if not dist.is_initialized():
        return model
    if kind == "ddp":
        return DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    from torch.distributed.fsdp import fully_shard

    return fully_shard(model)


def unwrap(model: nn.Module) -> nn.Module:
    """The model without DDP's wrapper (an FSDP model is its own root): for validation and decoding,
    which need no gradients."""
    return model.module if isinstance(model, DistributedDataParallel) else model


@contextmanager
def whole(model: nn.Module) -> Iterator[nn.Module]:
    """The model ready for methods other than forward (decoding calls `encode` and `step`): under
    FSDP with its weights gathered (every rank must take part); without DDP's wrapper otherwise."""
    from torch.distributed.fsdp import FSDPModule

    if not isinstance(model, FSDPModule):
        yield unwrap(model)
        return
    model.unshard()
    try:
        yield model
    finally:
        model.reshard()


def syncing(model: nn.Module, last: bool) -> AbstractContextManager:
    """Around one backward of a step: with DDP, average the gradients only after the step's last
    batch, summing the earlier ones locally (FSDP averages every time, keeping gradients sharded)."""
    if isinstance(model, DistributedDataParallel) and not last:
        return model.no_sync()
    return nullcontext()


def _sharded(tensor: Any) -> bool:
    from torch.distributed.tensor import DTensor

    return isinstance(tensor, DTensor)


def _gather(state: dict[str, Any]) -> dict[str, Any]:
    """Each sharded (FSDP) tensor of `state` made whole: every rank must call this, rank 0 keeps
    the whole tensors on its CPU, one at a time."""
    out = {}
    for key, value in state.items():
        if _sharded(value):
            value = value.full_tensor()
            value = value.cpu() if is_main() else None
        out[key] = value
    return out


def _second_names(model: nn.Module) -> set[str]:
    """The names a tied tensor has after its first (FSDP's whole tensors no longer share memory)."""
    seen, second = set(), set()
    named = [*model.named_parameters(remove_duplicate=False), *model.named_buffers(remove_duplicate=False)]
    for name, tensor in named:
        if id(tensor) in seen:
            second.add(name)
        seen.add(id(tensor))
    return second


def weights(model: nn.Module) -> dict[str, Tensor]:
    """The model's state dict, with whole tensors under the names of a model in one process."""
    model = unwrap(model)
    state = model.state_dict()
    if not any(_sharded(value) for value in state.values()):
        return state
    tied = _second_names(model)
    return _gather({key: value for key, value in state.items() if key not in tied})


def optimizer_state(optimizer: torch.optim.Optimizer) -> dict[str, Any]:
    """The optimizer's state dict, with whole tensors (FSDP: every rank must call this)."""
    state = optimizer.state_dict()
    return {**state, "state": {pid: _gather(values) for pid, values in state["state"].items()}}


def fit_optimizer(optimizer: torch.optim.Optimizer) -> None:
    """Under FSDP, once the optimizer state is loaded: keep of each whole tensor of a checkpoint
    only this rank's shard, as its parameter does, and step SGD with foreach kernels (torch has no
    fused SGD kernel for sharded tensors; it has Adam's)."""
    from torch.distributed.tensor import distribute_tensor

    for group in optimizer.param_groups:
        sharded = any(map(_sharded, group["params"]))
        if sharded and isinstance(optimizer, torch.optim.SGD) and group.get("fused"):
            group["fused"], group["foreach"] = False, True
        for param in group["params"]:
            if not _sharded(param):
                continue
            values = optimizer.state.get(param, {})
            for name, value in values.items():
                if isinstance(value, Tensor) and not _sharded(value) and value.shape == param.shape:
                    values[name] = distribute_tensor(
                        value, param.device_mesh, param.placements, src_data_rank=None
                    )
