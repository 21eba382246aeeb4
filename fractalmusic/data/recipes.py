"""Dataset recipes: public corpora on the user's disk, described by small TOML files in `datasets/`.

A recipe says where the official download lives (text for the user: nothing is ever fetched), what the unpacked
folder looks like, how the dataset is split (its official split, or a fixed hash rule where it has none), its
licence, the representation and options that suit it, and how many files to expect. From a recipe and the
folder the user unpacked (`--root`), `make_split` checks the layout and builds the split:

    recipe = load_recipe("maestro")
    split = make_split(recipe, "~/data/maestro-v3.0.0", out_dir)    # DataError: one line naming what is wrong
    split.lists["train"], split.files["valid"], ...                  # train.txt / valid.txt / test.txt

The list files are FractalMIDI's: one path per line, usable as `--data` / `--val-data`. MIDI datasets list the
files where they lie (absolute paths); tune collections (Nottingham, Essen, The Session) are split tune by tune, so
each split's tunes are written as one ABC book beside the lists (`abc/train.abc`, ...), which the lists name.

Split rules:

* `method = "csv"`: a column of the dataset's own metadata names each file's split (MAESTRO).
* `method = "hash"`: no official split. Each item's key (its path relative to the root, its file stem, its
  folder, or for tunes its file and X: number; see `key`) is hashed: u = first 8 bytes of
  sha256("<recipe name>:<key>"), big-endian, divided by 2**64. u < test -> test, u < test + valid -> valid, else
  train. The rule depends on nothing else (not on the order files are listed in, nor on the other files), so a
  partial download or a later file keeps every other file where it was.
* `method = "session"`: The Session's tune dump (CSV or JSON rows with tune_id, setting_id, name, type, meter,
  mode, abc): every setting becomes an ABC tune with headers, and the hash rule runs on the tune_id, so all
  settings of one tune land in the same split.

MIDI transforms (`[midi]` of a recipe or variant: `tracks = ["MELODY"]`, `sustain_pedal = true`) are written once as
copies under `<out>/midi/<relative path>` with symusic, and the lists name the copies (`maestro/pedal`,
`pop909/melody`); without one, the lists name the dataset's own files.

Recipes are looked up in the `datasets/` folder shipped inside the package (`fractalmusic/datasets`, which the
top-level `datasets` of a source checkout points at), or given as a path to a `.toml` file.
"""
from __future__ import annotations

import csv
import difflib
import fnmatch
import hashlib
import json
import os
import re
import sys
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable

from fractalmusic.errors import ConfigError, DataError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10: the tomli backport (a dependency there)
    import tomli as tomllib

SPLITS = ("train", "valid", "test")
FORMATS = ("midi", "abc", "session")
KEYS = ("path", "stem", "parent", "tune")
LIST_NAMES = {"train": "train.txt", "valid": "valid.txt", "test": "test.txt"}


def recipes_dir() -> Path:
    """The folder of the shipped recipes (package data; `datasets/` in a source checkout points here)."""
    return Path(__file__).resolve().parent.parent / "datasets"


# --------------------------------------------------------------------------------------------------- recipes
@dataclass(frozen=True)
class Recipe:
    name: str
    title: str
    description: str
    homepage: str
    download: str  # where and how to get it, for the user to read
    licence: str
    commercial_use: bool | None  # None: the terms do not say; check them
    format: str  # midi | abc | session
    files: int | None  # music files in the complete download (tunes for a session dump)
    pieces: int | None  # pieces or tunes, when that differs from files
    layout: dict[str, Any]  # required, music (globs tried in order), exclude, unpacked
    split: dict[str, Any]  # method and its parameters
    representation: str
    options: dict[str, Any]  # representation options (--steps-per-beat 8 ...)
    train_options: dict[str, Any]  # suggested fmusic train options
    notes: tuple[str, ...]
    midi: dict[str, Any]  # tracks to keep, sustain_pedal: written as copies before reading (midi_transform)
    source: str | None  # "music21:<folder>": the default root is that folder of music21's corpus
    variant: str | None = None
    variants: dict[str, dict[str, Any]] = field(default_factory=dict)
    path: Path | None = None

    @property
    def full_name(self) -> str:
        return f"{self.name}/{self.variant}" if self.variant else self.name

    def with_variant(self, variant: str) -> "Recipe":
        if variant not in self.variants:
            raise ConfigError(f"dataset {self.name!r} has no layout {variant!r}; its layouts: "
                              f"{', '.join(self.variants)}")
        over = self.variants[variant]
        return replace(
            self,
            variant=variant,
            title=over.get("title", self.title),
            description=over.get("description", self.description),
            download=over.get("download", self.download),
            files=over.get("files", self.files),
            pieces=over.get("pieces", self.pieces),
            layout={**self.layout, **over.get("layout", {})},
            split={**self.split, **over.get("split", {})},
            midi={**self.midi, **over.get("midi", {})},
            notes=self.notes + tuple(over.get("notes", ())),
        )

    def option_flags(self) -> list[str]:
        """The recipe's representation and train options as command-line flags."""
        out = [f"--repr {self.representation}"]
        for table in (self.options, self.train_options):
            for key, value in table.items():
                flag = "--" + key.replace("_", "-")
                if value is True:
                    out.append(flag)
                elif value is False:
                    out.append(f"--no-{key.replace('_', '-')}")
                else:
                    out.append(f"{flag} {value}")
        return out


