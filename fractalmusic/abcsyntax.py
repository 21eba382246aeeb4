"""ABC syntax, in one place: header fields, M:, L:, Q:, K: (and the alterations of its signature), note lengths
and the durations of bars. Everything that reads ABC text without music21 (the ABC reader in `fractalmusic.io.abc`,
the `abc` and `words` representations, the ABC checks in `fractalmusic.metrics.abc`, the bar-aware sampler) asks
this module, so they agree. It imports nothing of fractalmusic (a ground floor), and nothing here parses notes
into pitches or builds a score.

What an M: value means, everywhere:

* `C` is 4/4, `C|` is 2/2, `2+3/8` and `(2+3)/8` are 5/8; text after the fraction is ignored.
* `none`, an empty value, and anything that cannot be read (`M:7/5` with a denominator that is not a power of two,
  `M:fast`, `M:0/4`) mean **no metre**: `parse_meter` returns None. Bars under no metre are not judged by the bar
  checks and are never constrained by the sampler; the default unit length is then 1/8; a `Piece` read from such
  a tune records the MIDI default time signature 4/4 (`DEFAULT_SIGNATURE`), since a piece needs one.

L: is a fraction (`1/8`) or `1`; anything else is unreadable and the default applies: 1/16 when the metre is
below 3/4, else 1/8 (also with no metre).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from fractions import Fraction
from typing import Iterable, Sequence

DEFAULT_SIGNATURE = (4, 4)  # the time signature of a Piece whose tune has no readable metre

# A field line: "K:G", "w: la la", "+:" (continuation). In the body "A:|" and "d::" are music (note + repeat),
# not fields; in the header ("N::1st setting") anything of that shape is a field.
FIELD_LINE = re.compile(r"^([A-Za-z+]):(?![|:])")
HEADER_FIELD_LINE = re.compile(r"^([A-Za-z+]):")
COMMENT = re.compile(r"(?<!\\)%.*$")


# --------------------------------------------------------------------------------------------- fields
def strip_comment(value: str) -> str:
    """A field value without its `%` comment (an escaped `\\%` stays) and surrounding spaces."""
    return COMMENT.sub("", value).strip()


def field_of(line: str, in_header: bool = False) -> str | None:
    """The field letter of a field line ("K" for "K:G"), or None for music and comment lines."""
    m = (HEADER_FIELD_LINE if in_header else FIELD_LINE).match(line)
    return m.group(1) if m else None


def line_fields(lines: Iterable[str]) -> list[str | None]:
    """field_of for each line of a tune, header rules until the first K: field or music line."""
    out: list[str | None] = []
    in_header = True
    for line in lines:
        line = line.strip()
        field = field_of(line, in_header)
        if in_header and (field == "K" or (field is None and line and not line.startswith("%"))):
            in_header = False
        out.append(field)
    return out


def split_header_body(text: str) -> tuple[list[str], list[str]]:
    """(header lines up to and including the first K: line, body lines). Without K:, the leading field, comment
    and blank lines are the header."""
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    for i, line in enumerate(lines):
        if field_of(line.strip(), in_header=True) == "K":
            return lines[: i + 1], lines[i + 1:]
    i = 0
    while i < len(lines) and (not lines[i].strip() or field_of(lines[i].strip(), in_header=True)
                              or lines[i].lstrip().startswith("%")):
        i += 1
    return lines[:i], lines[i:]


def header_fields(text: str) -> dict[str, str]:
    """Header fields of one tune: letter -> value (comment stripped) of its first occurrence, up to K:.

    e.g. {"X": "626", "T": "Lamentation of Owen Roe O'Neill, The", "M": "3/4", "L": "1/8", "K": "Gm"}.
    """
    header, _ = split_header_body(text)
    out: dict[str, str] = {}
    for line in header:
        line = line.strip()
        letter = field_of(line, in_header=True)
        if letter is not None and letter != "+":
            out.setdefault(letter, strip_comment(line[2:]))
    return out


# --------------------------------------------------------------------------------------------- M: L: Q:
_METER = re.compile(r"^\(?\s*(\d+(?:\s*\+\s*\d+)*)\s*\)?\s*/\s*(\d+)")


def parse_meter(value: str | None) -> tuple[int, int] | None:
    """An M: value as (numerator, denominator), or None for no metre (none, empty or unreadable: see above)."""
    v = strip_comment(value or "")
    if v == "C":
        return 4, 4
    if v == "C|":
        return 2, 2
    m = _METER.match(v)
    if not m:
        return None
    num = sum(int(x) for x in m.group(1).split("+"))
    den = int(m.group(2))
    if num <= 0 or den <= 0 or den & (den - 1):
        return None
    return num, den


def bar_length(meter: tuple[int, int] | None) -> Fraction | None:
    """The length of one bar in whole notes (None: no metre)."""
    return Fraction(meter[0], meter[1]) if meter is not None else None


def parse_unit(value: str | None) -> Fraction | None:
    """An L: value in whole notes (`1/8`, `1`), or None when absent or unreadable."""
    v = strip_comment(value or "")
    m = re.fullmatch(r"(\d+)\s*/\s*(\d+)", v)
    if m and int(m.group(1)) > 0 and int(m.group(2)) > 0:
        return Fraction(int(m.group(1)), int(m.group(2)))
    return Fraction(1) if v == "1" else None


def default_unit(meter: tuple[int, int] | Fraction | None) -> Fraction:
    """ABC's default L:: 1/16 below 3/4, else 1/8 (also with no metre)."""
    if isinstance(meter, tuple):
        meter = bar_length(meter)
    return Fraction(1, 16) if meter is not None and meter < Fraction(3, 4) else Fraction(1, 8)


