"""Will a training run fit in memory? Checked from the generator's config before anything large is allocated.

    check_training_memory(gen_cls, gen_config, spec, batch_size=32, crop_length=256, device=torch.device("cpu"))

raises a ConfigError (one line saying what to lower) when the estimate is above what the device has. The estimate:

* parameters, counted on a model built on PyTorch's "meta" device (shapes only, no memory), times 16 bytes
  (float32 weights, gradients and AdamW's two moments);
* activations kept for the backward pass, measured on a real model at two short crop lengths with one item
  (saved tensors, by storage) and extrapolated linearly to --crop-length x --batch-size;
* the batch itself (int64 tokens / cells and a mask).

It is meant to refuse the clearly impossible (a billion-wide hidden layer, a ten-million-token crop) within
seconds, not to predict the peak. Measured against CUDA peaks (H200, torch 2.11), the activation figure ran from
1.0x (LSTM, crop 256) to 1.8x (2-layer 2048-wide LSTM, crop 512) of the real use, because the probe runs the CPU
kernels, which keep more for backward than cuDNN's; so a run is refused only when the parameters, the batch and
half the activation figure already exceed what the device has.
What the device has: free GPU memory (`torch.cuda.mem_get_info`), or on the CPU MemAvailable from /proc/meminfo
(os.sysconf elsewhere), lowered to a cgroup's memory limit where one applies.
"""
from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch.overrides import TorchFunctionMode

from fractalmusic.errors import ConfigError, FractalMusicError

GiB = float(1 << 30)
BYTES_PER_PARAMETER = 16  # float32 weight + gradient + AdamW exp_avg + exp_avg_sq
PROBE_MAX_PARAMETERS = 200_000_000  # build a real model to measure activations only up to this size
_PROBE_LENGTHS = {"tokens": (16, 32), "grid": (32, 64)}


@dataclass
class MemoryEstimate:
    parameters: int | None
    parameter_bytes: int
    activation_bytes: int
    batch_bytes: int
    available: int | None
    where: str

    @property
    def total(self) -> int:
        return self.parameter_bytes + self.activation_bytes + self.batch_bytes

    @property
    def at_least(self) -> int:
        """What the run surely needs: the activation figure can be up to 2x high (see the module docstring)."""
        return self.parameter_bytes + self.activation_bytes // 2 + self.batch_bytes


# ----------------------------------------------------------------------------------------- what the device has
def _meminfo() -> dict[str, int]:
    out: dict[str, int] = {}
    try:
        text = Path("/proc/meminfo").read_text()
    except OSError:
        return out
    for line in text.splitlines():
        key, _, rest = line.partition(":")
        parts = rest.split()
        if parts and parts[0].isdigit():
            out[key.strip()] = int(parts[0]) * (1024 if len(parts) > 1 and parts[1] == "kB" else 1)
    return out


