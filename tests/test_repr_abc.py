"""The `abc` character representation."""
from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from fractalmusic.errors import CheckpointError, ConfigError, DataError, FractalMusicError
from fractalmusic.piece import Piece
from fractalmusic.plugins import get_representation
from fractalmusic.representations.abc import ABCRepresentation
from fractalmusic.representations.abc_text import normalise_abc, transpose_abc

RAW = """X: 5
T: The Fun at Donnybrook
M: 6/8
L: 1/8
B: "O'Neill's 5"
N: "Cheerfully" "collected by Hartnett"
Z: "Transcribed by Norbert Paap"
% a comment line
K:Gm
B/2-A/2 | G>FD C>D^F | G3z2B/2-c/2 |   % trailing comment

d>ed c2 d/2-c/2 | B>AG A2 ~B/2-A/2 |]
"""
CLEAN = """X:5
T:The Fun at Donnybrook
M:6/8
L:1/8
K:Gm
B/2-A/2 | G>FD C>D^F | G3z2B/2-c/2 |
d>ed c2 d/2-c/2 | B>AG A2 ~B/2-A/2 |]
"""
SECOND = "X:1\nT:Second\nM:2/4\nL:1/16\nQ:1/4=90\nK:D\nf-g | a3-b g3-a | f4 e3-d |]\n"


@pytest.fixture
def rep():
    # lengths as written too ("B/2", not the default "B/"): these tests are about the rest of the normalisation
    return ABCRepresentation(annotations="keep", length_spelling="keep").fit([Piece(abc=RAW), Piece(abc=SECOND)])


def test_registered_under_its_name():
    assert get_representation("abc") is ABCRepresentation
    assert ABCRepresentation.kind == "tokens" and ABCRepresentation.uses_abc_text


def test_musical_header_mode_keeps_music_and_normalises_whitespace():
    assert normalise_abc(RAW) == CLEAN
    everything = normalise_abc(RAW, "all")
    assert "N:\"Cheerfully\"" in everything and "% a comment line" in everything and "B:\"O'Neill's 5\"" in everything
    assert "\n\n" not in everything and " \n" not in everything


def test_vocabulary_layout(rep):
    assert rep.vocab_size == 4 + len(rep.chars)
    assert (rep.pad_id, rep.bos_id, rep.eos_id) == (0, 1, 2)
    assert rep.chars == sorted(set(CLEAN) | set(normalise_abc(SECOND)))
    assert "N" not in rep.chars  # the N: line was dropped before fitting
    spec = rep.spec()
    assert spec.kind == "tokens" and spec.vocab_size == rep.vocab_size and spec.bos_id == 1


def test_encode_decode_round_trip(rep):
    ids = rep.encode(Piece(abc=RAW))
    assert ids.dtype == np.int64 and ids[0] == 1 and ids[-1] == 2 and len(ids) == len(CLEAN) + 2
    assert rep.array_to_text(ids) == CLEAN
    piece = rep.decode(ids)
    assert piece.abc == CLEAN
    assert piece.title == "The Fun at Donnybrook" and piece.key == "Gm"
    assert piece.time_signatures == [(0.0, 6, 8)] and piece.n_notes == 0
    assert piece.meta["repairs"] == {}
    assert rep.decode(rep.encode(Piece(abc=SECOND))).tempos == [(0.0, 90.0)]


def test_unseen_and_rare_characters_become_unk():
    rep = ABCRepresentation(min_char_freq=2, annotations="keep", length_spelling="keep").fit(
        [Piece(abc=CLEAN), Piece(abc=SECOND)])
    corpus = CLEAN + SECOND
    assert "~" not in rep.chars and "^" not in rep.chars and "B" in rep.chars  # ~ and ^ appear once
    rare = {c for c in corpus if corpus.count(c) == 1}
    assert rare and set(rep.chars) == set(corpus) - rare
    ids = rep.encode(Piece(abc=CLEAN + "@"))
    n_unk = sum(c in rare for c in CLEAN) + 1
    assert int((ids == 3).sum()) == n_unk
    assert rep.decode(ids).meta["repairs"] == {"unknown_tokens": n_unk}
    assert rep.decode(ids).abc == "".join(c for c in CLEAN if c not in rare)


