"""Sampling from a checkpoint in Python, the same code path `fmusic sample` uses.

    import fractalmusic
    model = fractalmusic.load("runs/folk/checkpoints/best.pt")
    pieces = model.sample(4, seed=1)                 # list[Piece]; ABC pieces carry .abc text
    texts = model.sample_text(4, seed=1, primer="X:1\\nT:")   # token representations with a text form
    fractalmusic.api.write_samples(pieces, "samples", ["abc", "mid"])

`fmusic sample` calls exactly these functions (`Model.load`, `Model.prepare`, `Model.run`, `Model.decode`,
`write_samples`), so the same seed and options give the same samples here and on the command line, on the same
device (`load` defaults to the CPU; the command's `--device` defaults to auto).

Lengths: for token representations `length` counts generated tokens (default 1000; rows stop earlier at eos). For
grid representations it is the target width in time steps (a multiple of 4; default the training crop length).

Primers: an array of ids / a grid, a `Piece`, a path to a music file (its first piece), or, for token
representations with a text form, text in the representation's alphabet. For grids, a primer without mask options
asks for a continuation (every step after the primer's length is generated); `mask_start`/`mask_end` (steps) and
`mask_pitch_low`/`mask_pitch_high` (MIDI pitches, inclusive) choose a region to regenerate instead (infilling).
"""
from __future__ import annotations

import os
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from fractalmusic import sampling
from fractalmusic.errors import ConfigError, FractalMusicError
from fractalmusic.piece import Piece

ALLOWED_FORMATS = ("abc", "mid", "wav", "png", "musicxml")
DEFAULT_TOKEN_LENGTH = 1000
DEFAULT_GRID_WIDTH = 128
GRID_MULTIPLE = 4
_MASK_OPTIONS = ("mask_start", "mask_end", "mask_pitch_low", "mask_pitch_high")


# ----------------------------------------------------------------------------------------------- helpers


def resolve_device(device: str | torch.device | None = "auto") -> torch.device:
    """"auto" -> cuda when available, else cpu; a CUDA device that is not there is a ConfigError."""
    name = "auto" if device is None else str(device)
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(name)
    except RuntimeError:
        raise ConfigError(f"unknown device {name!r} (use auto, cpu, cuda or cuda:N)") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"device {name!r} asked for, but CUDA is not available here")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ConfigError(f"device {name!r} asked for, but only {torch.cuda.device_count()} GPU(s) are visible")
    return dev


def parse_formats(formats: str | Sequence[str], representation=None) -> list[str]:
    """'abc,mid' or ['abc', 'mid'] -> checked, de-duplicated list (aliases: midi, xml, mxl); ConfigError if unknown.

    With a representation, the formats it writes itself (its `output_formats`, e.g. "txt") are allowed too."""
    own = tuple(getattr(representation, "output_formats", ()) or ())
    names = [f.strip().lower() for f in formats.split(",")] if isinstance(formats, str) else list(formats)
    mine = [f for f in names if f in own]
    rest = [f for f in names if f and f not in own]
    from fractalmusic.io import parse_formats as io_parse_formats

    allowed = ALLOWED_FORMATS + own
    try:
        out = io_parse_formats(rest) if rest else []
    except ConfigError:
        if not own:
            raise
        for name in rest:  # say which one, with the representation's own formats among the choices
            try:
                io_parse_formats([name])
            except ConfigError:
                raise ConfigError(f"unknown output format {name!r}; choose from {','.join(allowed)}") from None
        raise
    unknown = [f for f in out if f not in ALLOWED_FORMATS]
    if unknown:
        raise ConfigError(f"unknown output format {unknown[0]!r}; choose from {','.join(allowed)}")
    if not out and not mine:
        raise ConfigError(f"no output format given; choose from {','.join(allowed)}")
    return list(dict.fromkeys(mine + out))


def default_formats(representation) -> list[str]:
    """The representation's `default_output_formats` if it sets them; else ABC-text representations: abc + mid;
    grids: mid + png; other token representations: mid."""
    declared = getattr(representation, "default_output_formats", None)
    if declared:
        return list(declared)
    if representation.kind == "grid":
        return ["mid", "png"]
    if getattr(representation, "uses_abc_text", False):
        return ["abc", "mid"]
    return ["mid"]


