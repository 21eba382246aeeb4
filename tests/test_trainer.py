"""The trainer, driven with the fake plugins of tests/fakes.py (no real representation or generator needed)."""
from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))
import fakes  # noqa: E402

from fractalmusic.errors import CheckpointError, ConfigError, DataError  # noqa: E402
from fractalmusic.training import Trainer, TrainConfig, TrainingError  # noqa: E402
from fractalmusic.training.checkpoint import load_checkpoint, save_checkpoint  # noqa: E402
from fractalmusic.training.schedule import lr_factor  # noqa: E402
from fractalmusic.training.trainer import skip_batches  # noqa: E402


def records(out: Path, split: str | None = None) -> list[dict]:
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    return [r for r in rows if split is None or r["split"] == split]


def make_trainer(out, val=True, model=None, data=None, **cfg):
    base = dict(batch_size=4, log_every_n_steps=1, val_check_interval_steps=4, checkpoint_every_n_steps=4,
                warmup_steps=2, progress=False, tensorboard=False, output_dir=str(out))
    base.update(cfg)
    rep, gen = fakes.build(**(model or {}), seed=base.get("seed", 0))
    train = data if data is not None else fakes.FakeSequences(10, 9)
    val_ds = fakes.FakeSequences(4, 9, seed=99) if val else None
    return Trainer(gen, rep, TrainConfig(**base), train, val_ds, make_loader=fakes.make_loader,
                   echo=lambda *_: None)


def test_fit_writes_metrics_hparams_and_checkpoints(tmp_path):
    out = tmp_path / "run"
    stats = make_trainer(out, max_steps=8, save_top_k=1).fit()
    assert stats["step"] == 8 and stats["stop_reason"] == "finished"
    train = records(out, "train")
    val = records(out, "val")
    assert [r["step"] for r in train] == list(range(1, 9))
    assert [r["step"] for r in val] == [4, 8]
    for r in train + val:
        assert r["bits_per_unit"] == pytest.approx(r["loss"] / math.log(2))
        assert r["perplexity"] == pytest.approx(math.exp(r["loss"]))
    # lr logged is the one each step used: warm-up 1/2, 2/2, then cosine from the peak towards 0
    assert train[0]["lr"] == pytest.approx(0.5e-3)
    assert train[1]["lr"] == pytest.approx(1e-3) == train[2]["lr"]
    assert train[-1]["lr"] < train[3]["lr"] < 1e-3
    assert all(r["units_per_s"] > 0 for r in train)
    # units: 10 sequences of 9 tokens per epoch = 80 predictions; epochs of 3 steps (4 + 4 + 2 sequences)
    assert sum(r["units"] for r in train[:3]) == 80
    assert stats["units"] == sum(r["units"] for r in train)
    hp = json.loads((out / "hparams.json").read_text())
    assert hp["representation"]["name"] == "fake-tokens" and hp["generator"]["name"] == "fake-gru"
    assert hp["train"]["max_steps"] == 8 and hp["num_parameters"] > 0
    ck = out / "checkpoints"
    names = sorted(p.name for p in ck.iterdir())
    best_val = min(r["loss"] for r in val)
    best_step = [r["step"] for r in val if r["loss"] == best_val][0]
    assert names == sorted(["last.pt", "best.pt", f"step_{best_step:08d}-val_loss_{best_val:.4f}.pt"])
    last = torch.load(ck / "last.pt", weights_only=True)
    best = load_checkpoint(ck / "best.pt")
    assert last["step"] == 8 and best["step"] == best_step
    assert json.loads(best["trainer_state"])["best_value"] == pytest.approx(best_val)


def test_training_lowers_the_loss(tmp_path):
    out = tmp_path / "run"
    make_trainer(out, val=False, max_steps=60, lr=2e-2, warmup_steps=0, log_every_n_steps=10,
                 checkpoint_every_n_steps=60, model={"hidden_size": 24, "dropout": 0.0}).fit()
    train = records(out, "train")
    assert train[-1]["loss"] < 0.6 * train[0]["loss"]


