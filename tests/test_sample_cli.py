"""`fmusic sample`: reproducible files, the same samples as the Python API, one-line errors."""
from __future__ import annotations

import re

import pytest

import fractalmusic
from conftest import fmusic, run_cli
from fractalmusic import api
from test_api import train_abc_checkpoint

pytestmark = pytest.mark.usefixtures("one_thread")
ONE_THREAD = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    path, _ = train_abc_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny.pt")
    return path



def assert_one_error_line(code, err, *fragments):
    assert code != 0
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    for fragment in fragments:
        assert fragment in lines[0]


def test_same_seed_twice_gives_identical_files_and_matches_api(ckpt, tmp_path):
    runs = []
    for name in ("s1", "s2"):
        out_dir = tmp_path / name
        res = run_cli("sample", ckpt, "--num-samples", "4", "--to", "abc,mid", "--seed", "1",
                      "--out-dir", out_dir, "--device", "cpu", cwd=tmp_path, env=ONE_THREAD)
        assert res.exit_code == 0, res.output
        m = re.search(r"wrote 4 samples to (.+); ABC: (\d) of 4 tunes parse with music21", res.stdout)
        assert m and m.group(1) == str(out_dir), res.stdout
        runs.append((out_dir, int(m.group(2))))
    (d1, parsed), (d2, _) = runs
    abc1 = sorted(p.name for p in d1.glob("*.abc"))
    assert abc1 == ["sample_000.abc", "sample_001.abc", "sample_002.abc", "sample_003.abc", "samples.abc"]
    for name in abc1:
        assert (d1 / name).read_text() == (d2 / name).read_text()
    assert len(list(d1.glob("sample_*.mid"))) == parsed >= 1  # the memorised tune parses and becomes MIDI
    # a notebook with the same seed gets the same tunes
    pieces = fractalmusic.load(ckpt).sample(4, seed=1)
    assert (d1 / "samples.abc").read_text() == api.abc_book(pieces)


def test_primer_and_strip_primer(ckpt, tmp_path, capsys):
    code, out, err = fmusic(capsys, "sample", ckpt, "-n", "2", "--length", "40", "--seed", "3", "--to", "abc",
                            "--primer", "X:1\\nT:", "--out-dir", tmp_path / "p")
    assert code == 0, err
    assert "ABC: " in out
    assert (tmp_path / "p" / "sample_000.abc").read_text().startswith("X:1\nT:")
    code, _, err = fmusic(capsys, "sample", ckpt, "-n", "2", "--length", "40", "--seed", "3", "--to", "abc",
                          "--primer", "X:1\\nT:", "--strip-primer", "--out-dir", tmp_path / "q")
    assert code == 0, err
    kept = (tmp_path / "p" / "sample_001.abc").read_text().splitlines()
    stripped = (tmp_path / "q" / "sample_001.abc").read_text().splitlines()
    # same draws without the primer: the title line loses its "T:" (decode puts X:1 back on top)
    assert kept[1].startswith("T:") and stripped[1] == kept[1][2:]


def test_not_a_checkpoint_is_one_error_line(tmp_path):
    bogus = tmp_path / "bogus.pt"
    bogus.write_bytes(b"\x00\x01 definitely not torch")
    res = run_cli("sample", bogus, "--out-dir", tmp_path / "out", cwd=tmp_path, env=ONE_THREAD)
    assert_one_error_line(res.exit_code, res.stderr, "bogus.pt", "checkpoint")
    assert not (tmp_path / "out").exists()


def test_out_of_vocabulary_primer_is_one_error_line(ckpt, tmp_path, capsys):
    code, _, err = fmusic(capsys, "sample", ckpt, "--primer", "X:1\nK:G\n\u2603\u4e2d", "--out-dir", tmp_path / "o")
    assert_one_error_line(code, err)
    assert not (tmp_path / "o").exists()  # nothing written, no folder left behind


