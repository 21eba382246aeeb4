"""scripts/fractal_quality.py: the sixteenth-note positions (no checkpoint needed)."""
from __future__ import annotations

import importlib.util
from pathlib import Path

from fractalmusic.io import write_piece
from fractalmusic.piece import Piece, make_notes

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "fractal_quality.py"


def test_sixteenths_are_counted_by_onset_column(tmp_path):
    spec = importlib.util.spec_from_file_location("fractal_quality", SCRIPT)
    fq = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(fq)
    # sixteenths start at steps 3, 4 and 19 (a note broken across a patch boundary, and one more); the rest longer
    rows = [(0.0, 0.75, 60), (0.75, 0.25, 60), (1.0, 0.25, 60), (1.25, 1.0, 60), (4.75, 0.25, 64), (0.0, 2.0, 48)]
    write_piece(Piece(notes=make_notes(rows)), tmp_path / "a.mid")
    (tmp_path / "notes.txt").write_text("not a MIDI file")
    got = fq.sixteenths(str(tmp_path))
    assert got["notes"] == 6 and got["sixteenths"] == 3
    assert got["mod4"] == [1, 0, 0, 2]
    assert got["mod16"][3] == 2 and got["mod16"][4] == 1 and sum(got["mod16"]) == 3
