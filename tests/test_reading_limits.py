"""Bounded reading and sizes (issue 13): the folder walk, the ABC limits, copies before the split, sample and render
sizes, and reader workers that die with their parent. The CLI cases are in tests/adversarial."""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from fractalmusic import limits
from fractalmusic.data.corpora import resolve_corpus
from fractalmusic.errors import ConfigError, DataError, FractalMusicError, PieceReadError
from fractalmusic.piece import Piece, make_notes


def _touch(path: Path, data: bytes = b"MThd") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


# ------------------------------------------------------------------------------------------------ the walk
def test_walk_visits_each_real_folder_once_and_reports_loops_and_special_files(tmp_path):
    root = tmp_path / "c"
    _touch(root / "a" / "one.mid")
    _touch(root / "a" / "b" / "two.abc", b"X:1\nK:C\nC\n")
    (root / "a" / "b" / "up").symlink_to("../..")  # a loop
    (root / "a" / "self").symlink_to("self")  # a link to itself
    (root / "again").symlink_to("a")  # a second way into a: searched once, not a loop
    (root / "a" / "same.mid").symlink_to("one.mid")  # one file, two names: read once
    (root / "gone.mid").symlink_to("nowhere.mid")
    os.mkfifo(root / "pipe.mid")
    os.mkfifo(root / "pipe.txt")  # not a music suffix: not even looked at
    with open(root / "big.mid", "wb") as f:
        f.truncate(limits.MAX_FILE_BYTES + 1)
    corpus = resolve_corpus(str(root))
    assert [p.relative_to(root).as_posix() for p in corpus.files] == ["a/b/two.abc", "a/one.mid"]
    reasons = {Path(p).name: why for p, why in corpus.skipped}
    assert reasons["up"].startswith("symbolic link loop")
    assert reasons["self"].startswith("cannot be followed")
    assert reasons["pipe.mid"] == "not a regular file (a FIFO)"
    assert reasons["gone.mid"] == "symbolic link to nothing"
    assert "over the 64.0 MiB limit" in reasons["big.mid"]
    assert set(reasons) == {"up", "self", "pipe.mid", "gone.mid", "big.mid"}


def test_a_folder_with_only_special_files_says_why(tmp_path):
    os.mkfifo(tmp_path / "pipe.mid")
    with pytest.raises(DataError, match=r"holds no music files .*1 skipped: 1 not a regular file \(a FIFO\)"):
        resolve_corpus(str(tmp_path))
    with pytest.raises(DataError, match=r"pipe.mid: not a regular file \(a FIFO\)"):
        resolve_corpus(str(tmp_path / "pipe.mid"))


def test_list_file_entries_that_are_fifos_or_loops_are_skipped(tmp_path):
    good = _touch(tmp_path / "good.mid")
    os.mkfifo(tmp_path / "pipe.mid")
    (tmp_path / "loop").symlink_to("loop")
    lst = tmp_path / "train.txt"
    lst.write_text(f"{good.name}\npipe.mid\nloop\n")
    corpus = resolve_corpus(str(lst))
    assert corpus.files == [good]
    reasons = dict(corpus.skipped)
    assert reasons["pipe.mid"] == "not a regular file (a FIFO)" and reasons["loop"].startswith("cannot be read")


def test_readers_never_open_special_or_oversized_files(tmp_path):
    from fractalmusic.io import read_pieces

    os.mkfifo(tmp_path / "pipe.abc")
    with pytest.raises(PieceReadError, match="a FIFO"):
        read_pieces(tmp_path / "pipe.abc")  # would block forever if it were opened
    with open(tmp_path / "big.mid", "wb") as f:
        f.truncate(limits.MAX_FILE_BYTES + 1)
    with pytest.raises(PieceReadError, match="over the 64.0 MiB limit"):
        read_pieces(tmp_path / "big.mid")


def test_midi_bytes_in_hand_are_read_without_the_file_and_bounded_by_their_size(tmp_path, monkeypatch):
    """`read_pieces(path, data=...)`: a MIDI file's bytes read already (preparation hashed them) are read without
    looking at the file again, and more bytes than MAX_FILE_BYTES are refused with the file's size reason."""
    from fractalmusic.io import read_pieces, write_piece

    write_piece(Piece(notes=make_notes([(0, 1, 60), (1, 1, 64)])), tmp_path / "two.mid")
    data = (tmp_path / "two.mid").read_bytes()
    monkeypatch.setattr(limits, "MAX_FILE_BYTES", len(data))
    (piece,) = read_pieces(tmp_path / "gone.mid", data=data)  # no such file: only the bytes are read
    assert piece.notes["pitch"].tolist() == [60, 64] and piece.source == str(tmp_path / "gone.mid")
    with pytest.raises(PieceReadError, match="over the .* limit for one music file"):
        read_pieces(tmp_path / "two.mid", data=data + b"\0")
    with pytest.raises(PieceReadError, match="no such file"):
        read_pieces(tmp_path / "gone.abc", data=b"X:1")  # other formats read the file themselves


