"""From a DataConfig and a representation to datasets: resolve, read, split, fit, encode, store.

    train_ds, val_ds, report = build_datasets(DataConfig(data="chorales"), representation)

A warm cache makes this parse and load no music: the corpus index gives every piece's key and summary (enough
to split and to report), the vocabulary comes from the cache (keyed by the training pieces and the
representation's config), and each split's encoded pieces are one pack keyed by the representation's
fingerprint - so a warm run opens a handful of cache files whatever the corpus size. Behind those, parsed pieces
and encodings are cached per music file, so changing one file re-reads only that file.
`val_ds` is None when there is nothing to validate on.
"""
from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from fractalmusic.data.cache import Cache, PackWriter, make_key, shard_paths
from fractalmusic.data.config import DataConfig, default_corpus
from fractalmusic.data.corpora import resolve_corpus
from fractalmusic.data.dataset import (
    GridCropDataset,
    GridWindowDataset,
    PieceStore,
    TokenCropDataset,
    TokenWindowDataset,
    WholeTuneDataset,
)
from fractalmusic.data.prepare import FileEntry, PieceRef, ReadCorpus, _first_line, _short_name, group_reasons
from fractalmusic.data.prepare import content_of, copy_signature, older_objects_left_alone, read_corpus
from fractalmusic.data.prepare import load_readers, reader_version
from fractalmusic.data.split import split_indices
from fractalmusic.errors import ConfigError, DataError
from fractalmusic.limits import piece_problem, summary_problem


@dataclass
class DataReport:
    """What preparation found and built; `lines()` is what `fmusic data stats` prints."""

    corpus: str
    representation: str
    kind: str
    crop_length: int
    val_corpus: str | None = None
    read_lines: list[str] = field(default_factory=list)  # one `N read, M skipped` line per corpus
    skipped: list[tuple[str, str]] = field(default_factory=list)  # files, tunes and pieces left out, with why
    files: int = 0
    files_read: int = 0
    files_parsed: int = 0  # not found in the cache this run
    n_train: int = 0
    n_val: int = 0
    duplicates: int = 0  # pieces dropped before the split as copies of another piece
    train_units: int = 0  # tokens or steps
    val_units: int = 0
    train_items: int = 0  # per epoch
    val_items: int = 0
    vocab_size: int = 0
    vocabulary: str = "given"  # "given" (already fitted) | "cached" | "fitted"
    pitch_range: tuple[int, int] | None = None
    notes_per_beat: float | None = None
    notes_parsed: bool = True
    val_fraction: float = 0.0
    memory_mapped: bool = False
    cache_dir: str | None = None
    cache_hits: dict[str, int] = field(default_factory=dict)
    cache_misses: dict[str, int] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0
    item_kind: str = "crops"  # what a training item is, for messages

    @property
    def unit(self) -> str:
        return "steps" if self.kind == "grid" else "tokens"

    @property
    def val_empty(self) -> bool:
        return self.n_val == 0

    def as_dict(self) -> dict[str, Any]:
        from dataclasses import asdict

        return asdict(self)

    def val_line(self) -> str:
        """Why there is nothing to validate on (training then runs without validation)."""
        if self.val_corpus:
            why = f"nothing usable in {self.val_corpus}"
        elif self.val_fraction <= 0:
            why = "--val-fraction 0"
        else:
            why = f"{self.n_train + self.n_val} pieces are too few for --val-fraction {self.val_fraction}"
        return f"validation: none ({why}); training will run without validation"

    def lines(self) -> list[str]:
        out = list(self.read_lines)
        val = f"{self.n_val} validation" + (f" (from {self.val_corpus})" if self.val_corpus else "")
        out.append(f"pieces: {self.n_train} training, {val}")
        if self.val_empty:
            out.append(self.val_line())
        mean = self.train_units / self.n_train if self.n_train else 0
        out.append(
            f"{self.unit}: {self.train_units:,} training (mean {mean:,.0f} per piece), {self.val_units:,} validation"
        )
        out.append(f"representation: {self.representation} ({self.kind}), vocabulary size {self.vocab_size} "
                   f"[{self.vocabulary}]")
        if self.pitch_range is not None:
            lo, hi = self.pitch_range
            out.append(f"pitch range: {lo}..{hi} ({_note_name(lo)}..{_note_name(hi)})")
        elif not self.notes_parsed:
            out.append("pitch range: n/a (the text is used as is; tunes were not parsed into notes)")
        if self.notes_per_beat is not None:
            out.append(f"notes per beat: {self.notes_per_beat:.2f}")
        out.append(f"items per epoch: {self.train_items:,} training {self.item_kind}, "
                   f"{self.val_items:,} validation windows")
        if self.cache_dir:
            hits = ", ".join(
                f"{k} {self.cache_hits.get(k, 0)}/{self.cache_hits.get(k, 0) + self.cache_misses.get(k, 0)}"
                for k in ("index", "pieces", "vocab", "encoded", "packs")
                if self.cache_hits.get(k, 0) + self.cache_misses.get(k, 0)
            )
            mapped = ", memory-mapped" if self.memory_mapped else ""
            out.append(f"cache: {self.cache_dir} (hits: {hits or 'none'}{mapped})")
        else:
            out.append("cache: off (--no-cache)")
        out.extend(self.notes)
        rate = f" ({self.files / self.seconds:,.0f} files/s)" if self.files and self.seconds > 0 else ""
        out.append(f"prepared {self.files:,} file{'s' if self.files != 1 else ''} in {self.seconds:.2f} s{rate}")
        return out


