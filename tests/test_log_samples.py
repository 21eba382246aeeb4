"""--log-samples-every-n-steps: samples in the run folder, their statistics in metrics.jsonl, training unchanged."""
from __future__ import annotations

import json

import pytest

from conftest import fmusic

pytestmark = pytest.mark.usefixtures("one_thread")


def records(out, split):
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    return [r for r in rows if r["split"] == split]


def train(out, capsys, *extra):
    code, _, err = fmusic(capsys, "train", "--repr", "abc", "--generator", "lstm", "--hidden-size", "16",
                          "--embedding-dim", "8", "--num-layers", "1", "--crop-length", "32", "--batch-size", "4",
                          "--max-pieces", "30", "--num-prep-workers", "0", "--no-progress", "--device", "cpu",
                          "--max-steps", "4", "--val-batches", "1", "--log-every-n-steps", "1", "--seed", "3",
                          "--output-dir", out, *extra)
    assert code == 0, err


def test_abc_samples_are_written_and_measured_without_changing_training(tmp_path, capsys):
    train(tmp_path / "plain", capsys)
    out = tmp_path / "run"
    train(out, capsys, "--log-samples-every-n-steps", "2", "--log-samples-num", "3")
    samples = records(out, "samples")
    assert [r["step"] for r in samples] == [2, 4]
    for r in samples:
        assert r["samples"] == 3 and 0.0 <= r["parse_ok"] <= 1.0 and "notes" in r
        folder = out / "samples" / f"step_{r['step']:08d}"
        assert r["folder"] == str(folder)
        assert sorted(p.name for p in folder.glob("sample_*.abc")) == [f"sample_00{i}.abc" for i in range(3)]
        # parsed tunes also get MIDI and a picture
        parsed = round(r["parse_ok"] * 3)
        assert len(list(folder.glob("sample_*.mid"))) == len(list(folder.glob("sample_*.png"))) == parsed
    # sampling did not disturb the training RNG: the losses are those of the run without it
    assert [r["loss"] for r in records(out, "train")] == [r["loss"] for r in records(tmp_path / "plain", "train")]


def test_grid_samples_get_pictures_and_midi(tmp_path, capsys):
    out = tmp_path / "roll"
    code, _, err = fmusic(capsys, "train", "--repr", "pianoroll", "--generator", "mar", "--model-size", "tiny",
                          "--crop-length", "32", "--batch-size", "2", "--max-steps", "2", "--max-pieces", "12",
                          "--no-progress", "--device", "cpu", "--num-prep-workers", "0", "--no-recommend-sampling",
                          "--log-samples-every-n-steps", "2", "--output-dir", out)
    assert code == 0, err
    (r,) = records(out, "samples")
    assert r["step"] == 2 and r["samples"] == 2 and r["notes_per_beat"] > 0 and r["notes"] > 0
    folder = out / "samples" / "step_00000002"
    assert len(list(folder.glob("sample_*.png"))) == 2 and len(list(folder.glob("sample_*.mid"))) == 2
