"""Loaders: order a pure function of (seed, epoch), sharding, mid-epoch start, length bucketing."""
from __future__ import annotations

import itertools

import numpy as np
import torch
from test_data_fakes import ToyGrid, ToyTokens

from fractalmusic.data import epoch_batches, make_loader
from fractalmusic.data.dataset import GridCropDataset, PieceStore, WholeTuneDataset


def _grid_ds(n=10, seed=0):
    rng = np.random.default_rng(seed)
    arrays = [rng.integers(0, 3, size=(128, 12 + 3 * i)) for i in range(n)]
    return GridCropDataset(PieceStore("grid", arrays=arrays), ToyGrid(), 8, augment_factor=2, seed=seed)


def _batches(loader):
    return [(b["grid"].clone(), b["mask"].clone()) for b in loader]


def test_loader_order_and_items_are_reproducible():
    ds = _grid_ds()
    first = _batches(make_loader(ds, 4, shuffle=True, seed=1, epoch=3))
    again = _batches(make_loader(_grid_ds(), 4, shuffle=True, seed=1, epoch=3))
    assert len(first) == 5 and first[-1][0].shape == (4, 128, 8)
    assert all(torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) for a, b in zip(first, again))
    other = _batches(make_loader(ds, 4, shuffle=True, seed=1, epoch=4))
    assert any(not torch.equal(a[0], b[0]) for a, b in zip(first, other))
    assert epoch_batches(20, 4, True, 1, 3) != epoch_batches(20, 4, True, 2, 3)
    assert epoch_batches(10, 4, False, 0, 0) == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
    assert epoch_batches(10, 4, False, 0, 0, drop_last=True) == [[0, 1, 2, 3], [4, 5, 6, 7]]


def test_resume_mid_epoch_by_starting_at_a_batch():
    ds = _grid_ds()
    full = _batches(make_loader(ds, 3, shuffle=True, seed=5, epoch=2))
    loader = make_loader(ds, 3, shuffle=True, seed=5, epoch=2, start_batch=4)
    rest = _batches(loader)
    assert loader.batches_per_epoch == len(full) == 7 and len(loader) == 3
    assert all(torch.equal(a[0], b[0]) for a, b in zip(full[4:], rest)) and len(rest) == 3


def test_sharding_covers_the_epoch_once():
    shards = [epoch_batches(10, 2, True, 0, 0, rank=r, world_size=3) for r in range(3)]
    flat = [list(itertools.chain.from_iterable(s)) for s in shards]
    assert all(len(f) == 4 for f in flat)  # 10 items padded to 12 by repeating the start of the order
    assert set().union(*flat) == set(range(10))
    full_order = epoch_batches(10, 10, True, 0, 0)[0]
    assert flat[0] == (full_order + full_order[:2])[0::3]


def test_loader_workers_build_the_same_batches():
    ds = _grid_ds(n=6)
    single = _batches(make_loader(ds, 4, shuffle=True, seed=0, epoch=1))
    multi = _batches(make_loader(ds, 4, shuffle=True, seed=0, epoch=1, num_workers=2))
    assert all(torch.equal(a[0], b[0]) for a, b in zip(single, multi)) and len(single) == len(multi)


def test_whole_tunes_are_bucketed_by_length():
    rep = ToyTokens()
    rep.pitches = list(range(40))
    rng = np.random.default_rng(0)
    arrays = [np.arange(4, 4 + int(n)) % 40 + 4 for n in rng.integers(3, 60, size=64)]
    ds = WholeTuneDataset(PieceStore("tokens", arrays=arrays), rep, crop_length=64)
    lengths = ds.item_lengths()
    bucketed = epoch_batches(len(ds), 8, True, 0, 0, lengths=lengths)
    plain = epoch_batches(len(ds), 8, True, 0, 0)

    def padding(batches):
        return sum(int(max(lengths[b]) * len(b) - lengths[b].sum()) for b in batches)

    assert sorted(i for b in bucketed for i in b) == list(range(64))
    assert padding(bucketed) < padding(plain) / 3
    loader = make_loader(ds, 8, shuffle=True, seed=0, epoch=0)
    for batch in loader:
        assert batch["tokens"].shape[1] == int(batch["mask"].sum(1).max())  # padded to the longest item
