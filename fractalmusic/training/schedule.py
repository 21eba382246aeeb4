"""AdamW with decoupled weight decay on matrices only, and a linear warm-up + cosine learning-rate schedule.

The schedule is a pure function of the optimizer step, so resuming needs nothing but the step: its `state_dict`
holds only that number (and the settings, for a check).
"""
from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn


WSD_DECAY = 0.3  # share of the post-warm-up span the "wsd" schedule decays over


def lr_factor(step: int, warmup_steps: int, decay_steps: int | None, schedule: str, min_ratio: float) -> float:
    """Multiplier of the peak lr for optimizer step `step` (0-based: the factor used by the step-th update)."""
    if warmup_steps > 0 and step < warmup_steps:
        return (step + 1) / warmup_steps
    if schedule == "constant" or not decay_steps:
        return 1.0
    span = max(1, decay_steps - warmup_steps)
    progress = min(1.0, (step - warmup_steps) / span)
    if schedule == "wsd":  # warm-up, stable, decay: the peak until the last WSD_DECAY of the span, then a cosine
        progress = max(0.0, progress - (1.0 - WSD_DECAY)) / WSD_DECAY
    return min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


class WarmupCosine:
    """Sets the lr of every param group before each optimizer step."""

    def __init__(self, optimizer: torch.optim.Optimizer, lr: float, warmup_steps: int, decay_steps: int | None,
                 schedule: str = "cosine", min_ratio: float = 0.0):
        self.optimizer = optimizer
        self.lr = float(lr)
        self.warmup_steps = int(warmup_steps)
        self.decay_steps = decay_steps
        self.schedule = schedule
        self.min_ratio = float(min_ratio)
        self.step_count = 0
        self._apply()

    def current_lr(self) -> float:
        return self.lr * lr_factor(self.step_count, self.warmup_steps, self.decay_steps, self.schedule,
                                   self.min_ratio)

    def _apply(self) -> None:
        lr = self.current_lr()
        for group in self.optimizer.param_groups:
            group["lr"] = lr

    def step(self) -> None:
        """Call after `optimizer.step()`: moves to the next step's lr."""
        self.step_count += 1
        self._apply()

    def state_dict(self) -> dict[str, Any]:
        return {"name": "warmup_" + self.schedule, "step": self.step_count}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.step_count = int(state["step"])
        self._apply()


def param_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """Weight decay on parameters with 2 or more dimensions (weights, embeddings); none on biases and gains."""
    decay, no_decay = [], []
    for _, p in model.named_parameters():
        if not p.requires_grad:
            continue
        (decay if p.dim() >= 2 else no_decay).append(p)
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return [g for g in groups if g["params"]]


def make_optimizer(model: nn.Module, lr: float, weight_decay: float, betas: tuple[float, float],
                   device_type: str = "cpu") -> torch.optim.Optimizer:
    kwargs: dict[str, Any] = {}
    if device_type == "cuda":
        kwargs["fused"] = True  # one kernel for the whole update
    return torch.optim.AdamW(param_groups(model, weight_decay), lr=lr, betas=betas, **kwargs)


class BudgetHorizon:
    """The cosine horizon of a run bounded by a wall-clock budget (`--max-minutes`), from its measured speed.

    After `settle_steps` steps of this process (the first ones are slow: allocator, caches), the step rate is
    measured in wall-clock seconds (validation and checkpoints included, since they spend the budget too) and
    every `every` steps (an estimate is a few arithmetic operations) the horizon is re-estimated as

        horizon = step + (margin * budget - elapsed) * steps_per_second

    so that the schedule reaches its end when the budget does, on a fast or a slow machine. `cap` (--max-steps)
    bounds it. The warm-up is shortened to at most a fifth of the horizon, so that a short budget still anneals.
    `state_dict` keeps the last estimate: a resumed run starts from it and goes on measuring.
    """

    def __init__(self, budget_s: float, warmup_steps: int, cap: int | None = None, settle_steps: int = 5,
                 every: int = 1, margin: float = 0.98):
        self.budget_s = float(budget_s)
        self.warmup_steps = int(warmup_steps)
        self.cap = cap
        self.settle_steps = max(1, int(settle_steps))
        self.every = max(1, int(every))
        self.margin = float(margin)
        self.horizon: int | None = None  # None until the first estimate (or a resumed one)
        self._start: tuple[int, float] | None = None  # (step, elapsed) where measuring began
        self._seen = 0  # steps this process has run
        self.announced = False  # the first estimate has been reported
        self.due = False

    def warmup_for(self, horizon: int) -> int:
        return min(self.warmup_steps, max(0, horizon // 5))

    def update(self, step: int, elapsed: float) -> int | None:
        """Call after each optimizer step (`step` done, `elapsed` seconds of the budget spent). Returns a new
        horizon when one was estimated at this step, else None."""
        self._seen += 1
        self.due = False  # True when this step was one to estimate at (the same steps in every process)
        if self._seen == self.settle_steps:
            self._start = (step, elapsed)
            return None
        if self._start is None or (self._seen - self.settle_steps) % self.every:
            return None
        self.due = True
        steps = step - self._start[0]
        seconds = elapsed - self._start[1]
        if steps <= 0 or seconds <= 0:
            return None
        left = self.margin * self.budget_s - elapsed
        horizon = step + max(1, int(left * steps / seconds))
        if self.cap is not None:
            horizon = min(horizon, self.cap)
        self.horizon = max(horizon, step + 1)
        return self.horizon

    def apply(self, scheduler: "WarmupCosine", horizon: int) -> None:
        scheduler.decay_steps = int(horizon)
        scheduler.warmup_steps = self.warmup_for(int(horizon))
        scheduler._apply()

    def state_dict(self) -> dict[str, Any]:
        return {"horizon": self.horizon, "budget_s": self.budget_s}

    def load_state_dict(self, state: dict[str, Any] | None) -> None:
        """A resumed estimate counts only when it was made for the same budget."""
        if not state:
            return
        horizon, budget = state.get("horizon"), state.get("budget_s")
        if isinstance(horizon, int) and horizon > 0 and budget == self.budget_s:
            self.horizon = horizon if self.cap is None else min(horizon, self.cap)
