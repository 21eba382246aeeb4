"""The text representation on its own: reading .txt files, both units, vocabulary limits, state, decoding."""
from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fractalmusic.errors import CheckpointError, ConfigError, FractalMusicError, PieceReadError
from fractalmusic.plugins import get_representation
from fractalmusic_text import TextRepresentation
from fractalmusic_text.representation import BOS, EOS, PAD, SPECIALS, UNK, split_documents, text_piece

POEMS = "The moon is up,\nthe night is still.\n\nThe river sings\nbelow the hill.\n\n\n  \nAnd all the stars.\n"


def fitted(texts, **config) -> TextRepresentation:
    return TextRepresentation(**config).fit([text_piece(t) for t in texts])


def test_registered_through_its_entry_point():
    assert get_representation("text") is TextRepresentation
    assert get_representation("fractalmusic-text:text") is TextRepresentation


def test_special_ids_follow_the_word_lab_convention():
    rep = fitted(["ab"])
    assert SPECIALS == ("<unk>", "<pad>", "<bos>", "<eos>")
    assert (UNK, PAD, BOS, EOS) == (0, 1, 2, 3)
    spec = rep.spec()
    assert (spec.kind, spec.pad_id, spec.bos_id, spec.eos_id, spec.vocab_size) == ("tokens", 1, 2, 3, 6)


@pytest.mark.parametrize(
    "mode, expected",
    [
        ("blocks", ["The moon is up,\nthe night is still.", "The river sings\nbelow the hill.", "And all the stars."]),
        ("auto", ["The moon is up,\nthe night is still.", "The river sings\nbelow the hill.", "And all the stars."]),
        ("lines", ["The moon is up,", "the night is still.", "The river sings", "below the hill.", "And all the stars."]),
        ("file", [POEMS.strip("\n").replace("\n\n\n  \n", "\n\n\n\n")]),
    ],
)
def test_documents_split_by_blank_lines_lines_or_file(mode, expected):
    assert split_documents(POEMS, mode) == expected


def test_auto_reads_a_file_without_blank_lines_as_one_document_per_line():
    assert split_documents("Stocks rise\r\nOil falls\n", "auto") == ["Stocks rise", "Oil falls"]


def test_read_file_gives_pieces_with_text_in_meta(tmp_path):
    path = tmp_path / "poems.txt"
    path.write_bytes(b"\xef\xbb\xbf" + POEMS.encode())  # a BOM is not text
    pieces = TextRepresentation().read_file(path)
    assert [p.meta["text"] for p in pieces] == split_documents(POEMS, "blocks")
    assert pieces[0].source == f"{path}#1" and pieces[0].abc is None and pieces[0].n_notes == 0


@pytest.mark.parametrize(
    "content, reason",
    [(b"\xff\xfe\x00a", "NUL"), (b"caf\xe9\n", "not UTF-8"), (b"\n \n\t\n", "no text")],
)
def test_read_file_refuses_what_is_not_text(tmp_path, content, reason):
    path = tmp_path / "bad.txt"
    path.write_bytes(content)
    with pytest.raises(PieceReadError, match=reason):
        TextRepresentation().read_file(path)


def test_char_round_trip_keeps_every_character():
    text = "The moon, é 🌙\nsecond line"
    rep = fitted([text])
    arr = rep.encode(text_piece(text))
    assert arr[0] == BOS and arr[-1] == EOS and arr.dtype == np.int64
    assert rep.decode(arr).meta["text"] == text
    assert rep.decode(arr).meta["repairs"] == {}
    assert rep.array_to_text(arr) == text


def test_unseen_and_rare_characters_become_unk():
    rep = fitted(["aaab"], min_freq=2)
    assert rep.tokens == ["a"]
    arr = rep.encode(text_piece("abz"))
    assert arr.tolist() == [BOS, 4, UNK, UNK, EOS]
    piece = rep.decode(arr)
    assert piece.meta["text"] == "a\ufffd\ufffd" and piece.meta["repairs"] == {"unknown_tokens": 2}


def test_char_primer_refuses_characters_outside_the_vocabulary():
    rep = fitted(["The moon"])
    assert rep.text_to_array("The").tolist()[0] == BOS
    with pytest.raises(FractalMusicError, match="'z'"):
        rep.text_to_array("The z")


