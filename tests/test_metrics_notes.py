"""Note-level metrics on hand-made pieces with known answers."""
from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fractalmusic.metrics import notes as nm
from fractalmusic.piece import Piece, make_notes

C_MAJOR = [60, 62, 64, 65, 67, 69, 71]


def piece(rows, time_signatures=None) -> Piece:
    return Piece(make_notes(rows), time_signatures=time_signatures or [(0.0, 4, 4)])


def scale_piece() -> Piece:
    return piece([(i, 1.0, p) for i, p in enumerate(C_MAJOR)])


def test_c_major_scale():
    p = scale_piece()
    assert nm.scale_consistency(p) == 1.0
    assert nm.pitch_class_entropy(p) == pytest.approx(math.log2(7))
    assert nm.pitch_count(p) == 7
    assert nm.pitch_range(p) == 11
    assert nm.polyphony(p) == 1.0
    assert nm.polyphony_rate(p) == 0.0
    assert nm.notes_per_beat(p) == 1.0
    assert nm.ioi(p) == 1.0
    assert nm.empty_beat_rate(p) == 0.0
    hist = nm.note_length_histogram(p)
    assert hist[nm.NOTE_LENGTH_LABELS.index("quarter")] == 1.0 and hist.sum() == pytest.approx(1.0)
    # 4/4: bar 1 holds C D E F, bar 2 G A B
    assert nm.pitch_count_per_bar(p) == pytest.approx(3.5)
    assert nm.pitch_class_count_per_bar(p) == pytest.approx(3.5)


def test_chromatic_scale_entropy_and_scale_share():
    p = piece([(i * 0.5, 0.5, 60 + i) for i in range(12)])
    assert nm.pitch_class_entropy(p) == pytest.approx(math.log2(12))
    assert nm.scale_consistency(p) == pytest.approx(7 / 12)
    assert nm.ioi(p) == pytest.approx(0.5)


def test_harmonic_minor_is_a_scale():
    a_harmonic_minor = [69, 71, 72, 74, 76, 77, 80]
    p = piece([(i, 1.0, q) for i, q in enumerate(a_harmonic_minor)])
    assert nm.scale_consistency(p) == 1.0


def test_chord_polyphony():
    p = piece([(0, 4, 60), (0, 4, 64), (0, 4, 67)])
    assert nm.polyphony(p) == 3.0
    assert nm.polyphony_rate(p) == 1.0
    assert math.isnan(nm.ioi(p))  # one onset time only
    assert nm.pitch_count_per_bar(p) == 3.0


def test_partial_overlap_polyphony_is_time_weighted():
    p = piece([(0, 4, 60), (2, 2, 64)])  # one note for 2 beats, two notes for 2 beats
    assert nm.polyphony(p) == pytest.approx(1.5)
    assert nm.polyphony_rate(p) == pytest.approx(0.5)


def test_silence_does_not_dilute_polyphony_but_counts_as_empty_beats():
    p = piece([(0, 1, 60), (0, 1, 64), (3, 1, 67), (3, 1, 71)])
    assert nm.polyphony(p) == 2.0
    assert nm.empty_beat_rate(p) == pytest.approx(0.5)  # beats 1 and 2 of 4
    assert nm.notes_per_beat(p) == 1.0


def test_pitch_counts_per_bar_distinguish_octaves_and_follow_held_notes():
    # bar 1: C4, C5, E4; bar 2: C4 held over from bar 1 (it sounds there) and G4
    p = piece([(0, 1, 60), (1, 1, 72), (2, 1, 64), (3, 2, 60), (5, 1, 67)])
    # bar 1: pitches {60, 72, 64} = 3, classes {C, E} = 2; bar 2: {60, 67} = 2 and 2
    assert nm.pitch_count_per_bar(p) == pytest.approx(2.5)
    assert nm.pitch_class_count_per_bar(p) == pytest.approx(2.0)


