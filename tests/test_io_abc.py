"""ABC: tune books, header facts, notes through music21 (a few tunes only), and the top-voice writer."""
from __future__ import annotations

import re

import numpy as np
import pytest

from conftest import music21_corpus_dir
from fractalmusic.errors import PieceReadError
from fractalmusic.io import ensure_notes, read_pieces, write_piece
from fractalmusic.io.abc import (
    abc_key_name,
    abc_meter,
    abc_tempo,
    parse_abc_header,
    piece_to_abc,
    read_abc,
    split_abc_book,
    top_voice,
)
from fractalmusic.io.music21_io import abc_to_piece
from fractalmusic.piece import Piece, make_notes

BOOK = """%abc-2.1
% a small book with a file header
L:1/4

X:1
T:First
M:C|
K:D
% comment inside the tune
DEFG|A2 A2|]


X: 2
T:Second % trailing comment
M:6/8
L:1/8
Q:3/8=60
K:A dor
ABc d2 e|
X:3
T:Empty
K:C
"""

ONEILL = music21_corpus_dir() / "oneills1850" / "0626-0635.abc"


def test_split_keeps_tune_text_exactly():
    tunes = split_abc_book(BOOK)
    assert len(tunes) == 3
    assert tunes[0] == "X:1\nT:First\nM:C|\nK:D\n% comment inside the tune\nDEFG|A2 A2|]\n"
    assert tunes[1].startswith("X: 2\nT:Second % trailing comment\n") and tunes[1].endswith("ABc d2 e|\n")
    assert tunes[2] == "X:3\nT:Empty\nK:C\n"
    assert split_abc_book("T:No number\nK:G\nGAB|\n") == ["T:No number\nK:G\nGAB|\n"]
    assert split_abc_book("  \n\n") == []


def test_header_fields_first_occurrence_up_to_k():
    text = split_abc_book(BOOK)[1]
    h = parse_abc_header(text)
    assert h == {"X": "2", "T": "Second", "M": "6/8", "L": "1/8", "Q": "3/8=60", "K": "A dor"}
    assert parse_abc_header("X:5\nT:One\nT:Two\nK:G\nT:Part B\n")["T"] == "One"


@pytest.mark.parametrize(
    "value, expected",
    [
        ("C", (4, 4)), ("C|", (2, 2)), ("none", (4, 4)), ("", (4, 4)),
        ("6/8", (6, 8)), ("2+3/8", (5, 8)), ("7/5", (4, 4)),
    ],  # fmt: skip
)
def test_meter(value, expected):
    assert abc_meter(value) == expected


def test_key_and_tempo_fields():
    assert abc_key_name("Gm") == "Gm"
    assert abc_key_name("A dor") == "Ador"
    assert abc_key_name("D mix clef=treble") == "Dmix"
    assert abc_key_name("G clef=bass") == "G"
    assert abc_key_name("HP") == "HP"
    assert abc_key_name("none") is None
    assert abc_tempo({"Q": "1/4=120"}) == 120
    assert abc_tempo({"Q": "3/8=60"}) == 90  # dotted crotchets
    assert abc_tempo({"Q": '"Allegro" 1/2=80'}) == 160
    assert abc_tempo({"Q": "100", "L": "1/8"}) == 50  # old style: L units per minute
    assert abc_tempo({}) is None


def test_book_without_notes_is_fast_text_and_facts():
    pieces = read_abc(ONEILL, notes=False)
    text = ONEILL.read_text(encoding="utf-8", errors="replace")
    numbers = re.findall(r"^X:\s*(\S+)", text, flags=re.M)
    assert len(pieces) == len(numbers) == 10
    first = pieces[0]
    assert first.n_notes == 0
    assert first.source == f"{ONEILL}#X626"
    assert first.abc.startswith("X: 626\nT: Lamentation of Owen Roe O'Neill, The\n")
    assert first.title == "Lamentation of Owen Roe O'Neill, The"
    assert first.key == "Gm"
    assert first.time_signatures == [(0.0, 3, 4)]
    assert pieces[1].time_signatures == [(0.0, 6, 8)]
    assert pieces[2].time_signatures == [(0.0, 4, 4)]  # M:C
    assert [p.source.rsplit("#X", 1)[1] for p in pieces] == numbers


def test_book_with_notes_reports_failures_and_keeps_the_good(tmp_path):
    path = tmp_path / "book.abc"
    path.write_text(BOOK)
    errors: list = []
    pieces = read_abc(path, notes=True, errors=errors)
    assert [p.source for p in pieces] == [f"{path}#X1", f"{path}#X2"]
    assert errors == [(f"{path}#X3", "no notes in ABC tune")]
    first, second = pieces
    # the file header's L:1/4 applies to tune 1: D E F G are crotchets, A2 a minim
    assert first.notes["pitch"].tolist() == [62, 64, 66, 67, 69, 69]
    assert first.notes["duration"].tolist() == [1, 1, 1, 1, 2, 2]
    assert first.time_signatures == [(0.0, 2, 2)]
    assert first.abc == split_abc_book(BOOK)[0]  # text untouched: the header field is not pasted in
    # tune 2: A dorian, L:1/8, Q:3/8=60 -> 90 quarter notes per minute
    assert second.key == "Ador"
    assert second.notes["pitch"].tolist() == [69, 71, 72, 74, 76]
    assert second.notes["duration"].tolist() == [0.5, 0.5, 0.5, 1.0, 0.5]
    assert second.tempos[0][1] == pytest.approx(90)


