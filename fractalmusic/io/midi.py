"""MIDI files <-> `Piece`: read with symusic (C++; mido event by event where their readings would differ),
written with mido.

Times stay on the file's own beat grid: a note's onset in beats is its tick divided by the file's ticks per beat,
never a round trip through seconds. Written files use 480 ticks per beat, a conductor track with the tempo map,
time signatures, key and title, and one track per (program, drum) group; drums go on channel 10 (index 9).

Key names used across the package are short: "C", "F#", "Bb" for major, "Am", "C#m" for minor; ABC-born pieces
may also carry modes ("Ador", "Dmix"), which map onto the major key with the same key signature when written.
"""
from __future__ import annotations

import io as _io
import re
from collections import defaultdict, deque
from pathlib import Path

import mido
import numpy as np

from fractalmusic.files import read_file_bytes
from fractalmusic.errors import PieceReadError
from fractalmusic.limits import MAX_PIECE_BEATS, piece_problem
from fractalmusic.piece import DEFAULT_QPM, NOTE_DTYPE, Piece

WRITE_TICKS_PER_BEAT = 480
DRUM_CHANNEL = 9

# ---------------------------------------------------------------------------------------------------- keys

_LETTER_FIFTHS = {"F": -1, "C": 0, "G": 1, "D": 2, "A": 3, "E": 4, "B": 5}
# fifths offset of each mode relative to its tonic's major key
_MODE_OFFSETS = {"maj": 0, "ion": 0, "min": -3, "aeo": -3, "dor": -2, "phr": -4, "lyd": 1, "mix": -1, "loc": -5}
MAJOR_BY_FIFTHS = {
    -7: "Cb", -6: "Gb", -5: "Db", -4: "Ab", -3: "Eb", -2: "Bb", -1: "F",
    0: "C", 1: "G", 2: "D", 3: "A", 4: "E", 5: "B", 6: "F#", 7: "C#",
}  # fmt: skip
MINOR_BY_FIFTHS = {
    -7: "Abm", -6: "Ebm", -5: "Bbm", -4: "Fm", -3: "Cm", -2: "Gm", -1: "Dm",
    0: "Am", 1: "Em", 2: "Bm", 3: "F#m", 4: "C#m", 5: "G#m", 6: "D#m", 7: "A#m",
}  # fmt: skip
_KEY_RE = re.compile(r"^\s*([A-Ga-g])\s*([#b\u266f\u266d-]?)\s*([A-Za-z]*)")


def parse_key(name: str | None) -> tuple[int, str] | None:
    """'Gm' / 'G minor' / 'F#' / 'Bb major' / 'Ador' / 'D mix' -> (tonic fifths from C, mode 3-letter code).

    Returns None for anything that is not a tonic with an optional mode (e.g. ABC's 'HP' or 'none').
    """
    if not name:
        return None
    m = _KEY_RE.match(name)
    if not m:
        return None
    letter, acc, mode = m.group(1).upper(), m.group(2), m.group(3).lower()
    fifths = _LETTER_FIFTHS[letter]
    if acc in ("#", "\u266f"):
        fifths += 7
    elif acc in ("b", "\u266d", "-"):
        fifths -= 7
    if mode in ("", "major"):
        code = "maj"
    elif mode in ("m", "minor"):
        code = "min"
    else:
        code = mode[:3]
        if code not in _MODE_OFFSETS:
            return None
    return fifths, code


def key_signature(name: str | None) -> tuple[int, bool] | None:
    """(sharps (+) or flats (-) in the key signature, is_minor) for a key name, or None if not a key."""
    parsed = parse_key(name)
    if parsed is None:
        return None
    tonic, mode = parsed
    fifths = tonic + _MODE_OFFSETS[mode]
    if not -7 <= fifths <= 7:
        return None
    return fifths, mode == "min"


def plain_key(name: str | None) -> str | None:
    """The canonical name ('G', 'Bb', 'F#m') if `name` is a plain major or minor key, else None."""
    parsed = parse_key(name)
    if parsed is None or parsed[1] not in ("maj", "min"):
        return None
    fifths, is_minor = key_signature(name) or (None, None)
    if fifths is None:
        return None
    return MINOR_BY_FIFTHS[fifths] if is_minor else MAJOR_BY_FIFTHS[fifths]


