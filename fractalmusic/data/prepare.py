"""Preparation: read a corpus's files into Pieces (in parallel, through the cache), collecting what failed.

`read_corpus` returns a `ReadCorpus`: one `FileEntry` per file and one `PieceRef` per piece, in corpus order
(files sorted, tunes in book order). Files are identified by the sha256 of their bytes: byte-identical copies are
read once, and a cached entry serves a copy of the file anywhere. A warm cache makes this cheap: one corpus index
(or, failing that, the JSON part of each file's entry) gives every piece's key and summary; notes are loaded on
demand (`FileEntry.pieces`), e.g. when a vocabulary must be fitted or an encoding is missing. Files that fail
are cached as failures too, so a second run re-parses nothing.
"""
from __future__ import annotations

import gc
import math
import os
import sys
import time
from collections import Counter
from contextlib import contextmanager
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from fractalmusic.data.cache import Cache, file_digest_and_bytes, make_key, piece_summary
from fractalmusic.data.corpora import Corpus
from fractalmusic.data.split import content_key
from fractalmusic.data.workers import die_with_parent, sigint_held, stop_pool
from fractalmusic.errors import PieceReadError
from fractalmusic.piece import NOTE_DTYPE, Piece


def reader_version() -> str:
    """What the parsed-piece cache depends on besides the file: the io readers' version."""
    import fractalmusic
    from fractalmusic import io

    return f"{getattr(io, 'READER_VERSION', 0)}/{fractalmusic.__version__}"


_READER_MODULES = {  # file suffix -> what reading it imports the first time (symusic alone takes 60-90 ms)
    ".mid": ("fractalmusic.io.midi", "symusic"),
    ".midi": ("fractalmusic.io.midi", "symusic"),
    ".abc": ("fractalmusic.io.abc",),
    ".xml": ("fractalmusic.io.music21_io",),
    ".mxl": ("fractalmusic.io.music21_io",),
    ".musicxml": ("fractalmusic.io.music21_io",),
    ".krn": ("fractalmusic.io.music21_io",),
}


def load_readers(files) -> float:
    """Import the readers (and their libraries) that reading `files` will use, and the progress bar's; returns the
    seconds that took.

    Preparation leaves this out of the time it reports: importing is a one-time cost of the process, not of the
    data (symusic's package imports its soundfont downloader: 60-90 ms, as long as reading 30 MIDI files)."""
    import importlib

    started = time.perf_counter()
    modules = ["fractalmusic.io", "tqdm"]
    for suffix in {os.path.splitext(f)[1].lower() for f in files}:  # (no Path made per file)
        modules += [m for m in _READER_MODULES.get(suffix, ()) if m not in modules]
    for name in modules:
        if name not in sys.modules:
            try:
                importlib.import_module(name)
            except ImportError:  # reading the file says what is missing, in its own words
                pass
    return time.perf_counter() - started


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def reads_itself(reader, path) -> bool:
    """Whether `reader` (a representation with `input_suffixes`, or None) reads `path` instead of fractalmusic.io."""
    return reader is not None and Path(path).suffix.lower() in {s.lower() for s in reader.input_suffixes}


def read_file(path: str, notes: bool, reader=None,
              data: bytes | None = None) -> tuple[list[Piece], list[tuple[str, str]], str | None]:
    """Read one file: (pieces, failed tunes as (source, reason), reason the whole file failed or None).

    `reader`: the representation, when it reads some file types itself (`input_suffixes`, `read_file(path)`).
    `data`: a MIDI file's bytes, read already (for its digest). Never raises for a bad file: a corpus with bad
    files trains on the good ones.
    """
    from fractalmusic.io import read_pieces

    errors: list[tuple[str, str]] = []
    try:
        if reads_itself(reader, path):
            pieces = reader.read_file(path)
        else:
            pieces = read_pieces(path, notes=notes, errors=errors, data=data)
    except PieceReadError as exc:
        return [], errors, exc.reason
    except (KeyboardInterrupt, SystemExit):
        raise
    except MemoryError:
        return [], errors, "out of memory while reading"
    except Exception as exc:  # music21 and friends raise anything on odd files
        return [], errors, f"reader failed: {type(exc).__name__}: {_first_line(exc)}"
    if not pieces:
        return [], errors, "no music found"
    return list(pieces), [(str(s), str(r)) for s, r in errors], None


