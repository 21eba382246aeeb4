"""The array paths against plain per-note reference versions: symusic reading vs mido event by event, the
vectorised piano-roll grid and MIDI words vs straightforward loops, and the size limits of the MIDI reader."""
from __future__ import annotations

import math

import mido
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fractalmusic.data.prepare import read_file
from fractalmusic.errors import PieceReadError
from fractalmusic.io import midi as midi_io
from fractalmusic.io.midi import midi_bytes, midi_bytes_to_piece
from fractalmusic.limits import MAX_PIECE_BEATS as MAX_BEATS
from fractalmusic.piece import Piece, make_notes
from fractalmusic.representations.pianoroll import (
    MAX_STEPS,
    ONSET,
    SUSTAIN,
    PianoRollRepresentation,
    beats_to_steps,
    velocity_to_bin,
)
from fractalmusic.representations.words import WordsRepresentation, tempo_bin


# ------------------------------------------------------------------------------------------- references
def grid_reference(rep: PianoRollRepresentation, piece: Piece) -> np.ndarray:
    """The grid built one note at a time (what encode did before it was vectorised)."""
    notes = piece.notes if rep.config.include_drums else piece.notes[~piece.notes["is_drum"]]
    spb = rep.steps_per_beat
    on = np.maximum(beats_to_steps(notes["onset"], spb), 0)
    end = np.maximum(beats_to_steps(notes["onset"] + notes["duration"], spb), on + 1)
    width = max(1, math.ceil(piece.end_beat * spb - 1e-9), int(end.max()) if len(end) else 0)
    grid = np.zeros((128, width), dtype=np.int64)
    for p, a, b in zip(notes["pitch"].tolist(), on.tolist(), end.tolist()):
        grid[p, a + 1 : b] = SUSTAIN
    grid[notes["pitch"].astype(np.int64), on] = ONSET + velocity_to_bin(notes["velocity"], rep.velocity_bins)
    return grid


def words_reference(rep: WordsRepresentation, piece: Piece) -> list[str]:
    """MIDI words bar by bar and note by note (what midi_words did before it was vectorised)."""
    spb = rep.steps_per_beat
    notes = piece.notes[~piece.notes["is_drum"]]
    on = np.maximum(beats_to_steps(notes["onset"], spb), 0)
    dur = np.clip(beats_to_steps(notes["onset"] + notes["duration"], spb) - on, 1, rep.config.max_duration_steps)
    vel = np.asarray(velocity_to_bin(notes["velocity"], int(rep.config.velocity_bins)))
    pitch = notes["pitch"].astype(np.int64)
    order = np.lexsort((pitch, on))
    on, dur, pitch, vel = on[order].tolist(), dur[order].tolist(), pitch[order].tolist(), vel[order].tolist()
    sigs = sorted((b, int(n), int(d)) for b, n, d in piece.time_signatures if int(n) >= 1 and int(d) >= 1)
    changes = [(int(beats_to_steps(b, spb)), n, d) for b, n, d in sigs or [(0.0, 4, 4)]]
    tempo_steps = [(int(beats_to_steps(b, spb)), tempo_bin(q)) for b, q in sorted(piece.tempos)]
    ts = changes[0][1:]
    words = [f"TS_{ts[0]}/{ts[1]}", f"Tempo_{tempo_steps[0][1]}"]
    j, cur, k, start, i = 1, tempo_steps[0][1], 1, 0, 0
    while start <= (on[-1] if on else -1):
        new_ts = ts
        while j < len(changes) and changes[j][0] <= start:
            new_ts = changes[j][1:]
            j += 1
        bar_len = max(1, int(round(new_ts[0] * 4 / new_ts[1] * spb)))
        words.append("Bar")
        if new_ts != ts:
            words.append(f"TS_{new_ts[0]}/{new_ts[1]}")
            ts = new_ts
        new_tempo = cur
        while k < len(tempo_steps) and tempo_steps[k][0] < start + bar_len:
            new_tempo = tempo_steps[k][1]
            k += 1
        if new_tempo != cur:
            words.append(f"Tempo_{new_tempo}")
            cur = new_tempo
        prev = None
        while i < len(on) and on[i] < start + bar_len:
            if on[i] != prev:
                words.append(f"Pos_{on[i] - start}")
                prev = on[i]
            words += (f"Pitch_{pitch[i]}", f"Dur_{dur[i]}", f"Vel_{vel[i]}")
            i += 1
        start += bar_len
    return words