def midi_key_name(name: str | None) -> str | None:
    """A key name mido accepts for a key_signature event; modes map to the major key with the same signature."""
    sig = key_signature(name)
    if sig is None:
        return None
    fifths, is_minor = sig
    return MINOR_BY_FIFTHS[fifths] if is_minor else MAJOR_BY_FIFTHS[fifths]


# ---------------------------------------------------------------------------------------------------- reading
#
# Files are parsed by symusic (C++) into note arrays; the few cases where its reading differs from the exact
# event-by-event one below (mido) are either repaired on the arrays or sent down that path:
#   * a note never switched off: symusic drops it, we end it with the file. Before parsing, each track gets
#     note-offs for the channels it may use, CLOSE_DELTA ticks after its last event; a note ending that late
#     was open at the end of its track and is given the file's last tick instead.
#   * a track holding program changes but no notes (a "setup" track whose programs apply to other tracks'
#     channels): symusic keeps programs per track, so those program changes are copied to the start of every
#     track when they all sit at tick 0 (and no earlier note track set the same channel), else the file is read
#     event by event. Programs that one note track sets for another track's channel are not detected and follow symusic
#     (as pretty_midi does).
#   * type 2 files (tracks played one after another) and anything symusic rejects go event by event too, so a
#     file symusic cannot parse is still read when mido can, and its reason comes from mido when neither can.

MAX_NOTES = 1_000_000  # most notes in one piece; files with more are skipped (beats: limits.MAX_PIECE_BEATS)
CLOSE_DELTA = 0x0FFFFFFF  # largest MIDI delta time: closers sit this far after a track's last event
_EOT = b"\xff\x2f\x00"


class _NeedsEventPath(Exception):
    """symusic's reading would differ from the event-by-event one for this file."""


def read_midi(path, data: bytes | None = None) -> Piece:
    """Read a Standard MIDI File (type 0, 1 or 2) into a Piece. Raises PieceReadError for anything unusable.
    `data`: the file's bytes when the caller has read them already (preparation, which hashed them)."""
    path = Path(path)
    if data is None:
        data = read_file_bytes(path, "MIDI file")
    return midi_bytes_to_piece(data, source=str(path))


def midi_bytes_to_piece(data: bytes, source: str | None = None, engine: str = "auto") -> Piece:
    """Bytes of a MIDI file -> Piece. `engine`: "auto" (symusic, event by event where needed), "mido"."""
    where = source or "<midi>"
    if not data:
        raise PieceReadError(where, "empty file")
    if not data.startswith(b"MThd"):
        raise PieceReadError(where, "not a MIDI file (no MThd header)")
    piece = None
    if engine == "auto":
        try:
            piece = _read_with_symusic(data, where)  # checks the limits itself
        except _NeedsEventPath:
            piece = None
    if piece is None:
        piece = _read_with_mido(data, where)
        _check_limits(piece, where)
    piece.source = source
    return piece


def _check_limits(piece: Piece, where: str, short: bool = False) -> None:
    """PieceReadError for a piece over MAX_NOTES or `limits.MAX_PIECE_BEATS` (a tiny file can hold a 10^7-tick gap:
    refused here, before any grid or timeline is built from it). `short`: the caller knows the piece ends well
    before the beat limit (its notes are not gone over again to find its end)."""
    if piece.n_notes > MAX_NOTES:
        raise PieceReadError(where, f"has {piece.n_notes:,} notes, over the limit of {MAX_NOTES:,} for one piece")
    if short:
        return
    why = piece_problem(piece)
    if why:
        raise PieceReadError(where, why)


def _read_with_mido(data: bytes, where: str) -> Piece:
    try:
        mf = mido.MidiFile(file=_io.BytesIO(data), clip=True)
    except EOFError:
        raise PieceReadError(where, "truncated MIDI file") from None
    except Exception as exc:  # mido raises OSError, ValueError, KeyError, IndexError... on corrupt data
        msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise PieceReadError(where, f"corrupt MIDI file ({msg})") from None
    return _midifile_to_piece(mf, where)