def _cgroup_room() -> int | None:
    """Bytes this process's cgroup may still take (v2 memory.max - memory.current; v1 limit - usage)."""
    for limit_file, usage_file in (("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),
                                   ("/sys/fs/cgroup/memory/memory.limit_in_bytes",
                                    "/sys/fs/cgroup/memory/memory.usage_in_bytes")):
        try:
            limit = Path(limit_file).read_text().strip()
            usage = Path(usage_file).read_text().strip()
        except OSError:
            continue
        if not limit.isdigit() or not usage.isdigit():
            return None  # "max": no limit
        if int(limit) >= 1 << 60:  # v1 spells "no limit" as a huge number
            return None
        return max(0, int(limit) - int(usage))
    return None


def available_memory(device: torch.device | str) -> tuple[int | None, str]:
    """(bytes free for this run on `device`, a short description), None where it cannot be told."""
    device = torch.device(device)
    if device.type == "cuda" and torch.cuda.is_available():
        try:
            free, _total = torch.cuda.mem_get_info(device)
            return int(free), f"free on {device}"
        except Exception:  # noqa: BLE001 - a driver that does not answer: no check
            return None, str(device)
    if device.type != "cpu":
        return None, str(device)
    info = _meminfo()
    free = info.get("MemAvailable")
    if free is None:
        try:
            free = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (ValueError, OSError, AttributeError):
            free = None
    room = _cgroup_room()
    if room is not None:
        free = room if free is None else min(free, room)
        return free, "available to this process (memory limit of its container)"
    return free, "of memory available"


# ----------------------------------------------------------------------------------------- the estimate
def _options_text(options: dict[str, Any]) -> str:
    return " ".join(f"--{k.replace('_', '-')} {v}" for k, v in options.items())


class _SkipInitOnMeta(TorchFunctionMode):
    """Skips in-place initialisation ops on meta tensors: they change no shape, and PyTorch runs some of them
    (normal_, ...) on "meta" through a reference implementation that imports torch._dynamo (seconds)."""

    OPS = frozenset({"normal_", "uniform_", "trunc_normal_", "fill_", "zero_", "erfinv_", "mul_", "add_", "sub_",
                     "div_", "clamp_", "copy_", "exponential_", "random_", "bernoulli_", "addcmul_", "log_normal_",
                     "cauchy_", "geometric_"})

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if getattr(func, "__name__", "") in self.OPS:
            target = args[0] if args else kwargs.get("tensor", kwargs.get("self"))
            if isinstance(target, torch.Tensor) and target.is_meta:
                return target
        return func(*args, **kwargs)


def count_parameters(gen_cls, gen_config: dict[str, Any], spec, options: dict[str, Any] | None = None) -> int | None:
    """Parameters of the generator `gen_cls.build(gen_config, spec)` would make, counted without allocating them.

    ConfigError when even its shapes cannot be represented (sizes overflow); None when the generator cannot be
    built on the meta device (then nothing is known)."""
    try:
        with torch.device("meta"), _SkipInitOnMeta():
            model = gen_cls.build(gen_config, spec)
    except FractalMusicError:
        raise
    except (RuntimeError, ValueError, OverflowError, MemoryError) as exc:
        text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        if any(word in text.lower() for word in ("overflow", "too large", "negative dimension", "out of memory")):
            given = _options_text(options or {})
            hint = f"lower {given}" if given else "choose a smaller model"
            raise ConfigError(f"generator {gen_cls.name} cannot be built at this size ({text[:120]}): {hint}") from None
        return None
    except Exception:  # noqa: BLE001 - a plugin that cannot be built on "meta": no estimate
        return None
    return int(sum(p.numel() for p in model.parameters()))


def _dummy_batch(spec, length: int) -> dict[str, torch.Tensor]:
    if spec.kind == "grid":
        height = int(getattr(spec, "height", 128) or 128)
        return {"grid": torch.zeros((1, height, length), dtype=torch.long),
                "mask": torch.ones((1, length), dtype=torch.bool)}
    token = int(spec.bos_id) if spec.bos_id is not None else (1 if spec.vocab_size > 1 else 0)
    return {"tokens": torch.full((1, length + 1), token, dtype=torch.long),
            "mask": torch.ones((1, length + 1), dtype=torch.bool)}


def _saved_bytes(model, batch) -> int:
    """Bytes of the distinct storages autograd keeps for the backward pass of `model.loss(batch)`."""
    storages: dict[int, int] = {}

    def pack(t):
        try:
            st = t.untyped_storage()
            storages[st.data_ptr()] = max(storages.get(st.data_ptr(), 0), st.nbytes())
        except Exception:  # noqa: BLE001 - tensors without storage (sparse, nested)
            pass
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = model.loss(batch)
    del out
    return sum(storages.values())


def activation_bytes_per_unit(gen_cls, gen_config: dict[str, Any], spec, grad_checkpoint: bool = False) -> float | None:
    """Bytes of activations per crop unit (token or time step) of one batch item, measured on two short crops."""
    from fractalmusic.training.checkpoint import capture_rng, restore_rng

    short, long = _PROBE_LENGTHS.get(spec.kind, (16, 32))
    saved = capture_rng()
    try:
        torch.manual_seed(0)
        model = gen_cls.build(gen_config, spec)
        model.train()
        with contextlib.suppress(Exception):
            model.set_grad_checkpointing(bool(grad_checkpoint))
        sizes = []
        for length in (short, long):
            torch.manual_seed(0)
            sizes.append(_saved_bytes(model, _dummy_batch(spec, length)))
    except Exception:  # noqa: BLE001 - a generator that cannot take the probe: no activation estimate
        return None
    finally:
        restore_rng(saved)
    return max(0.0, (sizes[1] - sizes[0]) / (long - short))


def estimate_training_memory(gen_cls, gen_config: dict[str, Any], spec, *, batch_size: int, crop_length: int,
                             device: torch.device | str = "cpu", precision: str = "32", grad_checkpoint: bool = False,
                             options: dict[str, Any] | None = None,
                             val_batch_size: int | None = None) -> MemoryEstimate:
    available, where = available_memory(device)
    n_params = count_parameters(gen_cls, gen_config, spec, options)
    param_bytes = (n_params or 0) * BYTES_PER_PARAMETER
    height = int(getattr(spec, "height", 128) or 128) if spec.kind == "grid" else 1
    units = int(batch_size) * (int(crop_length) + (1 if spec.kind == "tokens" else 0))
    # int64 values + bool mask; a bigger validation batch (no gradients) needs at least its own tensors
    widest = max(int(batch_size), int(val_batch_size or 0))
    batch_bytes = widest * (units // int(batch_size)) * height * 9
    act = 0
    small_enough = n_params is not None and n_params <= PROBE_MAX_PARAMETERS
    if small_enough and (available is None or param_bytes < available):
        per_unit = activation_bytes_per_unit(gen_cls, gen_config, spec, grad_checkpoint)
        if per_unit:
            act = int(per_unit * units * (0.5 if precision in ("16", "bf16") else 1.0))
    return MemoryEstimate(n_params, param_bytes, act, batch_bytes, available, where)


def check_training_memory(gen_cls, gen_config: dict[str, Any], spec, *, batch_size: int, crop_length: int,
                          device: torch.device | str = "cpu", precision: str = "32", grad_checkpoint: bool = False,
                          options: dict[str, Any] | None = None,
                          val_batch_size: int | None = None) -> MemoryEstimate:
    """ConfigError (one line: what is needed, what there is, what to lower) when the run clearly cannot fit."""
    est = estimate_training_memory(gen_cls, gen_config, spec, batch_size=batch_size, crop_length=crop_length,
                                   device=device, precision=precision, grad_checkpoint=grad_checkpoint,
                                   options=options, val_batch_size=val_batch_size)
    if est.available is None or est.at_least <= est.available:
        return est
    unit = "time steps" if spec.kind == "grid" else "tokens"
    parts = []
    if est.parameters is not None:
        parts.append(f"model {est.parameters:,} parameters with gradients and AdamW state: "
                     f"{est.parameter_bytes / GiB:.1f} GiB")
    parts.append(f"activations and batch for --batch-size {batch_size} x --crop-length {crop_length} {unit}: "
                 f"{(est.activation_bytes // 2 + est.batch_bytes) / GiB:.1f} GiB or more")
    if est.parameter_bytes > est.available / 2:
        given = _options_text(options or {})
        lower = f"lower the model size ({given})" if given else "choose a smaller model"
    else:
        lower = "lower --crop-length or --batch-size"
        if val_batch_size and val_batch_size > batch_size and est.batch_bytes > est.activation_bytes // 2:
            lower = "lower --crop-length or --val-batch-size"
        if not grad_checkpoint and est.activation_bytes > est.batch_bytes:
            lower += " (or add --grad-checkpoint)"
    raise ConfigError(f"this run needs at least {est.at_least / GiB:.1f} GiB ({'; '.join(parts)}), more than the "
                      f"{est.available / GiB:.1f} GiB {est.where}: {lower}")
