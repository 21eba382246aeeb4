"""Checkpoint files: one `torch.save` dict, loadable with `torch.load(weights_only=True)`.

Keys:
  format ("fractalmusic-checkpoint"), format_version, package_version,
  representation: {"name", "state" (JSON text)}, generator: {"name", "config" (JSON text)},
  model (state dict), and for resuming: optimizer, scheduler, scaler, rng (one entry per rank: torch, numpy,
  python, cuda), step, epoch, batch_in_epoch, world_size, metrics (JSON text), train_config (JSON text),
  data_config (JSON text), trainer_state (JSON text: best monitored loss, early-stopping count, time spent).
Plugin state travels as JSON text so that nothing in a checkpoint can run code when it is loaded.
Files are written to a temporary name in the same folder, flushed to disk and renamed: a crash leaves either the
old file or the new one, never half of one.

`CheckpointManager` keeps a run's folder: `last.pt`, `best.pt` and the top-k `step_00005000-val_loss_0.9876.pt`
files (serialised once per event; the others are hard links to that file, or copies where links fail).
"""
from __future__ import annotations

import json
import math
import os
import pickle
import random
import re
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fractalmusic import files
from fractalmusic.errors import CheckpointError

FORMAT = "fractalmusic-checkpoint"
FORMAT_VERSION = 1

# Tests only: when set to a file name, atomic_write of that name stops after part of the file is written, creates
# `<name>.writing` beside it and sleeps, so a test can kill the process in the middle of a checkpoint write.
PAUSE_ENV = "FRACTALMUSIC_TEST_PAUSE_WRITING"


class _PausingWriter:
    """File wrapper used only under PAUSE_ENV: after a few writes, flush, announce, and wait to be killed."""

    def __init__(self, f, marker: Path):
        self._f = f
        self._marker = marker
        self._writes = 0

    def write(self, data):
        n = self._f.write(data)
        self._writes += 1
        if self._writes == 3:
            self._f.flush()
            os.fsync(self._f.fileno())
            self._marker.write_text(str(os.getpid()))
            time.sleep(600)
        return n

    def __getattr__(self, name):
        return getattr(self._f, name)


def atomic_write(path: str | os.PathLike, write) -> None:
    """Write a checkpoint atomically and durably (fsync of data and folder); see fractalmusic.files.atomic_write."""
    path = Path(path)
    wrap = None
    if os.environ.get(PAUSE_ENV) == path.name:
        def wrap(f):
            return _PausingWriter(f, path.with_name(path.name + ".writing"))
    files.atomic_write(path, write, durable=True, wrap=wrap)


def save_checkpoint(path: str | os.PathLike, payload: dict[str, Any]) -> None:
    from fractalmusic import __version__

    payload = dict(payload)
    payload.setdefault("format", FORMAT)
    payload.setdefault("format_version", FORMAT_VERSION)
    payload.setdefault("package_version", __version__)
    atomic_write(path, lambda f: torch.save(payload, f))


def make_payload(representation, generator, **extra: Any) -> dict[str, Any]:
    """The minimal checkpoint: enough to rebuild the representation and generator and sample."""
    model = generator.module if hasattr(generator, "module") else generator
    model = getattr(model, "_orig_mod", model)  # torch.compile wrapper
    payload = {
        "representation": {"name": representation.name, "state": json.dumps(representation.state_dict())},
        "generator": {"name": model.name, "config": json.dumps(model.config_dict())},
        "model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
    }
    payload.update(extra)
    return payload


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"{path}: no such checkpoint file")
    if path.is_dir():
        raise CheckpointError(f"{path}: is a directory, not a checkpoint file")
    with open(path, "rb") as f:
        magic = f.read(4)
    if magic != b"PK\x03\x04":  # torch.save writes a zip archive
        what = "an empty file" if not magic else "not a PyTorch checkpoint file"
        raise CheckpointError(f"{path}: not a fractalmusic checkpoint ({what})")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError:
        raise CheckpointError(
            f"{path}: refused: it holds Python objects that could run code when loaded (weights_only=True); "
            f"fractalmusic checkpoints hold only tensors and plain data"
        ) from None
    except Exception as exc:  # zip errors, truncated files...
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(f"{path}: not a readable fractalmusic checkpoint ({reason[:160]})") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a fractalmusic checkpoint")
    if int(ckpt.get("format_version", 0)) > FORMAT_VERSION:
        raise CheckpointError(
            f"{path}: checkpoint format {ckpt['format_version']} is newer than this fractalmusic understands "
            f"({FORMAT_VERSION}); upgrade fractalmusic"
        )
    return ckpt