def _read_in_worker(path: str, notes: bool, reader=None):
    return read_file(path, notes, reader) if reader is not None else read_file(path, notes)


_AHEAD = None  # in a reader worker: the representation whose `work_ahead` runs on every piece read


def _start_worker(parent_pid: int, ahead=None) -> None:
    """Reader pool initializer: die with the parent (`die_with_parent`), and keep the representation that works
    ahead on the pieces read."""
    global _AHEAD
    die_with_parent(parent_pid)
    _AHEAD = ahead


def _read_batch_in_worker(items: list, notes: bool) -> list:
    """Several files per task: a MIDI file reads in milliseconds, less than handing one task to a worker costs.
    Each file's cache entry facts (summaries, content hashes: `_entry_meta`) are worked out here too, so that the
    main process, which encodes every piece, only stores them; and, when the pool was given a representation with
    `work_ahead`, what it can work out about each piece before it is fitted (MIDI words' arrays), in parallel."""
    out = []
    for path, extra in items:
        pieces, tune_errors, error = _read_in_worker(path, notes, *extra)
        meta, _ = _entry_meta(Path(path), pieces, tune_errors, error, notes_too=False)
        work = _work_ahead(_AHEAD, pieces)
        out.append((pieces, tune_errors, error, meta, work))
    return out


def _work_ahead(ahead, pieces: list[Piece]) -> list | None:
    if ahead is None or not pieces:
        return None
    try:
        return [ahead.work_ahead(p) for p in pieces]
    except (KeyboardInterrupt, SystemExit):
        raise
    except Exception:  # the main process works it out again, and says what is wrong with the piece then
        return None


KEEP_LOADED_NOTES = 8_000_000  # notes of freshly read pieces kept in memory for the rest of a run (23 bytes a
# note: about 185 MB); past it the cache serves them again when fitting and encoding (and their words are worked out
# again: the words' memo knows a piece by its notes array)
KEEP_READ_BYTES = 64 << 20  # MIDI files' bytes read for their digests and kept for their reader, at most, per batch
MIN_FILES_PER_WORKER = 4  # fewer files than this per worker are read in-process (starting workers costs more)
# Reading starts in this process, and worker processes take over only when the files left would keep it busy for
# longer than POOL_AFTER_SECONDS (judged from the files read so far, after at least PROBE_SECONDS of reading).
# Starting a pool costs about 0.1 s (fork, a watcher thread per worker, shutdown) plus sending every piece back,
# which is as long as reading 30-40 real MIDI files: a folder that reads in about a second is done sooner here.
# With AHEAD_WORKERS reader workers or more, they also do the representation's `work_ahead` (MIDI words' arrays):
# that takes the work out of the main process, which fits and encodes alone once reading ends, at the price of
# sending it over (about a tenth more CPU in all). On fewer cores the main process does it itself: the workers
# and it share the same cores, so moving work between them saves no time and the sending costs some.
AHEAD_WORKERS = 4
PROBE_SECONDS = 0.25
POOL_AFTER_SECONDS = 1.0
POOL_BYTES = 64 << 20  # files left holding this many bytes are handed to workers without probing (about 1 s)
DIGEST_THREADS_FROM = 64  # files to hash before threads are worth starting (`_digests`) ...
DIGEST_WINDOW = 512  # ... and how many of them the threads hash ahead of the entries made


@contextmanager
def older_objects_left_alone():
    """While preparing, the objects that existed before (torch's alone are about 170,000 in `fmusic`) stay out of
    the garbage collector's full passes, which otherwise walk all of them every few thousand files read (a tenth
    of a second each time). They go back to the collector when preparation ends, so nothing is kept from it. A
    freeze someone else made (`gc.freeze()` before forking workers, say) is left as it is."""
    if gc.get_freeze_count():
        yield
        return
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