# ------------------------------------------------------------------------------------ symusic path
def _header(data: bytes) -> tuple[int, int, int, int]:
    """(format, tracks, division, offset of the first chunk) from the MThd chunk."""
    if len(data) < 14:
        raise _NeedsEventPath
    size = int.from_bytes(data[4:8], "big")
    fmt, ntracks, division = (int.from_bytes(data[i : i + 2], "big") for i in (8, 10, 12))
    return fmt, ntracks, division, 8 + size


def _chunks(data: bytes, pos: int) -> list[tuple[int, int]]:
    """(start, end) of every MTrk chunk's payload; other chunk types are skipped, as the standard asks."""
    out = []
    n = len(data)
    while pos + 8 <= n:
        kind = data[pos : pos + 4]
        size = int.from_bytes(data[pos + 4 : pos + 8], "big")
        start, end = pos + 8, pos + 8 + size
        if end > n:
            raise _NeedsEventPath  # truncated: mido says how
        if kind == b"MTrk":
            out.append((start, end))
        pos = end
    return out


def _varlen(buf: bytes, i: int) -> tuple[int, int]:
    value = 0
    for _ in range(4):
        if i >= len(buf):
            raise IndexError
        b = buf[i]
        i += 1
        value = (value << 7) | (b & 0x7F)
        if not b & 0x80:
            return value, i
    raise ValueError("variable-length number longer than 4 bytes")


def _scan_track(buf: bytes, want_title: bool, stop_at_note: bool, limit: int) -> tuple[bool, list, str | None]:
    """Walk a track's events (up to `limit` bytes): (has a note-on, its program changes as (tick, channel,
    program) before the first note-on, its first track name). Stops at the first note-on when `stop_at_note` (a
    title is the track name given before the music starts), and at the title when `want_title` (the other two
    are then incomplete: a caller asking for the title wants only that)."""
    i, n = 0, min(len(buf), limit)
    running = tick = 0
    note = False
    programs: list[tuple[int, int, int]] = []
    title = None
    if want_title and buf.find(b"\xff\x03", 0, n) < 0:
        want_title = False  # no track-name event can be in this track
    try:
        while i < n:
            delta = buf[i]  # a delta time: one byte below 0x80 (the usual case), else a variable-length number
            if delta & 0x80:
                delta, i = _varlen(buf, i)
            else:
                i += 1
            tick += delta
            status = buf[i]
            if status == 0xFF:
                kind, length = buf[i + 1], buf[i + 2]
                if length & 0x80:
                    length, i = _varlen(buf, i + 2)
                else:
                    i += 3
                if kind == 0x03 and want_title:
                    title = buf[i : i + length].decode("latin-1").strip() or None
                    if title is not None:
                        break
                elif kind == 0x2F:
                    break
                i += length
                continue
            if status in (0xF0, 0xF7):
                length, i = _varlen(buf, i + 1)
                i += length
                continue
            if status & 0x80:
                running = status
                i += 1
            elif not running:
                break  # data without a status: corrupt, leave it to the parser
            high = running & 0xF0
            if high == 0x90 and buf[i + 1] > 0:
                note = True
                if stop_at_note:
                    break
            elif high == 0xC0 and not note:
                programs.append((tick, running & 0x0F, buf[i] & 0x7F))
            i += 1 if high in (0xC0, 0xD0) else 2
    except (IndexError, ValueError):
        pass
    return note, programs, title


def _channel_closers(channel: int) -> bytes:
    """Note-offs of all 128 pitches on one channel, 0 ticks apart (running status after the first)."""
    return bytes((0x80 | channel, 0, 0)) + b"".join(bytes((0, p, 0)) for p in range(1, 128))


_CLOSERS = [_channel_closers(ch) for ch in range(16)]


