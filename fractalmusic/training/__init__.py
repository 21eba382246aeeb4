"""Training: one trainer for every generator, the checkpoint format, schedules and distributed set-up.

It never imports a concrete representation or generator. The trainer (and torch with it) is imported when first
asked for, so that reading `fractalmusic.training.config` (the option names `fmusic data` checks plugins against)
does not start torch.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from fractalmusic.training.config import TrainConfig

if TYPE_CHECKING:  # pragma: no cover
    from fractalmusic.training.trainer import Trainer, TrainingError, default_output_dir, prepare_output_dir

__all__ = ["TrainConfig", "Trainer", "TrainingError", "default_output_dir", "prepare_output_dir"]
_FROM_TRAINER = {"Trainer", "TrainingError", "default_output_dir", "prepare_output_dir"}


def __getattr__(name: str):
    if name in _FROM_TRAINER:
        from fractalmusic.training import trainer

        return getattr(trainer, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