# ------------------------------------------------------------------------------------------- entries
@dataclass
class FileEntry:
    path: Path
    digest: str
    key: str  # cache key of this file's parsed pieces
    meta: dict[str, Any] | None = None  # {"error", "tune_errors", "pieces": [facts + summary]}
    loaded: list[Piece] | None = field(default=None, repr=False)  # in memory when read or loaded this run
    reader: Any = field(default=None, repr=False)  # the representation, when it reads this file itself
    data: bytes | None = field(default=None, repr=False)  # a MIDI file's bytes, read for its digest, until parsed
    size: int = 0  # bytes in the file (when its digest was made)

    @property
    def error(self) -> str | None:
        return None if self.meta is None else self.meta.get("error")

    @property
    def n_pieces(self) -> int:
        return 0 if self.meta is None else len(self.meta.get("pieces", ()))

    def pieces(self, cache: Cache, notes: bool) -> list[Piece]:
        """This file's pieces, from memory, from the cache, or (entry gone since) read again."""
        if self.loaded is not None:
            return self.loaded
        assert self.meta is not None
        if self.meta.get("light"):  # found through the corpus index: the facts are in the file's own entry
            full = cache.load_piece_meta(self.key)
            if full is not None and len(full.get("pieces", [])) == self.n_pieces:
                self.meta = full
        rows = self.meta.get("pieces", [])
        arr = cache.load_notes(self.key)
        if self.meta.get("light") or arr is None or len(arr) != sum(int(r["n"]) for r in rows):
            args = (self.reader,) if self.reader is not None else ()
            pieces, _, _ = read_file(str(self.path), notes, *args)  # the entry is gone: read it again
            self.loaded = pieces
            return pieces
        out, start = [], 0
        for row in rows:
            n = int(row["n"])
            # the array was read for this entry alone: a file of one piece takes it whole, others copy their part
            out.append(_piece_from_row(row, arr if len(rows) == 1 else arr[start : start + n].copy(), self.path))
            start += n
        self.loaded = out
        return out

    def release(self) -> None:
        self.loaded = None


@dataclass
class PieceRef:
    file: FileEntry
    index: int  # within the file
    source: str
    key: str  # "<file digest>:<index>", the split's and the vocabulary key's unit
    summary: dict[str, Any]


def _suffix_of(source: str | None, path: Path) -> str:
    """The tune part of a source id ("#X3"), so a cached entry can be reused for a copy of the file elsewhere."""
    if not source:
        return ""
    text = str(source)
    if text.startswith(str(path)):
        return text[len(str(path)) :]
    return text[text.index("#") :] if "#" in text else ""


def _piece_row(piece: Piece, path: Path) -> dict[str, Any]:
    return {
        "n": piece.n_notes,
        "suffix": _suffix_of(piece.source, path),
        "tempos": [list(map(float, t)) for t in piece.tempos],
        "time_signatures": [[float(b), int(n), int(d)] for b, n, d in piece.time_signatures],
        "key": piece.key,
        "title": piece.title,
        "abc": piece.abc,
        "meta": piece.meta,
        "summary": _summary(piece),
    }


def _summary(piece: Piece) -> dict[str, Any]:
    """`piece_summary` with the content hash that finds copies (`content_key`) when it is cheap to make: from text
    (ABC tunes, text documents). A piece of notes alone (a MIDI file) gets it only when another piece could be a
    copy of it (`content_of`, called by the split's screening): hashing every piece's notes took as long as a
    tenth of reading the file."""
    summary = piece_summary(piece)
    if piece.abc or isinstance((piece.meta or {}).get("text"), str):
        summary["content"] = content_key(piece)
    return summary


def copy_signature(summary: dict[str, Any]) -> tuple:
    """What copies of a piece share for sure (their notes are the same): pieces with different signatures are
    never compared by content."""
    return (summary.get("n_notes"), summary.get("end_beat"), summary.get("pitch_min"), summary.get("pitch_max"),
            bool(summary.get("has_abc")))


