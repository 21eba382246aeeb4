"""Checkpoint files: one `torch.save` dict, loadable with `torch.load(weights_only=True)`.

Keys:
  format ("fractalmusic-checkpoint"), format_version, package_version,
  representation: {"name", "state" (JSON text)}, generator: {"name", "config" (JSON text)},
  model (state dict), and for resuming: optimizer, scheduler, scaler, rng, step, epoch, data_state,
  metrics (JSON text), train_config (JSON text).
Plugin state travels as JSON text so that nothing in a checkpoint can run code when it is loaded.
Files are written to a temporary name in the same folder, flushed to disk and renamed: a crash leaves either the
old file or the new one, never half of one.
"""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import torch

from fractalmusic.errors import CheckpointError

FORMAT = "fractalmusic-checkpoint"
FORMAT_VERSION = 1


def atomic_write(path: str | os.PathLike, write) -> None:
    """Call `write(fileobj)` on a temporary file beside `path`, fsync it, then rename it over `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    try:  # make the rename itself durable
        dfd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    except OSError:
        pass


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
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # pickle errors, zip errors, truncated files...
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(f"{path}: not a readable fractalmusic checkpoint ({reason[:200]})") from None
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
