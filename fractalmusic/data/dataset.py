"""Datasets over encoded pieces: random crops for training, fixed windows for validation, whole tunes.

Items are dicts of numpy arrays holding only real data: ``{"tokens": int64[n]}`` with n <= crop_length + 1, or
``{"grid": int64[128, w]}`` with w <= crop_length. `collate_for` pads them and builds the masks, so a batch of
short pieces is padded with silence / `pad_id` and the mask tells the generator which steps are real.

Determinism (for exact resume): every random choice for item i in epoch e comes from
``np.random.default_rng([seed, e, i])`` - never global RNG state - so an item is a pure function of
(seed, epoch, index) whatever the worker, batch size or process that builds it. Call `set_epoch` each epoch.

Epoch sizes:

* grid crops: ``n_pieces * augment_factor`` items; item i crops piece ``i % n_pieces`` at a random offset.
* token crops: each piece gets ``ceil((len - 1) / crop_length)`` slots, so an epoch of
  ``sum(slots) * augment_factor`` items sees about every token once per augment_factor (a long tune gets more crops
  than a short one); item i crops the piece owning slot ``i % sum(slots)`` at a random offset, crop_length + 1
  tokens long (the model predicts crop_length of them).
* whole tunes (tokens): ``n_pieces * augment_factor`` items, each a whole tune truncated to crop_length + 1.
* validation windows: fixed offsets 0, crop, 2 crop, ... covering every piece once, no augmentation.

Pitch shifts are drawn uniformly in [pitch_shift_min, pitch_shift_max] per item and applied with
`representation.transpose`; where it returns None (the shift is impossible) the item stays unshifted. Token items
(crops and whole tunes) then draw a way of writing the same music from `representation.draw_rewrite` (abc: the
spelling of lengths below the unit; most representations draw nothing) and apply it with
`representation.rewrite` (None: the item stays as written). Whole-piece token transpositions and rewrites are
memoised per (piece, shift, variant): text transposition costs more than a crop. Grids transpose only the crop.
"""
from __future__ import annotations

import math
import mmap
from pathlib import Path
from typing import Any

import numpy as np

GRID_HEIGHT = 128


class PieceStore:
    """Encoded pieces, in memory or as views into memory-mapped pack shards.

    Tokens are 1-D arrays; grids are `[128, T]` arrays (a pack stores grids time-major, `[sum T, 128]`, so a
    crop reads contiguous bytes). A pack is one or more shard files (`shard_paths`, each holding whole pieces,
    `shard_pieces` of them); a shard is mapped on first use, so resident memory holds only the pages read (the
    kernel drops them under pressure). Pickling a store that memory-maps carries only the paths: DataLoader
    workers map the files themselves instead of receiving a copy of them.
    """

    def __init__(
        self,
        kind: str,
        arrays: list[np.ndarray] | None = None,
        pack_path: str | Path | None = None,
        lengths: np.ndarray | list[int] | None = None,
        sources: list[str] | None = None,
        shard_paths: list[str | Path] | None = None,
        shard_pieces: list[int] | None = None,
    ):
        if kind not in ("tokens", "grid"):
            raise ValueError(f"unknown representation kind {kind!r}")
        self.kind = kind
        if pack_path is not None and shard_paths is None:
            shard_paths = [pack_path]
        self.shard_paths = [str(p) for p in shard_paths] if shard_paths is not None else None
        self.pack_path = self.shard_paths[0] if self.shard_paths else None
        self._maps: dict[int, np.ndarray] = {}
        if arrays is not None:
            self.arrays = list(arrays)
            self.lengths = np.array([a.shape[-1] for a in self.arrays], dtype=np.int64)
        else:
            if self.shard_paths is None or lengths is None:
                raise ValueError("a PieceStore needs arrays, or pack shard paths and lengths")
            self.arrays = None
            self.lengths = np.asarray(lengths, dtype=np.int64)
        n = len(self.lengths)
        if self.arrays is None:
            counts = list(shard_pieces) if shard_pieces is not None else [n]
            if len(counts) != len(self.shard_paths) or sum(counts) != n:
                raise ValueError("shard piece counts do not add up to the pieces")
            self._shard_of = np.repeat(np.arange(len(counts), dtype=np.int64), counts)
            starts = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
            # each piece's row offset inside its own shard
            cum = np.concatenate([[0], np.cumsum(self.lengths)]).astype(np.int64)
            self._local = cum[:-1] - cum[starts[self._shard_of]]
        self.offsets = np.concatenate([[0], np.cumsum(self.lengths)]).astype(np.int64)
        self.sources = list(sources) if sources is not None else [f"piece {i}" for i in range(n)]

    def __len__(self) -> int:
        return len(self.lengths)

    @property
    def memory_mapped(self) -> bool:
        return self.arrays is None

    @property
    def total(self) -> int:
        """Tokens or time steps in all pieces."""
        return int(self.lengths.sum())

    def _mapped(self, shard: int = 0) -> np.ndarray:
        arr = self._maps.get(shard)
        if arr is None:
            arr = np.load(self.shard_paths[shard], mmap_mode="r", allow_pickle=False)
            try:  # crops are read at random places: no readahead of pages nobody asked for
                arr._mmap.madvise(mmap.MADV_RANDOM)
            except (AttributeError, OSError, ValueError):
                pass
            self._maps[shard] = arr
        return arr

    def __getitem__(self, i: int) -> np.ndarray:
        if self.arrays is not None:
            return self.arrays[i]
        a = int(self._local[i])
        block = self._mapped(int(self._shard_of[i]))[a : a + int(self.lengths[i])]
        return block.T if self.kind == "grid" else block

    def window(self, i: int, start: int, width: int) -> np.ndarray:
        """`width` steps/tokens of piece i from `start` (fewer at its end), as a new int64 array."""
        arr = self[i]
        return np.array(arr[..., start : start + width], dtype=np.int64)

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_maps"] = {}
        return state