def test_unwritable_out_dir_is_one_error_line(ckpt, tmp_path, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    code, _, err = fmusic(capsys, "sample", ckpt, "--seed", "1", "--out-dir", blocker / "samples")
    assert_one_error_line(code, err, "cannot write to output directory")


@pytest.mark.parametrize(
    "args,fragment",
    [
        (["--num-iter", "4"], "--num-iter"),
        (["--target-width", "64"], "--target-width"),
        (["--mask-start", "4"], "grid"),
        (["--to", "abc,mp3"], "mp3"),
        (["--top-p", "1.5"], "top-p"),
        (["--device", "cuda:7"] if not __import__("torch").cuda.is_available() else ["--device", "nope"], "device"),
    ],
)
def test_bad_options_are_one_error_line(ckpt, tmp_path, capsys, args, fragment):
    code, _, err = fmusic(capsys, "sample", ckpt, "--length", "5", "--out-dir", tmp_path / "x", *args)
    assert_one_error_line(code, err, fragment)


@pytest.fixture
def grid_ckpt(tmp_path):
    """A checkpoint of a test grid representation + a generator that records its requests (registered here)."""
    import json

    from fractalmusic import plugins
    from fractalmusic.training.checkpoint import make_payload, save_checkpoint
    from test_api import _OnsetGrid, _RecordingGridGenerator

    plugins.register("representation", _OnsetGrid.name, _OnsetGrid)
    plugins.register("generator", _RecordingGridGenerator.name, _RecordingGridGenerator)
    _RecordingGridGenerator.calls = []
    rep = _OnsetGrid()
    path = tmp_path / "grid.pt"
    gen = _RecordingGridGenerator.build({}, rep.spec())
    save_checkpoint(path, make_payload(rep, gen, data_config=json.dumps({"crop_length": 32})))
    try:
        yield path, _RecordingGridGenerator.calls
    finally:
        plugins.unregister("representation", _OnsetGrid.name)
        plugins.unregister("generator", _RecordingGridGenerator.name)


def test_grid_sampling_builds_primer_mask_and_passes_fractal_options(grid_ckpt, tmp_path, capsys):
    from fractalmusic.io import write_piece
    from fractalmusic.piece import Piece, make_notes

    path, calls = grid_ckpt
    primer = tmp_path / "primer.mid"
    write_piece(Piece(notes=make_notes([(0.0, 1.0, 60), (1.0, 1.0, 64), (2.0, 1.0, 67)])), primer)
    code, out, err = fmusic(capsys, "sample", path, "-n", "2", "--target-width", "24", "--primer", primer,
                            "--mask-start", "4", "--mask-end", "8", "--num-iter", "4,2", "--seed", "9",
                            "--out-dir", tmp_path / "g")
    assert code == 0, err
    call = calls[-1]
    assert call["n"] == 2 and call["length"] == 24 and call["seed"] == 9 and call["num_iter"] == (4, 2)
    assert call["primer"].shape == (128, 24) and call["primer"][60, 0] == 2 and call["primer"][67, 8] == 2
    assert call["mask"].shape == (128, 24) and call["mask"][:, 4:8].all() and call["mask"].sum() == 128 * 4
    names = sorted(p.name for p in (tmp_path / "g").iterdir())
    assert names == ["sample_000.mid", "sample_000.png", "sample_001.mid", "sample_001.png"]  # grid defaults
    assert out.strip().endswith(f"wrote 2 samples to {tmp_path / 'g'}")
    # continuation by default: everything after the primer's 12 steps; the width defaults to the crop length
    code, _, err = fmusic(capsys, "sample", path, "-n", "1", "--primer", primer, "--to", "mid",
                          "--out-dir", tmp_path / "h")
    assert code == 0, err
    assert calls[-1]["length"] == 32 and calls[-1]["mask"][:, 12:].all() and not calls[-1]["mask"][:, :12].any()
    code, _, err = fmusic(capsys, "sample", path, "--length", "16", "--target-width", "24", "--out-dir", tmp_path / "i")
    assert_one_error_line(code, err, "disagree")
    code, _, err = fmusic(capsys, "sample", path, "--target-width", "30", "--out-dir", tmp_path / "j")
    assert_one_error_line(code, err, "multiple of 4")
    assert not (tmp_path / "j").exists()  # options are checked before the output folder is made
