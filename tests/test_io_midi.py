"""MIDI reading (mido, on the source's beat grid) and writing, and the pretty_midi bridges."""
from __future__ import annotations

import mido
import numpy as np
import pretty_midi
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fractalmusic.errors import PieceReadError
from fractalmusic.io import read_pieces, write_piece
from fractalmusic.io.midi import (
    key_signature,
    midi_key_name,
    piece_from_pretty_midi,
    piece_to_pretty_midi,
    plain_key,
    read_midi,
    write_midi,
)
from fractalmusic.piece import Piece, make_notes


def note_set(notes, res=480):
    """Notes as a sorted list of comparable tuples, times on a 1/res beat grid."""
    return sorted(
        (
            int(round(n["onset"] * res)),
            int(round(n["duration"] * res)),
            int(n["pitch"]),
            int(n["velocity"]),
            int(n["program"]),
            bool(n["is_drum"]),
        )
        for n in notes
    )


def demo_piece() -> Piece:
    notes = make_notes(
        [
            (0.0, 1.0, 60, 90, 0),
            (0.0, 2.0, 48, 70, 0),
            (1.0, 0.5, 62, 80, 0),
            (1.5, 0.25, 64, 100, 0),
            (2.0, 3.0, 67, 64, 40),  # a violin, on its own track and channel
            (3.0, 1.0 / 3, 72, 50, 40),  # a triplet quaver: 160 ticks
            (0.0, 0.25, 36, 110, 0, True),  # kick
            (0.5, 0.25, 42, 90, 0, True),  # hat
            (5.0, 1.5, 60, 90, 0),  # after the tempo and metre changes
        ]
    )
    return Piece(
        notes=notes,
        tempos=[(0.0, 100.0), (4.0, 150.0)],
        time_signatures=[(0.0, 4, 4), (4.0, 3, 4)],
        key="Bb",
        title="Demo",
    )


def test_round_trip_keeps_notes_tempos_metres_key(tmp_path):
    piece = demo_piece()
    path = write_midi(piece, tmp_path / "demo.mid")
    back = read_midi(path)
    assert note_set(back.notes) == note_set(piece.notes)
    assert back.tempos == [(0.0, 100.0), (4.0, 150.0)]
    assert back.time_signatures == [(0.0, 4, 4), (4.0, 3, 4)]
    assert back.key == "Bb"
    assert back.title == "Demo"
    assert back.source == str(path)
    assert back.notes["is_drum"].sum() == 2


def test_written_file_layout(tmp_path):
    path = write_midi(demo_piece(), tmp_path / "demo.mid")
    mf = mido.MidiFile(str(path))
    assert mf.type == 1 and mf.ticks_per_beat == 480
    channels_by_track = []
    for track in mf.tracks[1:]:
        channels_by_track.append({m.channel for m in track if m.type == "note_on"})
    # conductor + (program 0) + (program 40) + drums
    assert len(mf.tracks) == 4
    assert {9} in channels_by_track
    assert all(len(c) == 1 for c in channels_by_track)
    conductor = [m.type for m in mf.tracks[0]]
    assert conductor.count("set_tempo") == 2 and conductor.count("time_signature") == 2
    assert "key_signature" in conductor


def test_pretty_midi_reads_what_we_write(tmp_path):
    piece = demo_piece()
    path = write_piece(piece, tmp_path / "demo.midi")
    pm = pretty_midi.PrettyMIDI(str(path))
    got = sorted(n.pitch for inst in pm.instruments for n in inst.notes)
    assert got == sorted(piece.notes["pitch"].tolist())
    # seconds agree with our tempo map: the last note starts at beat 5 = 4 beats at 100 qpm + 1 at 150
    last = max(n.start for inst in pm.instruments for n in inst.notes)
    assert last == pytest.approx(4 * 0.6 + 0.4, abs=1e-3)
    assert any(inst.is_drum for inst in pm.instruments)
    assert {inst.program for inst in pm.instruments if not inst.is_drum} == {0, 40}