def build_from_checkpoint(ckpt: dict[str, Any], device: str | torch.device = "cpu"):
    """(representation, generator) rebuilt from a loaded checkpoint, weights restored, generator in eval mode."""
    from fractalmusic import plugins

    rep_cls = plugins.get_representation(ckpt["representation"]["name"])
    representation = rep_cls.from_state_dict(json.loads(ckpt["representation"]["state"]))
    gen_cls = plugins.get_generator(ckpt["generator"]["name"])
    generator = gen_cls.build(json.loads(ckpt["generator"]["config"]), representation.spec())
    try:
        generator.load_state_dict(ckpt["model"])
    except RuntimeError as exc:
        raise CheckpointError(f"checkpoint weights do not fit the {gen_cls.name} generator: {str(exc)[:200]}") from None
    generator.to(device).eval()
    return representation, generator


# ----------------------------------------------------------------------------------------------------------- RNG
def capture_rng() -> dict[str, Any]:
    """The global RNG states (torch, CUDA, numpy, python) as tensors and plain values (weights_only-safe)."""
    np_state = np.random.get_state()
    py_version, py_state, py_gauss = random.getstate()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {
            "name": str(np_state[0]),
            "keys": torch.from_numpy(np.asarray(np_state[1], dtype=np.int64)),
            "pos": int(np_state[2]),
            "has_gauss": int(np_state[3]),
            "cached_gaussian": float(np_state[4]),
        },
        "python": {"version": int(py_version), "state": torch.tensor(py_state, dtype=torch.int64),
                   "gauss_next": py_gauss},
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = [s.cpu() for s in torch.cuda.get_rng_state_all()]
    return state


