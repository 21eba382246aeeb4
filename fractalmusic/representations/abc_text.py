"""ABC text utilities shared by the `abc` (characters) and `words` representations.

* `normalise_abc(text, header_mode)`: whitespace clean-up and header filtering, one tune in, one tune out.
* `abc_words(text, header_mode)` / `words_to_abc(words)`: folk-rnn style musical words and back.
* `transpose_abc(text, semitones)`: key-aware text transposition (see its docstring).
* `header_facts(text)`: title, key, metre and tempo read from the header (no music21 needed).

Everything here is pure Python over regular expressions; nothing parses the music into notes. Fields, M:, L:, Q:
and K: are read by `fractalmusic.abcsyntax` (re-exported here where older code imports them).
"""
from __future__ import annotations

import re
from typing import Iterable

from fractalmusic.abcsyntax import (  # noqa: F401  (field_of, line_fields, KeySpec, parse_key: re-exported)
    COMMENT as _COMMENT,
    FIELD_LINE as _FIELD_LINE,
    FIFTHS_TO_LETTER as _FIFTHS_TO_LETTER,
    HEADER_FIELD_LINE as _HEADER_FIELD_LINE,
    LETTER_INDEX as _LETTER_INDEX,
    LETTERS as _LETTERS,
    MODE_OFFSET as _MODE_OFFSET,
    NATURAL as _NATURAL,
    KeySpec,
    field_of,
    header_fields,
    key_alterations as _key_alterations,
    key_name,
    line_fields,
    normalise_key,
    parse_key,
    parse_meter,
    parse_tempo,
    parse_unit,
    respell_lengths,
    unit_length,
)

HEADER_MODES = ("musical", "all")
ANNOTATION_MODES = ("keep", "drop")
# how `normalise_abc` writes lengths below the unit: "keep" as written, or one of abcsyntax.LENGTH_STYLES
LENGTH_MODES = ("keep", "short", "explicit")

# Fields kept by header_mode="musical": X T M L K Q R P V as musicians expect, plus U: (user symbols) and
# m: (macros), because they change what the body's symbols mean.
MUSICAL_FIELDS = frozenset("XTMLKQRPVUm")
# The words representation also leaves out X (an index) and T (a title): they name a tune, not its music.
WORD_SKIP_FIELDS = frozenset("XT")

_SPACES = re.compile(r"[ \t]+")


# --------------------------------------------------------------------------------------------- normalisation
# A quoted string that is a chord symbol ("Am7", "D/F#", "Bbmaj7", "G(add9)"); any other quoted string is an
# annotation (fingering "4", "^Segno", "_mf", "tr"...).
_CHORD_SYMBOL = re.compile(r'^[A-G][#b]?(?:m|min|maj|dim|aug|sus|\+|o|M)?[0-9]*(?:\([^)]*\))?(?:/[A-G][#b]?)?$')
_QUOTED = re.compile(r'"([^"]*)"')
_LONG_DECORATION = re.compile(r"![^!\n]*!|\+[^+\n]*\+")
_INLINE_FIELD = re.compile(r"\[[A-Za-z]:[^\]]*\]")
# one-character decorations: . ~ and the letters ABC 2.1 reserves for (predefined or user-defined, U:) decoration
# symbols, H-W and h-w; none of them is a note, a rest or a spacer (y is removed as a spacer anyway)
_SHORT_DECORATIONS = re.compile(r"[.~H-Wh-w]")
_SPACERS = re.compile(r"[`y]")  # backquotes (beaming-preserving spaces) and y spacers: layout, no time, no sound


def _clean_marks(text: str) -> str:
    return _SPACERS.sub("", _SHORT_DECORATIONS.sub("", _LONG_DECORATION.sub("", text)))


