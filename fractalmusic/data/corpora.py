"""Corpora: what `--data` and `--val-data` name, resolved to a sorted list of music files.

A corpus is one of

* a built-in name (music21's embedded corpus, so a default run needs no download): `folk`, `chorales`, and
  `essen` (only when asked for by name: its terms allow non-commercial use only);
* a folder, searched recursively for supported files (hidden files and folders are skipped);
* a list file (`train.txt`, as FractalMIDI uses): one path per line, relative to the list file; blank lines and
  `#` comments are ignored; a listed folder is searched like a folder;
* a single music file, including a multi-tune ABC book.

Listed files that do not exist, or have a type no reader knows, are skipped and reported like unreadable files.

`extra_suffixes` are the file types the chosen representation reads itself (`Representation.input_suffixes`, e.g.
`.txt` for the text plugin): they count as corpus files in folders, lists and as a single file. A file with such a
suffix that is also a list suffix (`.txt`) is a list file only when every entry names an existing file or folder.
"""
from __future__ import annotations

import difflib
import importlib.util
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path

from fractalmusic.errors import DataError
from fractalmusic.limits import MAX_FILE_BYTES, file_problem, human_bytes

LIST_SUFFIXES = (".txt", ".lst", ".list", ".files")


def supported_suffixes() -> tuple[str, ...]:
    from fractalmusic.io import SUPPORTED_SUFFIXES

    return tuple(s.lower() for s in SUPPORTED_SUFFIXES)


def music21_corpus_dir() -> Path:
    """music21's embedded corpus, found without importing music21 (which takes a while)."""
    spec = importlib.util.find_spec("music21")
    if spec is None or not spec.origin:
        raise DataError("the built-in corpora need music21, which is not installed (pip install music21)")
    return Path(spec.origin).parent / "corpus"


# ---------------------------------------------------------------------------------------------- built-ins
@dataclass(frozen=True)
class BuiltinCorpus:
    name: str
    description: str
    licence: str
    folders: tuple[str, ...]  # under music21/corpus
    suffixes: tuple[str, ...]
    exclude: tuple[str, ...] = ()  # file names left out (duplicate transcriptions, test files, non-chorales)
    explicit_only: bool = False  # never a default; listed with its terms

    def files(self) -> list[Path]:
        root = music21_corpus_dir()
        out: list[Path] = []
        for folder in self.folders:
            d = root / folder
            if not d.is_dir():
                raise DataError(
                    f"built-in corpus {self.name!r}: music21's corpus folder {d} is missing "
                    "(a music21 installed without its corpus?)"
                )
            out.extend(
                p
                for p in sorted(d.iterdir())
                if p.is_file() and p.suffix.lower() in self.suffixes and p.name not in self.exclude
            )
        return out


BUILTINS: dict[str, BuiltinCorpus] = {
    "folk": BuiltinCorpus(
        name="folk",
        description="Irish and Scottish folk tunes in ABC: O'Neill's Music of Ireland (1850), "
        "Ryan's Mammoth Collection, Aird's Airs",
        licence="public-domain tune books, transcriptions distributed with music21",
        folders=("oneills1850", "ryansMammoth", "airdsAirs"),
        suffixes=(".abc",),
        # second transcriptions of tunes that another O'Neill file already holds: keeping both would put one
        # tune on both sides of the train/validation split
        exclude=("0626-0635.abc", "0732-0758_mh.abc", "1116-1135_ml.abc", "1556-1624.abc", "1710-1750.abc"),
    ),
    "chorales": BuiltinCorpus(
        name="chorales",
        description="J. S. Bach's four-part chorales (MusicXML), including alternative versions of some",
        licence="public domain music; encodings distributed with music21",
        folders=("bach",),
        suffixes=(".mxl", ".xml"),  # the three .krn files duplicate .mxl ones
        exclude=("bwv846.mxl",),  # a prelude of the Well-Tempered Clavier, not a chorale
    ),
    "essen": BuiltinCorpus(
        name="essen",
        description="Essen folksong collection (mostly German folk songs) in ABC",
        licence="NON-COMMERCIAL use only (permission given to music21 for non-commercial distribution)",
        folders=("essenFolksong",),
        suffixes=(".abc",),
        exclude=("test0.abc", "test1.abc", "testd.abc", "teste.abc"),
        explicit_only=True,
    ),
}


def count_abc_tunes(path: Path) -> int:
    """Tunes in an ABC file: lines starting with the X: field."""
    with open(path, "rb") as f:
        return sum(1 for line in f if line.lstrip().startswith(b"X:"))


