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

`Checkpoint` (a dict subclass, so `ckpt["step"]` still works) owns this on-disk form: every other module reads a
checkpoint through `Checkpoint.load` / `load_checkpoint` and its decoded accessors (`generator_config`,
`representation_state`, `model_state`, `train_config`, `data_config`, `metrics`, `trainer_state`, `step` ...),
never by decoding its JSON fields by hand. Loading checks, for sampling, evaluation and resume alike:
  * the zip archive's CRC-32 of every member (flipped bytes anywhere in the file are found before unpickling);
  * the type and shape of every field present (and, for resume, that the resume fields are there);
  * that every floating-point weight is finite (a NaN/inf tensor is refused by name).
Each problem is one CheckpointError line. Plugin identity: the representation and generator entries record the
entry-point name, the providing distribution and its version and the plugin's `state_version`; the plugins are
looked up as `dist:name` (so two packages offering one name are no problem), and a state written by an older
`state_version` goes through the plugin's `upgrade_state` classmethod.
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
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fractalmusic import files
from fractalmusic.errors import CheckpointError, FractalMusicError

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


def _plugin_entry(kind: str, obj, state_key: str, state: Any) -> dict[str, Any]:
    """A checkpoint's record of one plugin: entry point, providing distribution and version, state version."""
    from fractalmusic import plugins

    cls = type(obj)
    prov = plugins.provenance(cls) or {}
    return {
        "name": prov.get("entry_point") or cls.name,
        "dist": prov.get("dist"),
        "dist_version": prov.get("version"),
        "state_version": int(getattr(cls, "state_version", 1)),
        state_key: json.dumps(state),
    }


def make_payload(representation, generator, **extra: Any) -> dict[str, Any]:
    """The minimal checkpoint: enough to rebuild the representation and generator and sample."""
    model = generator.module if hasattr(generator, "module") else generator
    model = getattr(model, "_orig_mod", model)  # torch.compile wrapper
    payload = {
        "representation": _plugin_entry("representation", representation, "state", representation.state_dict()),
        "generator": _plugin_entry("generator", model, "config", model.config_dict()),
        "model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
    }
    payload.update(extra)
    return payload


@dataclass(frozen=True)
class PluginRef:
    """Which plugin a checkpoint was written with."""

    kind: str  # "representation" | "generator"
    name: str  # entry-point name (= the class's `name`)
    dist: str | None = None  # providing distribution (None in checkpoints written before it was recorded)
    dist_version: str | None = None
    state_version: int = 1

    @property
    def qualified(self) -> str:
        """`dist:name` where the distribution is known, else `name`."""
        return f"{self.dist}:{self.name}" if self.dist else self.name

    def describe(self) -> str:
        if not self.dist:
            return repr(self.name)
        if self.dist == "<runtime>":
            return f"{self.name!r} (registered at run time)"
        version = f" {self.dist_version}" if self.dist_version and self.dist_version != "-" else ""
        return f"{self.name!r} from {self.dist}{version}"

    def matches(self, given: str) -> bool:
        """Whether a user's `--generator NAME` / `pkg:NAME` names this plugin."""
        from fractalmusic.plugins import _normalise

        dist, _, name = given.rpartition(":")
        if name != self.name:
            return False
        return not dist or (self.dist is not None and _normalise(dist) == _normalise(self.dist))


_RESUME_FIELDS = ("optimizer", "step", "rng", "train_config")
_JSON_FIELDS = ("metrics", "train_config", "data_config", "trainer_state", "sampling")


def verify_archive(path: Path) -> None:
    """Check the CRC-32 of every member of the checkpoint's zip archive (torch.load does not)."""
    try:
        with zipfile.ZipFile(path) as archive:
            bad = archive.testzip()
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError, ValueError, RuntimeError) as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(f"{path}: not a readable fractalmusic checkpoint (damaged archive: {reason[:160]})") from None
    if bad is not None:
        member = bad.split("/", 1)[-1]
        what = "the weights or optimizer state" if member.startswith("data/") else "its structure"
        raise CheckpointError(f"{path}: damaged checkpoint: archive member {member!r} fails its CRC-32 check "
                              f"({what} changed after it was written)")


