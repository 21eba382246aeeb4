"""Preparation: reading through the cache, skipped files with reasons, the vocabulary cache, real chorales."""
from __future__ import annotations

import os
import shutil

import mido
import numpy as np
import pytest
from test_data_fakes import ToyGrid, ToyTokens, toy_corpus, use_toy_reader, write_toy

from fractalmusic.data import DataConfig, build_datasets
from fractalmusic.data.cache import Cache
from fractalmusic.data.corpora import resolve_corpus
from fractalmusic.data import prepare
from fractalmusic.data.prepare import group_reasons, read_corpus
from fractalmusic.errors import DataError


def _cfg(data, **kw) -> DataConfig:
    kw.setdefault("num_prep_workers", 0)
    kw.setdefault("crop_length", 8)
    return DataConfig(data=str(data), **kw)



def test_a_first_look_leaves_the_packs_to_a_run_that_parses_nothing(tmp_path, monkeypatch):
    """`fmusic data stats` (defer_packs): the run that parses files caches the pieces and the vocabulary but writes
    no encodings or packs; the next run parses nothing, encodes and writes them; the one after that opens the
    packs. What each run reports and stores is the same."""
    reader = use_toy_reader(monkeypatch)
    folder = toy_corpus(tmp_path / "toys", n_files=5, tunes_per_file=3)
    packs = tmp_path / ".fm-cache" / "data-v2" / "packs"
    runs = []
    for _ in range(3):
        train, val, report = build_datasets(_cfg(folder, val_fraction=0.3), ToyTokens(), log=None, defer_packs=True)
        runs.append((report, [train.store[i].tolist() for i in range(len(train.store))], train.store.sources,
                     val.store.sources))
        if len(runs) == 1:
            assert report.files_parsed == 5 and not packs.exists()
            assert not (tmp_path / ".fm-cache" / "data-v2" / "encoded").exists()
            assert report.vocabulary == "fitted" and report.cache_misses.get("packs") == 2
    assert len(reader.calls) == 5  # read once
    assert runs[1][0].files_parsed == 0 and runs[1][0].cache_misses.get("packs") == 2 and packs.is_dir()
    assert runs[2][0].cache_hits == {"index": 1, "vocab": 1, "packs": 2}
    for report, stored, train_sources, val_sources in runs[1:]:
        assert stored == runs[0][1] and train_sources == runs[0][2] and val_sources == runs[0][3]
        assert (report.train_units, report.val_units) == (runs[0][0].train_units, runs[0][0].val_units)

def test_second_run_reads_nothing_and_fits_nothing(tmp_path, monkeypatch):
    reader = use_toy_reader(monkeypatch)
    folder = toy_corpus(tmp_path / "toys", n_files=5, tunes_per_file=3)
    ToyTokens.fit_calls = 0
    train1, val1, report1 = build_datasets(_cfg(folder, val_fraction=0.3), ToyTokens(), log=None)
    assert sorted(reader.calls) == [f"t{i:02d}.abc" for i in range(5)]
    assert ToyTokens.fit_calls == 1 and report1.vocabulary == "fitted" and report1.files_parsed == 5

    rep2 = ToyTokens()
    train2, val2, report2 = build_datasets(_cfg(folder, val_fraction=0.3), rep2, log=None)
    assert len(reader.calls) == 5  # the reader was not called again
    assert ToyTokens.fit_calls == 1 and report2.vocabulary == "cached" and report2.files_parsed == 0
    # one index, one vocabulary and one pack per split: no per-file entry is even opened
    assert report2.cache_hits == {"index": 1, "vocab": 1, "packs": 2} and not report2.cache_misses
    assert rep2.pitches is not None and rep2.vocab_size == train1.representation.vocab_size
    assert [train2.store[i].tolist() for i in range(len(train2.store))] == [
        train1.store[i].tolist() for i in range(len(train1.store))
    ]
    assert train2.store.sources == train1.store.sources and val2.store.sources == val1.store.sources

    # without the index and packs, the per-file entries still spare the reader
    for sub in ("index", "packs"):
        shutil.rmtree(tmp_path / ".fm-cache" / "data-v2" / sub)
    _, _, report3 = build_datasets(_cfg(folder, val_fraction=0.3), ToyTokens(), log=None)
    assert len(reader.calls) == 5 and report3.cache_hits["pieces"] == 5 and report3.cache_hits["encoded"] == 5

    # a changed file is read again; --no-cache reads everything and writes nothing
    write_toy(folder, "t01.abc", [60, 62, 64, 65, 67, 69, 71, 72, 74])
    build_datasets(_cfg(folder, val_fraction=0.3), ToyTokens(), log=None)
    assert reader.calls[5:] == ["t01.abc"]
    cache_files = sorted(p for p in (tmp_path / ".fm-cache").rglob("*") if p.is_file())
    build_datasets(_cfg(folder, val_fraction=0.3, no_cache=True), ToyTokens(), log=None)
    assert len(reader.calls) == 6 + 5
    assert sorted(p for p in (tmp_path / ".fm-cache").rglob("*") if p.is_file()) == cache_files


