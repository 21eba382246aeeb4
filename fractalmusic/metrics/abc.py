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
from typing import Iterable, Sequence

import numpy as np

HEADER_FIELDS = ("X", "T", "M", "L", "K")
NEAR_COPY_THRESHOLD = 0.7
NGRAM = 8

_FIELD_LINE = re.compile(r"^\s*([A-Za-z+]):(?![|:])(.*)$")  # "B:|" is a note and a repeat sign


# ----------------------------------------------------------------------------------------------- header
def split_header_body(text: str) -> tuple[list[str], list[str]]:
    """(header lines up to and including the first K: line, body lines). Without K:, leading field lines are the
    header."""
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    for i, line in enumerate(lines):
        m = _FIELD_LINE.match(line)
        if m and m.group(1) == "K":
            return lines[: i + 1], lines[i + 1 :]
    i = 0
    while i < len(lines) and (not lines[i].strip() or _FIELD_LINE.match(lines[i]) or lines[i].lstrip().startswith("%")):
        i += 1
    return lines[:i], lines[i:]


def header_fields(text: str) -> dict[str, str]:
    """First value of each header field (letter -> value)."""
    header, _ = split_header_body(text)
    out: dict[str, str] = {}
    for line in header:
        m = _FIELD_LINE.match(line)
        if m:
            out.setdefault(m.group(1), m.group(2).split("%")[0].strip())
    return out


def header_completeness(text: str) -> float:
    """Share of the fields X, T, M, L, K present in the tune's header."""
    fields = header_fields(text)
    return sum(1 for f in HEADER_FIELDS if f in fields) / len(HEADER_FIELDS)


def parse_meter(value: str | None) -> tuple[Fraction | None, int]:
    """(bar length in whole notes or None for free meter, numerator) from an M: value."""
    if value is None:
        return None, 0
    v = value.strip().split()[0] if value.strip() else ""
    if v == "C":
        return Fraction(1), 4
    if v == "C|":
        return Fraction(1), 2
    m = re.fullmatch(r"\(?([0-9+]+)\)?/([0-9]+)", v)
    if not m:
        return None, 0
    try:
        num = sum(int(p) for p in m.group(1).split("+") if p)
        den = int(m.group(2))
    except ValueError:
        return None, 0
    if num <= 0 or den <= 0:
        return None, 0
    return Fraction(num, den), num


def parse_unit(value: str | None) -> Fraction | None:
    if value is None:
        return None
    m = re.fullmatch(r"\s*([0-9]+)\s*/\s*([0-9]+)\s*", value.split("%")[0])
    if not m or int(m.group(1)) <= 0 or int(m.group(2)) <= 0:
        m1 = re.fullmatch(r"\s*1\s*", value.split("%")[0])
        return Fraction(1) if m1 else None
    return Fraction(int(m.group(1)), int(m.group(2)))


def default_unit(meter: Fraction | None) -> Fraction:
    return Fraction(1, 16) if meter is not None and meter < Fraction(3, 4) else Fraction(1, 8)


# ----------------------------------------------------------------------------------------------- bars
@dataclass
class Bar:
    length: Fraction  # whole notes
    meter: Fraction | None
    starts_section: bool  # the bar line before it is a repeat sign, double bar or ending
    ends_section: bool
    multirest: bool = False


@dataclass
class BarCheck:
    bars: int  # bars with music in them, all voices
    judged: int
    right: int
    wrong_bars: list[int] = field(default_factory=list)  # indices of wrong bars, counting voice after voice

    @property
    def consistency(self) -> float:
        return self.right / self.judged if self.judged else math.nan


class _Voice:
    def __init__(self):
        self.bars: list[Bar] = []
        self.length = Fraction(0)
        self.content = False
        self.multirest = False
        self.start_special = False
        self.last_item: Fraction | None = None  # length of the last note/rest/chord in this bar (for '>' and '<')


_DECORATION_AT = re.compile(r"!([^!\s|]+)!|\+([^+\s|]+)\+")
_NOTE_RE = re.compile(r"(\^\^|\^|__|_|=)?([A-Ga-gzx])([',]*)([0-9]*)(/*)([0-9]*)")
_LENGTH_RE = re.compile(r"([0-9]*)(/*)([0-9]*)")