def _closers(channels: list[int]) -> bytes:
    """What replaces a track's end-of-track event (its delta time stays): note-offs for every pitch of `channels`
    (those the track may use), CLOSE_DELTA ticks after its last event, then the end of the track again."""
    # the old end-of-track's delta now times an empty sequencer-specific event, then the closers' long delta
    closers = b"\x00".join(_CLOSERS[ch] for ch in channels)
    return b"\xff\x7f\x00" + b"\xff\xff\xff\x7f" + closers + b"\x00" + _EOT


def _note_channels(data: bytes, start: int, stop: int) -> list[int]:
    """The channels n of the bytes 0x9n in data[start:stop]: the channels a track's notes may use (any such byte
    could be a note-on's status)."""
    return [ch for ch in range(16) if data.find(_NOTE_ON_STATUS[ch], start, stop) >= 0]


_NOTE_ON_STATUS = [bytes((0x90 | ch,)) for ch in range(16)]
_PROGRAM_STATUS = re.compile(rb"[\xc0-\xcf]")


def _read_with_symusic(data: bytes, where: str) -> Piece:
    import symusic

    fmt, _, tpb, pos = _header(data)
    if tpb & 0x8000 or tpb == 0:
        raise PieceReadError(where, "SMPTE (frames per second) timing is not supported")
    if fmt not in (0, 1):
        raise _NeedsEventPath  # type 2: tracks play one after another
    chunks = _chunks(data, pos)
    if not chunks:
        raise _NeedsEventPath
    title = None
    setup = b""  # program changes of note-less tracks, for every track (they set other tracks' channels)
    set_by_note_tracks: set[int] = set()  # channels whose program a note track set before it, at its start
    view = memoryview(data)  # tracks scanned through it, not copied out (a piano performance's is 100 kB or more)
    if fmt == 1:
        a, b = chunks[0]
        if data.find(b"\xff\x03", a, b) >= 0:  # else no track-name event can be in the first track
            title = _scan_track(data[a:b], True, True, 1 << 16)[2]
        if len(chunks) > 1:
            for a, b in chunks:
                if not _PROGRAM_STATUS.search(data, a, b):
                    continue  # not a single byte that could be a program change's status
                has_note, programs, _ = _scan_track(view[a:b], False, True, b - a)
                if has_note:
                    set_by_note_tracks.update(ch for _, ch, _ in programs)
                elif programs:
                    # exact when they all sit at tick 0 and no earlier note track set the same channel (mido's
                    # order would then let this later track win, the copy at the start would lose)
                    if any(tick or ch in set_by_note_tracks for tick, ch, _ in programs):
                        raise _NeedsEventPath
                    setup += b"".join(bytes((0, 0xC0 | ch, program)) for _, ch, program in programs)
    # the file again, each track with `setup` at its start and closers at its end: pieces of `data` (no copies)
    # joined once
    parts: list = [view[:pos]]
    for a, b in chunks:
        used = _note_channels(data, a, b - len(_EOT)) if data.endswith(_EOT, a, b) else None
        if used:
            body, end = view[a : b - len(_EOT)], _closers(used)
        else:
            body, end = view[a:b], b""
        parts += [b"MTrk", (len(setup) + len(body) + len(end)).to_bytes(4, "big"), setup, body, end]
    try:
        score = symusic.Score.from_midi(b"".join(parts), sanitize_data=True)
    except Exception:
        raise _NeedsEventPath from None  # mido reads it, or says what is wrong
    return _score_to_piece(score, fmt, tpb, title, where)


