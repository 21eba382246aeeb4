from __future__ import annotations

import numpy as np

from fractalmusic.piece import Piece, make_notes


def test_tempo_map_seconds():
    p = Piece(make_notes([(0, 1, 60), (4, 2, 62)]), tempos=[(0.0, 120.0), (2.0, 60.0)])
    # two beats at 0.5 s, then 1 s per beat
    assert np.allclose(p.seconds([0, 1, 2, 3, 6]), [0, 0.5, 1.0, 2.0, 5.0])
    assert p.end_beat == 6.0 and abs(p.end_seconds - 5.0) < 1e-9


def test_bar_lines_follow_time_signature_changes():
    p = Piece(make_notes([(0, 14, 60)]), time_signatures=[(0.0, 4, 4), (8.0, 3, 4)])
    assert list(p.bar_lines()) == [0.0, 4.0, 8.0, 11.0]  # bar starts before the end
    assert p.time_signature_at(9) == (3, 4)


def test_transpose_drops_out_of_range_and_spares_drums():
    p = Piece(make_notes([(0, 1, 120), (1, 1, 60), (2, 1, 38, 90, 0, True)]))
    q, dropped = p.transpose(10)
    assert dropped == 1
    assert sorted(q.notes["pitch"].tolist()) == [38, 70]


def test_slice_beats_clips_and_shifts():
    p = Piece(make_notes([(0, 4, 60), (3, 2, 62), (6, 1, 64)]))
    s = p.slice_beats(2, 5)
    assert s.notes["onset"].tolist() == [0.0, 1.0]
    assert s.notes["duration"].tolist() == [2.0, 2.0]
