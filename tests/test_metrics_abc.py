"""ABC checks: bar lengths against the meter, header completeness, parse rate, memorisation."""
from __future__ import annotations

import math
from fractions import Fraction

import pytest

from fractalmusic.metrics import abc

REEL = """X:1
T:Test Reel
M:4/4
L:1/8
K:D
|:A2|"D"d2fd A2FA|d2fd e2dc|B2gB A2FA|!trill!B2AG F2E2|
dfaf gfed|cBAG FGAB|[DFA]2 {g}fe d2c2|d6:|
"""

WRONG = REEL.replace("e2dc|", "e2d|")  # bar 3 is one eighth short


def test_reel_bars_are_all_right():
    check = abc.check_bar_lengths(REEL)
    # |:A2| is the anacrusis (not judged), d6:| the last bar (not judged)
    assert check.bars == 9
    assert check.judged == 7
    assert check.right == 7
    assert abc.bar_length_consistency(REEL) == 1.0


def test_one_wrong_bar_is_found():
    check = abc.check_bar_lengths(WRONG)
    assert check.judged == 7 and check.right == 6
    assert check.wrong_bars == [2]  # reading order: 0 is the anacrusis
    assert abc.bar_length_consistency(WRONG) == pytest.approx(6 / 7)


def test_lengths_of_rhythmic_devices():
    tune = """X:2
T:Devices
M:3/4
L:1/8
K:G
G2|A>B c<d e2|(3BcB A2 G2|[GBd]4 z2|A/B/c/d/ e4|{a}g2 "Em"f2 .e2|(3:2:3G2A2B2 c2|Z|G6|]
"""
    bars = abc.bars_of(tune)[""]
    lengths = [b.length for b in bars]
    assert lengths[0] == Fraction(1, 4)
    assert all(length == Fraction(3, 4) for length in lengths[1:]), lengths
    assert abc.bar_length_consistency(tune) == 1.0


def test_meter_defaults_and_inline_changes():
    # M:2/4 -> default unit 1/16: "A4" is a quarter, a bar is 8 units
    two_four = "X:3\nT:t\nM:2/4\nK:C\nC8|D4E4|F8|G8|\n"
    assert abc.bars_of(two_four)[""][1].length == Fraction(1, 2)
    assert abc.bar_length_consistency(two_four) == 1.0
    # an inline meter change is applied from where it occurs
    changing = "X:4\nT:t\nM:4/4\nL:1/4\nK:C\nCDEF|CDEF|[M:3/4]CDE|CDE|CDEF|\n"
    check = abc.check_bar_lengths(changing)
    assert check.judged == 3 and check.right == 3
    assert abc.bars_of("X:5\nT:t\nM:C|\nL:1/4\nK:C\nCDEF|CDEF|C4|\n")[""][1].length == Fraction(1)


def test_section_pickups_and_endings_are_not_penalised():
    tune = """X:6
T:Jig
M:6/8
L:1/8
K:G
D|:GAB c2d|e3 d2B|1 A3 A2D:|2 A3 A2B||
|:c2e dBG|c2e d2B|A3 A2:|
"""
    check = abc.check_bar_lengths(tune)
    assert check.judged == check.right == 6
    # a short bar in the middle of a section is still wrong
    bad = tune.replace("e3 d2B", "e3 d2")
    assert abc.check_bar_lengths(bad).wrong_bars == [2]


def test_multirest_and_free_meter():
    assert abc.bar_length_consistency("X:7\nT:t\nM:4/4\nL:1/4\nK:C\nCDEF|Z4|CDEF|CDEF|\n") == 1.0
    assert math.isnan(abc.bar_length_consistency("X:8\nT:t\nM:none\nL:1/4\nK:C\nCDE|CD|C|CDEFG|\n"))


def test_voices_are_checked_separately():
    tune = "X:9\nT:t\nM:2/4\nL:1/8\nK:C\nV:1\nC2D2|E2F2|G4|c4|\nV:2\nC,4|E,4|G,3|C4|\n"
    check = abc.check_bar_lengths(tune)
    assert check.bars == 8 and check.judged == 4
    assert check.right == 3 and check.wrong_bars == [6]


def test_header_completeness():
    assert abc.header_completeness(REEL) == 1.0
    no_unit = REEL.replace("L:1/8\n", "")
    assert abc.header_completeness(no_unit) == pytest.approx(0.8)
    assert abc.header_completeness("ABC|def|\n") == 0.0


def test_parse_rate():
    assert abc.parse_ok(REEL)
    assert not abc.parse_ok("X:1\nT:nothing\nK:C\n\n")
    metrics = abc.abc_metrics(WRONG)
    assert metrics == {"parse_ok": 1.0, "header_completeness": 1.0, "bar_length_consistency": pytest.approx(6 / 7)}


def test_normalised_body_drops_layout_and_ornament():
    body = abc.normalised_body(REEL)
    assert body.startswith("|:A2|d2fdA2FA|")
    assert '"' not in body and "!" not in body and "{" not in body or "{g}" in body
    relaid = REEL.replace('"D"', "").replace("!trill!", "").replace(" ", "").replace("T:Test Reel", "T:Other")
    assert abc.normalised_body(relaid) == body


def test_memorisation_rates():
    other = """X:10
T:Other
M:3/4
L:1/8
K:Am
E2|A2 B2 c2|e4 d2|c2 B2 A2|G4 E2|A2 c2 e2|a4 g2|e2 d2 B2|A4|]
"""
    training = [REEL, other]
    exact = REEL.replace("T:Test Reel", "T:Stolen").replace(" ", "  ")
    near = REEL.replace("B2gB A2FA", "B2gB A2FB")  # one note changed
    fresh = """X:11
T:Fresh
M:4/4
L:1/8
K:G
GABc dedB|dedB dedB|c2ec B2dB|c2A2 A2BA|GABc dedB|dedB dedB|c2ec B2dB|A2F2 G4|]
"""
    result = abc.memorisation([exact, near, fresh, other], training)
    assert result["exact_copy_rate"] == pytest.approx(0.5)  # exact and other
    assert result["near_copy_rate"] == pytest.approx(0.75)  # + near
    assert result["best_match"][:2] == [0, 0] and result["best_match"][3] == 1
    assert 0.75 < result["best_similarity"][1] < 1.0
    assert result["best_similarity"][2] < 0.3
    strict = abc.memorisation([near], training, threshold=0.99)
    assert strict["near_copy_rate"] == 0.0


def test_playable_needs_a_parse_and_eight_notes():
    from fractalmusic.metrics.report import piece_metrics
    from fractalmusic.piece import Piece

    short = piece_metrics(Piece(abc="X:1\nT:t\nM:4/4\nL:1/8\nK:C\nCDEF|\n"))
    assert (short["parse_ok"], short["playable"]) == (1.0, 0.0)
    tune = piece_metrics(Piece(abc="X:1\nT:t\nM:4/4\nL:1/8\nK:C\nCDEF GABc|\n"))
    assert (tune["parse_ok"], tune["playable"]) == (1.0, 1.0)
