"""--bar-constraint: a token generator sampling ABC characters never overflows a bar of its M:/L:."""
from __future__ import annotations

from fractions import Fraction

import pytest
import torch

from fractalmusic import abcsyntax
from fractalmusic.errors import ConfigError
from fractalmusic.generators.token import TokenGenerator
from fractalmusic.representations.base import RepresentationSpec

SPECIALS = ["", "", "", ""]  # <pad> <bos> <eos> <unk>
CHARS = list("ABcdz2346/>| \n")
HEADER_ONLY = list("X:1MLKG8")  # in the vocabulary for the primer, never drawn
TEXTS = SPECIALS + CHARS + HEADER_ONLY
HEADER = "X:1\nM:3/4\nL:1/8\nK:G\n"


class Uniform(TokenGenerator):
    """Every character equally likely (bar lines a bit less): a model with no sense of metre."""

    name = "uniform-test"

    def step(self, tokens, state):
        logits = torch.zeros(tokens.shape[0], tokens.shape[1], len(TEXTS))
        logits[..., :4] = float("-inf")  # no specials: the tune never ends early
        logits[..., len(SPECIALS) + len(CHARS):] = float("-inf")
        return logits, state


def model(texts=TEXTS) -> Uniform:
    gen = Uniform(None, RepresentationSpec(kind="tokens", vocab_size=len(TEXTS), pad_id=0, bos_id=1, eos_id=2))
    gen.token_texts = texts
    return gen


def primer() -> list[int]:
    ids = {c: i for i, c in enumerate(TEXTS) if c}
    return [1] + [ids[c] for c in HEADER]


def bodies(rows) -> list[str]:
    return ["".join(TEXTS[i] for i in row) for row in rows]


def bar_lengths(text: str) -> list[Fraction]:
    # only bars closed by a bar line (the last, unfinished one is cut by the length limit)
    return [b.length for b in abcsyntax.bars_of(text[: text.rfind("|") + 1])[""]]


def test_no_bar_overflows_with_the_constraint_and_many_do_without():
    gen = model()
    free = gen.sample(8, 300, primer=primer(), seed=0)
    guarded = gen.sample(8, 300, primer=primer(), seed=0, bar_constraint=True)
    over_free = [n for t in bodies(free) for n in bar_lengths(t) if n > Fraction(3, 4)]
    lengths = [n for t in bodies(guarded) for n in bar_lengths(t)]
    assert len(over_free) > 20
    assert len(lengths) > 40 and max(lengths) <= Fraction(3, 4)
    # inner bars are filled while a note still fits: most come out exactly 3/4 (against 2% unguided)
    inner_free = [n for t in bodies(free) for n in bar_lengths(t)[1:]]
    inner = [n for t in bodies(guarded) for n in bar_lengths(t)[1:]]
    assert sum(n == Fraction(3, 4) for n in inner_free) / len(inner_free) < 0.1
    assert sum(n == Fraction(3, 4) for n in inner) / len(inner) > 0.5


def test_guard_reads_the_bar_under_way():
    guard = abcsyntax.BarGuard(TEXTS)
    guard.start([HEADER + "ABc d2z|", HEADER + "AB2 d2", HEADER + "AB", "X:1\nM:3/4\n", HEADER + "[M:2/4]AB z2"])
    names = [sorted({TEXTS[i] for i in guard.forbidden(r)}) for r in range(5)]
    assert names[0] == []  # a fresh bar
    assert names[1] == sorted("123468")  # 5 of 6 eighths: one more note, but no longer d (d21 ... d28)
    assert names[2] == ["6", "8"]  # "AB6" would be 7 eighths
    assert names[3] == []  # still in the header: nothing measured
    assert names[4] == sorted(set("ABGcdz>123468"))  # the inline metre change makes the bar full


def test_the_constraint_needs_text_tokens():
    gen = model(texts=None)
    with pytest.raises(ConfigError, match="bar-constraint needs an ABC"):
        gen.sample(1, 5, primer=primer(), bar_constraint=True)
