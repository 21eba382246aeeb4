"""fractalmusic: train and sample symbolic-music generators.

    import fractalmusic
    model = fractalmusic.load("runs/folk/checkpoints/best.pt")
    pieces = model.sample(4, seed=1)
"""
from __future__ import annotations

__version__ = "0.1.0"

from fractalmusic.plugins import PLUGIN_API_VERSION  # noqa: E402


def load(path, device: str = "cpu"):
    """Load a checkpoint for sampling; returns a `fractalmusic.api.Model`."""
    from fractalmusic.api import Model

    return Model.load(path, device=device)


__all__ = ["__version__", "PLUGIN_API_VERSION", "load"]
