"""music21 streams <-> `Piece`: MusicXML (.xml .mxl .musicxml), Humdrum kern (.krn), and ABC notes.

Reading takes every part's notes after merging ties (stripTies), expands chords, skips grace notes, and keeps
offsets and durations in quarter lengths (= beats). A pickup (anacrusis) bar becomes a short first time signature,
e.g. [(0, 1, 4), (1, 4, 4)], so that bar lines computed from the time-signature map fall where the score has them;
its length is also kept in `piece.meta["pickup_beats"]`.
"""
from __future__ import annotations

import contextlib
import io
import threading
import warnings
from fractions import Fraction
from pathlib import Path

import numpy as np

from fractalmusic.errors import FractalMusicError, PieceReadError
from fractalmusic.io.midi import MAJOR_BY_FIFTHS, key_signature, plain_key
from fractalmusic.piece import DEFAULT_QPM, NOTE_DTYPE, Piece

MUSIC21_SUFFIXES = (".xml", ".mxl", ".musicxml", ".krn")
EXPORT_GRID = 24  # positions per beat when writing MusicXML: sixteenths, triplets and 32nds all land on it


@contextlib.contextmanager
def _quiet(sink: list[str] | None = None):
    """Keep music21's chatter (Python warnings, and the WARNING lines it writes to stderr) off the terminal;
    captured stderr lines go to `sink` if given."""
    buf = io.StringIO()
    with warnings.catch_warnings(), contextlib.redirect_stderr(buf):
        warnings.simplefilter("ignore")
        try:
            yield
        finally:
            if sink is not None:
                sink.extend(line.strip() for line in buf.getvalue().splitlines() if line.strip())


_BEAMS_LOCK = threading.Lock()


def _skip_beams(self, *args, inPlace=False, **kwargs):
    return None if inPlace else self


@contextlib.contextmanager
def _without_beaming():
    """music21's ABC translator beams every part (`makeBeams`): about three quarters of its parse time, and
    notation we never use. Parts skip it while this is active (restored afterwards, one parse at a time)."""
    from music21 import stream

    with _BEAMS_LOCK:
        had = "makeBeams" in stream.Part.__dict__
        old = stream.Part.__dict__.get("makeBeams")
        stream.Part.makeBeams = _skip_beams
        try:
            yield
        finally:
            if had:
                stream.Part.makeBeams = old
            else:
                del stream.Part.makeBeams


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:200] if text else type(exc).__name__


# ---------------------------------------------------------------------------------------------------- reading


def read_music21(path) -> Piece:
    """Parse a MusicXML / compressed MusicXML / kern file with music21. PieceReadError if it cannot be read."""
    path = Path(path)
    if not path.exists():
        raise PieceReadError(path, "no such file")
    if path.is_dir():
        raise PieceReadError(path, "is a directory, not a score")
    if path.stat().st_size == 0:
        raise PieceReadError(path, "empty file")
    from music21 import converter

    try:
        with _quiet():
            stream = converter.parse(str(path), forceSource=True)
    except Exception as exc:  # music21 raises many kinds for malformed files
        raise PieceReadError(path, f"cannot parse score ({_first_line(exc)})") from None
    try:
        with _quiet():
            piece = _from_stream(stream, source=str(path), strip_in_place=True)
    except Exception as exc:
        raise PieceReadError(path, f"cannot read notes ({_first_line(exc)})") from None
    if not piece.n_notes:
        raise PieceReadError(path, "no notes in score")
    return piece


def _first_score(stream):
    from music21 import stream as m21stream

    if isinstance(stream, m21stream.Opus):
        scores = list(stream.scores)
        if not scores:
            return stream
        return scores[0]
    return stream


def piece_from_music21(stream, source: str | None = None) -> Piece:
    """A music21 Score / Part / Stream (an Opus gives its first score) -> Piece. The stream is not modified."""
    return _from_stream(stream, source=source, strip_in_place=False)


