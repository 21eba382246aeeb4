"""A tiny generated corpus: a few short tunes made from a seed, as `Piece`s, as an ABC book or as MIDI files.

Every tune is in C major, 4/4, eighth-note grid (L:1/8), 120 quarter notes per minute, within C4..B5, so the same
notes read the same whatever the representation: the ABC text and the note array of a piece agree exactly, and
every onset and duration is a whole number of sixteenth steps. No network, no music21 parse needed.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from fractalmusic.piece import Piece, make_notes

# C major from C4 (60) to B5 (83): (MIDI pitch, ABC name)
_SCALE = [(60, "C"), (62, "D"), (64, "E"), (65, "F"), (67, "G"), (69, "A"), (71, "B"),
          (72, "c"), (74, "d"), (76, "e"), (77, "f"), (79, "g"), (81, "a"), (83, "b")]  # fmt: skip
# each tune keeps to 8 scale notes from one of these starts (tune 0: E4..e5, so it moves a few semitones either way
# without ABC octave marks), and ends on c (C5); together the tunes use every letter in both octaves
_WINDOW = 8
_STARTS = (2, 0, 6, 4, 1, 3, 5, 2)
_FINAL = 7
_EIGHTHS_PER_BAR = 8
_DURATIONS = (1, 1, 1, 2, 2, 3, 4)  # in eighths; drawn with these weights (repeats = more likely)


def _tune(index: int, bars: int, rng: np.random.Generator) -> tuple[str, np.ndarray]:
    """One tune: (ABC text, notes). A stepwise melody that ends on a long C."""
    rows: list[tuple[float, float, int]] = []
    body: list[str] = []
    low = _STARTS[index % len(_STARTS)]
    high = low + _WINDOW - 1
    degree = int(rng.integers(low, high + 1))
    eighth = 0
    for bar in range(bars):
        left = _EIGHTHS_PER_BAR
        bar_text = []
        last_bar = bar == bars - 1
        while left > 0:
            if last_bar and left <= 4:
                dur, degree = left, _FINAL  # a final C of the remaining length
            else:
                dur = min(int(rng.choice(_DURATIONS)), left)
                degree = int(np.clip(degree + rng.integers(-2, 3), low, high))
            pitch, name = _SCALE[degree]
            rows.append((eighth * 0.5, dur * 0.5, pitch))
            bar_text.append(name + (str(dur) if dur > 1 else ""))
            eighth += dur
            left -= dur
        body.append("".join(bar_text))
    lines = [" | ".join(body[i:i + 4]) for i in range(0, len(body), 4)]
    text = "\n".join(
        [f"X:{index + 1}", f"T:Tiny tune {index + 1}", "M:4/4", "L:1/8", "Q:1/4=120", "K:C"]
        + [line + (" |]" if i == len(lines) - 1 else " |") for i, line in enumerate(lines)]
    )
    return text + "\n", make_notes(rows)


def tiny_tunes(n: int = 8, bars: int = 8, seed: int = 0) -> list[tuple[str, np.ndarray]]:
    """`n` tunes of `bars` 4/4 bars as (ABC text, note array), the same for the same seed."""
    rng = np.random.default_rng([seed, 2024])
    return [_tune(i, bars, rng) for i in range(n)]


def tiny_pieces(n: int = 8, bars: int = 8, seed: int = 0) -> list[Piece]:
    """The tunes as Pieces with both their notes and their ABC text (`piece.abc`)."""
    out = []
    for i, (text, notes) in enumerate(tiny_tunes(n, bars, seed)):
        out.append(
            Piece(
                notes=notes,
                tempos=[(0.0, 120.0)],
                time_signatures=[(0.0, 4, 4)],
                key="C",
                title=f"Tiny tune {i + 1}",
                abc=text,
                source=f"tiny:{i}",
            )
        )
    return out


def write_abc_book(path, n: int = 8, bars: int = 8, seed: int = 0) -> Path:
    """One ABC file holding the `n` tunes (a tune book, blank line between tunes)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(text for text, _ in tiny_tunes(n, bars, seed)), encoding="utf-8")
    return path


def write_midi_files(folder, n: int = 8, bars: int = 8, seed: int = 0) -> Path:
    """`n` MIDI files tune_000.mid ... in `folder` (created); returns the folder."""
    from fractalmusic.io.midi import write_midi

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for i, piece in enumerate(tiny_pieces(n, bars, seed)):
        write_midi(piece, folder / f"tune_{i:03d}.mid")
    return folder


def write_tiny_corpus(folder, fmt: str = "abc", n: int = 8, bars: int = 8, seed: int = 0) -> Path:
    """The tiny corpus under `folder` in `fmt` ("abc": one tune book, "midi": a folder of MIDI files); the path to
    give `fmusic train --data`."""
    folder = Path(folder)
    if fmt == "abc":
        return write_abc_book(folder / "tiny.abc", n, bars, seed)
    if fmt in ("midi", "mid"):
        return write_midi_files(folder / "tiny_midi", n, bars, seed)
    raise ValueError(f"tiny corpus format must be 'abc' or 'midi', not {fmt!r}")
