"""Checks of ABC tunes: parse rate, header completeness, bar lengths against the meter, and memorisation.

music21 parses almost anything (MIT's lab-1 sampler "parsed" while only 9% of its bars had the right length), so
parsing is only the first check. The bar check reads the ABC text itself:

* A bar is the music between two bar lines as written (`|`, `||`, `|]`, `[|`, `|:`, `:|`, `::`, `|1`, `:|2`,
  `[2` ...). Its length is the sum of its notes, rests and chords in whole notes: the unit length `L:` (default 1/16
  when the meter is below 3/4, else 1/8) times each length suffix, with broken rhythm (`>`, `<`, `>>` ...), tuplets
  (`(3abc`, `(p:q:r`), chords (the first note's length, times any suffix after `]`), grace notes (`{...}`, no time),
  chord symbols, annotations and decorations (no time), and inline or body-line `M:` / `L:` changes applied where
  they occur. A multi-measure rest (`Z`, `Z4`) counts as whole bars. Voices (`V:`) are checked as separate lines.
* The first and last bar of each voice are not judged (an anacrusis and its complement).
* A judged bar is right when its length equals the meter `M:` (C = 4/4, C| = 2/2, 2+3/8 = 5/8). A bar that touches a
  section boundary (it ends at a repeat sign or double bar, or starts after one or at a first/second ending) is
  also right when it completes a bar together with the bar on the other side of that boundary or with the tune's
  opening anacrusis: sections in folk tunes commonly start with a pickup and end with the complementary short bar,
  and first and second endings repeat that pattern. The bar before an ending mark (`|1`) is an ordinary bar.
* Bars under `M:none` are not judged. bar_length_consistency = right / judged (NaN when nothing can be judged).

Memorisation compares the *normalised body* of a tune (everything after the `K:` header line, without comments,
field lines, inline fields, chord symbols, annotations, decorations and whitespace) by the Jaccard similarity of
the sets of its character 8-grams. A generated tune is an exact copy when its normalised body equals a reference
tune's, and a near copy when its best Jaccard similarity to any reference tune is at least `threshold` (0.7: one
changed note costs at most 8 of the n-grams, so a copy of a 32-bar reel (~300 n-grams) with one note changed scores
about 0.95 and with five changed about 0.77; a tune that shares one of its two parts with another about 0.3).
A transposed copy is not detected (its letters differ).
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Iterable

import numpy as np

from fractalmusic.abcsyntax import BODY_FIELD_LINE as _FIELD_LINE
from fractalmusic.abcsyntax import Bar, bars_of, header_fields, split_header_body  # noqa: F401 (re-exported)

HEADER_FIELDS = ("X", "T", "M", "L", "K")
NEAR_COPY_THRESHOLD = 0.7
NGRAM = 8



# ----------------------------------------------------------------------------------------------- header
def header_completeness(text: str) -> float:
    """Share of the fields X, T, M, L, K present in the tune's header."""
    fields = header_fields(text)
    return sum(1 for f in HEADER_FIELDS if f in fields) / len(HEADER_FIELDS)


# ----------------------------------------------------------------------------------------------- bars
# (bars are measured by fractalmusic.abcsyntax: one reading of M:, L: and note lengths for the whole package)
@dataclass
class BarCheck:
    bars: int  # bars with music in them, all voices
    judged: int
    right: int
    wrong_bars: list[int] = field(default_factory=list)  # indices of wrong bars, counting voice after voice

    @property
    def consistency(self) -> float:
        return self.right / self.judged if self.judged else math.nan


def check_bar_lengths(text: str) -> BarCheck:
    """Judge the inner bars of every voice against the meter (see the module's documentation)."""
    voices = bars_of(text)
    total = judged = right = 0
    wrong: list[int] = []
    offset = 0
    for bars in voices.values():
        total += len(bars)
        first = bars[0].length if bars else Fraction(0)
        for k in range(1, len(bars) - 1):
            b = bars[k]
            if b.meter is None:
                continue
            judged += 1
            ok = b.multirest or b.length == b.meter
            if not ok and b.starts_section:
                ok = b.length + bars[k - 1].length == b.meter or b.length + first == b.meter
            if not ok and b.ends_section:
                ok = b.length + bars[k + 1].length == b.meter or b.length + first == b.meter
            if ok:
                right += 1
            else:
                wrong.append(offset + k)
        offset += len(bars)
    return BarCheck(total, judged, right, wrong)


def bar_length_consistency(text: str) -> float:
    return check_bar_lengths(text).consistency


# ----------------------------------------------------------------------------------------------- parsing
def parse_abc(text: str):
    """The music21 score of one ABC tune, or None when music21 cannot read it or finds no notes in it."""
    import music21

    try:
        parsed = music21.converter.parse(text, format="abc")
    except Exception:  # music21 raises many kinds of error on bad ABC
        return None
    if isinstance(parsed, music21.stream.Opus):
        scores = list(parsed.scores)
        if not scores:
            return None
        parsed = scores[0]
    try:
        if not len(parsed.flatten().notes):
            return None
    except Exception:
        return None
    return parsed


def parse_ok(text: str) -> bool:
    return parse_abc(text) is not None