def drop_annotations(line: str) -> str:
    """A body line without text annotations, fingerings, bowings and decorations; chord symbols stay.

    Drops quoted strings that are not chord symbols, !name! and +name+ decorations, and the one-character
    decorations: . ~ and the letters H-W and h-w that ABC 2.1 keeps for decoration symbols (H L M O P S T u v are
    fermata, accent, mordents, coda, segno, trill and bowings; the others are user-definable with U:, and
    Ryan's Mammoth writes an undefined k before many notes), and the layout characters that carry no music: backquotes (spaces that keep a beam) and y spacers. Inline fields
    such as [K:G] and chord symbols are kept untouched. music21 reads either form; a small model learns the notes
    faster without the transcribers' marks, and does not spend its guesses on one transcriber's layout habits.
    """
    kept: list[str] = []
    pos = 0
    # protect quoted chord symbols and inline fields, clean what lies between them
    pieces = sorted(
        [(m.start(), m.end(), m.group(0), True) for m in _INLINE_FIELD.finditer(line)]
        + [(m.start(), m.end(), m.group(0), bool(_CHORD_SYMBOL.match(m.group(1).strip()))) for m in _QUOTED.finditer(line)]
    )
    for start, end, text, keep in pieces:
        if start < pos:  # a quote inside an inline field, or the reverse: leave it to the outer one
            continue
        kept.append(_clean_marks(line[pos:start]))
        if keep:
            kept.append(text)
        pos = end
    kept.append(_clean_marks(line[pos:]))
    return _SPACES.sub(" ", "".join(kept)).strip()


def normalise_abc(text: str, header_mode: str = "musical", annotations: str = "keep", lengths: str = "keep") -> str:
    """One tune's text with whitespace normalised and, in "musical" mode, only musical fields kept.

    Lines are stripped, runs of spaces/tabs become one space, blank lines go (a blank line ends a tune in ABC),
    and a field's value loses the spaces after its colon ("M: 6/8" -> "M:6/8"). `annotations="drop"` also removes
    annotations and decorations from body lines (see `drop_annotations`) and joins a music line ending in a
    continuation backslash to the next music line (one space between; layout only, the music is the same). In
    "musical" mode comment lines, stylesheet directives (%%...), trailing % comments and non-musical fields (N: B:
    Z: S: O: H: D: F: G: A: C: W: w: I: ...) are dropped, in the header and in the body alike; "all" keeps every
    line. `lengths="short"` (or "explicit") writes every length below the unit one way, "A/" "A//" "A3/" (or
    "A/2" "A/4" "A3/2"), the same lengths (`abcsyntax.respell_lengths`). The result ends with one newline (or is
    empty).
    """
    if lengths not in LENGTH_MODES:
        raise ValueError(f"lengths must be one of {LENGTH_MODES}, not {lengths!r}")
    if header_mode not in HEADER_MODES:
        raise ValueError(f"header_mode must be one of {HEADER_MODES}, not {header_mode!r}")
    if annotations not in ANNOTATION_MODES:
        raise ValueError(f"annotations must be one of {ANNOTATION_MODES}, not {annotations!r}")
    musical = header_mode == "musical"
    drop = annotations == "drop"
    out: list[str] = []
    keep_continuation = True
    in_header = True
    joining = False  # the last music line ended with a continuation backslash (annotations="drop")
    for raw in text.splitlines():
        line = raw.strip()
        if not line:
            continue
        if line.startswith("%"):
            if musical:
                continue
            out.append(_SPACES.sub(" ", line))
            joining = False
            continue
        if musical and "%" in line:
            line = _COMMENT.sub("", line).rstrip()
            if not line:
                continue
        field = field_of(line, in_header)
        if in_header and (field is None or field == "K"):
            in_header = False
        if field is not None:
            if field == "+":
                keep = keep_continuation
            else:
                keep = not musical or field in MUSICAL_FIELDS
                keep_continuation = keep
            if keep:
                out.append(field + ":" + _SPACES.sub(" ", line[2:].strip()))
                joining = False
            continue
        if drop and not in_header:
            line = drop_annotations(line)
            continued = line.endswith("\\")
            if continued:  # a line continuation: the next music line joins this one
                line = line[:-1].rstrip()
            if line:
                if joining:
                    out[-1] += " " + line
                else:
                    out.append(line)
            joining = continued and bool(out) and (joining or bool(line))
            continue
        out.append(_SPACES.sub(" ", line))
    if not out:
        return ""
    text = "\n".join(out) + "\n"
    return text if lengths == "keep" else respell_lengths(text, lengths)


