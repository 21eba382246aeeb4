"""The `words` representation: folk-rnn style ABC words and REMI-like MIDI words."""
from __future__ import annotations

import json
import re
import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from fractalmusic.errors import ConfigError, DataError, FractalMusicError
from fractalmusic.piece import Piece, make_notes
from fractalmusic.plugins import get_representation
from fractalmusic.representations.abc_text import abc_words, words_to_abc
from fractalmusic.representations.pianoroll import beats_to_steps, velocity_to_bin
from fractalmusic.representations.words import WordsRepresentation

TOKENS_TUNE = (
    "X:7\nT:Tokens\nM: 6/8\nL:1/8\nN:a note\nK:E Minor\n"
    '|:"Em"~E3 ^c\'2A/2 z3 (3ABc [CEG]2 {/d}e>f !trill!g .a | B2-B2 A// :|1 D2 :|2 [K:Dmix] E,,2 ||\n'
    "[1 F3 :: G3 |]\n"
)
TOKENS = ["M:6/8", "L:1/8", "K:Emin", "|:", '"Em"', "~", "E3", "^c'2", "A/2", "z3", "(3", "A", "B", "c", "[",
          "C", "E", "G", "]2", "{/", "d", "}", "e", ">", "f", "!trill!", "g", ".", "a", "|", "B2", "-", "B2",
          "A//", ":|1", "D2", ":|2", "[K:Dmix]", "E,,2", "||", "[1", "F3", "::", "G3", "|]"]  # fmt: skip

JIG = """X:1
M:6/8
L:1/8
K:Gmin
|:G>AB c2d|e>fg "Cm"[ce]2d|(3Bcd B ^F2G|{A}B3-B2z:|
|:d2e f2g|~a3 =e2f|[1 g3 d3:|[2 g6|]
"""


def squeeze(text: str) -> str:
    return re.sub(r"\s+", "", text)


def chorale_piece(name: str = "bwv66.6") -> Piece:
    import music21.corpus
    from music21 import converter

    path = music21.corpus.getWork(name)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        score = converter.parse(str(path)).stripTies()
    rows = [(float(el.offset), float(el.quarterLength), p.midi, 90) for el in score.flatten().notes for p in el.pitches]
    return Piece(notes=make_notes(rows), time_signatures=[(0.0, 4, 4)], tempos=[(0.0, 100.0)])


@pytest.fixture(scope="module")
def chorale():
    return chorale_piece()


@pytest.fixture(scope="module")
def midi_rep(chorale):
    return WordsRepresentation(source="midi").fit([chorale])


def test_registered_and_special_ids():
    assert get_representation("words") is WordsRepresentation
    rep = WordsRepresentation().fit([Piece(abc=JIG)])
    assert rep.words_of([0, 1, 2, 3]) == ["<unk>", "<pad>", "<bos>", "<eos>"]
    assert (rep.pad_id, rep.bos_id, rep.eos_id) == (1, 2, 3)
    assert rep.uses_abc_text and not WordsRepresentation(source="midi").uses_abc_text


def test_abc_words_folk_rnn_style():
    assert abc_words(TOKENS_TUNE) == TOKENS
    everything = abc_words(TOKENS_TUNE, "all")
    assert everything[:3] == ["M:6/8", "L:1/8", "N:a note"]  # X: and T: never become words


def test_abc_round_trip_text_words_text():
    rep = WordsRepresentation().fit([Piece(abc=JIG)])
    ids = rep.encode(Piece(abc=JIG))
    assert ids[0] == 2 and ids[-1] == 3 and 0 not in ids
    piece = rep.decode(ids)
    assert squeeze(piece.abc) == squeeze(JIG)
    assert piece.key == "Gm" and piece.time_signatures == [(0.0, 6, 8)] and piece.meta["repairs"] == {}
    assert len(piece.abc.strip().splitlines()) == 4 + 3  # header, then a line break every 4 bars
    titled = "X:1\nT:With a title\nN:kept in all mode\nM:2/4\nL:1/8\nK:Dmaj\n% comment\nAB cd|ef ga|]\n"
    rep_all = WordsRepresentation(header_mode="all").fit([Piece(abc=titled)])
    back = rep_all.decode(rep_all.encode(Piece(abc=titled)))
    assert squeeze(back.abc) == squeeze(titled.replace("T:With a title\n", ""))