def test_decode_repairs_what_a_model_may_emit(rep):
    ids = rep.text_to_array("abc|")[1:]  # no bos, no header
    arr = np.concatenate([[0, -1, 10_000], ids, [1, 2], rep.text_to_array("X:9")[1:]])
    piece = rep.decode(arr)
    assert piece.abc == "X:1\nK:C\nabc|\n"  # stops at eos; X:1 and K:C added
    r = piece.meta["repairs"]
    assert r["out_of_range_ids"] == 2 and r["misplaced_specials"] == 2 and r["missing_key"] == 1
    assert r["missing_x"] == 1
    assert piece.meta["ended"] is True
    two = rep.decode(rep.text_to_array("X:1\nK:D\nabc|\n\nX:2\nK:G\nd|"))
    assert two.abc == "X:1\nK:D\nabc|\n" and two.meta["repairs"] == {"blank_lines": 1, "second_tune": 1}


def test_primer_text(rep):
    arr = rep.text_to_array("X:1\nT:")
    assert arr[0] == 1 and rep.array_to_text(arr) == "X:1\nT:" and len(arr) == 7
    with pytest.raises(FractalMusicError, match="'@'"):
        rep.text_to_array("X:1\n@")


def test_transpose_moves_the_text_and_comes_back(rep):
    printable = "".join(chr(c) for c in range(32, 127) if chr(c) != "%")  # '%' would start a comment
    # a tune in A minor in the corpus lets transposition reach its key signature (none) from G minor's two flats
    wide = ABCRepresentation(annotations="keep", length_spelling="keep").fit(
        [Piece(abc=CLEAN + printable), Piece(abc="X:2\nK:Am\nA|\n")])
    ids = wide.encode(Piece(abc=RAW))
    up = wide.transpose(ids, 2)
    assert up is not None and up[1] == 0
    assert wide.array_to_text(up[0]) == transpose_abc(CLEAN, 2)
    assert "K:Am" in wide.array_to_text(up[0])
    back = wide.transpose(up[0], -2)
    assert np.array_equal(back[0], ids)
    # a key it cannot move, and characters the small vocabulary lacks (K:Am needs an 'm' it has, but 'E'...)
    assert wide.transpose(wide.encode(Piece(abc="X:1\nK:none\nABc|\n")), 2) is None
    assert rep.transpose(rep.encode(Piece(abc=SECOND)), 3) is None  # needs characters the vocabulary lacks


def _tune(key: str, n: int = 1) -> list[Piece]:
    return [Piece(abc=f"X:{i}\nM:4/4\nL:1/8\nK:{key}\nC,D,E,F,G,A,B,CDEFGAB|cdefgabc'd'e'f'g'a'b'|^f_e=c2 z4|]\n") for i in range(n)]


def test_transposition_stays_in_the_key_signatures_the_corpus_uses():
    # 60 tunes in G (1 sharp), 30 in F (1 flat), 9 in A (3 sharps) and 1 in F# (6 sharps): the lone F# tune is
    # 1 % of the corpus and falls outside; 1 flat .. 3 sharps is widened to six signatures: 1 flat .. 4 sharps
    corpus = _tune("G", 60) + _tune("F", 30) + _tune("A", 9) + _tune("F#")
    rep = ABCRepresentation().fit(corpus)
    ids = rep.encode(_tune("G")[0])
    moved = {s: rep.transpose(ids, s) for s in range(-5, 7)}
    reached = sorted(rep.array_to_text(m[0]).split("K:")[1].split("\n")[0] for m in moved.values() if m is not None)
    assert reached == ["A", "C", "D", "E", "F", "G"]  # 1 flat .. 4 sharps: never Bb, Eb, Ab, B, F# or C#
    assert moved[2] is not None and "K:A" in rep.array_to_text(moved[2][0])
    assert moved[4] is None and moved[-1] is None  # B (5 sharps), F# (6 sharps)
    lone = rep.encode(_tune("F#")[0])
    assert rep.transpose(lone, 3) is not None and rep.transpose(lone, 2) is None  # into the range (A), not Ab
    # the range travels with the state; a state without one (text version 4) lets every key through
    state = json.loads(json.dumps(rep.state_dict()))
    assert state["key_range"] == [-1, 4]
    again = ABCRepresentation.from_state_dict(state)
    assert again.transpose(ids, 4) is None
    del state["key_range"]
    assert ABCRepresentation.from_state_dict(state).transpose(ids, 4) is not None
    with pytest.raises(CheckpointError):
        ABCRepresentation.from_state_dict({**state, "key_range": [3, -1]})
    # a corpus in one key still lets a tune reach six signatures: D (2 sharps) widens to 0 .. 5
    one_key = ABCRepresentation().fit(_tune("D", 5))
    assert one_key.state_dict()["key_range"] == [0, 5]