def unit_length(fields: dict[str, str]) -> Fraction:
    """The unit length a tune's header sets: its L:, else the default for its M:."""
    unit = parse_unit(fields.get("L"))
    return unit if unit is not None else default_unit(parse_meter(fields.get("M")))


def parse_tempo(value: str | None, unit: Fraction = Fraction(1, 8)) -> float | None:
    """A Q: value in quarter notes per minute: `1/4=120`, `3/8=60` (dotted crotchets: 90), `"Allegro" 1/2=80`,
    or old style `120` (units of `unit`, the tune's L:, per minute). None when unreadable or outside 1..2000."""
    v = re.sub(r'"[^"]*"', " ", strip_comment(value or ""))
    m = re.search(r"((?:\d+\s*/\s*\d+\s*)+)=\s*(\d+(?:\.\d+)?)", v)
    if m:
        beat = sum(Fraction(int(a), int(b)) for a, b in re.findall(r"(\d+)\s*/\s*(\d+)", m.group(1)) if int(b))
        qpm = float(m.group(2)) * float(beat) * 4
    else:
        m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*", v)
        if not m:
            return None
        qpm = float(m.group(1)) * float(unit) * 4
    return qpm if 1.0 <= qpm <= 2000.0 else None


# --------------------------------------------------------------------------------------------- K:
NATURAL = (0, 2, 4, 5, 7, 9, 11)  # semitones of C D E F G A B above C
LETTERS = "CDEFGAB"
LETTER_INDEX = {c: i for i, c in enumerate(LETTERS)}
FIFTHS = {"F": -1, "C": 0, "G": 1, "D": 2, "A": 3, "E": 4, "B": 5}  # position on the line of fifths
FIFTHS_TO_LETTER = {v: LETTER_INDEX[k] for k, v in FIFTHS.items()}
SHARP_ORDER = (3, 0, 4, 1, 5, 2, 6)  # F C G D A E B as letter indices
# mode -> sharps of its key signature relative to the major key on the same tonic
MODE_OFFSET = {"maj": 0, "ion": 0, "mix": -1, "dor": -2, "min": -3, "aeo": -3, "phr": -4, "loc": -5, "lyd": 1}
MODE_CANON = {"maj": "maj", "ion": "maj", "mix": "mix", "dor": "dor", "min": "min", "aeo": "min", "phr": "phr",
               "loc": "loc", "lyd": "lyd"}
