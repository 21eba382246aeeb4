"""MusicXML / kern through music21: notes, ties, chords, grace notes, tempo, metre, key, title; MusicXML writing."""
from __future__ import annotations

import numpy as np
import pytest

from conftest import music21_corpus_dir
from fractalmusic.errors import PieceReadError
from fractalmusic.io import read_pieces, write_piece
from fractalmusic.io.music21_io import piece_from_music21, piece_to_music21
from fractalmusic.piece import Piece, make_notes


def test_chorale_notes_match_music21(chorale_path):
    from music21 import converter

    (piece,) = read_pieces(chorale_path)
    score = converter.parse(str(chorale_path))
    expected = []
    for part in score.parts:
        for el in part.stripTies().flatten().notes:
            for p in el.pitches:
                expected.append((float(el.offset), float(el.duration.quarterLength), p.midi))
    assert piece.n_notes == len(expected) == 163
    got = sorted((float(n["onset"]), float(n["duration"]), int(n["pitch"])) for n in piece.notes)
    assert got == sorted(expected)
    assert piece.key == "F#m"
    assert piece.tempos == [(0.0, 96.0)]
    # a one-beat pickup: bar lines fall at 0, 1, 5, 9 ... as in the score
    assert piece.time_signatures == [(0.0, 1, 4), (1.0, 4, 4)]
    assert piece.meta["pickup_beats"] == 1.0
    assert piece.bar_lines()[:3].tolist() == [0.0, 1.0, 5.0]
    assert piece.source == str(chorale_path)
    assert set(piece.notes["program"].tolist()) == {0}


def _stream_with_ties_chords_grace():
    from music21 import chord, instrument, metadata, meter, note, stream, tempo

    s = stream.Score()
    s.metadata = metadata.Metadata(title="Little test")
    p = stream.Part()
    p.insert(0, instrument.Violin())
    p.insert(0, meter.TimeSignature("3/4"))
    p.insert(0, tempo.MetronomeMark(number=72))
    a = note.Note("C5", quarterLength=1.0)
    a.tie = __import__("music21").tie.Tie("start")
    b = note.Note("C5", quarterLength=0.5)
    b.tie = __import__("music21").tie.Tie("stop")
    grace = note.Note("D5", quarterLength=0.5).getGrace()
    c = chord.Chord(["E4", "G4", "B4"], quarterLength=1.5)
    p.append([a, b, grace, c])
    p.insert(3.0, tempo.MetronomeMark(number=60))
    s.insert(0, p)
    return s


def test_ties_merged_chords_expanded_grace_skipped():
    piece = piece_from_music21(_stream_with_ties_chords_grace(), source="mem")
    got = [(float(n["onset"]), float(n["duration"]), int(n["pitch"])) for n in piece.notes]
    assert got == [(0.0, 1.5, 72), (1.5, 1.5, 64), (1.5, 1.5, 67), (1.5, 1.5, 71)]
    assert set(piece.notes["program"].tolist()) == {40}  # violin
    assert piece.title == "Little test"
    assert piece.time_signatures == [(0.0, 3, 4)]
    assert piece.tempos == [(0.0, 72.0), (3.0, 60.0)]
    assert piece.source == "mem"


def test_kern_file_reads():
    path = music21_corpus_dir() / "palestrina" / "Agnus_II_47.krn"
    (piece,) = read_pieces(path)
    assert piece.n_notes > 100
    assert np.all(piece.notes["duration"] > 0)
    lo, hi = piece.pitch_range
    assert 30 <= lo < hi <= 90


def test_musicxml_round_trip(tmp_path):
    piece = Piece(
        notes=make_notes(
            [
                (0.0, 1.0, 60, 80, 0), (0.0, 1.0, 64, 80, 0), (0.0, 1.0, 64, 80, 0),  # chord with a unison
                (0.0, 2.0, 48, 80, 0),  # overlaps the chord: another lane
                (1.0, 1.0 / 3, 67, 80, 0), (4 / 3, 1.0 / 3, 69, 80, 0), (5 / 3, 1.0 / 3, 71, 80, 0),  # triplets
                (2.0, 0.25, 72, 80, 40), (2.5, 1.5, 74, 80, 40),  # a violin
                (0.0, 0.5, 36, 80, 0, True), (0.5, 0.5, 42, 80, 0, True),  # drums
            ]
        ),  # fmt: skip
        tempos=[(0.0, 90.0)],
        time_signatures=[(0.0, 2, 4)],
        key="D",
        title="Round trip",
    )
    path = write_piece(piece, tmp_path / "rt.musicxml")
    (back,) = read_pieces(path)

    def rows(p):
        return sorted(
            (
                round(float(n["onset"]) * 3, 6),
                round(float(n["duration"]) * 3, 6),
                int(n["pitch"]),
                int(n["program"]),
                bool(n["is_drum"]),
            )
            for n in p.notes
        )

    assert rows(back) == rows(piece)
    assert back.title == "Round trip"
    assert back.key == "D"
    assert back.time_signatures == [(0.0, 2, 4)]
    assert back.tempos[0] == (0.0, 90.0)
    assert piece_to_music21(piece).parts[0].partName  # parts are named after their instrument


def test_corrupt_and_empty_scores(tmp_path):
    bad = tmp_path / "bad.musicxml"
    bad.write_text("<score-partwise><part id='P1'><measure><note>")
    with pytest.raises(PieceReadError, match="cannot"):
        read_pieces(bad)
    empty = tmp_path / "empty.xml"
    empty.write_text("")
    with pytest.raises(PieceReadError, match="empty"):
        read_pieces(empty)
    with pytest.raises(PieceReadError, match="unsupported file type '.txt'"):
        other = tmp_path / "notes.txt"
        other.write_text("hello")
        read_pieces(other)
