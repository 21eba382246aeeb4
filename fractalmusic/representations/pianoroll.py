"""`pianoroll`: a [128, T] grid of cells on the source's beat grid.

Row p is MIDI pitch p (low to high), column t is time step t (`steps_per_beat` steps per quarter-note beat,
default 4 = sixteenths). Cells: 0 silence, 1 sustain (the note that sounded in the step before goes on),
2 + b an onset with velocity bin b (`velocity_bins`, default 1, so 3 classes). Onset cells keep repeated notes
apart: two crotchets on one pitch are "onset, sustain, sustain, sustain, onset, ...", not one minim.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from fractalmusic.errors import ConfigError, DataError
from fractalmusic.limits import MAX_GRID_STEPS as MAX_STEPS  # widest grid encoded; wider pieces are skipped
from fractalmusic.piece import NOTE_DTYPE, Piece
from fractalmusic.representations.base import Representation

N_PITCHES = 128
SILENCE, SUSTAIN, ONSET = 0, 1, 2


def velocity_to_bin(velocity, bins: int):
    """Velocity 1..127 -> bin 0..bins-1 (equal-width bins; 0 counts as 1); works on scalars and arrays."""
    v = np.asarray(velocity)
    if v.ndim and v.dtype.kind in "iu" and v.dtype.itemsize < 8:  # note velocities: one look-up per note
        return velocity_table(bins).take(v, mode="clip")  # below 0 reads entry 0, above 127 entry 127: clipped
    v = np.clip(v.astype(np.int64), 1, 127)
    out = (v - 1) * bins // 127
    return int(out) if out.ndim == 0 else out


_VELOCITY_TABLES: dict[tuple[int, np.dtype], np.ndarray] = {}


def velocity_table(bins: int, dtype=np.int64) -> np.ndarray:
    """The bin of every velocity 0..127 (0 as 1) among `bins` equal-width bins, as `dtype` (read-only, made once
    per bins and type): `table.take(velocities, mode="clip")` bins a whole note array in one look-up (the piano
    roll's onset classes, the MIDI words' Vel_ words)."""
    key = (int(bins), np.dtype(dtype))
    table = _VELOCITY_TABLES.get(key)
    if table is None:
        v = np.maximum(np.arange(128, dtype=np.int64), 1)
        table = ((v - 1) * int(bins) // 127).astype(dtype)
        table.flags.writeable = False
        _VELOCITY_TABLES[key] = table
    return table


def bin_to_velocity(b, bins: int):
    """The velocity a bin stands for: 80 with one bin, else the bin's centre (1..127)."""
    b = np.asarray(b, dtype=np.int64)
    if bins == 1:
        out = np.full(b.shape, 80, dtype=np.int64)
    else:
        out = np.clip(1 + ((2 * b + 1) * 127) // (2 * bins), 1, 127)
    return int(out) if out.ndim == 0 else out


def _to_roll_shape(grid: np.ndarray) -> np.ndarray:
    """Any array as [128, T]: a scalar or 1-D array is one row of time steps, more dimensions are flattened into
    rows; missing rows (pitches) are silent, rows past 127 are dropped. Non-numeric data becomes an empty roll."""
    if grid.dtype.kind not in "iubf":
        return np.zeros((N_PITCHES, 0), dtype=np.int64)
    rows = np.atleast_2d(grid)
    rows = rows.reshape(rows.shape[0], -1) if rows.ndim > 2 else rows
    out = np.zeros((N_PITCHES, rows.shape[1]), dtype=rows.dtype)
    out[: min(rows.shape[0], N_PITCHES)] = rows[:N_PITCHES]
    return out


def beats_to_steps(beats, steps_per_beat: int) -> np.ndarray:
    """Round beats onto the step grid, halves up (np.round would send 2.5 to 2 and 3.5 to 4)."""
    x = np.asarray(beats, dtype=np.float64) * steps_per_beat
    if not isinstance(x, np.ndarray):  # a single beat
        return np.floor(x + 0.5 + 1e-9).astype(np.int64)
    x += 0.5  # in place, in the same order as `x + 0.5 + 1e-9`: the same roundings, one array instead of four
    x += 1e-9
    np.floor(x, out=x)
    return x.astype(np.int64)


@dataclass
class PianoRollConfig:
    steps_per_beat: int = 4  # grid steps per quarter-note beat; 4 = sixteenth notes
    velocity_bins: int = 1  # onset classes; 1 = one onset class (decoded at velocity 80)
    include_drums: bool = False  # drum notes are left out unless asked for (they come back as pitched notes)

    def __post_init__(self):
        if not 1 <= int(self.steps_per_beat) <= 96:
            raise ConfigError(f"--steps-per-beat must be between 1 and 96, not {self.steps_per_beat}")
        if not 1 <= int(self.velocity_bins) <= 127:
            raise ConfigError(f"--velocity-bins must be between 1 and 127, not {self.velocity_bins}")


class PianoRollRepresentation(Representation):
    """Piano-roll grid with onset and sustain cells; lossless at the grid's resolution.

    encode: onsets and ends are rounded to the grid (round(beat * steps_per_beat)), every note lasts at least one
    step, all tracks are merged (an onset wins over a sustain on the same cell), drums are left out unless
    include_drums. T = ceil(end_beat * steps_per_beat), at least 1 (and never cutting a note short); a piece wider
    than MAX_STEPS steps raises DataError (the data layer skips it with that reason) instead of filling memory.
    decode: any int array [128, T]; values outside 0..vocab_size-1 become silence ("invalid_cells") and a sustain
    with no note to continue becomes an onset ("orphan_sustain"); an array of another shape is fitted to [128, T]
    (missing pitch rows silent, extra ones dropped; the original shape is kept in repairs["shape"]). The grid has
    no tempo or metre: the piece gets the defaults (120 qpm, 4/4). piece -> grid -> piece -> grid gives back the
    same grid.
    """

    name = "pianoroll"
    kind = "grid"
    Config = PianoRollConfig

    @property
    def steps_per_beat(self) -> int:
        return int(self.config.steps_per_beat)

    @property
    def velocity_bins(self) -> int:
        return int(self.config.velocity_bins)

    @property
    def vocab_size(self) -> int:
        return 2 + self.velocity_bins

    # ------------------------------------------------------------------ conversion
    def encode(self, piece: Piece) -> np.ndarray:
        return self._grid(piece, np.int64, time_major=False)

    def encode_time_major(self, piece: Piece, dtype=np.uint8) -> np.ndarray:
        """`encode(piece).T` as a C-contiguous `[T, 128]` array of `dtype`, built directly: what the data layer
        stores (time-major packs of small ints), without an int64 grid and a transposed copy on the way."""
        if np.iinfo(dtype).max < self.vocab_size - 1:
            raise ValueError(f"{np.dtype(dtype).name} cannot hold {self.vocab_size} cell classes")
        return self._grid(piece, dtype, time_major=True)

    def _grid(self, piece: Piece, dtype, time_major: bool) -> np.ndarray:
        notes = piece.notes
        spb = self.steps_per_beat
        start = notes["onset"]
        stop = start + notes["duration"]
        end_beat = float(stop.max()) if len(stop) else 0.0  # piece.end_beat, without computing it again
        on = beats_to_steps(start, spb)
        end = beats_to_steps(stop, spb)
        pitch = notes["pitch"]
        keep = (pitch >= 0) & (pitch < N_PITCHES)
        if not self.config.include_drums:
            keep &= ~notes["is_drum"]
        velocity = notes["velocity"] if self.velocity_bins > 1 else None  # one bin: every onset is ONSET
        if not keep.all():  # filtering three columns costs less than copying the packed note records
            on, end, pitch = on[keep], end[keep], pitch[keep]
            velocity = velocity[keep] if velocity is not None else None
        np.maximum(on, 0, out=on)
        np.maximum(end, on + 1, out=end)
        width = max(1, math.ceil(end_beat * spb - 1e-9), int(end.max()) if len(end) else 0)
        if width > MAX_STEPS:
            raise DataError(
                f"{piece.source or 'piece'}: {width:,} grid steps is more than the {MAX_STEPS:,} a piano roll may have"
            )
        # cell (p, t) sits at p * width + t ([128, T]) or t * 128 + p ([T, 128]) of the flat grid
        t_stride, p_stride = (N_PITCHES, 1) if time_major else (1, width)
        grid = np.zeros((width, N_PITCHES) if time_major else (N_PITCHES, width), dtype=dtype)
        flat = grid.reshape(-1)
        cell = on * t_stride + pitch.astype(np.int64) * p_stride  # each note's onset cell
        held = end - on - 1  # sustain cells after each onset
        longer = np.flatnonzero(held)  # notes of more than one step (the others have no sustain cell)
        if len(longer):
            held = held[longer]
            ends = np.cumsum(held)
            total = int(ends[-1])
            if total <= flat.size:
                # few sustain cells (the usual case): write exactly those. The k-th sustain cell overall belongs to
                # the note i it falls in, and sits (k - cells before note i + 1) steps after that note's onset.
                base = np.repeat(cell[longer] + t_stride * (1 - (ends - held)), held)
                base += np.arange(0, total * t_stride, t_stride, dtype=np.int64)
                flat[base] = SUSTAIN
            else:
                # heavily overlapping notes: +1 where a sustain starts, -1 where it ends, a running sum over time
                rows = pitch[longer].astype(np.int64)
                edges = np.zeros((N_PITCHES, width + 1), dtype=np.int32)
                np.add.at(edges, (rows, on[longer] + 1), 1)
                np.add.at(edges, (rows, end[longer]), -1)
                sounding = np.cumsum(edges[:, :width], axis=1, dtype=np.int32) > 0
                grid[...] = sounding.T if time_major else sounding  # SUSTAIN == 1
        # onsets last: an onset wins over a sustain of another note on the same cell
        flat[cell] = ONSET if velocity is None else ONSET + velocity_to_bin(velocity, self.velocity_bins)
        return grid

    def decode(self, array: np.ndarray) -> Piece:
        grid = np.asarray(array)
        shape_repair = None
        if grid.ndim != 2 or grid.shape[0] != N_PITCHES:  # decode never raises: fit the array to [128, T]
            shape_repair = list(grid.shape)
            grid = _to_roll_shape(grid)
        if grid.dtype.kind not in "iub":
            grid = np.nan_to_num(grid.astype(np.float64), nan=-1.0, posinf=-1.0, neginf=-1.0)
            grid = np.where(np.abs(grid) < 2.0**62, grid, -1.0)
        grid = grid.astype(np.int64)  # a copy: the caller's array is never changed
        repairs: dict[str, Any] = {} if shape_repair is None else {"shape": shape_repair}
        invalid = (grid < 0) | (grid >= self.vocab_size)
        if invalid.any():
            grid[invalid] = SILENCE
            repairs["invalid_cells"] = int(invalid.sum())
        sounding_before = np.zeros_like(grid, dtype=bool)
        sounding_before[:, 1:] = grid[:, :-1] != SILENCE
        orphan = (grid == SUSTAIN) & ~sounding_before
        if orphan.any():
            default_bin = velocity_to_bin(80, self.velocity_bins)
            grid[orphan] = ONSET + default_bin
            repairs["orphan_sustain"] = int(orphan.sum())
        # each onset lasts until the first cell after it that is not a sustain (a silent column closes every row)
        padded = np.concatenate([grid, np.zeros((N_PITCHES, 1), dtype=np.int64)], axis=1).reshape(-1)
        width = grid.shape[1] + 1
        onset_at = np.flatnonzero(padded >= ONSET)
        not_sustain = np.flatnonzero(padded != SUSTAIN)
        end_at = not_sustain[np.searchsorted(not_sustain, onset_at, side="right")]
        rows, cols = onset_at // width, onset_at % width
        notes = np.zeros(len(onset_at), dtype=NOTE_DTYPE)
        spb = float(self.steps_per_beat)
        notes["onset"] = cols / spb
        notes["duration"] = (end_at - onset_at) / spb
        notes["pitch"] = rows
        notes["velocity"] = bin_to_velocity(padded[onset_at] - ONSET, self.velocity_bins)
        order = np.lexsort((notes["pitch"], notes["onset"]))
        piece = Piece(notes=notes[order])
        piece.meta["repairs"] = repairs
        return piece

    def transpose(self, array: np.ndarray, semitones: int) -> tuple[np.ndarray, int] | None:
        """Rows moved by `semitones`; notes pushed off the keyboard are dropped (with their sustains) and counted."""
        grid = np.asarray(array)
        s = int(semitones)
        out = np.zeros_like(grid)
        if s == 0:
            return grid.copy(), 0
        if abs(s) >= N_PITCHES:
            return out, int((grid >= ONSET).sum())
        if s > 0:
            out[s:] = grid[:-s]
            lost = grid[N_PITCHES - s :]
        else:
            out[:s] = grid[-s:]
            lost = grid[:-s]
        return out, int((lost >= ONSET).sum())
