"""The studio's work: checked requests, one worker thread that samples (one model at a time), and the samples.

Every sample goes through `fractalmusic.api` exactly as `fmusic sample` does (`Model.load`, `prepare`, `run`,
`decode`, `write_samples`), so the command a card shows recreates its files. Requests queue; a job reports its
phase and, for token models, how far it is; a cancel stops it at the next network call.
"""
from __future__ import annotations

import inspect
import itertools
import math
import os
import queue
import re
import secrets
import shlex
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from fractalmusic.errors import ConfigError, FractalMusicError
from fractalmusic.studio.catalog import Catalog, Entry

MAX_SAMPLES = 16  # per request
MAX_TOKENS = 20000
MAX_GRID_WIDTH = 4096
MAX_PRIMER_CHARS = 100_000
MAX_QUEUE = 16
MAX_NOTATION_NOTES = 3000
SEED_LIMIT = 2**31
FORMATS = ("abc", "mid", "wav", "png", "musicxml")
MASKS = ("mask_start", "mask_end", "mask_pitch_low", "mask_pitch_high")


class BadRequest(Exception):
    """A request the studio refuses: becomes a 4xx answer with this one-line message."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


class Cancelled(Exception):
    pass


# ----------------------------------------------------------------------------------------------- checks


def _int(body: dict, key: str, low: int | None = None, high: int | None = None, default: Any = None) -> Any:
    value = body.get(key, default)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, (int, float)) or int(value) != value:
        raise BadRequest(f"{key} must be a whole number, not {value!r}")
    value = int(value)
    if (low is not None and value < low) or (high is not None and value > high):
        span = f"between {low} and {high}" if high is not None else f">= {low}"
        raise BadRequest(f"{key} must be {span}, not {value}")
    return value


def _float(body: dict, key: str, low: float, high: float, default: Any = None, open_low: bool = False) -> Any:
    value = body.get(key, default)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise BadRequest(f"{key} must be a number, not {value!r}")
    if value < low or value > high or (open_low and value == low):
        raise BadRequest(f"{key} must be {'above' if open_low else 'at least'} {low:g} and at most {high:g}, "
                         f"not {value:g}")
    return float(value)


def _bool(body: dict, key: str, default: bool = False) -> bool:
    value = body.get(key, default)
    if not isinstance(value, bool):
        raise BadRequest(f"{key} must be true or false, not {value!r}")
    return value


def _str(body: dict, key: str, limit: int) -> str | None:
    value = body.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise BadRequest(f"{key} must be text, not {type(value).__name__}")
    if len(value) > limit:
        raise BadRequest(f"{key} is longer than {limit} characters")
    return value


def check_fields(body: Any, allowed: tuple[str, ...], what: str) -> dict:
    if not isinstance(body, dict):
        raise BadRequest(f"the body of {what} must be a JSON object")
    unknown = sorted(set(body) - set(allowed))
    if unknown:
        raise BadRequest(f"unknown field {unknown[0]!r} for {what} (fields: {', '.join(allowed)})")
    return body


def option_value(spec: dict, value: Any) -> Any:
    """A generator option from JSON (number, list, bool or text) -> what `Generator.sample` takes."""
    from fractalmusic import config as fm_config

    name = spec["name"]
    if isinstance(value, list):
        if not all(isinstance(v, (int, float, str)) and not isinstance(v, bool) for v in value) or not value:
            raise BadRequest(f"option {name} must be a value or a list of numbers")
        text = ",".join(str(v) for v in value)
    elif isinstance(value, bool):
        if spec.get("is_flag"):
            return value
        text = str(value).lower()
    elif isinstance(value, (int, float, str)):
        text = str(value).strip()
    else:
        raise BadRequest(f"option {name} must be a value or a list, not {type(value).__name__}")
    if len(text) > 200:
        raise BadRequest(f"option {name} is too long")
    try:
        if spec.get("legacy") or not hasattr(fm_config, "convert"):
            loose = getattr(fm_config, "convert_loose", None)
            return loose(text) if loose is not None else _loose(text)
        gen_cls_type = spec.get("_type")
        return fm_config.convert(text, gen_cls_type, name) if gen_cls_type is not None else _loose(text)
    except ConfigError as exc:
        raise BadRequest(str(exc)) from None


def _loose(text: str) -> Any:
    if "," in text:
        return tuple(_loose(p.strip()) for p in text.split(",") if p.strip())
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def option_text(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return ",".join(str(v) for v in value)
    return str(value)


# ----------------------------------------------------------------------------------------------- records


@dataclass
class Sample:
    id: str
    batch: str
    index: int
    checkpoint: str
    checkpoint_label: str
    kind: str
    dir: Path
    stem: str
    settings: dict[str, Any]
    command: str
    files: dict[str, str]  # format -> file name inside dir
    parent: str | None = None
    region: dict[str, Any] | None = None
    problems: list[str] = field(default_factory=list)
    abc: str | None = None
    raw: np.ndarray | None = None  # what the generator returned (grids: [128, W])
    steps_per_beat: int | None = None
    created: float = field(default_factory=time.time)
    _piece: Any = None

    def file_urls(self) -> dict[str, str]:
        return {fmt: f"/api/files/{self.id}/{name}" for fmt, name in self.files.items()}

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id, "batch": self.batch, "index": self.index, "checkpoint": self.checkpoint,
            "checkpoint_label": self.checkpoint_label, "kind": self.kind, "settings": self.settings,
            "command": self.command, "files": self.file_urls(), "parent": self.parent, "region": self.region,
            "problems": self.problems, "has_notation": bool(self.abc) or "musicxml" in self.files or
            "mid" in self.files, "notation_url": f"/api/samples/{self.id}/notation.svg",
            "roll_url": f"/api/samples/{self.id}/roll", "created": self.created,
        }

    def piece(self):
        """The piece as its MIDI file holds it (what the audio plays and a regeneration keeps)."""
        if self._piece is None:
            from fractalmusic.io import read_pieces
            from fractalmusic.piece import Piece

            mid = self.files.get("mid")
            self._piece = read_pieces(self.dir / mid)[0] if mid else Piece()
        return self._piece


@dataclass
class Job:
    id: str
    kind: str  # "sample" or "regenerate"
    entry: Entry
    request: dict[str, Any]  # arguments for Model.prepare
    formats: list[str]
    command: str
    settings: dict[str, Any]
    parent: str | None = None
    region: dict[str, Any] | None = None
    status: str = "queued"  # queued, running, done, error, cancelled
    phase: str = "waiting for the model"
    progress: float | None = None
    passes: int = 0
    expected_passes: int | None = None
    error: str | None = None
    error_status: int = 400
    samples: list[str] = field(default_factory=list)
    created: float = field(default_factory=time.time)
    finished: float | None = None
    cancel_event: threading.Event = field(default_factory=threading.Event)
    done_event: threading.Event = field(default_factory=threading.Event)

    def to_json(self, position: int | None = None) -> dict[str, Any]:
        return {
            "id": self.id, "kind": self.kind, "status": self.status, "phase": self.phase,
            "progress": self.progress, "passes": self.passes, "error": self.error, "samples": self.samples,
            "command": self.command, "queue_position": position, "checkpoint": self.entry.id,
            "created": self.created, "finished": self.finished,
        }


# ----------------------------------------------------------------------------------------------- the studio


class Studio:
    """Catalog + sample store + one worker thread; the web app is a thin layer over it."""

    def __init__(self, catalog: Catalog, out_dir: str | os.PathLike, device: str = "cpu",
                 soundfont: str | None = None):
        from fractalmusic.api import resolve_device

        self.catalog = catalog
        self.out_dir = Path(out_dir).resolve()
        self.out_dir.mkdir(parents=True, exist_ok=True)
        (self.out_dir / "uploads").mkdir(exist_ok=True)
        self.device = str(resolve_device(device))
        self.soundfont = soundfont
        self.samples: dict[str, Sample] = {}
        self.uploads: dict[str, Path] = {}
        self.jobs: dict[str, Job] = {}
        self._queue: queue.Queue[Job | None] = queue.Queue()
        self._pending: list[str] = []
        self._lock = threading.Lock()
        self._notation_lock = threading.Lock()
        self._ids: dict[str, itertools.count] = {}
        self._passes_seen: dict[tuple, int] = {}  # request shape -> network calls it took (progress of grid jobs)
        self._model_key: tuple | None = None
        self._model = None
        self._worker = threading.Thread(target=self._work, name="fmusic-studio-worker", daemon=True)
        self._worker.start()

    def close(self) -> None:
        for job in list(self.jobs.values()):
            job.cancel_event.set()
        self._queue.put(None)
        self._worker.join(timeout=10)

    def _next(self, prefix: str) -> str:
        with self._lock:
            return f"{prefix}{next(self._ids.setdefault(prefix, itertools.count(1)))}"

    # ----------------------------------------------------------------- requests
    SAMPLE_FIELDS = ("checkpoint", "num_samples", "length", "target_width", "temperature", "top_k", "top_p",
                     "greedy", "seed", "primer_text", "primer_upload", "strip_primer", "formats", "options",
                     "wait") + MASKS

    def sample_job(self, body: Any) -> Job:
        body = check_fields(body, self.SAMPLE_FIELDS, "POST /api/sample")
        entry = self._entry(body.get("checkpoint"))
        card = self._card(entry)
        grid = card["kind"] == "grid"
        n = _int(body, "num_samples", 1, MAX_SAMPLES, default=1)
        length = _int(body, "length", 0 if not grid else 4, MAX_GRID_WIDTH if grid else MAX_TOKENS)
        width = _int(body, "target_width", 4, MAX_GRID_WIDTH)
        if width is not None:
            if not grid:
                raise BadRequest("target_width is for grid (piano-roll) models; use length for token models")
            if length is not None and length != width:
                raise BadRequest(f"length {length} and target_width {width} disagree; give one")
            length = width
        if length is None:
            length = int(card["default_length"])
        primer_text = _str(body, "primer_text", MAX_PRIMER_CHARS)
        upload = body.get("primer_upload")
        if primer_text is not None and upload is not None:
            raise BadRequest("give primer_text or primer_upload, not both")
        primer: str | None = None
        primer_arg: str | None = None
        if upload is not None:
            path = self.uploads.get(upload) if isinstance(upload, str) else None
            if path is None:
                raise BadRequest("primer_upload must be an id from POST /api/primers", 404)
            primer = primer_arg = str(path)
        elif primer_text:
            if grid:
                raise BadRequest("piano-roll models take a primer file (MIDI, ABC, MusicXML), not typed text")
            if not card.get("text_primer"):
                raise BadRequest(f"the {card['representation']} representation has no text form: upload a file")
            primer = primer_text
            primer_arg = primer_text
        masks = {k: _int(body, k, 0, MAX_GRID_WIDTH if not k.startswith("mask_pitch") else 127) for k in MASKS}
        masks = {k: v for k, v in masks.items() if v is not None}
        common = self._common(body, card)
        formats = self._formats(body.get("formats"), card)
        request = dict(n=n, length=length, primer=primer, strip_primer=_bool(body, "strip_primer"),
                       **masks, **common)
        return self._submit("sample", entry, card, request, formats, primer_arg=primer_arg)

    REGEN_FIELDS = ("sample_id", "seed", "num_samples", "temperature", "keep_bars", "wait") + MASKS

    def regenerate_job(self, body: Any) -> Job:
        body = check_fields(body, self.REGEN_FIELDS, "POST /api/regenerate")
        source = self.get_sample(body.get("sample_id"))
        entry = self._entry(source.checkpoint)
        card = self._card(entry)
        settings = source.settings
        n = _int(body, "num_samples", 1, MAX_SAMPLES, default=1)
        seed = _int(body, "seed", 0, SEED_LIMIT - 1)
        temperature = _float(body, "temperature", 0.0, 100.0, default=settings.get("temperature", 1.0))
        common = {k: settings.get(k) for k in ("top_k", "top_p", "greedy")}
        common["temperature"] = temperature
        common["seed"] = secrets.randbelow(SEED_LIMIT) if seed is None else seed
        common.update({k: v for k, v in settings["request"].items() if k not in _PREPARE_KEYS})
        formats = [f for f in source.files if f in source.settings["formats"]] or list(card["formats"])
        if "mid" not in source.files:
            why = "its ABC did not parse" if source.abc else "its representation writes none"
            raise BadRequest(f"sample {source.id} has no MIDI file ({why}), so it has no notes to keep or regenerate")
        if card["kind"] == "grid":
            if body.get("keep_bars") is not None:
                raise BadRequest("keep_bars is for token models; piano-roll models take mask_start/mask_end")
            width = int(settings["length"])
            masks = {k: _int(body, k, 0, 127 if k.startswith("mask_pitch") else width) for k in MASKS}
            if masks["mask_start"] is None and masks["mask_end"] is None and \
                    masks["mask_pitch_low"] is None and masks["mask_pitch_high"] is None:
                raise BadRequest("give the region to regenerate: mask_start and mask_end (steps), and optionally "
                                 "mask_pitch_low and mask_pitch_high")
            masks = {k: v for k, v in masks.items() if v is not None}
            primer_path = str(source.dir / source.files["mid"])
            request = dict(n=n, length=width, primer=primer_path, **masks, **common)
            region = dict(masks)
            return self._submit("regenerate", entry, card, request, formats, primer_arg=primer_path,
                                parent=source.id, region=region)
        for k in MASKS:
            if body.get(k) is not None:
                raise BadRequest(f"{k} is for piano-roll models; token models keep the first keep_bars bars and "
                                 f"continue from there")
        keep = _int(body, "keep_bars", 0, 100000)
        if keep is None:
            raise BadRequest("give keep_bars: how many bars of the sample to keep before continuing")
        primer, primer_arg = self._token_primer(source, card, keep)
        request = dict(n=n, length=int(settings["length"]), primer=primer, **common)
        return self._submit("regenerate", entry, card, request, formats, primer_arg=primer_arg,
                            parent=source.id, region={"keep_bars": keep})

    def variations_job(self, body: Any) -> Job:
        """The source's own request again with another seed (several variations come as one batch)."""
        body = check_fields(body, ("sample_id", "seed", "num_samples", "wait"), "POST /api/variations")
        source = self.get_sample(body.get("sample_id"))
        entry = self._entry(source.checkpoint)
        card = self._card(entry)
        seed = _int(body, "seed", 0, SEED_LIMIT - 1)
        request = dict(source.settings["request"])
        request["n"] = _int(body, "num_samples", 1, MAX_SAMPLES, default=1)
        request["seed"] = secrets.randbelow(SEED_LIMIT) if seed is None else seed
        formats = list(source.settings["formats"])
        return self._submit("variations", entry, card, request, formats,
                            primer_arg=source.settings.get("primer_arg"), parent=source.id, region=source.region)

    def _entry(self, cid: Any) -> Entry:
        try:
            return self.catalog.get(cid)
        except LookupError as exc:
            raise BadRequest(str(exc), 404 if isinstance(cid, str) and cid else 400) from None

    def _card(self, entry: Entry) -> dict[str, Any]:
        card = self.catalog.card(entry)
        if card.get("error"):
            raise BadRequest(f"checkpoint {entry.label}: {card['error']}", 422)
        return card

    def _common(self, body: dict, card: dict) -> dict[str, Any]:
        seed = _int(body, "seed", 0, SEED_LIMIT - 1)
        options = body.get("options") or {}
        if not isinstance(options, dict):
            raise BadRequest("options must be a JSON object of the generator's own options")
        specs = {s["name"]: s for s in card["options"]}
        out: dict[str, Any] = dict(
            temperature=_float(body, "temperature", 0.0, 100.0, default=1.0),
            top_k=_int(body, "top_k", 1, 10_000_000),
            top_p=_float(body, "top_p", 0.0, 1.0, open_low=True),
            greedy=_bool(body, "greedy"),
            seed=secrets.randbelow(SEED_LIMIT) if seed is None else seed,
        )
        for name, value in options.items():
            if name not in specs:
                known = ", ".join(specs) or "none"
                raise BadRequest(f"{name!r} is not an option of the {card['generator']} generator (its options: "
                                 f"{known})")
            if value is None or value == "":
                continue
            out[name] = option_value(self._typed(card, specs[name]), value)
        return out

    @staticmethod
    def _typed(card: dict, spec: dict) -> dict:
        """The spec with the real field type (kept server-side), for `fractalmusic.config.convert`."""
        if spec.get("legacy"):
            return spec
        from fractalmusic import plugins

        try:
            from fractalmusic import config as fm_config

            gen_cls = plugins.get_generator(card["generator"])
            for s in fm_config.option_specs(getattr(gen_cls, "SampleOptions", None)):
                if s.name == spec["name"]:
                    return {**spec, "_type": s.type}
        except Exception:
            pass
        return {**spec, "legacy": True}

    def _formats(self, value: Any, card: dict) -> list[str]:
        if value is None:
            return list(card["formats"])
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise BadRequest("formats must be a list such as [\"mid\", \"wav\", \"png\"]")
        out = []
        allowed = list(FORMATS) + [f for f in card.get("own_formats", []) if f not in FORMATS]
        for v in value:
            name = {"midi": "mid", "xml": "musicxml"}.get(v.lower(), v.lower())
            if name not in allowed:
                raise BadRequest(f"unknown format {v!r} (choose from {', '.join(allowed)})")
            if name == "abc" and "abc" not in card["formats"]:
                raise BadRequest(f"the {card['representation']} representation writes no ABC")
            if name not in out:
                out.append(name)
        if "mid" not in out and "mid" in card["formats"]:
            out.insert(0, "mid")  # the piano roll and every regeneration read the MIDI file
        return out

    def _token_primer(self, source: Sample, card: dict, keep: int) -> tuple[str, str]:
        """Token models: the sample's first `keep` bars, as ABC text cut at a bar line, or as text / a MIDI file."""
        if source.abc and "abc" in card["formats"]:
            text = cut_abc(source.abc, keep)
            return text, text
        piece = source.piece()
        lines = [float(b) for b in piece.bar_lines()] + [piece.end_beat]
        upto = lines[min(keep, len(lines) - 1)]
        part = piece.slice_beats(0.0, upto) if upto > 0 else piece.slice_beats(0.0, 0.0)
        path = source.dir / f"{source.stem}_first{keep}bars.mid"
        from fractalmusic.io import write_piece

        write_piece(part, path)
        return str(path), str(path)

    def _submit(self, kind: str, entry: Entry, card: dict, request: dict, formats: list[str],
                primer_arg: str | None, parent: str | None = None, region: dict | None = None) -> Job:
        with self._lock:
            busy = len(self._pending)
        if busy >= MAX_QUEUE:
            raise BadRequest(f"{busy} requests are already waiting; try again when some have finished", 429)
        job_id = self._next("j")
        batch = f"b{job_id[1:]:0>4}"
        options = {k: v for k, v in request.items() if k not in _PREPARE_KEYS}
        settings = {
            "checkpoint": entry.id, "checkpoint_label": entry.label, "num_samples": request["n"],
            "length": request["length"], "temperature": request.get("temperature", 1.0),
            "top_k": request.get("top_k"), "top_p": request.get("top_p"), "greedy": request.get("greedy", False),
            "seed": request.get("seed"), "primer_arg": primer_arg, "strip_primer": request.get("strip_primer", False),
            "options": {k: list(v) if isinstance(v, tuple) else v for k, v in options.items()},
            "masks": {k: request[k] for k in MASKS if request.get(k) is not None},
            "formats": formats, "request": {k: v for k, v in request.items()},
        }
        command = build_command(entry.path, card, request, primer_arg, formats, self.device, f"samples/{batch}")
        job = Job(id=job_id, kind=kind, entry=entry, request=request, formats=formats, command=command,
                  settings=settings, parent=parent, region=region)
        with self._lock:
            self.jobs[job.id] = job
            self._pending.append(job.id)
        self._queue.put(job)
        return job

    # ----------------------------------------------------------------- queries
    def get_sample(self, sid: Any) -> Sample:
        if not isinstance(sid, str) or sid not in self.samples:
            raise BadRequest(f"no sample with id {sid!r} in this session (see GET /api/samples)", 404)
        return self.samples[sid]

    def get_job(self, jid: str) -> Job:
        job = self.jobs.get(jid)
        if job is None:
            raise BadRequest(f"no job with id {jid!r}", 404)
        return job

    def position(self, job: Job) -> int | None:
        with self._lock:
            return self._pending.index(job.id) if job.id in self._pending else None

    def cancel(self, jid: str) -> Job:
        job = self.get_job(jid)
        if job.status in ("queued", "running"):
            job.cancel_event.set()
            if job.status == "queued":
                job.status, job.phase = "cancelled", "cancelled before it started"
        return job

    def add_upload(self, name: str, data: bytes) -> tuple[str, Path]:
        from fractalmusic.io import SUPPORTED_SUFFIXES, read_pieces

        suffix = Path(name).suffix.lower()
        if suffix not in SUPPORTED_SUFFIXES:
            raise BadRequest(f"primer files must be one of {' '.join(SUPPORTED_SUFFIXES)}, "
                             f"not {suffix or 'no suffix'!r}", 415)
        if not data:
            raise BadRequest("the uploaded primer is empty")
        uid = self._next("u")
        path = self.out_dir / "uploads" / f"{uid}{suffix}"
        path.write_bytes(data)
        try:
            pieces = read_pieces(path)
        except FractalMusicError as exc:
            path.unlink(missing_ok=True)
            raise BadRequest(f"the primer cannot be read: {str(exc).split(': ', 1)[-1]}", 422) from None
        except Exception as exc:
            path.unlink(missing_ok=True)
            raise BadRequest(f"the primer cannot be read ({type(exc).__name__})", 422) from None
        if not pieces:
            path.unlink(missing_ok=True)
            raise BadRequest("the primer holds no piece", 422)
        self.uploads[uid] = path
        return uid, path

    def notation_svg(self, sample: Sample) -> str:
        """Engraved notation of a sample (verovio): its ABC text, else its MusicXML (written on first request)."""
        try:
            import verovio
        except ImportError:
            raise BadRequest("notation needs verovio: pip install 'fractalmusic[studio]'", 501) from None
        cached = sample.dir / f"{sample.stem}.svg"
        if cached.is_file():
            return cached.read_text(encoding="utf-8")
        if sample.abc:
            data, fmt = sample.abc, "abc"
        else:
            if "musicxml" not in sample.files:
                piece = sample.piece()
                if piece.n_notes == 0:
                    raise BadRequest("this sample has no notes to engrave", 422)
                if piece.n_notes > MAX_NOTATION_NOTES:
                    raise BadRequest(f"{piece.n_notes} notes are too many to engrave here "
                                     f"(at most {MAX_NOTATION_NOTES}); download the MIDI instead", 422)
                from fractalmusic.io import write_outputs

                with self._notation_lock:
                    write_outputs(piece, sample.dir, sample.stem, ["musicxml"])
                sample.files["musicxml"] = f"{sample.stem}.musicxml"
            data, fmt = (sample.dir / sample.files["musicxml"]).read_text(encoding="utf-8"), "musicxml"
        with self._notation_lock:
            # a fresh toolkit per render, its resources loaded in this thread (verovio keeps fonts per thread)
            tk = verovio.toolkit(False)
            tk.setResourcePath(str(Path(verovio.__file__).resolve().parent / "data"))
            tk.setOptions({"inputFrom": fmt, "pageWidth": 2100, "pageHeight": 60000, "adjustPageHeight": True,
                           "scale": 35, "header": "none", "footer": "none", "breaks": "auto"})
            if not tk.loadData(data):
                raise BadRequest("verovio could not read this sample's notation", 422)
            pages = [tk.renderToSVG(i) for i in range(1, min(tk.getPageCount(), 8) + 1)]
        svg = "\n".join(pages)
        cached.write_text(svg, encoding="utf-8")
        sample.files["svg"] = cached.name
        return svg

    def roll(self, sample: Sample) -> dict[str, Any]:
        piece = sample.piece()
        notes = [[round(float(n["onset"]), 6), round(float(n["duration"]), 6), int(n["pitch"]), int(n["velocity"])]
                 for n in piece.notes]
        out: dict[str, Any] = {
            "id": sample.id, "kind": sample.kind, "notes": notes, "end_beat": piece.end_beat,
            "bar_lines": [round(float(b), 6) for b in piece.bar_lines()],
            "tempos": [[float(b), float(q)] for b, q in piece.tempos],
            "steps_per_beat": sample.steps_per_beat, "width": None, "cells": None,
        }
        if sample.kind == "grid" and sample.raw is not None:
            ps, ts = np.nonzero(sample.raw)
            out["width"] = int(sample.raw.shape[1])
            out["cells"] = [[int(p), int(t), int(sample.raw[p, t])] for p, t in zip(ps, ts, strict=True)]
        return out

    # ----------------------------------------------------------------- the worker
    def _work(self) -> None:
        while True:
            job = self._queue.get()
            if job is None:
                return
            try:
                if job.cancel_event.is_set():
                    job.status = "cancelled"
                    continue
                job.status = "running"
                self._run(job)
                job.status, job.phase, job.progress = "done", "done", 1.0
            except Cancelled:
                job.status, job.phase = "cancelled", "cancelled"
            except BadRequest as exc:
                job.status, job.error, job.error_status = "error", str(exc), exc.status
            except FractalMusicError as exc:
                job.status, job.error = "error", str(exc)
            except MemoryError:
                job.status, job.error, job.error_status = "error", "out of memory: ask for fewer or shorter " \
                                                                   "samples", 507
            except Exception as exc:  # a bug: one line, never a traceback to the browser
                first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else ""
                job.status, job.error = "error", f"internal error {type(exc).__name__}: {first}"
                job.error_status = 500
            finally:
                job.finished = time.time()
                with self._lock:
                    if job.id in self._pending:
                        self._pending.remove(job.id)
                job.done_event.set()

    def _load(self, job: Job):
        from fractalmusic.api import Model

        st = job.entry.path.stat()
        key = (str(job.entry.path), st.st_mtime_ns, st.st_size, self.device)
        if self._model_key != key:
            self._model, self._model_key = None, None  # one model in memory at a time
            job.phase = "loading the model"
            self._model = Model.load(job.entry.path, device=self.device)
            self._model_key = key
        return self._model

    def _run(self, job: Job) -> None:
        from fractalmusic import api

        model = self._load(job)
        self._check(job)
        job.phase = "checking the request"
        req = dict(job.request)
        n, length = req.pop("n"), req.pop("length")
        request = model.prepare(n, length, **req)
        self._check(job)
        job.phase = "sampling"
        shape = (job.entry.id, n, length, request.keep_from, None if request.mask is None else int(request.mask.sum()),
                 repr(sorted((k, v) for k, v in request.sample_kwargs.items() if k not in ("seed", "temperature"))))
        if model.kind != "grid":
            job.expected_passes = length + 1  # one network call per token (rows may stop earlier at eos)
        else:
            job.expected_passes = self._passes_seen.get(shape)  # the same request shape ran before: about as many
        try:
            arrays = self._run_hooked(model, request, job)
        finally:
            if job.passes and not job.cancel_event.is_set():
                self._passes_seen[shape] = job.passes
        self._check(job)
        job.phase, job.progress = "writing files", None
        pieces = model.decode(arrays)
        batch = f"b{job.id[1:]:0>4}"
        out = self.out_dir / batch
        extra = {}
        if "representation" in inspect.signature(api.write_samples).parameters:  # formats it writes itself
            extra["representation"] = model.representation
        report = api.write_samples(pieces, out, job.formats, soundfont=self.soundfont, **extra)
        spb = getattr(model.representation, "steps_per_beat", None)
        for i, (arr, piece) in enumerate(zip(arrays, pieces, strict=True)):
            stem = f"sample_{i:03d}"
            files = {}
            for p in report.files:
                if p.stem == stem and p.suffix.lstrip(".") in job.formats:
                    files[p.suffix.lstrip(".")] = p.name
            sid = self._next("s")
            sample = Sample(
                id=sid, batch=batch, index=i, checkpoint=job.entry.id, checkpoint_label=job.entry.label,
                kind=model.kind, dir=out, stem=stem, settings=job.settings,
                command=job.command + (f"   # file {stem}" if n > 1 else ""), files=files, parent=job.parent,
                region=job.region, problems=[p for p in report.problems if p.startswith(stem)], abc=piece.abc,
                raw=np.asarray(arr) if model.kind == "grid" else None,
                steps_per_beat=int(spb) if spb and model.kind == "grid" else None,
            )
            self.samples[sid] = sample
            job.samples.append(sid)

    def _run_hooked(self, model, request, job: Job) -> list[np.ndarray]:
        hooks = self._hooks(model.generator, job)
        try:
            return model.run(request)
        finally:
            for h in hooks:
                h.remove()

    @staticmethod
    def _check(job: Job) -> None:
        if job.cancel_event.is_set():
            raise Cancelled()

    @staticmethod
    def _hooks(generator, job: Job) -> list:
        """Count network calls (progress) and stop at the next one once the job is cancelled."""
        counted: dict[str, Any] = {"module": None}

        def hook(module, _inputs):
            if job.cancel_event.is_set():
                raise Cancelled()
            if counted["module"] is None:
                counted["module"] = module
            if module is counted["module"]:
                job.passes += 1
                if job.expected_passes:
                    job.progress = min(0.99, job.passes / job.expected_passes)

        return [child.register_forward_pre_hook(hook) for child in generator.children()]