def test_vocabulary_by_frequency_with_min_freq_and_max_size():
    tune = "X:1\nK:C\nA A A B B c|\n"
    assert WordsRepresentation().fit([Piece(abc=tune)]).words == ["A", "B", "K:Cmaj", "c", "|"]
    rep = WordsRepresentation(min_freq=2).fit([Piece(abc=tune)])
    assert rep.words == ["A", "B"]
    assert rep.encode(Piece(abc=tune)).tolist() == [2, 0, 4, 4, 4, 5, 5, 0, 0, 3]
    assert WordsRepresentation(max_vocab_size=5).fit([Piece(abc=tune)]).words == ["A"]
    assert WordsRepresentation(max_vocab_size=5).fit([Piece(abc=tune)]).vocab_size == 5


def test_midi_words_round_trip_on_a_chorale(midi_rep, chorale):
    ids = midi_rep.encode(chorale)
    words = midi_rep.words_of(ids)
    assert words[:5] == ["<bos>", "TS_4/4", "Tempo_104", "Bar", "Pos_0"] and 0 not in ids
    assert words.count("Bar") == int(np.ceil((chorale.notes["onset"].max() + 1e-9) / 4))
    piece = midi_rep.decode(ids)
    assert piece.meta["repairs"] == {} and piece.time_signatures == [(0.0, 4, 4)] and piece.tempos == [(0.0, 104.0)]
    assert np.array_equal(midi_rep.encode(piece), ids)

    def grid_notes(p):
        on = beats_to_steps(p.notes["onset"], 4)
        dur = np.clip(beats_to_steps(p.notes["onset"] + p.notes["duration"], 4) - on, 1, 32)
        return sorted(zip(on.tolist(), p.notes["pitch"].tolist(), dur.tolist(),
                          velocity_to_bin(p.notes["velocity"], 8).tolist()))  # fmt: skip

    assert grid_notes(piece) == grid_notes(chorale)


def test_midi_vocabulary_always_has_the_whole_grid(midi_rep):
    words = set(midi_rep.words)
    assert {f"Pitch_{p}" for p in range(128)} <= words
    assert {f"Dur_{d}" for d in range(1, 33)} <= words and {f"Vel_{v}" for v in range(8)} <= words
    assert {f"Pos_{k}" for k in range(24)} <= words and "TS_6/8" in words and "Tempo_40" in words
    with pytest.raises(ConfigError, match="max-vocab-size"):
        WordsRepresentation(source="midi", max_vocab_size=100).fit([Piece(notes=make_notes([(0, 1, 60)]))])


def test_time_signature_and_tempo_changes():
    piece = Piece(
        notes=make_notes([(0, 1, 60), (3, 1, 62), (4, 0.5, 64), (7, 1, 65)]),
        time_signatures=[(0.0, 3, 4), (3.0, 2, 4)],
        tempos=[(0.0, 90.0), (3.0, 150.0)],
    )
    rep = WordsRepresentation(source="midi").fit([piece])
    ids = rep.encode(piece)
    assert rep.words_of(ids)[1:8] == ["TS_3/4", "Tempo_88", "Bar", "Pos_0", "Pitch_60", "Dur_4", "Vel_4"]
    assert "TS_2/4" in rep.words_of(ids) and "Tempo_144" in rep.words_of(ids)
    back = rep.decode(ids)
    assert back.time_signatures == [(0.0, 3, 4), (3.0, 2, 4)] and back.tempos == [(0.0, 88.0), (3.0, 144.0)]
    assert back.notes["onset"].tolist() == [0, 3, 4, 7] and np.array_equal(rep.encode(back), ids)