# ------------------------------------------------------------------------------------------------ ABC limits
def test_abc_tunes_over_the_limits_are_left_out_with_a_reason(tmp_path):
    from fractalmusic.io.abc import read_abc, tune_problem

    assert tune_problem("X:1\nT:ok\nK:C\nCDE|\n") is None
    assert tune_problem("X:1\nT:" + "t" * 2000 + "\nK:C\nC\n") == "title is 2,002 characters long (limit 1,000)"
    assert tune_problem("X:1\nK:C\n" + "C" * 9000 + "\n") == "line 3 is 9,000 characters long (limit 8,192)"
    long_tune = "X:1\nK:C\n" + "CDEF GABc|\n" * 2000
    assert tune_problem(long_tune) == f"tune is {len(long_tune):,} characters long (limit 16,384 for one tune)"
    book = tmp_path / "book.abc"
    book.write_text("X:1\nT:good\nK:C\nCDE|\n\nX:7\nK:C\n" + "C" * 9000 + "\n")
    errors: list = []
    pieces = read_abc(book, notes=False, errors=errors)
    assert [p.title for p in pieces] == ["good"]
    assert errors == [(f"{book}#X7", "line 3 is 9,000 characters long (limit 8,192)")]


def test_too_many_tunes_in_a_book_count_as_one_skip(tmp_path, monkeypatch):
    from fractalmusic.io import abc

    monkeypatch.setattr(abc, "MAX_TUNES_PER_BOOK", 3)
    book = tmp_path / "book.abc"
    book.write_text("".join(f"X:{n}\nT:t{n}\nK:C\nC\n\n" for n in range(1, 6)))
    errors: list = []
    assert len(abc.read_abc(book, notes=False, errors=errors)) == 3
    assert errors == [(f"{book}#X...", "over the limit of 3 tunes per book (2 not read)")]


def test_pieces_longer_than_the_beat_limit_are_refused():
    piece = Piece(notes=make_notes([(0.0, limits.MAX_PIECE_BEATS + 10.0, 60)]))
    assert "over the limit of 20,000 beats" in limits.piece_problem(piece)
    short = Piece(notes=make_notes([(0.0, 4.0, 60)]))
    assert limits.piece_problem(short) is None
    assert "steps for one piano roll" in limits.piece_problem(Piece(notes=make_notes([(0.0, 19000.0, 60)])), 96)
    assert limits.summary_problem({"n_notes": 1_000_001, "end_beat": 10.0}) == (
        "has 1,000,001 notes, over the limit of 1,000,000 for one piece")
    assert limits.summary_problem({"n_notes": 10, "end_beat": 30000.0}).startswith("lasts 30,000 beats")


# ------------------------------------------------------------------------------------------------ copies
def test_copies_are_one_piece_and_never_straddle_the_split(tmp_path):
    from fractalmusic.data.build import prepare_data
    from fractalmusic.data.config import DataConfig
    from fractalmusic.data.split import content_key
    from fractalmusic.representations.abc import ABCRepresentation

    a = Piece(abc="X:1\nT:Same\nK:G\nGABc|\n")
    b = Piece(abc="X:2\n%a comment\nT:Same\n\nK:G\nGABc|  \n")
    assert content_key(a) == content_key(b) != content_key(Piece(abc="X:1\nT:Same\nK:G\nGABd|\n"))
    tune = "X:{n}\nT:Tune {k}\nM:4/4\nL:1/8\nK:G\nGABc dBAG|FGAB c{k}AFD|\n\n"
    text = "".join(tune.format(n=n, k=n % 5) for n in range(200))  # 5 distinct tunes, 40 copies each
    (tmp_path / "book.abc").write_text(text)
    cfg = DataConfig(data=str(tmp_path / "book.abc"), val_fraction=0.5, cache_dir=str(tmp_path / "cache"))
    prepared = prepare_data(cfg, ABCRepresentation(), log=None)
    assert prepared.report.duplicates == 195
    keys = [r.summary["content"] for r in prepared.train_refs + prepared.val_refs]
    assert len(keys) == len(set(keys)) == 5
    assert any("195 copies of pieces already read dropped before the split" in x for x in prepared.report.lines())


def test_validation_pieces_that_copy_a_training_piece_are_dropped(tmp_path):
    from fractalmusic.data.build import prepare_data
    from fractalmusic.data.config import DataConfig
    from fractalmusic.representations.abc import ABCRepresentation

    tune = "X:{n}\nT:Tune {k}\nM:4/4\nL:1/8\nK:G\nGABc dBAG|FGAB c{k}AFD|\n\n"
    (tmp_path / "train.abc").write_text("".join(tune.format(n=n, k=n) for n in range(3)))
    (tmp_path / "valid.abc").write_text(tune.format(n=9, k=1) + tune.format(n=10, k=7))  # a copy of tune 1, and 7
    cfg = DataConfig(data=str(tmp_path / "train.abc"), val_data=str(tmp_path / "valid.abc"),
                     cache_dir=str(tmp_path / "cache"))
    prepared = prepare_data(cfg, ABCRepresentation(), log=None)
    assert [r.source.split("#")[1] for r in prepared.val_refs] == ["X10"]
    assert any("valid.abc: 1 validation pieces that copy a training piece dropped before the split (valid.abc#X9 = "
               "train.abc#X1)" in x for x in prepared.report.lines())