def _from_stream(stream, source: str | None, strip_in_place: bool) -> Piece:
    """`strip_in_place` merges ties inside the given stream (no deep copy): only for streams we parsed."""
    from music21 import instrument, key as m21key, meter, tempo

    score = _first_score(stream)
    parts = list(score.parts) if hasattr(score, "parts") and len(score.parts) else [score]
    rows: list[tuple[float, float, int, int, int, bool]] = []
    for part in parts:
        inst = part.getInstrument(returnDefault=False)
        program = 0
        part_drum = False
        if inst is not None:
            if inst.midiProgram is not None:
                program = int(inst.midiProgram)
            unpitched = isinstance(inst, instrument.Percussion) and not isinstance(inst, instrument.PitchedPercussion)
            part_drum = inst.midiChannel == 9 or unpitched
        if strip_in_place:
            part.stripTies(inPlace=True)
            flat = part.flatten()
        else:
            flat = part.stripTies().flatten()
        for el in flat.notes:
            if el.duration.isGrace:
                continue
            onset = float(el.offset)
            dur = float(el.duration.quarterLength)
            if dur <= 0:
                continue
            vel = el.volume.velocity if el.hasVolumeInformation() else None
            vel = int(vel) if vel else 80
            for midi, unpitched in _members(el):
                if 0 <= midi <= 127:
                    rows.append((onset, dur, int(midi), vel, program, part_drum or unpitched))
    notes = np.zeros(len(rows), dtype=NOTE_DTYPE)
    if rows:
        arr = np.array(rows, dtype=object)
        notes["onset"] = arr[:, 0].astype(np.float64)
        notes["duration"] = arr[:, 1].astype(np.float64)
        notes["pitch"] = arr[:, 2].astype(np.int64)
        notes["velocity"] = np.clip(arr[:, 3].astype(np.int64), 1, 127)
        notes["program"] = arr[:, 4].astype(np.int64)
        notes["is_drum"] = arr[:, 5].astype(bool)
        notes = notes[np.lexsort((notes["pitch"], notes["onset"]))]

    first = parts[0]
    # tempo marks (anywhere in the score), one per offset
    tempos: dict[float, float] = {}
    for mm in score.recurse().getElementsByClass(tempo.MetronomeMark):
        try:
            qpm = mm.getQuarterBPM()
        except Exception:  # a text-only mark music21 cannot turn into a number
            qpm = None
        at = _offset(mm, score)
        if qpm and at is not None:
            tempos.setdefault(at, float(qpm))
    tempo_list = sorted(tempos.items())
    if not tempo_list or tempo_list[0][0] > 0:
        tempo_list.insert(0, (0.0, DEFAULT_QPM))

    sigs: dict[float, tuple[int, int]] = {}
    for ts in first.recurse().getElementsByClass(meter.TimeSignature):
        at = _offset(ts, first)
        if at is not None:
            sigs.setdefault(at, (int(ts.numerator), int(ts.denominator)))
    sig_list = [(b, n, d) for b, (n, d) in sorted(sigs.items())]
    if not sig_list or sig_list[0][0] > 0:
        sig_list.insert(0, (0.0, 4, 4))
    meta: dict = {}
    pickup = _pickup_beats(first, sig_list[0])
    if pickup:
        num, den = _as_meter(pickup, sig_list[0][2])
        rest = [s for s in sig_list if s[0] > 0]
        if not rest or rest[0][0] > pickup:
            rest.insert(0, (pickup, sig_list[0][1], sig_list[0][2]))
        sig_list = [(0.0, num, den)] + rest
        meta["pickup_beats"] = pickup

    key_name = None
    for ks in score.recurse().getElementsByClass(m21key.KeySignature):
        key_name = _key_name(ks)
        break
    title = None
    md = getattr(score, "metadata", None)
    if md is not None:
        title = md.title or None
        movement = md.movementName
        if not title and movement and Path(str(movement)).suffix.lower() not in MUSIC21_SUFFIXES:
            title = str(movement)
    return Piece(
        notes=notes,
        tempos=tempo_list,
        time_signatures=sig_list,
        key=key_name,
        title=title,
        source=source,
        meta=meta,
    )