def builtin_summary(name: str) -> dict:
    """Name, description, licence, file and tune counts of a built-in corpus (cheap: no music is parsed)."""
    import hashlib

    c = BUILTINS[name]
    files, seen = [], set()
    for p in c.files():  # byte-identical copies are read once (see fractalmusic.data.prepare)
        digest = hashlib.sha256(p.read_bytes()).digest()
        if digest not in seen:
            seen.add(digest)
            files.append(p)
    pieces = sum(count_abc_tunes(p) if p.suffix.lower() == ".abc" else 1 for p in files)
    return {
        "name": c.name,
        "description": c.description,
        "licence": c.licence,
        "files": len(files),
        "pieces": pieces,
        "explicit_only": c.explicit_only,
        "folders": [str(music21_corpus_dir() / f) for f in c.folders],
    }


# ---------------------------------------------------------------------------------------------- resolution
@dataclass
class Corpus:
    spec: str  # as the user wrote it
    name: str  # short name for messages
    kind: str  # "builtin" | "folder" | "list" | "file"
    files: list[Path]
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (entry, reason) dropped before reading
    notes: list[str] = field(default_factory=list)  # things worth a line (licence terms, shadowed names)
    builtin: BuiltinCorpus | None = None


def resolve_corpus(spec: str | os.PathLike, extra_suffixes: tuple[str, ...] = ()) -> Corpus:
    """Turn a --data value into a Corpus; DataError (with a suggestion) when it names nothing usable.

    `extra_suffixes`: file types the representation reads itself (see the module docstring)."""
    suffixes = supported_suffixes() + tuple(s.lower() for s in extra_suffixes if s.lower() not in supported_suffixes())
    text = str(spec).strip()
    if not text:
        raise DataError("empty corpus name")
    if text in BUILTINS:
        b = BUILTINS[text]
        notes = []
        if b.explicit_only:
            notes.append(f"corpus {b.name!r}: {b.licence}")
        if Path(text).exists():
            notes.append(f"{text!r} is a built-in corpus name; write ./{text} for the path of that name")
        return Corpus(text, b.name, "builtin", b.files(), notes=notes, builtin=b)
    path = Path(text).expanduser()
    if path.is_dir():
        files, skipped = _scan_folder(path, suffixes)
        if not files:
            why = ""
            if skipped:
                from fractalmusic.data.prepare import group_reasons

                why = f"; {group_reasons(skipped)}"
            raise DataError(f"folder {path} holds no music files ({' '.join(suffixes)}){why}")
        return Corpus(text, path.name or str(path), "folder", files, skipped=skipped)
    problem = _special_file(path)
    if problem:
        raise DataError(f"{path}: {problem}")
    if path.is_file():
        suffix = path.suffix.lower()
        if suffix in suffixes and (suffix in supported_suffixes() or not _is_path_list(path)):
            return Corpus(text, path.name, "file", [path])
        return _read_list(path, text, suffixes)
    raise DataError(_not_found(text))