def _score_to_piece(score, fmt: int, tpb: int, title: str | None, where: str) -> Piece:
    columns, programs, drums, counts = [], [], [], []
    for track in score.tracks:
        if fmt == 0 and title is None and track.name.strip():
            title = track.name.strip()
        notes = track.notes
        n = len(notes)
        if not n:
            continue
        columns.append(notes.numpy())
        programs.append(track.program)
        drums.append(bool(track.is_drum))
        counts.append(n)
    if not counts:
        raise PieceReadError(where, "no notes in MIDI file")
    # every column once, for all tracks together (symusic gives int32 ticks, int8 pitches and velocities)
    on, dur, pitch, velocity = (
        np.concatenate([c[name] for c in columns]) if len(columns) > 1 else columns[0][name]
        for name in ("time", "duration", "pitch", "velocity")
    )
    first, last, shortest, longest = int(on.min()), int(on.max()), int(dur.min()), int(dur.max())
    if first < 0 or shortest < 0:
        raise PieceReadError(where, f"lasts beyond {2**31 - 1:,} ticks, over the limit for one piece")
    end = None  # ticks where notes end, when not simply onset + duration
    if last + longest >= CLOSE_DELTA:  # notes never switched off end with the file's last event
        end = on.astype(np.int64) + dur
        open_at_end = end >= CLOSE_DELTA
        shortest = 0  # their new end may be their onset
        closed = ~open_at_end
        last = max(last, int(end[closed].max()) if closed.any() else 0)
        for track in score.tracks:
            for events in (track.controls, track.pitch_bends):
                if len(events):
                    last = max(last, int(events[-1].time))
        for events in (score.tempos, score.time_signatures, score.key_signatures, score.markers):
            if len(events):
                last = max(last, int(events[-1].time))
        end[open_at_end] = last
    # which notes to keep, in what order: by onset, then pitch (stable: notes at one onset and pitch keep their track
    # order); None: all of them, as they are (a piece of one track usually comes sorted already)
    order = None
    if shortest <= 0:
        kept = (end > on) if end is not None else dur > 0  # zero-length notes carry nothing
        if not kept.all():
            order = np.flatnonzero(kept)
            if not len(order):
                raise PieceReadError(where, "no notes in MIDI file")
    # the sort key onset * 128 + pitch, in 32 bits when the last onset allows (half the memory to go through)
    key_type = np.int32 if last < (1 << 23) else np.int64
    by = on.astype(key_type) if order is None else on.take(order).astype(key_type)
    by *= 128
    by += pitch if order is None else pitch.take(order)
    if not (by[1:] >= by[:-1]).all():
        ranks = np.argsort(by, kind="stable")
        order = ranks if order is None else order.take(ranks)
    n = len(on) if order is None else len(order)
    notes = np.zeros(n, dtype=NOTE_DTYPE)  # program 0, not a drum, until written below
    if order is None:
        notes["onset"] = on / tpb
        notes["duration"] = (dur if end is None else end - on) / tpb
        notes["pitch"] = pitch
        notes["velocity"] = velocity
    else:
        on_kept = on.take(order)
        notes["onset"] = on_kept / tpb
        notes["duration"] = (dur.take(order) if end is None else end.take(order) - on_kept) / tpb
        notes["pitch"] = pitch.take(order)
        notes["velocity"] = velocity.take(order)
    if len(counts) == 1 or (len(set(programs)) == 1 and len(set(drums)) == 1):
        if programs[0]:  # a constant field is written only when it is not the zero it starts as
            notes["program"] = programs[0]
        if drums[0]:
            notes["is_drum"] = True
    else:
        track_of = np.repeat(np.arange(len(counts), dtype=np.int32), counts)
        if order is not None:
            track_of = track_of.take(order)
        notes["program"] = np.asarray(programs, dtype=np.int16).take(track_of)
        notes["is_drum"] = np.asarray(drums, dtype=bool).take(track_of)

    tempos: dict[int, float] = {}
    if len(score.tempos):
        t = score.tempos.numpy()
        for tick, mspq in zip(t["time"].tolist(), t["mspq"].tolist()):
            if mspq > 0:
                tempos[tick] = 60_000_000.0 / mspq
    sigs: dict[int, tuple[int, int]] = {}
    if len(score.time_signatures):
        t = score.time_signatures.numpy()
        for tick, num, den in zip(t["time"].tolist(), t["numerator"].tolist(), t["denominator"].tolist()):
            sigs[tick] = (num, den)
    key = None
    if len(score.key_signatures):
        ks = score.key_signatures[0]
        names = MINOR_BY_FIFTHS if ks.tonality else MAJOR_BY_FIFTHS
        key = names.get(int(ks.key))
    piece = _assemble(notes, tempos, sigs, key, title, tpb, fmt)
    latest = last + longest if end is None else int(end.max())  # no note ends after this tick
    _check_limits(piece, where, short=latest / tpb <= MAX_PIECE_BEATS - 1)
    return piece


