"""Corpora larger than memory: packs in memory-mapped shards, and preparation that resumes after an interrupt."""
from __future__ import annotations

import pickle

import numpy as np
import pytest

import fractalmusic.data.cache as cache_mod
import fractalmusic.data.prepare as prepare_mod
from fractalmusic.data import DataConfig, build_datasets
from fractalmusic.io.midi import write_midi
from fractalmusic.piece import Piece, make_notes
from fractalmusic.representations.pianoroll import PianoRollRepresentation


def midi_folder(folder, n: int = 8):
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        rows = [(b * 0.5, 0.5 + (b % 3) * 0.25, 48 + (i * 5 + b * 7) % 36, 90) for b in range(40 + 8 * i)]
        write_midi(Piece(notes=make_notes(rows)), folder / f"song{i:02d}.mid")
    return folder


def cfg(folder, cache_dir, **kw) -> DataConfig:
    kw.setdefault("num_prep_workers", 0)
    kw.setdefault("val_fraction", 0.25)
    return DataConfig(data=str(folder), cache_dir=str(cache_dir), crop_length=16, **kw)


def test_preparation_resumes_where_it_was_interrupted(tmp_path, monkeypatch):
    folder = midi_folder(tmp_path / "songs")
    cache_dir = tmp_path / "cache"
    real_read = prepare_mod.read_file
    reads: list[str] = []

    def interrupted_read(path, *args, **kw):
        if len(reads) == 5:
            raise KeyboardInterrupt  # Ctrl-C while the sixth file is read
        reads.append(path)
        return real_read(path, *args, **kw)

    monkeypatch.setattr(prepare_mod, "read_file", interrupted_read)
    with pytest.raises(KeyboardInterrupt):
        build_datasets(cfg(folder, cache_dir), PianoRollRepresentation(), log=None)
    assert len(reads) == 5

    # again: the five files read before the interrupt come from the cache, only the other three are parsed
    resumed: list[str] = []
    monkeypatch.setattr(prepare_mod, "read_file", lambda path, *a, **k: resumed.append(path) or real_read(path, *a, **k))
    rep = PianoRollRepresentation()
    real_encode = rep.encode_time_major
    encodes: list[str] = []
    interrupted: list[bool] = []

    def interrupted_encode(piece, dtype=np.uint8):
        if len(encodes) == 4 and not interrupted:
            interrupted.append(True)
            raise KeyboardInterrupt  # and Ctrl-C again, while encoding
        encodes.append(piece.source)
        return real_encode(piece, dtype)

    monkeypatch.setattr(rep, "encode_time_major", interrupted_encode)
    with pytest.raises(KeyboardInterrupt):
        build_datasets(cfg(folder, cache_dir), rep, log=None)
    assert sorted(resumed) == sorted(set(map(str, sorted(folder.glob("*.mid")))) - set(reads))
    assert len(encodes) == 4

    # a third run parses nothing and encodes only the four pieces not encoded yet
    resumed.clear()
    encodes_before = list(encodes)
    train, val, report = build_datasets(cfg(folder, cache_dir), rep, log=None)
    assert resumed == [] and report.files_parsed == 0
    assert len(encodes) - len(encodes_before) == 8 - 4 and not set(encodes[4:]) & set(encodes_before)
    assert report.cache_hits["encoded"] == 4 and len(train.store) + len(val.store) == 8

    # and the result is the one an uninterrupted preparation gives
    fresh_train, fresh_val, _ = build_datasets(cfg(folder, tmp_path / "fresh"), PianoRollRepresentation(), log=None)
    for got, want in ((train.store, fresh_train.store), (val.store, fresh_val.store)):
        assert got.sources == want.sources
        assert all(np.array_equal(got[i], want[i]) for i in range(len(want)))