# --------------------------------------------------------------------------------------------- keys
def _natabs(n: int) -> int:
    """Semitones above middle C of the natural note on diatonic step n (0 = C4, 7 = C5, -1 = B3)."""
    return 12 * (n // 7) + _NATURAL[n % 7]


# --------------------------------------------------------------------------------------------- header facts
def header_facts(text: str) -> dict:
    """Title, key, metre and tempo from an ABC header (first occurrence of each; body fields ignored).

    Returns {"title": str|None, "key": str|None ("G", "Em", "Ador"), "time_signature": (num, den)|None (no metre:
    see fractalmusic.abcsyntax), "qpm": float|None, "unit": (num, den)|None}.
    """
    fields = header_fields(text)
    unit = parse_unit(fields.get("L"))
    return {
        "title": fields.get("T") or None,
        "key": key_name(fields["K"]) if "K" in fields else None,
        "time_signature": parse_meter(fields.get("M")),
        "qpm": parse_tempo(fields["Q"], unit_length(fields)) if fields.get("Q") else None,
        "unit": (unit.numerator, unit.denominator) if unit is not None else None,
    }


# --------------------------------------------------------------------------------------------- transposition
class _CannotTranspose(Exception):
    pass


_ACC_TEXT = {-2: "__", -1: "_", 0: "=", 1: "^", 2: "^^"}
_ACC_VALUE = {"": None, "__": -2, "_": -1, "=": 0, "^": 1, "^^": 2}
_TRANSPOSE_TOKENS = re.compile(
    r"""(?P<q>"[^"\n]*"?)                      # chord symbol or annotation
      |(?P<dec>![^!\s]*!|\+[^+\s]*\+)           # !decoration! / +decoration+
      |(?P<field>\[[A-Za-z]:[^\]\n]*\])         # inline field [K:..] [M:..]
      |(?P<com>(?<!\\)%.*)                      # comment to the end of the line
      |(?P<acc>\^\^|\^|__|_|=)?(?P<let>[A-Ga-g])(?P<oct>[,']*)""",
    re.X,
)
_CHORD_SYMBOL = re.compile(
    r"([A-G])([#b]{0,2})((?:maj|min|dim|aug|sus|add|m|M|[0-9]|[#b+o\u00b0\u00f8()\-])*)(?:/([A-G])([#b]{0,2}))?$"
)


class _KeyShift:
    """What a transposition does inside one key: the new key, the generic step and a memo of rewritten notes."""

    __slots__ = ("spec", "new_spec", "steps", "semitones", "old_alt", "new_alt", "memo")

    def __init__(self, spec: KeySpec, semitones: int):
        old_sig = spec.sharps
        if abs(old_sig) > 7:
            raise _CannotTranspose
        target = (old_sig + 7 * semitones) % 12
        if target == 6:
            new_sig = 6 if semitones > 0 else -6  # F#/Gb-like tie: sharps going up, flats going down
        else:
            new_sig = target if target < 6 else target - 12
        tonic = new_sig - _MODE_OFFSET[spec.mode]
        fifth = (tonic + 1) % 7 - 1
        new_letter = _FIFTHS_TO_LETTER[fifth]
        new_acc = (tonic - fifth) // 7
        # generic steps d: the diatonic interval from the old to the new tonic that spans exactly `semitones`
        base = _natabs(spec.letter) + spec.accidental
        guess = round(semitones * 7 / 12)
        steps = None
        for d in range(guess - 3, guess + 4):
            if (spec.letter + d) % 7 == new_letter and _natabs(spec.letter + d) + new_acc - base == semitones:
                steps = d
                break
        if steps is None:  # cannot happen for consistent tables; refuse rather than guess
            raise _CannotTranspose
        self.spec = spec
        self.new_spec = KeySpec(new_letter, new_acc, spec.mode, 0, 0)
        self.steps = steps
        self.semitones = semitones
        self.old_alt = _key_alterations(old_sig)
        self.new_alt = _key_alterations(new_sig)
        self.memo: dict[str, str] = {}

    def note(self, acc: str | None, letter: str, octave: str) -> str:
        lower = letter.islower()
        n = _LETTER_INDEX[letter.upper()] + (7 if lower else 0) + 7 * (octave.count("'") - octave.count(","))
        m = n + self.steps
        li, octv = m % 7, m // 7
        name = _LETTERS[li]
        if octv >= 1:
            text = name.lower() + "'" * (octv - 1)
        else:
            text = name + "," * (-octv)
        if acc:
            new = self.new_alt[li] + (_ACC_VALUE[acc] - self.old_alt[n % 7])
            if not -2 <= new <= 2:
                raise _CannotTranspose
            text = _ACC_TEXT[new] + text
        return text

    def pitch_name(self, letter: str, accidental: str) -> str:
        """A chord-symbol root or bass ("F#", "Bb") moved by the same generic step."""
        li = _LETTER_INDEX[letter]
        acc = accidental.count("#") - accidental.count("b")
        m = li + self.steps
        new = acc + self.semitones - (_natabs(m) - _natabs(li))
        if not -2 <= new <= 2:
            raise _CannotTranspose
        return _LETTERS[m % 7] + ("#" * new if new > 0 else "b" * -new)


def _transpose_key_value(value: str, semitones: int) -> tuple[str, _KeyShift]:
    spec = parse_key(value)
    if spec is None:
        raise _CannotTranspose
    shift = _KeyShift(spec, semitones)
    return value[: spec.start] + shift.new_spec.tonic_name + value[spec.end :], shift


def _transpose_chord_symbol(inner: str, shift: _KeyShift) -> str:
    m = _CHORD_SYMBOL.match(inner)
    if not m:
        return inner
    out = shift.pitch_name(m.group(1), m.group(2)) + m.group(3)
    if m.group(4):
        out += "/" + shift.pitch_name(m.group(4), m.group(5))
    return out


def transpose_abc(text: str, semitones: int) -> str | None:
    """Transpose one ABC tune by `semitones`, keeping correct spelling; None when it cannot be done honestly.

    Key-aware text transposition. Every K: (header, body line, inline [K:..]) is read as tonic + mode; the new
    tonic is spelt with the smaller key signature (at most 6 sharps or flats; a 6/6 tie takes sharps going up and
    flats going down). Every note letter moves by the generic step between the old and the new tonic (case and
    octave marks , ' rewritten), so notes without accidentals keep their scale degree and sound `semitones`
    higher. An explicit accidental keeps its alteration relative to the key: new = new key's alteration of the
    new letter + (old accidental - old key's alteration of the old letter), written even when it becomes a
    natural; accidentals carried through a bar therefore stay right. Chord symbols ("Am7", "D/F#") move too;
    annotations ("^text"), decorations, comments and other fields are left alone.

    None for: no K: field, K:none or bagpipe keys, unknown modes, explicit key accidentals, or a note or chord
    symbol that would need more than a double sharp/flat. `semitones == 0` returns the text unchanged.

    folk-rnn's v2/v3 data sets normalise keys once, before training: every tune is moved to a C tonic
    (K:Cmaj, K:Cdor, ...) so the model never sees other tonics. This function instead moves a tune to any tonic,
    so that a corpus keeps its real keys and training crops can be pitch-shifted (augmentation) the way a grid's
    rows are shifted, with spelling a musician would write.
    """
    semitones = int(semitones)
    if semitones == 0:
        return text
    lines = text.split("\n")
    out: list[str] = []
    shift: _KeyShift | None = None
    state: list[_KeyShift | None] = [None]

    def repl(m: re.Match) -> str:
        group = m.lastgroup
        if group == "oct":  # a note: its last group, octave marks, always takes part (perhaps empty)
            cur = state[0]
            whole = m.group(0)
            memo = cur.memo
            got = memo.get(whole)
            if got is None:
                got = cur.note(m.group("acc"), m.group("let"), m.group("oct"))
                memo[whole] = got
            return got
        if group == "q":
            token = m.group(0)
            if len(token) >= 2 and token.endswith('"'):
                inner = token[1:-1]
                if inner and inner[0] in "ABCDEFG":
                    return '"' + _transpose_chord_symbol(inner, state[0]) + '"'
            return token
        if group == "field":
            token = m.group(0)
            if token[1] == "K":
                new_value, state[0] = _transpose_key_value(token[3:-1], semitones)
                return "[K:" + new_value + "]"
            return token
        return m.group(0)

    try:
        for line in lines:
            stripped = line.lstrip()
            field = field_of(stripped, in_header=state[0] is None)
            if field is not None or stripped.startswith("%"):
                if field == "K":
                    lead = line[: len(line) - len(stripped)]
                    new_value, shift = _transpose_key_value(stripped[2:], semitones)
                    state[0] = shift
                    out.append(lead + "K:" + new_value)
                else:
                    out.append(line)
                continue
            if state[0] is None:  # header lines before K:, or music with no key: leave header, refuse music
                if stripped and not stripped.startswith("%"):
                    raise _CannotTranspose
                out.append(line)
                continue
            out.append(_TRANSPOSE_TOKENS.sub(repl, line))
    except _CannotTranspose:
        return None
    if shift is None:
        return None
    return "\n".join(out)


# --------------------------------------------------------------------------------------------- words
# One musical word per match. Group names say what it is; "skip" is layout (spaces, beaming, line continuation).
_WORD_TOKENS = re.compile(
    r"""(?P<q>"[^"\n]*"?)
      |(?P<dec>![^!\s]*!|\+[A-Za-z][^+\s]*\+)
      |(?P<field>\[[A-Za-z]:[^\]\n]*\])
      |(?P<bar>\[\|\]?|:*\|+\]?:*(?:\d+(?:[,-]\d+)*)?|::+|\[\d+(?:[,-]\d+)*)
      |(?P<note>(?:\^\^|\^|__|_|=)?[A-Ga-g][,']*[\d/]*|[zx][\d/]*|[ZX]\d*)
      |(?P<chord_close>\][\d/]*)
      |(?P<tuplet>\(\d+(?::\d*){0,2})
      |(?P<grace>\{/?)
      |(?P<skip>[\s`\\$y]+|%.*)
      |(?P<other>.)""",
    re.X,
)
_BAR_WORD = re.compile(r"^(?:\[\|\]?|:*\|+\]?:*(?:\d+(?:[,-]\d+)*)?|::+)$")
_NO_SPACE_FIELDS = frozenset("MLQ")


def _field_word(field: str, value: str) -> str:
    value = value.strip()
    if field == "K":
        return "K:" + normalise_key(value)
    if field in _NO_SPACE_FIELDS:
        return field + ":" + value.replace(" ", "")
    return field + ":" + value


def _inline_field_word(token: str) -> str:
    return "[" + _field_word(token[1], token[3:-1]) + "]"


def abc_words(text: str, header_mode: str = "musical") -> list[str]:
    """Musical words of one tune, folk-rnn style.

    Header fields become words ("M:6/8", "L:1/8", "K:Gmin" with the key normalised); X: and T: are left out
    (they name a tune, they are not its music), and in "musical" mode so are non-musical fields and comments
    ("all" keeps them, one word per line). In the body each note with its accidental, octave and duration is one
    word ("^c'2", "A/2", "z3"), as is each bar line or repeat ("|", "||", "|:", ":|", "::", "|1", ":|2", "[1",
    "|]"), tuplet ("(3"), broken rhythm (">", "<"), chord bracket ("[", "]2"), grace brace ("{", "}"), tie ("-"),
    slur ("(", ")"), decoration ("~", ".", "T", "!trill!"), chord symbol or annotation ('"Am"') and inline field
    ("[K:Dmix]"). Spaces (beaming), backticks, "y" spacers and line continuations are dropped.
    """
    words: list[str] = []
    lines = normalise_abc(text, header_mode).splitlines()
    for line, field in zip(lines, line_fields(lines)):
        if line.startswith("%"):
            words.append(line)
            continue
        if field is not None:
            if field in WORD_SKIP_FIELDS or field == "+":
                continue
            words.append(_field_word(field, line[2:]))
            continue
        for m in _WORD_TOKENS.finditer(line):
            kind = m.lastgroup
            if kind == "skip":
                continue
            token = m.group(0)
            if kind == "field":
                token = _inline_field_word(token)
            words.append(token)
    return words


def is_line_word(word: str) -> bool:
    """A word that stands on its own line in ABC text: a field ("K:G") or a comment ("% ...")."""
    return word.startswith("%") or field_of(word, in_header=True) is not None


def is_bar_word(word: str) -> bool:
    return bool(_BAR_WORD.match(word))


def words_to_abc(words: Iterable[str], bars_per_line: int = 4) -> tuple[str, dict[str, int]]:
    """ABC text from musical words, with the repairs it needed.

    Header: "X:1" (unless an X: word is present), then field words up to the first K: word; "K:C" is added if
    music starts before any key ("missing_key"). Body: words are joined, bar lines set off by spaces, a line break
    after every `bars_per_line` bars; field words in the body take a line of their own. An unclosed chord or grace
    group is closed before a bar line, a field or the end ("unclosed_group"); a stray "]" or "}" is dropped
    ("stray_close").
    """
    repairs: dict[str, int] = {}

    def count(name: str) -> None:
        repairs[name] = repairs.get(name, 0) + 1

    words = list(words)
    header: list[str] = []
    body_lines: list[str] = []
    cur: list[str] = []
    in_header = True
    open_group: str | None = None  # "[" or "{" while a chord or grace group is open
    bars = 0

    def close_group() -> None:
        nonlocal open_group
        if open_group is not None:
            cur.append("]" if open_group == "[" else "}")
            open_group = None
            count("unclosed_group")

    def flush() -> None:
        text = "".join(cur).strip()
        if text:
            body_lines.append(text)
        cur.clear()

    for w in words:
        if not w:
            continue
        if in_header:
            if is_line_word(w):
                header.append(w)
                if w.startswith("K:"):
                    in_header = False
                continue
            header.append("K:C")
            count("missing_key")
            in_header = False
        if is_line_word(w):
            close_group()
            flush()
            body_lines.append(w)
            continue
        if is_bar_word(w):
            close_group()
            cur.append(" " + w + " ")
            bars += 1
            if bars_per_line > 0 and bars % bars_per_line == 0:
                flush()
            continue
        if w == "[" or w == "{" or w == "{/":
            if open_group is not None:
                close_group()
            open_group = "[" if w == "[" else "{"
            cur.append(w)
            continue
        if w[0] == "]" or w == "}":
            want = "[" if w[0] == "]" else "{"
            if open_group != want:
                count("stray_close")
                continue
            open_group = None
            cur.append(w)
            continue
        cur.append(w)
    close_group()
    flush()
    if in_header and not any(h.startswith("K:") for h in header):
        header.append("K:C")
        count("missing_key")
    if not any(h.startswith("X:") for h in header):
        header.insert(0, "X:1")
    return "\n".join(header + body_lines) + "\n", repairs