# ------------------------------------------------------------------------------------------------ sizes
def test_sample_sizes_are_checked_against_limits_and_free_memory(monkeypatch):
    limits.check_sample_size("grid", 4, 128)
    limits.check_sample_size("tokens", 4, 1000, vocab_size=100)
    with pytest.raises(ConfigError, match="over the limit of 10,000 pieces in one batch; lower --num-samples"):
        limits.check_sample_size("grid", 10001, 128)
    with pytest.raises(ConfigError, match="--target-width 16,388 is over the limit of 16,384 steps"):
        limits.check_sample_size("grid", 1, 16388)
    with pytest.raises(ConfigError, match="--length 100,001 is over the limit of 100,000 tokens"):
        limits.check_sample_size("tokens", 1, 100001)
    monkeypatch.setattr(limits, "available_memory", lambda device=None: 10 * 1024**2)
    with pytest.raises(ConfigError, match=r"4 samples of 1,024 steps need at least 12.5 MiB, but cpu has 10.0 MiB"):
        limits.check_sample_size("grid", 4, 1024)
    limits.check_sample_size("grid", 4, 512)  # 6.2 MiB: within 80% of 10 MiB
    assert limits.estimate_sample_bytes("grid", 2, 8) == 2 * 8 * 128 * 25
    monkeypatch.setattr(limits, "available_memory", lambda device=None: None)  # unknown: only the hard limits
    limits.check_sample_size("grid", 10000, 16384)


def test_available_memory_reads_the_platform():
    free = limits.available_memory()
    assert free is None or free > 0


def test_wav_over_the_limit_is_refused_before_rendering(tmp_path):
    from fractalmusic.io.audio import render_wav, synthesize

    long = Piece(notes=make_notes([(0.0, 1.0, 60), (4000.0, 1.0, 62)]))  # 2,000 s at 120 qpm
    with pytest.raises(FractalMusicError, match="WAV rendering is limited to 1,800 s"):
        render_wav(long, tmp_path / "x.wav")
    assert not (tmp_path / "x.wav").exists()
    held = Piece(notes=make_notes([(0.0, 300.0, 40)]))  # a note held 150 s: synthesised for 60 s, then silence
    audio = synthesize(held, 4000)
    assert len(audio) == int(np.ceil((150.25) * 4000)) and np.all(audio[61 * 4000 :] == 0)
    assert np.abs(audio[: 4000]).max() > 0.5


def test_musicxml_of_too_many_notes_is_refused_before_music21(tmp_path):
    from fractalmusic.io import write_piece

    piece = Piece(notes=make_notes([(i * 0.25, 0.25, 60) for i in range(limits.MAX_MUSICXML_NOTES + 1)]))
    start = time.monotonic()
    with pytest.raises(FractalMusicError, match="has 4,001 notes; MusicXML is written for at most 4,000"):
        write_piece(piece, tmp_path / "x.musicxml")
    assert time.monotonic() - start < 5 and not (tmp_path / "x.musicxml").exists()


def test_png_of_a_long_piece_is_drawn_coarser(tmp_path):
    from fractalmusic.io.image import render_png, roll_image

    piece = Piece(notes=make_notes([(0.0, 1.0, 60), (15000.0, 1.0, 64)]))
    img, lo, hi = roll_image(piece, 4)
    assert img.shape[1] == limits.MAX_PNG_STEPS and img.dtype == np.float32
    start = time.monotonic()
    render_png(piece, tmp_path / "long.png")
    assert (tmp_path / "long.png").stat().st_size < 2 * 1024 * 1024 and time.monotonic() - start < 30


# ------------------------------------------------------------------------------------------------ workers
_POOL = """
import os, sys, time
from concurrent.futures import ProcessPoolExecutor
from fractalmusic.data.workers import die_with_parent
pool = ProcessPoolExecutor(2, initializer=die_with_parent, initargs=(os.getpid(),))
list(pool.map(abs, [1, 2, 3, 4]))
print(" ".join(str(p) for p in pool._processes), flush=True)
time.sleep(60)
"""


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ")[-1][:1] not in ("Z", "X")
    except OSError:
        return False


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_pool_workers_die_with_a_killed_parent():
    proc = subprocess.Popen([sys.executable, "-c", _POOL], stdout=subprocess.PIPE, text=True)
    try:
        workers = [int(x) for x in proc.stdout.readline().split()]
        assert len(workers) == 2 and all(_alive(w) for w in workers)
        proc.kill()
        proc.wait()
        deadline = time.monotonic() + 10
        while any(_alive(w) for w in workers) and time.monotonic() < deadline:
            time.sleep(0.05)
        left = [w for w in workers if _alive(w)]
        for w in left:
            os.kill(w, 9)
        assert not left
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