def run_losses(out) -> list[float]:
    return [r["loss"] for r in records(out, "train")]


@pytest.mark.parametrize("first,accumulate", [(4, 1), (3, 1), (2, 2)])
def test_resume_is_exact(tmp_path, first, accumulate):
    """2N steps in one run == N steps, resume from last.pt, N more: same per-step losses and weights."""
    total = 2 * first
    common = dict(accumulate_grad_batches=accumulate, decay_steps=total, val_check_interval_steps=2,
                  checkpoint_every_n_steps=100)
    a = tmp_path / "a"
    make_trainer(a, max_steps=total, **common).fit()
    b = tmp_path / "b"
    make_trainer(b, max_steps=first, **common).fit()
    resumed = make_trainer(b, max_steps=total, resume_from_checkpoint="last", **common)
    stats = resumed.fit()
    assert stats["step"] == total
    losses_a, losses_b = run_losses(a), run_losses(b)
    assert len(losses_a) == total and losses_b == losses_a  # exact, not approximately
    val_a = {r["step"]: r["loss"] for r in records(a, "val")}
    val_b = {r["step"]: r["loss"] for r in records(b, "val")}  # b also validated at its stop, step N
    assert all(val_b[s] == v for s, v in val_a.items())
    wa = load_checkpoint(a / "checkpoints" / "last.pt")
    wb = load_checkpoint(b / "checkpoints" / "last.pt")
    for k, v in wa["model"].items():
        assert torch.equal(v, wb["model"][k]), k
    assert (wa["epoch"], wa["batch_in_epoch"]) == (wb["epoch"], wb["batch_in_epoch"])


def test_resume_uses_the_checkpoint_path_and_truncates_newer_metrics(tmp_path):
    out = tmp_path / "run"
    make_trainer(out, max_steps=4, checkpoint_every_n_steps=2, save_top_k=-1, decay_steps=6).fit()
    ck = out / "checkpoints"
    step2 = next(ck.glob("step_00000002-*.pt"))
    stats = make_trainer(out, max_steps=6, resume_from_checkpoint=str(step2), decay_steps=6).fit()
    assert stats["step"] == 6
    steps = [r["step"] for r in records(out, "train")]
    assert steps == [1, 2, 3, 4, 5, 6]  # the first run's steps 3 and 4 were replaced, not duplicated


def test_resume_when_already_finished_trains_nothing(tmp_path):
    out = tmp_path / "run"
    make_trainer(out, max_steps=2).fit()
    stats = make_trainer(out, max_steps=2, resume_from_checkpoint="last").fit()
    assert stats["steps_run"] == 0 and stats["step"] == 2


def test_resume_with_another_batch_size_starts_the_next_epoch(tmp_path):
    out = tmp_path / "run"
    make_trainer(out, max_steps=2).fit()  # epoch 0 has 3 batches of 4: stopped after batch 2
    t = make_trainer(out, max_steps=3, batch_size=5, resume_from_checkpoint="last")
    t.fit()
    assert (t.epoch, t.batch_in_epoch) == (1, 1)


def test_resume_errors_are_one_line(tmp_path):
    out = tmp_path / "run"
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"definitely not a checkpoint")
    with pytest.raises(CheckpointError, match="not a fractalmusic checkpoint"):
        make_trainer(out, max_steps=2, resume_from_checkpoint=str(junk)).fit()
    with pytest.raises(CheckpointError, match="no such checkpoint"):
        make_trainer(out, max_steps=2, resume_from_checkpoint=str(tmp_path / "missing.pt")).fit()
    weights_only = tmp_path / "weights.pt"
    rep, gen = fakes.build()
    from fractalmusic.training.checkpoint import make_payload

    save_checkpoint(weights_only, make_payload(rep, gen))
    with pytest.raises(CheckpointError, match="cannot resume"):
        make_trainer(out, max_steps=2, resume_from_checkpoint=str(weights_only)).fit()
    make_trainer(out, max_steps=2).fit()
    with pytest.raises(CheckpointError, match="do not fit"):
        make_trainer(out, max_steps=3, resume_from_checkpoint="last", model={"hidden_size": 8}).fit()