def _note_name(pitch: int) -> str:
    names = ["C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B"]
    return f"{names[pitch % 12]}{pitch // 12 - 1}"


@dataclass
class Prepared:
    """Stores of encoded pieces for both splits, with the report."""

    train: PieceStore
    val: PieceStore | None
    report: DataReport
    crop_length: int
    train_refs: list = field(default_factory=list)  # the pieces of each split (PieceRef: file, index, source)
    val_refs: list = field(default_factory=list)

    def write_split(self, folder) -> tuple[Path, Path, int]:
        """train.txt and valid.txt (FractalMIDI's list files) naming the files of each split; files holding several
        pieces (tune books split by tune) cannot be listed and are counted instead. (train, valid, unlisted)."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        multi = {r.file.path for r in self.train_refs + self.val_refs if r.file.n_pieces > 1}
        out = []
        for name, refs in (("train.txt", self.train_refs), ("valid.txt", self.val_refs)):
            paths = sorted({str(r.file.path.resolve()) for r in refs if r.file.path not in multi})
            target = folder / name
            target.write_text("".join(p + "\n" for p in paths))
            out.append(target)
        return out[0], out[1], len(multi)


def _grid_steps_per_beat(representation) -> float | None:
    if representation.kind != "grid":
        return None
    spb = getattr(representation, "steps_per_beat", None)
    return float(spb) if isinstance(spb, (int, float)) and spb > 0 else None


def _screen(read: ReadCorpus, steps_per_beat: float | None, cache: Cache, notes: bool,
            seen: list[PieceRef] | None = None) -> list:
    """Before the split: pieces over the length limits move to `read.skipped_pieces`, and copies of a piece read
    before (same `content_key`, in `read` or among the pieces `seen`) are dropped. Returns [(copy, first source)].
    Content hashes are compared only between pieces of the same `copy_signature` (and made for those only)."""
    seen = list(seen or [])
    usable = []
    for ref in read.refs:
        why = summary_problem(ref.summary, steps_per_beat)
        if why:
            read.skipped_pieces.append((ref.source, why))
            continue
        usable.append(ref)
    shared = Counter(copy_signature(r.summary) for r in seen + usable)

    def may_be_a_copy(ref: PieceRef) -> bool:  # a hash made already, or another piece of the same signature
        return bool(ref.summary.get("content")) or shared[copy_signature(ref.summary)] > 1

    first: dict[str, str] = {}
    for ref in seen:
        if may_be_a_copy(ref):
            first.setdefault(content_of(ref, cache, notes), ref.source)
    kept, copies = [], []
    for ref in usable:
        if may_be_a_copy(ref):
            content = content_of(ref, cache, notes)
            if content in first:
                copies.append((ref.source, first[content]))
                continue
            first[content] = ref.source
        kept.append(ref)
    read.refs[:] = kept
    return copies


def _copies_line(report: "DataReport", name: str, copies: list, log, what: str) -> None:
    copy, original = copies[0]
    line = (f"{name}: {len(copies)} {what} dropped before the split "
            f"({_short_name(copy)} = {_short_name(original)}{', ...' if len(copies) > 1 else ''})")
    report.duplicates += len(copies)
    report.read_lines.append(line)
    log(line)


def _drums_left_out(representation) -> bool:
    """Whether the representation drops drum notes (pianoroll without --include-drums; words always)."""
    config = getattr(representation, "config", None)
    flag = getattr(config, "include_drums", None)
    if flag is not None:
        return not bool(flag)
    return representation.name == "words"


def _unusable(piece, representation, drums_out: bool, summary: dict | None = None) -> str | None:
    """Why a read piece must not be encoded for training (too long for a roll, drums only), else None. `summary`:
    the piece's summary as read (its n_notes and end_beat), which spares going over the notes again."""
    spb = _grid_steps_per_beat(representation)
    why = summary_problem(summary, spb) if summary is not None else piece_problem(piece, spb)
    if why:
        return why
    why = representation.training_problem(piece)  # the base class's hook (plugins subclass it): e.g. abc's
    if why:  # tunes whose bars disagree with their M:
        return why
    notes = piece.notes
    if drums_out and len(notes) and bool(notes["is_drum"].all()):
        hint = " (--include-drums keeps them)" if hasattr(getattr(representation, "config", None),
                                                          "include_drums") else ""
        return f"drums only, and {representation.name} leaves drums out{hint}"
    return None


