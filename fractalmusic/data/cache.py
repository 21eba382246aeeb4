"""The on-disk cache: parsed pieces, encoded arrays, fitted vocabularies and memory-mappable packs.

Nothing here is pickled: arrays are `.npy` files (loaded with `allow_pickle=False`) or raw bytes in a bundle
(described by JSON), everything else JSON.
Every write goes to a temporary file in the same folder and is renamed into place, so a crash or a second process
writing the same entry never leaves half a file; an entry that cannot be read is treated as missing.

Layout under the cache root (`--cache-dir`, `$FRACTALMUSIC_CACHE_DIR` or `~/.cache/fractalmusic`):

    data-v2/pieces/<b>.bundle      parsed music files, up to BUNDLE_FILES to a bundle: each file's pieces' notes
                                   + JSON meta (or the reason it failed), found by the file's key
    data-v2/encoded/<b>.bundle     those files' pieces encoded by one representation state: the arrays, or (a file
                                   of one piece that went into a pack) where its rows lie in a pack shard
    data-v2/vocab/<key>.json       a representation state fitted on one training set
    data-v2/packs/<key>.<w>.<k>.npy one split's encoded pieces end to end, in shards of about SHARD_BYTES (256 MB)
                                   that never split a piece (memory-mapped with --no-cache-in-memory); <w> tells
                                   apart the writers of one pack (an interrupted one's shards stay, still referred to)
    data-v2/packs/<key>.json       the index: shard names and rows, piece lengths, pieces that could not be encoded
    data-v2/index/<key>.json       a whole corpus's piece list (the JSON parts of its files' entries, less text)

Per-file entries are bundled because one small file per music file cost more than reading the MIDI file did (about
1 ms of CPU each for the temporary file, the rename and the zip, twice per file). A bundle is a small binary
file (see `_write_bundle`): JSON for the keys and metas, then the arrays' raw bytes, read back with `np.fromfile` (a
memory mapping per array was tried: CPython holds a file descriptor for each, too many on a large corpus). They are gathered in memory and
written as one bundle every BUNDLE_FILES files or BUNDLE_BYTES bytes, and whatever is gathered when preparation
stops - finished, failed or interrupted by Ctrl-C - is written then (`Cache.flush`), with the pack shard being
filled; so an interrupted preparation keeps what it did: the next run reads and encodes only what is missing, and
a pack whose index was never written is rebuilt from the per-file encodings. Only a process killed outright loses
the entries not yet written (at most one bundle's worth). A bundle is found by its files' keys through a catalog
made on the first look-up that the corpus index does not answer (every bundle's key list, read once per run).

Keys are sha256 digests of what the entry depends on: the file's bytes, the reader version, whether ABC was
parsed into notes, and for encodings the representation's fingerprint.
"""
from __future__ import annotations

import hashlib
import json
import os
from collections import Counter
from pathlib import Path
from typing import Any, Callable

import numpy as np

from fractalmusic.files import atomic_write

from fractalmusic.piece import NOTE_DTYPE, Piece

CACHE_LAYOUT = "data-v2"  # v2: per-file entries in bundles, encodings that point into pack shards
SHARD_BYTES = 256 << 20  # a pack shard is closed at the first piece boundary past this size
BUNDLE_FILES = 256  # per-file entries gathered before a bundle is written ...
BUNDLE_BYTES = 32 << 20  # ... or once their arrays hold this many bytes