CLEF_WORDS = frozenset(["treble", "bass", "alto", "tenor", "baritone", "soprano", "mezzosoprano", "perc", "none"])
_SPACES = re.compile(r"[ \t]+")
_KEY_HEAD = re.compile(r"\s*([A-Ga-g])([#b]?)")
_KEY_MODE = re.compile(r"\s*([A-Za-z]+)(?![A-Za-z=\d])")


@dataclass(frozen=True)
class KeySpec:
    """A parsed K: value: tonic letter index (C=0 .. B=6), its alteration, canonical mode and the tonic's span."""

    letter: int
    accidental: int
    mode: str  # "maj" "min" "dor" "phr" "lyd" "mix" "loc"
    start: int  # span of the tonic (letter + accidental) in the value, to rewrite it
    end: int

    @property
    def sharps(self) -> int:
        """Key signature: > 0 sharps, < 0 flats."""
        tonic = FIFTHS[LETTERS[self.letter]] + 7 * self.accidental
        return tonic + MODE_OFFSET[self.mode]

    @property
    def tonic_name(self) -> str:
        return LETTERS[self.letter] + ("#" * self.accidental if self.accidental > 0 else "b" * -self.accidental)

    @property
    def name(self) -> str:
        """Compact key name as the io layer writes it: "G", "Em", "Ador", "Bbmix"."""
        return self.tonic_name + {"maj": "", "min": "m"}.get(self.mode, self.mode)


def parse_key(value: str) -> KeySpec | None:
    """Parse a K: value such as "G", "Gm", "E Minor", "Ador", "Bb mix clef=bass".

    None when the key cannot be read as tonic + mode: "none", bagpipe keys (HP), unknown modes, or explicit
    accidentals ("D exp ^f", "G ^c").
    """
    value = COMMENT.sub("", value)
    m = _KEY_HEAD.match(value)
    if not m:
        return None
    letter = LETTER_INDEX[m.group(1).upper()]
    accidental = {"": 0, "#": 1, "b": -1}[m.group(2)]
    start, end = m.start(1), m.end(2)
    rest = value[end:]
    mode = "maj"
    mm = _KEY_MODE.match(rest)
    if mm:
        word = mm.group(1).lower()
        if word == "m":
            mode = "min"
        elif word[:3] in MODE_CANON:
            mode = MODE_CANON[word[:3]]
        elif word in CLEF_WORDS:
            pass
        else:
            return None
        rest = rest[mm.end():]
    for item in rest.split():
        if item[0] in "^_=":
            return None  # explicit accidentals: no honest transposition of the signature
        if "=" not in item and item.lower() not in CLEF_WORDS:
            return None
    return KeySpec(letter, accidental, mode, start, end)


def normalise_key(value: str) -> str:
    """Canonical key word value: "Gm" -> "Gmin", "E Minor" -> "Emin", "D" -> "Dmaj"; unreadable keys stripped."""
    spec = parse_key(value)
    if spec is None:
        return _SPACES.sub(" ", COMMENT.sub("", value).strip())
    return spec.tonic_name + spec.mode


def key_alterations(sharps: int) -> tuple[int, ...]:
    """Alteration (+1 sharp, -1 flat, 0) of each letter C D E F G A B under a signature of `sharps` (< 0: flats)."""
    alt = [0] * 7
    if sharps > 0:
        for i in SHARP_ORDER[:sharps]:
            alt[i] = 1
    elif sharps < 0:
        for i in SHARP_ORDER[::-1][: -sharps]:
            alt[i] = -1
    return tuple(alt)


_PIPE_KEYS = ("HP", "Hp")  # Highland pipes


