"""--max-minutes fits the learning-rate schedule to the budget: driven by a fake clock, so the test is exact."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
import fakes  # noqa: E402

from fractalmusic.training import Trainer, TrainConfig  # noqa: E402
from fractalmusic.training.checkpoint import load_checkpoint  # noqa: E402
from fractalmusic.training.schedule import BudgetHorizon  # noqa: E402

PEAK = 1e-3


class FakeClock:
    """Seconds that pass only when the data loader hands out a batch (`per_batch` each)."""

    def __init__(self, per_batch: float):
        self.now = 1000.0
        self.per_batch = per_batch

    def __call__(self) -> float:
        return self.now


class TimedLoader:
    def __init__(self, loader, clock: FakeClock):
        self.loader, self.clock = loader, clock

    def __len__(self):
        return len(self.loader)

    def __iter__(self):
        for batch in self.loader:
            self.clock.now += self.clock.per_batch
            yield batch


def make(out, clock: FakeClock, **cfg):
    base = dict(batch_size=4, log_every_n_steps=5, val_check_interval_steps=50, checkpoint_every_n_steps=50,
                warmup_steps=100, lr=PEAK, progress=False, tensorboard=False, output_dir=str(out))
    base.update(cfg)
    rep, gen = fakes.build(seed=0)

    def make_loader(*args, **kwargs):
        return TimedLoader(fakes.make_loader(*args, **kwargs), clock)

    return Trainer(gen, rep, TrainConfig(**base), fakes.FakeSequences(10, 9), fakes.FakeSequences(4, 9, seed=99),
                   make_loader=make_loader, echo=lambda *_: None, clock=clock)


def train_records(out: Path) -> list[dict]:
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    return [r for r in rows if r["split"] == "train"]


@pytest.mark.parametrize("per_batch, minutes", [(0.2, 0.5), (3.0, 1.0)])  # a fast and a slow machine
def test_the_budget_ends_annealed(tmp_path, per_batch, minutes):
    out = tmp_path / "run"
    stats = make(out, FakeClock(per_batch), max_minutes=minutes).fit()
    assert stats["stop_reason"] == "max_minutes"
    # with the old fixed horizon (2000 steps, warm-up 100), both runs would end near the peak
    steps = minutes * 60 / per_batch
    assert 0.9 * steps <= stats["step"] <= steps + 2
    train = train_records(out)
    assert max(r["lr"] for r in train) > 0.5 * PEAK  # it did warm up (shortened warm-up on the slow machine)
    assert train[-1]["lr"] <= 0.1 * PEAK
    state = json.loads(load_checkpoint(out / "checkpoints" / "last.pt")["trainer_state"])
    assert state["lr_horizon"]["horizon"] == pytest.approx(stats["step"], rel=0.1)
    assert state["lr_horizon"]["budget_s"] == minutes * 60


def test_max_steps_still_caps_the_horizon(tmp_path):
    out = tmp_path / "run"
    stats = make(out, FakeClock(0.1), max_minutes=0.5, max_steps=100, warmup_steps=10).fit()
    assert stats["stop_reason"] == "finished" and stats["step"] == 100
    train = train_records(out)
    assert train[-1]["lr"] <= 0.01 * PEAK and train[-1]["lr_horizon"] == 100


def test_resume_keeps_the_horizon_and_the_budget(tmp_path):
    clock = FakeClock(0.2)
    out = tmp_path / "run"
    # stopped part-way (as if by Ctrl-C): 50 steps of a 150-step budget
    make(out, clock, max_minutes=0.5, max_steps=50).fit()
    first = json.loads(load_checkpoint(out / "checkpoints" / "last.pt")["trainer_state"])["lr_horizon"]
    assert first["horizon"] == 50  # capped by --max-steps
    stats = make(out, clock, max_minutes=0.5, resume_from_checkpoint="last").fit()
    # the budget counts the first part: the whole run ends near 150 steps, annealed
    assert stats["stop_reason"] == "max_minutes" and 135 <= stats["step"] <= 152
    assert train_records(out)[-1]["lr"] <= 0.1 * PEAK


def test_budget_horizon_estimates():
    h = BudgetHorizon(100.0, warmup_steps=100, settle_steps=5)
    got = None
    for step in range(1, 31):
        got = h.update(step, elapsed=2.0 + step * 0.5) or got  # 2 steps per second
    # 98 s of the budget at 2 steps/s from step 30 (at 17 s): 30 + 2 * 81
    assert got == 30 + 162 and h.warmup_for(got) == 38
    resumed = BudgetHorizon(100.0, warmup_steps=100, cap=150)
    resumed.load_state_dict(h.state_dict())
    assert resumed.horizon == 150
    other = BudgetHorizon(200.0, warmup_steps=100)
    other.load_state_dict(h.state_dict())  # made for another budget: not used
    assert other.horizon is None


def test_wsd_schedule_holds_the_peak_then_decays():
    from fractalmusic.training.schedule import lr_factor

    f = [lr_factor(s, 100, 700, "wsd", 0.0) for s in range(701)]
    assert f[99] == 1.0 and f[519] == 1.0  # stable until 70% of the span after warm-up
    assert 0.5 < f[600] < 0.7 and f[699] < 0.001
    assert all(a >= b for a, b in zip(f[100:], f[101:]))
