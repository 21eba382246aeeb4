"""Training: one trainer for every generator, the checkpoint format, schedules and distributed set-up.

It never imports a concrete representation or generator.
"""
from __future__ import annotations

from fractalmusic.training.config import TrainConfig
from fractalmusic.training.trainer import Trainer, TrainingError, default_output_dir, prepare_output_dir

__all__ = ["TrainConfig", "Trainer", "TrainingError", "default_output_dir", "prepare_output_dir"]