def test_unreadable_abc_files(tmp_path):
    empty = tmp_path / "empty.abc"
    empty.write_text("\n\n")
    with pytest.raises(PieceReadError, match="no ABC tunes"):
        read_pieces(empty)
    binary = tmp_path / "bin.abc"
    binary.write_bytes(b"\x00\x01\x02X:1\n")
    with pytest.raises(PieceReadError, match="binary"):
        read_pieces(binary)
    only_bad = tmp_path / "bad.abc"
    only_bad.write_text("X:1\nT:Nothing\nK:C\n")
    with pytest.raises(PieceReadError, match="no notes"):
        read_pieces(only_bad)
    with pytest.raises(PieceReadError, match="no such file"):
        read_pieces(tmp_path / "absent.abc")


def test_latin1_book_is_read(tmp_path):
    path = tmp_path / "latin.abc"
    path.write_bytes("X:1\nT:Caf\xe9 Reel\nK:G\nGABc|\n".encode("latin-1"))
    (piece,) = read_pieces(path, notes=False)
    assert piece.title == "Caf\xe9 Reel"


def test_ensure_notes_parses_a_text_only_tune():
    pieces = read_abc(ONEILL, notes=False)
    tune = pieces[1]  # X:627 Captain O'Kane, 6/8 with a quaver pickup
    full = ensure_notes(tune)
    assert tune.n_notes == 0  # the input is left alone
    assert full.n_notes > 50
    assert full.abc == tune.abc and full.title == tune.title and full.source == tune.source
    direct = abc_to_piece(tune.abc)
    assert np.array_equal(full.notes, direct.notes)
    assert full.meta["pickup_beats"] == 0.5
    assert full.time_signatures == [(0.0, 1, 8), (0.5, 6, 8)]
    assert ensure_notes(full) is full  # nothing to do


# ---------------------------------------------------------------------------------------------------- writing


def test_top_voice_skyline():
    piece = Piece(
        notes=make_notes(
            [
                (0.0, 2.0, 60),  # C4 held two beats; E4 above it from beat 1
                (0.0, 1.0, 55),
                (1.0, 0.5, 64),
                (1.0, 1.0, 48),
                (2.0, 1.0, 67),  # a higher note cuts...
                (2.5, 1.0, 72),  # ...and is cut by a higher one
                (3.0, 2.0, 50),  # struck under a held C5: not melody
                (4.0, 1.0, 62),  # C5 ended at 3.5: the next onset is melody again
                (4.0, 1.0, 36, 80, 0, True),  # drums never are
            ]
        )
    )
    tv = top_voice(piece)
    got = [(float(n["onset"]), float(n["duration"]), int(n["pitch"])) for n in tv]
    assert got == [(0.0, 1.0, 60), (1.0, 0.5, 64), (2.0, 0.5, 67), (2.5, 1.0, 72), (4.0, 1.0, 62)]


def _m21_melody(text: str) -> list[tuple[float, float, int]]:
    piece = abc_to_piece(text)
    return [(float(n["onset"]), float(n["duration"]), int(n["pitch"])) for n in piece.notes]


def test_written_abc_parses_to_the_top_voice(tmp_path):
    piece = Piece(
        notes=make_notes(
            [
                (0.0, 1.0, 65), (0.0, 3.0, 53),  # F4 over a held F3
                (1.0, 0.5, 71), (1.5, 0.5, 70),  # B natural then B flat in K:F, same bar
                (2.0, 1.75, 77),  # crosses the bar line at beat 3: tied
                (3.75, 0.25, 61),  # C#4
                (4.0, 0.5, 84), (4.0, 0.5, 60),  # chord: top note wins
                # rest from 4.5 to 5.0
                (5.0, 2.0, 58),  # across the change to 2/4 at beat 6
                (7.0, 0.75, 47), (7.75, 0.25, 94),
                (8.0, 0.5, 60),  # the last bar (8..10) gets padded with a rest
            ]
        ),  # fmt: skip
        time_signatures=[(0.0, 3, 4), (6.0, 2, 4)],
        tempos=[(0.0, 132.0)],
        key="F",
        title="Test tune",
    )
    path = write_piece(piece, tmp_path / "t.abc")
    text = path.read_text()
    assert "K:F" in text and "M:3/4" in text and "[M:2/4]" in text and "Q:1/4=132" in text
    assert "-" in text  # a tie across a bar line
    assert text.rstrip().endswith("z3 |]")
    expected = [(float(n["onset"]), float(n["duration"]), int(n["pitch"])) for n in top_voice(piece)]
    assert _m21_melody(text) == expected
    # every bar has the length its metre asks for (the last one is padded with a rest)
    from music21 import converter

    part = converter.parse(text, format="abc").parts[0]
    lengths = [float(m.duration.quarterLength) for m in part.getElementsByClass("Measure")]
    assert lengths == [3.0, 3.0, 2.0, 2.0]


def test_written_abc_in_a_minor_key_and_without_a_key(tmp_path):
    notes = make_notes([(0, 1, 66), (1, 1, 65), (2, 1, 66), (3, 1, 63)])  # F# F F# D#
    for key, header in (("F#m", "K:F#m"), ("Ador", "K:C"), (None, "K:C")):
        piece = Piece(notes=notes, key=key)
        text = piece_to_abc(piece)
        assert header in text
        assert [p for _, _, p in _m21_melody(text)] == [66, 65, 66, 63]


def test_abc_born_piece_is_written_as_its_text(tmp_path):
    (piece,) = [p for p in read_abc(ONEILL, notes=False) if p.source.endswith("#X628")]
    path = write_piece(piece, tmp_path / "x.abc")
    assert path.read_text() == piece.abc