def _note_records(on, end, pitch, velocity, program, drum, tpb: int) -> np.ndarray:
    """Note records (NOTE_DTYPE) from columns with onsets and ends in ticks; beats = ticks / tpb."""
    notes = np.empty(len(on), dtype=NOTE_DTYPE)  # every field is written below
    notes["onset"] = on / tpb
    notes["duration"] = (end - on) / tpb
    notes["pitch"] = pitch
    notes["velocity"] = velocity
    notes["program"] = program
    notes["is_drum"] = drum
    return notes


def _assemble(notes, tempos: dict, sigs: dict, key, title, tpb: int, fmt: int) -> Piece:
    tempo_list = [(tick / tpb, qpm) for tick, qpm in sorted(tempos.items())]
    if not tempo_list or tempo_list[0][0] > 0:
        tempo_list.insert(0, (0.0, DEFAULT_QPM))
    sig_list = [(tick / tpb, num, den) for tick, (num, den) in sorted(sigs.items())]
    if not sig_list or sig_list[0][0] > 0:
        sig_list.insert(0, (0.0, 4, 4))
    return Piece(
        notes=notes,
        tempos=_dedupe(tempo_list),
        time_signatures=_dedupe(sig_list),
        key=key,
        title=title,
        meta={"ticks_per_beat": tpb, "midi_type": fmt},
    )


# ------------------------------------------------------------------------------------ event-by-event path (mido)


def _midifile_to_piece(mf: "mido.MidiFile", where: str) -> Piece:
    tpb = mf.ticks_per_beat
    if not isinstance(tpb, int) or tpb <= 0 or tpb >= 0x8000:
        raise PieceReadError(where, "SMPTE (frames per second) timing is not supported")

    # Collect timed events from every track on one time line. Type 2 tracks play one after another.
    events: list[tuple[int, int, int, object]] = []  # (tick, priority, sequence, message)
    seq = 0
    offset = 0
    last_tick = 0
    title = None
    for number, track in enumerate(mf.tracks):
        tick = offset
        for msg in track:
            tick += msg.time
            t = msg.type
            if t in ("note_on", "note_off"):
                pri = 1
            elif t in ("program_change", "set_tempo", "time_signature", "key_signature"):
                pri = 0
            else:
                if t == "track_name" and number == 0 and title is None and msg.name.strip():
                    title = msg.name.strip()  # the first track's name is the song's title
                continue
            events.append((tick, pri, seq, msg))
            seq += 1
        last_tick = max(last_tick, tick)
        if mf.type == 2:
            offset = tick
    events.sort(key=lambda e: (e[0], e[1], e[2]))

    programs = [0] * 16
    open_notes: dict[tuple[int, int], deque] = defaultdict(deque)
    onsets: list[int] = []
    offsets: list[int] = []
    pitches: list[int] = []
    velocities: list[int] = []
    progs: list[int] = []
    drums: list[bool] = []
    tempos: dict[int, float] = {}
    sigs: dict[int, tuple[int, int]] = {}
    key: str | None = None

    def close(start, vel, prog, ch, pitch, end):
        onsets.append(start)
        offsets.append(end)
        pitches.append(pitch)
        velocities.append(vel)
        progs.append(prog)
        drums.append(ch == DRUM_CHANNEL)

    for tick, _, _, msg in events:
        t = msg.type
        if t == "note_on" and msg.velocity > 0:
            open_notes[(msg.channel, msg.note)].append((tick, msg.velocity, programs[msg.channel]))
        elif t in ("note_on", "note_off"):
            queue = open_notes.get((msg.channel, msg.note))
            if queue:
                start, vel, prog = queue.popleft()  # first in, first out
                close(start, vel, prog, msg.channel, msg.note, tick)
        elif t == "program_change":
            programs[msg.channel] = msg.program
        elif t == "set_tempo":
            if msg.tempo > 0:
                tempos[tick] = 60_000_000.0 / msg.tempo
        elif t == "time_signature":
            sigs[tick] = (msg.numerator, msg.denominator)
        elif t == "key_signature":
            if key is None:
                key = plain_key(msg.key) or msg.key
    for (ch, pitch), queue in open_notes.items():  # notes never switched off end with the file
        for start, vel, prog in queue:
            close(start, vel, prog, ch, pitch, last_tick)

    notes = np.zeros(len(onsets), dtype=NOTE_DTYPE)
    if len(onsets):
        on = np.asarray(onsets, dtype=np.int64)
        off = np.asarray(offsets, dtype=np.int64)
        notes = _note_records(on, off, pitches, velocities, progs, drums, tpb)
        notes = notes[off > on]  # zero-length notes carry nothing
        notes = notes[np.lexsort((notes["pitch"], notes["onset"]))]
    if not len(notes):
        raise PieceReadError(where, "no notes in MIDI file")

    return _assemble(notes, tempos, sigs, key, title, tpb, mf.type)