def _need(table: dict, key: str, kind, where: str):
    if key not in table:
        raise ConfigError(f"recipe {where}: missing {key!r}")
    value = table[key]
    if not isinstance(value, kind):
        raise ConfigError(f"recipe {where}: {key!r} must be {getattr(kind, '__name__', kind)}, not {value!r}")
    return value


def parse_recipe(data: dict[str, Any], path: Path | None = None) -> Recipe:
    """A Recipe from a parsed TOML table; ConfigError naming the field when something is missing or wrong."""
    where = str(path) if path else "(text)"
    name = _need(data, "name", str, where)
    fmt = _need(data, "format", str, where)
    if fmt not in FORMATS:
        raise ConfigError(f"recipe {where}: format must be one of {', '.join(FORMATS)}, not {fmt!r}")
    split = dict(data.get("split", {}))
    method = split.get("method", "hash")
    if method not in ("csv", "hash", "session"):
        raise ConfigError(f"recipe {where}: split method must be csv, hash or session, not {method!r}")
    if method in ("hash", "session"):
        for part in ("valid", "test"):
            share = split.get(part, 0.05)
            if not isinstance(share, (int, float)) or not 0 <= share < 1:
                raise ConfigError(f"recipe {where}: split.{part} must be a share in [0, 1), not {share!r}")
        if split.get("valid", 0.05) + split.get("test", 0.05) >= 1:
            raise ConfigError(f"recipe {where}: split.valid + split.test leave nothing to train on")
        if split.get("key", "path") not in KEYS:
            raise ConfigError(f"recipe {where}: split.key must be one of {', '.join(KEYS)}")
    rep = data.get("representation", {})
    variants = data.get("variants", {})
    return Recipe(
        name=name,
        title=data.get("title", name),
        description=data.get("description", ""),
        homepage=data.get("homepage", ""),
        download=data.get("download", ""),
        licence=_need(data, "licence", str, where),
        commercial_use=data.get("commercial_use"),
        format=fmt,
        files=data.get("files"),
        pieces=data.get("pieces"),
        layout=dict(data.get("layout", {})),
        split=split,
        representation=rep.get("name", "abc" if fmt != "midi" else "pianoroll"),
        options=dict(rep.get("options", {})),
        train_options=dict(data.get("train", {})),
        notes=tuple(data.get("notes", ())),
        midi=dict(data.get("midi", {})),
        source=data.get("source"),
        variants={k: dict(v) for k, v in variants.items()},
        path=path,
    )


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"recipe {path}: not valid TOML ({exc})") from None
    except OSError as exc:
        raise ConfigError(f"recipe {path}: cannot be read ({exc.strerror or exc})") from None


def recipe_names() -> list[str]:
    folder = recipes_dir()
    return sorted(p.stem for p in folder.glob("*.toml")) if folder.is_dir() else []


def list_recipes() -> list[Recipe]:
    return [load_recipe(name) for name in recipe_names()]