def test_bad_files_are_skipped_with_reasons_and_good_ones_used(tmp_path, monkeypatch):
    use_toy_reader(monkeypatch)
    folder = tmp_path / "mixed"
    write_toy(folder, "good.mid", [60, 62, 64, 65, 67])
    write_toy(folder, "junk.mid", "JUNK")
    write_toy(folder, "book.abc", [60, 64, 67], "BAD", [62, 65, 69])
    lines = []
    train, val, report = build_datasets(_cfg(folder, val_fraction=0.0), ToyGrid(), log=lines.append)
    assert train.n_pieces == 3 and val is None
    summary = [line for line in lines if "read" in line][0]
    assert "3 pieces from 2 files read, 2 skipped: " in summary
    assert "1 bad tune (book.abc#X2)" in summary and "1 not a toy file (junk.mid)" in summary
    assert report.n_val == 0 and any("without validation" in line for line in report.lines())
    # cached failures are reported again without reading
    lines2 = []
    build_datasets(_cfg(folder, val_fraction=0.0), ToyGrid(), log=lines2.append)
    assert [x for x in lines2 if "read" in x][0].split(" [")[0] == summary.split(" [")[0]


def test_nothing_readable_is_one_data_error(tmp_path, monkeypatch):
    use_toy_reader(monkeypatch)
    folder = tmp_path / "bad"
    write_toy(folder, "a.mid", "JUNK")
    write_toy(folder, "b.mid", "JUNK again")
    with pytest.raises(DataError, match=r"no readable music in .*2 skipped: 2 not a toy file \(a.mid, b.mid\)"):
        build_datasets(_cfg(folder), ToyGrid(), log=None)


def test_parallel_reading_matches_in_process(tmp_path, monkeypatch):
    use_toy_reader(monkeypatch)  # forked workers inherit the patched reader
    folder = toy_corpus(tmp_path / "toys", n_files=4, tunes_per_file=2)
    corpus = resolve_corpus(str(folder))
    serial = read_corpus(corpus, True, Cache(None), workers=0)
    parallel = read_corpus(corpus, True, Cache(None), workers=2)
    assert [r.source for r in serial.refs] == [r.source for r in parallel.refs]
    assert [r.key for r in serial.refs] == [r.key for r in parallel.refs]
    assert parallel.read_now == 4


def test_a_small_job_is_read_in_process_without_starting_workers(tmp_path, monkeypatch):
    reader = use_toy_reader(monkeypatch)
    folder = toy_corpus(tmp_path / "toys", n_files=12)

    def no_pool(*args, **kwargs):
        raise AssertionError("a pool was started for a job that reads in milliseconds")

    monkeypatch.setattr(prepare, "ProcessPoolExecutor", no_pool)
    result = read_corpus(resolve_corpus(str(folder)), True, Cache(None), workers=2)
    assert result.read_now == 12 and len(reader.calls) == 12 and len(result.refs) == 12


