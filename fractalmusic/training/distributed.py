"""Distributed training through `torch.distributed`, launched by torchrun.

torchrun sets RANK, WORLD_SIZE and LOCAL_RANK (and MASTER_ADDR/MASTER_PORT); `setup()` reads them, starts the
process group (nccl on CUDA, gloo on CPU) and picks this process's device. Without those variables everything
runs in one process and the helpers below are no-ops. The trainer wraps the model in DistributedDataParallel and
shards the data by rank; only rank 0 writes logs and checkpoints.

    torchrun --nproc_per_node 4 -m fractalmusic train --repr pianoroll --generator mar
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

from fractalmusic.errors import ConfigError


@dataclass
class DistContext:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")
    backend: str | None = None  # "nccl" | "gloo" when a process group runs

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    try:
        return int(value)
    except ValueError:
        raise ConfigError(f"environment variable {name}={value!r} is not a whole number") from None


def resolve_device(choice: str, local_rank: int = 0) -> torch.device:
    choice = (choice or "auto").lower()
    if choice == "auto":
        choice = "cuda" if torch.cuda.is_available() else "cpu"
    if choice.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ConfigError("--device cuda: no CUDA GPU is available here (use --device cpu or auto)")
        if choice == "cuda":
            return torch.device("cuda", local_rank % max(1, torch.cuda.device_count()))
        index = int(choice.split(":", 1)[1])
        if index >= torch.cuda.device_count():
            raise ConfigError(f"--device {choice}: only {torch.cuda.device_count()} CUDA device(s) here")
        return torch.device("cuda", index)
    return torch.device("cpu")


def setup(device: str = "auto") -> DistContext:
    """Start the process group if torchrun launched us; return this process's rank, world size and device."""
    world_size = _env_int("WORLD_SIZE", 1)
    rank = _env_int("RANK", 0)
    local_rank = _env_int("LOCAL_RANK", 0)
    if world_size <= 1:
        return DistContext(0, 1, 0, resolve_device(device, 0), None)
    dev = resolve_device(device, local_rank)
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    backend = "nccl" if dev.type == "cuda" else "gloo"
    if not dist.is_initialized():
        kwargs: dict[str, Any] = {}
        if dev.type == "cuda":
            kwargs["device_id"] = dev
        dist.init_process_group(backend=backend, rank=rank, world_size=world_size, **kwargs)
    return DistContext(rank, world_size, local_rank, dev, backend)


def teardown(ctx: DistContext) -> None:
    if ctx.distributed and dist.is_initialized():
        barrier(ctx)  # nobody leaves while another rank still talks to it
        dist.destroy_process_group()


def barrier(ctx: DistContext) -> None:
    if ctx.distributed:
        if ctx.backend == "nccl":
            dist.barrier(device_ids=[ctx.device.index])
        else:
            dist.barrier()


def all_reduce_sum(ctx: DistContext, values: list[float]) -> list[float]:
    """Element-wise sum of a few numbers over all ranks (one collective)."""
    if not ctx.distributed:
        return [float(v) for v in values]
    t = torch.tensor([float(v) for v in values], dtype=torch.float64, device=ctx.device)
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t.tolist()


def any_rank(ctx: DistContext, flag: bool) -> bool:
    """True on every rank if `flag` is true on any rank."""
    if not ctx.distributed:
        return bool(flag)
    t = torch.tensor([1.0 if flag else 0.0], device=ctx.device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item() > 0)


def broadcast_object(ctx: DistContext, obj: Any) -> Any:
    """Rank 0's `obj` on every rank (small picklable objects: a folder name, a decision)."""
    if not ctx.distributed:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def gather_objects(ctx: DistContext, obj: Any) -> list[Any]:
    """Every rank's `obj`, in rank order, on every rank."""
    if not ctx.distributed:
        return [obj]
    out: list[Any] = [None] * ctx.world_size
    dist.all_gather_object(out, obj)
    return out