_PREPARE_KEYS = {"n", "length", "primer", "temperature", "top_k", "top_p", "greedy", "seed", "strip_primer", *MASKS}

_BAR = re.compile(r":*\[?\|+\]?:*[0-9]?")


def cut_abc(text: str, keep_bars: int) -> str:
    """The tune's header and the first `keep_bars` bars of its body (cut just after a bar line)."""
    lines = text.splitlines(keepends=True)
    head_end = 0
    for i, line in enumerate(lines):
        if line.startswith("K:"):
            head_end = i + 1
            break
    head = "".join(lines[:head_end])
    body = "".join(lines[head_end:])
    if keep_bars <= 0:
        return head
    count = 0
    for m in _BAR.finditer(body):
        count += 1
        if count == keep_bars:
            return head + body[: m.end()]
    return head + body.rstrip("\n")


def build_command(ckpt: Path, card: dict, request: dict, primer_arg: str | None, formats: list[str], device: str,
                  out_dir: str) -> str:
    """The `fmusic sample` line that writes the same files."""
    args = ["fmusic", "sample", str(ckpt), "--num-samples", str(request["n"])]
    if card["kind"] == "grid":
        args += ["--target-width", str(request["length"])]
    else:
        args += ["--length", str(request["length"])]
    args += ["--seed", str(request["seed"])]
    if request.get("temperature", 1.0) != 1.0:
        args += ["--temperature", f"{request['temperature']:g}"]
    if request.get("top_k") is not None:
        args += ["--top-k", str(request["top_k"])]
    if request.get("top_p") is not None:
        args += ["--top-p", f"{request['top_p']:g}"]
    if request.get("greedy"):
        args.append("--greedy")
    if primer_arg is not None:
        args += ["--primer", primer_arg.replace("\n", "\\n") if not os.path.isfile(primer_arg) else primer_arg]
    if request.get("strip_primer"):
        args.append("--strip-primer")
    specs = {s["name"]: s for s in card["options"]}
    for name, value in request.items():
        if name in _PREPARE_KEYS:
            continue
        flag = specs.get(name, {}).get("flag", "--" + name.replace("_", "-"))
        if isinstance(value, bool) and specs.get(name, {}).get("is_flag"):
            args.append(flag if value else "--no-" + flag[2:])
        else:
            args += [flag, option_text(value)]
    for k in MASKS:
        if request.get(k) is not None:
            args += ["--" + k.replace("_", "-"), str(request[k])]
    args += ["--to", ",".join(formats), "--device", device, "--out-dir", out_dir]
    return " ".join(shlex.quote(a) for a in args)