class Checkpoint(dict):
    """A loaded, checked checkpoint: the payload dict plus decoded, typed accessors (see the module docstring).

    Save one again through `save_checkpoint` (which writes a plain dict): `torch.save` of this subclass itself would
    store its class, and `weights_only` loading refuses class references."""

    def __init__(self, data: dict[str, Any], path: str | os.PathLike | None = None):
        super().__init__(data)
        self.path = str(path) if path is not None else "checkpoint"
        self._classes: dict[str, Any] = {}
        self._upgraded: dict[str, Any] = {}
        self._checked: set[str] = set()  # purposes already validated (a resume checks once, not at every hand-over)

    # ------------------------------------------------------------- reading
    @classmethod
    def load(cls, path: str | os.PathLike, map_location: str | torch.device = "cpu", purpose: str = "sample",
             verify: bool = True) -> "Checkpoint":
        """Read and check a checkpoint file. `purpose`: "sample" (also evaluation) or "resume"."""
        path = Path(path)
        if not path.exists():
            raise CheckpointError(f"{path}: no such checkpoint file")
        if path.is_dir():
            raise CheckpointError(f"{path}: is a directory, not a checkpoint file")
        if not path.is_file():  # a FIFO or a device: opening it could block forever (issue 13, bounded reading)
            raise CheckpointError(f"{path}: not a regular file (a FIFO or a device), not a checkpoint file")
        try:
            with open(path, "rb") as f:
                magic = f.read(4)
        except OSError as exc:
            raise CheckpointError(f"{path}: cannot be read ({exc.strerror or exc})") from None
        if magic != b"PK\x03\x04":  # torch.save writes a zip archive
            what = "an empty file" if not magic else "not a PyTorch checkpoint file"
            raise CheckpointError(f"{path}: not a fractalmusic checkpoint ({what})")
        if verify:
            verify_archive(path)
        try:
            data = torch.load(path, map_location=map_location, weights_only=True)
        except pickle.UnpicklingError:
            raise CheckpointError(
                f"{path}: refused: it holds Python objects that could run code when loaded (weights_only=True); "
                f"fractalmusic checkpoints hold only tensors and plain data"
            ) from None
        except Exception as exc:  # zip errors, truncated files...
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise CheckpointError(f"{path}: not a readable fractalmusic checkpoint ({reason[:160]})") from None
        return cls.wrap(data, path, purpose)

    @classmethod
    def wrap(cls, data: Any, path: str | os.PathLike | None = None, purpose: str = "sample") -> "Checkpoint":
        """Check an already loaded payload (a dict from torch.load, or a Checkpoint) for `purpose`."""
        if isinstance(data, Checkpoint):
            if path is not None:
                data.path = str(path)
            if purpose not in data._checked:
                data.validate(purpose)
            return data
        name = str(path) if path is not None else "checkpoint"
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise CheckpointError(f"{name}: not a fractalmusic checkpoint")
        ckpt = cls(data, path)
        ckpt.validate(purpose)
        return ckpt

    def _fail(self, message: str) -> CheckpointError:
        return CheckpointError(f"{self.path}: damaged checkpoint: {message}")

    def validate(self, purpose: str = "sample") -> None:
        """Type and shape of every field present; for `purpose` "resume" also that the resume fields exist."""
        version = self.get("format_version", 0)
        if isinstance(version, bool) or not isinstance(version, int):
            raise self._fail(f"format_version is {type(version).__name__}, not a whole number")
        if version > FORMAT_VERSION:
            raise CheckpointError(
                f"{self.path}: checkpoint format {version} is newer than this fractalmusic understands "
                f"({FORMAT_VERSION}); upgrade fractalmusic"
            )
        if "package_version" in self and not isinstance(self["package_version"], (str, type(None))):
            raise self._fail("package_version is not text")
        for kind, key in (("representation", "state"), ("generator", "config")):
            entry = self.get(kind)
            if not isinstance(entry, dict):
                raise self._fail(f"no {kind} entry" if entry is None else f"the {kind} entry is not a mapping")
            if not isinstance(entry.get("name"), str) or not entry["name"]:
                raise self._fail(f"the {kind} entry has no name")
            for opt in ("dist", "dist_version"):
                if entry.get(opt) is not None and not isinstance(entry[opt], str):
                    raise self._fail(f"the {kind} entry's {opt} is not text")
            sv = entry.get("state_version", 1)
            if isinstance(sv, bool) or not isinstance(sv, int) or sv < 0:
                raise self._fail(f"the {kind} entry's state_version is not a whole number")
            self._decode(f"{kind} {key}", entry.get(key), required=True)
        model = self.get("model")
        if not isinstance(model, dict):
            raise self._fail("no model weights" if model is None else "the model weights are not a mapping")
        for name, tensor in model.items():
            if not isinstance(name, str) or not torch.is_tensor(tensor):
                raise self._fail(f"model entry {name!r} is not a named tensor")
            if tensor.is_floating_point() or tensor.is_complex():
                if not bool(torch.isfinite(tensor).all()):
                    raise self._fail(f"weight tensor {name!r} holds NaN or infinite values (the run diverged "
                                     f"before this checkpoint was written; use an earlier one)")
        for key in _JSON_FIELDS:
            if key in self:
                self._decode(key, self[key], required=False)
        for key, low in (("step", 0), ("epoch", 0), ("batch_in_epoch", 0), ("world_size", 1)):
            value = self.get(key)
            if value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise self._fail(f"{key} is {value!r}, not a whole number >= {low}")
        if "optimizer" in self:
            opt = self["optimizer"]
            if not isinstance(opt, dict) or not isinstance(opt.get("state"), dict) \
                    or not isinstance(opt.get("param_groups"), list) \
                    or not all(isinstance(g, dict) and isinstance(g.get("params"), list) for g in opt["param_groups"]):
                raise self._fail("the optimizer state is not an optimizer state dict")
        for key in ("scheduler", "scaler"):
            if self.get(key) is not None and not isinstance(self[key], dict):
                raise self._fail(f"the {key} state is not a mapping")
        if "rng" in self:
            rngs = self["rng"] if isinstance(self["rng"], list) else [self["rng"]]
            if not rngs:
                raise self._fail("the RNG state list is empty")
            for i, st in enumerate(rngs):
                problem = _rng_problem(st)
                if problem:
                    raise self._fail(f"RNG state of rank {i}: {problem}")
        if purpose == "resume":
            self.check_resumable()
        self._checked.add(purpose)
        if purpose == "resume":
            self._checked.add("sample")

    def _decode(self, what: str, raw: Any, required: bool) -> Any:
        if raw is None:
            if required:
                raise self._fail(f"no {what}")
            return {}
        if isinstance(raw, (bytes, bytearray)):
            raw = bytes(raw).decode("utf-8", errors="replace")
        if isinstance(raw, str):
            try:
                raw = json.loads(raw) if raw.strip() else {}
            except ValueError:
                raise self._fail(f"the {what} is not valid JSON") from None
        if not isinstance(raw, dict):
            raise self._fail(f"the {what} is not a JSON object")
        return raw

    def check_resumable(self) -> None:
        missing = [k for k in _RESUME_FIELDS if k not in self]
        if missing:
            raise CheckpointError(
                f"{self.path}: holds weights only (no {', '.join(missing)}); it cannot resume training")

    # ------------------------------------------------------------- facts
    def plugin_ref(self, kind: str) -> PluginRef:
        entry = self[kind]
        return PluginRef(kind, entry["name"], entry.get("dist"), entry.get("dist_version"),
                         int(entry.get("state_version", 1)))

    @property
    def representation_ref(self) -> PluginRef:
        return self.plugin_ref("representation")

    @property
    def generator_ref(self) -> PluginRef:
        return self.plugin_ref("generator")

    @property
    def step(self) -> int | None:
        return self.get("step")

    @property
    def epoch(self) -> int:
        return int(self.get("epoch") or 0)

    @property
    def batch_in_epoch(self) -> int:
        return int(self.get("batch_in_epoch") or 0)

    @property
    def world_size(self) -> int:
        return int(self.get("world_size") or 1)

    @property
    def package_version(self) -> str | None:
        return self.get("package_version")

    @property
    def metrics(self) -> dict[str, Any]:
        return self._decode("metrics", self.get("metrics"), required=False)

    @property
    def train_config(self) -> dict[str, Any]:
        return self._decode("train_config", self.get("train_config"), required=False)

    @property
    def data_config(self) -> dict[str, Any]:
        return self._decode("data_config", self.get("data_config"), required=False)

    @property
    def trainer_state(self) -> dict[str, Any]:
        return self._decode("trainer_state", self.get("trainer_state"), required=False)

    @property
    def sampling(self) -> dict[str, Any]:
        """Sampling settings recommended at training time ({"temperature": 0.95, "top_p": 0.97, ...}, see
        fractalmusic.training.recommend); {} for checkpoints written without them."""
        return self._decode("sampling", self.get("sampling"), required=False)

    @property
    def rng_states(self) -> list[dict[str, Any]]:
        rng = self.get("rng")
        if rng is None:
            return []
        return rng if isinstance(rng, list) else [rng]

    # ------------------------------------------------------------- plugins
    def plugin_class(self, kind: str):
        """The installed class for the checkpoint's plugin: `dist:name` first, the bare name if that dist is gone."""
        if kind in self._classes:
            return self._classes[kind]
        from fractalmusic import plugins
        from fractalmusic.errors import PluginError

        ref = self.plugin_ref(kind)
        cls = None
        if ref.dist:
            providers = [p for p in plugins.discover(kind)
                         if p.name == ref.name and plugins._normalise(p.dist) == plugins._normalise(ref.dist)]
            if providers:
                cls = plugins.get(kind, ref.qualified)
        if cls is None:
            try:
                cls = plugins.get(kind, ref.name)
            except PluginError as exc:
                if ref.dist and ref.dist != plugins.RUNTIME_DIST:
                    raise PluginError(f"{self.path}: trained with {kind} {ref.describe()}, which is not installed "
                                      f"({exc})") from None
                raise PluginError(f"{self.path}: trained with {kind} {ref.describe()}: {exc}") from None
        self._classes[kind] = cls
        return cls

    def _upgrade(self, kind: str, state: Any) -> Any:
        cls = self.plugin_class(kind)
        ref = self.plugin_ref(kind)
        current = int(getattr(cls, "state_version", 1))
        if ref.state_version == current:
            return state
        if ref.state_version > current:
            raise CheckpointError(
                f"{self.path}: written by {kind} {ref.describe()} with state version {ref.state_version}; the "
                f"installed {cls.name!r} reads state versions up to {current}: upgrade the plugin")
        try:
            upgraded = cls.upgrade_state(state, ref.state_version)
        except FractalMusicError:
            raise
        except Exception as exc:
            raise CheckpointError(f"{self.path}: the {kind} {cls.name!r} could not upgrade its state from version "
                                  f"{ref.state_version} to {current} ({type(exc).__name__}: {exc})") from None
        if not isinstance(upgraded, dict):
            raise CheckpointError(f"{self.path}: the {kind} {cls.name!r} upgrade_state returned no state dict")
        return upgraded

    @property
    def representation_state(self) -> dict[str, Any]:
        """The representation's `state_dict()`, upgraded to the installed plugin's state version."""
        if "representation" not in self._upgraded:
            raw = self._decode("representation state", self["representation"].get("state"), required=True)
            self._upgraded["representation"] = self._upgrade("representation", raw)
        return self._upgraded["representation"]

    def _generator_state(self) -> dict[str, Any]:
        if "generator" not in self._upgraded:
            raw = {"config": self._decode("generator config", self["generator"].get("config"), required=True),
                   "model": self["model"]}
            state = self._upgrade("generator", raw)
            if not isinstance(state.get("config"), dict) or not isinstance(state.get("model"), dict):
                raise CheckpointError(f"{self.path}: the generator's upgrade_state must return "
                                      f"{{'config': dict, 'model': state dict}}")
            self._upgraded["generator"] = state
        return self._upgraded["generator"]

    @property
    def generator_config(self) -> dict[str, Any]:
        """The generator's `config_dict()`, upgraded to the installed plugin's state version."""
        return self._generator_state()["config"]

    @property
    def model_state(self) -> dict[str, torch.Tensor]:
        """The generator's weights, upgraded to the installed plugin's state version."""
        return self._generator_state()["model"]

    def build(self, device: str | torch.device = "cpu"):
        """(representation, generator) rebuilt, weights restored, generator in eval mode."""
        rep_cls = self.plugin_class("representation")
        gen_cls = self.plugin_class("generator")
        try:
            representation = rep_cls.from_state_dict(self.representation_state)
        except FractalMusicError as exc:
            raise CheckpointError(f"{self.path}: the {rep_cls.name} representation state does not load ({exc})") \
                from None
        except (KeyError, TypeError, ValueError, AttributeError, IndexError, OverflowError) as exc:
            raise self._fail(f"the {rep_cls.name} representation state does not load "
                             f"({type(exc).__name__}: {str(exc)[:160]})") from None
        try:
            generator = gen_cls.build(self.generator_config, representation.spec())
        except FractalMusicError as exc:
            raise CheckpointError(f"{self.path}: the {gen_cls.name} generator config does not build ({exc})") \
                from None
        except (KeyError, TypeError, ValueError, AttributeError, IndexError, OverflowError, RuntimeError,
                MemoryError) as exc:
            raise self._fail(f"the {gen_cls.name} generator config does not build "
                             f"({type(exc).__name__}: {str(exc)[:160]})") from None
        try:
            generator.load_state_dict(self.model_state)
        except (RuntimeError, KeyError, TypeError, ValueError) as exc:
            lines = [line.strip() for line in str(exc).strip().splitlines() if line.strip()]
            detail = lines[1] if len(lines) > 1 and lines[0].startswith("Error(s) in loading") else lines[0] \
                if lines else type(exc).__name__
            raise CheckpointError(f"{self.path}: checkpoint weights do not fit the {gen_cls.name} generator: "
                                  f"{detail[:200]}") from None
        generator.to(device).eval()
        return representation, generator