def _hash_possible_copies(entries: list["FileEntry"], cache: Cache, notes: bool) -> None:
    """Content hashes for the pieces of `entries` that share a `copy_signature` with another one (kept in their
    summaries)."""
    rows = [(e, i, row["summary"]) for e in entries if e.meta and not e.error
            for i, row in enumerate(e.meta.get("pieces", []))]
    shared = Counter(copy_signature(summary) for _, _, summary in rows)
    for e, i, summary in rows:
        if shared[copy_signature(summary)] > 1 and not summary.get("content"):
            summary["content"] = content_key(e.pieces(cache, notes)[i])


def content_of(ref: "PieceRef", cache: Cache, notes: bool) -> str:
    """A piece's content hash: from its summary, else made from its notes (loaded from memory or the cache) and
    kept in the summary."""
    content = ref.summary.get("content")
    if not content:
        content = ref.summary["content"] = content_key(ref.file.pieces(cache, notes)[ref.index])
    return content


def _piece_from_row(row: dict[str, Any], notes: np.ndarray, path: Path) -> Piece:
    return Piece(
        notes=notes,
        tempos=[tuple(t) for t in row.get("tempos") or []],
        time_signatures=[(float(b), int(n), int(d)) for b, n, d in row.get("time_signatures") or []],
        key=row.get("key"),
        title=row.get("title"),
        abc=row.get("abc"),
        source=f"{path}{row.get('suffix', '')}",
        meta=dict(row.get("meta") or {}),
    )


THIS_FILE = "<file>"  # stands for the file's path in cached failure reasons (the cache is keyed by content)


def _unpath(reason: str | None, path: Path) -> str | None:
    return reason.replace(str(path), THIS_FILE) if reason else reason


def _repath(reason: str | None, path: Path) -> str | None:
    return reason.replace(THIS_FILE, str(path)) if reason else reason


def _entry_meta(path: Path, pieces: list[Piece], tune_errors, error, meta: dict[str, Any] | None = None,
                notes_too: bool = True) -> tuple[dict[str, Any], np.ndarray | None]:
    """(a file's cache entry meta, all its pieces' notes end to end); `meta` when already made (by a reader worker),
    the notes left out (None) without `notes_too`."""
    if meta is not None:
        return meta, _entry_notes(pieces)
    rows = [_piece_row(p, path) for p in pieces]
    tune = [[_suffix_of(s, path) or s, _unpath(r, path)] for s, r in tune_errors]
    meta = {"error": _unpath(error, path), "tune_errors": tune, "pieces": rows}
    return meta, _entry_notes(pieces) if notes_too else None


def _entry_notes(pieces: list[Piece]) -> np.ndarray:
    if len(pieces) == 1:
        return pieces[0].notes  # one piece (a MIDI file): its own array, not a copy (it is only written out)
    return np.concatenate([p.notes for p in pieces]) if pieces else np.zeros(0, dtype=NOTE_DTYPE)


# ------------------------------------------------------------------------------------------- reading
@dataclass
class ReadCorpus:
    corpus: Corpus
    notes: bool
    files: list[FileEntry]
    refs: list[PieceRef]
    skipped_files: list[tuple[str, str]]  # (source, reason)
    skipped_pieces: list[tuple[str, str]]  # failed tunes of books
    read_now: int = 0  # files parsed this run (cache misses)
    truncated: bool = False  # max_pieces cut the corpus short
    duplicates: list[tuple[str, str]] = field(default_factory=list)  # (file, the identical file used instead)
    digests: dict[str, str] = field(default_factory=dict, repr=False)  # digest -> first file with it

    def summary_line(self) -> str:
        """`N read, M skipped` with the reasons grouped, and how much came from the cache."""
        n_files = sum(1 for f in self.files if not f.error)
        line = f"{self.corpus.name}: {len(self.refs)} pieces from {n_files} files read, "
        line += group_reasons(self.skipped_files + self.skipped_pieces)
        if self.duplicates:
            first = _short_name(self.duplicates[0][0])
            line += f"; {len(self.duplicates)} byte-identical duplicate files used once ({first}, ...)"
        if self.files:
            line += f" [{self.read_now} files parsed, {len(self.files) - self.read_now} from the cache]"
        return line