class _ItemDataset:
    """Shared parts: the store, the epoch, the per-item random generator, the collate function.

    A map-style dataset (`__len__`, `__getitem__`) for `torch.utils.data.DataLoader`; it does not subclass torch's
    Dataset so that `fmusic data stats` never imports torch."""

    kind = ""

    def __init__(self, store: PieceStore, representation, crop_length: int, seed: int = 0):
        if len(store) == 0:
            raise ValueError("a dataset needs at least one piece")
        self.store = store
        self.representation = representation
        self.crop_length = int(crop_length)
        self.seed = int(seed)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def rng(self, index: int) -> np.random.Generator:
        return np.random.default_rng([self.seed, self.epoch, int(index)])

    @property
    def n_pieces(self) -> int:
        return len(self.store)

    @property
    def collate(self):
        from fractalmusic.data.loader import collate_for

        return collate_for(self.representation.spec(), self.crop_length)

    def _check_index(self, index: int) -> int:
        n = len(self)
        if index < 0:
            index += n
        if not 0 <= index < n:
            raise IndexError(f"item {index} of a dataset of {n}")
        return index


class _Shifts:
    """Uniform pitch shifts in [low, high] drawn from an item's generator (no draw when the range is (0, 0))."""

    def __init__(self, low: int, high: int):
        self.low, self.high = int(low), int(high)

    def draw(self, rng: np.random.Generator) -> int:
        if self.low == self.high:
            return self.low
        return int(rng.integers(self.low, self.high + 1))


# ----------------------------------------------------------------------------------------------------- grids
class GridCropDataset(_ItemDataset):
    """Training crops of piano-roll grids: n_pieces * augment_factor random crops per epoch."""

    kind = "grid"

    def __init__(self, store, representation, crop_length, augment_factor=1, pitch_shift=(0, 0), seed=0):
        super().__init__(store, representation, crop_length, seed)
        self.augment_factor = int(augment_factor)
        self.shifts = _Shifts(*pitch_shift)

    def __len__(self) -> int:
        return self.n_pieces * self.augment_factor

    def __getitem__(self, index: int) -> dict[str, np.ndarray]:
        index = self._check_index(index)
        rng = self.rng(index)
        piece = index % self.n_pieces
        shift = self.shifts.draw(rng)
        length = int(self.store.lengths[piece])
        start = int(rng.integers(0, length - self.crop_length + 1)) if length > self.crop_length else 0
        grid = self.store.window(piece, start, self.crop_length)
        if shift:
            moved = self.representation.transpose(grid, shift)
            if moved is not None:
                grid = np.asarray(moved[0], dtype=np.int64)
        return {"grid": grid}


class GridWindowDataset(_ItemDataset):
    """Validation windows of grids: offsets 0, crop, 2 crop, ... of every piece; the last one may be short."""

    kind = "grid"

    def __init__(self, store, representation, crop_length):
        super().__init__(store, representation, crop_length, 0)
        counts = [max(1, math.ceil(int(n) / self.crop_length)) for n in store.lengths]
        self._index = [(p, k * self.crop_length) for p, c in enumerate(counts) for k in range(c)]

    def __len__(self) -> int:
        return len(self._index)

    def __getitem__(self, index: int) -> dict[str, np.ndarray]:
        piece, start = self._index[self._check_index(index)]
        return {"grid": self.store.window(piece, start, self.crop_length)}