def prepare_output_dir(path: str | os.PathLike) -> Path:
    """Create `path` if needed and prove it writable now, before any time is spent sampling."""
    out = Path(path)
    try:
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=out) as f:
            f.write(b"ok")
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise FractalMusicError(f"cannot write to output directory {out}: {reason}") from None
    return out


def _looks_like_path(text: str) -> bool:
    if "\n" in text or len(text) > 1024:
        return False
    try:
        from fractalmusic.io import SUPPORTED_SUFFIXES
    except ImportError:  # io not installed: fall back to the common suffixes
        SUPPORTED_SUFFIXES = (".mid", ".midi", ".abc", ".xml", ".mxl", ".musicxml", ".krn")
    return Path(text).suffix.lower() in {s.lower() for s in SUPPORTED_SUFFIXES}


def grid_request(
    primer: np.ndarray | None,
    width: int,
    height: int = 128,
    mask_start: int | None = None,
    mask_end: int | None = None,
    mask_pitch_low: int | None = None,
    mask_pitch_high: int | None = None,
) -> tuple[np.ndarray | None, np.ndarray, int | None]:
    """(primer [height, width] or None, mask [height, width] bool: True = generate, continuation start or None).

    No primer: everything is generated. A primer without mask options: continuation after the primer's length.
    With mask options: the rectangle [pitch_low..pitch_high] x [start, end) is regenerated, the rest kept.
    """
    values = (mask_start, mask_end, mask_pitch_low, mask_pitch_high)
    given = {k: v for k, v in zip(_MASK_OPTIONS, values) if v is not None}
    if primer is None:
        if given:
            opt = "--" + next(iter(given)).replace("_", "-")
            raise ConfigError(f"{opt} regenerates part of a primer: give one with --primer")
        return None, np.ones((height, width), dtype=bool), None
    grid = np.asarray(primer)
    if grid.ndim != 2 or grid.shape[0] != height:
        raise ConfigError(f"a grid primer must have shape [{height}, T], not {list(grid.shape)}")
    canvas = np.zeros((height, width), dtype=np.int64)
    used = min(grid.shape[1], width)
    canvas[:, :used] = grid[:, :used]
    mask = np.zeros((height, width), dtype=bool)
    if not given:
        if grid.shape[1] >= width:
            raise ConfigError(
                f"the primer fills all {width} steps of the target width; give a larger --target-width "
                f"or a region to regenerate with --mask-start/--mask-end"
            )
        mask[:, used:] = True
        return canvas, mask, used
    start = 0 if mask_start is None else int(mask_start)
    end = width if mask_end is None else int(mask_end)
    low = 0 if mask_pitch_low is None else int(mask_pitch_low)
    high = height - 1 if mask_pitch_high is None else int(mask_pitch_high)
    if not 0 <= start < end <= width:
        raise ConfigError(f"--mask-start/--mask-end must satisfy 0 <= start < end <= {width}, not {start}, {end}")
    if not 0 <= low <= high < height:
        raise ConfigError(
            f"--mask-pitch-low/--mask-pitch-high must satisfy 0 <= low <= high <= {height - 1}, not {low}, {high}"
        )
    mask[low : high + 1, start:end] = True
    return canvas, mask, None


def _renumber_abc(text: str, number: int) -> str:
    text = text.strip("\n")
    if re.search(r"^X:.*$", text, flags=re.M):
        return re.sub(r"^X:.*$", f"X:{number}", text, count=1, flags=re.M)
    return f"X:{number}\n{text}"


def abc_book(pieces: Sequence[Piece]) -> str:
    """One ABC tune book of the pieces that carry ABC text, numbered X:1..N in order."""
    tunes = [p.abc for p in pieces if p.abc]
    return "\n\n".join(_renumber_abc(t, i) for i, t in enumerate(tunes, start=1)) + "\n"


def abc_parses(piece: Piece) -> tuple[bool, Piece]:
    """Whether the piece's ABC text parses with music21 into at least one note; also the piece with notes."""
    from fractalmusic.io import ensure_notes

    try:
        parsed = ensure_notes(piece)
    except FractalMusicError:
        return False, piece
    except Exception:  # music21 can fail in many ways on generated text
        return False, piece
    return parsed.n_notes > 0, parsed