def file_digest(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """sha256 of a file's bytes (hex)."""
    return file_digest_and_bytes(path, -1, chunk)[0]


def file_digest_and_bytes(path: str | os.PathLike, keep_up_to: int,
                          chunk: int = 1 << 20) -> tuple[str, bytes | None, int]:
    """(`file_digest`, the file's bytes when it holds at most `keep_up_to` of them, else None, the number of bytes
    hashed): preparation hashes every file to find it in the cache, and hands the bytes to the reader instead of
    opening the file again."""
    size = 0
    with open(path, "rb") as f:
        h = hashlib.sha256()
        if os.fstat(f.fileno()).st_size <= keep_up_to:
            data = f.read()
            if len(data) <= keep_up_to:  # it may have grown since
                return hashlib.sha256(data).hexdigest(), data, len(data)
            h.update(data)
            size = len(data)
        while True:
            block = f.read(chunk)
            if not block:
                break
            h.update(block)
            size += len(block)
    return h.hexdigest(), None, size


def make_key(*parts: Any) -> str:
    """A cache key: sha256 of the JSON form of `parts` (sorted keys, so dict order never matters)."""
    blob = json.dumps(parts, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


def _atomic(path: Path, write: Callable[[Any], None]) -> None:
    atomic_write(path, write)  # not fsynced: the cache can always be rebuilt


def _contiguous(a) -> np.ndarray:
    a = np.asarray(a)
    return a if a.flags.c_contiguous else a.copy(order="C")


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


def _json_text(value: Any, **kw) -> str:
    """`value` as JSON; what JSON cannot hold is written by `_jsonable` (one pass when nothing needs it)."""
    try:
        return json.dumps(value, **kw)
    except (TypeError, ValueError):
        return json.dumps(_jsonable(value), **kw)


BUNDLE_MAGIC = b"\x93FMBNDL1"  # then two little-endian uint64: the lengths of the keys' JSON and the contents' JSON
_ALIGN = 64
_DESCR: dict[np.dtype, Any] = {}  # a dtype's JSON form, made once (a structured dtype's takes numpy a while)


def _descr(dtype: np.dtype) -> Any:
    if dtype not in _DESCR:
        _DESCR[dtype] = dtype.str if dtype.fields is None else [[name, dtype.fields[name][0].str] for name in dtype.names]
    return _DESCR[dtype]


def _dtype_of(descr: Any) -> np.dtype:
    return np.dtype(descr) if isinstance(descr, str) else np.dtype([(str(n), str(t)) for n, t in descr])


def _write_bundle(f, keys: list[str], metas: list[Any], arrays: list[dict[str, np.ndarray]]) -> None:
    """A bundle file: BUNDLE_MAGIC, the two lengths, the keys (JSON), the contents (JSON: each entry's meta and
    where its arrays lie: [entry, name, offset, dtype, shape]), then the arrays' bytes, each at a multiple of 64.
    Written straight from the arrays (no zip, no checksum pass over them: a bundle is renamed into place whole)."""
    head = _json_text(keys, separators=(",", ":")).encode("utf-8")
    table, offset = [], 0
    for i, entry in enumerate(arrays):
        for name, a in entry.items():
            table.append([i, name, offset, _descr(a.dtype), list(a.shape)])
            offset += -(-a.nbytes // _ALIGN) * _ALIGN
    body = _json_text({"toc": metas, "arrays": table}, separators=(",", ":")).encode("utf-8")
    start = len(BUNDLE_MAGIC) + 16 + len(head) + len(body)
    pad = -start % _ALIGN
    f.write(BUNDLE_MAGIC + len(head).to_bytes(8, "little") + (len(body) + pad).to_bytes(8, "little"))
    f.write(head)
    f.write(body + b" " * pad)  # JSON ignores trailing blanks
    for entry in arrays:
        for a in entry.values():
            f.write(a.reshape(-1).view(np.uint8))
            f.write(b"\0" * (-a.nbytes % _ALIGN))


def _bundle_head(f) -> tuple[list[str], int]:
    """(keys, length of the contents' JSON) of an open bundle file, positioned at its contents."""
    lead = f.read(len(BUNDLE_MAGIC) + 16)
    if len(lead) != len(BUNDLE_MAGIC) + 16 or not lead.startswith(BUNDLE_MAGIC):
        raise ValueError("not a bundle")
    n_keys = int.from_bytes(lead[len(BUNDLE_MAGIC) : -8], "little")
    n_body = int.from_bytes(lead[-8:], "little")
    return json.loads(f.read(n_keys)), n_body


class _OpenBundle:
    """One bundle's contents, read once: entry metas by key, and its arrays read from the file on demand."""

    def __init__(self, path: Path):
        self.path = path
        with open(path, "rb") as f:
            keys, n_body = _bundle_head(f)
            body = json.loads(f.read(n_body))
            self.data_start = f.tell()
        self.entries = {str(k): (i, m) for i, (k, m) in enumerate(zip(keys, body["toc"]))}
        self.arrays = {(int(i), str(name)): (int(off), _dtype_of(d), tuple(shape))
                       for i, name, off, d, shape in body["arrays"]}

    def array(self, i: int, name: str) -> np.ndarray:
        """One entry's array, read into an array of its own. Not a memory mapping: CPython keeps a file
        descriptor open for every mapping, so a run holding the notes of many files would run out of descriptors
        (and of the kernel's map count) on a large corpus."""
        offset, dtype, shape = self.arrays[(i, name)]
        count = int(np.prod(shape, dtype=np.int64))
        out = np.fromfile(self.path, dtype=dtype, count=count, offset=self.data_start + offset)
        if out.size != count:
            raise ValueError(f"bundle {self.path.name} is cut short")
        return out.reshape(shape)


class _Bundles:
    """The per-file entries of one kind ("pieces" or "encoded"): many to a bundle file `<kind>/<name>.bundle`
    (see `_write_bundle`). Entries are gathered in memory and written as a bundle by `flush` (or when enough are);
    a look-up finds its bundle through a catalog of every bundle's keys, made on the first look-up."""

    def __init__(self, root: Path, kind: str):
        self.folder = root / kind
        self.pending: dict[str, tuple[Any, dict[str, np.ndarray]]] = {}
        self.pending_bytes = 0
        self.catalog: dict[str, Path] | None = None  # key -> bundle file
        self.opened: _OpenBundle | None = None  # the last bundle read

    def _scan(self) -> dict[str, Path]:
        catalog: dict[str, Path] = {}
        found = []
        try:
            for path in self.folder.glob("*.bundle"):
                try:
                    found.append((path.stat().st_mtime, path))
                except OSError:  # gone meanwhile (another process's temporary name is never *.bundle)
                    pass
        except OSError:
            pass
        for _, path in sorted(found):  # oldest first: a key in two bundles is served by the newer one
            try:
                with open(path, "rb") as f:
                    keys, _ = _bundle_head(f)
            except FileNotFoundError:
                continue
            except Exception:  # unreadable (a full disk, say): as if missing
                _unlink(path)
                continue
            for key in keys:
                catalog[str(key)] = path
        return catalog

    def get(self, key: str) -> tuple[Any, Callable[[str], np.ndarray]] | None:
        """(meta, array getter) of an entry, or None. The getter raises KeyError for an array the entry lacks."""
        if key in self.pending:
            meta, arrays = self.pending[key]
            return meta, arrays.__getitem__
        if self.catalog is None:
            self.catalog = self._scan()
        path = self.catalog.get(key)
        if path is None:
            return None
        try:
            if self.opened is None or self.opened.path != path:
                self.opened = None
                self.opened = _OpenBundle(path)
            i, meta = self.opened.entries[key]
        except Exception as exc:  # gone since the catalog was made, or unreadable: its entries are all missing
            self.catalog = {k: p for k, p in self.catalog.items() if p != path}
            if not isinstance(exc, (OSError, KeyError)):
                _unlink(path)
            return None
        bundle = self.opened

        def array(name: str) -> np.ndarray:
            if (i, name) not in bundle.arrays:
                raise KeyError(name)
            return bundle.array(i, name)

        return meta, array

    def put(self, key: str, meta: Any, arrays: dict[str, np.ndarray]) -> None:
        self.pending.pop(key, None)
        self.pending[key] = (meta, {name: _contiguous(a) for name, a in arrays.items()})
        self.pending_bytes += sum(a.nbytes for a in arrays.values())
        if len(self.pending) >= BUNDLE_FILES or self.pending_bytes >= BUNDLE_BYTES:
            try:
                self.flush()
            except OSError:  # a full or read-only cache folder must not stop preparation: those entries are lost
                pass

    def flush(self) -> None:
        """Write the gathered entries as one bundle (named by their keys, so two processes that gathered the same
        entries write the same file), and hand them to the catalog."""
        if not self.pending:
            return
        pending, self.pending, self.pending_bytes = self.pending, {}, 0
        keys = list(pending)
        metas = [m for m, _ in pending.values()]
        arrays = [a for _, a in pending.values()]
        path = self.folder / f"{make_key('bundle', keys)}.bundle"
        _atomic(path, lambda f: _write_bundle(f, keys, metas, arrays))
        if self.catalog is not None:
            self.catalog.update(dict.fromkeys(keys, path))
        if self.opened is not None and self.opened.path == path:
            self.opened = None

    def close(self) -> None:
        self.opened = None


def _unlink(path: Path) -> None:
    try:
        path.unlink()
    except OSError:
        pass


class Cache:
    """Cache entries under `root`; `Cache(None)` is a cache that never hits and never writes (--no-cache).

    Per-file entries (parsed pieces, encodings) are gathered and written in bundles: call `flush()` when a stage
    ends, in a `finally`, so that an interrupted preparation keeps them."""

    def __init__(self, root: str | os.PathLike | None):
        self.root = Path(root) / CACHE_LAYOUT if root is not None else None
        self.hits: Counter = Counter()
        self.misses: Counter = Counter()
        self._bundles: dict[str, _Bundles] = {}
        self._shards: dict[str, np.ndarray] = {}  # pack shards that encodings point into, memory-mapped once

    @property
    def enabled(self) -> bool:
        return self.root is not None

    def path(self, kind: str, key: str, suffix: str) -> Path:
        assert self.root is not None
        return self.root / kind / f"{key}{suffix}"

    def _count(self, kind: str, hit: bool) -> None:
        (self.hits if hit else self.misses)[kind] += 1

    def _bundle(self, kind: str) -> _Bundles:
        assert self.root is not None
        if kind not in self._bundles:
            self._bundles[kind] = _Bundles(self.root, kind)
        return self._bundles[kind]

    def flush(self) -> None:
        """Write every per-file entry gathered so far (a full or read-only cache folder is let be)."""
        for bundles in self._bundles.values():
            try:
                bundles.flush()
            except OSError:
                pass

    def close(self) -> None:
        self.flush()
        for bundles in self._bundles.values():
            bundles.close()
        self._shards.clear()

    # ------------------------------------------------------------------ parsed pieces (one entry per file)
    def load_piece_meta(self, key: str) -> dict[str, Any] | None:
        """The JSON part of a file's entry (pieces' facts and summaries, or the failure), without notes."""
        found = self._bundle("pieces").get(key) if self.enabled else None
        self._count("pieces", found is not None)
        return None if found is None else found[0]

    def load_notes(self, key: str) -> np.ndarray | None:
        found = self._bundle("pieces").get(key) if self.enabled else None
        if found is None:
            return None
        try:
            notes = found[1]("notes")
        except Exception:
            return None
        if notes.dtype != NOTE_DTYPE:
            return notes.astype(NOTE_DTYPE)
        # an array of its own: read from the bundle, or a copy of the one gathered to be written
        return notes.copy() if key in self._bundle("pieces").pending else notes

    def save_pieces(self, key: str, meta: dict[str, Any], notes: np.ndarray) -> None:
        if not self.enabled:
            return
        self._bundle("pieces").put(key, meta, {"notes": np.asarray(notes, dtype=NOTE_DTYPE)})

    # ------------------------------------------------------------------ encoded arrays (one entry per file)
    def load_encoded(self, key: str, with_data: bool = True) -> dict[str, Any] | None:
        """{"lengths", "meta", and "data" unless with_data is False}; None on a miss."""
        found = self._bundle("encoded").get(key) if self.enabled else None
        out = None
        if found is not None:
            meta, array = found
            out = {"lengths": np.asarray(meta["lengths"], dtype=np.int64), "meta": meta["meta"]}
            if with_data:
                try:
                    out["data"] = self._shard_rows(*meta["ref"]) if meta.get("ref") else array("data")
                except Exception:  # the shard it points into is gone (or shorter): encode again
                    out = None
        self._count("encoded", out is not None)
        return out

    def _shard_rows(self, name: str, start: int, rows: int) -> np.ndarray:
        if name not in self._shards:
            self._shards[name] = np.load(self.root / "packs" / name, mmap_mode="r", allow_pickle=False)
        block = self._shards[name][int(start) : int(start) + int(rows)]
        if block.shape[0] != int(rows):
            raise ValueError(f"pack shard {name} is shorter than an encoding says")
        return block

    def save_encoded(self, key: str, data: np.ndarray, lengths: np.ndarray, meta: dict[str, Any],
                     ref: tuple[str, int, int] | None = None) -> None:
        """A file's encoding: its arrays, or (`ref`: shard file name, first row, rows) where they lie in a pack."""
        if not self.enabled:
            return
        entry = {"lengths": [int(n) for n in lengths], "meta": meta}
        if ref is not None:
            entry["ref"] = [str(ref[0]), int(ref[1]), int(ref[2])]
        self._bundle("encoded").put(key, entry, {} if ref is not None else {"data": data})

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
            _unlink(path)
            value = None
        if count:
            self._count(kind, value is not None)
        return value

    def save_json(self, kind: str, key: str, value: Any) -> None:
        if not self.enabled:
            return
        blob = _json_text(value, sort_keys=True).encode("utf-8")
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
            _unlink(path)
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
    """Writes one split's encoded pieces into pack shards (`packs/<key>.<w>.<k>.npy`) as they come, so that a corpus
    larger than memory is packed holding at most one shard (plus one piece) in memory. `finish()` -> the shards'
    index: [{"name": file name, "rows": rows, "pieces": pieces}]. Each shard is written atomically.

    A block added with `encoded` (its file's encoding key, lengths and meta) gets a per-file encoding entry that
    points at its rows once its shard is written, instead of a second copy of its arrays. `stop()` (an interrupted
    preparation) writes the shard being filled, so those entries are kept; `<w>`, new for each writer, keeps a
    later writer of the same pack from writing over a shard that entries point into."""

    def __init__(self, cache: Cache, key: str, shard_bytes: int | None = None):
        self.cache = cache
        self.key = key
        self.writer = os.urandom(4).hex()
        self.shard_bytes = int(SHARD_BYTES if shard_bytes is None else shard_bytes)
        self.shards: list[dict[str, Any]] = []
        self._blocks: list[np.ndarray] = []
        self._encoded: list[tuple[int, int, tuple]] = []  # (first row in the shard, rows, (key, lengths, meta))
        self._rows = 0
        self._bytes = 0

    def add(self, block: np.ndarray, encoded: tuple[str, Any, dict[str, Any]] | None = None) -> None:
        block = _contiguous(block)
        if encoded is not None:
            self._encoded.append((self._rows, int(block.shape[0]), encoded))
        self._blocks.append(block)
        self._rows += int(block.shape[0])
        self._bytes += block.nbytes
        if self._bytes >= self.shard_bytes:
            self._flush()

    def _flush(self) -> None:
        if not self._blocks:
            return
        blocks = self._blocks
        name = f"{self.key}.{self.writer}.{len(self.shards)}.npy"
        _atomic(self.cache.root / "packs" / name, lambda f: _write_npy(f, blocks))
        self.shards.append({"name": name, "rows": self._rows, "pieces": len(blocks)})
        for start, rows, (key, lengths, meta) in self._encoded:
            self.cache.save_encoded(key, None, lengths, meta, ref=(name, start, rows))
        self._blocks, self._encoded, self._rows, self._bytes = [], [], 0, 0

    def finish(self) -> list[dict[str, Any]]:
        self._flush()
        return self.shards

    def stop(self) -> None:
        """Preparation stopped before the pack was finished: write what was encoded, for the next run to use."""
        if self._encoded:
            self._flush()


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