def _storage_dtype(vocab_size: int) -> np.dtype:
    if vocab_size <= 256:
        return np.dtype(np.uint8)
    if vocab_size <= 65536:
        return np.dtype(np.uint16)
    return np.dtype(np.int32)


class _LazyPieces:
    """The pieces of `refs`, loaded from the cache one file at a time as they are iterated (and let go again
    unless they were in memory already), so fitting a vocabulary on a corpus larger than memory works."""

    def __init__(self, refs: list[PieceRef], cache: Cache, notes: bool):
        self.refs, self.cache, self.notes = refs, cache, notes

    def __len__(self) -> int:
        return len(self.refs)

    def __getitem__(self, i: int):
        ref = self.refs[i]
        return ref.file.pieces(self.cache, self.notes)[ref.index]

    def __iter__(self):
        current, let_go = None, False  # the file being read, and whether to let it go when the next one starts
        for ref in self.refs:
            if ref.file is not current:
                if let_go:
                    current.release()
                current, let_go = ref.file, ref.file.loaded is None and self.cache.enabled
            yield ref.file.pieces(self.cache, self.notes)[ref.index]
        if let_go:
            current.release()


def _gather(refs: list[PieceRef], cache: Cache, notes: bool) -> _LazyPieces:
    return _LazyPieces(refs, cache, notes)


def _fit(representation, train_refs, cache: Cache, notes: bool) -> str:
    if representation.is_fitted:
        return "given"
    # the unfitted state, not only the config: it carries what a representation versions about its fitted state
    # (abc's text version), so a fit that learns more than an older one did is never answered from the cache
    key = make_key(
        "vocab",
        reader_version(),
        representation.name,
        representation.state_version,
        representation.state_dict(),
        bool(notes),
        sorted(r.key for r in train_refs),
    )
    state = cache.load_json("vocab", key)
    if state is not None:
        try:
            representation.load_state(state)
        except Exception:  # a state an older representation wrote: fit afresh
            pass
        if representation.is_fitted:
            return "cached"
    representation.fit(_gather(train_refs, cache, notes))
    if not representation.is_fitted:
        raise DataError(f"the {representation.name} representation learnt nothing from the training pieces")
    try:
        cache.save_json("vocab", key, representation.state_dict())
    except OSError:
        pass
    return "fitted"


