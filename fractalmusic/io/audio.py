"""WAV rendering: FluidSynth with a SoundFont when available, else a small built-in synthesiser.

FluidSynth is used when the `fluidsynth` Python module imports (pyfluidsynth plus the libfluidsynth library:
`pip install fractalmusic[audio]`) and a SoundFont exists: the one given, else the TimGM6mb.sf2 that ships inside
pretty_midi. Otherwise the built-in synthesiser plays every pitched note as a piano-like additive tone (inharmonic
partials that decay faster the higher they are, two slightly detuned strings for the lowest partials, a short
attack, a two-stage decay and a release) and every drum note as a short filtered noise burst. Output is
peak-normalised 16-bit PCM mono, written with the standard-library `wave` module.
"""
from __future__ import annotations

import wave
from pathlib import Path

import numpy as np

from fractalmusic.errors import ConfigError, FractalMusicError
from fractalmusic.limits import check_wav_seconds
from fractalmusic.piece import Piece

RELEASE_SECONDS = 0.25  # every note fades out over this time after it ends; the file ends with this tail
ATTACK_SECONDS = 0.004
PEAK = 0.89  # about -1 dBFS
MAX_PARTIALS = 10
TONE_SECONDS = 60.0  # a held tone is synthesised this long at most: by then even the lowest string is silent


# ---------------------------------------------------------------------------------------------------- FluidSynth


def fluidsynth_available() -> bool:
    try:
        import fluidsynth  # noqa: F401
    except Exception:  # ImportError, or OSError when the shared library is missing
        return False
    return True


def bundled_soundfont() -> Path | None:
    """pretty_midi's TimGM6mb.sf2, if the installed pretty_midi carries it."""
    try:
        import pretty_midi
    except ImportError:
        return None
    path = Path(pretty_midi.__file__).parent / "TimGM6mb.sf2"
    return path if path.is_file() else None


def _render_fluidsynth(piece: Piece, soundfont: Path, sample_rate: int) -> np.ndarray:
    from fractalmusic.io.midi import piece_to_pretty_midi

    pm = piece_to_pretty_midi(piece)
    return np.asarray(pm.fluidsynth(fs=sample_rate, sf2_path=str(soundfont)), dtype=np.float64)


# ---------------------------------------------------------------------------------------------------- built-in synth