def test_pretty_midi_bridge_round_trip():
    piece = demo_piece()
    pm = piece.to_pretty_midi()
    assert isinstance(pm, pretty_midi.PrettyMIDI)
    back = Piece.from_pretty_midi(pm, source="x")
    assert note_set(back.notes) == note_set(piece.notes)
    assert back.tempos == [(0.0, 100.0), (4.0, 150.0)]
    assert back.time_signatures == [(0.0, 4, 4), (4.0, 3, 4)]
    assert back.key == "Bb"
    assert back.source == "x"
    # the module-level functions are the same thing
    assert note_set(piece_from_pretty_midi(piece_to_pretty_midi(piece)).notes) == note_set(piece.notes)


def _save(mf: mido.MidiFile, path) -> str:
    mf.save(str(path))
    return str(path)


def test_type0_file_with_programs_drums_and_velocity_zero_offs(tmp_path):
    mf = mido.MidiFile(type=0, ticks_per_beat=96)
    tr = mido.MidiTrack()
    tr += [
        mido.MetaMessage("track_name", name="Type Zero", time=0),
        mido.MetaMessage("set_tempo", tempo=500000, time=0),
        mido.MetaMessage("time_signature", numerator=6, denominator=8, time=0),
        mido.MetaMessage("key_signature", key="Em", time=0),
        mido.Message("program_change", channel=0, program=24, time=0),
        mido.Message("program_change", channel=1, program=33, time=0),
        mido.Message("note_on", channel=0, note=64, velocity=90, time=0),
        mido.Message("note_on", channel=1, note=40, velocity=70, time=0),
        mido.Message("note_on", channel=9, note=38, velocity=100, time=0),
        mido.Message("note_on", channel=9, note=38, velocity=0, time=24),  # velocity 0 = note off
        mido.Message("note_on", channel=0, note=64, velocity=0, time=120),  # tick 144 = 1.5 beats
        mido.MetaMessage("set_tempo", tempo=750000, time=48),  # tick 192: 80 qpm from beat 2
        mido.Message("note_off", channel=1, note=40, velocity=0, time=0),
        mido.MetaMessage("end_of_track", time=0),
    ]
    mf.tracks.append(tr)
    piece = read_midi(_save(mf, tmp_path / "t0.mid"))
    got = note_set(piece.notes, res=96)
    assert got == [
        (0, 24, 38, 100, 0, True),
        (0, 144, 64, 90, 24, False),
        (0, 192, 40, 70, 33, False),
    ]
    assert piece.notes["onset"].dtype == np.float64 and piece.notes["duration"][piece.notes["pitch"] == 64][0] == 1.5
    assert piece.tempos == [(0.0, 120.0), (2.0, 80.0)]
    assert piece.time_signatures == [(0.0, 6, 8)]
    assert piece.key == "Em"
    assert piece.title == "Type Zero"
    assert piece.meta["midi_type"] == 0 and piece.meta["ticks_per_beat"] == 96


