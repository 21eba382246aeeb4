"""The on-disk cache: parsed pieces, encoded arrays, fitted vocabularies and memory-mappable packs.

Nothing here is pickled: arrays are `.npy`/`.npz` (loaded with `allow_pickle=False`), everything else JSON.
Every write goes to a temporary file in the same folder and is renamed into place, so a crash or a second process
writing the same entry never leaves half a file; an entry that cannot be read is treated as missing.

Layout under the cache root (`--cache-dir`, `$FRACTALMUSIC_CACHE_DIR` or `~/.cache/fractalmusic`):

    data-v1/pieces/ab/<key>.npz    one music file: its pieces' notes + JSON meta (or the reason it failed)
    data-v1/encoded/ab/<key>.npz   the same file's pieces encoded by one representation state
    data-v1/vocab/<key>.json       a representation state fitted on one training set
    data-v1/packs/<key>.<k>.npy    one split's encoded pieces end to end, in shards of about SHARD_BYTES (256 MB)
                                   that never split a piece (memory-mapped with --no-cache-in-memory)
    data-v1/packs/<key>.json       the index: shard names and rows, piece lengths, pieces that could not be encoded
    data-v1/index/<key>.json       a whole corpus's piece list (the JSON parts of its files' entries, less text)

Every entry is written as soon as it is made (a file's pieces when it is read, its encoding when it is encoded,
each pack shard when full, the pack's index last), so an interrupted preparation keeps what it did: the next run
reads and encodes only what is missing, and a pack whose index was never written is rebuilt from the per-file
encodings.

Keys are sha256 digests of what the entry depends on: the file's bytes, the reader version, whether ABC was
parsed into notes, and for encodings the representation's fingerprint.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import zipfile
from collections import Counter
from pathlib import Path
from typing import Any, Callable

import numpy as np

from fractalmusic.files import atomic_write

from fractalmusic.piece import NOTE_DTYPE, Piece

CACHE_LAYOUT = "data-v1"
SHARD_BYTES = 256 << 20  # a pack shard is closed at the first piece boundary past this size


def file_digest(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """sha256 of a file's bytes (hex)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            block = f.read(chunk)
            if not block:
                break
            h.update(block)
    return h.hexdigest()