# ----------------------------------------------------------------------------------------------------- tokens
class _TokenShiftMemo:
    """Whole-piece token transpositions and rewrites, memoised per (piece, shift, variant); bounded so a huge corpus
    cannot fill memory."""

    def __init__(self, store: PieceStore, representation, capacity: int = 50_000):
        self.store = store
        self.representation = representation
        self.capacity = capacity
        self._memo: dict[tuple[int, int, int], np.ndarray] = {}

    def get(self, piece: int, shift: int, variant: int = 0) -> np.ndarray:
        if not shift and not variant:
            return self.store[piece]
        key = (piece, shift, variant)
        hit = self._memo.get(key)
        if hit is not None:
            return hit
        original = np.asarray(self.store[piece], dtype=np.int64)
        out = original
        if shift:
            moved = self.representation.transpose(original, shift)
            out = original if moved is None else np.asarray(moved[0], dtype=np.int64)
        if variant:
            written = self.representation.rewrite(out, variant)
            out = out if written is None else np.asarray(written, dtype=np.int64)
        if len(self._memo) >= self.capacity:
            self._memo.clear()
        self._memo[key] = out
        return out


class TokenCropDataset(_ItemDataset):
    """Training crops of crop_length + 1 tokens; about total_tokens / crop_length * augment_factor per epoch."""

    kind = "tokens"

    def __init__(self, store, representation, crop_length, augment_factor=1, pitch_shift=(0, 0), seed=0):
        super().__init__(store, representation, crop_length, seed)
        self.augment_factor = int(augment_factor)
        self.shifts = _Shifts(*pitch_shift)
        slots = np.array([max(1, math.ceil((int(n) - 1) / self.crop_length)) for n in store.lengths], dtype=np.int64)
        self._slot_ends = np.cumsum(slots)
        self.n_slots = int(self._slot_ends[-1])
        self._memo = _TokenShiftMemo(store, representation)

    def __len__(self) -> int:
        return self.n_slots * self.augment_factor

    def piece_of(self, index: int) -> int:
        return int(np.searchsorted(self._slot_ends, index % self.n_slots, side="right"))

    def __getitem__(self, index: int) -> dict[str, np.ndarray]:
        index = self._check_index(index)
        rng = self.rng(index)
        piece = self.piece_of(index)
        shift = self.shifts.draw(rng)
        tokens = self._memo.get(piece, shift, self.representation.draw_rewrite(rng))
        width = self.crop_length + 1
        start = int(rng.integers(0, len(tokens) - width + 1)) if len(tokens) > width else 0
        return {"tokens": np.array(tokens[start : start + width], dtype=np.int64)}


class TokenWindowDataset(_ItemDataset):
    """Validation windows of crop_length + 1 tokens at offsets 0, crop, 2 crop, ...: each token after a piece's
    first is predicted exactly once."""

    kind = "tokens"

    def __init__(self, store, representation, crop_length):
        super().__init__(store, representation, crop_length, 0)
        counts = [max(1, math.ceil((int(n) - 1) / self.crop_length)) for n in store.lengths]
        self._index = [(p, k * self.crop_length) for p, c in enumerate(counts) for k in range(c)]

    def __len__(self) -> int:
        return len(self._index)

    def __getitem__(self, index: int) -> dict[str, np.ndarray]:
        piece, start = self._index[self._check_index(index)]
        return {"tokens": self.store.window(piece, start, self.crop_length + 1)}


class WholeTuneDataset(_ItemDataset):
    """Whole tunes (truncated to crop_length + 1 tokens), n_pieces * augment_factor per epoch; batches are padded
    to their longest item (collate with crop_length None) and grouped by length (see `make_loader`)."""

    kind = "tokens"

    def __init__(self, store, representation, crop_length, augment_factor=1, pitch_shift=(0, 0), seed=0):
        super().__init__(store, representation, crop_length, seed)
        self.augment_factor = int(augment_factor)
        self.shifts = _Shifts(*pitch_shift)
        self._memo = _TokenShiftMemo(store, representation)

    def __len__(self) -> int:
        return self.n_pieces * self.augment_factor

    def item_lengths(self) -> np.ndarray:
        """Length of every item before any pitch shift (for length bucketing)."""
        per_piece = np.minimum(self.store.lengths, self.crop_length + 1)
        return np.tile(per_piece, self.augment_factor)

    def __getitem__(self, index: int) -> dict[str, np.ndarray]:
        index = self._check_index(index)
        rng = self.rng(index)
        piece = index % self.n_pieces
        shift = self.shifts.draw(rng)
        tokens = self._memo.get(piece, shift, self.representation.draw_rewrite(rng))
        return {"tokens": np.array(tokens[: self.crop_length + 1], dtype=np.int64)}

    @property
    def collate(self):
        from fractalmusic.data.loader import collate_for

        return collate_for(self.representation.spec(), None)