def group_reasons(items: list[tuple[str, str]], names_per_reason: int = 3) -> str:
    """'0 skipped' or '2 skipped: 1 not a MIDI file (junk.mid), 1 no notes (empty.mid)'."""
    if not items:
        return "0 skipped"
    by_reason: dict[str, list[str]] = {}
    for source, reason in items:
        by_reason.setdefault(reason, []).append(_short_name(source))
    parts = []
    for reason, names in sorted(by_reason.items(), key=lambda kv: (-len(kv[1]), kv[0])):
        shown = ", ".join(names[:names_per_reason]) + (", ..." if len(names) > names_per_reason else "")
        parts.append(f"{len(names)} {reason} ({shown})")
    return f"{len(items)} skipped: " + ", ".join(parts)


def _short_name(source: str) -> str:
    text = str(source)
    path, sep, tune = text.partition("#")
    return Path(path).name + (sep + tune if sep else "")


def _progress(total: int, desc: str):
    """A progress bar whose files/s is the whole run's average (files done / time since the start): workers report
    files in batches, and a moving average of batch arrivals would overstate or understate the throughput."""
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="files", file=sys.stderr, disable=None, leave=False, dynamic_ncols=True,
                smoothing=0)


def _worth_a_pool(done: int, left: int, seconds: float, workers: int, left_bytes: int = 0) -> int:
    """How many worker processes to read the `left` files with, after `done` files took `seconds` here (0: go on
    in this process): none while the files left would take less than POOL_AFTER_SECONDS in-process. Files left
    holding POOL_BYTES or more (MIDI files read at about 60 MB/s in one process) go to workers at once, unprobed."""
    if workers < 2 or left < 2 * MIN_FILES_PER_WORKER:
        return 0
    if left_bytes < POOL_BYTES:
        if seconds < PROBE_SECONDS or not done:
            return 0
        if seconds / done * left < POOL_AFTER_SECONDS:
            return 0
    n = min(workers, left // MIN_FILES_PER_WORKER)
    return n if n > 1 else 0


def read_corpus(
    corpus: Corpus,
    notes: bool,
    cache: Cache,
    workers: int = 0,
    max_pieces: int | None = None,
    log: Callable[[str], Any] | None = None,
    reader=None,
    ahead=None,
) -> ReadCorpus:
    """Read (or find in the cache) every file of `corpus`, in order, until `max_pieces` pieces if given.

    `notes` False lets ABC readers keep only the text (for representations that read `piece.abc`). A whole
    corpus read before is found through one index entry (keyed by all its files' digests), so a warm run opens
    one cache file instead of one per music file. `reader`: the representation, when it reads some file types
    itself (`input_suffixes`); those files are cached under its name and config. `ahead`: a representation with
    `work_ahead(piece)` and `take_ahead(piece, work)` (MIDI words), whose vocabulary-free work on the pieces the
    reader workers do as they read (kept for the pieces this run keeps in memory).
    """
    version = reader_version()
    result = ReadCorpus(corpus, notes, [], [], list(corpus.skipped), [])
    paths = list(corpus.files)
    if max_pieces is None:
        entries = _entries(paths, notes, version, result, reader, workers)
        index_key = make_key("index", version, bool(notes), [e.key for e in entries])
        index = cache.load_json("index", index_key)
        if index is not None and len(index) == len(entries):
            for e, meta in zip(entries, index):
                e.meta = dict(meta, light=True)
        else:
            for e in entries:
                e.meta = cache.load_piece_meta(e.key)
            result.read_now += _read_missing([e for e in entries if e.meta is None], notes, cache, workers, corpus.name,
                                          ahead)
            _hash_possible_copies(entries, cache, notes)  # into the index: a warm run compares without the notes
            try:
                cache.save_json("index", index_key, [_light(e.meta) for e in entries])
            except OSError:
                pass
        _collect(entries, result)
    else:
        pos = 0
        while pos < len(paths) and len(result.refs) < max_pieces:
            # read about as many files as should give the pieces still wanted, judging by those read so far
            per_file = len(result.refs) / len(result.files) if result.files else 0.0
            wanted = max_pieces - len(result.refs)
            chunk = max(workers, 1) if not result.files else math.ceil(wanted / max(per_file, 1e-9))
            batch = paths[pos : pos + max(chunk, workers, 1)]
            pos += len(batch)
            entries = _entries(batch, notes, version, result, reader, workers)
            for e in entries:
                e.meta = cache.load_piece_meta(e.key)
            result.read_now += _read_missing([e for e in entries if e.meta is None], notes, cache, workers, corpus.name,
                                          ahead)
            _collect(entries, result)
        result.truncated = len(result.refs) > max_pieces or pos < len(paths)
        del result.refs[max_pieces:]
    for e in result.files:
        e.data = None  # found in the cache, or read: the bytes are not needed again
    if log is not None:
        log(result.summary_line())
    return result


def _digests(paths: list[Path], reader, threads: int):
    """(path, digest, the MIDI file's bytes or None, size in bytes, or the OSError) for each path, in order: MIDI
    files' bytes are kept (for their reader) up to KEEP_READ_BYTES in all. With `threads` > 1 and many files, that
    many threads hash them (hashlib and file reads let go of the GIL), a window of files at a time."""
    budget = KEEP_READ_BYTES

    def one(p: Path):
        try:
            if budget > 0 and p.suffix.lower() in (".mid", ".midi") and not reads_itself(reader, p):
                digest, data, size = file_digest_and_bytes(p, budget)  # the bytes go to the reader
                return p, digest, data, size
            digest, _, size = file_digest_and_bytes(p, -1)
            return p, digest, None, size
        except OSError as exc:
            return p, None, None, exc

    if threads < 2 or len(paths) < DIGEST_THREADS_FROM:
        for p in paths:
            found = one(p)
            budget -= len(found[2]) if found[2] is not None else 0
            yield found
        return
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=threads, thread_name_prefix="fractalmusic-digest") as pool:
        for at in range(0, len(paths), DIGEST_WINDOW):
            for found in pool.map(one, paths[at : at + DIGEST_WINDOW]):
                p, digest, data, size = found
                if data is not None:  # bytes read beyond the budget (by threads ahead of it) are let go
                    if len(data) > budget:
                        data = None
                    else:
                        budget -= len(data)
                yield p, digest, data, size


