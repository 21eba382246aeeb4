"""The `pianoroll` grid representation."""
from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from fractalmusic.errors import ConfigError
from fractalmusic.piece import Piece, make_notes
from fractalmusic.plugins import get_representation
from fractalmusic.representations.pianoroll import (
    PianoRollRepresentation,
    beats_to_steps,
    bin_to_velocity,
    velocity_to_bin,
)


def chorale_piece(path) -> Piece:
    """A Piece straight from music21 (independent of the io layer): every part merged, ties joined."""
    from music21 import converter

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        score = converter.parse(str(path)).stripTies()
    rows = []
    for el in score.flatten().notes:
        for p in el.pitches:
            rows.append((float(el.offset), float(el.quarterLength), p.midi, 90))
    return Piece(notes=make_notes(rows), source=str(path))


@pytest.fixture(scope="module")
def chorales(chorale_paths):
    return [chorale_piece(p) for p in chorale_paths[:5]]


def test_registered_and_specified():
    assert get_representation("pianoroll") is PianoRollRepresentation
    rep = PianoRollRepresentation()
    assert rep.kind == "grid" and rep.vocab_size == 3 and rep.steps_per_beat == 4
    assert PianoRollRepresentation(velocity_bins=4).spec().vocab_size == 6


def test_time_grid_is_beats_times_steps_per_beat():
    # a crotchet at beat 1 must span columns 4..7 at 4 steps per beat (not 1 column, not 16)
    piece = Piece(notes=make_notes([(1.0, 1.0, 60), (2.0, 0.5, 62)]))
    grid = PianoRollRepresentation().encode(piece)
    assert grid.shape == (128, 10) and grid.dtype == np.int64
    assert grid[60].tolist() == [0, 0, 0, 0, 2, 1, 1, 1, 0, 0]
    assert grid[62].tolist() == [0] * 8 + [2, 1]
    assert grid.sum() == grid[60].sum() + grid[62].sum()
    assert PianoRollRepresentation(steps_per_beat=2).encode(piece).shape == (128, 5)


def test_repeated_notes_stay_separate_and_onsets_win():
    piece = Piece(notes=make_notes([(0, 1, 60), (1, 1, 60), (0, 3, 64), (1, 0.5, 64), (0, 0.01, 67)]))
    grid = PianoRollRepresentation().encode(piece)
    assert grid[60].tolist() == [2, 1, 1, 1, 2, 1, 1, 1, 0, 0, 0, 0]
    assert grid[64].tolist() == [2, 1, 1, 1, 2, 1, 1, 1, 1, 1, 1, 1]  # merged tracks: the onset wins
    assert grid[67].tolist()[:2] == [2, 0]  # a very short note still takes one step
    back = PianoRollRepresentation().decode(grid)
    assert [(n["onset"], n["duration"], n["pitch"]) for n in back.notes if n["pitch"] == 60] == [(0, 1, 60), (1, 1, 60)]


def test_empty_piece_and_drums():
    assert PianoRollRepresentation().encode(Piece()).shape == (128, 1)
    piece = Piece(notes=make_notes([(0, 1, 36, 100, 0, True), (0, 1, 60)]))
    assert PianoRollRepresentation().encode(piece)[36].sum() == 0
    assert PianoRollRepresentation(include_drums=True).encode(piece)[36, 0] == 2


def test_velocity_bins_round_trip():
    for bins in (1, 2, 5, 8, 32, 127):
        b = np.arange(bins)
        assert np.array_equal(velocity_to_bin(bin_to_velocity(b, bins), bins), b)
    assert bin_to_velocity(0, 1) == 80
    rep = PianoRollRepresentation(velocity_bins=4)
    piece = Piece(notes=make_notes([(0, 1, 60, 10), (0, 1, 62, 120)]))
    grid = rep.encode(piece)
    assert grid[60, 0] == 2 and grid[62, 0] == 5
    assert sorted(rep.decode(grid).notes["velocity"].tolist()) == [16, 112]  # bin centres


def test_lossless_at_grid_resolution_on_bach_chorales(chorales):
    rep = PianoRollRepresentation()
    for piece in chorales:
        grid = rep.encode(piece)
        assert grid.shape[1] == int(np.ceil(piece.end_beat * 4))
        back = rep.decode(grid)
        assert back.meta["repairs"] == {}
        assert np.array_equal(rep.encode(back), grid), piece.source
        # the notes themselves: same onsets and pitches as the original, quantised
        orig = sorted(zip(beats_to_steps(piece.notes["onset"], 4).tolist(), piece.notes["pitch"].tolist()))
        got = sorted(zip((back.notes["onset"] * 4).astype(int).tolist(), back.notes["pitch"].tolist()))
        assert got == sorted(set(orig))