def test_a_long_job_hands_the_files_left_to_workers(tmp_path, monkeypatch):
    reader = use_toy_reader(monkeypatch)  # forked workers inherit the patched reader
    folder = toy_corpus(tmp_path / "toys", n_files=12)
    corpus = resolve_corpus(str(folder))
    serial = read_corpus(corpus, True, Cache(None), workers=0)
    # every job counts as long: after one file read here, the other eleven go to two workers
    monkeypatch.setattr(prepare, "PROBE_SECONDS", 0.0)
    monkeypatch.setattr(prepare, "POOL_AFTER_SECONDS", 0.0)
    before = len(reader.calls)
    parallel = read_corpus(corpus, True, Cache(None), workers=2)
    assert len(reader.calls) - before == 1  # the workers' calls happen in their own processes
    assert parallel.read_now == 12
    assert [r.source for r in serial.refs] == [r.source for r in parallel.refs]
    assert [r.key for r in serial.refs] == [r.key for r in parallel.refs]
    # the workers also make each file's entry (summaries, content hashes): the same as made here
    assert [r.summary for r in serial.refs] == [r.summary for r in parallel.refs]
    assert [f.meta for f in serial.files] == [f.meta for f in parallel.files]


def test_workers_only_when_the_files_left_would_keep_one_process_busy():
    worth = prepare._worth_a_pool
    assert worth(done=10, left=1000, seconds=0.1, workers=4) == 0  # still probing
    assert worth(done=10, left=20, seconds=0.3, workers=4) == 0  # 0.6 s left: quicker in-process
    assert worth(done=10, left=1000, seconds=0.3, workers=4) == 4  # 30 s left
    assert worth(done=10, left=12, seconds=5.0, workers=4) == 3  # at least MIN_FILES_PER_WORKER files each
    assert worth(done=10, left=1000, seconds=0.3, workers=1) == 0


def test_a_new_state_version_of_the_representation_refits_the_vocabulary(tmp_path, monkeypatch):
    # a cached vocabulary written by an older version of a representation (one whose fit learnt less) is not reused
    use_toy_reader(monkeypatch)
    folder = toy_corpus(tmp_path / "toys", n_files=3)
    ToyTokens.fit_calls = 0
    build_datasets(_cfg(folder, val_fraction=0), ToyTokens(), log=None)
    _, _, again = build_datasets(_cfg(folder, val_fraction=0), ToyTokens(), log=None)
    assert ToyTokens.fit_calls == 1 and again.vocabulary == "cached"
    monkeypatch.setattr(ToyTokens, "state_version", ToyTokens.state_version + 1)
    _, _, newer = build_datasets(_cfg(folder, val_fraction=0), ToyTokens(), log=None)
    assert ToyTokens.fit_calls == 2 and newer.vocabulary == "fitted"


def test_preparation_gives_the_older_objects_back_to_the_collector(tmp_path, monkeypatch):
    import gc

    use_toy_reader(monkeypatch)
    folder = toy_corpus(tmp_path / "toys", n_files=3)
    seen = []
    monkeypatch.setattr(prepare, "_collect", lambda *a, real=prepare._collect: seen.append(gc.get_freeze_count())
                        or real(*a))
    assert gc.get_freeze_count() == 0
    build_datasets(_cfg(folder, val_fraction=0), ToyGrid(), log=None)
    assert seen and seen[0] > 0  # frozen while reading
    assert gc.get_freeze_count() == 0  # and handed back
    gc.freeze()  # someone else's freeze stays
    try:
        frozen = gc.get_freeze_count()
        build_datasets(_cfg(folder, val_fraction=0), ToyGrid(), log=None)
        # not unfrozen (that would leave 0); frozen objects freed meanwhile leave the count, so no exact equality
        assert gc.get_freeze_count() > frozen // 2
    finally:
        gc.unfreeze()