def _encode_file(entry: FileEntry, representation, cache: Cache, notes: bool, dtype: np.dtype) -> dict[str, Any]:
    """Every piece of one file encoded: {"data", "lengths" (0 for failures), "meta": {"failures": {i: why}}}."""
    kind = representation.kind
    vocab = int(representation.vocab_size)
    blocks, lengths, failures = [], [], {}
    drums_out = _drums_left_out(representation)
    pieces = entry.pieces(cache, notes)
    rows = (entry.meta or {}).get("pieces") or []
    for i, piece in enumerate(pieces):
        summary = rows[i].get("summary") if len(rows) == len(pieces) else None
        if summary is not None and int(summary.get("n_notes", -1)) != piece.n_notes:
            summary = None  # not this piece's (never expected): check the notes themselves
        unusable = _unusable(piece, representation, drums_out, summary)
        if unusable:
            failures[str(i)] = unusable
            lengths.append(0)
            continue
        try:
            fast = getattr(representation, "encode_time_major" if kind == "grid" else "encode_as", None)
            # the pianoroll builds the stored [T, 128] small-int form directly (no int64 grid, no transposed copy);
            # MIDI words write their ids straight into the stored type
            if fast is None:
                arr = np.asarray(representation.encode(piece))
            else:
                arr = fast(piece, dtype).T if kind == "grid" else fast(piece, dtype)
        except (KeyboardInterrupt, SystemExit):
            raise
        except Exception as exc:
            failures[str(i)] = f"cannot be encoded: {_first_line(exc)}"
            lengths.append(0)
            continue
        why = None
        if kind == "grid" and (arr.ndim != 2 or arr.shape[0] != 128):
            why = f"encoded to shape {arr.shape}, not [128, T]"
        elif kind == "tokens" and arr.ndim != 1:
            why = f"encoded to shape {arr.shape}, not a sequence"
        elif arr.size == 0 or arr.shape[-1] < (2 if kind == "tokens" else 1):
            why = "too short to train on"
        else:
            top = int(arr.max())  # one pass: the largest id, and (grids) whether any cell sounds
            if top >= vocab or (arr.dtype.kind != "u" and int(arr.min()) < 0):
                why = f"encoded ids outside 0..{vocab - 1}"
            elif kind == "grid" and top == 0:
                why = "silent: no note on the grid"
        if why:
            failures[str(i)] = why
            lengths.append(0)
            continue
        blocks.append(np.asarray(arr.T, dtype=dtype) if kind == "grid" else arr.astype(dtype, copy=False))
        lengths.append(arr.shape[-1])
    if len(blocks) == 1:
        data = blocks[0]  # one piece (a MIDI file): no copy
    elif blocks:
        data = np.concatenate(blocks, axis=0)
    else:
        data = np.zeros((0, 128) if kind == "grid" else (0,), dtype=dtype)
    return {"data": data, "lengths": np.asarray(lengths, dtype=np.int64), "meta": {"failures": failures}}


def _encoded_piece(
    ref: PieceRef, representation, cache: Cache, notes: bool, dtype: np.dtype, fingerprint: str, entries: dict,
    packed: bool = False, store: bool = True,
) -> tuple[np.ndarray | None, str | None, tuple | None]:
    """(stored block, None, to_pack) for one piece, or (None, why it cannot be used, None): from its file's cached
    encoding, or encoded now. A new encoding is cached at once (written with the next bundle, so an interrupted
    preparation keeps it) - except, when `packed`, that of a file of one piece: `to_pack` (its encoding key,
    lengths and meta) then goes with the block to the PackWriter, whose shard holds the only copy of its rows; and
    nothing is cached without `store`.
    Encodings of files holding several pieces stay in `entries` (shared by the splits: a book split by tune is
    encoded once); the others are dropped after use, with the file's notes, so memory does not grow with the
    corpus."""
    fkey = ref.file.key
    enc = entries.get(fkey)
    to_pack = None
    if enc is None:
        key = make_key("encoded", fkey, fingerprint, dtype.str) if cache.enabled else ""  # no cache: never used
        enc = cache.load_encoded(key)
        if enc is None:
            enc = _encode_file(ref.file, representation, cache, notes, dtype)
            if packed and ref.file.n_pieces == 1 and len(enc["data"]):
                to_pack = (key, enc["lengths"], enc["meta"])
            elif store:
                cache.save_encoded(key, enc["data"], enc["lengths"], enc["meta"])
        enc["offsets"] = np.concatenate([[0], np.cumsum(enc["lengths"])])
        if ref.file.n_pieces > 1:
            entries[fkey] = enc
        if cache.enabled:
            ref.file.release()  # its notes are encoded; the cache has them if anything asks again
    why = enc["meta"].get("failures", {}).get(str(ref.index))
    if why:
        return None, why, None
    a, b = int(enc["offsets"][ref.index]), int(enc["offsets"][ref.index + 1])
    return enc["data"][a:b], None, to_pack