def test_unwritable_output_dir_is_a_config_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(ConfigError, match="cannot write there"):
        make_trainer(blocker / "run", max_steps=1)


def test_precision(tmp_path):
    with pytest.raises(ConfigError, match="needs a CUDA GPU"):
        make_trainer(tmp_path / "a", max_steps=1, precision="16", device="cpu")
    with pytest.raises(ConfigError, match="precision"):
        TrainConfig(precision="8")
    stats = make_trainer(tmp_path / "b", max_steps=2, precision="bf16").fit()
    assert stats["step"] == 2 and math.isfinite(stats["metrics"]["train"]["loss"])


def test_gradient_accumulation_matches_a_bigger_batch(tmp_path):
    model = {"dropout": 0.0}
    a = make_trainer(tmp_path / "a", val=False, max_steps=2, batch_size=4, model=model, warmup_steps=0)
    a.fit()
    b = make_trainer(tmp_path / "b", val=False, max_steps=2, batch_size=2, accumulate_grad_batches=2,
                     model=model, warmup_steps=0)
    b.fit()
    for (name, pa), pb in zip(a.generator.named_parameters(), b.generator.parameters()):
        assert torch.allclose(pa, pb, atol=1e-6), name
    assert b.batch_in_epoch == 4 and a.batch_in_epoch == 2


def test_early_stopping(tmp_path, monkeypatch):
    out = tmp_path / "run"
    t = make_trainer(out, max_steps=50, val_check_interval_steps=1, early_stopping_patience=2,
                     checkpoint_every_n_steps=100)
    values = iter([2.0, 1.5, 1.6, 1.7, 1.0, 0.5])
    monkeypatch.setattr(t, "validate", lambda epoch=None: next(values))
    stats = t.fit()
    assert stats["stop_reason"] == "early_stopping" and stats["step"] == 4
    assert stats["best_value"] == 1.5
    assert load_checkpoint(out / "checkpoints" / "last.pt")["step"] == 4
    assert load_checkpoint(out / "checkpoints" / "best.pt")["step"] == 2


def test_time_budget_stops_cleanly_with_a_checkpoint(tmp_path):
    out = tmp_path / "run"
    stats = make_trainer(out, max_steps=1000, max_minutes=1e-9).fit()
    assert stats["stop_reason"] == "max_minutes" and stats["step"] == 1
    assert load_checkpoint(out / "checkpoints" / "last.pt")["step"] == 1


def test_epochs_bound_the_run_and_no_val_monitors_train_loss(tmp_path):
    out = tmp_path / "run"
    stats = make_trainer(out, val=False, epochs=2, checkpoint_every_n_steps=2).fit()
    assert stats["step"] == 6 and stats["epoch"] == 2  # 3 steps per epoch
    files = sorted(p.name for p in (out / "checkpoints").glob("step_*.pt"))
    assert files and all("-train_loss_" in f for f in files)
    assert (out / "checkpoints" / "best.pt").exists()


def test_nan_loss_is_a_training_error(tmp_path, monkeypatch):
    t = make_trainer(tmp_path / "run", max_steps=5)
    real = t.generator.loss

    def broken(batch):
        out = real(batch)
        out["loss"] = out["loss"] * float("nan")
        return out

    monkeypatch.setattr(t.generator, "loss", broken)
    with pytest.raises(TrainingError, match="became nan at step 1"):
        t.fit()


def test_empty_training_set_is_a_data_error(tmp_path):
    with pytest.raises(DataError, match="no batches"):
        make_trainer(tmp_path / "run", max_steps=2, data=fakes.FakeSequences(0, 9)).fit()


def test_ragged_batches_count_only_real_tokens(tmp_path):
    out = tmp_path / "run"
    make_trainer(out, val=False, max_steps=3, data=fakes.FakeSequences(10, 9, ragged=True)).fit()
    # 5 full sequences (8 predictions) + 5 half ones (3 predictions: positions 1..3 of 4 real tokens)
    assert sum(r["units"] for r in records(out, "train")) == 5 * 8 + 5 * 3