def _rng_problem(state: Any) -> str | None:
    """Why one rank's RNG entry is not what `capture_rng` writes, or None."""
    if not isinstance(state, dict):
        return "not a mapping"
    t = state.get("torch")
    if not torch.is_tensor(t) or t.dtype != torch.uint8 or t.dim() != 1:
        return "torch state is not a byte tensor"
    npst = state.get("numpy")
    if not isinstance(npst, dict) or not torch.is_tensor(npst.get("keys")) or npst["keys"].dim() != 1 \
            or npst["keys"].numel() != 624 or not isinstance(npst.get("pos"), int):
        return "numpy state is not a Mersenne Twister state"
    py = state.get("python")
    if not isinstance(py, dict) or not torch.is_tensor(py.get("state")) or py["state"].dim() != 1 \
            or py["state"].numel() != 625 or not isinstance(py.get("version"), int):
        return "python state is not a Mersenne Twister state"
    cuda = state.get("cuda")
    if cuda is not None and not (isinstance(cuda, list) and all(torch.is_tensor(c) for c in cuda)):
        return "cuda state is not a list of tensors"
    return None


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu",
                    purpose: str = "sample") -> Checkpoint:
    """`Checkpoint.load` (kept for callers of the function form)."""
    return Checkpoint.load(path, map_location=map_location, purpose=purpose)


def build_from_checkpoint(ckpt: dict[str, Any], device: str | torch.device = "cpu"):
    """(representation, generator) rebuilt from a loaded checkpoint, weights restored, generator in eval mode."""
    return Checkpoint.wrap(ckpt).build(device)


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


def check_resumable(ckpt: dict[str, Any], path) -> Checkpoint:
    """The checkpoint checked for resuming (every field's type and shape, and the resume fields present)."""
    return Checkpoint.wrap(ckpt, path, purpose="resume")


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