note_rows = st.lists(
    st.tuples(
        st.integers(0, 4 * 48),  # onset in 1/12 beats
        st.integers(1, 5 * 12),  # duration in 1/12 beats
        st.integers(0, 127),
        st.integers(1, 127),
        st.booleans(),
    ),
    max_size=40,
)
metres = st.lists(st.tuples(st.integers(0, 60), st.sampled_from([(3, 4), (6, 8), (5, 4), (2, 2), (7, 8)])), max_size=3)
tempo_changes = st.lists(st.tuples(st.integers(0, 60), st.floats(20, 300)), max_size=3)


def make_piece(rows, metres, tempos) -> Piece:
    notes = make_notes([(on / 12, d / 12, p, v, 0, drum) for on, d, p, v, drum in rows])
    return Piece(
        notes=notes,
        time_signatures=[(0.0, 4, 4)] + [(float(b), n, d) for b, (n, d) in metres],
        tempos=[(0.0, 120.0)] + [(float(b), q) for b, q in tempos],
    )


@settings(max_examples=60, deadline=None)
@given(rows=note_rows, metres=metres, tempos=tempo_changes, spb=st.sampled_from([1, 3, 4, 12]))
def test_vectorised_grid_and_words_match_the_per_note_versions(rows, metres, tempos, spb):
    piece = make_piece(rows, metres, tempos)
    grid_rep = PianoRollRepresentation(steps_per_beat=spb, velocity_bins=3)
    assert np.array_equal(grid_rep.encode(piece), grid_reference(grid_rep, piece))
    time_major = grid_rep.encode_time_major(piece)
    assert time_major.dtype == np.uint8 and time_major.flags.c_contiguous
    assert np.array_equal(time_major, grid_reference(grid_rep, piece).T)
    words_rep = WordsRepresentation(source="midi", steps_per_beat=spb)
    assert words_rep.midi_words(piece) == words_reference(words_rep, piece)
    words_rep.fit([piece])
    ids = words_rep.encode(piece)  # through the words remembered while fitting
    assert words_rep.words_of(ids) == ["<bos>"] + words_reference(words_rep, piece) + ["<eos>"]
    assert np.array_equal(words_rep.encode(piece.copy()), ids)  # built afresh


def test_heavily_overlapping_notes_take_the_running_sum_path():
    # 300 notes of 40 beats on 3 pitches: more sustain cells than the grid has, so the grid is built by a running sum
    rows = [(i / 10, 40.0, 60 + i % 3, 90) for i in range(300)] + [(5.0, 0.25, 72, 30)]
    piece = Piece(notes=make_notes(rows))
    rep = PianoRollRepresentation(velocity_bins=4)
    assert np.array_equal(rep.encode(piece), grid_reference(rep, piece))
    assert np.array_equal(rep.encode_time_major(piece, np.int16), grid_reference(rep, piece).T)


@pytest.mark.parametrize("bins, drums", [(1, False), (1, True), (5, False)])
def test_grid_matches_the_per_note_version_on_many_random_notes(bins, drums):
    # thousands of notes as a real file has them: chords, repeated pitches, notes shorter than a step, long
    # overlapping ones, drums, a note before the start; both layouts and both dtypes, cell for cell
    rng = np.random.default_rng(bins + 10 * drums)
    n = 3000
    onset = np.round(rng.uniform(-0.5, 400, n) * 24) / 24
    duration = np.where(rng.random(n) < 0.1, rng.uniform(4, 30, n), rng.uniform(0.01, 2, n))
    rows = [(float(o), float(d), int(p), int(v), 0, bool(dr)) for o, d, p, v, dr in zip(
        onset, duration, rng.integers(21, 109, n), rng.integers(1, 128, n), rng.random(n) < 0.1)]
    rows += [(float(o), 1.0, 60, 100, 0, False) for o in range(0, 40, 2)]  # a pitch repeated on every other beat
    piece = Piece(notes=make_notes(rows))
    rep = PianoRollRepresentation(velocity_bins=bins, include_drums=drums)
    want = grid_reference(rep, piece)
    assert (want == SUSTAIN).sum() > 1000 and (want >= ONSET).sum() > 1000  # both kinds of cell are exercised
    assert np.array_equal(rep.encode(piece), want)
    assert np.array_equal(rep.encode_time_major(piece, np.uint8), want.T)