def test_state_dict_is_json_and_restores_the_same_encoding(rep):
    state = json.loads(json.dumps(rep.state_dict()))
    again = ABCRepresentation.from_state_dict(state)
    assert np.array_equal(again.encode(Piece(abc=RAW)), rep.encode(Piece(abc=RAW)))
    assert again.fingerprint() == rep.fingerprint()
    other = ABCRepresentation(header_mode="all", annotations="keep").fit([Piece(abc=RAW)])
    assert other.fingerprint() != rep.fingerprint()
    with pytest.raises(CheckpointError):
        ABCRepresentation.from_state_dict({"config": {}, "chars": ["ab"]})


def test_bad_config_and_bad_input_are_user_errors():
    with pytest.raises(ConfigError, match="header-mode"):
        ABCRepresentation(header_mode="some")
    with pytest.raises(ConfigError, match="min-char-freq"):
        ABCRepresentation(min_char_freq=0)
    with pytest.raises(DataError):
        ABCRepresentation().fit([Piece()])
    with pytest.raises(FractalMusicError, match="fit"):
        ABCRepresentation().encode(Piece(abc=RAW))


@settings(max_examples=60, deadline=None)
@given(hnp.arrays(np.int64, st.integers(0, 40), elements=st.integers(-(2**62), 2**62)))
def test_decode_never_raises_and_reports_repairs(arr):
    rep = ABCRepresentation(annotations="keep").fit([Piece(abc=SECOND)])
    piece = rep.decode(arr)
    assert piece.abc.startswith("X:") and "\nK:" in "\n" + piece.abc
    stop = np.flatnonzero(arr == 2)
    head = arr[: stop[0]] if len(stop) else arr
    if ((head < 0) | (head >= rep.vocab_size)).any():
        assert piece.meta["repairs"].get("out_of_range_ids", 0) > 0


@settings(max_examples=40, deadline=None)
@given(st.lists(st.integers(0, 40), max_size=60))
def test_decode_of_in_vocabulary_ids_never_raises(ids):
    rep = ABCRepresentation(annotations="keep").fit([Piece(abc=SECOND)])
    piece = rep.decode(np.asarray(ids, dtype=np.int64))
    assert isinstance(piece.meta["repairs"], dict)
    if 3 in ids[: ids.index(2) if 2 in ids else len(ids)]:
        assert piece.meta["repairs"]["unknown_tokens"] > 0


def test_annotations_dropped_by_default_chord_symbols_kept():
    from fractalmusic.representations.abc import ABCRepresentation
    from fractalmusic.piece import Piece

    tune = 'X:1\nT:t\nM:4/4\nL:1/8\nK:G\n"Am"uB2G (G2.A) "4"d2 | !trill!c2 ~G2 T[K:D]A "^Segno"F "D/F#"d4 |]\n'
    rep = ABCRepresentation().fit([Piece(abc=tune)])
    text = rep.array_to_text(rep.encode(Piece(abc=tune)))
    body = text.splitlines()[-1]
    assert body == '"Am"B2G (G2A) d2 | c2 G2 [K:D]A F "D/F#"d4 |]'
    keep = ABCRepresentation(annotations="keep").fit([Piece(abc=tune)])
    assert keep.array_to_text(keep.encode(Piece(abc=tune))).splitlines()[-1].startswith('"Am"uB2G (G2.A) "4"d2')


def test_dropping_annotations_drops_layout_spacers():
    from fractalmusic.representations.abc_text import drop_annotations, normalise_abc

    assert drop_annotations('B2``G2 y G2d2 | "Daisy"A2 "Gm"c [K:G] !trilly!c y') == 'B2G2 G2d2 | A2 "Gm"c [K:G] c'
    assert normalise_abc("X:1\nM:2/4\nK:G\nB``G y|\n", annotations="keep").endswith("B``G y|\n")


