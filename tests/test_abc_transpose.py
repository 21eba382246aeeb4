"""Key-aware ABC text transposition (fractalmusic.representations.abc_text)."""
from __future__ import annotations

import re
import warnings
from pathlib import Path

import pytest

from fractalmusic.representations.abc_text import header_facts, normalise_key, parse_key, transpose_abc

TUNE = """X:1
T:Test Tune of the Glen
M:6/8
L:1/8
K:Gm
"Gm"G3-A (Bcd=e) | "D7/F#"f4 (g2dB) | ({d}c3-B) G2-E2 | ^F,4 (D2=E^F) |
[K:Ador] A B c ^c' _D, "^Fine" !trill!e | [CEG]2 z2 ~g2 |
K:D
d f a ^g =c b |]
"""


def _corpus_tune(rel: str, number: int) -> str:
    import music21.corpus

    text = (Path(music21.corpus.__file__).parent / rel).read_text(encoding="latin-1")
    for part in re.split(r"\n(?=X:)", text):
        m = re.match(r"X:\s*(\d+)", part.strip())
        if m and int(m.group(1)) == number:
            return part.strip().split("\n\n")[0] + "\n"
    raise LookupError(f"{rel} X:{number}")


def _sounding(text: str):
    """(midi pitches of notes and chords, chord-symbol root pitch classes) as music21 reads the tune."""
    from music21 import chord, converter, harmony

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        score = converter.parse(text, format="abc")
    pitches, roots = [], []
    for el in score.flatten().notes:
        if isinstance(el, harmony.ChordSymbol):
            roots.append(el.root().pitchClass)
        elif isinstance(el, chord.Chord):
            pitches += [p.midi for p in el.pitches]
        else:
            pitches.append(el.pitch.midi)
    return pitches, roots


def test_parse_key_reads_tonic_mode_and_refuses_what_it_cannot_move():
    assert normalise_key("Gm") == "Gmin"
    assert normalise_key("E Minor") == "Emin"
    assert normalise_key("D") == "Dmaj"
    assert normalise_key("Ador") == "Ador"
    assert normalise_key("Bb Mixolydian") == "Bbmix"
    assert normalise_key("G clef=bass") == "Gmaj"
    assert parse_key("F#m").sharps == 3
    assert parse_key("Bbmix").sharps == -3
    assert parse_key("Edor").sharps == 2
    for bad in ("none", "HP", "", "D exp ^f ^c", "G ^c", "Gfoo"):
        assert parse_key(bad) is None, bad


@pytest.mark.parametrize("semitones", [-6, -5, -3, -1, 1, 2, 4, 6, 7, 12])
def test_transpose_then_back_returns_the_original_text(semitones):
    moved = transpose_abc(TUNE, semitones)
    assert moved is not None and moved != TUNE
    assert transpose_abc(moved, -semitones) == TUNE


def test_spelling_follows_the_new_key():
    up2 = transpose_abc(TUNE, 2)
    lines = up2.splitlines()
    assert lines[1] == "T:Test Tune of the Glen"  # letters in other fields are not notes
    assert lines[4] == "K:Am"
    # =e in G minor raises the key's Eb, so in A minor it raises the key's F: ^f; likewise ^F -> ^G
    assert lines[5] == '"Am"A3-B (cde^f) | "E7/G#"g4 (a2ec) | ({e}d3-c) A2-F2 | ^G,4 (E2^F^G) |'
    assert lines[6] == "[K:Bdor] B c d ^d' _E, \"^Fine\" !trill!f | [DFA]2 z2 ~a2 |"
    assert lines[7] == "K:E"
    assert lines[8] == "e g b ^a =d c' |]"


def test_new_tonic_takes_the_smaller_signature_and_octaves_follow():
    assert transpose_abc("X:1\nK:D\nd|\n", -1) == "X:1\nK:Db\nd|\n"  # Db (5 flats), not C# (7 sharps)
    assert transpose_abc("X:1\nK:Am\nA|\n", 1).splitlines()[1] == "K:Bbm"  # 5 flats, not A#m's 7 sharps
    assert transpose_abc("X:1\nK:Eb\nE|\n", 1).splitlines()[1] == "K:E"  # 4 sharps, not Fb
    assert transpose_abc("X:1\nK:C\nB b' B,|\n", 1) == "X:1\nK:Db\nc c'' C|\n"  # B -> C crosses the octave
    assert transpose_abc("X:1\nK:C\nC|\n", 6).splitlines()[1] == "K:F#"  # 6/6 tie: sharps going up
    assert transpose_abc("X:1\nK:C\nC|\n", -6).splitlines()[1] == "K:Gb"  # flats going down
    assert transpose_abc("X:1\nK:G\nG|\n", 12) == "X:1\nK:G\ng|\n"


def test_cannot_transpose_honestly_returns_none():
    assert transpose_abc("X:1\nK:none\nABc|\n", 2) is None
    assert transpose_abc("X:1\nT:no key\nABc|\n", 2) is None
    assert transpose_abc("X:1\nK:D exp ^f ^c\nABc|\n", 2) is None
    assert transpose_abc("X:1\nK:Gm\n^^g|\n", 6) is None  # G## in G minor up to C# minor would need a triple sharp
    assert transpose_abc("X:1\nK:none\nABc|\n", 0) == "X:1\nK:none\nABc|\n"


def test_header_facts():
    facts = header_facts("X:3\nT:The Little Heathy Hill\nM:C|\nL:1/8\nQ:3/8=120\nK:E Minor\nabc|\n")
    assert facts == {"title": "The Little Heathy Hill", "key": "Em", "time_signature": (2, 2), "qpm": 180.0,
                     "unit": (1, 8)}  # fmt: skip


@pytest.mark.parametrize(
    "rel,number",
    [
        ("oneills1850/0001-0050.abc", 1),  # G minor, explicit naturals and sharps, grace notes, ties
        ("oneills1850/0001-0050.abc", 35),  # A mixolydian, tuplet-free runs of dotted rhythms, line continuations
        ("oneills1850/0001-0050.abc", 47),  # A dorian, triplets, octave marks up to e'
        # (music21 10 ignores inline [K:..] changes, so tunes with them cannot be checked this way)
        ("ryansMammoth/ElectricHornpipe.abc", 1),  # body K: line, fingerings in quotes, bowings
    ],
)
def test_music21_hears_every_note_moved_by_exactly_s(rel, number):
    tune = _corpus_tune(rel, number)
    before, _ = _sounding(tune)
    assert len(before) > 20
    for s in (-5, -1, 2, 6):
        moved = transpose_abc(tune, s)
        assert moved is not None, s
        after, _ = _sounding(moved)
        assert [b - a for a, b in zip(before, after)] == [s] * len(before) and len(after) == len(before), s


def test_music21_hears_chord_symbols_and_accidentals_moved():
    tune = TUNE.replace("(Bcd=e)", "(Bcd=e) \"Bbmaj7\"__B ^^c")
    before, roots = _sounding(tune)
    assert len(roots) == 3
    for s in (-5, 2):
        after, new_roots = _sounding(transpose_abc(tune, s))
        assert [b - a for a, b in zip(before, after)] == [s] * len(before)
        assert new_roots == [(r + s) % 12 for r in roots]