def test_type1_many_tracks_program_changes_fifo_and_unclosed(tmp_path):
    mf = mido.MidiFile(type=1, ticks_per_beat=100)
    conductor = mido.MidiTrack([mido.MetaMessage("time_signature", numerator=3, denominator=4, time=300)])
    conductor.insert(0, mido.MetaMessage("set_tempo", tempo=400000, time=0))
    programs = mido.MidiTrack(
        [
            mido.Message("program_change", channel=2, program=10, time=0),
            mido.Message("program_change", channel=2, program=20, time=200),  # later notes on ch 2 are program 20
        ]
    )
    notes = mido.MidiTrack(
        [
            mido.Message("note_on", channel=2, note=60, velocity=50, time=0),  # A: 0..?
            mido.Message("note_on", channel=2, note=60, velocity=60, time=50),  # B: 50..? (same pitch, overlapping)
            mido.Message("note_off", channel=2, note=60, time=50),  # tick 100 closes A (first in, first out)
            mido.Message("note_off", channel=2, note=60, time=100),  # tick 200 closes B
            mido.Message("note_on", channel=2, note=67, velocity=70, time=50),  # tick 250, program 20, never closed
            mido.Message("control_change", channel=2, control=64, value=0, time=150),  # last event: tick 400
        ]
    )
    mf.tracks += [conductor, programs, notes]
    piece = read_midi(_save(mf, tmp_path / "t1.mid"))
    assert note_set(piece.notes, res=100) == [
        (0, 100, 60, 50, 10, False),
        (50, 150, 60, 60, 10, False),
        (250, 150, 67, 70, 20, False),  # closed at the end of the file
    ]
    assert piece.tempos == [(0.0, 150.0)]
    assert piece.time_signatures == [(0.0, 4, 4), (3.0, 3, 4)]  # MIDI's default 4/4 until the first change


@pytest.mark.parametrize(
    "content, reason",
    [
        (b"", "empty file"),
        (bytes(range(256)) * 8, "not a MIDI file"),
        (b"MThd\x00\x00\x00\x06\x00\x01\x00\x02\x01\xe0MTrk\x00\x00\x00\x40\x00\x90", "MIDI file"),
    ],
    ids=["empty", "random", "truncated"],
)
def test_bad_files_raise_piece_read_error(tmp_path, content, reason):
    path = tmp_path / "bad.mid"
    path.write_bytes(content)
    with pytest.raises(PieceReadError) as info:
        read_pieces(path)
    assert reason in info.value.reason
    assert info.value.path == str(path)
    assert "\n" not in str(info.value)


def test_file_without_notes_and_missing_file(tmp_path):
    mf = mido.MidiFile(type=1)
    mf.tracks.append(mido.MidiTrack([mido.MetaMessage("set_tempo", tempo=500000, time=0)]))
    path = _save(mf, tmp_path / "silent.mid")
    with pytest.raises(PieceReadError, match="no notes"):
        read_midi(path)
    with pytest.raises(PieceReadError, match="no such file"):
        read_midi(tmp_path / "absent.mid")


def test_key_names():
    assert plain_key("G minor") == "Gm"
    assert plain_key("Bb major") == "Bb"
    assert plain_key("f#m") == "F#m"
    assert plain_key("Ador") is None  # a mode is not a plain key
    assert midi_key_name("Ador") == "G"  # ...but it has G major's key signature
    assert midi_key_name("Dmix") == "G"
    assert key_signature("Ebm") == (-6, True)
    assert key_signature("HP") is None and key_signature(None) is None


grid_times = st.integers(min_value=0, max_value=4 * 480)


@settings(max_examples=25, deadline=None)
@given(
    rows=st.lists(
        st.tuples(
            grid_times, st.integers(1, 960), st.integers(0, 127), st.integers(1, 127), st.sampled_from([0, 5, 73])
        ),
        min_size=1,
        max_size=12,
    ),
    qpm=st.integers(30, 240),
)
def test_round_trip_property(tmp_path_factory, rows, qpm):
    # distinct (pitch, program) per note so that overlaps never make first-in-first-out ambiguous
    seen, clean = set(), []
    for on, dur, pitch, vel, prog in rows:
        if (pitch, prog) not in seen:
            seen.add((pitch, prog))
            clean.append((on / 480, dur / 480, pitch, vel, prog))
    piece = Piece(notes=make_notes(clean), tempos=[(0.0, float(qpm))])
    path = tmp_path_factory.mktemp("prop") / "p.mid"
    back = read_midi(write_midi(piece, path))
    assert note_set(back.notes) == note_set(piece.notes)
    assert back.tempos[0][1] == pytest.approx(qpm, rel=1e-5)