def test_skip_batches_gives_the_rest_of_the_epoch():
    ds = fakes.FakeSequences(10, 5)
    loader = fakes.make_loader(ds, 3, True, seed=1, epoch=2)
    full = [b["tokens"] for b in loader]
    rest = [b["tokens"] for b in skip_batches(loader, 2)]
    assert len(rest) == len(full) - 2
    assert all(torch.equal(x, y) for x, y in zip(rest, full[2:]))
    assert [b["tokens"] for b in skip_batches(iter(loader), 3)][0].shape == full[3].shape


def test_schedule_warmup_then_cosine():
    assert lr_factor(0, 10, 100, "cosine", 0.0) == pytest.approx(0.1)
    assert lr_factor(9, 10, 100, "cosine", 0.0) == pytest.approx(1.0)
    assert lr_factor(10, 10, 100, "cosine", 0.0) == pytest.approx(1.0)
    assert lr_factor(55, 10, 100, "cosine", 0.0) == pytest.approx(0.5)
    assert lr_factor(100, 10, 100, "cosine", 0.1) == pytest.approx(0.1)
    assert lr_factor(500, 10, 100, "cosine", 0.0) == pytest.approx(0.0)
    assert lr_factor(55, 10, 100, "constant", 0.0) == 1.0


def test_train_config_validation():
    with pytest.raises(ConfigError, match="--batch-size"):
        TrainConfig(batch_size=0)
    with pytest.raises(ConfigError, match="--device"):
        TrainConfig(device="tpu")
    assert TrainConfig(grad_clip=0).grad_clip is None
    assert TrainConfig(precision="bf16-mixed").precision == "bf16"
    assert TrainConfig().effective_max_steps == 2000
    assert TrainConfig(epochs=3).effective_max_steps is None


def test_tensorboard_event_files(tmp_path):
    pytest.importorskip("tensorboard")
    out = tmp_path / "run"
    make_trainer(out, max_steps=2, tensorboard=True).fit()
    assert list((out / "logs").glob("events.out.tfevents.*"))


def test_missing_tensorboard_is_said_once_and_metrics_still_written(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # makes the import fail
    said = []
    rep, gen = fakes.build()
    cfg = TrainConfig(max_steps=3, batch_size=4, log_every_n_steps=1, progress=False, output_dir=str(tmp_path / "r"))
    Trainer(gen, rep, cfg, fakes.FakeSequences(), None, make_loader=fakes.make_loader, echo=said.append).fit()
    assert sum("tensorboard is not installed" in line for line in said) == 1
    assert not (tmp_path / "r" / "logs").exists()
    assert len(records(tmp_path / "r", "train")) == 3


def test_ctrl_c_saves_the_last_finished_step(tmp_path, monkeypatch):
    out = tmp_path / "run"
    t = make_trainer(out, max_steps=50, checkpoint_every_n_steps=100, val_check_interval_steps=100)
    real = t.generator.loss
    calls = []

    def interrupted_at_third(batch):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(batch)

    monkeypatch.setattr(t.generator, "loss", interrupted_at_third)
    with pytest.raises(KeyboardInterrupt):
        t.fit()
    ck = load_checkpoint(out / "checkpoints" / "last.pt")
    assert (ck["step"], ck["batch_in_epoch"]) == (2, 2)
    monkeypatch.setattr(t.generator, "loss", real)
    stats = make_trainer(out, max_steps=4, resume_from_checkpoint="last").fit()
    assert stats["step"] == 4


def test_a_fresh_run_in_a_used_folder_says_so(tmp_path):
    out = tmp_path / "run"
    make_trainer(out, max_steps=1).fit()
    said = []
    rep, gen = fakes.build()
    cfg = TrainConfig(max_steps=1, batch_size=4, progress=False, tensorboard=False, output_dir=str(out))
    Trainer(gen, rep, cfg, fakes.FakeSequences(), None, make_loader=fakes.make_loader, echo=said.append).fit()
    assert any("already holds checkpoints" in line for line in said)