# ------------------------------------------------------------------------------------------- reading
def _bytes(mf: mido.MidiFile) -> bytes:
    import io

    buf = io.BytesIO()
    mf.save(file=buf)
    return buf.getvalue()


def test_fast_reader_matches_the_event_reader_on_our_own_files():
    rng = np.random.default_rng(3)
    rows = []
    for _ in range(300):
        drum = bool(rng.random() < 0.1)  # drums of one program: tracks of several would share channel 10
        rows.append((float(rng.integers(0, 400)) / 8, float(rng.integers(1, 32)) / 8, int(rng.integers(20, 100)),
                     int(rng.integers(1, 128)), 0 if drum else int(rng.choice([0, 5, 40])), drum))  # fmt: skip
    piece = Piece(notes=make_notes(rows), tempos=[(0.0, 90.0), (8.0, 140.0)], time_signatures=[(0.0, 3, 4)])
    data = midi_bytes(piece)
    fast, slow = midi_bytes_to_piece(data, "x"), midi_bytes_to_piece(data, "x", engine="mido")
    assert sorted(fast.notes.tolist()) == sorted(slow.notes.tolist())  # notes at one onset and pitch in any order
    assert np.array_equal(fast.notes[["onset", "pitch"]], slow.notes[["onset", "pitch"]])
    assert (fast.tempos, fast.time_signatures, fast.key, fast.meta) == (slow.tempos, slow.time_signatures, slow.key, slow.meta)


def test_notes_never_switched_off_end_with_the_file_on_the_fast_path(monkeypatch):
    mf = mido.MidiFile(type=1, ticks_per_beat=100)
    mf.tracks.append(mido.MidiTrack([mido.MetaMessage("track_name", name="Hanging", time=0)]))
    mf.tracks.append(
        mido.MidiTrack(
            [
                mido.Message("program_change", channel=3, program=7, time=0),
                mido.Message("note_on", channel=3, note=60, velocity=50, time=0),
                mido.Message("note_on", channel=3, note=64, velocity=60, time=100),  # never switched off
                mido.Message("note_off", channel=3, note=60, time=100),
                mido.Message("pitchwheel", channel=3, pitch=100, time=300),  # last event: tick 500
            ]
        )
    )
    data = _bytes(mf)
    monkeypatch.setattr(midi_io, "_read_with_mido", lambda *a: pytest.fail("took the event-by-event path"))
    piece = midi_bytes_to_piece(data, "x")
    got = sorted(zip(piece.notes["onset"].tolist(), piece.notes["duration"].tolist(), piece.notes["pitch"].tolist()))
    assert got == [(0.0, 2.0, 60), (1.0, 4.0, 64)]
    assert set(piece.notes["program"].tolist()) == {7}
    assert piece.title == "Hanging"