def _dedupe(items: list) -> list:
    """Drop entries that repeat the value in force (a tempo re-stated in every track, say)."""
    out: list = []
    for item in items:
        if out and tuple(out[-1][1:]) == tuple(item[1:]):
            continue
        out.append(item)
    return out


# ---------------------------------------------------------------------------------------------------- writing


def piece_to_midifile(piece: Piece) -> "mido.MidiFile":
    """Type-1 MidiFile: a conductor track, then one track per (program, drum) group, 480 ticks per beat."""
    tpb = WRITE_TICKS_PER_BEAT
    mf = mido.MidiFile(type=1, ticks_per_beat=tpb)

    def tick(beat: float) -> int:
        return int(round(float(beat) * tpb))

    meta: list[tuple[int, int, mido.MetaMessage]] = []
    if piece.title:
        meta.append((0, 0, mido.MetaMessage("track_name", name=_latin1(piece.title))))
    for beat, qpm in sorted(piece.tempos):
        if qpm > 0:
            usec = min(int(round(60_000_000 / qpm)), 0xFFFFFF)
            meta.append((tick(beat), 1, mido.MetaMessage("set_tempo", tempo=usec)))
    for beat, num, den in sorted(piece.time_signatures):
        if num > 0 and den > 0 and den & (den - 1) == 0:
            meta.append((tick(beat), 2, mido.MetaMessage("time_signature", numerator=int(num), denominator=int(den))))
    key = midi_key_name(piece.key)
    if key is not None:
        meta.append((0, 3, mido.MetaMessage("key_signature", key=key)))
    mf.tracks.append(_to_track(meta))

    notes = piece.notes
    groups = sorted({(bool(d), int(p)) for d, p in zip(notes["is_drum"], notes["program"])})
    melodic_channels = [c for c in range(16) if c != DRUM_CHANNEL]
    next_channel = 0
    for is_drum, program in groups:
        sel = notes[(notes["is_drum"] == is_drum) & (notes["program"] == program)]
        if is_drum:
            channel = DRUM_CHANNEL
        else:
            channel = melodic_channels[next_channel % len(melodic_channels)]
            next_channel += 1
        events: list[tuple[int, int, mido.Message]] = []
        name = "Drums" if is_drum else _program_name(program)
        events.append((0, 0, mido.MetaMessage("track_name", name=name)))
        events.append((0, 1, mido.Message("program_change", channel=channel, program=program & 0x7F)))
        for n in sel:
            on = tick(n["onset"])
            off = max(tick(n["onset"] + n["duration"]), on + 1)
            pitch = int(np.clip(n["pitch"], 0, 127))
            vel = int(np.clip(n["velocity"], 1, 127))
            events.append((on, 3, mido.Message("note_on", channel=channel, note=pitch, velocity=vel)))
            events.append((off, 2, mido.Message("note_off", channel=channel, note=pitch, velocity=0)))
        mf.tracks.append(_to_track(events))
    return mf