def test_dropping_annotations_drops_every_decoration_letter():
    from fractalmusic.representations.abc_text import drop_annotations

    # ABC 2.1 keeps H-W and h-w for decoration symbols (Ryan's Mammoth writes an undefined k); notes, rests (z, x),
    # grace notes, chord symbols and inline fields stay
    line = 'kD2 kC2 {C}D "Am"AB [K:Dmix] vkg2vdB Jc Rx Wz iZ2 [M:3/4] Ia "Bb7"b'
    assert drop_annotations(line) == 'D2 C2 {C}D "Am"AB [K:Dmix] g2dB c x z Z2 [M:3/4] a "Bb7"b'


def test_dropping_annotations_joins_continued_lines():
    from fractalmusic.representations.abc_text import normalise_abc

    tune = ("X:1\nM:4/4\nL:1/8\nK:G\nABcd efga|\\\nw:la la\ngfed cBAG|\\\n\\\nABcd efga|\n"
            "[K:D]\\\nP:B\ndefg a4|]\\\n")
    assert normalise_abc(tune, annotations="drop").splitlines()[4:] == ["ABcd efga| gfed cBAG| ABcd efga|", "[K:D]", "P:B", "defg a4|]"]
    assert normalise_abc(tune, annotations="keep").splitlines()[4] == "ABcd efga|\\"


def test_dropping_annotations_keeps_every_pitch_and_duration():
    """music21 hears the same notes with and without the transcribers' marks (real corpus tunes)."""
    from pathlib import Path

    import music21

    from fractalmusic.io.abc import split_abc_book
    from fractalmusic.representations.abc_text import normalise_abc

    book = Path(music21.corpus.__file__).parent / "ryansMammoth" / "MinstrelsFancyClog.abc"
    tune = split_abc_book(book.read_text(encoding="latin-1"))[0]

    def notes(text):  # pitches only: music21 misreads "F>.G" (a staccato after a broken rhythm) as plain F G
        s = music21.converter.parse(text, format="abc").flatten().notes
        return [tuple(p.midi for p in n.pitches) for n in s]

    dropped = normalise_abc(tune, annotations="drop")
    assert dropped != normalise_abc(tune, annotations="keep")
    assert notes(dropped) == notes(normalise_abc(tune, annotations="keep"))


BARS_RIGHT = "X:{n}\nT:Right {n}\nM:3/4\nL:1/8\nK:G\nD2 | G2 A2 B2 | c2 B2 A2 | G2 A2 B2 | c2 B2 A2 | G6 |]\n"
BARS_LOST = "X:{n}\nT:Lost {n}\nM:3/4\nL:1/8\nK:G\nD2 | G2 A2 B2 | c2 B2 | A2 G2 | A2 B2 | c2 B2 | G6 |]\n"  # 2/4 bars


def test_a_tune_whose_bars_disagree_with_its_metre_is_not_trained_on():
    rep = ABCRepresentation()
    assert rep.training_problem(Piece(abc=BARS_RIGHT.format(n=1))) is None
    why = rep.training_problem(Piece(abc=BARS_LOST.format(n=2)))
    assert why is not None and "disagree with M:" in why and "--min-bar-share 0" in why
    assert rep.training_problem(Piece(abc="X:1\nK:G\nABc|\n")) is None  # nothing to judge: kept
    assert ABCRepresentation(min_bar_share=0).training_problem(Piece(abc=BARS_LOST.format(n=2))) is None
    # the share is a threshold: 1 of 5 inner bars right passes at 0.2, not at 0.25
    assert ABCRepresentation(min_bar_share=0.2).training_problem(Piece(abc=BARS_LOST.format(n=2))) is None
    assert ABCRepresentation(min_bar_share=0.25).training_problem(Piece(abc=BARS_LOST.format(n=2))) is not None
    with pytest.raises(ConfigError, match="min-bar-share"):
        ABCRepresentation(min_bar_share=1.5)
    # encoding never refuses it (primers, evaluation): only the data preparation leaves it out
    fitted = ABCRepresentation().fit([Piece(abc=BARS_LOST.format(n=2))])
    assert len(fitted.encode(Piece(abc=BARS_LOST.format(n=2)))) > 10


