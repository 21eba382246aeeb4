"""scripts/folk_quality.py: the pieces that need no checkpoint (character classes, the lr check)."""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "folk_quality.py"


@pytest.fixture(scope="module")
def fq():
    spec = importlib.util.spec_from_file_location("folk_quality", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_character_classes(fq):
    got = {c: fq.char_class(c) for c in "Ag3 |:,^({z\nk"}
    assert got == {"A": "note letter", "g": "note letter", "3": "digit", " ": "space", "|": "bar/repeat",
                   ":": "bar/repeat", ",": "octave", "^": "accidental", "(": "slur/tuplet", "{": "grace",
                   "z": "rest", "\n": "newline", "k": "'k'"}


def test_lr_reports_the_last_logged_lr_against_the_peak(fq, tmp_path, capsys):
    rows = [{"step": 1, "split": "train", "lr": 0.005}, {"step": 2, "split": "val", "loss": 1.0},
            {"step": 3, "split": "train", "lr": 0.0005}]
    path = tmp_path / "metrics.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    fq.main(["lr", str(path)])
    out = json.loads(capsys.readouterr().out)
    assert out["steps"] == 3 and out["peak_lr"] == 0.005 and out["last_over_peak"] == pytest.approx(0.1)
