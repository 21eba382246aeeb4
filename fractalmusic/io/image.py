"""PNG piano-roll pictures with matplotlib's Agg renderer.

The roll is drawn as one image (not a patch per note), so a long MIDI file renders as fast as a short one. We use
`matplotlib.figure.Figure` with `FigureCanvasAgg` directly and never import pyplot: no global backend switch, no
figure manager, nothing left open in a notebook or a training process.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from fractalmusic.limits import MAX_PNG_STEPS, png_steps_per_beat
from fractalmusic.piece import Piece

NOTE_NAMES = ["C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B"]

# colours (RGB 0..1)
_BACKGROUND = np.array([1.0, 1.0, 1.0])  # silence in the grid pictures
_SUSTAIN_SOFT = np.array([0.78, 0.86, 0.97])
_SUSTAIN_LOUD = np.array([0.40, 0.58, 0.90])
_ONSET = np.array([0.05, 0.15, 0.45])
_DRUM_SUSTAIN = np.array([0.99, 0.80, 0.55])
_DRUM_ONSET = np.array([0.80, 0.35, 0.00])


def note_name(pitch: int) -> str:
    """MIDI pitch -> scientific name with middle C = C4 (60 -> 'C4', 21 -> 'A0')."""
    return f"{NOTE_NAMES[pitch % 12]}{pitch // 12 - 1}"


def _figure(width: float, height: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(fig)
    return fig


def _pitch_axis(ax, lo: int, hi: int) -> None:
    cs = [p for p in range(lo, hi + 1) if p % 12 == 0]
    if len(cs) < 2:  # a narrow range: label every third semitone instead of only the Cs
        cs = list(range(lo, hi + 1, max(1, (hi - lo) // 6 or 1)))
    ax.set_yticks(cs)
    ax.set_yticklabels([note_name(p) for p in cs], fontsize=8)
    ax.hlines([p - 0.5 for p in cs if p % 12 == 0], *ax.get_xlim(), colors="0.85", linewidth=0.5, zorder=1)
    ax.set_ylabel("pitch")


def roll_image(piece: Piece, steps_per_beat: float = 4) -> tuple[np.ndarray, int, int]:
    """(RGBA image [pitches, steps, 4], lowest pitch, highest pitch) of a piece on a 1/steps_per_beat grid;
    silence is transparent so that guide lines behind the roll stay visible. `steps_per_beat` may be a fraction
    (a long piece drawn coarser); the image is never wider than `limits.MAX_PNG_STEPS` columns."""
    steps_per_beat = png_steps_per_beat(piece.end_beat, steps_per_beat)
    notes = piece.notes
    if len(notes):
        lo = max(int(notes["pitch"].min()) - 2, 0)
        hi = min(int(notes["pitch"].max()) + 2, 127)
    else:
        lo, hi = 48, 84
    if hi - lo < 12:
        mid = (hi + lo) // 2
        lo, hi = max(mid - 6, 0), min(mid + 6, 127)
    steps = min(max(int(np.ceil(piece.end_beat * steps_per_beat)), 1), MAX_PNG_STEPS)
    img = np.zeros((hi - lo + 1, steps, 4), dtype=np.float32)
    on = np.floor(notes["onset"] * steps_per_beat + 1e-9).astype(np.int64)
    off = np.maximum(np.ceil((notes["onset"] + notes["duration"]) * steps_per_beat - 1e-9).astype(np.int64), on + 1)
    order = np.argsort(notes["velocity"], kind="stable")  # louder notes drawn last
    for i in order:
        row = int(notes["pitch"][i]) - lo
        a, b = int(on[i]), min(int(off[i]), steps)
        if a >= steps:
            continue
        v = float(notes["velocity"][i]) / 127.0
        if notes["is_drum"][i]:
            img[row, a:b, :3] = _DRUM_SUSTAIN
            img[row, a, :3] = _DRUM_ONSET
        else:
            img[row, a:b, :3] = (1 - v) * _SUSTAIN_SOFT + v * _SUSTAIN_LOUD
            img[row, a, :3] = _ONSET
        img[row, a:b, 3] = 1.0
    return img, lo, hi


def render_png(piece: Piece, path, steps_per_beat: int = 4, title: str | None = None) -> Path:
    """A piano-roll picture: pitch up the side (C3, C4...), beats along the bottom, bar numbers along the top,
    bar lines from the piece's time signatures, onsets darker than sustains, drums in orange."""
    path = Path(path)
    img, lo, hi = roll_image(piece, steps_per_beat)
    beats = img.shape[1] / png_steps_per_beat(piece.end_beat, steps_per_beat)
    width = float(np.clip(3.0 + beats * 0.12, 6.0, 40.0))
    height = float(np.clip(2.0 + (hi - lo) * 0.06, 3.0, 10.0))
    fig = _figure(width, height)
    ax = fig.add_subplot(1, 1, 1)
    ax.imshow(
        img,
        origin="lower",
        aspect="auto",
        interpolation="nearest",
        extent=(0, beats, lo - 0.5, hi + 0.5),
        zorder=2,
    )
    ax.set_xlim(0, beats)
    ax.set_ylim(lo - 0.5, hi + 0.5)
    _pitch_axis(ax, lo, hi)
    ax.set_xlabel("beats")
    bars = _bar_lines(piece, beats)
    if len(bars):
        ax.vlines(bars, lo - 0.5, hi + 0.5, colors="0.45", linewidth=0.6, zorder=3)
        top = ax.twiny()
        top.set_xlim(ax.get_xlim())
        every = max(1, int(np.ceil(len(bars) / 40)))
        top.set_xticks(bars[::every])
        first = 0 if piece.meta.get("pickup_beats") else 1  # a pickup bar is bar 0, as in scores
        top.set_xticklabels([str(k + first) for k in range(0, len(bars), every)], fontsize=7)
        top.set_xlabel("bar", fontsize=8)
    name = title or piece.title or (Path(piece.source.split("#")[0]).name if piece.source else None) or "piano roll"
    ax.set_title(name, fontsize=10, pad=22 if len(bars) else 6)
    if not len(piece.notes):
        ax.text(beats / 2, (lo + hi) / 2, "no notes", ha="center", va="center", color="0.5")
    fig.tight_layout()
    fig.savefig(str(path), format="png")
    return path