def test_decode_repairs_and_shape_errors():
    rep = PianoRollRepresentation()
    grid = np.zeros((128, 6), dtype=np.int64)
    grid[60] = [1, 1, 0, 2, 1, 9]  # orphan sustain at 0, a valid note at 3, an invalid value at 5
    grid[61, 2] = -4
    piece = rep.decode(grid)
    assert piece.meta["repairs"] == {"invalid_cells": 2, "orphan_sustain": 1}
    assert [(n["onset"], n["duration"], n["pitch"]) for n in piece.notes] == [(0, 0.5, 60), (0.75, 0.5, 60)]
    assert grid[60, 5] == 9  # the caller's array is left alone
    # decode never raises: other shapes are fitted to [128, T] and the repair says so
    flat = rep.decode(np.full(16, 2, dtype=np.int64))
    assert flat.meta["repairs"]["shape"] == [16] and set(flat.notes["pitch"].tolist()) == {0}
    low = np.zeros((64, 16), dtype=np.int64)
    low[60, 4] = 2
    piece = rep.decode(low)
    assert piece.meta["repairs"] == {"shape": [64, 16]} and piece.notes["pitch"].tolist() == [60]
    assert rep.decode(np.zeros((200, 8))).n_notes == 0 and rep.decode(np.array(["x"])).n_notes == 0


def test_transpose_shifts_rows_and_counts_dropped_notes():
    rep = PianoRollRepresentation()
    piece = Piece(notes=make_notes([(0, 1, 60), (1, 1, 125), (2, 1, 2)]))
    grid = rep.encode(piece)
    up, dropped = rep.transpose(grid, 5)
    assert dropped == 1 and up.shape == grid.shape
    assert sorted(rep.decode(up).notes["pitch"].tolist()) == [7, 65]
    down, dropped = rep.transpose(grid, -3)
    assert dropped == 1 and sorted(rep.decode(down).notes["pitch"].tolist()) == [57, 122]
    assert rep.transpose(grid, 0)[1] == 0 and np.array_equal(rep.transpose(grid, 0)[0], grid)
    assert rep.transpose(grid, 200)[1] == 3


def test_state_dict_json_round_trip():
    rep = PianoRollRepresentation(steps_per_beat=8, velocity_bins=3, include_drums=True)
    again = PianoRollRepresentation.from_state_dict(json.loads(json.dumps(rep.state_dict())))
    assert again.config == rep.config and again.fingerprint() == rep.fingerprint()
    piece = Piece(notes=make_notes([(0.125, 1, 60, 30), (0, 1, 36, 90, 0, True)]))
    assert np.array_equal(again.encode(piece), rep.encode(piece))


def test_bad_config_is_a_config_error():
    with pytest.raises(ConfigError, match="steps-per-beat"):
        PianoRollRepresentation(steps_per_beat=0)
    with pytest.raises(ConfigError, match="velocity-bins"):
        PianoRollRepresentation(velocity_bins=0)


@settings(max_examples=80, deadline=None)
@given(hnp.arrays(np.int64, st.tuples(st.just(128), st.integers(1, 6)), elements=st.integers(-3, 10)))
def test_decode_never_raises_and_reports_every_repair(grid):
    rep = PianoRollRepresentation()
    piece = rep.decode(grid)
    invalid = int(((grid < 0) | (grid > 2)).sum())
    assert piece.meta["repairs"].get("invalid_cells", 0) == invalid
    clean = np.where((grid < 0) | (grid > 2), 0, grid)
    before = np.concatenate([np.zeros((128, 1), dtype=np.int64), clean[:, :-1]], axis=1)
    assert piece.meta["repairs"].get("orphan_sustain", 0) == int(((clean == 1) & (before == 0)).sum())
    assert np.all(piece.notes["duration"] > 0)
    again = np.zeros_like(grid)
    encoded = rep.encode(piece)[:, : grid.shape[1]]
    again[:, : encoded.shape[1]] = encoded
    assert np.array_equal(again, np.where((clean == 1) & (before == 0), 2, clean))