def _entries(paths: list[Path], notes: bool, version: str, result: ReadCorpus, reader=None,
             threads: int = 0) -> list[FileEntry]:
    """Entries for `paths`, less unreadable files and byte-identical copies of files already seen."""
    out = []
    for p, digest, data, size in _digests(paths, reader, threads):
        if isinstance(size, OSError):
            result.skipped_files.append((str(p), size.strerror or "cannot be read"))
            continue
        if digest in result.digests:
            result.duplicates.append((str(p), result.digests[digest]))
            continue
        result.digests[digest] = str(p)
        if reads_itself(reader, p):
            from fractalmusic.config import config_to_dict

            key = make_key("pieces", version, digest, "read by", reader.name, config_to_dict(reader.config))
            out.append(FileEntry(p, digest, key, reader=reader, size=size))
            continue
        is_abc = p.suffix.lower() == ".abc"
        out.append(FileEntry(p, digest, make_key("pieces", version, digest, bool(notes) if is_abc else True),
                             data=data, size=size))
    return out


def _light(meta: dict[str, Any]) -> dict[str, Any]:
    """A file entry's meta less the pieces' text and facts: what splitting and statistics need."""
    rows = [{"n": r["n"], "suffix": r.get("suffix", ""), "summary": r["summary"]} for r in meta.get("pieces", [])]
    return {"error": meta.get("error"), "tune_errors": meta.get("tune_errors", []), "pieces": rows}


def _collect(entries: list[FileEntry], result: ReadCorpus) -> None:
    for e in entries:
        result.files.append(e)
        assert e.meta is not None
        if e.error:
            result.skipped_files.append((str(e.path), _repath(e.error, e.path)))
            continue
        for suffix, reason in e.meta.get("tune_errors", []):
            source = f"{e.path}{suffix}" if suffix.startswith("#") else suffix
            result.skipped_pieces.append((source, _repath(reason, e.path)))
        for i, row in enumerate(e.meta["pieces"]):
            source = f"{e.path}{row.get('suffix', '')}"
            result.refs.append(PieceRef(e, i, source, f"{e.digest}:{i}", row["summary"]))