def make_key(*parts: Any) -> str:
    """A cache key: sha256 of the JSON form of `parts` (sorted keys, so dict order never matters)."""
    blob = json.dumps(parts, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


def _atomic(path: Path, write: Callable[[Any], None]) -> None:
    atomic_write(path, write)  # not fsynced: the cache can always be rebuilt


def _contiguous(a) -> np.ndarray:
    a = np.asarray(a)
    return a if a.flags.c_contiguous else a.copy(order="C")


def _write_npz(f, arrays: dict[str, Any]) -> None:
    """`np.savez(f, **arrays)`'s format (an uncompressed zip of `.npy` members: `np.load` reads it), with each array's
    bytes handed to the zip as they are. np.savez copies every array through numpy's chunked iterator for zip members,
    which took 1.2 ms of CPU for a 0.5 MB piano roll here, three times the rest of the write."""
    with zipfile.ZipFile(f, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as zf:
        for name, value in arrays.items():
            a = _contiguous(value)
            head = io.BytesIO()
            np.lib.format.write_array_header_1_0(head, np.lib.format.header_data_from_array_1_0(a))
            with zf.open(f"{name}.npy", "w", force_zip64=True) as member:
                member.write(head.getbuffer())
                member.write(a.reshape(-1).view(np.uint8))


def _write_npy(f, blocks: list[np.ndarray]) -> None:
    """One `.npy` array made of `blocks` stacked on their first axis, written block by block (no joined copy)."""
    first = blocks[0]
    rows = sum(int(b.shape[0]) for b in blocks)
    head = {"descr": np.lib.format.dtype_to_descr(first.dtype), "fortran_order": False,
            "shape": (rows, *first.shape[1:])}
    np.lib.format.write_array_header_1_0(f, head)
    for b in blocks:
        f.write(_contiguous(b).reshape(-1).view(np.uint8))


def _jsonable(value: Any) -> Any:
    """`value` if JSON can hold it, else its JSON-able parts (dicts and lists kept, other objects as text)."""
    try:
        json.dumps(value)
        return value
    except (TypeError, ValueError):
        pass
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return str(value)


def piece_summary(piece: Piece) -> dict[str, Any]:
    """What `fmusic data stats` reports per piece, kept in the cache so a warm run loads no notes."""
    pr = piece.pitch_range
    return {
        "n_notes": piece.n_notes,
        "pitch_min": pr[0] if pr else None,
        "pitch_max": pr[1] if pr else None,
        "end_beat": piece.end_beat,
        "has_abc": piece.abc is not None,
    }


class Cache:
    """Cache entries under `root`; `Cache(None)` is a cache that never hits and never writes (--no-cache)."""

    def __init__(self, root: str | os.PathLike | None):
        self.root = Path(root) / CACHE_LAYOUT if root is not None else None
        self.hits: Counter = Counter()
        self.misses: Counter = Counter()

    @property
    def enabled(self) -> bool:
        return self.root is not None

    def path(self, kind: str, key: str, suffix: str) -> Path:
        assert self.root is not None
        if kind in ("pieces", "encoded"):
            return self.root / kind / key[:2] / f"{key}{suffix}"
        return self.root / kind / f"{key}{suffix}"

    def _count(self, kind: str, hit: bool) -> None:
        (self.hits if hit else self.misses)[kind] += 1

    def _discard(self, path: Path) -> None:
        try:
            path.unlink()
        except OSError:
            pass

    # ------------------------------------------------------------------ parsed pieces (one entry per file)
    def load_piece_meta(self, key: str) -> dict[str, Any] | None:
        """The JSON part of a file's entry (pieces' facts and summaries, or the failure), without notes."""
        if not self.enabled:
            self._count("pieces", False)
            return None
        path = self.path("pieces", key, ".npz")
        try:
            with np.load(path, allow_pickle=False) as z:
                meta = json.loads(str(z["meta"]))
        except FileNotFoundError:
            self._count("pieces", False)
            return None
        except Exception:  # unreadable (a crash before the rename never leaves one, a full disk might)
            self._discard(path)
            self._count("pieces", False)
            return None
        self._count("pieces", True)
        return meta

    def load_notes(self, key: str) -> np.ndarray | None:
        if not self.enabled:
            return None
        path = self.path("pieces", key, ".npz")
        try:
            with np.load(path, allow_pickle=False) as z:
                notes = z["notes"]
        except Exception:
            return None
        return notes if notes.dtype == NOTE_DTYPE else notes.astype(NOTE_DTYPE)

    def save_pieces(self, key: str, meta: dict[str, Any], notes: np.ndarray) -> None:
        if not self.enabled:
            return
        payload = {"meta": np.array(json.dumps(_jsonable(meta))), "notes": np.asarray(notes, dtype=NOTE_DTYPE)}
        _atomic(self.path("pieces", key, ".npz"), lambda f: _write_npz(f, payload))

    # ------------------------------------------------------------------ encoded arrays (one entry per file)
    def load_encoded(self, key: str, with_data: bool = True) -> dict[str, Any] | None:
        """{"lengths", "meta", and "data" unless with_data is False}; None on a miss."""
        if not self.enabled:
            self._count("encoded", False)
            return None
        path = self.path("encoded", key, ".npz")
        try:
            with np.load(path, allow_pickle=False) as z:
                out = {"lengths": z["lengths"].astype(np.int64), "meta": json.loads(str(z["meta"]))}
                if with_data:
                    out["data"] = z["data"]
        except FileNotFoundError:
            self._count("encoded", False)
            return None
        except Exception:
            self._discard(path)
            self._count("encoded", False)
            return None
        self._count("encoded", True)
        return out

    def save_encoded(self, key: str, data: np.ndarray, lengths: np.ndarray, meta: dict[str, Any]) -> None:
        if not self.enabled:
            return
        payload = {
            "data": data,
            "lengths": np.asarray(lengths, dtype=np.int64),
            "meta": np.array(json.dumps(_jsonable(meta))),
        }
        _atomic(self.path("encoded", key, ".npz"), lambda f: _write_npz(f, payload))

    # ------------------------------------------------------------------ JSON documents (fitted vocabularies)
    def load_json(self, kind: str, key: str, count: bool = True) -> Any | None:
        if not self.enabled:
            return None
        path = self.path(kind, key, ".json")
        try:
            value = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            value = None
        except Exception:
            self._discard(path)
            value = None
        if count:
            self._count(kind, value is not None)
        return value

    def save_json(self, kind: str, key: str, value: Any) -> None:
        if not self.enabled:
            return
        blob = json.dumps(_jsonable(value), sort_keys=True).encode("utf-8")
        _atomic(self.path(kind, key, ".json"), lambda f: f.write(blob))

    # ------------------------------------------------------------------ whole arrays (packs of one split)
    def load_array(self, kind: str, key: str, mmap: bool = False) -> np.ndarray | None:
        """A `.npy` entry, read into memory or memory-mapped read-only; None on a miss."""
        if not self.enabled:
            return None
        path = self.path(kind, key, ".npy")
        try:
            arr = np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
        except FileNotFoundError:
            self._count(kind, False)
            return None
        except Exception:
            self._discard(path)
            self._count(kind, False)
            return None
        self._count(kind, True)
        return arr

    def save_array(self, kind: str, key: str, data: np.ndarray) -> None:
        if not self.enabled:
            return
        data = np.ascontiguousarray(data)
        _atomic(self.path(kind, key, ".npy"), lambda f: np.save(f, data, allow_pickle=False))


class PackWriter:
    """Writes one split's encoded pieces into pack shards (`packs/<key>.<k>.npy`) as they come, so that a corpus
    larger than memory is packed holding at most one shard (plus one piece) in memory. `finish()` -> the shards'
    index: [{"name": file name, "rows": rows, "pieces": pieces}]. Each shard is written atomically."""

    def __init__(self, cache: Cache, key: str, shard_bytes: int | None = None):
        self.cache = cache
        self.key = key
        self.shard_bytes = int(SHARD_BYTES if shard_bytes is None else shard_bytes)
        self.shards: list[dict[str, Any]] = []
        self._blocks: list[np.ndarray] = []
        self._bytes = 0

    def add(self, block: np.ndarray) -> None:
        self._blocks.append(_contiguous(block))
        self._bytes += block.nbytes
        if self._bytes >= self.shard_bytes:
            self._flush()

    def _flush(self) -> None:
        if not self._blocks:
            return
        blocks = self._blocks
        name = f"{self.key}.{len(self.shards)}.npy"
        _atomic(self.cache.root / "packs" / name, lambda f: _write_npy(f, blocks))
        self.shards.append({"name": name, "rows": sum(int(b.shape[0]) for b in blocks), "pieces": len(blocks)})
        self._blocks, self._bytes = [], 0

    def finish(self) -> list[dict[str, Any]]:
        self._flush()
        return self.shards


def shard_paths(cache: Cache, shards: list[dict[str, Any]]) -> list[Path] | None:
    """The shard files of a pack index, or None when one is missing or has another number of rows."""
    paths = []
    for shard in shards:
        path = cache.root / "packs" / str(shard["name"])
        try:
            rows = np.load(path, mmap_mode="r", allow_pickle=False).shape[0]
        except Exception:
            return None
        if rows != int(shard["rows"]):
            return None
        paths.append(path)
    return paths