def load_recipe(spec: str) -> Recipe:
    """A shipped recipe by name (`maestro`, `lakh/clean`, `lakh:matched`, `lakh-full`), or a `.toml` path."""
    text = str(spec).strip()
    if not text:
        raise ConfigError("--dataset is empty")
    if text.endswith(".toml"):
        path = Path(text).expanduser()
        if not path.is_file():
            raise ConfigError(f"--dataset {text}: no such recipe file")
        return parse_recipe(_read_toml(path), path)
    base, variant = text, None
    for sep in ("/", ":"):
        if sep in text:
            base, variant = text.split(sep, 1)
            break
    names = recipe_names()
    if base not in names and "-" in text:
        head, tail = text.rsplit("-", 1)
        if head in names:
            base, variant = head, tail
    if base not in names:
        close = difflib.get_close_matches(base, names, n=1, cutoff=0.5)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ConfigError(f"no dataset recipe named {text!r}{hint}; recipes: {', '.join(names) or 'none found'} "
                          "(or the path of a .toml recipe)")
    recipe = parse_recipe(_read_toml(recipes_dir() / f"{base}.toml"), recipes_dir() / f"{base}.toml")
    return recipe.with_variant(variant) if variant else recipe


# --------------------------------------------------------------------------------------------------- splits
def split_share(recipe_name: str, key: str) -> float:
    """The documented hash: first 8 bytes of sha256("<recipe>:<key>"), big-endian, over 2**64, in [0, 1)."""
    digest = hashlib.sha256(f"{recipe_name}:{key}".encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64


def hash_split(recipe_name: str, key: str, valid: float, test: float) -> str:
    u = split_share(recipe_name, key)
    if u < test:
        return "test"
    if u < test + valid:
        return "valid"
    return "train"


@dataclass
class DatasetSplit:
    """What `make_split` found and wrote."""

    recipe: Recipe
    root: Path
    files: dict[str, list[Path]]  # music files of each split (ABC datasets: the books written for it)
    counts: dict[str, int]  # pieces (files, or tunes for tune collections) in each split
    lists: dict[str, Path] = field(default_factory=dict)  # train.txt / valid.txt / test.txt once written
    notes: list[str] = field(default_factory=list)

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def summary(self) -> str:
        unit = "files" if self.recipe.format == "midi" else "tunes"
        parts = ", ".join(f"{self.counts[s]} {s}" for s in SPLITS)
        expect = self.recipe.pieces if self.recipe.format != "midi" and self.recipe.pieces else self.recipe.files
        tail = f" (the complete dataset has {expect:,})" if expect else ""
        return f"{self.recipe.full_name}: {self.total:,} {unit}{tail}: {parts}"


def _default_root(recipe: Recipe) -> Path | None:
    if recipe.source and recipe.source.startswith("music21:"):
        from fractalmusic.data.corpora import music21_corpus_dir

        return music21_corpus_dir() / recipe.source.split(":", 1)[1]
    return None


def resolve_root(recipe: Recipe, root: str | os.PathLike | None) -> Path:
    if root is None or not str(root).strip():
        default = _default_root(recipe)
        if default is None:
            unpacked = recipe.layout.get("unpacked")
            hint = f" (the unpacked download, e.g. ~/data/{unpacked})" if unpacked else ""
            raise ConfigError(f"--dataset {recipe.full_name} needs --root: the folder holding it{hint}; "
                              f"download: {recipe.download or recipe.homepage}")
        return default
    path = Path(str(root)).expanduser()
    if not path.exists():
        raise DataError(f"{recipe.full_name}: --root {path} does not exist")
    if not path.is_dir():
        raise DataError(f"{recipe.full_name}: --root {path} is not a folder (give the folder the download unpacked into)")
    return path


def _hint_subfolder(root: Path, required: str) -> str:
    """' (found in ROOT/x: use --root ROOT/x)' when the required entry sits one folder down."""
    try:
        for child in sorted(root.iterdir()):
            if child.is_dir() and (child / required).exists():
                return f" (it is in {child}: use --root {child})"
    except OSError:
        pass
    return ""


def _check_required(recipe: Recipe, root: Path) -> None:
    for entry in recipe.layout.get("required", []):
        if not (root / entry).exists():
            what = recipe.layout.get("what", {}).get(entry, "")
            raise DataError(f"{recipe.full_name}: {root} has no {entry}{f' ({what})' if what else ''}"
                            f"{_hint_subfolder(root, entry)}; expected the unpacked "
                            f"{recipe.layout.get('unpacked') or 'download'}: {recipe.download or recipe.homepage}")


def _scan(root: Path, patterns: list[str], exclude: list[str]) -> tuple[str, list[Path]]:
    """(pattern that matched, sorted files) for the first glob pattern finding anything; ("", []) if none.
    Works on strings (glob.glob) rather than Path objects: 176,581 Lakh files are listed in a few seconds."""
    import glob

    base = str(root)
    cut = len(os.path.join(base, ""))
    for pattern in patterns:
        found = []
        for hit in glob.glob(os.path.join(glob.escape(base), pattern), recursive=True):
            rel = hit[cut:].replace(os.sep, "/")
            if rel.startswith(".") or "/." in rel:
                continue
            if exclude and any(fnmatch.fnmatch(rel, ex) for ex in exclude):
                continue
            if not os.path.isfile(hit):
                continue
            found.append(hit)
        if found:
            return pattern, [Path(h) for h in sorted(found)]
    return "", []


def _music_files(recipe: Recipe, root: Path) -> list[Path]:
    patterns = list(recipe.layout.get("music", ["**/*.mid", "**/*.midi"]))
    pattern, files = _scan(root, patterns, list(recipe.layout.get("exclude", [])))
    if not files:
        raise DataError(f"{recipe.full_name}: no music files under {root} (looked for {' or '.join(patterns)}); "
                        f"expected the unpacked {recipe.layout.get('unpacked') or 'download'}: "
                        f"{recipe.download or recipe.homepage}")
    return files


def _key(recipe: Recipe, root: Path, path: Path) -> str:
    key = recipe.split.get("key", "path")
    if key == "stem":
        return path.stem
    rel = path.relative_to(root)
    if key == "parent":
        return rel.parent.as_posix()
    return rel.as_posix()


def detect_variant(recipe: Recipe, root: Path) -> Recipe:
    """A recipe with layouts (Lakh: full, clean, matched) picks the one whose required entries `root` holds."""
    layouts = [name for name, over in recipe.variants.items() if "layout" in over]
    if recipe.variant or not layouts:
        return recipe
    tried = []
    for name in layouts:
        candidate = recipe.with_variant(name)
        required = candidate.layout.get("required", [])
        absent = [entry for entry in candidate.layout.get("absent", []) if (root / entry).exists()]
        if absent:  # a sign of another layout (Lakh's clean layout holds no folder 0 or A)
            tried.append(f"{name}: not with {', '.join(absent)}")
            continue
        if all((root / entry).exists() for entry in required):
            try:
                _music_files(candidate, root)
            except DataError:
                tried.append(f"{name}: {', '.join(required)} but no music files")
                continue
            return candidate
        tried.append(f"{name}: {', '.join(required) or candidate.layout.get('music')}")
    raise DataError(f"{recipe.name}: {root} matches none of its layouts ({'; '.join(tried)}); name one with "
                    f"--dataset {recipe.name}/<layout> or point --root at the unpacked folder")


def _csv_split(recipe: Recipe, root: Path) -> dict[str, list[Path]]:
    spec = recipe.split
    table = root / spec["file"]
    path_col, split_col = spec.get("path_column", "path"), spec.get("split_column", "split")
    names: dict[str, str] = spec.get("names", {s: s for s in SPLITS})
    try:
        with open(table, newline="", encoding="utf-8-sig") as f:
            rows = list(csv.DictReader(f))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise DataError(f"{recipe.full_name}: cannot read {table}: {exc}") from None
    if not rows:
        raise DataError(f"{recipe.full_name}: {table} lists no files")
    columns = list(rows[0].keys())
    for col in (path_col, split_col):
        if col not in columns:
            raise DataError(f"{recipe.full_name}: {table.name} has no {col!r} column (columns: {', '.join(columns)})")
    out: dict[str, list[Path]] = {s: [] for s in SPLITS}
    missing: list[str] = []
    for lineno, row in enumerate(rows, 2):
        value = (row.get(split_col) or "").strip()
        if value not in names:
            raise DataError(f"{recipe.full_name}: {table.name} line {lineno}: {split_col} {value!r} is not one of "
                            f"{', '.join(names)}")
        rel = (row.get(path_col) or "").strip()
        if not rel:
            raise DataError(f"{recipe.full_name}: {table.name} line {lineno}: empty {path_col}")
        path = root / rel
        if not path.is_file():
            missing.append(rel)
            continue
        out[names[value]].append(path)
    if missing:
        raise DataError(f"{recipe.full_name}: {len(missing)} of {len(rows)} files named in {table.name} are missing "
                        f"under {root} (first: {missing[0]}); unpack the whole download there")
    return out


# ----------------------------------------------------------------------------------- tune collections (ABC)
_MODES = {
    "major": "", "minor": "m", "dorian": "dor", "mixolydian": "mix", "lydian": "lyd", "phrygian": "phr",
    "locrian": "loc", "aeolian": "m", "ionian": "",
}  # fmt: skip


def session_key(mode: str) -> str:
    """The Session's mode ("Edorian", "Aminor", "Dmajor", "F#minor") as an ABC K: value (Edor, Am, D, F#m)."""
    text = (mode or "").strip()
    m = re.match(r"^([A-Ga-g][#b]?)\s*([A-Za-z]*)$", text)
    if not m:
        return text or "C"
    tonic, word = m.group(1), m.group(2).lower()
    tonic = tonic[0].upper() + tonic[1:]
    return tonic + _MODES.get(word, word[:3])


def _clean(value: Any) -> str:
    return " ".join(str(value or "").split())


def session_tune(row: dict[str, Any]) -> str:
    """One row of The Session's dump (a setting of a tune) as an ABC tune with headers: X: is the setting id, T: the
    name, R: the type, M: the meter, L:1/8 (the site's unit), K: from the mode; the body as given."""
    body = str(row.get("abc") or "").replace("\r\n", "\n").replace("\r", "\n")
    body = body.replace("\\n", "\n") if "\n" not in body and "\\n" in body else body
    lines = [line.rstrip() for line in body.split("\n")]
    lines = [line for line in lines if line.strip()]
    head = [f"X:{_clean(row.get('setting_id')) or _clean(row.get('tune_id')) or 1}"]
    head.append(f"T:{_clean(row.get('name')) or 'untitled'}")
    if _clean(row.get("type")):
        head.append(f"R:{_clean(row.get('type'))}")
    head.append(f"M:{_clean(row.get('meter')) or '4/4'}")
    head.append("L:1/8")
    head.append(f"K:{session_key(_clean(row.get('mode')))}")
    return "\n".join(head + lines) + "\n"


SESSION_FIELDS = ("tune_id", "setting_id", "name", "type", "meter", "mode", "abc")


def _read_session_rows(path: Path, recipe: Recipe) -> list[dict[str, Any]]:
    try:
        if path.suffix.lower() == ".json":
            data = json.loads(path.read_text(encoding="utf-8-sig"))
            if isinstance(data, dict):  # {"tunes": [...]} or similar
                data = next((v for v in data.values() if isinstance(v, list)), [])
            rows = [r for r in data if isinstance(r, dict)]
        else:
            csv.field_size_limit(min(sys.maxsize, 2**31 - 1))
            with open(path, newline="", encoding="utf-8-sig") as f:
                rows = list(csv.DictReader(f))
    except (OSError, UnicodeDecodeError, ValueError, csv.Error) as exc:
        raise DataError(f"{recipe.full_name}: cannot read {path}: {exc}") from None
    if not rows:
        raise DataError(f"{recipe.full_name}: {path} holds no tunes")
    missing = [c for c in SESSION_FIELDS if c not in rows[0]]
    if missing:
        raise DataError(f"{recipe.full_name}: {path.name} is not The Session's tune dump: no "
                        f"{', '.join(missing)} field(s) (has: {', '.join(list(rows[0])[:12])})")
    return rows


def _session_split(recipe: Recipe, root: Path) -> tuple[dict[str, list[str]], Path]:
    candidates = list(recipe.layout.get("music", ["csv/tunes.csv", "json/tunes.json", "tunes.csv", "tunes.json"]))
    found = next((root / c for c in candidates if (root / c).is_file()), None)
    if found is None:
        raise DataError(f"{recipe.full_name}: {root} has none of {', '.join(candidates)} (The Session's tune dump); "
                        f"expected a clone or download of {recipe.download or recipe.homepage}")
    rows = _read_session_rows(found, recipe)
    valid, test = float(recipe.split.get("valid", 0.05)), float(recipe.split.get("test", 0.05))
    out: dict[str, list[str]] = {s: [] for s in SPLITS}
    empty = 0
    for row in rows:
        if not str(row.get("abc") or "").strip():
            empty += 1
            continue
        tune_id = _clean(row.get("tune_id")) or _clean(row.get("name"))
        out[hash_split(recipe.name, tune_id, valid, test)].append(session_tune(row))
    if not any(out.values()):
        raise DataError(f"{recipe.full_name}: {found} holds no tune with an abc body")
    return out, found


def _book_split(recipe: Recipe, root: Path) -> dict[str, list[str]]:
    from fractalmusic.io.abc import parse_abc_header, read_text, split_abc_book

    files = _music_files(recipe, root)
    valid, test = float(recipe.split.get("valid", 0.05)), float(recipe.split.get("test", 0.05))
    out: dict[str, list[str]] = {s: [] for s in SPLITS}
    for path in files:
        rel = path.relative_to(root).as_posix()
        text = read_text(path)
        for index, tune in enumerate(split_abc_book(text)):
            number = parse_abc_header(tune).get("X", "").strip() or str(index)
            out[hash_split(recipe.name, f"{rel}#{number}", valid, test)].append(tune)
    if not any(out.values()):
        raise DataError(f"{recipe.full_name}: the ABC files under {root} hold no tunes")
    return out


# ---------------------------------------------------------------------------------------- MIDI transforms
def midi_transform(recipe: Recipe) -> dict[str, Any]:
    """What a recipe asks to be done to its MIDI files before they are read: {"tracks": [names], "sustain_pedal":
    bool}; empty when nothing (the lists then name the dataset's own files)."""
    out: dict[str, Any] = {}
    tracks = recipe.midi.get("tracks")
    if tracks:
        out["tracks"] = [str(t).strip().upper() for t in tracks]
    if recipe.midi.get("sustain_pedal") is True:
        out["sustain_pedal"] = True
    return out


def apply_sustain_pedal(time, duration, pitch, pedals) -> "np.ndarray":
    """New note durations with the sustain pedal applied, all in ticks: a note released while the pedal is down
    sounds until the pedal comes up, but no longer than the next onset of the same pitch (striking the key again
    ends it). `pedals` is [(start, end)]; returns the durations (never shorter than given)."""
    import numpy as np

    time = np.asarray(time, dtype=np.int64)
    duration = np.asarray(duration, dtype=np.int64)
    pitch = np.asarray(pitch, dtype=np.int64)
    end = time + duration
    if len(time) and len(pedals):
        spans = np.asarray(sorted(pedals), dtype=np.int64).reshape(-1, 2)
        starts, stops = spans[:, 0], spans[:, 0] + np.maximum(spans[:, 1] - spans[:, 0], 0)
        stops = np.maximum.accumulate(stops)  # overlapping pedal events: a later start never ends sooner
        k = np.searchsorted(starts, end, side="right") - 1
        held = (k >= 0) & (end < stops[np.maximum(k, 0)])
        end = np.where(held, stops[np.maximum(k, 0)], end)
        order = np.lexsort((time, pitch))  # by pitch, then onset
        nxt = np.full(len(time), np.iinfo(np.int64).max)
        same = pitch[order][1:] == pitch[order][:-1]
        nxt_sorted = np.where(same, time[order][1:], np.iinfo(np.int64).max)
        nxt[order[:-1]] = nxt_sorted
        cut = np.where(nxt > time, np.minimum(end, nxt), end)
        end = np.maximum(cut, time + duration)
    return end - time


def _transform_file(src: Path, dst: Path, transform: dict[str, Any]) -> str | None:
    """Write `src` transformed to `dst` (symusic, ticks untouched); the reason when it cannot be."""
    import numpy as np
    import symusic

    try:
        score = symusic.Score(str(src))
    except Exception as exc:  # corrupt files are reported, as the data layer would
        return f"unreadable MIDI ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})"
    if "tracks" in transform:
        wanted = set(transform["tracks"])
        keep = [t for t in score.tracks if t.name.strip().upper() in wanted]
        if not keep:
            names = ", ".join(t.name.strip() or "(unnamed)" for t in score.tracks) or "none"
            return f"no {' or '.join(sorted(wanted))} track (tracks: {names})"
        score.tracks = keep
    if transform.get("sustain_pedal"):
        for track in score.tracks:
            pedals = [(int(p.time), int(p.time) + int(p.duration)) for p in track.pedals]
            if not pedals or not len(track.notes):
                continue
            a = track.notes.numpy()
            dur = apply_sustain_pedal(a["time"], a["duration"], a["pitch"], pedals)
            track.notes = symusic.Note.from_numpy(
                time=np.asarray(a["time"], dtype=np.int32), duration=np.asarray(dur, dtype=np.int32),
                pitch=np.asarray(a["pitch"], dtype=np.int8), velocity=np.asarray(a["velocity"], dtype=np.int8),
                ttype="tick")
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_name(f".{dst.name}.{os.getpid()}.tmp")  # several processes may derive the same file
    score.dump_midi(str(tmp))
    os.replace(tmp, dst)
    return None


def _derive(recipe: Recipe, base: Path, files: dict[str, list[Path]], out: Path,
            notes: list[str]) -> dict[str, list[Path]]:
    """The recipe's MIDI transform applied to every listed file, written under out/midi/<relative path>; files
    already derived from the same source and transform (newer than the source) are kept. Lists name the copies."""
    transform = midi_transform(recipe)
    if not transform:
        return files
    target = out / "midi"
    stamp = json.dumps(transform, sort_keys=True)
    stamp_file = target / ".transform.json"
    fresh_ok = stamp_file.is_file() and stamp_file.read_text() == stamp
    target.mkdir(parents=True, exist_ok=True)
    result: dict[str, list[Path]] = {s: [] for s in SPLITS}
    skipped: list[tuple[str, str]] = []
    made = kept = 0
    for split in SPLITS:
        for src in files[split]:
            rel = src.relative_to(base)
            dst = target / rel
            if fresh_ok and dst.is_file() and dst.stat().st_mtime >= src.stat().st_mtime:
                kept += 1
            else:
                why = _transform_file(src, dst, transform)
                if why:
                    skipped.append((rel.as_posix(), why))
                    continue
                made += 1
            result[split].append(dst)
    stamp_file.write_text(stamp)
    what = " and ".join(
        ([f"only track {', '.join(transform['tracks'])}"] if "tracks" in transform else [])
        + (["sustain pedal applied"] if transform.get("sustain_pedal") else []))
    notes.append(f"{what}: {made:,} files written, {kept:,} kept from before, under {target}")
    if skipped:
        first = "; ".join(f"{n}: {w}" for n, w in skipped[:3])
        notes.append(f"{len(skipped):,} files left out ({first}{' ...' if len(skipped) > 3 else ''})")
    return result


# --------------------------------------------------------------------------------------------------- driver
def make_split(recipe: Recipe, root: str | os.PathLike | None, out_dir: str | os.PathLike,
               log: Callable[[str], Any] | None = None) -> DatasetSplit:
    """Check the layout under `root`, split it by the recipe, and write train.txt / valid.txt / test.txt (and, for
    tune collections, abc/<split>.abc) into `out_dir`. DataError (one line) when the layout is not the expected one."""
    from fractalmusic.files import atomic_write

    base = resolve_root(recipe, root)
    recipe = detect_variant(recipe, base)
    _check_required(recipe, base)
    out = Path(out_dir).expanduser()
    out.mkdir(parents=True, exist_ok=True)
    method = recipe.split.get("method", "hash")
    files: dict[str, list[Path]] = {s: [] for s in SPLITS}
    counts: dict[str, int] = {}
    notes: list[str] = []

    def write_text(path: Path, text: str) -> None:
        atomic_write(path, lambda f: f.write(text.encode("utf-8")))

    if recipe.format == "midi":
        if method == "csv":
            files = _csv_split(recipe, base)
        else:
            valid, test = float(recipe.split.get("valid", 0.05)), float(recipe.split.get("test", 0.05))
            seen: set[str] = set()
            duplicates = 0
            for path in _music_files(recipe, base):
                key = _key(recipe, base, path)
                if recipe.split.get("dedupe") and key in seen:  # the same file under several folders
                    duplicates += 1
                    continue
                seen.add(key)
                files[hash_split(recipe.name, key, valid, test)].append(path)
            if duplicates:
                notes.append(f"{duplicates:,} further copies of files already listed were left out "
                             f"(same {recipe.split.get('key')})")
        files = _derive(recipe, base, files, out, notes)
        derived = bool(midi_transform(recipe))
        root_of_lists = (out / "midi") if derived else base
        absolute, cut = str(root_of_lists.resolve()), len(os.path.join(str(root_of_lists), ""))
        for split in SPLITS:
            names = sorted(os.path.join(absolute, str(p)[cut:]) for p in files[split])
            files[split] = [Path(n) for n in names]
            counts[split] = len(names)
            write_text(out / LIST_NAMES[split], "".join(f"{n}\n" for n in names))
    else:
        if method == "session":
            tunes, found = _session_split(recipe, base)
            notes.append(f"converted {sum(len(t) for t in tunes.values()):,} settings from {found} to ABC tunes")
        else:
            tunes = _book_split(recipe, base)
        for split in SPLITS:
            book = out / "abc" / f"{split}.abc"
            write_text(book, "\n".join(tunes[split]))
            files[split] = [book]
            counts[split] = len(tunes[split])
            write_text(out / LIST_NAMES[split], f"abc/{split}.abc\n" if tunes[split] else "")
    result = DatasetSplit(recipe, base, files, counts, {s: out / LIST_NAMES[s] for s in SPLITS}, notes)
    if log is not None:
        log(result.summary())
        for line in notes:
            log(line)
    return result


def work_dir(cache_root: Path, recipe: Recipe, root: Path) -> Path:
    """Where `fmusic train --dataset` keeps the split it builds: a folder per recipe and root under the cache."""
    key = hashlib.sha256(f"{recipe.full_name}\x00{root.resolve()}".encode("utf-8")).hexdigest()[:12]
    return cache_root / "datasets" / f"{recipe.full_name.replace('/', '-')}-{key}"


def check_dataset_options(cfg) -> None:
    """The cheap part of `resolve_data_config`: the recipe exists, --root exists and has the recipe's layout
    markers, --data/--root are not misused (what `fmusic train --devices` checks before starting processes)."""
    if not getattr(cfg, "dataset", None):
        if getattr(cfg, "root", None):
            raise ConfigError("--root goes with --dataset NAME (the recipe of the dataset that lies there)")
        return
    recipe = load_recipe(cfg.dataset)
    base = resolve_root(recipe, cfg.root)
    _check_required(detect_variant(recipe, base), base)


def resolve_data_config(cfg, log: Callable[[str], Any] | None = None):
    """A DataConfig naming --dataset (and --root) -> the same config training on the recipe's train list and
    validating on its valid list, built under the cache folder. Configs without --dataset come back unchanged."""
    if not getattr(cfg, "dataset", None):
        if getattr(cfg, "root", None):
            raise ConfigError("--root goes with --dataset NAME (the recipe of the dataset that lies there)")
        return cfg
    recipe = load_recipe(cfg.dataset)
    base = resolve_root(recipe, cfg.root)
    recipe = detect_variant(recipe, base)
    folder = work_dir(cfg.resolved_cache_dir(), recipe, base)
    split = make_split(recipe, base, folder, log=log)
    train, valid = str(split.lists["train"]), str(split.lists["valid"])
    for option, given, ours in (("--data", cfg.data, train), ("--val-data", cfg.val_data, valid)):
        if given and os.path.abspath(os.path.expanduser(str(given))) != os.path.abspath(ours):
            raise ConfigError(f"{option} {given} and --dataset {cfg.dataset} both name the data; give one of them")
    if not split.counts["train"]:
        raise DataError(f"{recipe.full_name}: the split gives no training {('files' if recipe.format == 'midi' else 'tunes')}")
    if not split.counts["valid"]:
        if log is not None:
            log(f"{recipe.full_name}: the valid split is empty; training runs without validation")
        valid = None
    return replace(cfg, data=train, val_data=valid, val_fraction=cfg.val_fraction if valid else 0.0)
