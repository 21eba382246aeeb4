"""Datasets: crops, masks and shapes, epoch sizes, determinism per (seed, epoch, item), pitch shifts, splits."""
from __future__ import annotations

import pickle

import numpy as np
import pytest
from test_data_fakes import ToyGrid, ToyTokens, toy_corpus, use_toy_reader

from fractalmusic.data import DataConfig, build_datasets, collate_for
from fractalmusic.data.dataset import (
    GridCropDataset,
    GridWindowDataset,
    PieceStore,
    TokenCropDataset,
    TokenWindowDataset,
    WholeTuneDataset,
)
from fractalmusic.data.split import split_indices
from fractalmusic.errors import ConfigError


def _grid(width: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    g = np.zeros((128, width), dtype=np.int64)
    for t in range(width):
        g[rng.integers(50, 70), t] = 2
    return g


def _fitted_tokens(pitches=range(50, 80)) -> ToyTokens:
    rep = ToyTokens()
    rep.pitches = list(pitches)
    return rep


def test_grid_crops_shapes_masks_and_padding():
    rep = ToyGrid()
    store = PieceStore("grid", arrays=[_grid(40, 1), _grid(10, 2)])
    ds = GridCropDataset(store, rep, crop_length=16, augment_factor=3)
    assert len(ds) == 2 * 3
    collate = collate_for(rep.spec(), 16)
    batch = collate([ds[0], ds[1]])  # item 0 -> piece 0 (long), item 1 -> piece 1 (shorter than the crop)
    assert batch["grid"].shape == (2, 128, 16) and str(batch["grid"].dtype) == "torch.int64"
    assert batch["mask"].shape == (2, 16) and str(batch["mask"].dtype) == "torch.bool"
    assert batch["mask"][0].all() and batch["mask"][1].sum() == 10
    assert (batch["grid"][1, :, 10:] == 0).all()  # padded with silence
    assert np.array_equal(batch["grid"][1, :, :10].numpy(), store[1])
    crop = ds[0]["grid"]  # a window of the long piece at some offset
    starts = [s for s in range(40 - 16 + 1) if np.array_equal(store[0][:, s : s + 16], crop)]
    assert starts


def test_grid_validation_windows_cover_each_piece_once():
    store = PieceStore("grid", arrays=[_grid(40, 1), _grid(10, 2)])
    ds = GridWindowDataset(store, ToyGrid(), crop_length=16)
    assert len(ds) == 3 + 1
    joined = np.concatenate([ds[i]["grid"] for i in range(3)], axis=1)
    assert np.array_equal(joined, store[0])
    assert ds[3]["grid"].shape == (128, 10)


def test_items_are_a_pure_function_of_seed_epoch_and_index():
    store = PieceStore("grid", arrays=[_grid(64, i) for i in range(3)])
    a = GridCropDataset(store, ToyGrid(), 16, augment_factor=2, pitch_shift=(-3, 3), seed=7)
    b = GridCropDataset(store, ToyGrid(), 16, augment_factor=2, pitch_shift=(-3, 3), seed=7)
    b[5], b[2]  # order of access must not matter
    for i in (0, 2, 5):
        assert np.array_equal(a[i]["grid"], b[i]["grid"])
    a.set_epoch(1)
    assert any(not np.array_equal(a[i]["grid"], b[i]["grid"]) for i in range(len(a)))
    b.set_epoch(1)
    assert all(np.array_equal(a[i]["grid"], b[i]["grid"]) for i in range(len(a)))
    c = GridCropDataset(store, ToyGrid(), 16, augment_factor=2, pitch_shift=(-3, 3), seed=8)
    c.set_epoch(1)
    assert any(not np.array_equal(a[i]["grid"], c[i]["grid"]) for i in range(len(a)))


def test_grid_pitch_shift_stays_in_range_and_moves_notes():
    store = PieceStore("grid", arrays=[_grid(16, 3)])
    ds = GridCropDataset(store, ToyGrid(), 16, augment_factor=40, pitch_shift=(-2, 2))
    original = np.nonzero(store[0] == 2)[0].min()
    lows = {int(np.nonzero(ds[i]["grid"] == 2)[0].min()) - int(original) for i in range(len(ds))}
    assert lows == {-2, -1, 0, 1, 2}


def test_token_crops_and_epoch_size():
    rep = _fitted_tokens()
    seqs = [np.arange(100) % 20 + 4, np.arange(11) % 20 + 4]  # 100 and 11 tokens
    store = PieceStore("tokens", arrays=seqs)
    ds = TokenCropDataset(store, rep, crop_length=10, augment_factor=2)
    # slots: ceil(99 / 10) = 10 for the long piece, 1 for the short one
    assert ds.n_slots == 11 and len(ds) == 22
    assert [ds.piece_of(i) for i in (0, 9, 10, 11, 21)] == [0, 0, 1, 0, 1]
    long_item = ds[3]["tokens"]
    assert len(long_item) == 11
    start = int(np.nonzero(seqs[0] == long_item[0])[0][0])
    assert np.array_equal(long_item, seqs[0][start : start + 11])
    assert np.array_equal(ds[10]["tokens"], seqs[1])  # exactly crop_length + 1: the whole piece
    batch = collate_for(rep.spec(), 10)([ds[3], {"tokens": seqs[1][:5]}])
    assert batch["tokens"].shape == (2, 11) and batch["mask"][1].sum() == 5
    assert (batch["tokens"][1, 5:] == rep.pad_id).all()


def test_token_windows_predict_every_token_once():
    store = PieceStore("tokens", arrays=[np.arange(4, 30), np.arange(4, 9)])
    ds = TokenWindowDataset(store, _fitted_tokens(), crop_length=8)
    windows = [ds[i]["tokens"] for i in range(len(ds))]
    predicted = [w[1:] for w in windows[:-1]]
    assert np.array_equal(np.concatenate(predicted), np.arange(5, 30))
    assert np.array_equal(windows[-1], np.arange(4, 9))


def test_token_shifts_are_memoised_per_piece_and_shift():
    rep = _fitted_tokens()
    store = PieceStore("tokens", arrays=[np.arange(4, 24)])
    ds = TokenCropDataset(store, rep, crop_length=4, augment_factor=30, pitch_shift=(1, 2))
    ToyTokens.transpose_calls = 0
    items = [ds[i]["tokens"] for i in range(len(ds))]
    assert ToyTokens.transpose_calls == 2  # once per shift
    assert all(x.min() >= 5 for x in items)


def test_whole_tunes_truncate_and_pad_per_batch():
    rep = _fitted_tokens()
    store = PieceStore("tokens", arrays=[np.arange(4, 40), np.arange(4, 10)])
    ds = WholeTuneDataset(store, rep, crop_length=16, augment_factor=2)
    assert len(ds) == 4 and list(ds.item_lengths()) == [17, 6, 17, 6]
    assert len(ds[0]["tokens"]) == 17 and len(ds[1]["tokens"]) == 6
    batch = ds.collate([ds[1], ds[3]])
    assert batch["tokens"].shape == (2, 6)


def test_grid_crop_must_be_a_multiple_of_4(tmp_path, monkeypatch):
    use_toy_reader(monkeypatch)
    folder = toy_corpus(tmp_path / "toys", n_files=2)
    with pytest.raises(ConfigError, match=r"--crop-length 30 is not a multiple of 4.*try 28 or 32"):
        build_datasets(DataConfig(data=str(folder), crop_length=30, num_prep_workers=0), ToyGrid(), log=None)
    assert DataConfig(crop_length=30).crop_for("tokens") == 30
    with pytest.raises(ConfigError, match="pitch-shift-min"):
        DataConfig(pitch_shift_min=3, pitch_shift_max=-3)
    with pytest.raises(ConfigError, match="val-fraction"):
        DataConfig(val_fraction=1.0)
    with pytest.raises(ConfigError, match="whole-tunes"):
        build_datasets(DataConfig(data=str(folder), whole_tunes=True, num_prep_workers=0), ToyGrid(), log=None)


def test_split_is_by_piece_deterministic_and_disjoint(tmp_path, monkeypatch):
    use_toy_reader(monkeypatch)
    folder = toy_corpus(tmp_path / "toys", n_files=8, tunes_per_file=5)
    cfg = DataConfig(data=str(folder), val_fraction=0.3, crop_length=4, num_prep_workers=0)
    train, val, report = build_datasets(cfg, ToyGrid(), log=None)
    train_src, val_src = set(train.store.sources), set(val.store.sources)
    assert not train_src & val_src and len(train_src | val_src) == 40
    assert {s.split("#")[0] for s in train_src} & {s.split("#")[0] for s in val_src}  # books split by tune
    again_train, again_val, _ = build_datasets(cfg, ToyGrid(), log=None)
    assert again_train.store.sources == train.store.sources and again_val.store.sources == val.store.sources
    other = DataConfig(data=str(folder), val_fraction=0.3, crop_length=4, num_prep_workers=0, split_seed=1)
    assert set(build_datasets(other, ToyGrid(), log=None)[1].store.sources) != val_src


def test_split_rules_for_small_corpora():
    keys = [f"k{i}" for i in range(50)]
    train, val = split_indices(keys, 0.2, seed=3)
    assert sorted(train + val) == list(range(50)) and 3 <= len(val) <= 20
    assert split_indices(list(reversed(keys)), 0.2, seed=3)[1] == sorted(49 - i for i in val)  # order-free
    assert split_indices(["only"], 0.9) == ([0], [])  # one piece always stays for training
    t, v = split_indices([f"p{i}" for i in range(4)], 0.25, seed=0)  # 4 * 0.25 >= 1: one held out at least
    assert len(v) >= 1 and len(t) >= 1
    assert split_indices(keys, 0.0) == (list(range(50)), [])


def test_memory_mapped_store_gives_the_same_items(tmp_path, monkeypatch):
    use_toy_reader(monkeypatch)
    folder = toy_corpus(tmp_path / "toys", n_files=6, length=20)
    base = dict(data=str(folder), crop_length=8, num_prep_workers=0, val_fraction=0.0)
    mem, _, _ = build_datasets(DataConfig(**base), ToyGrid(), log=None)
    mapped, _, report = build_datasets(DataConfig(**base, cache_in_memory=False), ToyGrid(), log=None)
    assert report.memory_mapped and mapped.store.memory_mapped and not mem.store.memory_mapped
    assert isinstance(mapped.store._mapped(), np.memmap)
    for i in range(len(mem)):
        assert np.array_equal(mem[i]["grid"], mapped[i]["grid"])
    clone = pickle.loads(pickle.dumps(mapped))  # what a DataLoader worker receives: the path, not the data
    assert clone.store._maps == {} and np.array_equal(clone[3]["grid"], mapped[3]["grid"])
    assert len(pickle.dumps(mapped.store)) < 2000