@dataclass
class SampleReport:
    """What `write_samples` wrote."""

    out_dir: Path
    n: int
    files: list[Path] = field(default_factory=list)
    abc_total: int = 0  # pieces with ABC text
    abc_parsed: int = 0  # ... of which music21 parses into notes
    book: Path | None = None
    problems: list[str] = field(default_factory=list)  # one line per output that could not be written

    def summary(self) -> str:
        line = f"wrote {self.n} samples to {self.out_dir}"
        if self.abc_total:
            line += f"; ABC: {self.abc_parsed} of {self.abc_total} tunes parse with music21"
        return line


def write_samples(
    pieces: Sequence[Piece],
    out_dir: str | os.PathLike,
    formats: Sequence[str],
    soundfont: str | None = None,
    stem: str = "sample",
    representation=None,
) -> SampleReport:
    """Write `<stem>_000.<ext>`... for every piece and format, plus `samples.abc` (all tunes) for ABC pieces.

    A tune whose ABC does not parse still gets its .abc file; its note-based formats are skipped and reported.
    Formats in the representation's `output_formats` are written by its `write_output`.
    """
    from fractalmusic.io import write_outputs

    formats = parse_formats(formats, representation)
    own = [f for f in formats if f in tuple(getattr(representation, "output_formats", ()) or ())]
    formats = [f for f in formats if f not in own]
    out = prepare_output_dir(out_dir)
    report = SampleReport(out_dir=out, n=len(pieces))
    note_formats = [f for f in formats if f != "abc"]
    for i, piece in enumerate(pieces):
        name = f"{stem}_{i:03d}"
        for fmt in own:
            target = out / f"{name}.{fmt}"
            try:
                representation.write_output(piece, target, fmt)
            except FractalMusicError as exc:
                report.problems.append(f"{name}: {exc}")
                continue
            report.files.append(target)
        todo = list(formats)
        if piece.abc:
            report.abc_total += 1
            ok, piece = abc_parses(piece)
            report.abc_parsed += int(ok)
            if not ok:
                todo = [f for f in formats if f == "abc"]
                if note_formats:
                    report.problems.append(f"{name}: ABC does not parse; wrote no {','.join(note_formats)}")
        if not todo:
            continue
        try:
            written = write_outputs(piece, out, name, todo, soundfont)
        except FractalMusicError as exc:
            report.problems.append(f"{name}: {exc}")
            continue
        report.files.extend(Path(p) for p in (written or []))
    if report.abc_total and "abc" in formats:
        report.book = out / f"{stem}s.abc"
        report.book.write_text(abc_book(pieces), encoding="utf-8")
        report.files.append(report.book)
    return report


# ----------------------------------------------------------------------------------------------- the model


@dataclass
class SampleRequest:
    """Checked inputs for one call of `Generator.sample`, built by `Model.prepare`."""

    n: int
    length: int
    strip_primer: bool = False
    primer: np.ndarray | None = None  # token ids [P], or a grid [128, W]
    mask: np.ndarray | None = None  # grids: [128, W] bool, True = generate
    keep_from: int | None = None  # tokens: primer length; grids: continuation start (None = infilling)
    sample_kwargs: dict[str, Any] = field(default_factory=dict)