def key_name(value: str | None) -> str | None:
    """A K: value as a compact key name: 'Gm', 'D', 'Ador', 'Dmix' ('D mix', 'E Minor' read too; clef and other
    key=value words ignored); 'HP'/'Hp' for pipe keys; None for none, explicit accidentals or anything unreadable."""
    v = strip_comment(value or "")
    if v.split()[:1] and v.split()[0] in _PIPE_KEYS:
        return v.split()[0]
    spec = parse_key(v)
    return spec.name if spec is not None else None



# --------------------------------------------------------------------------------------------- bars
# A bar is the music between two bar lines as written; its length is the sum of its notes, rests and chords in
# whole notes (see fractalmusic.metrics.abc for the rules the checks build on them).
@dataclass
class Bar:
    length: Fraction  # whole notes
    meter: Fraction | None
    starts_section: bool  # the bar line before it is a repeat sign, double bar or ending
    ends_section: bool
    multirest: bool = False


class _Voice:
    def __init__(self):
        self.bars: list[Bar] = []
        self.length = Fraction(0)
        self.content = False
        self.multirest = False
        self.start_special = False
        self.last_item: Fraction | None = None  # length of the last note/rest/chord in this bar (for '>' and '<')


BODY_FIELD_LINE = re.compile(r"^\s*([A-Za-z+]):(?![|:])(.*)$")  # "B:|" is a note and a repeat sign
_DECORATION_AT = re.compile(r"!([^!\s|]+)!|\+([^+\s|]+)\+")
_NOTE_RE = re.compile(r"(\^\^|\^|__|_|=)?([A-Ga-gzx])([',]*)([0-9]*)(/*)([0-9]*)")
_LENGTH_RE = re.compile(r"([0-9]*)(/*)([0-9]*)")


def note_length(num: str, slashes: str, den: str) -> Fraction:
    """The multiplier of the unit length written after a note: '' 1, '3' 3, '/' 1/2, '//' 1/4, '3/2' 3/2."""
    n = int(num) if num else 1
    if not slashes:
        return Fraction(n)
    if den and len(slashes) == 1:
        d = int(den)
        return Fraction(n, d) if d else Fraction(n)
    return Fraction(n, 2 ** len(slashes))


# The two ways ABC 2.1 writes a length below the unit: the short one ("A/" "A//" "A3/", what most folk books write)
# and the explicit one ("A/2" "A/4" "A3/2", O'Neill's 1850 writes it half the time). They mean the same length.
LENGTH_STYLES = ("short", "explicit")
_RESPELL = re.compile(
    r"""(?P<keep>"[^"\n]*"?|![^!\n]*!|\+[^+\n]*\+|\[[A-Za-z]:[^\]\n]*\]|(?<!\\)%.*)
      |(?P<head>(?:\^\^|\^|__|_|=)?[A-Ga-gzx][,']*|\])(?P<num>[0-9]*)(?P<slashes>/+)(?P<den>[0-9]*)""",
    re.X,
)


def length_text(length: Fraction, style: str) -> str | None:
    """How a length below or between whole units (a power-of-two denominator up to 16) is written after a note in
    `style` ("short": "/" "//" "3/"; "explicit": "/2" "/4" "3/2"); None for a whole number or another
    denominator (nothing to choose there)."""
    n, d = length.numerator, length.denominator
    if d not in (2, 4, 8, 16) or n < 1:
        return None
    if style == "explicit":
        return ("" if n == 1 else str(n)) + "/" + str(d)
    if n == 1:
        return "/" * (d.bit_length() - 1)
    return f"{n}/" if d == 2 else f"{n}/{d}"