def test_max_pieces_reads_only_what_it_needs(tmp_path, monkeypatch):
    reader = use_toy_reader(monkeypatch)
    folder = toy_corpus(tmp_path / "toys", n_files=10)
    train, _, report = build_datasets(_cfg(folder, max_pieces=3, val_fraction=0), ToyGrid(), log=None)
    assert train.n_pieces == 3 and len(reader.calls) == 3
    assert any("--max-pieces 3" in n for n in report.notes)


def test_group_reasons_format():
    assert group_reasons([]) == "0 skipped"
    text = group_reasons(
        [("/x/junk.mid", "not a MIDI file"), ("/x/empty.mid", "no notes"), ("/x/j2.mid", "not a MIDI file")]
    )
    assert text == "3 skipped: 2 not a MIDI file (junk.mid, j2.mid), 1 no notes (empty.mid)"


@pytest.fixture
def chorale_folder(tmp_path, chorale_paths):
    folder = tmp_path / "chorales"
    folder.mkdir()
    for p in chorale_paths[:2]:
        shutil.copy(p, folder / p.name)
    (folder / "junk.mid").write_bytes(np.random.default_rng(0).integers(0, 256, 300, dtype=np.uint8).tobytes())
    empty = mido.MidiFile()
    empty.tracks.append(mido.MidiTrack())
    empty.save(folder / "empty.mid")
    return folder


def test_real_chorales_with_a_junk_and_an_empty_midi(chorale_folder, cli, tmp_path):
    cache = Cache(tmp_path / ".fm-cache")
    result = read_corpus(resolve_corpus(str(chorale_folder)), True, cache, workers=0)
    assert len(result.refs) == 2 and all(r.summary["n_notes"] > 50 for r in result.refs)
    reasons = dict((os.path.basename(s), r) for s, r in result.skipped_files)
    assert set(reasons) == {"junk.mid", "empty.mid"}
    assert "not a MIDI file" in reasons["junk.mid"] and "no notes" in reasons["empty.mid"]
    line = result.summary_line()
    assert "2 pieces from 2 files read, 2 skipped:" in line and "(junk.mid)" in line and "(empty.mid)" in line

    # through the command line, with the cache the reading above filled (another process: nothing parsed)
    pytest.importorskip("fractalmusic.representations.pianoroll")
    out = cli("data", "stats", "--data", str(chorale_folder), "--repr", "pianoroll", "--crop-length", "64",
              "--steps-per-beat", "2")
    assert out.exit_code == 0, out.output
    assert "2 skipped:" in out.stdout and "(junk.mid)" in out.stdout and "(empty.mid)" in out.stdout
    assert "0 files parsed" in out.stdout
    assert "pieces: 2 training, 0 validation" in out.stdout and "pitch range:" in out.stdout
    steps = next(line for line in out.stdout.splitlines() if line.startswith("steps:"))
    beats = sum(r.summary["end_beat"] for r in result.refs)
    assert int(steps.split()[1].replace(",", "")) == pytest.approx(2 * beats, abs=2)  # --steps-per-beat 2


def test_workers_are_forked_with_ctrl_c_held_back():
    import signal

    from fractalmusic.data.workers import sigint_held

    with sigint_held():
        assert signal.SIGINT in signal.pthread_sigmask(signal.SIG_BLOCK, set())
        pid = os.fork()
        if pid == 0:  # the child (a worker before its initializer): SIGINT must still be held back
            os._exit(0 if signal.SIGINT in signal.pthread_sigmask(signal.SIG_BLOCK, set()) else 1)
        _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert signal.SIGINT not in signal.pthread_sigmask(signal.SIG_BLOCK, set())  # the mask is as it was