class Model:
    """A representation and a generator restored from a checkpoint, ready to sample."""

    def __init__(self, representation, generator, checkpoint: dict[str, Any] | None = None):
        self.representation = representation
        self.generator = generator
        self.checkpoint: dict[str, Any] = dict(checkpoint or {})
        texts = getattr(representation, "token_texts", None)
        if callable(texts) and getattr(representation, "is_fitted", True):
            generator.token_texts = texts()  # what text-aware sampling options read (--bar-constraint)

    @classmethod
    def load(cls, path, device: str | torch.device = "cpu") -> "Model":
        """A checkpoint file (or an already loaded `Checkpoint`) rebuilt on `device`, ready to sample."""
        from fractalmusic.training.checkpoint import Checkpoint

        dev = resolve_device(device)
        ckpt = path if isinstance(path, Checkpoint) else Checkpoint.load(path, map_location="cpu")
        representation, generator = ckpt.build(device=dev)
        rep_ref, gen_ref = ckpt.representation_ref, ckpt.generator_ref
        meta = {
            "path": ckpt.path,
            "step": ckpt.step,
            "epoch": ckpt.get("epoch"),
            "metrics": ckpt.metrics,
            "representation": rep_ref.name,
            "generator": gen_ref.name,
            "representation_plugin": {"name": rep_ref.name, "dist": rep_ref.dist, "version": rep_ref.dist_version},
            "generator_plugin": {"name": gen_ref.name, "dist": gen_ref.dist, "version": gen_ref.dist_version},
            "generator_config": generator.config_dict(),
            "package_version": ckpt.package_version,
            "train_config": ckpt.train_config,
            "data_config": ckpt.data_config,
            "sampling": ckpt.sampling,
        }
        return cls(representation, generator, meta)

    def __repr__(self) -> str:
        return (
            f"<Model {self.representation.name}+{self.generator.name} step={self.checkpoint.get('step')} "
            f"params={self.generator.num_parameters():,}>"
        )

    # ------------------------------------------------------------- facts
    @property
    def recommended_sampling(self) -> dict[str, Any]:
        """Sampling settings the checkpoint recommends: {"temperature": float, "top_p": float | None} where it
        holds them (fractalmusic.training.recommend), and "note_temperature" for a generator that takes it,
        else {}."""
        rec = self.checkpoint.get("sampling") or {}
        out: dict[str, Any] = {}
        t, p, nt = rec.get("temperature"), rec.get("top_p"), rec.get("note_temperature")
        if isinstance(t, (int, float)) and not isinstance(t, bool) and 0 < t <= 10:
            out["temperature"] = float(t)
        if isinstance(p, (int, float)) and not isinstance(p, bool) and 0 < p <= 1:
            out["top_p"] = float(p)
        if (isinstance(nt, (int, float)) and not isinstance(nt, bool) and 0 < nt <= 10
                and "note_temperature" in self.generator.sample_option_names()):
            out["note_temperature"] = float(nt)
        return out

    @property
    def kind(self) -> str:
        return self.representation.kind

    @property
    def device(self) -> torch.device:
        return self.generator.device

    @property
    def default_length(self) -> int:
        """Tokens: 1000 new tokens. Grids: the training crop length (else 128) steps."""
        if self.kind != "grid":
            return DEFAULT_TOKEN_LENGTH
        for conf in (self.checkpoint.get("data_config"), self.checkpoint.get("train_config")):
            if isinstance(conf, dict) and conf.get("crop_length"):
                return int(conf["crop_length"])
        return DEFAULT_GRID_WIDTH

    @property
    def default_formats(self) -> list[str]:
        return default_formats(self.representation)

    def sample_option_specs(self) -> list:
        """The model's own sampling options (`fractalmusic.config.OptionSpec`): for grids the region to
        regenerate (`GridRegion`), then the generator's `SampleOptions` (or its API 1 `sample_options` names)."""
        return sample_option_specs(type(self.generator), self.kind)

    # ------------------------------------------------------------- primers
    def encode_primer(self, primer: Any) -> np.ndarray | None:
        """Ids (tokens, without a trailing eos, starting with bos when the representation has one) or a grid."""
        if primer is None:
            return None
        rep = self.representation
        if isinstance(primer, np.ndarray) or torch.is_tensor(primer):
            arr = np.asarray(primer.cpu() if torch.is_tensor(primer) else primer)
            return self._fix_token_primer(arr.astype(np.int64)) if self.kind != "grid" else arr.astype(np.int64)
        if isinstance(primer, Piece):
            arr = np.asarray(rep.encode(primer), dtype=np.int64)
        elif isinstance(primer, (str, os.PathLike)):
            text = os.fspath(primer)
            if os.path.isfile(text):
                arr = self._encode_file(text)
            elif isinstance(primer, os.PathLike) or _looks_like_path(text):
                raise FractalMusicError(f"{text}: no such primer file")
            else:
                arr = self._encode_text(text)
        else:
            raise ConfigError(f"a primer is ids, a Piece, a file path or text, not {type(primer).__name__}")
        return self._fix_token_primer(arr) if self.kind != "grid" else arr

    def _encode_file(self, path: str) -> np.ndarray:
        from fractalmusic.io import read_pieces

        rep = self.representation
        if Path(path).suffix.lower() in {s.lower() for s in getattr(rep, "input_suffixes", ()) or ()}:
            pieces = rep.read_file(path)  # a file type the representation reads itself (text: .txt)
        else:
            pieces = read_pieces(path, notes=not getattr(rep, "uses_abc_text", False))
        if not pieces:
            raise FractalMusicError(f"{path}: no piece to use as a primer")
        return np.asarray(self.representation.encode(pieces[0]), dtype=np.int64)

    def _encode_text(self, text: str) -> np.ndarray:
        try:
            arr = self.representation.text_to_array(text)
        except FractalMusicError:
            raise
        except (KeyError, ValueError) as exc:
            raise ConfigError(f"primer text does not fit the {self.representation.name} vocabulary: {exc}") from None
        return np.asarray(arr, dtype=np.int64)

    def _fix_token_primer(self, arr: np.ndarray) -> np.ndarray:
        spec = self.generator.spec
        arr = np.asarray(arr, dtype=np.int64)
        if arr.ndim > 2 or (arr.ndim == 2 and arr.shape[0] != 1):
            raise ConfigError(f"a token primer is one sequence of ids, not an array of shape {list(arr.shape)}")
        arr = arr.reshape(-1)
        if arr.size and spec.eos_id is not None:
            while arr.size and arr[-1] == spec.eos_id:
                arr = arr[:-1]
        if spec.bos_id is not None and (arr.size == 0 or arr[0] != spec.bos_id):
            arr = np.concatenate([[spec.bos_id], arr]).astype(np.int64)
        return arr

    # ------------------------------------------------------------- sampling
    def prepare(
        self,
        n: int = 1,
        length: int | None = None,
        primer: Any = None,
        temperature: float = 1.0,
        top_k: int | None = None,
        top_p: float | None = None,
        greedy: bool = False,
        seed: int | None = None,
        strip_primer: bool = False,
        mask_start: int | None = None,
        mask_end: int | None = None,
        mask_pitch_low: int | None = None,
        mask_pitch_high: int | None = None,
        **options: Any,
    ) -> "SampleRequest":
        """Check every option and build the generator's inputs, without sampling (so errors come first)."""
        gen = self.generator
        gen.check_sample_options(options)
        declared = getattr(type(gen), "SampleOptions", None)
        if declared is not None and options:
            from dataclasses import fields as dc_fields

            from fractalmusic.config import check_declared

            names = {f.name for f in dc_fields(declared)}
            check_declared(declared, {k: v for k, v in options.items() if k in names},
                           where=f"{gen.name} sampling options")
        sampling.check_options(temperature, top_k, top_p, greedy)
        if isinstance(n, bool) or int(n) != n or n < 1:
            raise ConfigError(f"number of samples must be >= 1, not {n}")
        length = self.default_length if length is None else length
        if isinstance(length, bool) or int(length) != length or length < 0:
            raise ConfigError(f"length must be a whole number >= 0, not {length}")
        length = int(length)
        from fractalmusic.limits import check_sample_size  # sizes checked before anything large is allocated

        spec = gen.spec
        check_sample_size(self.kind, int(n), length, height=int(getattr(spec, "height", 128) or 128),
                          vocab_size=int(getattr(spec, "vocab_size", 0) or 0), device=self.device)
        masks = (mask_start, mask_end, mask_pitch_low, mask_pitch_high)
        prefix = self.encode_primer(primer)
        req = SampleRequest(
            n=int(n), length=length, strip_primer=bool(strip_primer),
            sample_kwargs=dict(temperature=temperature, top_k=top_k, top_p=top_p, greedy=greedy, seed=seed, **options),
        )  # fmt: skip
        if self.kind == "grid":
            if length < GRID_MULTIPLE or length % GRID_MULTIPLE:
                raise ConfigError(f"target width must be a positive multiple of {GRID_MULTIPLE} steps, not {length}")
            req.primer, req.mask, req.keep_from = grid_request(prefix, length, gen.spec.height, *masks)
            if strip_primer and req.keep_from is None:
                raise ConfigError("--strip-primer applies to continuations of a primer, not to infilling")
            return req
        if any(m is not None for m in masks):
            raise ConfigError("--mask-start/--mask-end/--mask-pitch-low/--mask-pitch-high need a grid representation")
        req.primer = prefix
        req.keep_from = 0 if prefix is None else len(prefix)
        return req

    def run(self, req: "SampleRequest") -> list[np.ndarray]:
        """Sample a prepared request: a list of n arrays (see `generate`)."""
        gen = self.generator
        out = np.asarray(
            gen.sample(req.n, req.length, primer=req.primer, mask=req.mask, **req.sample_kwargs), dtype=np.int64
        )
        if self.kind == "grid":
            if req.strip_primer and req.keep_from:
                out = out[..., req.keep_from :]
            return [row for row in out]
        start = req.keep_from or 0
        rows = [self._trim(row, max(start, 1)) for row in out]  # a row's first token is never its end
        if req.strip_primer:
            rows = [row[start:] for row in rows]
        return rows

    def generate(self, n: int = 1, length: int | None = None, **kwargs: Any) -> list[np.ndarray]:
        """Raw samples: a list of n arrays, 1-D ids (cut after eos, padding dropped) or [128, W] grids.

        Options: primer, temperature, top_k, top_p, greedy, seed, strip_primer, for grids the region options
        mask_start, mask_end, mask_pitch_low, mask_pitch_high (`GridRegion`), and the generator's own options
        (`sample_option_specs()`: its `SampleOptions` fields or API 1 `sample_options` names).
        """
        return self.run(self.prepare(n, length, **kwargs))

    def _trim(self, row: np.ndarray, start: int) -> np.ndarray:
        """Cut a token row after the first eos past the primer; drop right padding."""
        spec = self.generator.spec
        if spec.eos_id is not None:
            hits = np.flatnonzero(row[start:] == spec.eos_id)
            if hits.size:
                return row[: start + hits[0] + 1]
        if spec.pad_id is not None:
            keep = len(row)
            while keep > start and row[keep - 1] == spec.pad_id:
                keep -= 1
            row = row[:keep]
        return row

    def decode(self, arrays: Sequence[np.ndarray]) -> list[Piece]:
        return [self.representation.decode(a) for a in arrays]

    def sample(self, n: int = 1, length: int | None = None, **kwargs: Any) -> list[Piece]:
        """n pieces (see `generate` for the options). ABC pieces carry their text in `.abc`."""
        return self.decode(self.generate(n, length, **kwargs))

    def sample_text(self, n: int = 1, length: int | None = None, **kwargs: Any) -> list[str]:
        """n samples as text, for token representations with a text form (ABC characters, words)."""
        if self.kind == "grid":
            raise FractalMusicError(f"the {self.representation.name} representation has no text form")
        return [self.representation.array_to_text(a) for a in self.generate(n, length, **kwargs)]


