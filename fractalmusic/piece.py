"""`Piece`: the one interchange type between readers, representations and writers.

Times are in beats (quarter notes), never seconds, so that a grid quantised on the source's beat grid is exact.
Seconds come only from the tempo map when audio or MIDI is written.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any, Iterable

import numpy as np

NOTE_DTYPE = np.dtype(
    [
        ("onset", "f8"),  # beats from the start of the piece
        ("duration", "f8"),  # beats
        ("pitch", "i2"),  # MIDI pitch 0..127
        ("velocity", "i2"),  # 1..127
        ("program", "i2"),  # General MIDI program 0..127
        ("is_drum", "?"),
    ]
)

DEFAULT_QPM = 120.0


def make_notes(rows: Iterable[tuple] = ()) -> np.ndarray:
    """Build a note array from (onset, duration, pitch[, velocity[, program[, is_drum]]]) tuples."""
    rows = list(rows)
    out = np.zeros(len(rows), dtype=NOTE_DTYPE)
    for i, r in enumerate(rows):
        onset, duration, pitch = r[0], r[1], r[2]
        velocity = r[3] if len(r) > 3 else 80
        program = r[4] if len(r) > 4 else 0
        is_drum = r[5] if len(r) > 5 else False
        out[i] = (onset, duration, pitch, velocity, program, is_drum)
    return out


@dataclass
class Piece:
    notes: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=NOTE_DTYPE))
    tempos: list[tuple[float, float]] = field(default_factory=lambda: [(0.0, DEFAULT_QPM)])  # (beat, qpm)
    time_signatures: list[tuple[float, int, int]] = field(default_factory=lambda: [(0.0, 4, 4)])  # (beat, num, den)
    key: str | None = None
    title: str | None = None
    abc: str | None = None  # the original ABC text of an ABC-born tune, kept untouched
    source: str | None = None  # path (and tune index) it was read from
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self):
        if self.notes.dtype != NOTE_DTYPE:
            self.notes = np.asarray(self.notes).astype(NOTE_DTYPE)
        if not self.tempos:
            self.tempos = [(0.0, DEFAULT_QPM)]
        if not self.time_signatures:
            self.time_signatures = [(0.0, 4, 4)]

    # ----------------------------------------------------------------- basic facts
    @property
    def n_notes(self) -> int:
        return int(len(self.notes))

    @property
    def end_beat(self) -> float:
        if not len(self.notes):
            return 0.0
        return float(np.max(self.notes["onset"] + self.notes["duration"]))

    @property
    def pitch_range(self) -> tuple[int, int] | None:
        if not len(self.notes):
            return None
        return int(self.notes["pitch"].min()), int(self.notes["pitch"].max())

    def copy(self) -> "Piece":
        return copy.deepcopy(self)

    def sorted(self) -> "Piece":
        out = self.copy()
        order = np.lexsort((out.notes["pitch"], out.notes["onset"]))
        out.notes = out.notes[order]
        return out

    def without_drums(self) -> "Piece":
        out = self.copy()
        out.notes = out.notes[~out.notes["is_drum"]]
        return out

    # ----------------------------------------------------------------- time
    def seconds(self, beats) -> np.ndarray:
        """Beats -> seconds through the tempo map (piecewise constant tempo)."""
        beats = np.asarray(beats, dtype=np.float64)
        tempos = sorted(self.tempos)
        starts = np.array([b for b, _ in tempos], dtype=np.float64)
        spb = np.array([60.0 / q for _, q in tempos], dtype=np.float64)  # seconds per beat
        if starts[0] > 0:
            starts = np.concatenate([[0.0], starts])
            spb = np.concatenate([[spb[0]], spb])
        seg_seconds = np.concatenate([[0.0], np.cumsum(np.diff(starts) * spb[:-1])])
        idx = np.clip(np.searchsorted(starts, beats, side="right") - 1, 0, len(starts) - 1)
        return seg_seconds[idx] + (beats - starts[idx]) * spb[idx]

    @property
    def end_seconds(self) -> float:
        return float(self.seconds(self.end_beat))

    def time_signature_at(self, beat: float) -> tuple[int, int]:
        current = self.time_signatures[0][1:]
        for b, num, den in sorted(self.time_signatures):
            if b <= beat + 1e-9:
                current = (num, den)
        return current

    def bar_lines(self, until_beat: float | None = None) -> np.ndarray:
        """Beats where bars start (from the time-signature map), before `until_beat` (default: the end)."""
        end = self.end_beat if until_beat is None else until_beat
        sigs = sorted(self.time_signatures)
        lines: list[float] = []
        for i, (b, num, den) in enumerate(sigs):
            stop = sigs[i + 1][0] if i + 1 < len(sigs) else end
            bar = num * 4.0 / den
            if bar <= 0:
                continue
            pos = b
            while pos < stop - 1e-9 and pos <= end + 1e-9:
                lines.append(pos)
                pos += bar
        return np.array(lines, dtype=np.float64)

    # ----------------------------------------------------------------- edits
    def transpose(self, semitones: int) -> tuple["Piece", int]:
        """Shift every pitched note; notes pushed outside 0..127 are dropped. Returns (piece, dropped)."""
        out = self.copy()
        pitched = ~out.notes["is_drum"]
        new = out.notes["pitch"].astype(np.int32) + np.where(pitched, semitones, 0)
        keep = (new >= 0) & (new <= 127)
        out.notes["pitch"] = np.clip(new, 0, 127)
        out.notes = out.notes[keep]
        out.abc = None  # the ABC text no longer describes these notes
        return out, int((~keep).sum())

    def slice_beats(self, start: float, end: float) -> "Piece":
        """Notes sounding in [start, end), clipped to the window and shifted to start at 0."""
        out = self.copy()
        n = out.notes
        on, off = n["onset"], n["onset"] + n["duration"]
        keep = (on < end) & (off > start)
        n = n[keep].copy()
        new_on = np.maximum(n["onset"], start)
        new_off = np.minimum(n["onset"] + n["duration"], end)
        n["onset"] = new_on - start
        n["duration"] = new_off - new_on
        out.notes = n
        out.abc = None
        return out

    # ----------------------------------------------------------------- conversions (delegated to io)
    def to_pretty_midi(self):
        from fractalmusic.io.midi import piece_to_pretty_midi

        return piece_to_pretty_midi(self)

    @classmethod
    def from_pretty_midi(cls, pm, source: str | None = None) -> "Piece":
        from fractalmusic.io.midi import piece_from_pretty_midi

        return piece_from_pretty_midi(pm, source=source)

    def to_music21(self):
        from fractalmusic.io.music21_io import piece_to_music21

        return piece_to_music21(self)

    @classmethod
    def from_music21(cls, stream, source: str | None = None) -> "Piece":
        from fractalmusic.io.music21_io import piece_from_music21

        return piece_from_music21(stream, source=source)

    def __repr__(self) -> str:
        title = f" {self.title!r}" if self.title else ""
        return f"<Piece{title} notes={self.n_notes} beats={self.end_beat:.1f} source={self.source!r}>"