def _split_store(
    kind: str,
    refs: list[PieceRef],
    representation,
    cache: Cache,
    notes: bool,
    in_memory: bool,
    skipped: list[tuple[str, str]],
    entries: dict[str, dict],
    store: bool = True,
) -> PieceStore | None:
    """One split's pieces, encoded, as a PieceStore (None if none is usable).

    With the cache, a split is stored as one pack: shards (`packs/<key>.<k>.npy`, pieces end to end, about 256 MB
    each) written while the pieces are encoded, then an index (`packs/<key>.json`: shards, piece lengths, the
    pieces that failed to encode), keyed by the representation's fingerprint and the split's pieces. A warm run
    opens one index per split and memory-maps the shards (or loads them, --cache-in-memory); building a pack holds
    at most one shard in memory, so a corpus larger than memory can be packed and trained on. Without `store`
    (`fmusic data stats` on a run that parsed files), a pack or encodings found in the cache are used, and new ones
    are kept in memory only.
    """
    if not refs:
        return None
    dtype = _storage_dtype(int(representation.vocab_size))
    key = make_key("split", representation.fingerprint(), dtype.str, [f"{r.file.key}:{r.index}" for r in refs])
    note = cache.load_json("packs", key, count=False) if cache.enabled else None
    paths = None
    if note is not None and "shards" in note and sum(int(s["pieces"]) for s in note["shards"]) == len(note["kept"]):
        paths = shard_paths(cache, note["shards"])
    if cache.enabled:
        cache._count("packs", paths is not None)
    blocks: list[np.ndarray] = []
    if paths is None:
        fingerprint = representation.fingerprint()
        writer = PackWriter(cache, key) if cache.enabled and store else None
        kept, failed, lengths = [], [], []

        def block_of(k: int) -> np.ndarray:  # a kept piece again (the pack could not be written): from the cache
            return _encoded_piece(refs[k], representation, cache, notes, dtype, fingerprint, entries)[0]

        try:
            for pos, ref in enumerate(refs):
                block, why, to_pack = _encoded_piece(ref, representation, cache, notes, dtype, fingerprint, entries,
                                                     packed=writer is not None, store=store)
                if why:
                    failed.append((pos, why))
                    continue
                kept.append(pos)
                lengths.append(int(block.shape[0]))
                if writer is not None:
                    try:
                        writer.add(block, to_pack)
                    except OSError:  # a full or read-only cache folder: keep this split in memory instead
                        writer = None
                        blocks = blocks if in_memory else [block_of(k) for k in kept[:-1]]
                elif to_pack is not None:  # the pack is given up: the encoding is cached the usual way
                    cache.save_encoded(to_pack[0], block, to_pack[1], to_pack[2])
                if writer is None or in_memory:  # in memory: the blocks in hand, not the pack read back
                    blocks.append(np.array(block) if isinstance(block, np.memmap) else block)
            note = {"kept": kept, "failed": failed, "lengths": lengths}
            if writer is not None:
                try:  # the shards first, the index last: an index always describes complete shards
                    note["shards"] = writer.finish()
                    cache.save_json("packs", key, note)
                    paths = [cache.root / "packs" / sh["name"] for sh in note["shards"]]
                except OSError:
                    writer = None
                    blocks = blocks if in_memory else [block_of(k) for k in kept]
        except BaseException:
            if writer is not None:  # interrupted: the shard being filled is written, with the encodings it holds
                try:
                    writer.stop()
                except OSError:
                    pass
            cache.flush()  # and the encodings gathered so far (else written when preparation ends)
            raise
    for pos, why in note["failed"]:
        skipped.append((refs[int(pos)].source, why))
    kept_refs = [refs[int(pos)] for pos in note["kept"]]
    if not kept_refs:
        return None
    sources = [r.source for r in kept_refs]
    if paths is not None and not in_memory:
        pieces = [int(sh["pieces"]) for sh in note["shards"]]
        return PieceStore(kind, shard_paths=paths, shard_pieces=pieces, lengths=note["lengths"], sources=sources)
    if paths is not None and not blocks:  # a pack found in the cache, loaded
        data = np.concatenate([np.load(p, allow_pickle=False) for p in paths], axis=0)
        offsets = np.concatenate([[0], np.cumsum(note["lengths"])]).astype(np.int64)
        arrays = [data[offsets[i] : offsets[i + 1]] for i in range(len(kept_refs))]
    else:
        arrays = blocks  # each piece's block as encoded (just packed, or no cache: nothing to load, no copy to make)
    if kind == "grid":
        arrays = [a.T for a in arrays]
    return PieceStore(kind, arrays=arrays, sources=sources)