def test_setup_track_programs_apply_to_other_tracks(monkeypatch):
    calls = []
    real = midi_io._read_with_mido
    monkeypatch.setattr(midi_io, "_read_with_mido", lambda data, where: calls.append(where) or real(data, where))

    def song(later: int) -> bytes:
        mf = mido.MidiFile(type=1, ticks_per_beat=100)
        mf.tracks.append(mido.MidiTrack([mido.MetaMessage("track_name", name="Setup", time=0)]))
        mf.tracks.append(
            mido.MidiTrack(
                [
                    mido.Message("program_change", channel=0, program=33, time=0),
                    mido.Message("program_change", channel=1, program=50, time=0),
                    mido.Message("program_change", channel=1, program=51, time=later),
                ]
            )
        )
        for ch, pitch in ((0, 50), (1, 70)):
            mf.tracks.append(
                mido.MidiTrack(
                    [
                        mido.Message("note_on", channel=ch, note=pitch, velocity=9, time=0),
                        mido.Message("note_off", channel=ch, note=pitch, time=50),
                        mido.Message("note_on", channel=ch, note=pitch, velocity=9, time=50),
                        mido.Message("note_off", channel=ch, note=pitch, time=50),
                    ]
                )
            )
        return _bytes(mf)

    for later, expected_calls in ((0, []), (100, ["b"])):  # a change at tick 100: read event by event
        calls.clear()
        piece = midi_bytes_to_piece(song(later), "b")
        got = sorted(zip(piece.notes["onset"].tolist(), piece.notes["pitch"].tolist(), piece.notes["program"].tolist()))
        assert got == [(0.0, 50, 33), (0.0, 70, 50 if later else 51), (1.0, 50, 33), (1.0, 70, 51)]
        assert calls == expected_calls and piece.title == "Setup"
        assert sorted(piece.notes.tolist()) == sorted(midi_bytes_to_piece(song(later), "b", engine="mido").notes.tolist())


# ------------------------------------------------------------------------------------------- limits
def tiny_midi(tpb: int, gap: int) -> bytes:
    """A 45-byte-ish file: one note, then a second note after `gap` ticks."""

    def varlen(n: int) -> bytes:
        out = [n & 0x7F]
        n >>= 7
        while n:
            out.insert(0, 0x80 | (n & 0x7F))
            n >>= 7
        return bytes(out)

    track = b"\x00\x90\x3c\x40" + b"\x10\x80\x3c\x00" + varlen(gap) + b"\x90\x3e\x40" + b"\x10\x80\x3e\x00"
    track += b"\x00\xff\x2f\x00"
    return b"MThd\x00\x00\x00\x06\x00\x00\x00\x01" + tpb.to_bytes(2, "big") + b"MTrk" + len(track).to_bytes(4, "big") + track


@pytest.mark.parametrize("engine", ["auto", "mido"])
def test_huge_gaps_are_refused_before_anything_big_is_allocated(tmp_path, engine):
    data = tiny_midi(1, 10**7)
    assert len(data) < 50
    with pytest.raises(PieceReadError, match=r"lasts 10,000,\d+ beats, over the limit of 20,000 beats"):
        midi_bytes_to_piece(data, "gap.mid", engine=engine)
    path = tmp_path / "gap.mid"
    path.write_bytes(data)
    pieces, _, reason = read_file(str(path), True)  # what `fmusic data stats` and training see
    assert pieces == [] and reason.startswith("lasts 10,000,")
    ok = midi_bytes_to_piece(tiny_midi(96, 96 * 100), "fine.mid", engine=engine)
    assert ok.end_beat == pytest.approx(100 + 32 / 96)
    assert MAX_BEATS * 4 <= MAX_STEPS  # every piece the reader accepts fits a default grid


def test_grid_wider_than_the_limit_is_refused():
    piece = Piece(notes=make_notes([(0, 1, 60), (MAX_BEATS - 1, 1, 62)]))
    rep = PianoRollRepresentation(steps_per_beat=96)
    with pytest.raises(Exception, match="grid steps is more than"):
        rep.encode(piece)


def test_words_remembered_between_fit_and_encode_stay_out_of_pickles():
    import pickle

    piece = make_piece([(0, 6, 60, 90, False), (6, 6, 64, 80, False)], [], [])
    rep = WordsRepresentation(source="midi").fit([piece])
    assert rep._codes_memo  # fit kept the piece's words for encode
    clone = pickle.loads(pickle.dumps(rep))  # what a DataLoader worker receives
    assert clone._codes_memo == {} and np.array_equal(clone.encode(piece), rep.encode(piece))
    assert rep._codes_memo == {} and rep._memo_tokens == 0  # used once, then let go
