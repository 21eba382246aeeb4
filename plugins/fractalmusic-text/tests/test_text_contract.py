"""fractalmusic's contract suite for representations, run on `text` (both units)."""
from __future__ import annotations

import pytest

from fractalmusic.testing import RepresentationContract
from fractalmusic_text.representation import text_piece

TEXTS = [
    "The moon is up, the night is still,\nThe river sings below the hill.",
    "Stocks rise as oil prices fall",
    "A silver boat upon the sky, é and 🌙.",
    "She sails the dark and never sleeps.",
]


class TestTextChars(RepresentationContract):
    representation = "text"
    config = {"unit": "char"}
    transposes = False  # text has no pitch
    e2e_corpus_format = "abc"  # the tiny generated corpus is ABC: text reads a tune's ABC text as its text

    def pieces(self):
        return [text_piece(t, source=f"doc{i}") for i, t in enumerate(TEXTS)]


class TestTextWords(TestTextChars):
    representation = "fractalmusic-text:text"
    config = {"unit": "word", "lowercase": True, "min_freq": 1}

    def test_train_resume_sample_evaluate(self):
        pytest.skip("the fmusic run is TestTextChars's (test_text_cli.py runs word models through fmusic)")