def test_midi_files_are_read_once_for_their_digest_and_their_notes(tmp_path, monkeypatch):
    """Preparation hands the bytes it hashed to the MIDI reader (no second read of the file); past the byte budget
    the reader opens the files itself; both give the same pieces."""
    from fractalmusic.io import midi as midi_io
    from fractalmusic.piece import Piece
    from fractalmusic.representations.pianoroll import PianoRollRepresentation

    folder = tmp_path / "midi"
    folder.mkdir()
    rng = np.random.default_rng(3)
    for k in range(4):
        notes = np.zeros(12, dtype=prepare.NOTE_DTYPE)
        notes["onset"] = np.arange(12) * 0.5
        notes["duration"] = 0.5
        notes["pitch"] = rng.integers(50, 80, 12)
        notes["velocity"] = 90
        midi_io.write_midi(Piece(notes=notes), folder / f"m{k}.mid")
    opened: list[str] = []
    real = midi_io.read_file_bytes
    monkeypatch.setattr(midi_io, "read_file_bytes", lambda path, *a: opened.append(str(path)) or real(path, *a))

    def run(**kw):
        train, val, report = build_datasets(_cfg(folder, val_fraction=0.25, no_cache=True, **kw),
                                            PianoRollRepresentation(), log=None)
        return [train.store[i].tolist() for i in range(len(train.store))], train.store.sources, val.store.sources

    once = run()
    assert opened == []  # every file was read once, for its digest
    monkeypatch.setattr(prepare, "KEEP_READ_BYTES", 0)
    assert run() == once and len(opened) == 4  # no budget: the reader reads each file itself


def _midi_folder(folder, n_files: int, seed: int = 5):
    """`n_files` small MIDI files: two tracks (one of drums in every third file), a tempo change in some."""
    from fractalmusic.io import midi as midi_io
    from fractalmusic.piece import Piece

    folder.mkdir()
    rng = np.random.default_rng(seed)
    for k in range(n_files):
        n = int(rng.integers(20, 60))
        notes = np.zeros(n, dtype=prepare.NOTE_DTYPE)
        notes["onset"] = np.sort(rng.integers(0, 96, n)) / 3
        notes["duration"] = rng.integers(1, 12, n) / 4
        notes["pitch"] = rng.integers(36, 90, n)
        notes["velocity"] = rng.integers(20, 127, n)
        notes["program"] = np.where(np.arange(n) % 2, 0, 33)
        notes["is_drum"] = (k % 3 == 0) & (np.arange(n) % 4 == 0)
        tempos = [(0.0, 100.0)] + ([(8.0, 150.0)] if k % 2 else [])
        midi_io.write_midi(Piece(notes=notes, tempos=tempos), folder / f"m{k:02d}.mid")
    return folder


def test_reader_workers_work_ahead_for_midi_words(tmp_path, monkeypatch):
    """With AHEAD_WORKERS workers or more, the reader workers work out each piece's MIDI words (`work_ahead`) and
    the main process fits and encodes from them: the vocabulary and the stores are those of a run in one process;
    with fewer workers nothing is worked ahead."""
    from fractalmusic.representations.words import WordsRepresentation

    folder = _midi_folder(tmp_path / "midi", 12)
    taken: list[bool] = []
    real_take = WordsRepresentation.take_ahead
    monkeypatch.setattr(WordsRepresentation, "take_ahead",
                        lambda self, piece, work: taken.append(work is not None) or real_take(self, piece, work))

    def run(workers: int):
        rep = WordsRepresentation(source="midi")
        train, val, report = build_datasets(_cfg(folder, val_fraction=0.25, no_cache=True,
                                                 num_prep_workers=workers), rep, log=None)
        return rep.words, [train.store[i].tolist() for i in range(len(train.store))], train.store.sources

    alone = run(0)
    assert taken == []
    monkeypatch.setattr(prepare, "PROBE_SECONDS", 0.0)  # every job counts as long: workers read 11 of the 12
    monkeypatch.setattr(prepare, "POOL_AFTER_SECONDS", 0.0)
    monkeypatch.setattr(prepare, "AHEAD_WORKERS", 2)
    assert run(2) == alone
    assert taken.count(True) == 11
    taken.clear()
    monkeypatch.setattr(prepare, "AHEAD_WORKERS", 3)  # two workers are too few: the main process does it
    assert run(2) == alone and True not in taken