def _reader_args(e: FileEntry) -> tuple:
    """The extra arguments of `read_file` for an entry: its reader, when the corpus names one."""
    return (e.reader,) if e.reader is not None else ()


def _read_missing(entries: list[FileEntry], notes: bool, cache: Cache, workers: int, name: str,
                  ahead=None) -> int:
    """Read the files the cache did not have (in `workers` processes), store them; returns how many. Reader
    workers also do `ahead`'s `work_ahead` on the pieces (see `read_corpus`)."""
    if not entries:
        return 0
    bar = _progress(len(entries), f"reading {name}")
    kept_notes = 0

    def finish(e: FileEntry, outcome, made: dict | None = None, work: list | None = None) -> None:
        pieces, tune_errors, error = outcome  # a reader worker sends the entry's meta (`made`) with the pieces
        meta, arr = _entry_meta(e.path, pieces, tune_errors, error, made)
        try:
            cache.save_pieces(e.key, meta, arr)
        except OSError:  # a full or read-only cache folder must not stop training
            pass
        e.meta = meta
        # keep what was just read for the rest of this run while it is small; past KEEP_LOADED_NOTES notes the
        # cache serves it again on demand, so reading a corpus larger than memory does not hold it all
        nonlocal kept_notes
        if pieces and (not cache.enabled or kept_notes + len(arr) <= KEEP_LOADED_NOTES):
            e.loaded = pieces
            kept_notes += len(arr)
            if work is not None and len(work) == len(pieces):  # what a reader worker worked out ahead
                for piece, done in zip(pieces, work):
                    ahead.take_ahead(piece, done)
        else:
            e.loaded = None
        bar.update(1)

    def read_here(e: FileEntry) -> None:
        data, e.data = e.data, None
        finish(e, read_file(str(e.path), notes, *_reader_args(e), data=data))

    try:
        todo = list(entries)
        n_workers, done, started = 0, 0, time.perf_counter()
        left_bytes = sum(e.size for e in todo)
        if workers > 1:  # in this process first: a small job ends before a pool would have started
            while done < len(todo):
                n_workers = _worth_a_pool(done, len(todo) - done, time.perf_counter() - started, workers, left_bytes)
                if n_workers:
                    break
                left_bytes -= todo[done].size
                read_here(todo[done])
                done += 1
            todo = todo[done:]
        if n_workers > 1:
            for e in todo:
                e.data = None  # workers read their files themselves (sending the bytes would cost more)
            per_task = max(1, min(16, len(todo) // (n_workers * 8)))
            batches = [todo[i : i + per_task] for i in range(0, len(todo), per_task)]
            try:
                with ProcessPoolExecutor(max_workers=n_workers, initializer=_start_worker,
                                         initargs=(os.getpid(), ahead if n_workers >= AHEAD_WORKERS else None)
                                         ) as pool:  # workers die with this process
                    try:
                        with sigint_held():  # workers fork while submitting: none may see Ctrl-C before it ignores it
                            futures = {
                                pool.submit(
                                    _read_batch_in_worker,
                                    [(str(e.path), _reader_args(e)) for e in batch],
                                    notes,
                                ): batch
                                for batch in batches
                            }
                        for fut in as_completed(futures):
                            for e, (*outcome, made, work) in zip(futures[fut], fut.result()):
                                finish(e, outcome, made, work)
                    except (KeyboardInterrupt, SystemExit):  # Ctrl-C: stop now, not after every queued file
                        stop_pool(pool)
                        raise
                todo = []
            except BrokenProcessPool:  # a worker died (a crash inside a parser, or memory): go on in-process
                todo = [e for e in todo if e.meta is None]
        for e in todo:
            read_here(e)
    finally:
        bar.close()
        cache.flush()  # the entries gathered so far, also when interrupted: the next run starts from them
    return len(entries)
