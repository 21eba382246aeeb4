"""`fmusic train` end to end with the real data layer and generators (tiny models, a few steps)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from conftest import fmusic
from fractalmusic.training.checkpoint import load_checkpoint
from fractalmusic.training import recommend

TINY_LSTM = ("--repr", "abc", "--generator", "lstm", "--hidden-size", "16", "--embedding-dim", "8", "--num-layers",
             "1", "--crop-length", "16", "--batch-size", "4", "--max-pieces", "30", "--num-prep-workers", "0",
             "--log-every-n-steps", "1", "--no-progress", "--device", "cpu")



def one_error_line(code, err) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1 and lines[0].startswith("error: "), (code, err)
    return lines[0]


def train_losses(out: Path) -> dict[int, float]:
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    steps = [r["step"] for r in rows if r["split"] == "train"]
    assert len(steps) == len(set(steps)), "duplicate metrics lines"
    return {r["step"]: r["loss"] for r in rows if r["split"] == "train"}


def test_unknown_option_gets_a_suggestion(capsys):
    code, _, err = fmusic(capsys, "train", "--repr", "abc", "--generator", "lstm", "--hiden-size", "3")
    assert one_error_line(code, err) == "error: no such option: --hiden-size (did you mean '--hidden-size'?)"
    code, _, err = fmusic(capsys, "train", "--repr", "abc", "--generator", "lstm", "--max-step", "3")
    assert "did you mean '--max-steps'" in one_error_line(code, err)
    code, _, err = fmusic(capsys, "train", "--repr", "abc", "--generator", "lstm", "--batch-size", "many")
    assert "--batch-size: 'many' is not a valid int" in one_error_line(code, err)


def test_help_shows_the_selected_plugins_options(capsys):
    code, out, _ = fmusic(capsys, "train", "--repr", "pianoroll", "--generator", "mar", "--help")
    assert code == 0
    for option in ("--max-steps", "--precision", "--resume-from-checkpoint", "--crop-length", "--pitch-shift-min",
                   "--steps-per-beat", "--generator-types", "--model-size", "--model_type"):
        assert option in out, option
    assert "--hidden-size" not in out and "--header-mode" not in out
    assert "[default: 32]" in out  # --batch-size
    code, out, _ = fmusic(capsys, "train", "-h")
    assert code == 0 and "--hidden-size" in out and "--model-size" in out and "--header-mode" in out


def test_options_answered_elsewhere(capsys):
    code, _, err = fmusic(capsys, "train", "--devices", "0,1", "--device", "cpu")
    assert "names GPUs, but --device cpu was given" in one_error_line(code, err)
    code, _, err = fmusic(capsys, "train", "--vocab_type", "syllable")
    assert "--vocab_type must be char or word" in one_error_line(code, err)
    code, _, err = fmusic(capsys, "train", "--repr", "pianoroll", "--generator", "lstm")
    assert "works on tokens representations" in one_error_line(code, err)


def test_user_errors_before_any_work(capsys, tmp_path):
    code, _, err = fmusic(capsys, "train", *TINY_LSTM, "--resume-from-checkpoint", tmp_path / "none.pt")
    assert "no such checkpoint file" in one_error_line(code, err)
    junk = tmp_path / "junk.pt"
    junk.write_text("not a checkpoint")
    code, _, err = fmusic(capsys, "train", *TINY_LSTM, "--resume-from-checkpoint", junk)
    assert "not a fractalmusic checkpoint (not a PyTorch checkpoint file)" in one_error_line(code, err)
    code, _, err = fmusic(capsys, "train", *TINY_LSTM, "--resume-from-checkpoint", "last")
    assert "needs --output-dir" in one_error_line(code, err)
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    code, _, err = fmusic(capsys, "train", *TINY_LSTM, "--output-dir", blocker / "run")
    assert "cannot write there" in one_error_line(code, err)
    code, _, err = fmusic(capsys, "train", *TINY_LSTM, "--precision", "16", "--output-dir", tmp_path / "r")
    assert "--precision 16 needs a CUDA GPU" in one_error_line(code, err)


def test_seed_spellings_train_and_resume(capsys, tmp_path):
    out = tmp_path / "run"
    code, stdout, err = fmusic(
        capsys, "train", "--model_type", "lstm", "--vocab_type", "char", "--learning_rate", "0.01",
        "--train_batch_size", "4", "--seq_length", "16", "--max_grad_norm", "0.5", "--save_dir", out,
        "--hidden_size", "16", "--embedding_dim", "8", "--num_layers", "1", "--max-pieces", "30",
        "--num-prep-workers", "0", "--max-steps", "3", "--decay-steps", "5", "--log-every-n-steps", "1",
        "--checkpoint-every-n-steps", "3", "--val-batches", "2", "--no-progress", "--device", "cpu",
    )
    assert code == 0, err
    assert "parameters" in stdout and f"fmusic sample {out / 'checkpoints' / 'best.pt'}" in stdout
    hp = json.loads((out / "hparams.json").read_text())
    assert (hp["representation"]["name"], hp["generator"]["name"]) == ("abc", "lstm")
    assert hp["train"]["lr"] == 0.01 and hp["train"]["batch_size"] == 4 and hp["train"]["grad_clip"] == 0.5
    assert hp["data"]["crop_length"] == 16 and hp["data"]["data"] == "folk"
    assert hp["generator"]["config"]["hidden_size"] == 16
    ck = load_checkpoint(out / "checkpoints" / "last.pt")
    assert ck["step"] == 3
    assert torch.load(out / "checkpoints" / "best.pt", weights_only=True)["generator"]["name"] == "lstm"

    # resume: plugins, model and training options come from the checkpoint; --max-steps goes further
    code, stdout, err = fmusic(capsys, "train", "--resume-from-checkpoint", out / "checkpoints" / "last.pt",
                               "--max-steps", "5", "--no-progress")
    assert code == 0, err
    assert "resumed from" in stdout
    assert sorted(train_losses(out)) == [1, 2, 3, 4, 5]
    ck = load_checkpoint(out / "checkpoints" / "last.pt")
    assert ck["step"] == 5 and json.loads(ck["train_config"])["lr"] == 0.01

    code, _, err = fmusic(capsys, "train", "--resume-from-checkpoint", "last", "--output-dir", out,
                          "--max-steps", "7", "--hidden-size", "64")
    assert "checkpoint's generator has 16" in one_error_line(code, err)
    code, _, err = fmusic(capsys, "train", "--resume-from-checkpoint", "last", "--output-dir", out,
                          "--repr", "words")
    assert "trained with --repr abc" in one_error_line(code, err)


def test_cli_resume_is_exact_with_the_real_data_layer(capsys, tmp_path):
    common = (*TINY_LSTM, "--decay-steps", "6", "--val-check-interval-steps", "2", "--checkpoint-every-n-steps", "50")
    a, b = tmp_path / "a", tmp_path / "b"
    assert fmusic(capsys, "train", *common, "--max-steps", "6", "--output-dir", a)[0] == 0
    assert fmusic(capsys, "train", *common, "--max-steps", "3", "--output-dir", b)[0] == 0
    code, _, err = fmusic(capsys, "train", "--resume-from-checkpoint", "last", "--output-dir", b, "--max-steps", "6")
    assert code == 0, err
    assert train_losses(a) == train_losses(b)


@pytest.mark.parametrize("generator", [
    ("--generator", "mar"),
    ("--generator", "mar", "--generator-types", "mar,ar,ar"),
    ("--generator", "ar", "--scan-order", "column_major"),
], ids=["mar", "mar-ar-ar", "ar-column-major"])
def test_pianoroll_fractal_generators_train(capsys, tmp_path, generator):
    out = tmp_path / "fractal"
    code, stdout, err = fmusic(
        capsys, "train", "--repr", "pianoroll", *generator, "--model-size", "tiny", "--crop-length", "64",
        "--max-pieces", "4", "--num-prep-workers", "0", "--batch-size", "2", "--max-steps", "3",
        "--no-progress", "--device", "cpu", "--output-dir", out, "--val-batches", "1", "--val-fraction", "0.25",
        # the end-of-training grid recommender fits its sampling to a budget of the training time (one pair of
        # temperatures, a few seconds, for a run this short): the default mar run keeps it, the others skip it
        *(() if len(generator) == 2 else ("--no-recommend-sampling",)),
    )
    assert code == 0, err
    assert "cell/s" in stdout
    ck = load_checkpoint(out / "checkpoints" / "last.pt")
    if len(generator) == 2:
        rec = ck.sampling
        assert "recommended sampling settings" in stdout and rec["at_end"] and rec["step"] == 3
        assert rec["note_temperature"] in recommend.GRID_NOTE_TEMPERATURES and 1 <= len(rec["grid_pairs"]) <= 15
        assert rec["grid_data"]["density"] > 0
    assert ck["generator"]["name"] == generator[1] and ck["step"] == 3
    config = json.loads(ck["generator"]["config"])
    if "--generator-types" in generator:
        assert tuple(config["generator_types"]) == ("mar", "ar", "ar")
    if "--scan-order" in generator:
        assert config["scan_order"] == "column_major"
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert all(r["units"] > 0 for r in rows)
    # the loss split into note and empty cells is logged for validation too, not only for training
    val = [r for r in rows if r["split"] == "val"]
    assert val and all(r["loss_note_cells"] > 0 and r["loss_empty_cells"] > 0 for r in val)


def test_generator_training_defaults_apply_unless_given(capsys, tmp_path):
    out = tmp_path / "run"
    code, stdout, err = fmusic(capsys, "train", *TINY_LSTM, "--max-steps", "1", "--output-dir", out)
    assert code == 0, err
    assert "generator lstm trains with --lr 0.005" in stdout
    assert json.loads((out / "hparams.json").read_text())["train"]["lr"] == 0.005
    code, stdout, err = fmusic(capsys, "train", *TINY_LSTM, "--max-steps", "1", "--lr", "0.02", "--output-dir", out)
    assert code == 0, err
    assert "generator lstm trains with" not in stdout
    assert json.loads((out / "hparams.json").read_text())["train"]["lr"] == 0.02


def test_representation_data_defaults_apply_by_group_unless_given(capsys, tmp_path):
    from fractalmusic.representations.abc import ABCRepresentation

    pitch = next(g for g in ABCRepresentation.data_defaults if "pitch_shift_min" in g)
    out = tmp_path / "run"
    # TINY_LSTM gives no pitch-shift option: abc's pitch group applies; options it does not name keep their values
    code, stdout, err = fmusic(capsys, "train", *TINY_LSTM, "--max-steps", "1", "--output-dir", out)
    assert code == 0, err
    line = next(ln for ln in stdout.splitlines() if ln.startswith("representation abc trains with"))
    assert f"--pitch-shift-min {pitch['pitch_shift_min']} --pitch-shift-max {pitch['pitch_shift_max']}" in line
    data = json.loads((out / "hparams.json").read_text())["data"]
    assert (data["pitch_shift_min"], data["pitch_shift_max"]) == (pitch["pitch_shift_min"], pitch["pitch_shift_max"])
    assert data["whole_tunes"] is False and data["crop_length"] == 16
    # one option of a group given: the whole group is the user's (the other keeps the data layer's default)
    code, stdout, err = fmusic(capsys, "train", *TINY_LSTM, "--max-steps", "1", "--pitch-shift-max", "1",
                               "--output-dir", out)
    assert code == 0, err
    assert "representation abc trains with" not in stdout
    data = json.loads((out / "hparams.json").read_text())["data"]
    assert (data["pitch_shift_min"], data["pitch_shift_max"]) == (0, 1)


def test_train_pieces_line_names_the_item_kind(capsys, tmp_path):
    # abc trains on random crops of the data layer's default length unless --whole-tunes is given
    at = TINY_LSTM.index("--crop-length")
    args = TINY_LSTM[:at] + TINY_LSTM[at + 2:]
    out = tmp_path / "run"
    code, stdout, err = fmusic(capsys, "train", *args, "--max-steps", "1", "--output-dir", out)
    assert code == 0, err
    assert "training items per epoch (random crops of 256 tokens)" in stdout
    data = json.loads((out / "hparams.json").read_text())["data"]
    assert data["whole_tunes"] is False and data["crop_length"] is None
    code, stdout, err = fmusic(capsys, "train", *args, "--max-steps", "1", "--whole-tunes", "--crop-length", "640",
                               "--output-dir", tmp_path / "whole")
    assert code == 0, err
    assert "training items per epoch (whole tunes (up to 641 tokens))" in stdout
    data = json.loads((tmp_path / "whole" / "hparams.json").read_text())["data"]
    assert data["whole_tunes"] is True and data["crop_length"] == 640


def test_representation_data_defaults_are_data_options():
    import dataclasses

    from fractalmusic import data as fdata
    from fractalmusic.config import config_from_dict
    from fractalmusic.representations.abc import ABCRepresentation

    names = {f.name for f in dataclasses.fields(fdata.DataConfig)}
    for group in ABCRepresentation.data_defaults:
        assert group and set(group) <= names
        config_from_dict(fdata.DataConfig, dict(group), where="data options")
