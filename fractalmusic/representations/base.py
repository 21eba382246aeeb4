"""The Representation contract.

A representation turns a `Piece` into an integer array a generator can learn, and back:

* kind "tokens": 1-D int64 sequences over a vocabulary of `vocab_size` ids; `pad_id`, `bos_id`, `eos_id` may be set.
  `encode` of a whole piece returns `[bos, ..., eos]` when those ids exist.
* kind "grid": `[128, T]` int64 cells (pitch rows low to high, time steps); `vocab_size` is the number of cell classes
  (0 = silence, 1 = sustain, 2.. = onset, possibly one class per velocity bin).

`decode` must never raise on an array of the right dtype and rank that a model could emit: it repairs or drops what
does not make sense and records how many of each repair in `piece.meta["repairs"]` (a dict name -> count).
`state_dict` is plain JSON-able data (config + what `fit` learnt) and is embedded in checkpoints.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any, ClassVar, Iterable

import numpy as np

from fractalmusic.config import config_from_dict, config_to_dict
from fractalmusic.piece import Piece


@dataclass
class RepresentationSpec:
    """What a generator needs to know about the data it will model."""

    kind: str  # "tokens" | "grid"
    vocab_size: int  # token ids, or cell classes for a grid
    pad_id: int | None = None
    bos_id: int | None = None
    eos_id: int | None = None
    height: int = 128  # grid rows (pitches)


@dataclass
class _NoConfig:
    pass


class Representation:
    name: ClassVar[str] = ""
    kind: ClassVar[str] = ""  # "tokens" | "grid"
    Config: ClassVar[type] = _NoConfig
    plugin_api_version: ClassVar[int] = 1
    # True: encode() reads piece.abc when a piece has ABC text, so ABC sources need not be parsed into notes.
    # A representation may set it per instance (words with source="midi" does): read it from the instance.
    uses_abc_text: bool = False
    # API 2: the version of what `state_dict()` holds; a checkpoint written with an older version goes through
    # `upgrade_state` when loaded
    state_version: ClassVar[int] = 1
    # API 2: output formats this representation writes itself (`fmusic sample --to txt`), through `write_output`;
    # `default_output_formats` replaces the built-in choice (abc,mid / mid,png / mid) when not None
    output_formats: ClassVar[tuple[str, ...]] = ()
    default_output_formats: ClassVar[tuple[str, ...] | None] = None
    # API 2: files with these suffixes are read by `read_file` (the data layer asks before its own readers)
    input_suffixes: ClassVar[tuple[str, ...]] = ()
    # data-layer options (DataConfig fields such as pitch_shift_min/max) this representation suggests for a fresh
    # `fmusic train` run, in groups of options that belong together: a group applies whole, and only when the
    # command line sets none of its options
    data_defaults: ClassVar[tuple[dict[str, Any], ...]] = ()

    def __init__(self, config=None, **overrides):
        if config is None:
            config = config_from_dict(self.Config, overrides, where=f"{self.name} representation")
        elif overrides:
            raise TypeError("pass either a config or keyword overrides, not both")
        self.config = config

    # ------------------------------------------------------------- vocabulary
    @property
    def vocab_size(self) -> int:
        raise NotImplementedError

    pad_id: int | None = None
    bos_id: int | None = None
    eos_id: int | None = None

    @property
    def is_fitted(self) -> bool:
        return True

    def fit(self, pieces: Iterable[Piece]) -> "Representation":
        """Learn what the representation needs from a corpus (a vocabulary). Default: nothing to learn."""
        return self

    def spec(self) -> RepresentationSpec:
        return RepresentationSpec(
            kind=self.kind, vocab_size=self.vocab_size, pad_id=self.pad_id, bos_id=self.bos_id, eos_id=self.eos_id
        )

    # ------------------------------------------------------------- conversion
    def encode(self, piece: Piece) -> np.ndarray:
        raise NotImplementedError

    def decode(self, array: np.ndarray) -> Piece:
        raise NotImplementedError

    def transpose(self, array: np.ndarray, semitones: int) -> tuple[np.ndarray, int] | None:
        """The encoded array moved by `semitones`, with the number of notes dropped; None if impossible."""
        return None

    def draw_rewrite(self, rng) -> int:
        """Which way of writing the same music a training item takes (0: as written), drawn from the item's numpy
        generator `rng`; `rewrite` applies it. Default: 0, without drawing (the item's other draws stay as
        they were). `abc` writes lengths below the unit in either of ABC's two spellings (`--respell-lengths`)."""
        return 0

    def rewrite(self, array: np.ndarray, variant: int) -> np.ndarray | None:
        """A whole encoded piece written the `variant` way (the same music); None when it cannot be."""
        return None

    def training_problem(self, piece: Piece) -> str | None:
        """Why a read piece should be left out of training and validation (data preparation skips it and reports
        the reason), or None to keep it. `encode` must still take any piece (primers, evaluation). The built-in
        `abc` refuses tunes whose bars disagree with their M: (`--min-bar-share`)."""
        return None

    @property
    def can_transpose(self) -> bool:
        """Whether `transpose` can ever move a piece (False when the class does not implement it)."""
        return type(self).transpose is not Representation.transpose

    # ------------------------------------------------------------- API 2 file hooks
    def write_output(self, piece: Piece, path, fmt: str) -> None:
        """Write `piece` to `path` in one of `output_formats` (called only for those)."""
        from fractalmusic.errors import FractalMusicError

        raise FractalMusicError(f"the {self.name} representation does not write {fmt!r} files")

    def read_file(self, path) -> list[Piece]:
        """The pieces in a file whose suffix is in `input_suffixes`; raise PieceReadError when it cannot."""
        from fractalmusic.errors import PieceReadError

        raise PieceReadError(path, f"the {self.name} representation reads no files itself")

    # token representations that have a text form (ABC characters, words) override these
    def text_to_array(self, text: str) -> np.ndarray:
        from fractalmusic.errors import FractalMusicError

        raise FractalMusicError(f"the {self.name} representation has no text form")

    def array_to_text(self, array: np.ndarray) -> str:
        from fractalmusic.errors import FractalMusicError

        raise FractalMusicError(f"the {self.name} representation has no text form")

    # ------------------------------------------------------------- persistence
    def state_dict(self) -> dict[str, Any]:
        """JSON-able: {"config": {...}, plus what fit() learnt}."""
        return {"config": config_to_dict(self.config)}

    @classmethod
    def upgrade_state(cls, state: dict[str, Any], from_version: int) -> dict[str, Any]:
        """Turn a checkpoint's `state_dict()` written at `from_version` (< state_version) into the current form.
        Default: nothing to change. Raise ConfigError when it cannot be upgraded."""
        return state

    def load_state(self, state: dict[str, Any]) -> None:
        """Restore what fit() learnt (the config is restored by from_state_dict)."""

    @classmethod
    def from_state_dict(cls, state: dict[str, Any]) -> "Representation":
        rep = cls(config_from_dict(cls.Config, state.get("config", {}), where=f"{cls.name} representation"))
        rep.load_state(state)
        return rep

    def fingerprint(self) -> str:
        """Stable hash of name + state: the cache key part that says how pieces were encoded."""
        blob = json.dumps({"name": self.name, "state": self.state_dict()}, sort_keys=True, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name} {config_to_dict(self.config)}>"