def test_bars_follow_the_time_signature():
    rows = [(i, 1, 60 + i) for i in range(6)]
    assert nm.pitch_count_per_bar(piece(rows, [(0.0, 3, 4)])) == 3.0  # two bars of 3
    assert nm.pitch_count_per_bar(piece(rows, [(0.0, 4, 4)])) == 3.0  # 4 + 2
    assert nm.pitch_count_per_bar(piece(rows, [(0.0, 2, 4)])) == 2.0  # three bars of 2


def test_note_length_histogram_classes():
    p = piece([(0, 0.25, 60), (0.25, 0.5, 62), (0.75, 0.5, 64), (1.25, 1.0, 65), (2.25, 3.0, 67)])
    hist = nm.note_length_histogram(p)
    labels = nm.NOTE_LENGTH_LABELS
    assert hist[labels.index("16th")] == pytest.approx(0.2)
    assert hist[labels.index("8th")] == pytest.approx(0.4)
    assert hist[labels.index("quarter")] == pytest.approx(0.2)
    assert hist[labels.index("dotted half")] == pytest.approx(0.2)


def test_groove_consistency():
    same = piece([(bar * 4 + b, 1, 60) for bar in range(4) for b in range(4)])
    assert nm.groove_consistency(same) == 1.0
    # bar 2 adds two eighth-note offbeats: 2 of 16 positions differ
    two = piece([(0, 1, 60), (1, 1, 60), (2, 1, 60), (3, 1, 60),
                 (4, 1, 60), (5, 0.5, 60), (5.5, 0.5, 60), (6, 0.5, 60), (6.5, 0.5, 60), (7, 1, 60)])
    assert nm.groove_consistency(two) == pytest.approx(1 - 2 / 16)
    patterns = nm.bar_onset_patterns(two)
    assert patterns.shape == (2, 16) and patterns[1, 6] and not patterns[0, 6]


def test_drums_are_left_out():
    rows = [(i, 1.0, p) for i, p in enumerate(C_MAJOR)] + [(0, 1, 36, 100, 0, True), (0.5, 1, 42, 100, 0, True)]
    p = piece(rows)
    assert nm.pitch_count(p) == 7
    assert nm.polyphony(p) == 1.0
    assert nm.scale_consistency(p) == 1.0


def test_empty_piece_is_nan_not_an_error():
    values = nm.note_metrics(Piece())
    for name, v in values.items():
        assert np.all(np.isnan(v)), name


@settings(max_examples=40, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.integers(0, 63).map(lambda s: s / 4),
            st.integers(1, 16).map(lambda s: s / 4),
            st.integers(21, 108),
        ),
        min_size=2,
        max_size=30,
    )
)
def test_metric_bounds(rows):
    p = piece(rows)
    m = nm.note_metrics(p)
    assert 0.0 <= m["pitch_class_entropy"] <= math.log2(12) + 1e-9
    assert 7 / 12 - 1e-9 <= m["scale_consistency"] <= 1.0  # pigeonhole: some scale holds 7/12 of the notes
    assert m["polyphony"] >= 1.0 - 1e-9
    assert 0.0 <= m["polyphony_rate"] <= 1.0
    assert 0.0 <= m["empty_beat_rate"] < 1.0
    assert np.nansum(m["note_length_hist"]) == pytest.approx(1.0)
    assert m["pitch_class_count_per_bar"] > 0
    assert m["pitch_class_count_per_bar"] <= m["pitch_count_per_bar"] + 1e-9
    g = m["groove_consistency"]
    assert math.isnan(g) or 0.0 <= g <= 1.0
    # polyphony equals total sounding note time over sounding time
    on = np.array([r[0] for r in rows])
    off = on + np.array([r[1] for r in rows])
    grid = np.arange(0, off.max(), 0.25) + 0.125
    active = ((on[None, :] <= grid[:, None]) & (off[None, :] > grid[:, None])).sum(axis=1)
    assert m["polyphony"] == pytest.approx(active[active > 0].mean())