def _to_track(events: list) -> "mido.MidiTrack":
    """Absolute (tick, priority, message) -> a track with delta times; note-offs precede note-ons at a tick."""
    track = mido.MidiTrack()
    now = 0
    for t, _, msg in sorted(events, key=lambda e: (e[0], e[1])):
        track.append(msg.copy(time=t - now))
        now = t
    track.append(mido.MetaMessage("end_of_track", time=0))
    return track


def _latin1(text: str) -> str:
    return text.encode("latin-1", "replace").decode("latin-1")


def _program_name(program: int) -> str:
    try:
        import pretty_midi

        return pretty_midi.program_to_instrument_name(int(program))
    except Exception:  # out-of-range program or pretty_midi missing: a plain label is fine
        return f"Program {program}"


def write_midi(piece: Piece, path) -> Path:
    path = Path(path)
    piece_to_midifile(piece).save(str(path))
    return path


def midi_bytes(piece: Piece) -> bytes:
    buf = _io.BytesIO()
    piece_to_midifile(piece).save(file=buf)
    return buf.getvalue()


# ---------------------------------------------------------------------------------------------------- pretty_midi


def piece_to_pretty_midi(piece: Piece):
    """A pretty_midi.PrettyMIDI with the piece's notes and its full tempo map (built from our own MIDI bytes)."""
    import pretty_midi

    return pretty_midi.PrettyMIDI(_io.BytesIO(midi_bytes(piece)))


def piece_from_pretty_midi(pm, source: str | None = None) -> Piece:
    """Seconds in a PrettyMIDI -> beats through its tempo map, snapped to its tick grid."""
    res = int(pm.resolution)
    times, qpms = pm.get_tempo_changes()
    times = np.asarray(times, dtype=np.float64)
    qpms = np.asarray(qpms, dtype=np.float64)
    if len(times) == 0 or times[0] > 0:
        times = np.concatenate([[0.0], times])
        qpms = np.concatenate([[qpms[0] if len(qpms) else DEFAULT_QPM], qpms])
    beat_at = np.concatenate([[0.0], np.cumsum(np.diff(times) * qpms[:-1] / 60.0)])

    def to_beats(seconds) -> np.ndarray:
        s = np.asarray(seconds, dtype=np.float64)
        idx = np.clip(np.searchsorted(times, s, side="right") - 1, 0, len(times) - 1)
        beats = beat_at[idx] + (s - times[idx]) * qpms[idx] / 60.0
        return np.round(beats * res) / res

    rows = []
    for inst in pm.instruments:
        if not inst.notes:
            continue
        arr = np.zeros(len(inst.notes), dtype=NOTE_DTYPE)
        starts = np.array([n.start for n in inst.notes])
        ends = np.array([n.end for n in inst.notes])
        on = to_beats(starts)
        arr["onset"] = on
        arr["duration"] = to_beats(ends) - on
        arr["pitch"] = [n.pitch for n in inst.notes]
        arr["velocity"] = [max(1, min(127, n.velocity)) for n in inst.notes]
        arr["program"] = inst.program
        arr["is_drum"] = inst.is_drum
        rows.append(arr)
    notes = np.concatenate(rows) if rows else np.zeros(0, dtype=NOTE_DTYPE)
    notes = notes[notes["duration"] > 0]
    notes = notes[np.lexsort((notes["pitch"], notes["onset"]))]
    tempos = [(float(b), float(q)) for b, q in zip(to_beats(times), qpms)]
    sigs = [(float(to_beats(ts.time)), int(ts.numerator), int(ts.denominator)) for ts in pm.time_signature_changes]
    if not sigs or sigs[0][0] > 0:
        sigs.insert(0, (0.0, 4, 4))
    key = None
    if pm.key_signature_changes:
        import pretty_midi

        name = pretty_midi.key_number_to_key_name(pm.key_signature_changes[0].key_number)  # "C Major", "A minor"
        key = plain_key(name)
    return Piece(notes=notes, tempos=_dedupe(tempos), time_signatures=_dedupe(sigs), key=key, source=source)