def respell_lengths(text: str, style: str) -> str:
    """One tune's text with every note, rest and chord length below or between units written in `style`
    (`LENGTH_STYLES`): "A/2" and "A/" are the same length, so is "A3/2" and "A3/". Fields, inline fields,
    quoted strings, decorations and comments are left alone, and so is a length written in a way the style does
    not cover (no slash, "A2/4", "A//2", a denominator that is not a power of two). The music does not change:
    `bars_of` reads the same bar lengths from the result."""
    if style not in LENGTH_STYLES:
        raise ValueError(f"style must be one of {LENGTH_STYLES}, not {style!r}")

    def repl(m: re.Match) -> str:
        if m.group("keep") is not None:
            return m.group(0)
        num, slashes, den = m.group("num"), m.group("slashes"), m.group("den")
        if den and len(slashes) > 1:
            return m.group(0)
        length = note_length(num, slashes, den)
        written = Fraction(int(num or 1), int(den) if den else 2 ** len(slashes))
        if den and written.numerator != int(num or 1):  # "A2/4": not in lowest terms, left as written
            return m.group(0)
        new = length_text(length, style)
        return m.group(0) if new is None else m.group("head") + new

    lines = text.split("\n")
    fields = line_fields(lines)
    return "\n".join(line if field is not None or line.lstrip().startswith("%") else _RESPELL.sub(repl, line)
                     for line, field in zip(lines, fields))


_RESCALE = re.compile(
    r"""(?P<keep>"[^"\n]*"?|![^!\n]*!|\+[^+\n]*\+|(?<!\\)%.*|\[[A-KM-Za-z]:[^\]\n]*\]|\[(?=[\d|]))
      |(?P<unit>\[L:[^\]\n]*\])
      |(?P<chord>\[[^\]\n]*\])(?P<cnum>[0-9]*)(?P<cslashes>/*)(?P<cden>[0-9]*)
      |(?P<head>(?:\^\^|\^|__|_|=)?[A-Ga-gzx][,']*)(?P<num>[0-9]*)(?P<slashes>/*)(?P<den>[0-9]*)""",
    re.X,
)


class _CannotRescale(Exception):
    pass


def _unit_text(unit: Fraction) -> str:
    return "1" if unit == 1 else f"{unit.numerator}/{unit.denominator}"


def rescale_unit(text: str, factor: Fraction | int) -> str | None:
    """One tune written with a unit length (L:) `factor` times its own, every length divided by `factor` so the
    music is the same: with factor 2 an L:1/8 tune becomes L:1/4 and "A2 B/" becomes "A B//"; with 1/2 it becomes
    L:1/16 and "A2 B/" becomes "A4 B". A tune without L: gets one (its M:'s default, rescaled); L: fields in the
    body and inline [L:..] fields are rescaled too; a chord's length is rescaled on its suffix ("[ce]2"), its
    notes left as written. Lengths below the unit are written the short way ("/", "//", "3/").

    None when it cannot be done faithfully: a length that would need a denominator above 16, a unit that would be
    longer than a whole note or shorter than 1/64, a tempo given as a bare number of units (Q:120), or a tune with
    no L: that changes M: in its body (its default unit could change with it)."""
    factor = Fraction(factor)
    lines = text.split("\n")
    fields = line_fields(lines)
    header_end = next((i for i, f in enumerate(fields) if f == "K"), None)
    if header_end is None:
        return None
    header = lines[: header_end + 1]
    values = header_fields("\n".join(header))
    if values.get("Q") and re.fullmatch(r"\d+", values["Q"]):
        return None

    def scaled_unit(unit: Fraction) -> Fraction:
        new = unit * factor
        if new > 1 or new < Fraction(1, 64):
            raise _CannotRescale
        return new

    def length(num: str, slashes: str, den: str) -> str:
        new = note_length(num, slashes, den) / factor
        if new.denominator == 1:
            return "" if new == 1 else str(new.numerator)
        out = length_text(new, "short")
        if out is None:
            raise _CannotRescale
        return out

    def repl(m: re.Match) -> str:
        if m.group("keep") is not None:
            return m.group(0)
        if m.group("unit") is not None:
            unit = parse_unit(m.group("unit")[3:-1])
            if unit is None:
                raise _CannotRescale
            return "[L:" + _unit_text(scaled_unit(unit)) + "]"
        if m.group("chord") is not None:
            return m.group("chord") + length(m.group("cnum"), m.group("cslashes"), m.group("cden"))
        return m.group("head") + length(m.group("num"), m.group("slashes"), m.group("den"))

    out = []
    try:
        has_unit = "L" in values
        if not has_unit and any(f == "M" for f in fields[header_end + 1:]):
            return None
        for i, (line, field) in enumerate(zip(lines, fields)):
            if field == "L":
                unit = parse_unit(line.strip()[2:])
                if unit is None:
                    return None
                out.append("L:" + _unit_text(scaled_unit(unit)))
            elif field is not None or line.lstrip().startswith("%"):
                if i == header_end and not has_unit:
                    out.append("L:" + _unit_text(scaled_unit(default_unit(parse_meter(values.get("M"))))))
                out.append(line)
            elif i < header_end:
                out.append(line)
            else:
                out.append(_RESCALE.sub(repl, line))
    except _CannotRescale:
        return None
    return "\n".join(out)


