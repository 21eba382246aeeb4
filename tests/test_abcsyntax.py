"""fractalmusic.abcsyntax: one reading of ABC headers, metres, units, tempi, keys and bar lengths for every reader."""
from __future__ import annotations

import math
from fractions import Fraction

import pytest

from fractalmusic import abcsyntax
from fractalmusic.io.abc import abc_meter, tune_to_piece
from fractalmusic.metrics import abc as abc_checks
from fractalmusic.representations.abc_text import header_facts


@pytest.mark.parametrize("value", ["7/5", "fast", "0/4", "", "none", "3/"])
def test_no_metre_means_the_same_everywhere(value):
    tune = f"X:1\nT:t\nM:{value}\nL:1/4\nK:C\nCDEF|CDE|CDEFG|CD|\n"
    assert abcsyntax.parse_meter(value) is None
    assert header_facts(tune)["time_signature"] is None  # the representations: no metre
    assert math.isnan(abc_checks.bar_length_consistency(tune))  # the checks: bars not judged
    assert abc_meter(value) == abcsyntax.DEFAULT_SIGNATURE == (4, 4)  # a Piece records the default signature
    assert tune_to_piece(tune).time_signatures[0][1:] == (4, 4)
    assert abcsyntax.default_unit(abcsyntax.parse_meter(value)) == Fraction(1, 8)


@pytest.mark.parametrize("value, expected", [
    ("C", (4, 4)), ("C|", (2, 2)), ("6/8", (6, 8)), ("2+3/8", (5, 8)), ("(2+3)/8", (5, 8)), ("3/4 % waltz", (3, 4)),
])  # fmt: skip
def test_readable_metres_agree(value, expected):
    tune = f"X:1\nM:{value}\nK:C\nC|\n"
    assert abcsyntax.parse_meter(value) == expected == abc_meter(value) == header_facts(tune)["time_signature"]


def test_units_tempi_keys():
    assert abcsyntax.parse_unit("1/8") == Fraction(1, 8) and abcsyntax.parse_unit("1") == 1
    assert abcsyntax.parse_unit("x") is None
    assert abcsyntax.unit_length({"M": "2/4"}) == Fraction(1, 16)
    assert abcsyntax.unit_length({"M": "none"}) == Fraction(1, 8)
    assert abcsyntax.parse_tempo("3/8=60") == 90
    assert abcsyntax.parse_tempo("120", Fraction(1, 4)) == 120
    assert abcsyntax.parse_tempo("fast") is None
    assert [abcsyntax.key_name(k) for k in ("Gm", "E Minor", "A dor", "Bb mix clef=bass", "HP", "none", "G ^c")] \
        == ["Gm", "Em", "Ador", "Bbmix", "HP", None, None]
    assert abcsyntax.key_alterations(2) == (1, 0, 0, 1, 0, 0, 0)  # D major: F# C#
    assert abcsyntax.key_alterations(-1) == (0, 0, 0, 0, 0, 0, -1)  # F major: Bb


def test_bar_lengths():
    bars = abcsyntax.bars_of("X:1\nM:6/8\nL:1/8\nK:G\nABc d2e|(3ABc d3|A>B c/d/e f|[M:2/4]A4|\n")[""]
    assert [b.length for b in bars] == [Fraction(6, 8), Fraction(5, 8), Fraction(5, 8), Fraction(1, 2)]
    assert [b.meter for b in bars] == [Fraction(3, 4)] * 3 + [Fraction(1, 2)]
