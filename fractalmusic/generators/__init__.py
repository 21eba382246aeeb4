"""Generators. Built-ins: rnn, lstm, gru (tokens) and mar, ar (fractal, piano-roll grids)."""
from fractalmusic.generators.base import Generator
from fractalmusic.generators.token import TokenGenerator

__all__ = ["Generator", "TokenGenerator"]