class BarReader:
    """A small state machine over an ABC body that measures every bar: `read_body(reader, lines)` feeds it a body,
    `read_line(reader, text)` one line of music; `reader.voice.length` is the length of the bar under way."""

    def __init__(self, meter: tuple[int, int] | None, unit: Fraction | None):
        self.meter = bar_length(meter)  # whole notes per bar (None: no metre)
        self.meter_num = meter[0] if meter is not None else 0
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
            meter = parse_meter(value)
            self.meter, self.meter_num = bar_length(meter), meter[0] if meter is not None else 0
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


def read_body(reader: BarReader, lines: Sequence[str]) -> None:
    for raw in lines:
        line = raw.split("%")[0] if "%" in raw else raw
        m = BODY_FIELD_LINE.match(line)
        if m and not line.lstrip().startswith("|"):
            reader.field(m.group(1), m.group(2))
            continue
        read_line(reader, line)
    reader.end()


def read_line(r: BarReader, s: str) -> None:
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
            suffix = note_length(*m.groups()) if m and m.group(0) else Fraction(1)
            if m:
                k = m.end()
            if first:
                r.item(note_length(first.group(4), first.group(5), first.group(6)) * suffix)
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
                r.item(note_length(m.group(4), m.group(5), m.group(6)))
                i = m.end()
            else:
                i += 1  # ties, slurs' ends, spaces, single-letter decorations, spacers, continuation marks


def reader_for(text: str) -> tuple[BarReader, list[str]]:
    """A BarReader set up from a tune's header (M:, L:) and the tune's body lines."""
    fields = header_fields(text)
    header, body = split_header_body(text)
    return BarReader(parse_meter(fields.get("M")), parse_unit(fields.get("L"))), body


def bars_of(text: str) -> dict[str, list[Bar]]:
    """The bars of every voice of one ABC tune (voice name -> bars in order; '' is the default voice)."""
    reader, body = reader_for(text)
    read_body(reader, body)
    return {name: v.bars for name, v in reader.voices.items() if v.bars}


# --------------------------------------------------------------------------------------------- sampling
_INLINE_METER = re.compile(r"\[([ML]):([^\]\n]*)\]")
_NOTE_END = frozenset("ABCDEFGabcdefgzx0123456789/,']")