def _members(el) -> list[tuple[int, bool]]:
    """(MIDI key, unpitched) for a note, an unpitched note, or each member of a (percussion) chord."""
    from music21 import note

    if isinstance(el, note.Unpitched):
        return [(int(el.displayPitch().midi), True)]
    if isinstance(el, note.Note):
        return [(int(el.pitch.midi), False)]
    out = []
    for sub in getattr(el, "notes", ()):
        if isinstance(sub, note.Unpitched):
            out.append((int(sub.displayPitch().midi), True))
        elif isinstance(sub, note.Note):
            out.append((int(sub.pitch.midi), False))
    return out


def _offset(el, container) -> float | None:
    try:
        return float(el.getOffsetInHierarchy(container))
    except Exception:  # an element music21 cannot place in this hierarchy
        return None


def _pickup_beats(part, first_sig) -> float:
    """Length in beats of a first bar shorter than its meter (an anacrusis), else 0."""
    measures = part.getElementsByClass("Measure")
    if len(measures) < 2:
        return 0.0
    m0 = measures[0]
    bar = first_sig[1] * 4.0 / first_sig[2]
    length = float(m0.duration.quarterLength)
    pad = float(m0.paddingLeft or 0.0)
    if 0 < length < bar - 1e-9 and (pad > 0 or float(measures[1].offset) == length):
        return length
    return 0.0


def _as_meter(beats: float, den: int) -> tuple[int, int]:
    """A pickup length as a time signature over `den` or a finer power of two."""
    frac = Fraction(beats).limit_denominator(64) / 4  # in whole notes
    d = den
    while (frac * d).denominator != 1 and d < 128:
        d *= 2
    return max(int(frac * d), 1), d


def _key_name(ks) -> str | None:
    from music21 import key as m21key

    if isinstance(ks, m21key.Key):
        tonic = ks.tonic.name.replace("-", "b")
        if ks.mode == "minor":
            return tonic + "m"
        if ks.mode == "major":
            return tonic
        return tonic + ks.mode[:3]
    fifths = int(ks.sharps)
    return MAJOR_BY_FIFTHS.get(fifths)


# ---------------------------------------------------------------------------------------------------- ABC


def abc_to_piece(text: str, source: str | None = None) -> Piece:
    """Notes of one ABC tune through music21's ABC parser; the text rides along in `piece.abc`."""
    from music21 import converter

    from fractalmusic.io.abc import abc_key_name, parse_abc_header

    where = source or "<abc>"
    notices: list[str] = []
    try:
        with _quiet(notices), _without_beaming():
            stream = converter.parse(text, format="abc")
            piece = _from_stream(stream, source=source, strip_in_place=True)
    except Exception as exc:  # music21's ABC parser raises assorted errors on malformed tunes
        raise PieceReadError(where, f"music21 cannot parse the ABC ({_first_line(exc)})") from None
    if not piece.n_notes:
        raise PieceReadError(where, "no notes in ABC tune")
    header = parse_abc_header(text)
    if notices:
        piece.meta["music21_warnings"] = notices
    piece.abc = text
    piece.title = header.get("T") or piece.title
    piece.key = abc_key_name(header.get("K")) or piece.key
    return piece


def add_abc_notes(piece: Piece) -> Piece:
    """A copy of an ABC-born piece with notes parsed by music21; text, title, key, source and meta are kept."""
    from fractalmusic.io.abc import abc_parse_text

    parsed = abc_to_piece(abc_parse_text(piece), source=piece.source)
    out = piece.copy()
    out.notes = parsed.notes
    out.time_signatures = parsed.time_signatures
    if any(abs(q - DEFAULT_QPM) > 1e-9 for _, q in parsed.tempos) or len(parsed.tempos) > 1:
        out.tempos = parsed.tempos
    for k in ("pickup_beats", "music21_warnings"):
        if k in parsed.meta:
            out.meta[k] = parsed.meta[k]
    return out


# ---------------------------------------------------------------------------------------------------- writing


