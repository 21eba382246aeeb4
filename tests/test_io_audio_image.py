"""WAV (built-in synthesiser, SoundFont errors) and PNG (piano roll, grids)."""
from __future__ import annotations

import wave

import numpy as np
import pytest

from fractalmusic.errors import FractalMusicError
from fractalmusic.io import audio, write_piece
from fractalmusic.io.audio import RELEASE_SECONDS, bundled_soundfont, render_wav, synthesize
from fractalmusic.io.image import note_name, render_grids_png, render_png, roll_image
from fractalmusic.piece import Piece, make_notes

SR = 22050


def read_wav(path) -> tuple[np.ndarray, int]:
    with wave.open(str(path), "rb") as w:
        assert w.getnchannels() == 1 and w.getsampwidth() == 2
        data = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2")
        return data.astype(np.float64) / 32767, w.getframerate()


def peak_frequency(x: np.ndarray, sr: int) -> float:
    spec = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    return float(np.fft.rfftfreq(len(x), 1 / sr)[np.argmax(spec)])


@pytest.mark.parametrize("pitch", [57, 69, 76])
def test_synth_plays_the_right_pitch_for_the_right_time(pitch):
    piece = Piece(notes=make_notes([(0.0, 2.0, pitch, 100)]), tempos=[(0.0, 120.0)])  # one second
    x = synthesize(piece, SR)
    assert len(x) == int(np.ceil((1.0 + RELEASE_SECONDS) * SR))
    assert np.max(np.abs(x)) == pytest.approx(audio.PEAK)
    f0 = 440.0 * 2 ** ((pitch - 69) / 12)
    assert abs(peak_frequency(x[: SR // 2], SR) - f0) < 0.02 * f0
    # the note has decayed by its end and the release silences it
    assert np.abs(x[-50:]).max() < 0.01


def test_synth_timing_follows_the_tempo_map_and_velocity():
    notes = make_notes([(0.0, 1.0, 60, 30), (4.0, 1.0, 60, 120)])
    piece = Piece(notes=notes, tempos=[(0.0, 60.0), (2.0, 120.0)])  # beat 4 = 2 s + 1 s = 3 s
    x = synthesize(piece, SR)
    assert len(x) == int(np.ceil((3.5 + RELEASE_SECONDS) * SR))
    quiet = np.sqrt(np.mean(x[: SR // 2] ** 2))
    gap = np.sqrt(np.mean(x[int(1.6 * SR) : int(2.9 * SR)] ** 2))
    loud = np.sqrt(np.mean(x[3 * SR : int(3.5 * SR)] ** 2))
    assert loud > 3 * quiet > 0
    assert gap < 0.05 * quiet


def test_drums_are_short_noise_bursts():
    piece = Piece(notes=make_notes([(0.0, 4.0, 38, 100, 0, True), (0.0, 4.0, 42, 100, 0, True)]))
    x = synthesize(piece, SR)
    assert len(x) == int(np.ceil((2.0 + RELEASE_SECONDS) * SR))
    energy = x**2
    assert energy[: int(0.3 * SR)].sum() > 0.99 * energy.sum()  # a hit, not a held tone
    spec = np.abs(np.fft.rfft(x[: int(0.3 * SR)]))
    freqs = np.fft.rfftfreq(int(0.3 * SR), 1 / SR)
    assert spec[freqs > 4000].sum() > 0.2 * spec.sum()  # broadband: lots of energy up high


def test_wav_file_and_empty_piece(tmp_path):
    piece = Piece(notes=make_notes([(0.0, 1.0, 64, 90), (0.5, 1.0, 67, 90), (1.0, 1.0, 36, 100, 0, True)]))
    path = render_wav(piece, tmp_path / "a.wav")
    x, sr = read_wav(path)
    assert sr == SR
    assert len(x) == int(np.ceil((piece.end_seconds + RELEASE_SECONDS) * SR))
    assert np.abs(x).max() == pytest.approx(audio.PEAK, abs=1e-3)
    silent, _ = read_wav(render_wav(Piece(), tmp_path / "silent.wav", sample_rate=8000))
    assert len(silent) == int(np.ceil(RELEASE_SECONDS * 8000)) and not silent.any()
    with pytest.raises(FractalMusicError, match="sample rate"):
        render_wav(piece, tmp_path / "b.wav", sample_rate=10)


def test_soundfont_errors(tmp_path, monkeypatch):
    piece = Piece(notes=make_notes([(0.0, 1.0, 60)]))
    with pytest.raises(FractalMusicError, match="soundfont not found"):
        render_wav(piece, tmp_path / "a.wav", soundfont=tmp_path / "missing.sf2")
    sf2 = tmp_path / "fake.sf2"
    sf2.write_bytes(b"RIFF")
    monkeypatch.setattr(audio, "fluidsynth_available", lambda: False)
    with pytest.raises(FractalMusicError, match=r"libfluidsynth.*fractalmusic\[audio\]"):
        render_wav(piece, tmp_path / "a.wav", soundfont=sf2)
    # without an explicit soundfont the built-in synthesiser steps in
    assert render_wav(piece, tmp_path / "ok.wav").stat().st_size > 1000


def test_fluidsynth_path_is_used_when_available(tmp_path, monkeypatch):
    import pretty_midi

    calls = []

    def fake_fluidsynth(self, fs=44100, sf2_path=None):
        calls.append((fs, sf2_path, sum(len(i.notes) for i in self.instruments)))
        return 0.1 * np.sin(np.arange(fs) * 2 * np.pi * 440 / fs)

    monkeypatch.setattr(audio, "fluidsynth_available", lambda: True)
    monkeypatch.setattr(pretty_midi.PrettyMIDI, "fluidsynth", fake_fluidsynth)
    sf2 = tmp_path / "mine.sf2"
    sf2.write_bytes(b"RIFF")
    piece = Piece(notes=make_notes([(0.0, 1.0, 60), (1.0, 1.0, 64)]))
    x, sr = read_wav(render_wav(piece, tmp_path / "fs.wav", soundfont=sf2, sample_rate=16000))
    assert calls == [(16000, str(sf2), 2)]
    assert sr == 16000 and len(x) == 16000 and np.abs(x).max() == pytest.approx(audio.PEAK, abs=1e-3)
    if bundled_soundfont() is not None:  # no soundfont given: pretty_midi's own
        render_wav(piece, tmp_path / "fs2.wav")
        assert calls[-1][1] == str(bundled_soundfont())


def test_bundled_soundfont_is_pretty_midis():
    sf = bundled_soundfont()
    assert sf is None or sf.name == "TimGM6mb.sf2"


# ---------------------------------------------------------------------------------------------------- images


def test_note_names():
    assert note_name(60) == "C4" and note_name(21) == "A0" and note_name(61) == "C#4" and note_name(48) == "C3"


def test_roll_image_separates_repeated_notes():
    piece = Piece(notes=make_notes([(0.0, 1.0, 60), (1.0, 1.0, 60), (0.5, 0.25, 40, 100, 0, True)]))
    img, lo, hi = roll_image(piece, steps_per_beat=4)
    assert img.shape == (hi - lo + 1, 8, 4)
    row = img[60 - lo]
    onset = row[0, :3]
    assert np.allclose(row[4, :3], onset)  # the second crotchet has its own onset
    assert not np.allclose(row[1, :3], onset)  # sustain differs from onset
    assert np.all(row[:, 3] == 1.0)
    assert img[40 - lo, 2, 3] == 1.0 and not np.allclose(img[40 - lo, 2, :3], onset)  # drums in their own colour
    assert np.all(img[50 - lo, :, 3] == 0.0)  # silence is transparent


def _png_pixels(path) -> np.ndarray:
    from matplotlib import image

    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return image.imread(str(path))[..., :3]


def test_render_png(tmp_path):
    rows = [(b * 0.5, 0.5, 60 + (b * 7) % 24, 90) for b in range(64)] + [(b, 1.0, 48, 60) for b in range(32)]
    piece = Piece(notes=make_notes(rows), time_signatures=[(0.0, 3, 4)], title="Scale")
    path = write_piece(piece, tmp_path / "c.png")
    px = _png_pixels(path)
    assert px.shape[1] > 600 and px.shape[0] > 250
    dark = np.all(np.abs(px - np.array([0.05, 0.15, 0.45])) < 0.06, axis=-1)
    assert dark.sum() > 100  # onsets are drawn
    empty = render_png(Piece(), tmp_path / "empty.png", title="nothing")
    assert empty.stat().st_size > 1000


def test_render_grids_png(tmp_path):
    a = np.zeros((128, 64), dtype=np.int64)
    a[60, 0] = 2
    a[60, 1:8] = 1
    b = np.zeros((128, 32), dtype=np.int64)
    b[72, 4] = 3
    b[72, 5:16] = 1
    path = render_grids_png([a, b], tmp_path / "g.png", titles=["a", "b"])
    px = _png_pixels(path)
    onset = np.all(np.abs(px - np.array([0.05, 0.15, 0.45])) < 0.06, axis=-1).sum()
    sustain = np.all(np.abs(px - np.array([0.40, 0.58, 0.90])) < 0.06, axis=-1).sum()
    assert onset > 0 and sustain > onset  # both kinds visible, and distinct
    with pytest.raises(ValueError, match=r"\[128, T\]"):
        render_grids_png([np.zeros((64, 10))], tmp_path / "bad.png")
