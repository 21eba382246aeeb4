"""Fractal generators over piano-roll grids: `mar` (masked autoregressive levels) and `ar` (autoregressive levels).

See `model` for the hierarchy, loss and sampling, `layout` for the patch geometry and scan orders, `config` for
the options and presets.
"""
from __future__ import annotations

from fractalmusic.generators.fractal.config import PRESETS, FractalConfig
from fractalmusic.generators.fractal.model import ARGenerator, FractalGenerator, MARGenerator

__all__ = ["ARGenerator", "FractalConfig", "FractalGenerator", "MARGenerator", "PRESETS"]
