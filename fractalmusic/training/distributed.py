"""Distributed training through `torch.distributed`: one process per device.

Two ways to start the processes, both through torch's elastic agent (the engine torchrun is built on):

* `fmusic train --devices 2` / `--devices 0,1` (FractalMIDI's spelling): `launch()` hands the command to
  `torch.distributed.launcher.api.elastic_launch`, which starts one process per device on this machine
  (`--num-nodes`, `--node-rank`, `--master-addr`, `--master-port` join several machines);
* plain torchrun, as before: `torchrun --nproc_per_node 4 -m fractalmusic train ...`.

Either way the processes find RANK, WORLD_SIZE and LOCAL_RANK (and MASTER_ADDR/MASTER_PORT) in their environment;
`setup()` reads them, starts the process group (nccl on CUDA, gloo on CPU) and picks this process's device.
Without those variables everything runs in one process and the helpers below are no-ops. The trainer wraps the
model in DistributedDataParallel and shards the data by rank; only rank 0 writes logs and checkpoints.
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


# ---------------------------------------------------------------------------------------------------- launching
# `fmusic train` options that choose the processes; they are taken out before the rest is parsed
LAUNCH_OPTIONS = ("--devices", "--num-nodes", "--node-rank", "--master-addr", "--master-port")
_LAUNCH_ALIASES = {"--gpus": "--devices", "--nnodes": "--num-nodes", "--num-machines": "--num-nodes"}


@dataclass
class LaunchPlan:
    """How many processes to start on this machine and how they meet the other machines."""

    nproc: int = 1  # processes on this machine
    gpu_ids: list[int] | None = None  # CUDA devices they use, one each, in local-rank order; None: CPU
    num_nodes: int = 1
    node_rank: int = 0
    master_addr: str | None = None
    master_port: int | None = None

    @property
    def world_size(self) -> int:
        return self.nproc * self.num_nodes

    @property
    def needs_launch(self) -> bool:
        return self.world_size > 1


def _canonical_option(token: str) -> str:
    name = token.split("=", 1)[0]
    if name.startswith("--"):
        name = "--" + name[2:].replace("_", "-")
    return _LAUNCH_ALIASES.get(name, name)


def split_launch_args(args: list[str]) -> tuple[dict[str, str], list[str]]:
    """({option: value} of the launch options, the other arguments in their order). Any spelling
    (`--devices 2`, `--devices=0,1`, `--num_nodes 2`) is accepted; a launch option without a value is an error."""
    found: dict[str, str] = {}
    rest: list[str] = []
    i = 0
    while i < len(args):
        tok = args[i]
        name = _canonical_option(tok) if tok.startswith("--") else ""
        if name in LAUNCH_OPTIONS:
            if "=" in tok:
                value = tok.split("=", 1)[1]
            elif i + 1 < len(args) and not args[i + 1].startswith("--"):
                value = args[i + 1]
                i += 1
            else:
                raise ConfigError(f"{tok} needs a value (e.g. {name} {'0,1' if name == '--devices' else '2'})")
            found[name] = value.strip()
        else:
            rest.append(tok)
        i += 1
    return found, rest


def _whole(option: str, value: str, low: int) -> int:
    try:
        number = int(value)
    except ValueError:
        raise ConfigError(f"{option} must be a whole number, not {value!r}") from None
    if number < low:
        raise ConfigError(f"{option} must be at least {low}, not {number}")
    return number


def parse_devices(value: str) -> tuple[int, list[int] | None]:
    """`--devices` as (process count, device indices or None). A plain number counts devices (`2`: the first
    two); a comma list names them (`0,1`; `3,` is device 3 alone), as Lightning and FractalMIDI read it."""
    text = value.strip().strip("[]").replace(" ", "")
    if not text:
        raise ConfigError("--devices is empty (give a count, 2, or device indices, 0,1)")
    if "," not in text:
        return _whole("--devices", text, 1), None
    parts = [p for p in text.split(",") if p != ""]
    ids = [_whole("--devices", p, 0) for p in parts]
    if not ids:
        raise ConfigError(f"--devices {value!r} names no device")
    if len(set(ids)) != len(ids):
        raise ConfigError(f"--devices {value} names a device twice")
    return len(ids), ids


def plan_launch(options: dict[str, str], device: str | None) -> LaunchPlan:
    """Check the launch options against --device and this machine; the plan (a single process when none)."""
    device = (device or "auto").strip().lower()
    if any(k in os.environ for k in ("LOCAL_RANK", "TORCHELASTIC_RUN_ID")) and options:
        raise ConfigError(f"{next(iter(options))}: this process was started by torchrun, which already chose the "
                          "processes; leave out --devices/--num-nodes (or start fmusic train without torchrun)")
    plan = LaunchPlan()
    if "--num-nodes" in options:
        plan.num_nodes = _whole("--num-nodes", options["--num-nodes"], 1)
    if "--node-rank" in options:
        plan.node_rank = _whole("--node-rank", options["--node-rank"], 0)
        if plan.node_rank >= plan.num_nodes:
            raise ConfigError(f"--node-rank {plan.node_rank} is not below --num-nodes {plan.num_nodes}")
    if "--master-port" in options:
        plan.master_port = _whole("--master-port", options["--master-port"], 1)
        if plan.master_port > 65535:
            raise ConfigError(f"--master-port must be at most 65535, not {plan.master_port}")
    plan.master_addr = options.get("--master-addr") or None
    if plan.num_nodes > 1:
        missing = [o for o in ("--node-rank", "--master-addr") if o not in options]
        if missing:
            raise ConfigError(f"--num-nodes {plan.num_nodes} needs {' and '.join(missing)} (the same "
                              "--master-addr on every machine, --node-rank 0 on the machine at that address)")
    if "--devices" not in options:
        if plan.num_nodes > 1:
            raise ConfigError("--num-nodes needs --devices: the processes to start on each machine")
        return plan
    count, ids = parse_devices(options["--devices"])
    if count == 1 and ids is None and plan.num_nodes == 1:
        return plan  # --devices 1: this process, on whatever --device says
    if device.startswith("cuda:"):
        raise ConfigError(f"--device {device} names one GPU; with --devices give --device cuda (or leave it out)")
    use_cuda = device == "cuda" or (device == "auto" and torch.cuda.is_available())
    if not use_cuda:
        if device != "cpu":
            raise ConfigError(f"--devices {options['--devices']}: no CUDA GPU is available here; add --device cpu "
                              f"to train {count} CPU processes (gloo)")
        if ids is not None:
            raise ConfigError(f"--devices {options['--devices']} names GPUs, but --device cpu was given; give a "
                              f"process count instead (--devices {count})")
        plan.nproc = count
        return plan
    if not torch.cuda.is_available():
        raise ConfigError("--device cuda: no CUDA GPU is available here (use --device cpu --devices N)")
    available = torch.cuda.device_count()
    if ids is None:
        if count > available:
            raise ConfigError(f"--devices {count}: only {available} CUDA device(s) here")
        ids = list(range(count))
    elif max(ids) >= available:
        raise ConfigError(f"--devices {options['--devices']}: device {max(ids)} does not exist "
                          f"(CUDA devices here: 0..{available - 1})")
    plan.nproc, plan.gpu_ids = count, ids
    return plan


def _visible_devices(ids: list[int]) -> str:
    """CUDA_VISIBLE_DEVICES for `ids`, which count within the devices already visible to this process."""
    current = os.environ.get("CUDA_VISIBLE_DEVICES", "").strip()
    if current:
        names = [n.strip() for n in current.split(",") if n.strip()]
        if max(ids) < len(names):
            return ",".join(names[i] for i in ids)
    return ",".join(str(i) for i in ids)


def _free_port() -> int:
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class LaunchError(Exception):
    """A launched process failed: `rank` and the one line it gave (see `launch`)."""

    def __init__(self, rank: int, message: str, exitcode: int | None):
        super().__init__(message)
        self.rank, self.message, self.exitcode = rank, message, exitcode


def failure_line(message: Any) -> str:
    """The one line worth showing of an elastic failure message: the exception's own first line (`ConfigError:
    ...`, without the module path), or the exit signal."""
    if isinstance(message, dict):
        message = message.get("message", "")
    text = str(message or "").strip()
    if not text:
        return ""
    line = text.splitlines()[0].strip()
    head, sep, tail = line.partition(": ")
    if sep and "." in head and " " not in head:  # `fractalmusic.errors.ConfigError: ...` -> `ConfigError: ...`
        line = f"{head.rsplit('.', 1)[1]}: {tail}"
    return line


def launch(plan: LaunchPlan, entrypoint, args: tuple, *, log=None) -> None:
    """Run `entrypoint(*args)` in `plan.nproc` processes on this machine through torch's elastic agent (the engine
    torchrun uses: rendezvous, environment, process supervision). Each process finds RANK, LOCAL_RANK, WORLD_SIZE,
    MASTER_ADDR and MASTER_PORT in its environment. GPUs: CUDA_VISIBLE_DEVICES is narrowed to the chosen ones, so
    local rank i uses the i-th of them. When one process fails the agent stops the others, and LaunchError carries
    the failing rank and its one-line error (the first failure: the cause, not the ranks stopped after it)."""
    import logging
    import uuid

    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.launcher.api import LaunchConfig, elastic_launch

    if plan.gpu_ids is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = _visible_devices(plan.gpu_ids)
    if plan.nproc > 1 and "OMP_NUM_THREADS" not in os.environ:
        os.environ["OMP_NUM_THREADS"] = "1"  # what torchrun does: N processes must not each take every core
    if plan.num_nodes > 1:
        endpoint = f"{plan.master_addr}:{plan.master_port or 29500}"
        backend, rdzv_configs = "static", {"rank": plan.node_rank, "timeout": 900}
        run_id = f"fmusic-{endpoint}"
    else:
        addr = plan.master_addr or "127.0.0.1"
        endpoint = f"{addr}:{plan.master_port or _free_port()}"
        backend, rdzv_configs = "static", {"rank": 0, "timeout": 120}
        run_id = f"fmusic-{uuid.uuid4().hex[:8]}"
    config = LaunchConfig(
        min_nodes=plan.num_nodes,
        max_nodes=plan.num_nodes,
        nproc_per_node=plan.nproc,
        run_id=run_id,
        rdzv_backend=backend,
        rdzv_endpoint=endpoint,
        rdzv_configs=rdzv_configs,
        max_restarts=0,  # a crash is reported, not retried
        start_method="spawn",
        monitor_interval=0.2,
    )
    # the agent narrates rendezvous and worker exits at INFO/WARNING; the user gets our one line instead
    # (and logs the failing process's traceback at ERROR): FRACTALMUSIC_DEBUG=1 lets it all through
    quiet = [logging.getLogger(name) for name in ("torch.distributed.elastic", "torch.distributed.launcher",
                                                  "torch.multiprocessing")]
    levels = [lg.level for lg in quiet]
    for lg in quiet:
        lg.setLevel(logging.CRITICAL + 1 if os.environ.get("FRACTALMUSIC_DEBUG", "") in ("", "0") else logging.INFO)
    if log is not None:
        where = ", ".join(f"cuda:{i}" for i in plan.gpu_ids) if plan.gpu_ids is not None else "cpu"
        nodes = f" on machine {plan.node_rank} of {plan.num_nodes} (rendezvous {endpoint})" if plan.num_nodes > 1 else ""
        log(f"starting {plan.nproc} process{'es' if plan.nproc > 1 else ''} ({where}){nodes}: world size {plan.world_size}, "
            f"backend {'nccl' if plan.gpu_ids is not None else 'gloo'}")
    # the agent installs its own SIGTERM/SIGINT/SIGHUP/SIGQUIT handlers and leaves them: put back the caller's
    import signal

    names = [n for n in ("SIGTERM", "SIGINT", "SIGHUP", "SIGQUIT") if hasattr(signal, n)]
    handlers = {n: signal.getsignal(getattr(signal, n)) for n in names}
    try:
        elastic_launch(config, entrypoint)(*args)
    except ChildFailedError as exc:
        rank, failure = exc.get_first_failure()
        line = failure_line(failure.message)
        if not line:
            line = (f"killed by signal {failure.signal_name()}" if failure.exitcode is not None and failure.exitcode < 0
                    else f"exited with code {failure.exitcode}")
        raise LaunchError(int(rank), line, failure.exitcode) from None
    finally:
        for lg, level in zip(quiet, levels):
            lg.setLevel(level)
        for n, handler in handlers.items():
            if handler is not None:
                signal.signal(getattr(signal, n), handler)