def test_encode_as_gives_encode_ids_in_the_storage_type(midi_rep, chorale):
    piece = Piece(
        notes=make_notes([(0, 1, 60), (3, 1, 62), (4, 0.5, 64), (7, 1, 65), (7, 9, 130 - 3)]),
        time_signatures=[(0.0, 3, 4), (3.0, 2, 4)],
        tempos=[(0.0, 90.0), (3.0, 150.0)],
    )
    for rep, p in ((midi_rep, chorale), (midi_rep, piece), (WordsRepresentation(source="midi").fit([piece]), piece)):
        ids = rep.encode(p)
        assert ids.dtype == np.int64 and ids[0] == rep.encode(Piece())[0] and ids[-1] == rep.encode(Piece())[-1]
        for dtype in (np.uint16, np.int32, np.uint8):
            if rep.vocab_size > np.iinfo(dtype).max + 1:
                continue
            got = rep.encode_as(p, dtype)
            assert got.dtype == dtype and np.array_equal(got, ids)
    folk = WordsRepresentation(source="abc").fit([Piece(abc=JIG)])
    assert np.array_equal(folk.encode_as(Piece(abc=JIG), np.uint16), folk.encode(Piece(abc=JIG)))


def test_midi_decode_repairs(midi_rep):
    seq = ["Bar", "Pitch_60", "Pitch_62", "Dur_4", "Vel_3", "Dur_2", "Pos_20", "Pitch_64", "Dur_1", "Vel_1"]
    arr = np.concatenate([midi_rep.ids_of(seq), [10**9, -5, 0, 1]])
    assert 0 not in arr[: len(seq)]
    piece = midi_rep.decode(arr)
    r = piece.meta["repairs"]
    assert r["missing_position"] == 1 and r["missing_duration"] == 1 and r["missing_velocity"] == 1
    assert r["stray_duration"] == 1 and r["position_out_of_bar"] == 1
    assert r["out_of_range_ids"] == 2 and r["unknown_tokens"] == 1 and r["misplaced_specials"] == 1
    assert piece.notes["pitch"].tolist() == [60, 62, 64]
    assert piece.notes["onset"].tolist() == [0, 0, 15 / 4] and piece.notes["duration"].tolist() == [1, 1, 0.25]
    assert piece.meta["ended"] is False


def test_midi_transpose_shifts_pitches_and_drops_what_leaves_the_keyboard(midi_rep, chorale):
    ids = midi_rep.encode(chorale)
    up, dropped = midi_rep.transpose(ids, 5)
    assert dropped == 0 and 0 not in up
    assert sorted(midi_rep.decode(up).notes["pitch"].tolist()) == sorted((chorale.notes["pitch"] + 5).tolist())
    assert np.array_equal(midi_rep.transpose(up, -5)[0], ids)
    high, dropped = midi_rep.transpose(ids, 60)
    expect = int((chorale.notes["pitch"] + 60 > 127).sum())
    assert dropped == expect > 0
    decoded = midi_rep.decode(high)
    assert decoded.meta["repairs"] == {} and decoded.n_notes == chorale.n_notes - expect
    words = midi_rep.words_of(high)
    assert not any(a.startswith("Pos_") and not b.startswith("Pitch_") for a, b in zip(words, words[1:]))


def test_abc_transpose_through_the_text_transposer():
    plain = WordsRepresentation().fit([Piece(abc=JIG)])
    ids = plain.encode(Piece(abc=JIG))
    assert plain.transpose(ids, 2) is None  # K:Amin and the moved notes are not in a vocabulary fitted on G minor
    rep = WordsRepresentation(vocab_transpositions=2).fit([Piece(abc=JIG)])
    ids = rep.encode(Piece(abc=JIG))
    up, dropped = rep.transpose(ids, 2)
    assert dropped == 0 and "K:Amin" in rep.words_of(up) and '"Dm"' in rep.words_of(up)
    assert "^f2" in rep.words_of(up) and "^G2" in rep.words_of(up)  # =e2 and ^F2 of G minor, in A minor
    assert np.array_equal(rep.transpose(up, -2)[0], ids)


def test_auto_source_mixes_abc_and_midi_pieces(chorale):
    rep = WordsRepresentation().fit([Piece(abc=JIG), chorale])
    assert "K:Gmin" in rep.words and "Pitch_0" in rep.words
    assert rep.decode(rep.encode(Piece(abc=JIG))).abc is not None
    assert rep.decode(rep.encode(chorale)).n_notes == chorale.n_notes
    with pytest.raises(DataError, match="ABC"):
        WordsRepresentation(source="abc").fit([Piece(abc=JIG)]).encode(chorale)