def test_data_preparation_leaves_out_and_reports_tunes_that_lose_their_metre(tmp_path):
    from fractalmusic.data.build import prepare_data
    from fractalmusic.data.config import DataConfig

    book = "\n".join([BARS_RIGHT.format(n=k) for k in range(1, 9)] + [BARS_LOST.format(n=9)])
    (tmp_path / "book.abc").write_text(book)
    cfg = DataConfig(data=str(tmp_path / "book.abc"), no_cache=True, val_fraction=0.0)
    got = prepare_data(cfg, ABCRepresentation(), log=None)
    assert len(got.train) == 8
    assert any("disagree with M:" in why and where.endswith("book.abc#X9") for where, why in got.report.skipped)
    assert any("1 bars disagree with M:" in line for line in got.report.read_lines)
    kept = prepare_data(cfg, ABCRepresentation(min_bar_share=0), log=None)
    assert len(kept.train) == 9 and not kept.report.skipped


HALVES = "X:1\nT:Halves\nM:2/4\nL:1/8\nK:D\nA/B/c d3/e/ | f2 z/2g/2a |]\n"


def test_training_items_take_both_spellings_of_short_lengths():
    from fractalmusic.data.dataset import PieceStore, TokenCropDataset, WholeTuneDataset

    texts = set()
    for share, want in ((0.0, 1), (1.0, 2)):
        rep = ABCRepresentation(respell_lengths=share, length_spelling="keep").fit([Piece(abc=HALVES)])
        store = PieceStore("tokens", arrays=[rep.encode(Piece(abc=HALVES))])
        crops = TokenCropDataset(store, rep, crop_length=256, augment_factor=40, seed=3)
        got = {rep.array_to_text(crops[i]["tokens"]) for i in range(len(crops))}
        assert len(got) == want, got
        texts |= got
        again = TokenCropDataset(store, rep, crop_length=256, augment_factor=40, seed=3)
        assert all(np.array_equal(crops[i]["tokens"], again[i]["tokens"]) for i in range(len(crops)))
        whole = WholeTuneDataset(store, rep, crop_length=256, augment_factor=40, seed=3)
        assert {rep.array_to_text(whole[i]["tokens"]) for i in range(len(whole))} == got
    bodies = {t.splitlines()[-1] for t in texts}
    assert bodies == {"A/B/c d3/e/ | f2 z/2g/2a |]",  # as written (share 0): mixed
                      "A/B/c d3/e/ | f2 z/g/a |]", "A/2B/2c d3/2e/2 | f2 z/2g/2a |]"}  # share 1: one or the other
    rep = ABCRepresentation().fit([Piece(abc=HALVES)])
    assert rep.config.respell_lengths == 0.0  # the default until measured (docs/BENCHMARKS.md)
    assert np.array_equal(rep.rewrite(rep.encode(Piece(abc=HALVES)), 0), rep.encode(Piece(abc=HALVES)))
    digits = ABCRepresentation().fit([Piece(abc=HALVES.replace("/2", "/").replace("2", "4"))])
    assert digits.rewrite(digits.encode(Piece(abc="X:1\nK:D\nA/B/|\n")), 2) is None  # no "2" in the vocabulary
    with pytest.raises(ConfigError, match="respell-lengths"):
        ABCRepresentation(respell_lengths=2)


def test_lengths_below_the_unit_are_written_one_way_and_music21_hears_the_same_tune():
    import music21

    explicit = "X:38\nT:Good Morning Fair Maid\nM:3/4\nL:1/4\nK:G\nG/2A/2 | B A G | c2 d/2c/2 | B3/2A/2 G/4A/4B/2 | G2 :|\n"
    rep = ABCRepresentation()  # "short" by default
    short = rep.normalise(explicit)
    assert short.splitlines()[-1] == "G/A/ | B A G | c2 d/c/ | B3/A/ G//A//B/ | G2 :|"
    assert ABCRepresentation(length_spelling="explicit").normalise(short) == normalise_abc(explicit)
    assert ABCRepresentation(length_spelling="keep").normalise(explicit) == normalise_abc(explicit)

    def heard(text):
        notes = music21.converter.parse(text, format="abc").flatten().notes
        return [(n.pitch.midi, float(n.quarterLength)) for n in notes]

    assert heard(short) == heard(explicit)
    with pytest.raises(ConfigError, match="length-spelling"):
        ABCRepresentation(length_spelling="long")