MAX_BAR_LINES = 2000  # more would be a grey wash at 4,000 pixels: a long piece is drawn without bar lines


def _bar_lines(piece: Piece, beats: float) -> np.ndarray:
    """The piece's bar lines up to `beats`, or none if there would be more than MAX_BAR_LINES (computing them is
    a Python loop per bar)."""
    sigs = sorted(piece.time_signatures) or [(0.0, 4, 4)]
    shortest = min((num * 4.0 / den for _, num, den in sigs if num > 0 and den > 0), default=4.0)
    if beats / shortest > MAX_BAR_LINES:
        return np.zeros(0)
    return piece.bar_lines(until_beat=beats)


def render_grids_png(
    grids: Sequence[np.ndarray],
    path,
    titles: Sequence[str] | None = None,
    steps_per_beat: int = 4,
) -> Path:
    """Several [128, T] cell grids stacked in one figure (0 silence, 1 sustain, >= 2 onset), sharing one pitch
    range; onsets are dark, sustains light, and a faint line marks every 4 beats."""
    from matplotlib.colors import ListedColormap

    path = Path(path)
    arrays = [np.asarray(g) for g in grids]
    if not arrays:
        raise ValueError("render_grids_png needs at least one grid")
    for g in arrays:
        if g.ndim != 2 or g.shape[0] != 128:
            raise ValueError(f"expected [128, T] grids, got shape {tuple(g.shape)}")
    active = np.flatnonzero(np.any(np.stack([np.any(g > 0, axis=1) for g in arrays]), axis=0))
    if len(active):
        lo, hi = max(int(active.min()) - 2, 0), min(int(active.max()) + 2, 127)
    else:
        lo, hi = 48, 84
    if hi - lo < 12:
        mid = (hi + lo) // 2
        lo, hi = max(mid - 6, 0), min(mid + 6, 127)
    widest = max(g.shape[1] for g in arrays)
    width = float(np.clip(3.0 + widest * 0.03, 6.0, 30.0))
    row_h = float(np.clip(1.0 + (hi - lo) * 0.04, 1.8, 5.0))
    fig = _figure(width, row_h * len(arrays) + 0.6)
    cmap = ListedColormap([_BACKGROUND, _SUSTAIN_LOUD, _ONSET])
    for k, g in enumerate(arrays):
        ax = fig.add_subplot(len(arrays), 1, k + 1)
        codes = np.clip(g[lo : hi + 1].astype(np.int64), 0, 2)
        beats = g.shape[1] / steps_per_beat
        ax.imshow(
            codes,
            origin="lower",
            aspect="auto",
            interpolation="nearest",
            cmap=cmap,
            vmin=0,
            vmax=2,
            extent=(0, beats, lo - 0.5, hi + 0.5),
            zorder=2,
        )
        ax.set_xlim(0, widest / steps_per_beat)
        ax.set_ylim(lo - 0.5, hi + 0.5)
        _pitch_axis(ax, lo, hi)
        ax.vlines(np.arange(4, beats, 4), lo - 0.5, hi + 0.5, colors="0.6", linewidth=0.4, zorder=3)
        if titles is not None and k < len(titles) and titles[k]:
            ax.set_title(str(titles[k]), fontsize=9)
        if k == len(arrays) - 1:
            ax.set_xlabel("beats")
    fig.tight_layout()
    fig.savefig(str(path), format="png")
    return path
