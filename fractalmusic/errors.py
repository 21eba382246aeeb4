"""Errors a user can cause. The CLI prints them as one line and exits non-zero; anything else is a bug."""
from __future__ import annotations


class FractalMusicError(Exception):
    """Base class: a problem with the user's input, options, files or environment."""

    exit_code = 2


class ConfigError(FractalMusicError):
    """An unknown or invalid option or configuration value."""


class PluginError(FractalMusicError):
    """A plugin that is missing, failed to load, is duplicated, or needs a newer plugin API."""


class PieceReadError(FractalMusicError):
    """A music file that is corrupt, empty or of an unsupported type."""

    def __init__(self, path, reason: str):
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


class CheckpointError(FractalMusicError):
    """A file that is not a fractalmusic checkpoint, or one that does not fit the request."""


class DataError(FractalMusicError):
    """A corpus that cannot be used: nothing readable, too short for the crop, a missing list file."""
