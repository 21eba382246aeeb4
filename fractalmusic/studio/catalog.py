"""The checkpoints a studio was pointed at, and the facts their cards show.

Checkpoints are named to the browser only by an id (a hash of the resolved path): a request can pick one of the
files found under `--runs` or given with `--checkpoint`, and never names a path of its own.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import threading
import time
from pathlib import Path
from typing import Any

from fractalmusic.errors import FractalMusicError

CHECKPOINT_SUFFIX = ".pt"
RUN_ACTIVE_SECONDS = 120  # a run whose metrics.jsonl changed this recently counts as still training
MAX_CURVE_POINTS = 2000
_SKIP_DIRS = {".git", "__pycache__", ".venv", "node_modules", ".fm-cache"}


def checkpoint_id(path: Path) -> str:
    return "c" + hashlib.sha1(str(path).encode("utf-8")).hexdigest()[:10]


def _json_field(value: Any) -> Any:
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


def _finite(value: Any) -> float | None:
    try:
        v = float(value)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


def _plain(value: Any, depth: int = 0) -> Any:
    """JSON-safe copy of small config values (long lists such as vocabularies are summarised)."""
    if isinstance(value, (str, int, bool)) or value is None:
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, (list, tuple)):
        if len(value) > 16 or depth > 2:
            return f"({len(value)} items)"
        return [_plain(v, depth + 1) for v in value]
    if isinstance(value, dict):
        if len(value) > 40 or depth > 2:
            return f"({len(value)} entries)"
        return {str(k): _plain(v, depth + 1) for k, v in value.items()}
    return str(value)


def validation_loss(metrics: Any) -> float | None:
    """The validation loss in nats a checkpoint recorded: trainer form {"val": {"loss": ..}} or {"val_loss": ..}."""
    if not isinstance(metrics, dict):
        return None
    val = metrics.get("val")
    if isinstance(val, dict) and _finite(val.get("loss")) is not None:
        return _finite(val.get("loss"))
    return _finite(metrics.get("val_loss"))


def run_dir_of(path: Path) -> Path:
    """runs/x/checkpoints/best.pt -> runs/x; a loose file -> its folder."""
    return path.parent.parent if path.parent.name == "checkpoints" else path.parent


def read_curve(metrics_path: Path) -> dict[str, list[list[float]]]:
    """{"train": [[step, loss], ...], "val": [...]} from a metrics.jsonl (bad lines are skipped)."""
    out: dict[str, list[list[float]]] = {"train": [], "val": []}
    try:
        with open(metrics_path, "r", encoding="utf-8", errors="replace") as f:
            for line in f:
                try:
                    rec = json.loads(line)
                except ValueError:
                    continue  # a line being written right now
                if not isinstance(rec, dict):
                    continue
                split = rec.get("split")
                step, loss = _finite(rec.get("step")), _finite(rec.get("loss"))
                if split in out and step is not None and loss is not None:
                    out[split].append([step, loss / math.log(2.0)])
    except OSError:
        return out
    for split, points in out.items():
        if len(points) > MAX_CURVE_POINTS:  # keep the newest points at full detail, thin the rest evenly
            stride = math.ceil(len(points) / MAX_CURVE_POINTS)
            out[split] = points[:-1][::stride] + points[-1:]
    return out


def sample_option_specs(gen_cls) -> list[dict[str, Any]]:
    """The generator's own sampling options as controls: `SampleOptions` through `fractalmusic.config.option_specs`
    when the plugin kit has it, else the API 1 `sample_options` names (typed loosely). Grid-region options
    (mask_*) are left out: the studio sets them from the selection on the piano roll."""
    from fractalmusic import config as fm_config

    specs: list[Any] = []
    declared = getattr(gen_cls, "SampleOptions", None)
    option_specs = getattr(fm_config, "option_specs", None)
    if declared is not None and option_specs is not None:
        specs.extend(option_specs(declared))
    names = {getattr(s, "name", None) for s in specs}
    legacy = [n for n in getattr(gen_cls, "sample_options", ()) if n not in names]
    for name in legacy:
        specs.append(_LegacySpec(name))
    out = []
    for s in specs:
        name = getattr(s, "name", None)
        if not name or name.startswith("mask_"):
            continue
        choices = getattr(s, "choices", None)
        out.append({
            "name": name,
            "flag": getattr(s, "flag", "--" + name.replace("_", "-")),
            "type": getattr(s, "type_name", "value"),
            "default": _plain(getattr(s, "default", None)),
            "help": getattr(s, "help", "") or "",
            "choices": None if choices is None else [_plain(c) for c in choices],
            "is_flag": bool(getattr(s, "is_flag", False)),
            "legacy": bool(getattr(s, "legacy", False)),
        })
    return out


@dataclasses.dataclass
class _LegacySpec:
    name: str
    legacy: bool = True

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    type_name = "value"
    default = None
    help = "a number, a comma list or text"
    choices = None
    is_flag = False


@dataclasses.dataclass
class Entry:
    id: str
    path: Path
    label: str
    card: dict[str, Any] | None = None
    stamp: tuple[int, int] | None = None  # (mtime_ns, size) the card was read at
    error: str | None = None


class Catalog:
    """Checkpoint files under `runs` folders (searched recursively, found again on every listing) and given files."""

    def __init__(self, runs: list[str | os.PathLike] = (), checkpoints: list[str | os.PathLike] = ()):
        self.runs = [Path(r).resolve() for r in runs]
        self.given = [Path(c).resolve() for c in checkpoints]
        for r in self.runs:
            if not r.is_dir():
                raise FractalMusicError(f"--runs {r}: no such folder")
        for c in self.given:
            if not c.is_file():
                raise FractalMusicError(f"--checkpoint {c}: no such file")
        self._entries: dict[str, Entry] = {}
        self._lock = threading.Lock()
        self.refresh()

    # ----------------------------------------------------------------- discovery
    def _found(self) -> list[tuple[Path, str]]:
        found: list[tuple[Path, str]] = []
        for c in self.given:
            found.append((c, c.name if c.parent.name != "checkpoints" else f"{c.parent.parent.name}/{c.name}"))
        for root in self.runs:
            for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
                dirnames[:] = sorted(d for d in dirnames if d not in _SKIP_DIRS and not d.startswith("."))
                for name in sorted(filenames):
                    if name.endswith(CHECKPOINT_SUFFIX) and not name.startswith("."):
                        p = Path(dirpath, name).resolve()
                        try:
                            label = str(p.relative_to(root))
                        except ValueError:  # a symlink out of the folder: skip it
                            continue
                        found.append((p, label))
        return found

    def refresh(self) -> None:
        with self._lock:
            seen = {}
            for path, label in self._found():
                cid = checkpoint_id(path)
                if cid in seen:
                    continue
                seen[cid] = self._entries.get(cid) or Entry(cid, path, label)
            self._entries = seen

    def get(self, cid: Any) -> Entry:
        if not isinstance(cid, str) or not cid:
            raise LookupError("checkpoint must be the id of a checkpoint from GET /api/checkpoints")
        with self._lock:
            entry = self._entries.get(cid)
        if entry is None:
            self.refresh()
            with self._lock:
                entry = self._entries.get(cid)
        if entry is None:
            raise LookupError(f"no checkpoint with id {cid!r} (see GET /api/checkpoints)")
        return entry

    def entries(self) -> list[Entry]:
        self.refresh()
        with self._lock:
            return list(self._entries.values())

    # ----------------------------------------------------------------- cards
    def card(self, entry: Entry) -> dict[str, Any]:
        try:
            st = entry.path.stat()
        except OSError:
            return {"id": entry.id, "label": entry.label, "error": "the file is gone"}
        stamp = (st.st_mtime_ns, st.st_size)
        if entry.stamp != stamp:
            entry.card, entry.error = None, None
            try:
                entry.card = self._read_card(entry.path)
            except FractalMusicError as exc:
                entry.error = str(exc)
            except Exception as exc:  # a half-written or foreign file must not break the listing
                entry.error = f"cannot read this checkpoint ({type(exc).__name__})"
            entry.stamp = stamp
        out = {"id": entry.id, "label": entry.label, "path": str(entry.path), "size": st.st_size,
               "date": time.strftime("%Y-%m-%d %H:%M", time.localtime(st.st_mtime))}
        run = run_dir_of(entry.path)
        metrics = run / "metrics.jsonl"
        out["run"] = str(run)
        out["has_curve"] = metrics.is_file()
        out["training"] = bool(out["has_curve"] and time.time() - metrics.stat().st_mtime < RUN_ACTIVE_SECONDS)
        if entry.error:
            out["error"] = entry.error
        else:
            out.update(entry.card or {})
        return out

    @staticmethod
    def _read_card(path: Path) -> dict[str, Any]:
        from fractalmusic import plugins
        from fractalmusic.training.checkpoint import load_checkpoint

        ckpt = load_checkpoint(path, map_location="cpu")  # weights_only=True inside; checks the file
        rep_name = ckpt["representation"]["name"]
        gen_name = ckpt["generator"]["name"]
        if hasattr(ckpt, "plugin_class"):  # the Checkpoint class: the providing package's plugin, upgraded state
            rep_cls, gen_cls = ckpt.plugin_class("representation"), ckpt.plugin_class("generator")
            rep_state, gen_config = ckpt.representation_state, ckpt.generator_config
        else:
            rep_cls, gen_cls = plugins.get_representation(rep_name), plugins.get_generator(gen_name)
            rep_state = _json_field(ckpt["representation"].get("state")) or {}
            gen_config = _json_field(ckpt["generator"].get("config")) or {}
        data_config = _json_field(ckpt.get("data_config")) or {}
        train_config = _json_field(ckpt.get("train_config")) or {}
        metrics = _json_field(ckpt.get("metrics")) or {}
        kind = getattr(rep_cls, "kind", "tokens")
        params = sum(int(v.numel()) for v in ckpt.get("model", {}).values() if hasattr(v, "numel"))
        loss = validation_loss(metrics)
        rep_config = rep_state.get("config", rep_state) if isinstance(rep_state, dict) else {}
        if isinstance(rep_config, dict):
            rep_config = {k: v for k, v in rep_config.items() if k not in ("vocab", "itos", "stoi", "tokens")}
        crop = None
        for conf in (data_config, train_config):
            if isinstance(conf, dict) and conf.get("crop_length"):
                crop = int(conf["crop_length"])
                break
        has_text = _has_text_form(rep_cls)
        own = [str(f) for f in (getattr(rep_cls, "output_formats", ()) or ())]  # written by the representation
        declared = getattr(rep_cls, "default_output_formats", None)
        if declared:
            formats = [str(f) for f in declared]
        else:
            formats = (["abc"] if getattr(rep_cls, "uses_abc_text", False) else []) + ["mid", "wav", "png"]
        extra = [f for f in ["musicxml"] + own if f not in formats]
        provided = {}
        for kind_name in ("representation", "generator"):
            ref = getattr(ckpt, f"{kind_name}_ref", None)
            if ref is not None and hasattr(ref, "describe"):
                provided[kind_name] = ref.describe()
        return {
            "provided_by": provided,
            "representation": rep_name,
            "generator": gen_name,
            "kind": kind,
            "representation_config": _plain(rep_config),
            "generator_config": _plain(gen_config),
            "train_config": _plain({k: train_config.get(k) for k in ("lr", "batch_size", "max_steps", "seed")
                                    if isinstance(train_config, dict) and k in train_config}),
            "step": ckpt.get("step"),
            "val_loss_nats": loss,
            "val_bits": None if loss is None else loss / math.log(2.0),
            "corpus": (data_config.get("data") or "default corpus") if isinstance(data_config, dict) else None,
            "crop_length": crop,
            "parameters": params,
            "default_length": (crop or 128) if kind == "grid" else 1000,
            "text_primer": bool(has_text),
            "formats": formats,
            "extra_formats": extra,
            "own_formats": own,
            "options": sample_option_specs(gen_cls),
        }


def _has_text_form(rep_cls) -> bool:
    from fractalmusic.representations.base import Representation

    return getattr(rep_cls, "array_to_text", None) is not Representation.array_to_text
