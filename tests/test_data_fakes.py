"""Fakes for the data tests: a tiny grid and a tiny fitted token representation, and a reader of toy files.

Toy files hold one tune per non-empty line, each a list of MIDI pitches (one note per beat). A line `BAD` is a tune
the reader rejects; a file starting with `JUNK` is not music at all. They make the data layer testable without
music21 (fast), while the chorale tests use the real readers.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np

from fractalmusic.data import prepare
from fractalmusic.piece import Piece, make_notes
from fractalmusic.representations.base import Representation


def toy_read_file(path: str, notes: bool):
    """Same contract as fractalmusic.data.prepare.read_file."""
    text = Path(path).read_text()
    if text.startswith("JUNK"):
        return [], [], "not a toy file"
    pieces, errors = [], []
    for i, line in enumerate(x for x in text.splitlines() if x.strip()):
        source = f"{path}#X{i + 1}"
        if line.strip() == "BAD":
            errors.append((source, "bad tune"))
            continue
        pitches = [int(p) for p in line.split()]
        rows = [(float(b), 1.0, p) for b, p in enumerate(pitches)]
        pieces.append(Piece(notes=make_notes(rows), source=source, title=f"tune {i + 1}"))
    if not pieces:
        return [], errors, "no tunes"
    return pieces, errors, None


class CountingReader:
    def __init__(self):
        self.calls: list[str] = []

    def __call__(self, path: str, notes: bool, data: bytes | None = None):  # data: the bytes prepare read
        self.calls.append(Path(path).name)
        return toy_read_file(path, notes)


def use_toy_reader(monkeypatch) -> CountingReader:
    reader = CountingReader()
    monkeypatch.setattr(prepare, "read_file", reader)
    return reader


def write_toy(folder: Path, name: str, *tunes: list[int] | str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    lines = [t if isinstance(t, str) else " ".join(map(str, t)) for t in tunes]
    path = folder / name
    path.write_text("\n".join(lines) + "\n")
    return path


def toy_corpus(folder: Path, n_files: int = 6, tunes_per_file: int = 1, length: int = 12, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    for f in range(n_files):
        tunes = [list(rng.integers(55, 80, size=length + (f + t) % 5)) for t in range(tunes_per_file)]
        write_toy(folder, f"t{f:02d}.{'abc' if tunes_per_file > 1 else 'mid'}", *tunes)
    return folder


# ------------------------------------------------------------------------------------------ representations
@dataclass
class ToyGridConfig:
    steps_per_beat: int = 1


class ToyGrid(Representation):
    """[128, T] cells: 0 silence, 1 sustain, 2 onset."""

    name: ClassVar[str] = "toy-grid"
    kind: ClassVar[str] = "grid"
    Config: ClassVar[type] = ToyGridConfig

    @property
    def vocab_size(self) -> int:
        return 3

    def encode(self, piece: Piece) -> np.ndarray:
        spb = self.config.steps_per_beat
        width = max(1, int(np.ceil(piece.end_beat * spb)))
        grid = np.zeros((128, width), dtype=np.int64)
        for n in piece.notes:
            on = int(round(n["onset"] * spb))
            off = max(on + 1, int(round((n["onset"] + n["duration"]) * spb)))
            grid[n["pitch"], on + 1 : off] = 1
            grid[n["pitch"], on] = 2
        return grid

    def decode(self, array):
        raise NotImplementedError

    def transpose(self, array, semitones):
        out = np.zeros_like(array)
        if semitones >= 0:
            out[semitones:] = array[: 128 - semitones]
            dropped = int((array[128 - semitones :] == 2).sum())
        else:
            out[:semitones] = array[-semitones:]
            dropped = int((array[:-semitones] == 2).sum())
        return out, dropped


@dataclass
class ToyTokensConfig:
    min_count: int = 1


class ToyTokens(Representation):
    """pad 0, bos 1, eos 2, unk 3, then one id per pitch seen by fit (so it needs fitting)."""

    name: ClassVar[str] = "toy-tokens"
    kind: ClassVar[str] = "tokens"
    Config: ClassVar[type] = ToyTokensConfig
    pad_id, bos_id, eos_id, unk_id = 0, 1, 2, 3
    fit_calls = 0
    transpose_calls = 0

    def __init__(self, config=None, **overrides):
        super().__init__(config, **overrides)
        self.pitches: list[int] | None = None

    @property
    def is_fitted(self) -> bool:
        return self.pitches is not None

    @property
    def vocab_size(self) -> int:
        return 4 + len(self.pitches or [])

    def fit(self, pieces):
        type(self).fit_calls += 1
        self.pitches = sorted({int(p) for piece in pieces for p in piece.notes["pitch"]})
        return self

    def state_dict(self):
        return {**super().state_dict(), "pitches": self.pitches}

    def load_state(self, state):
        self.pitches = None if state.get("pitches") is None else [int(p) for p in state["pitches"]]

    def _ids(self, pitches) -> list[int]:
        index = {p: 4 + i for i, p in enumerate(self.pitches or [])}
        return [index.get(int(p), self.unk_id) for p in pitches]

    def encode(self, piece: Piece) -> np.ndarray:
        return np.array([self.bos_id, *self._ids(piece.notes["pitch"]), self.eos_id], dtype=np.int64)

    def decode(self, array):
        raise NotImplementedError

    def transpose(self, array, semitones):
        type(self).transpose_calls += 1
        ids = np.asarray(array)
        body = ids[(ids >= 4)]
        pitches = np.array(self.pitches)[body - 4] + semitones
        if any(p not in self.pitches for p in pitches):
            return None
        out = ids.copy()
        out[ids >= 4] = self._ids(pitches)
        return out, 0