def test_items_come_from_memory_mapped_shards(tmp_path, monkeypatch):
    folder = midi_folder(tmp_path / "songs", n=10)
    monkeypatch.setattr(cache_mod, "SHARD_BYTES", 40_000)  # a few pieces per shard
    mapped, _, report = build_datasets(
        cfg(folder, tmp_path / "cache", cache_in_memory=False, val_fraction=0.0), PianoRollRepresentation(), log=None
    )
    store = mapped.store
    assert report.memory_mapped and store.memory_mapped and len(store.shard_paths) >= 3
    assert all(str(p).endswith(".npy") and "/packs/" in str(p) for p in store.shard_paths)
    for i in range(len(store)):
        assert isinstance(store[i], np.memmap)  # a view into a shard file, not a copy in memory
    assert {id(store._mapped(k)) for k in range(len(store.shard_paths))} == {id(m) for m in store._maps.values()}
    in_memory, _, _ = build_datasets(cfg(folder, tmp_path / "cache", val_fraction=0.0), PianoRollRepresentation(), log=None)
    assert not in_memory.store.memory_mapped
    for i in range(len(mapped)):
        assert np.array_equal(mapped[i]["grid"], in_memory[i]["grid"])
    clone = pickle.loads(pickle.dumps(mapped))  # a DataLoader worker gets the shard paths, never the data
    assert clone.store._maps == {} and len(pickle.dumps(mapped.store)) < 4000
    assert np.array_equal(clone[len(clone) - 1]["grid"], mapped[len(mapped) - 1]["grid"])

    # a shard lost from the cache: the pack is rebuilt from the per-file encodings, nothing is parsed again
    store.shard_paths and __import__("os").remove(store.shard_paths[1])
    again, _, report2 = build_datasets(
        cfg(folder, tmp_path / "cache", cache_in_memory=False, val_fraction=0.0), PianoRollRepresentation(), log=None
    )
    assert report2.files_parsed == 0 and report2.cache_misses.get("packs") == 1
    assert all(np.array_equal(again[i]["grid"], mapped[i]["grid"]) for i in range(len(mapped)))


def test_per_file_entries_are_written_in_bundles(tmp_path, monkeypatch):
    folder = midi_folder(tmp_path / "songs")
    root = tmp_path / "cache" / cache_mod.CACHE_LAYOUT
    train, val, report = build_datasets(cfg(folder, tmp_path / "cache"), PianoRollRepresentation(), log=None)
    assert report.files_parsed == 8
    # eight music files: one bundle of parsed pieces, one of encodings (each pointing at its rows in a pack shard)
    assert [p.suffix for p in (root / "pieces").iterdir()] == [".bundle"]
    assert [p.suffix for p in (root / "encoded").iterdir()] == [".bundle"]
    assert (root / "encoded").stat().st_size < 100_000  # no second copy of the rolls

    # with the index and packs gone, the bundles serve every file and the pieces' rows are encoded again
    for sub in ("index", "packs"):
        for p in (root / sub).iterdir():
            p.unlink()
    train2, val2, report2 = build_datasets(cfg(folder, tmp_path / "cache"), PianoRollRepresentation(), log=None)
    assert report2.files_parsed == 0 and report2.cache_hits["pieces"] == 8
    assert report2.cache_misses["encoded"] == 8  # their shards are gone
    for got, want in ((train2.store, train.store), (val2.store, val.store)):
        assert got.sources == want.sources and all(np.array_equal(got[i], want[i]) for i in range(len(want)))

    # a damaged bundle is as if missing: its files are parsed again, nothing fails
    (bundle,) = (root / "pieces").iterdir()
    bundle.write_bytes(bundle.read_bytes()[:100])
    (root / "index").joinpath(next((root / "index").iterdir()).name).unlink()
    _, _, report3 = build_datasets(cfg(folder, tmp_path / "cache"), PianoRollRepresentation(), log=None)
    assert report3.files_parsed == 8

    # a small BUNDLE_FILES: several bundles, all found again
    monkeypatch.setattr(cache_mod, "BUNDLE_FILES", 3)
    _, _, report4 = build_datasets(cfg(folder, tmp_path / "other"), PianoRollRepresentation(), log=None)
    assert len(list((tmp_path / "other" / cache_mod.CACHE_LAYOUT / "pieces").iterdir())) == 3
    for p in (tmp_path / "other" / cache_mod.CACHE_LAYOUT / "index").iterdir():
        p.unlink()
    _, _, report5 = build_datasets(cfg(folder, tmp_path / "other"), PianoRollRepresentation(), log=None)
    assert report5.files_parsed == 0 and report5.cache_hits["pieces"] == 8


def test_a_cache_folder_that_cannot_be_written_costs_only_the_cache(tmp_path, monkeypatch):
    folder = midi_folder(tmp_path / "songs", n=6)
    want_train, want_val, _ = build_datasets(cfg(folder, tmp_path / "c", no_cache=True), PianoRollRepresentation(),
                                             log=None)

    def full_disk(path, write):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(cache_mod, "_atomic", full_disk)
    monkeypatch.setattr(cache_mod, "BUNDLE_FILES", 2)  # bundles fill (and fail to be written) while reading
    for in_memory in (True, False):
        train, val, report = build_datasets(cfg(folder, tmp_path / "c", cache_in_memory=in_memory),
                                            PianoRollRepresentation(), log=None)
        assert report.files_parsed == 6
        for got, want in ((train.store, want_train.store), (val.store, want_val.store)):
            assert got.sources == want.sources and all(np.array_equal(got[i], want[i]) for i in range(len(want)))
    assert not any(p.is_file() for p in (tmp_path / "c").rglob("*"))
