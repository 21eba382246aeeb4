"""ABC text: tune books, header facts, and an honest ABC writer.

Reading keeps each tune's text exactly as written (`Piece.abc`), so the ABC representation never loses what it was
given; header facts (title, key, meter, tempo) come from the text itself, fast and without music21. Notes come from
music21's ABC parser only when asked for (`notes=True`, or later through `fractalmusic.io.ensure_notes`).

Writing: a piece that came from ABC is written back as its original text. Any other piece is written as its TOP
VOICE ONLY (the highest note struck at each onset, held until the next one), quantised to a sixteenth-note grid,
with bars from its time signatures, notes that cross a bar line split and tied with '-', rests as 'z', and K: from
the piece's key when that is a plain major or minor key (otherwise K:C with explicit accidentals).
"""
from __future__ import annotations

import heapq
import re
from fractions import Fraction
from pathlib import Path

import numpy as np

from fractalmusic import abcsyntax
from fractalmusic.files import read_file_bytes
from fractalmusic.errors import PieceReadError
from fractalmusic.io.midi import key_signature, plain_key
from fractalmusic.limits import MAX_ABC_LINE_CHARS, MAX_ABC_TUNE_CHARS, MAX_TITLE_CHARS, MAX_TUNES_PER_BOOK
from fractalmusic.piece import DEFAULT_QPM, NOTE_DTYPE, Piece

_X_LINE = re.compile(r"^X:")


# ---------------------------------------------------------------------------------------------------- text


def read_text(path) -> str:
    """A text file as str: UTF-8, falling back to Latin-1 (old tune books). PieceReadError if unreadable."""
    path = Path(path)
    data = read_file_bytes(path, "file")
    if b"\x00" in data[:4096]:
        raise PieceReadError(path, "binary data, not ABC text")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        return data.decode("latin-1")


def _split(text: str) -> tuple[list[str], list[str]]:
    """(file-header lines before the first X:, tune texts)."""
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    starts = [i for i, line in enumerate(lines) if _X_LINE.match(line)]
    if not starts:
        body = "\n".join(lines).strip()
        return [], ([body + "\n"] if body else [])
    tunes = []
    for k, start in enumerate(starts):
        stop = starts[k + 1] if k + 1 < len(starts) else len(lines)
        chunk = lines[start:stop]
        while chunk and not chunk[-1].strip():  # blank lines separate tunes; they belong to none
            chunk.pop()
        tunes.append("\n".join(chunk) + "\n")
    return lines[: starts[0]], tunes


def split_abc_book(text: str) -> list[str]:
    """Tune texts of an ABC file, split at X: lines (each from its X: line up to the next, trailing blank lines
    dropped, newline-terminated). A text with no X: line at all is one tune."""
    return _split(text)[1]


def parse_abc_header(tune_text: str) -> dict[str, str]:
    """Header fields of one tune: field letter -> value of its first occurrence, read up to the K: line.

    e.g. {"X": "626", "T": "Lamentation of Owen Roe O'Neill, The", "M": "3/4", "L": "1/8", "K": "Gm"}.
    (`fractalmusic.abcsyntax.header_fields`.)
    """
    return abcsyntax.header_fields(tune_text)