def _length_of(num: str, slashes: str, den: str) -> Fraction:
    n = int(num) if num else 1
    if not slashes:
        return Fraction(n)
    if den and len(slashes) == 1:
        d = int(den)
        return Fraction(n, d) if d else Fraction(n)
    return Fraction(n, 2 ** len(slashes))


class _BarReader:
    """A small state machine over an ABC body that measures every bar."""

    def __init__(self, meter: Fraction | None, meter_num: int, unit: Fraction | None):
        self.meter = meter
        self.meter_num = meter_num
        self.unit = unit if unit is not None else default_unit(meter)
        self.unit_given = unit is not None
        self.voices: dict[str, _Voice] = {"": _Voice()}
        self.voice = self.voices[""]
        self.order: list[tuple[str, int]] = []  # (voice, index) of every bar in reading order
        self.tuplet_left = 0
        self.tuplet_factor = Fraction(1)
        self.next_factor = Fraction(1)  # from a broken rhythm

    # -- fields
    def field(self, letter: str, value: str) -> None:
        value = value.split("%")[0].strip()
        if letter == "M":
            self.meter, self.meter_num = parse_meter(value)
            if not self.unit_given:
                self.unit = default_unit(self.meter)
        elif letter == "L":
            unit = parse_unit(value)
            if unit is not None:
                self.unit, self.unit_given = unit, True
        elif letter == "V":
            name = value.split()[0] if value.split() else ""
            self.voice = self.voices.setdefault(name, _Voice())
            self.tuplet_left, self.next_factor = 0, Fraction(1)

    # -- music
    def item(self, length: Fraction) -> None:
        """A note, rest or chord of `length` units (before tuplet and broken-rhythm factors)."""
        value = length * self.unit * self.next_factor
        self.next_factor = Fraction(1)
        if self.tuplet_left > 0:
            value *= self.tuplet_factor
            self.tuplet_left -= 1
        v = self.voice
        v.length += value
        v.content = True
        v.last_item = value

    def broken(self, symbol: str, count: int) -> None:
        v = self.voice
        if v.last_item is None:
            return
        short = Fraction(1, 2**count)
        long = 2 - short
        first, second = (long, short) if symbol == ">" else (short, long)
        v.length += v.last_item * (first - 1)
        v.last_item = v.last_item * first
        self.next_factor = second

    def tuplet(self, p: int, q: int | None, r: int | None) -> None:
        if p <= 1:
            return
        if q is None:
            compound = self.meter_num % 3 == 0 and self.meter_num > 3
            q = {2: 3, 3: 2, 4: 3, 6: 2, 8: 3}.get(p, 3 if compound else 2)
        self.tuplet_factor = Fraction(q, p)
        self.tuplet_left = r if r is not None else p

    def multirest(self, count: int) -> None:
        v = self.voice
        v.content = True
        v.multirest = True
        v.length += (self.meter or Fraction(1)) * max(count, 1)

    def bar_line(self, ends: bool, starts: bool | None = None) -> None:
        """Close the current bar. `ends`: this bar line closes a section (repeat sign, double bar); `starts`: it opens
        one (also a first/second ending); default: the same as `ends`."""
        starts = ends if starts is None else starts
        v = self.voice
        if v.content:
            v.bars.append(Bar(v.length, self.meter, v.start_special, ends, v.multirest))
            self.order.append((self._voice_name(), len(v.bars) - 1))
            v.start_special = starts
        else:
            v.start_special = v.start_special or starts
            if v.bars and ends:
                v.bars[-1].ends_section = True
        v.length, v.content, v.multirest, v.last_item = Fraction(0), False, False, None

    def end(self) -> None:
        for name, v in self.voices.items():
            self.voice = v
            if v.content:
                self.bar_line(False)

    def _voice_name(self) -> str:
        for name, v in self.voices.items():
            if v is self.voice:
                return name
        return ""