def _note_stats(refs: list[PieceRef]) -> tuple[tuple[int, int] | None, float | None]:
    rows = [r.summary for r in refs if r.summary.get("n_notes")]
    if not rows:
        return None, None
    lo = min(int(s["pitch_min"]) for s in rows)
    hi = max(int(s["pitch_max"]) for s in rows)
    beats = sum(float(s["end_beat"]) for s in rows)
    per_beat = sum(int(s["n_notes"]) for s in rows) / beats if beats > 0 else None
    return (lo, hi), per_beat


def prepare_data(cfg: DataConfig, representation, log: Callable[[str], Any] | None = print,
                 defer_packs: bool = False) -> Prepared:
    """Resolve, read, split, fit and encode: the stores of both splits, and the report (see `build_datasets`).

    `defer_packs` (`fmusic data stats`): a run that parses files caches them (and the vocabulary) but keeps its
    encodings in memory, leaving the packs that training reads to a later run that parses nothing (a second
    `data stats`, `data prepare` or `train`): writing them is most of the cost of a first look at a corpus (12 MB
    of piano-roll packs for 30 real MIDI files, as much as reading them), and a look needs only their lengths."""
    with older_objects_left_alone():
        return _prepare_data(cfg, representation, log, defer_packs)


def _prepare_data(cfg: DataConfig, representation, log: Callable[[str], Any] | None,
                  defer_packs: bool = False) -> Prepared:
    start = time.perf_counter()
    log = log or (lambda _line: None)
    kind = representation.kind
    crop = cfg.crop_for(kind)
    if cfg.whole_tunes and kind != "tokens":
        raise ConfigError(f"--whole-tunes works with token representations; {representation.name} is a {kind}")
    cache = Cache(None if cfg.no_cache else cfg.resolved_cache_dir())
    notes = not bool(getattr(representation, "uses_abc_text", False))
    workers = int(cfg.num_prep_workers)

    # a representation that reads some file types itself (input_suffixes + read_file) is asked first
    own = tuple(getattr(representation, "input_suffixes", ()) or ())
    reader = representation if own else None
    corpus = resolve_corpus(cfg.data or default_corpus(representation), own)
    start += load_readers(corpus.files)  # first imports are the process's cost, not the data's: not timed
    report = DataReport(corpus=corpus.spec, representation=representation.name, kind=kind, crop_length=crop)
    report.notes_parsed = notes
    report.val_fraction = cfg.val_fraction
    report.cache_dir = str(cache.root) if cache.enabled else None
    for line in corpus.notes:
        log(line)
        report.notes.append(line)
    ahead = representation if hasattr(representation, "work_ahead") else None  # reader workers work ahead for it
    reads: list[ReadCorpus] = [read_corpus(corpus, notes, cache, workers, cfg.max_pieces, log, reader, ahead)]
    train_read = reads[0]
    spb = _grid_steps_per_beat(representation)
    copies = _screen(train_read, spb, cache, notes)
    val_copies: list = []
    if not train_read.refs:
        raise DataError(
            f"no readable music in {corpus.spec}: "
            + group_reasons(train_read.skipped_files + train_read.skipped_pieces)
        )
    if cfg.val_data:
        val_corpus = resolve_corpus(cfg.val_data, own)
        start += load_readers(val_corpus.files)
        report.val_corpus = val_corpus.spec
        for line in val_corpus.notes:
            log(line)
            report.notes.append(line)
        reads.append(read_corpus(val_corpus, notes, cache, workers, cfg.max_pieces, log, reader, ahead))
        val_copies = _screen(reads[1], spb, cache, notes, seen=train_read.refs)
        train_refs, val_refs = list(train_read.refs), list(reads[1].refs)
        shared = {r.key for r in train_refs} & {r.key for r in val_refs}
        if shared:
            report.notes.append(f"warning: {len(shared)} validation pieces are also in the training data")
    else:
        train_idx, val_idx = split_indices([r.key for r in train_read.refs], cfg.val_fraction, cfg.split_seed)
        train_refs = [train_read.refs[i] for i in train_idx]
        val_refs = [train_read.refs[i] for i in val_idx]
    report.read_lines.append(train_read.summary_line())
    if copies:
        _copies_line(report, corpus.name, copies, log, "copies of pieces already read")
    for r in reads[1:]:
        report.read_lines.append(r.summary_line())
    if val_copies:
        _copies_line(report, reads[1].corpus.name, val_copies, log, "validation pieces that copy a training piece")
    for r in reads:
        report.skipped.extend(r.skipped_files + r.skipped_pieces)
        report.files += len(r.files)
        report.files_read += sum(1 for f in r.files if not f.error)
        report.files_parsed += r.read_now
        if r.truncated:
            report.notes.append(
                f"--max-pieces {cfg.max_pieces}: using the first {len(r.refs)} pieces of {r.corpus.spec}"
            )
    report.pitch_range, report.notes_per_beat = _note_stats(train_refs + val_refs)

    report.vocabulary = _fit(representation, train_refs, cache, notes)
    report.vocab_size = int(representation.vocab_size)
    store = not defer_packs or not any(r.read_now for r in reads)  # packs (and encodings) written to the cache
    in_memory = cfg.cache_in_memory or not cache.enabled or not store
    if not cfg.cache_in_memory and not cache.enabled:
        report.notes.append("--no-cache-in-memory needs the cache; keeping arrays in memory (--no-cache)")
    encode_skips: list[tuple[str, str]] = []
    entries: dict[str, dict] = {}
    train_store = _split_store(kind, train_refs, representation, cache, notes, in_memory, encode_skips, entries, store)
    val_store = _split_store(kind, val_refs, representation, cache, notes, in_memory, encode_skips, entries, store)
    if encode_skips:
        report.skipped.extend(encode_skips)
        report.read_lines.append(f"encoding: {group_reasons(encode_skips)}")
        log(report.read_lines[-1])
    if train_store is None:
        raise DataError(
            f"none of the training pieces of {corpus.spec} could be encoded by {representation.name}: "
            + group_reasons(encode_skips)
        )
    report.memory_mapped = not in_memory
    report.n_train, report.n_val = len(train_store), len(val_store) if val_store is not None else 0
    report.train_units = train_store.total
    report.val_units = val_store.total if val_store is not None else 0
    _finish(report, cache, start, reads)
    return Prepared(train_store, val_store, report, crop, train_refs, val_refs)