# ----------------------------------------------------------------------------------------------- memorisation
_INLINE_FIELD = re.compile(r"\[[A-Za-z]:[^\]]*\]")
_QUOTED = re.compile(r'"[^"]*"')
_DECORATION = re.compile(r"![^!\s|]+!|\+[^+\s|]+\+")


def normalised_body(text: str) -> str:
    """The tune's music without header, comments, fields, chord symbols, decorations and whitespace."""
    _, body = split_header_body(text)
    kept = []
    for line in body:
        line = line.split("%")[0]
        if _FIELD_LINE.match(line) and not line.lstrip().startswith("|"):
            continue
        kept.append(line)
    out = "".join(kept)
    out = _INLINE_FIELD.sub("", out)
    out = _QUOTED.sub("", out)
    out = _DECORATION.sub("", out)
    return re.sub(r"[\s\\]+", "", out)


def ngrams(body: str, n: int = NGRAM) -> set[str]:
    if not body:
        return set()
    if len(body) <= n:
        return {body}
    return {body[i : i + n] for i in range(len(body) - n + 1)}


class MemorisationIndex:
    """An inverted index of the reference tunes' n-grams: best Jaccard match of a tune in one pass."""

    def __init__(self, reference_texts: Iterable[str], n: int = NGRAM):
        self.n = n
        vocab: dict[str, int] = {}
        gram_ids: list[np.ndarray] = []
        self.bodies: dict[str, int] = {}
        sizes = []
        for index, text in enumerate(reference_texts):
            body = normalised_body(text)
            self.bodies.setdefault(body, index)
            grams = ngrams(body, n)
            sizes.append(len(grams))
            gram_ids.append(np.fromiter((vocab.setdefault(g, len(vocab)) for g in grams), dtype=np.int64))
        self.vocab = vocab
        self.sizes = np.array(sizes, dtype=np.int64)
        counts = np.array([len(g) for g in gram_ids], dtype=np.int64)
        all_grams = np.concatenate(gram_ids) if gram_ids else np.zeros(0, np.int64)
        owners = np.repeat(np.arange(len(gram_ids)), counts)
        order = np.argsort(all_grams, kind="stable")
        self._owners = owners[order]
        self._indptr = np.concatenate([[0], np.cumsum(np.bincount(all_grams, minlength=len(vocab)))])

    def __len__(self) -> int:
        return len(self.sizes)

    def best_match(self, text: str) -> tuple[float, int, bool]:
        """(best Jaccard similarity, index of that reference tune (-1 if none), exact copy?)."""
        body = normalised_body(text)
        if body and body in self.bodies:
            return 1.0, self.bodies[body], True
        grams = ngrams(body, self.n)
        if not grams or not len(self):
            return 0.0, -1, False
        ids = np.array([self.vocab[g] for g in grams if g in self.vocab], dtype=np.int64)
        if not len(ids):
            return 0.0, -1, False
        owners = np.concatenate([self._owners[self._indptr[g] : self._indptr[g + 1]] for g in ids])
        inter = np.bincount(owners, minlength=len(self)).astype(np.float64)
        union = len(grams) + self.sizes - inter
        jaccard = np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)
        best = int(np.argmax(jaccard))
        return float(jaccard[best]), best, False


def memorisation(
    generated: Sequence[str],
    reference: Sequence[str] | MemorisationIndex,
    threshold: float = NEAR_COPY_THRESHOLD,
    n: int = NGRAM,
) -> dict:
    """Share of generated tunes that are exact or near copies of reference (training) tunes."""
    index = reference if isinstance(reference, MemorisationIndex) else MemorisationIndex(reference, n)
    sims, matches, exact = [], [], []
    for text in generated:
        s, j, e = index.best_match(text)
        sims.append(s)
        matches.append(j)
        exact.append(e)
    sims_a = np.array(sims, dtype=np.float64)
    count = len(sims)
    return {
        "tunes": count,
        "threshold": threshold,
        "ngram": index.n,
        "exact_copy_rate": float(np.mean(exact)) if count else math.nan,
        "near_copy_rate": float(np.mean(sims_a >= threshold)) if count else math.nan,
        "mean_best_similarity": float(sims_a.mean()) if count else math.nan,
        "best_similarity": sims,
        "best_match": matches,
    }


def abc_metrics(text: str, parsed: bool | None = None) -> dict[str, float]:
    """Per-tune ABC checks: parse_ok (0/1), header_completeness, bar_length_consistency."""
    ok = parse_ok(text) if parsed is None else parsed
    return {
        "parse_ok": float(ok),
        "header_completeness": header_completeness(text),
        "bar_length_consistency": bar_length_consistency(text),
    }


PLAYABLE_MIN_NOTES = 8

ABC_METRIC_INFO = {
    "parse_ok": ("share", "music21 reads the tune and finds notes in it (parse rate)"),
    "playable": ("share", f"the tune parses and has at least {PLAYABLE_MIN_NOTES} notes"),
    "header_completeness": ("share", "share of the header fields X, T, M, L, K present"),
    "bar_length_consistency": ("share", "share of inner bars whose length equals the meter M:"),
}