def sample_option_specs(generator_cls, kind: str) -> list:
    """Sampling options a generator class offers on representations of `kind` (see `Model.sample_option_specs`)."""
    from fractalmusic.config import legacy_option_specs, option_specs
    from fractalmusic.generators.base import GridRegion

    specs = option_specs(GridRegion) if kind == "grid" else []
    seen = {s.name for s in specs}
    declared = getattr(generator_cls, "SampleOptions", None)
    for spec in option_specs(declared):
        if spec.name not in seen:
            specs.append(spec)
            seen.add(spec.name)
    legacy = [n for n in getattr(generator_cls, "sample_options", ()) if n not in seen]
    specs += legacy_option_specs(legacy, f"option of the {generator_cls.name} generator")
    return specs


def eval_option_specs(generator_cls) -> list:
    """Evaluation options a generator class offers: its `EvalOptions` fields, or its API 1 `nll_options` names."""
    from fractalmusic.config import legacy_option_specs, option_specs

    specs = option_specs(getattr(generator_cls, "EvalOptions", None))
    seen = {s.name for s in specs}
    legacy = [n for n in getattr(generator_cls, "nll_options", ()) if n not in seen]
    return specs + legacy_option_specs(legacy, f"evaluation option of the {generator_cls.name} generator")


def load(path: str | os.PathLike, device: str | torch.device = "cpu") -> Model:
    return Model.load(path, device=device)