def test_word_unit_splits_on_white_space_and_keeps_line_breaks():
    rep = fitted(["the moon  is up\nthe night"], unit="word")
    assert rep.units("the moon  is up\nthe night") == ["the", "moon", "is", "up", "\n", "the", "night"]
    assert rep.tokens[0] == "the"  # most frequent first
    arr = rep.encode(text_piece("the moon\nthe sun"))
    assert rep.decode(arr).meta["text"] == "the moon\nthe <unk>"
    assert rep.text_to_array("the sun").tolist() == [BOS, rep.encode(text_piece("the"))[1], UNK]


def test_word_vocabulary_limits_and_lowercase():
    texts = ["A a a b b c", "a b d"]
    rep = fitted(texts, unit="word", max_vocab_size=6)  # 4 specials + 2 words
    assert rep.tokens == ["a", "b"] and rep.vocab_size == 6  # 'A' is its own word without --lowercase
    assert fitted(texts, unit="word", lowercase=True).tokens[:2] == ["a", "b"]
    assert fitted(texts, unit="word", min_freq=2).tokens == ["a", "b"]
    assert "A" not in fitted(texts, unit="word", lowercase=True).tokens


@pytest.mark.parametrize(
    "config, message",
    [
        ({"unit": "byte"}, "--unit"),
        ({"documents": "pages"}, "--documents"),
        ({"max_vocab_size": 4}, "--max-vocab-size"),
        ({"min_freq": 0}, "--min-freq"),
    ],
)
def test_bad_options_are_config_errors(config, message):
    with pytest.raises(ConfigError, match=message):
        TextRepresentation(**config)


def test_state_is_json_and_restores_the_same_encoding():
    rep = fitted(["the moon\nthe night", "a b"], unit="word", min_freq=1)
    state = json.loads(json.dumps(rep.state_dict()))
    again = TextRepresentation.from_state_dict(state)
    piece = text_piece("the night\na moon")
    assert again.encode(piece).tolist() == rep.encode(piece).tolist()
    assert again.fingerprint() == rep.fingerprint()
    assert fitted(["other"], unit="word").fingerprint() != rep.fingerprint()


@pytest.mark.parametrize(
    "tokens",
    [["a", "a"], ["<eos>"], "abc", [""], [1]],
)
def test_damaged_state_is_a_checkpoint_error(tokens):
    state = fitted(["ab"]).state_dict()
    state["tokens"] = tokens
    with pytest.raises(CheckpointError):
        TextRepresentation.from_state_dict(state)


def test_char_state_holds_single_characters():
    state = fitted(["ab"]).state_dict()
    state["tokens"] = ["ab"]
    with pytest.raises(CheckpointError, match="single characters"):
        TextRepresentation.from_state_dict(state)


def test_decode_stops_at_eos_and_counts_repairs():
    rep = fitted(["ab"])
    a, b = rep.encode(text_piece("ab"))[1:3]
    piece = rep.decode(np.array([BOS, a, PAD, 99, -1, BOS, b, EOS, a]))
    assert piece.meta["text"] == "ab" and piece.meta["ended"] is True
    assert piece.meta["repairs"] == {"out_of_range_ids": 2, "misplaced_specials": 2}


@settings(max_examples=60, deadline=None)
@given(st.lists(st.one_of(st.integers(-5, 40), st.floats(allow_nan=True, allow_infinity=True)), max_size=40))
def test_decode_never_raises(values):
    for unit in ("char", "word"):
        rep = fitted(["the moon is up"], unit=unit)
        piece = rep.decode(np.array(values, dtype=np.float64 if any(isinstance(v, float) for v in values) else np.int64))
        assert isinstance(piece.meta["text"], str)


def test_pieces_with_abc_text_only_are_encoded_from_it():
    rep = fitted(["X:1\nK:C\nCDE|"])
    from fractalmusic.piece import Piece

    assert rep.array_to_text(rep.encode(Piece(abc="X:1\nK:C\nCDE|"))) == "X:1\nK:C\nCDE|"


def test_write_output_writes_utf8_text(tmp_path):
    rep = fitted(["é"])
    path = rep.write_output(text_piece("é moon"), tmp_path / "s.txt", "txt")
    assert path.read_text(encoding="utf-8") == "é moon\n"
    with pytest.raises(ConfigError):
        rep.write_output(text_piece("x"), tmp_path / "s.mid", "mid")