def test_many_files_are_hashed_by_threads_as_one_thread_would(tmp_path, monkeypatch):
    """`_entries` with threads: the same entries (digests, byte-identical copies dropped, unreadable files skipped
    with their reason, sizes) as in one thread, and MIDI bytes kept for the reader up to KEEP_READ_BYTES, in order."""
    folder = tmp_path / "many"
    folder.mkdir()
    rng = np.random.default_rng(7)
    for k in range(prepare.DIGEST_THREADS_FROM + 20):
        size = int(rng.integers(1, 5000))
        (folder / f"f{k:03d}.mid").write_bytes(b"MThd" + (b"copy" * 100 if k % 9 == 0 else rng.bytes(size)))
    (folder / "dir.mid").mkdir()  # cannot be read as a file
    paths = sorted(folder.iterdir())
    monkeypatch.setattr(prepare, "KEEP_READ_BYTES", 40_000)
    monkeypatch.setattr(prepare, "DIGEST_WINDOW", 16)

    def entries(threads: int):
        result = prepare.ReadCorpus(None, True, [], [], [], [])
        out = prepare._entries(paths, True, "v", result, None, threads)
        return ([(e.path, e.digest, e.key, e.size, e.data) for e in out], result.skipped_files, result.duplicates)

    one, many = entries(0), entries(4)
    assert one == many
    assert [p for p, _ in one[1]] == [str(folder / "dir.mid")] and one[2]  # the copies of f000.mid's bytes
    kept = [len(data) for *_, data in one[0] if data is not None]
    assert 0 < sum(kept) <= 40_000 and len(kept) < len(one[0])


def test_files_holding_many_bytes_go_to_workers_unprobed():
    worth = prepare._worth_a_pool
    assert worth(done=0, left=1000, seconds=0.0, workers=4, left_bytes=prepare.POOL_BYTES) == 4
    assert worth(done=0, left=1000, seconds=0.0, workers=4, left_bytes=prepare.POOL_BYTES - 1) == 0  # probe first
    assert worth(done=0, left=6, seconds=0.0, workers=4, left_bytes=prepare.POOL_BYTES) == 0  # too few files


def test_cached_notes_are_arrays_of_their_own(tmp_path):
    """Each load of notes from a bundle is an array of its own: it can be written, and neither another load nor
    the bundle sees the write; holding many loads keeps no file open (a run holds the notes of many files)."""
    import os
    cache = Cache(tmp_path / "c")
    notes = np.zeros(5, dtype=prepare.NOTE_DTYPE)
    notes["pitch"] = [60, 62, 64, 65, 67]
    cache.save_pieces("k", {"error": None, "pieces": []}, notes)
    assert cache.load_notes("k") is not notes  # gathered, not yet written: a copy
    cache.save_pieces("empty", {"error": "no notes", "pieces": []}, np.zeros(0, dtype=prepare.NOTE_DTYPE))
    cache.flush()
    again = Cache(tmp_path / "c")
    loaded, other = again.load_notes("k"), again.load_notes("k")
    assert loaded.tolist() == notes.tolist() and loaded.flags.writeable
    loaded["pitch"] += 1
    assert other.tolist() == notes.tolist()
    assert Cache(tmp_path / "c").load_notes("k").tolist() == notes.tolist()
    assert len(again.load_notes("empty")) == 0
    fds = len(os.listdir("/proc/self/fd")) if os.path.isdir("/proc/self/fd") else None
    held = [again.load_notes("k") for _ in range(50)]
    if fds is not None:
        assert len(os.listdir("/proc/self/fd")) < fds + 5
    assert all(h.tolist() == notes.tolist() for h in held)