def _read_body(reader: _BarReader, lines: Sequence[str]) -> None:
    for raw in lines:
        line = raw.split("%")[0] if "%" in raw else raw
        m = _FIELD_LINE.match(line)
        if m and not line.lstrip().startswith("|"):
            reader.field(m.group(1), m.group(2))
            continue
        _read_line(reader, line)
    reader.end()


def _read_line(r: _BarReader, s: str) -> None:
    i, n = 0, len(s)
    while i < n:
        c = s[i]
        if c == '"':  # chord symbol or annotation
            j = s.find('"', i + 1)
            i = n if j < 0 else j + 1
        elif c in "!+":  # decoration !trill! or +trill+; a lone '!' is an old-style line break
            m = _DECORATION_AT.match(s, i)
            i = m.end() if m else i + 1
        elif c == "{":  # grace notes take no time
            j = s.find("}", i + 1)
            i = n if j < 0 else j + 1
        elif c == "[" and i + 2 < n and s[i + 1].isalpha() and s[i + 2] == ":":  # inline field [M:3/4]
            j = s.find("]", i + 1)
            j = n if j < 0 else j
            r.field(s[i + 1], s[i + 3 : j])
            i = j + 1
        elif c == "[" and i + 1 < n and s[i + 1].isdigit():  # an ending [1 / [2
            i += 1
            while i < n and (s[i].isdigit() or s[i] in ",-"):
                i += 1
            r.voice.start_special = True
        elif c == "[" and i + 1 < n and s[i + 1] == "|":  # [| thick-thin bar line
            i += 2
            while i < n and s[i] in ":|":
                i += 1
            r.bar_line(True)
        elif c == "[":  # chord: the first note's length times the suffix after ']'
            j = s.find("]", i + 1)
            j = n if j < 0 else j
            inner = s[i + 1 : j]
            first = _NOTE_RE.search(inner)
            k = j + 1
            m = _LENGTH_RE.match(s, k) if k <= n else None
            suffix = _length_of(*m.groups()) if m and m.group(0) else Fraction(1)
            if m:
                k = m.end()
            if first:
                r.item(_length_of(first.group(4), first.group(5), first.group(6)) * suffix)
            i = k
        elif c in "|:":
            j = i
            while j < n and s[j] in ":|":
                j += 1
            run = s[i:j]
            if j < n and s[j] == "]":  # |] final bar
                j += 1
                run += "]"
            ending = False
            if j < n and s[j].isdigit():
                ending = True
            elif j + 1 < n and s[j] == "[" and s[j + 1].isdigit():
                ending = True
                j += 1
            while ending and j < n and (s[j].isdigit() or s[j] in ",-"):
                j += 1
            if run == ":" and not ending:  # a stray colon is not a bar line
                i = j
                continue
            closes = ":" in run or "||" in run or run.endswith("]")
            r.bar_line(closes, closes or ending)
            i = j
        elif c == "(":
            m = re.match(r"\((\d+)(?::(\d*))?(?::(\d*))?", s[i:])
            if m:
                p = int(m.group(1))
                q = int(m.group(2)) if m.group(2) else None
                rr = int(m.group(3)) if m.group(3) else None
                r.tuplet(p, q, rr)
                i += m.end()
            else:
                i += 1  # a slur
        elif c in "<>":
            j = i
            while j < n and s[j] == c:
                j += 1
            r.broken(c, j - i)
            i = j
        elif c in "ZX":
            m = re.match(r"[ZX](\d*)", s[i:])
            r.multirest(int(m.group(1)) if m.group(1) else 1)
            i += m.end()
        else:
            m = _NOTE_RE.match(s, i)
            if m:
                r.item(_length_of(m.group(4), m.group(5), m.group(6)))
                i = m.end()
            else:
                i += 1  # ties, slurs' ends, spaces, single-letter decorations, spacers, continuation marks


def bars_of(text: str) -> dict[str, list[Bar]]:
    """The bars of every voice of one ABC tune (voice name -> bars in order; '' is the default voice)."""
    fields = header_fields(text)
    meter, num = parse_meter(fields.get("M"))
    reader = _BarReader(meter, num, parse_unit(fields.get("L")))
    _, body = split_header_body(text)
    _read_body(reader, body)
    return {name: v.bars for name, v in reader.voices.items() if v.bars}


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