def _finish(report: DataReport, cache: Cache, start: float, reads: list[ReadCorpus]) -> None:
    for r in reads:
        for f in r.files:
            f.release()
    cache.close()  # anything still gathered is written; the bundles read are let go
    report.cache_hits = dict(cache.hits)
    report.cache_misses = dict(cache.misses)
    report.seconds = time.perf_counter() - start


def build_datasets(cfg: DataConfig, representation, log: Callable[[str], Any] | None = print,
                   defer_packs: bool = False):
    """(train_ds, val_ds or None, DataReport). Fits `representation` on the training pieces if not yet fitted."""
    log = log or (lambda _line: None)
    prepared = prepare_data(cfg, representation, log=log, defer_packs=defer_packs)
    crop = prepared.crop_length
    shifts = (cfg.pitch_shift_min, cfg.pitch_shift_max)
    report = prepared.report
    if representation.kind == "grid":
        train = GridCropDataset(prepared.train, representation, crop, cfg.augment_factor, shifts, cfg.seed)
        val = GridWindowDataset(prepared.val, representation, crop) if prepared.val is not None else None
    elif cfg.whole_tunes:
        train = WholeTuneDataset(prepared.train, representation, crop, cfg.augment_factor, shifts, cfg.seed)
        val = TokenWindowDataset(prepared.val, representation, crop) if prepared.val is not None else None
    else:
        train = TokenCropDataset(prepared.train, representation, crop, cfg.augment_factor, shifts, cfg.seed)
        val = TokenWindowDataset(prepared.val, representation, crop) if prepared.val is not None else None
    if cfg.whole_tunes and representation.kind == "tokens":
        report.item_kind = f"whole tunes (up to {crop + 1} tokens)"
    else:
        report.item_kind = f"random crops of {crop} {report.unit}"
    report.train_items = len(train)
    report.val_items = len(val) if val is not None else 0
    if val is None:
        log(report.val_line())
    return train, val, report