def restore_rng(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"].cpu())
    npst = state["numpy"]
    np.random.set_state((npst["name"], npst["keys"].cpu().numpy().astype(np.uint32), int(npst["pos"]),
                         int(npst["has_gauss"]), float(npst["cached_gaussian"])))
    py = state["python"]
    random.setstate((int(py["version"]), tuple(int(x) for x in py["state"].tolist()), py["gauss_next"]))
    cuda = state.get("cuda")
    if cuda and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all([s.cpu() for s in cuda])


# ------------------------------------------------------------------------------------------- payload helpers
def to_json(data: Any) -> str:
    """JSON text for a checkpoint field; non-finite floats become null so any JSON reader can parse it."""

    def clean(v):
        if isinstance(v, float) and not math.isfinite(v):
            return None
        if isinstance(v, dict):
            return {str(k): clean(x) for k, x in v.items()}
        if isinstance(v, (list, tuple)):
            return [clean(x) for x in v]
        if isinstance(v, Path):
            return str(v)
        return v

    return json.dumps(clean(data), sort_keys=True)


def from_json(text: str | None, default: Any = None) -> Any:
    if text is None or text == "":
        return default
    return json.loads(text)


def resolve_resume_path(value: str, output_dir: str | os.PathLike | None) -> Path:
    """`--resume-from-checkpoint` as a path: "last" means OUTPUT/checkpoints/last.pt; a run folder means its last."""
    if value == "last":
        if output_dir is None:
            raise CheckpointError("--resume-from-checkpoint last needs --output-dir (the run folder to continue)")
        return Path(output_dir) / "checkpoints" / "last.pt"
    path = Path(value).expanduser()
    if path.is_dir() and (path / "checkpoints" / "last.pt").is_file():
        return path / "checkpoints" / "last.pt"
    if path.is_dir() and (path / "last.pt").is_file():
        return path / "last.pt"
    return path


def check_resumable(ckpt: dict[str, Any], path) -> None:
    missing = [k for k in ("optimizer", "step", "rng", "train_config") if k not in ckpt]
    if missing:
        raise CheckpointError(f"{path}: holds weights only (no {', '.join(missing)}); it cannot resume training")


# ------------------------------------------------------------------------------------------ run folder
_TOPK = re.compile(r"^step_(\d+)-(val|train)_loss_(.+)\.pt$")


@dataclass
class TopKEntry:
    step: int
    monitor: str  # "val" | "train"
    value: float
    path: Path


def topk_name(step: int, monitor: str, value: float) -> str:
    return f"step_{step:08d}-{monitor}_loss_{value:.4f}.pt"


def _link_or_copy(src: Path, dst: Path) -> None:
    """Make `dst` hold `src`'s bytes, atomically: a hard link renamed into place, or an atomic copy."""
    fd, tmp = tempfile.mkstemp(prefix=f".{dst.name}.", suffix=".tmp", dir=dst.parent)
    os.close(fd)
    os.unlink(tmp)
    try:
        os.link(src, tmp)
        os.replace(tmp, dst)
        return
    except OSError:
        try:
            os.unlink(tmp)
        except OSError:
            pass

    def copy(f):
        with open(src, "rb") as s:
            shutil.copyfileobj(s, f, length=1 << 20)

    atomic_write(dst, copy)


class CheckpointManager:
    """`last.pt`, `best.pt` and the top-k step files of one run folder (used by rank 0 only)."""

    def __init__(self, directory: str | os.PathLike, save_top_k: int = 3):
        self.dir = Path(directory)
        self.save_top_k = int(save_top_k)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.removed_partial = self._remove_partial_files()

    @property
    def last(self) -> Path:
        return self.dir / "last.pt"

    @property
    def best(self) -> Path:
        return self.dir / "best.pt"

    def _remove_partial_files(self) -> int:
        """Temporary files left by a process killed while writing (never a finished checkpoint)."""
        n = 0
        for p in self.dir.glob(".*.pt.*.tmp"):
            try:
                p.unlink()
                n += 1
            except OSError:
                pass
        return n

    def topk_entries(self) -> list[TopKEntry]:
        out = []
        for p in self.dir.glob("step_*.pt"):
            m = _TOPK.match(p.name)
            if not m:
                continue
            try:
                value = float(m.group(3))
            except ValueError:
                continue
            out.append(TopKEntry(int(m.group(1)), m.group(2), value, p))
        out.sort(key=lambda e: (e.value, -e.step))
        return out

    def wants_topk(self, value: float | None) -> bool:
        if self.save_top_k == 0 or value is None or not math.isfinite(value):
            return False
        if self.save_top_k < 0:
            return True
        entries = self.topk_entries()
        return len(entries) < self.save_top_k or value < entries[self.save_top_k - 1].value

    def write(self, payload: dict[str, Any], names: list[str]) -> list[Path]:
        """Serialise `payload` once into the first name, then give the other names the same bytes."""
        if not names:
            return []
        paths = [self.dir / n for n in names]
        save_checkpoint(paths[0], payload)
        for p in paths[1:]:
            _link_or_copy(paths[0], p)
        return paths

    def prune_topk(self) -> list[Path]:
        """Delete step files beyond the k best; returns what was deleted."""
        if self.save_top_k < 0:
            return []
        removed = []
        for e in self.topk_entries()[self.save_top_k:]:
            try:
                e.path.unlink()
                removed.append(e.path)
            except OSError:
                pass
        return removed
