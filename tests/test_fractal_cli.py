"""The fractal generators through the real checkpoint, API and CLI: sampling, primers and infilling of a chorale."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from conftest import run_cli


@pytest.fixture(scope="module")
def mar_ckpt(tmp_path_factory):
    """An (untrained) tiny MAR checkpoint over the real pianoroll representation: enough for shapes and masks."""
    from fractalmusic.generators.fractal import MARGenerator
    from fractalmusic.representations.pianoroll import PianoRollRepresentation
    from fractalmusic.training.checkpoint import make_payload, save_checkpoint

    torch.manual_seed(0)
    rep = PianoRollRepresentation()
    gen = MARGenerator.build({"model_size": "tiny", "max_crop_length": 128}, rep.spec())
    path = tmp_path_factory.mktemp("mar") / "mar.pt"
    save_checkpoint(path, make_payload(rep, gen, data_config=json.dumps({"crop_length": 64})))
    return path


def test_api_infill_keeps_every_cell_outside_the_mask(mar_ckpt, chorale_path):
    import fractalmusic
    from fractalmusic.api import grid_request
    from fractalmusic.io import read_pieces

    model = fractalmusic.load(mar_ckpt)
    primer = model.representation.encode(read_pieces(chorale_path)[0])
    canvas, mask, _ = grid_request(primer, 64, mask_start=16, mask_end=32)
    out = model.generator.sample(2, 64, primer=canvas, mask=mask, seed=3, num_iter=(2, 2, 2))
    assert out.shape == (2, 128, 64)
    for roll in out:
        assert np.array_equal(roll[:, :16], primer[:, :16])
        assert np.array_equal(roll[:, 32:64], primer[:, 32:64])
    # a pitch band: new accompaniment under a kept melody
    canvas, mask, _ = grid_request(primer, 64, mask_pitch_low=0, mask_pitch_high=59)
    out = model.generator.sample(1, 64, primer=canvas, mask=mask, seed=4, num_iter=(2, 2, 2))
    assert np.array_equal(out[0][60:], primer[60:, :64])


def test_cli_samples_rolls_and_infills_a_chorale(mar_ckpt, chorale_path, tmp_path):
    from fractalmusic.io import read_pieces

    res = run_cli("sample", mar_ckpt, "--num-samples", "2", "--target-width", "128", "--to", "mid,png",
                  "--num-iter", "2", "--seed", "1", "--out-dir", tmp_path / "S", cwd=tmp_path)
    assert res.exit_code == 0, res.output
    for i in range(2):
        assert (tmp_path / "S" / f"sample_{i:03d}.mid").exists() and (tmp_path / "S" / f"sample_{i:03d}.png").exists()

    res = run_cli("sample", mar_ckpt, "--primer", chorale_path, "--target-width", "64", "--mask-start", "16",
                  "--mask-end", "32", "--num-samples", "1", "--num-iter", "2", "--seed", "2", "--to", "mid",
                  "--out-dir", tmp_path / "I", cwd=tmp_path)
    assert res.exit_code == 0, res.output
    out = read_pieces(tmp_path / "I" / "sample_000.mid")[0]
    primer = read_pieces(chorale_path)[0]
    got = {(round(n["onset"] * 4), int(n["pitch"]), round(n["duration"] * 4)) for n in out.notes}
    steps = [(round(n["onset"] * 4), int(n["pitch"]), round(n["duration"] * 4)) for n in primer.notes]
    outside = [s for s in steps if (s[0] + s[2] <= 16 or 32 <= s[0]) and s[0] + s[2] <= 64]
    assert outside and all(s in got for s in outside), "a primer note outside steps 16-32 was lost"


def test_sample_uses_the_recommended_note_temperature_unless_told(mar_ckpt, tmp_path):
    from fractalmusic.training.checkpoint import load_checkpoint, save_checkpoint

    path = tmp_path / "rec.pt"
    payload = dict(load_checkpoint(mar_ckpt))
    payload["sampling"] = json.dumps({"temperature": 1.2, "note_temperature": 0.2})
    save_checkpoint(path, payload)
    args = ("sample", path, "--num-samples", "1", "--target-width", "32", "--num-iter", "2", "--seed", "1",
            "--to", "mid")
    res = run_cli(*args, "--out-dir", tmp_path / "a", cwd=tmp_path)
    assert res.exit_code == 0, res.output
    assert "recommended temperature 1.2, note-temperature 0.2" in res.output
    res = run_cli(*args, "--note-temperature", "0.5", "--out-dir", tmp_path / "b", cwd=tmp_path)
    assert res.exit_code == 0 and "recommended temperature 1.2 " in res.output + " " and "note-" not in res.output
    res = run_cli(*args, "--temperature", "1", "--out-dir", tmp_path / "c", cwd=tmp_path)
    assert res.exit_code == 0 and "recommended" not in res.output
    res = run_cli(*args, "--note-temperature", "0", "--out-dir", tmp_path / "d", cwd=tmp_path)
    assert res.exit_code == 2 and "note-temperature" in res.output
