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


def test_lengths_respelled_in_either_style_keep_the_music():
    tune = ('X:1\nM:6/8\nL:1/8\nK:G\nA/B/c d3/e/ [ce]/f//g//a3/|"D/F#"G2/4 z/ x/2 ^f/2B,/4 c3/4 [L:1/16] A/ '
            '!trill!B/2 % c/2\nM:2/4\nd/2e/ f2 |]\n')
    short = abcsyntax.respell_lengths(tune, "short")
    explicit = abcsyntax.respell_lengths(tune, "explicit")
    assert short.splitlines()[4] == ('A/B/c d3/e/ [ce]/f//g//a3/|"D/F#"G2/4 z/ x/ ^f/B,// c3/4 [L:1/16] A/ '
                                     '!trill!B/ % c/2')  # quoted text, decorations, fields, comments untouched
    assert explicit.splitlines()[4] == ('A/2B/2c d3/2e/2 [ce]/2f/4g/4a3/2|"D/F#"G2/4 z/2 x/2 ^f/2B,/4 c3/4 '
                                        '[L:1/16] A/2 !trill!B/2 % c/2')
    assert short.splitlines()[:4] == tune.splitlines()[:4] and short.splitlines()[5] == "M:2/4"
    assert abcsyntax.respell_lengths(explicit, "short") == short
    assert abcsyntax.respell_lengths(short, "explicit") == explicit

    def lengths(text):
        return {name: [b.length for b in bars] for name, bars in abcsyntax.bars_of(text).items()}

    assert lengths(short) == lengths(explicit) == lengths(tune)
    with pytest.raises(ValueError):
        abcsyntax.respell_lengths(tune, "long")


def test_a_tune_rescaled_to_another_unit_length_keeps_its_bars():
    tune = ('X:1\nM:6/8\nL:1/8\nK:G\nA/B/c d3/e/ [ce]/f//g//a3/|"D/F#"G2 z/ [c2e2] [1 A3 :|[2 [L:1/16] A2 !trill!B2 '
            '% c/2\nd/2e/ f2 |]\n')
    longer = abcsyntax.rescale_unit(tune, 2)
    shorter = abcsyntax.rescale_unit(tune, Fraction(1, 2))
    assert longer.splitlines()[2:] == [
        "L:1/4", "K:G", 'A//B//c/ d3/4e// [ce]//f///g///a3/4|"D/F#"G z// [c2e2]/ [1 A3/ :|[2 [L:1/8] A !trill!B % c/2',
        "d//e// f |]"]
    assert shorter.splitlines()[4] == 'ABc2 d3e [ce]f/g/a3|"D/F#"G4 z [c2e2]2 [1 A6 :|[2 [L:1/32] A4 !trill!B4 % c/2'

    def lengths(text):
        return {name: [b.length for b in bars] for name, bars in abcsyntax.bars_of(text).items()}

    assert lengths(longer) == lengths(shorter) == lengths(tune)
    # no L: - the default for M:2/4 (1/16) is written out, rescaled
    assert abcsyntax.rescale_unit("X:1\nM:2/4\nK:D\nAB cd|\n", 2) == "X:1\nM:2/4\nL:1/8\nK:D\nA/B/ c/d/|\n"
    assert abcsyntax.rescale_unit("X:1\nM:2/4\nL:1/8\nQ:120\nK:D\nAB|\n", 2) is None  # Q: counts units
    assert abcsyntax.rescale_unit("X:1\nL:1\nK:D\nAB|\n", 2) is None  # a unit above a whole note
    assert abcsyntax.rescale_unit("X:1\nL:1/8\nK:D\nA////B|\n", 2) is None  # 1/16 of a unit becomes 1/32
