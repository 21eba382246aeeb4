"""pytest when it is installed; otherwise a stand-in, so `import fractalmusic.testing` works without it.

The suites only run under pytest; importing them (to subclass, to read them, to list them) must not need it.
"""
from __future__ import annotations

from typing import Any

HINT = "fractalmusic.testing's checks run under pytest: pip install 'fractalmusic[testing]'"


class _MissingPytest:
    """Stands in for the pytest module: `fixture` leaves functions as they are; anything else says what to install."""

    available = False

    @staticmethod
    def fixture(*args: Any, **kwargs: Any):
        if len(args) == 1 and callable(args[0]) and not kwargs:
            return args[0]
        return lambda function: function

    def __getattr__(self, name: str):
        raise ImportError(HINT)


try:
    import pytest
except ImportError:  # pragma: no cover - depends on the environment
    pytest = _MissingPytest()  # type: ignore[assignment]