def _tone_template(
    pitch: int, length: int, sample_rate: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """(fundamental, upper partials) of a struck string at `pitch`, `length` samples long, before velocity."""
    f0 = 440.0 * 2.0 ** ((pitch - 69) / 12.0)
    t = np.arange(length, dtype=np.float64) / sample_rate
    nyquist = 0.45 * sample_rate
    inharm = 1.2e-4 * (f0 / 261.6) ** 0.5  # stiffer (higher) strings stretch their partials more
    tau1 = float(np.clip(2.8 * (261.6 / f0) ** 0.6, 0.35, 7.0))  # low notes ring longer
    fund = np.zeros(length, dtype=np.float64)
    upper = np.zeros(length, dtype=np.float64)
    for k in range(1, MAX_PARTIALS + 1):
        fk = k * f0 * np.sqrt(1.0 + inharm * k * k)
        if fk >= nyquist:
            break
        amp = 1.0 / k**1.15
        tau = tau1 / (1.0 + 0.7 * (k - 1))
        env = 0.75 * np.exp(-t / (0.35 * tau)) + 0.25 * np.exp(-t / (2.5 * tau))  # prompt sound, aftersound
        phase = rng.uniform(0, 2 * np.pi)
        wave_k = np.sin(2 * np.pi * fk * t + phase)
        if k <= 3:  # a second string a cent or so sharp: the slow beating of a real piano's unison
            wave_k = 0.5 * (wave_k + np.sin(2 * np.pi * fk * 1.0007 * t + phase + 1.0))
        target = fund if k == 1 else upper
        target += amp * env * wave_k
    attack = min(int(ATTACK_SECONDS * sample_rate), length)
    if attack > 1:
        ramp = 0.5 - 0.5 * np.cos(np.linspace(0, np.pi, attack))
        fund[:attack] *= ramp
        upper[:attack] *= ramp
    return fund, upper


def _band_noise(n: int, sample_rate: int, lo: float, hi: float, rng: np.random.Generator) -> np.ndarray:
    """White noise restricted to [lo, hi] Hz in the frequency domain (no per-sample Python loop)."""
    if n <= 0:
        return np.zeros(0)
    spec = np.fft.rfft(rng.standard_normal(n))
    freqs = np.fft.rfftfreq(n, 1.0 / sample_rate)
    spec[(freqs < lo) | (freqs > hi)] = 0
    out = np.fft.irfft(spec, n)
    peak = np.max(np.abs(out))
    return out / peak if peak > 0 else out


def _drum_template(pitch: int, sample_rate: int, rng: np.random.Generator) -> np.ndarray:
    """A one-shot for a General MIDI drum key: kicks and toms are falling sines plus a click, the rest noise."""
    nyq = sample_rate / 2 - 1
    if pitch in (35, 36):  # kick
        n = int(0.35 * sample_rate)
        t = np.arange(n) / sample_rate
        freq = 50 + 90 * np.exp(-t / 0.04)
        body = np.sin(2 * np.pi * np.cumsum(freq) / sample_rate) * np.exp(-t / 0.12)
        return body + 0.3 * _band_noise(n, sample_rate, 20, 900, rng) * np.exp(-t / 0.01)
    if pitch in (41, 43, 45, 47, 48, 50):  # toms, low to high
        n = int(0.4 * sample_rate)
        t = np.arange(n) / sample_rate
        base = 80 + (pitch - 41) * 14
        freq = base * (1 + 0.5 * np.exp(-t / 0.05))
        body = np.sin(2 * np.pi * np.cumsum(freq) / sample_rate) * np.exp(-t / 0.15)
        return body + 0.2 * _band_noise(n, sample_rate, 200, 3000, rng) * np.exp(-t / 0.02)
    if pitch in (38, 40, 37, 39):  # snares, side stick, clap
        n = int(0.25 * sample_rate)
        t = np.arange(n) / sample_rate
        tone = np.sin(2 * np.pi * 190 * t) * np.exp(-t / 0.05)
        return 0.5 * tone + _band_noise(n, sample_rate, 1000, min(9000, nyq), rng) * np.exp(-t / 0.06)
    if pitch in (42, 44):  # closed and pedal hi-hat
        dur, tau, lo = 0.08, 0.02, 6000
    elif pitch == 46:  # open hi-hat
        dur, tau, lo = 0.4, 0.12, 5500
    elif pitch in (49, 51, 52, 53, 55, 57, 59):  # crash, ride, china, splash
        dur, tau, lo = 1.2, 0.4, 3500
    else:  # anything else: a short mid-range burst
        dur, tau, lo = 0.15, 0.04, 800 + 40 * (pitch % 32)
    n = int(dur * sample_rate)
    t = np.arange(n) / sample_rate
    lo = min(lo, nyq * 0.6)
    return _band_noise(n, sample_rate, lo, nyq, rng) * np.exp(-t / tau)


def synthesize(piece: Piece, sample_rate: int = 22050) -> np.ndarray:
    """Render with the built-in synthesiser: float64 samples, peak-normalised, length = ceil((piece seconds +
    RELEASE_SECONDS) * sample_rate)."""
    sr = int(sample_rate)
    check_wav_seconds(float(piece.end_seconds) + RELEASE_SECONDS, _what(piece))
    total = int(np.ceil((piece.end_seconds + RELEASE_SECONDS) * sr))
    out = np.zeros(total, dtype=np.float64)
    notes = piece.notes
    if not len(notes):
        return out
    start_s = piece.seconds(notes["onset"])
    end_s = piece.seconds(notes["onset"] + notes["duration"])
    starts = np.round(start_s * sr).astype(np.int64)
    held = np.maximum(np.round(end_s * sr).astype(np.int64) - starts, 1)
    release = int(round(RELEASE_SECONDS * sr))
    fade = np.cos(np.linspace(0, np.pi / 2, release)) ** 2 if release else np.zeros(0)
    vel = notes["velocity"].astype(np.float64) / 127.0
    gains = 0.25 * vel**1.6

    pitched = np.flatnonzero(~notes["is_drum"])
    for pitch in np.unique(notes["pitch"][pitched]):
        idx = pitched[notes["pitch"][pitched] == pitch]
        rng = np.random.default_rng(int(pitch))
        longest = int(TONE_SECONDS * sr)
        length = min(int(held[idx].max()) + release, longest)
        fund, upper = _tone_template(int(pitch), length, sr, rng)
        for i in idx:
            n_on = int(held[i])
            n = min(n_on + release, length)  # past the template the tone has died away: nothing to add
            s = int(starts[i])
            stop = min(s + n, total)
            if stop <= s:
                continue
            bright = 0.35 + 0.65 * vel[i]
            seg = fund[:n] + bright * upper[:n]
            if n_on < n:
                seg[n_on:] *= fade[: n - n_on]
            out[s:stop] += gains[i] * seg[: stop - s]

    drums = np.flatnonzero(notes["is_drum"])
    templates: dict[int, np.ndarray] = {}
    for i in drums:
        p = int(notes["pitch"][i])
        if p not in templates:
            templates[p] = _drum_template(p, sr, np.random.default_rng(1000 + p))
        one_shot = templates[p]
        s = int(starts[i])
        stop = min(s + len(one_shot), total)
        if stop > s:
            out[s:stop] += 1.5 * gains[i] * one_shot[: stop - s]

    peak = np.max(np.abs(out))
    if peak > 0:
        out *= PEAK / peak
    return out


# ---------------------------------------------------------------------------------------------------- files


def _what(piece: Piece) -> str:
    return str(piece.source or piece.title or "the piece")


def write_wav(samples: np.ndarray, path, sample_rate: int) -> Path:
    """Peak-normalise float samples and write them as 16-bit PCM mono."""
    path = Path(path)
    x = np.asarray(samples, dtype=np.float64).ravel()
    check_wav_seconds(len(x) / float(sample_rate), "the audio")
    peak = np.max(np.abs(x)) if len(x) else 0.0
    scale = 32767 * (PEAK / peak if peak > 0 else 1.0)
    pcm = np.clip(np.round(x * scale), -32768, 32767).astype("<i2")
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(int(sample_rate))
        w.writeframes(pcm.tobytes())
    return path


def render_wav(piece: Piece, path, soundfont=None, sample_rate: int = 22050) -> Path:
    """Render a piece to a WAV file (see the module docstring for which renderer is used)."""
    if not isinstance(sample_rate, (int, np.integer)) or not 4000 <= int(sample_rate) <= 192000:
        raise ConfigError(f"sample rate must be an integer between 4000 and 192000, not {sample_rate!r}")
    sr = int(sample_rate)
    check_wav_seconds(float(piece.end_seconds) + RELEASE_SECONDS, _what(piece))  # before FluidSynth allocates
    if soundfont is not None:
        sf = Path(soundfont).expanduser()
        if not sf.is_file():
            raise FractalMusicError(f"soundfont not found: {sf}")
        if not fluidsynth_available():
            raise FractalMusicError(
                "rendering with a SoundFont needs FluidSynth: install the libfluidsynth library "
                "(e.g. apt install fluidsynth) and `pip install fractalmusic[audio]`"
            )
        audio = _render_fluidsynth(piece, sf, sr)
    else:
        sf = bundled_soundfont()
        audio = None
        if sf is not None and fluidsynth_available():
            try:
                audio = _render_fluidsynth(piece, sf, sr)
            except Exception:  # a broken FluidSynth install: the built-in synthesiser still works
                audio = None
        if audio is None:
            audio = synthesize(piece, sr)
    return write_wav(audio, path, sr)