def _lanes(notes: np.ndarray) -> list[list[tuple[int, int, list[int], int]]]:
    """Split notes (on the export grid) into monophonic lanes of chords: (on, off, pitches, velocity)."""
    on = np.round(notes["onset"] * EXPORT_GRID).astype(np.int64)
    off = np.maximum(np.round((notes["onset"] + notes["duration"]) * EXPORT_GRID).astype(np.int64), on + 1)
    groups: dict[tuple[int, int], list[tuple[int, int]]] = {}
    for a, b, p, v in zip(on, off, notes["pitch"], notes["velocity"]):
        groups.setdefault((int(a), int(b)), []).append((int(p), int(v)))
    units: list[tuple[int, int, list[int], int]] = []
    for (a, b), members in groups.items():
        while members:  # a unison (same pitch twice) goes to a second chord, hence another lane
            seen: dict[int, int] = {}
            rest = []
            for p, v in members:
                if p in seen:
                    rest.append((p, v))
                else:
                    seen[p] = v
            units.append((a, b, sorted(seen), max(seen.values())))
            members = rest
    units.sort(key=lambda u: (u[0], -u[2][-1]))
    lanes: list[list[tuple[int, int, list[int], int]]] = []
    ends: list[int] = []
    for unit in units:
        for i, e in enumerate(ends):
            if e <= unit[0]:
                lanes[i].append(unit)
                ends[i] = unit[1]
                break
        else:
            lanes.append([unit])
            ends.append(unit[1])
    return lanes


def piece_to_music21(piece: Piece):
    """A music21 Score: one part per monophonic lane of each (program, drum) group, chords where notes share
    onset and duration; onsets and durations are snapped to 1/24 beat so that notation can express them."""
    from music21 import chord, instrument, key as m21key, meter, metadata, note, stream, tempo

    score = stream.Score()
    score.metadata = metadata.Metadata()
    score.metadata.title = piece.title or "Untitled"
    n = piece.notes
    groups = sorted({(bool(d), int(p)) for d, p in zip(n["is_drum"], n["program"])}) or [(False, 0)]
    k_name = plain_key(piece.key)
    sig = key_signature(piece.key)
    first_part = True
    for is_drum, program in groups:
        sel = n[(n["is_drum"] == is_drum) & (n["program"] == program)]
        for lane_no, lane in enumerate(_lanes(sel) or [[]]):
            part = stream.Part()
            if is_drum:
                inst = instrument.UnpitchedPercussion()
                inst.midiChannel = 9
            else:
                try:
                    inst = instrument.instrumentFromMidiProgram(program)
                except Exception:  # programs music21 has no class for
                    inst = instrument.Instrument()
                inst.midiProgram = program
            part.partName = f"{inst.instrumentName or 'Part'} {lane_no + 1}" if lane_no else inst.instrumentName
            part.insert(0, inst)
            for beat, num, den in sorted(piece.time_signatures):
                part.insert(Fraction(beat).limit_denominator(EXPORT_GRID), meter.TimeSignature(f"{num}/{den}"))
            if sig is not None:
                fifths, minor = sig
                if k_name:
                    tonic = k_name[:-1] if minor else k_name
                    m21_tonic = tonic[0] + tonic[1:].replace("b", "-")  # music21 spells flats with '-'
                    part.insert(0, m21key.Key(m21_tonic, "minor" if minor else "major"))
                else:
                    part.insert(0, m21key.KeySignature(fifths))
            if first_part:
                for beat, qpm in sorted(piece.tempos):
                    mark = tempo.MetronomeMark(number=round(qpm, 2))
                    part.insert(Fraction(beat).limit_denominator(EXPORT_GRID), mark)
                first_part = False
            for a, b, pitches, vel in lane:
                offset = Fraction(a, EXPORT_GRID)
                ql = Fraction(b - a, EXPORT_GRID)
                if len(pitches) == 1:
                    el = note.Note(pitches[0])  # drums keep their General MIDI key number as the pitch
                else:
                    el = chord.Chord(pitches)
                el.quarterLength = ql
                el.volume.velocity = vel
                part.insert(offset, el)
            score.insert(0, part)
    return score


def write_musicxml(piece: Piece, path) -> Path:
    """Write MusicXML through music21 (see `piece_to_music21` for how notes become parts)."""
    path = Path(path)
    score = piece_to_music21(piece)
    try:
        with _quiet():
            written = score.write("musicxml", fp=str(path))
    except Exception as exc:
        raise FractalMusicError(f"{path}: music21 could not write MusicXML ({_first_line(exc)})") from None
    written = Path(written)
    if written != path and written.exists():
        written.replace(path)
    return path