class BarGuard:
    """Keeps sampled ABC bars from overflowing: which next characters would make the bar under way longer than
    the metre allows (`fmusic sample --bar-constraint`).

    `token_texts[i]` is the text of token id i ("" for specials). Per row, the text drawn so far is kept; once the
    tune's body has begun (after its K: line) and its metre is known (M: in the header or changed in the body),
    the bar under way (the text after the last bar line) is measured with `BarReader`, and a character is
    forbidden when the bar measured with it appended would be longer than the metre: a new note (its letter, an
    accidental before it, a chord bracket) when the bar is full or a note of the unit length would overflow it, a
    length digit that would stretch the last note too far, a broken rhythm `>` / `<` that would lengthen it past
    the bar. And a bar that has begun, other than the tune's first (a pickup), cannot be closed (`|`, `:`) while a
    note of the unit length still fits, so inner bars come out as long as their metre: the complementary short bar before a
    repeat, which folk tunes often write, is not allowed either. Spaces, line breaks, decorations and ties stay
    allowed; the tune may end (<eos>) at any point.
    """

    def __init__(self, token_texts: Sequence[str]):
        self.texts = [t or "" for t in token_texts]
        by_char: dict[str, list[int]] = {}
        for i, t in enumerate(self.texts):
            if len(t) == 1:
                by_char.setdefault(t, []).append(i)
        # what starts a note or chord: letters, rests, accidentals (a model kept from a note would otherwise write
        # accidentals forever), the chord bracket
        self.letters = [i for c in "ABCDEFGabcdefgzx^_=[" for i in by_char.get(c, [])]
        self.digits = {c: by_char[c] for c in "0123456789" if c in by_char}
        self.broken = {c: by_char[c] for c in "<>" if c in by_char}
        self.closers = [i for c in "|:" for i in by_char.get(c, [])]  # what begins a bar line (|, :|, ::)
        self.rows: list[str] = []

    def start(self, texts: Sequence[str]) -> None:
        self.rows = list(texts)

    def advance(self, token_ids: Sequence[int]) -> None:
        for r, i in enumerate(token_ids):
            self.rows[r] += self.texts[i] if 0 <= i < len(self.texts) else ""

    def forbidden(self, row: int) -> list[int]:
        """Token ids that would overflow the bar under way in `row`, or close it before it is full (empty when
        nothing is measured: in the header, or with no metre)."""
        text = self.rows[row]
        header, body = split_header_body(text)
        if not header or field_of(header[-1].strip(), in_header=True) != "K":
            return []  # still in the header
        fields = header_fields(text)
        meter, unit = parse_meter(fields.get("M")), parse_unit(fields.get("L"))
        body_text = "\n".join(body)
        cut = body_text.rfind("|")
        before, bar = body_text[: cut + 1], body_text[cut + 1:]
        # metre and unit changes in the body before this bar (M:/L: lines, inline [M:...])
        for m in re.finditer(r"(?m)^([ML]):(.*)$|" + _INLINE_METER.pattern, before):
            letter, value = (m.group(1), m.group(2)) if m.group(1) else (m.group(3), m.group(4))
            if letter == "M":
                meter = parse_meter(value)
            else:
                unit = parse_unit(value) or unit

        def measure(extra: str) -> tuple[Fraction, Fraction | None]:
            """(length of the bar with `extra` appended, the bar length of the metre in force at its end)."""
            reader = BarReader(meter, unit)
            for line in (bar + extra).split("\n"):
                line = line.split("%")[0]
                m = BODY_FIELD_LINE.match(line)
                if m and not line.lstrip().startswith("|"):
                    reader.field(m.group(1), m.group(2))
                else:
                    read_line(reader, line)
            return reader.voice.length, reader.meter

        def over(extra: str) -> bool:
            length, limit = measure(extra)
            return limit is not None and length > limit

        out: list[int] = []
        note_fits = not over("A")
        if self.letters and not note_fits:
            out += self.letters
        elif cut >= 0 and self.closers and not bar.rstrip().endswith("["):
            # an inner bar (not the tune's first) that has begun is filled before a bar line closes it, as long as
            # a note of the unit length still fits (else it may close short rather than never)
            length, limit = measure("")
            if limit is not None and 0 < length < limit:
                out += self.closers
        if bar and bar[-1] in _NOTE_END:
            for c, ids in self.digits.items():
                if over(c):
                    out += ids
        for c, ids in self.broken.items():  # lengthens the last note of the bar, wherever it was
            if over(c):
                out += ids
        return out