def _file_fields(header_lines: list[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for line in header_lines:
        line = line.strip()
        letter = abcsyntax.field_of(line, in_header=True)
        if letter is not None and letter != "+":
            out.setdefault(letter, abcsyntax.strip_comment(line[2:]))
    return out


def abc_meter(value: str | None) -> tuple[int, int]:
    """M: field -> (numerator, denominator) of a Piece's time signature. 'C' is 4/4, 'C|' is 2/2; no metre ('none',
    empty or unreadable, see `fractalmusic.abcsyntax`) records the default 4/4."""
    return abcsyntax.parse_meter(value) or abcsyntax.DEFAULT_SIGNATURE


def abc_unit(header: dict[str, str]) -> Fraction:
    """L: as a fraction of a whole note; ABC's default is 1/16 for meters below 3/4, else 1/8."""
    return abcsyntax.unit_length(header)


def abc_tempo(header: dict[str, str]) -> float | None:
    """Q: field -> quarter notes per minute ('Q:1/4=120', 'Q:3/8=60', old-style 'Q:120' in L units)."""
    return abcsyntax.parse_tempo(header.get("Q"), abc_unit(header)) if header.get("Q") else None


def abc_key_name(value: str | None) -> str | None:
    """K: field -> compact key name: 'Gm', 'D', 'Ador', 'Dmix' ('D mix' joined; clef and other words dropped)."""
    return abcsyntax.key_name(value)


# ---------------------------------------------------------------------------------------------------- reading


def tune_to_piece(tune_text: str, source: str | None = None, file_fields: dict[str, str] | None = None) -> Piece:
    """A Piece with the tune's text and header facts, no notes (music21 is not touched)."""
    header = dict(file_fields or {})
    header.update(parse_abc_header(tune_text))
    num, den = abc_meter(header.get("M"))
    qpm = abc_tempo(header)
    meta: dict = {"abc_header": header}
    if file_fields:
        meta["abc_file_fields"] = dict(file_fields)
    return Piece(
        tempos=[(0.0, qpm or DEFAULT_QPM)],
        time_signatures=[(0.0, num, den)],
        key=abc_key_name(header.get("K")),
        title=header.get("T") or None,
        abc=tune_text,
        source=source,
        meta=meta,
    )


def abc_parse_text(piece: Piece) -> str:
    """The text to hand music21: the tune, with fields inherited from its file header inserted after X:."""
    text = piece.abc or ""
    inherited = piece.meta.get("abc_file_fields") or {}
    own = parse_abc_header(text)
    extra = [f"{k}:{v}" for k, v in inherited.items() if k not in own and k in "LMQKR"]
    if not extra:
        return text
    lines = text.split("\n")
    at = 1 if lines and _X_LINE.match(lines[0]) else 0
    return "\n".join(lines[:at] + extra + lines[at:])


def tune_problem(tune_text: str) -> str | None:
    """Why one tune's text is over the reading limits (a title, a line or the whole tune too long), else None.

    Checked before any header regex or music21 sees the text: music21's ABC parser slows down quadratically
    with the tune's length (see `fractalmusic.limits`)."""
    if len(tune_text) <= MAX_TITLE_CHARS:
        return None
    for k, line in enumerate(tune_text.split("\n"), 1):
        if len(line) > MAX_TITLE_CHARS and line.lstrip().startswith("T:"):
            return f"title is {len(line):,} characters long (limit {MAX_TITLE_CHARS:,})"
        if len(line) > MAX_ABC_LINE_CHARS:
            return f"line {k} is {len(line):,} characters long (limit {MAX_ABC_LINE_CHARS:,})"
    if len(tune_text) > MAX_ABC_TUNE_CHARS:
        return f"tune is {len(tune_text):,} characters long (limit {MAX_ABC_TUNE_CHARS:,} for one tune)"
    return None


def read_abc(path, notes: bool = True, errors: list | None = None) -> list[Piece]:
    """Every tune of an ABC file (one tune or a whole book) as a Piece, source `"{path}#X{number}"`.

    notes=False keeps only text and header facts (fast). With notes=True each tune is parsed by music21; a tune
    that fails is left out and, if `errors` is a list, `(source, reason)` is appended to it. A file that yields no
    tune raises PieceReadError. Bounded: tunes over the limits of `tune_problem` are left out the same way, and
    only the first `limits.MAX_TUNES_PER_BOOK` tunes of a book are read (the rest count as one left-out entry).
    """
    path = Path(path)
    text = read_text(path)
    header_lines, tunes = _split(text)
    if not tunes:
        raise PieceReadError(path, "no ABC tunes found")
    for k, line in enumerate(header_lines, 1):
        if len(line) > MAX_ABC_LINE_CHARS:
            raise PieceReadError(path, f"line {k} is {len(line):,} characters long (limit {MAX_ABC_LINE_CHARS:,})")
    file_fields = _file_fields(header_lines)
    pieces: list[Piece] = []
    failures: list[tuple[str, str]] = []
    if len(tunes) > MAX_TUNES_PER_BOOK:
        extra = len(tunes) - MAX_TUNES_PER_BOOK
        why = f"over the limit of {MAX_TUNES_PER_BOOK:,} tunes per book ({extra:,} not read)"
        failures.append((f"{path}#X...", why))
        tunes = tunes[:MAX_TUNES_PER_BOOK]
    for i, tune in enumerate(tunes):
        why = tune_problem(tune)
        if why:
            first = tune[:40].split("\n", 1)[0]
            number = first[2:].strip() if _X_LINE.match(first) and first[2:].strip() else str(i + 1)
            failures.append((f"{path}#X{number}", why))
            continue
        number = parse_abc_header(tune).get("X") or str(i + 1)
        piece = tune_to_piece(tune, source=f"{path}#X{number}", file_fields=file_fields)
        if notes:
            from fractalmusic.io.music21_io import add_abc_notes

            try:
                piece = add_abc_notes(piece)
            except PieceReadError as exc:
                failures.append((piece.source, exc.reason))
                continue
        pieces.append(piece)
    if errors is not None:
        errors.extend(failures)
    if not pieces:
        if len(failures) == 1:
            raise PieceReadError(path, failures[0][1])
        first = failures[0]
        raise PieceReadError(path, f"none of {len(failures)} tunes could be read ({first[0]}: {first[1]})")
    return pieces


# ---------------------------------------------------------------------------------------------------- writing


def top_voice(piece: Piece, steps_per_beat: int = 4) -> np.ndarray:
    """The skyline melody on a grid of 1/steps_per_beat beats: at each onset, the highest note struck there unless
    a higher note is still sounding; each melody note lasts until its own end or the next melody onset.
    Drums are ignored. Returns a NOTE_DTYPE array with onsets and durations in beats, on the grid."""
    n = piece.notes[~piece.notes["is_drum"]]
    if not len(n):
        return np.zeros(0, dtype=NOTE_DTYPE)
    on = np.round(n["onset"] * steps_per_beat).astype(np.int64)
    off = np.maximum(np.round((n["onset"] + n["duration"]) * steps_per_beat).astype(np.int64), on + 1)
    order = np.lexsort((-n["pitch"].astype(np.int64), on))
    held: list[tuple[int, int]] = []  # heap of (-pitch, off) for notes struck earlier
    melody: list[list[int]] = []  # [on, off, pitch, velocity]
    i = 0
    while i < len(order):
        t = on[order[i]]
        j = i
        while j < len(order) and on[order[j]] == t:
            j += 1
        while held and held[0][1] <= t:
            heapq.heappop(held)
        best = order[i]  # highest pitch struck at t
        pitch = int(n["pitch"][best])
        if not held or pitch >= -held[0][0]:
            if melody and melody[-1][1] > t:
                melody[-1][1] = t
            melody.append([int(t), int(off[best]), pitch, int(n["velocity"][best])])
        for k in order[i:j]:
            heapq.heappush(held, (-int(n["pitch"][k]), int(off[k])))
        i = j
    out = np.zeros(len(melody), dtype=NOTE_DTYPE)
    if melody:
        m = np.array(melody, dtype=np.int64)
        out["onset"] = m[:, 0] / steps_per_beat
        out["duration"] = (m[:, 1] - m[:, 0]) / steps_per_beat
        out["pitch"] = m[:, 2]
        out["velocity"] = m[:, 3]
    return out


_NATURAL_PC = dict(zip(abcsyntax.LETTERS, abcsyntax.NATURAL))
_LETTER_FIFTHS = abcsyntax.FIFTHS


def _key_alters(fifths: int) -> dict[str, int]:
    return dict(zip(abcsyntax.LETTERS, abcsyntax.key_alterations(fifths)))


def _spell(pitch: int, fifths: int, minor: bool) -> tuple[str, int, int]:
    """(letter, alter, octave) for a MIDI pitch: the spelling closest to the key on the line of fifths."""
    pc = pitch % 12
    center = fifths + 2 + (3 if minor else 0)  # minor keys lean sharp-ward: raised 6th and 7th degrees
    best = None
    for letter, nat in _NATURAL_PC.items():
        for alter in (1, 0, -1):
            if (nat + alter) % 12 != pc:
                continue
            dist = abs(_LETTER_FIFTHS[letter] + 7 * alter - center)
            cand = (dist, -alter, letter)
            if best is None or cand < best:
                best = cand
    _, neg_alter, letter = best
    alter = -neg_alter
    octave = (pitch - alter - _NATURAL_PC[letter]) // 12 - 1
    return letter, alter, octave


def _abc_length(steps: int) -> str:
    """A length in sixteenths as an ABC length suffix with L:1/8."""
    if steps % 2 == 0:
        eighths = steps // 2
        return "" if eighths == 1 else str(eighths)
    return "/2" if steps == 1 else f"{steps}/2"


def _abc_pitch(letter: str, octave: int) -> str:
    if octave >= 5:
        return letter.lower() + "'" * (octave - 5)
    return letter + "," * (4 - octave)


def piece_to_abc(piece: Piece, number: int = 1) -> str:
    """ABC text for a piece: its original text if it has one, else its top voice (see the module docstring)."""
    if piece.abc:
        return piece.abc if piece.abc.endswith("\n") else piece.abc + "\n"
    spb = 4
    melody = top_voice(piece, spb)
    key = plain_key(piece.key)
    sig = key_signature(key) if key else None
    fifths, minor = sig if sig else (0, False)
    alters = _key_alters(fifths)

    on = np.round(melody["onset"] * spb).astype(np.int64)
    off = on + np.round(melody["duration"] * spb).astype(np.int64)
    end = int(off.max()) if len(melody) else 0

    # bars: (start step, length in steps, (num, den) if the meter changes here)
    sigs = sorted(piece.time_signatures)
    bars: list[tuple[int, int, tuple[int, int] | None]] = []
    for k, (beat, num, den) in enumerate(sigs):
        start = 0 if k == 0 else int(round(beat * spb))
        stop = int(round(sigs[k + 1][0] * spb)) if k + 1 < len(sigs) else None
        length = max(int(round(num * 4 * spb / den)), 1)
        if bars and start < bars[-1][0] + bars[-1][1]:
            continue  # a meter change inside the previous bar (off the sixteenth grid): ignore it
        if bars and start >= end:
            break
        pos = start
        while (stop is None or pos < stop) and (pos < end or not bars):
            this = length if stop is None else min(length, stop - pos)
            bars.append((pos, this, (num, den) if pos == start else None))
            pos += this
    if not bars:
        num, den = sigs[0][1], sigs[0][2]
        bars.append((0, max(int(round(num * 4 * spb / den)), 1), (num, den)))

    # segments per bar: (start, stop, pitch | None, tied to the next)
    events: list[tuple[int, int, int | None]] = []
    cursor = bars[0][0]
    for a, b, p in zip(on, off, melody["pitch"]):
        if a > cursor:
            events.append((cursor, int(a), None))
        events.append((int(a), int(b), int(p)))
        cursor = int(b)
    bar_end = bars[-1][0] + bars[-1][1]
    if cursor < bar_end:
        events.append((cursor, bar_end, None))

    title = piece.title or (Path(piece.source.split("#")[0]).stem if piece.source else "Untitled")
    first_num, first_den = bars[0][2] or (4, 4)
    qpm = sorted(piece.tempos)[0][1]
    head = [
        f"X:{number}",
        f"T:{' '.join(str(title).split())}",
        f"M:{first_num}/{first_den}",
        "L:1/8",
        f"Q:1/4={int(round(qpm))}",
        f"K:{key or 'C'}",
    ]
    bar_texts: list[str] = []
    ev = 0
    for bi, (bstart, blen, meter) in enumerate(bars):
        bstop = bstart + blen
        parts: list[str] = []
        if meter is not None and bi > 0:
            parts.append(f"[M:{meter[0]}/{meter[1]}]")
        altered: set[str] = set()
        while ev < len(events) and events[ev][0] < bstop:
            a, b, p = events[ev]
            seg_a, seg_b = max(a, bstart), min(b, bstop)
            if seg_b > seg_a:
                if p is None:
                    parts.append("z" + _abc_length(seg_b - seg_a))
                else:
                    letter, alter, octave = _spell(p, fifths, minor)
                    acc = ""
                    if alter != alters[letter] or letter in altered:
                        acc = {1: "^", -1: "_", 0: "="}[alter]
                        altered.add(letter)
                    tie = "-" if b > bstop else ""
                    parts.append(acc + _abc_pitch(letter, octave) + _abc_length(seg_b - seg_a) + tie)
            if b > bstop:
                break  # continues in the next bar
            ev += 1
        bar_texts.append(" ".join(parts))
    lines = []
    for k in range(0, len(bar_texts), 4):
        chunk = bar_texts[k : k + 4]
        last = k + 4 >= len(bar_texts)
        lines.append(" | ".join(chunk) + (" |]" if last else " |"))
    return "\n".join(head + lines) + "\n"


def write_abc(piece: Piece, path) -> Path:
    """Write a piece as ABC: an ABC-born piece as its original text, any other as its top voice only."""
    path = Path(path)
    path.write_text(piece_to_abc(piece), encoding="utf-8")
    return path