def _special_file(path: Path) -> str | None:
    """Why an existing path cannot be a corpus file or list (a FIFO, a device, too big, a symlink loop), else
    None. Only stats the path: opening a FIFO would block until something writes to it."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    except OSError as exc:
        return f"cannot be read ({exc.strerror or exc})"
    if stat.S_ISDIR(st.st_mode):
        return None
    return file_problem(st)


def _not_found(text: str) -> str:
    looks_like_name = os.sep not in text and "/" not in text and not Path(text).suffix
    names = ", ".join(BUILTINS)
    if looks_like_name:
        close = difflib.get_close_matches(text, list(BUILTINS), n=1, cutoff=0.5)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        return (
            f"no built-in corpus or file named {text!r}{hint}; built-in corpora: {names}; "
            "or give a folder, a list file or a music file"
        )
    parent = Path(text).expanduser().parent
    hint = ""
    if parent.is_dir():
        try:
            siblings = [p.name for p in parent.iterdir()]
        except OSError:
            siblings = []
        close = difflib.get_close_matches(Path(text).name, siblings, n=1, cutoff=0.6)
        if close:
            hint = f" (did you mean {str(parent / close[0])!r}?)"
    return f"no such file or folder: {text}{hint}"


def _scan_folder(folder: Path, suffixes: tuple[str, ...] | None = None) -> tuple[list[Path], list[tuple[str, str]]]:
    """(music files under `folder`, sorted; what was left out, as (path, reason)).

    Searches recursively, following symbolic links, but visits each real folder once (by device and inode): a
    link back to a folder above it is reported once as a loop and not followed, a second link to a folder already
    searched is not searched again. Only regular files within the size limit are kept: FIFOs, sockets, devices and
    oversized files are reported, never opened (a FIFO would block the reader). Unreadable folders and links that
    lead nowhere are reported too. Hidden files and folders (a leading dot) are skipped silently.
    """
    suffixes = suffixes or supported_suffixes()
    out: list[Path] = []
    skipped: list[tuple[str, str]] = []
    try:
        top = os.stat(folder)
    except OSError as exc:
        return [], [(str(folder), f"folder cannot be read ({exc.strerror or exc})")]
    seen_dirs = {(top.st_dev, top.st_ino)}
    seen_files: set[tuple[int, int]] = set()
    stack: list[tuple[str, frozenset]] = [(str(folder), frozenset(seen_dirs))]
    while stack:
        here, ancestors = stack.pop()
        try:
            with os.scandir(here) as it:
                items = sorted(it, key=lambda e: e.name)
        except OSError as exc:
            skipped.append((here, f"folder cannot be read ({exc.strerror or exc})"))
            continue
        subdirs = []
        for item in items:
            if item.name.startswith("."):
                continue
            music = os.path.splitext(item.name)[1].lower() in suffixes
            try:
                st = os.stat(item.path)  # follows links
            except FileNotFoundError:
                if music and item.is_symlink():
                    skipped.append((item.path, "symbolic link to nothing"))
                continue
            except OSError as exc:  # ELOOP (a link to itself), EACCES on the way ...
                skipped.append((item.path, f"cannot be followed ({exc.strerror or exc})"))
                continue
            if stat.S_ISDIR(st.st_mode):
                key = (st.st_dev, st.st_ino)
                if key in ancestors:
                    skipped.append((item.path, "symbolic link loop (links to a folder above it; not followed)"))
                elif key not in seen_dirs:
                    seen_dirs.add(key)
                    subdirs.append((item.path, ancestors | {key}))
                continue  # else: a folder already searched through another link
            if not music:
                continue
            why = file_problem(st)
            if why:
                skipped.append((item.path, why))
                continue
            key = (st.st_dev, st.st_ino)
            if key not in seen_files:  # the same file reached through a second link is used once
                seen_files.add(key)
                out.append(Path(item.path))
        stack.extend(reversed(subdirs))
    return sorted(out), skipped


def _is_path_list(path: Path) -> bool:
    """Whether a text file reads as a list file: each of its (at most 10,000) entries names an existing path."""
    if path.suffix.lower() not in LIST_SUFFIXES or path.stat().st_size > 4_000_000:
        return False
    try:
        raw = path.read_bytes().decode("utf-8-sig")
    except (OSError, UnicodeDecodeError):
        return False
    base = path.resolve().parent
    entries = [ln.strip() for ln in raw.splitlines() if ln.strip() and not ln.strip().startswith("#")]
    if not entries or len(entries) > 10_000:
        return False
    for entry in entries:
        try:
            p = Path(entry).expanduser()
            if not (p if p.is_absolute() else base / p).exists():
                return False
        except (OSError, ValueError):
            return False
    return True


def _read_list(path: Path, text: str, suffixes: tuple[str, ...] | None = None) -> Corpus:
    size = path.stat().st_size
    if size > MAX_FILE_BYTES:
        raise DataError(f"{path}: {human_bytes(size)} is too big for a list file (limit {human_bytes(MAX_FILE_BYTES)})")
    try:
        raw = path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError:
        raise DataError(
            f"{path} is neither a music file ({' '.join(supported_suffixes())}) nor a text file listing paths"
        ) from None
    if "\x00" in raw:
        raise DataError(f"{path} is neither a music file ({' '.join(supported_suffixes())}) nor a list of paths")
    suffixes = suffixes or supported_suffixes()
    base = path.resolve().parent
    files: list[Path] = []
    skipped: list[tuple[str, str]] = []
    seen: set[Path] = set()
    entries = 0
    for lineno, line in enumerate(raw.splitlines(), 1):
        entry = line.strip()
        if not entry or entry.startswith("#"):
            continue
        entries += 1
        p = Path(entry).expanduser()
        if not p.is_absolute():
            p = base / p
        problem = _special_file(p)
        if problem:
            skipped.append((entry, problem))
            continue
        if p.is_dir():
            found, left_out = _scan_folder(p, suffixes)
            skipped.extend(left_out)
            if not found:
                skipped.append((entry, "folder holds no music files"))
            new = [f for f in found if f.resolve() not in seen]
        elif p.is_file():
            if p.suffix.lower() not in suffixes:
                skipped.append((entry, f"unsupported file type {p.suffix or '(none)'}"))
                continue
            new = [p] if p.resolve() not in seen else []
        else:
            skipped.append((entry, f"not found ({path.name} line {lineno})"))
            continue
        for f in new:
            seen.add(f.resolve())
            files.append(f)
    if not entries:
        raise DataError(f"list file {path} names no files (one path per line; # starts a comment)")
    if not files:
        first = skipped[0] if skipped else (str(path), "nothing listed")
        raise DataError(f"none of the {entries} entries in {path} is a music file (first: {first[0]}: {first[1]})")
    return Corpus(text, path.name, "list", files, skipped=skipped)