def test_primer_text():
    rep = WordsRepresentation().fit([Piece(abc=JIG)])
    arr = rep.text_to_array("X:1\nT:ignored\nM:6/8\nK:Gm\n|:G>AB")
    assert rep.words_of(arr) == ["<bos>", "M:6/8", "K:Gmin", "|:", "G", ">", "A", "B"]
    assert squeeze(rep.array_to_text(arr)) == squeeze("X:1\nM:6/8\nK:Gmin\n|:G>AB")
    with pytest.raises(FractalMusicError, match="'\\^\\^c'"):
        rep.text_to_array("X:1\nK:Gm\n^^c")


def test_midi_primer_text(midi_rep):
    arr = midi_rep.text_to_array("TS_4/4 Bar Pos_0 Pitch_60 Dur_4 Vel_5")
    assert midi_rep.words_of(arr)[1:] == ["TS_4/4", "Bar", "Pos_0", "Pitch_60", "Dur_4", "Vel_5"]
    assert midi_rep.array_to_text(arr) == "TS_4/4 Bar Pos_0 Pitch_60 Dur_4 Vel_5"
    with pytest.raises(FractalMusicError, match="Pitch_999"):
        midi_rep.text_to_array("Bar Pitch_999")


def test_state_dict_json_round_trip(midi_rep, chorale):
    for rep, piece in ((midi_rep, chorale), (WordsRepresentation(min_freq=2).fit([Piece(abc=JIG)]), Piece(abc=JIG))):
        again = WordsRepresentation.from_state_dict(json.loads(json.dumps(rep.state_dict())))
        assert again.words == rep.words and again.fingerprint() == rep.fingerprint()
        assert np.array_equal(again.encode(piece), rep.encode(piece))


def test_bad_config_is_a_config_error():
    for bad, option in (({"source": "mp3"}, "source"), ({"max_vocab_size": 2}, "max-vocab-size"),
                        ({"min_freq": 0}, "min-freq"), ({"velocity_bins": 0}, "velocity-bins"),
                        ({"max_duration_steps": 0}, "max-duration-steps"), ({"header_mode": "x"}, "header-mode"),
                        ({"steps_per_beat": 0}, "steps-per-beat")):  # fmt: skip
        with pytest.raises(ConfigError, match=option):
            WordsRepresentation(**bad)


def test_words_to_abc_closes_what_a_model_leaves_open():
    text, repairs = words_to_abc(["A", "[", "C", "E", "|", "]", "B", "{", "c"])
    assert squeeze(text) == squeeze("X:1\nK:C\nA[CE]|B{c}")
    assert repairs == {"missing_key": 1, "unclosed_group": 2, "stray_close": 1}


_ABC_REP = WordsRepresentation().fit([Piece(abc=JIG)])
_MIDI_REP = WordsRepresentation(source="midi").fit([Piece(notes=make_notes([(0, 1, 60)]))])


@settings(max_examples=60, deadline=None)
@given(hnp.arrays(np.int64, st.integers(0, 50), elements=st.integers(-(2**62), 2**62)))
def test_decode_never_raises_on_any_ids(arr):
    for rep in (_ABC_REP, _MIDI_REP):
        piece = rep.decode(arr)
        stop = np.flatnonzero(arr == 3)
        head = arr[: stop[0]] if len(stop) else arr
        if ((head < 0) | (head >= rep.vocab_size)).any():
            assert piece.meta["repairs"]["out_of_range_ids"] > 0


@settings(max_examples=80, deadline=None)
@given(st.data())
def test_decode_never_raises_on_in_vocabulary_nonsense(data):
    for rep in (_ABC_REP, _MIDI_REP):
        ids = data.draw(st.lists(st.integers(4, rep.vocab_size - 1), max_size=60))
        piece = rep.decode(np.asarray(ids, dtype=np.int64))
        assert isinstance(piece.meta["repairs"], dict)
        if rep is _ABC_REP:
            assert piece.abc.startswith("X:1\n") and "\nK:" in piece.abc
        else:
            pitch = piece.notes["pitch"]
            assert np.all(piece.notes["duration"] > 0) and np.all((pitch >= 0) & (pitch < 128))
