"""Note-level statistics of one `Piece`, after mgeval (Yang & Lerch 2018) and the metrics of Dong et al. (2018).

Every function takes a `Piece` and returns a float (or, for the note-length histogram, a numpy vector); a metric that
is undefined for a piece (an empty piece, a single onset for the inter-onset interval) is NaN, and set statistics
skip NaN values. Drum notes are left out of every metric: they have no pitch in the musical sense, and a drum track
would swamp polyphony and onset statistics.

Bars come from the piece's time-signature map (`Piece.bar_lines`); times are in beats (quarter notes).

Definitions (one line each, also in `METRIC_INFO`):

* pitch_count: distinct MIDI pitches used in the whole piece.
* pitch_count_per_bar: distinct pitches sounding in a bar, mean over all bars (silent bars count as 0).
* pitch_class_count_per_bar: distinct pitch classes sounding in a bar, mean over all bars.
* pitch_range: highest minus lowest pitch, in semitones.
* pitch_class_entropy: Shannon entropy in bits of the pitch-class histogram (one count per note), 0 .. log2(12).
* polyphony: mean number of notes sounding at once, over the time when at least one note sounds (time-weighted).
* polyphony_rate: share of the sounding time during which more than one note sounds.
* notes_per_beat: number of notes divided by the piece's length in beats (from beat 0 to the last note-off).
* note_length_hist: share of notes in each duration class of `NOTE_LENGTH_EDGES` (beats).
* ioi: mean inter-onset interval in beats, between consecutive distinct onset times.
* empty_beat_rate: share of the beats [k, k+1) up to the end of the piece in which no note sounds.
* scale_consistency: largest share of notes whose pitch class lies in one major or harmonic-minor scale (24 scales).
* groove_consistency: 1 - mean normalised Hamming distance between the onset patterns (16th-note grid) of all
  pairs of bars.

Polyphony is measured in continuous time (exactly, from note boundaries) rather than on a sampled grid, so it does not
depend on a choice of resolution.
"""
from __future__ import annotations

import math

import numpy as np

from fractalmusic.piece import Piece

# Duration classes in beats. Upper edges sit between the usual values, so each class holds one written length
# (and its near neighbours: triplets go with the shorter straight value).
NOTE_LENGTH_EDGES = np.array([0.0, 0.1875, 0.375, 0.625, 0.875, 1.25, 1.75, 2.5, 3.5, 5.0, np.inf])
NOTE_LENGTH_LABELS = (
    "<16th", "16th", "8th", "dotted 8th", "quarter", "dotted quarter", "half", "dotted half", "whole", "longer",
)

GROOVE_STEPS_PER_BEAT = 4  # 16th notes in 4/4

_MAJOR = (0, 2, 4, 5, 7, 9, 11)
_HARMONIC_MINOR = (0, 2, 3, 5, 7, 8, 11)


def _scale_masks() -> np.ndarray:
    rows = []
    for steps in (_MAJOR, _HARMONIC_MINOR):
        for tonic in range(12):
            row = np.zeros(12, dtype=np.float64)
            row[[(tonic + s) % 12 for s in steps]] = 1.0
            rows.append(row)
    return np.stack(rows)


SCALE_MASKS = _scale_masks()  # [24, 12]: 12 major then 12 harmonic-minor scales

_EPS = 1e-9


def pitched_notes(piece: Piece) -> np.ndarray:
    """The piece's notes without drums."""
    notes = piece.notes
    return notes[~notes["is_drum"]]


def _end(notes: np.ndarray) -> float:
    return float(np.max(notes["onset"] + notes["duration"])) if len(notes) else 0.0


def bar_edges(piece: Piece, notes: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(starts, ends) in beats of every bar from beat 0 to the last note-off, from the time-signature map."""
    notes = pitched_notes(piece) if notes is None else notes
    end = _end(notes)
    if end <= 0:
        return np.zeros(0), np.zeros(0)
    starts = piece.bar_lines(until_beat=end)
    if len(starts) == 0 or starts[0] > _EPS:
        # a map that starts late: the stretch before its first entry is one bar of its own
        starts = np.concatenate([[0.0], starts])
    lengths = np.empty(len(starts))
    lengths[:-1] = np.diff(starts)
    num, den = piece.time_signature_at(float(starts[-1]))
    lengths[-1] = num * 4.0 / den if num > 0 and den > 0 else 4.0
    return starts, starts + lengths


def _bars_of_notes(starts: np.ndarray, notes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For each note, the first and last bar index it sounds in (a zero-length note sounds only at its onset)."""
    onset = notes["onset"]
    offset = np.maximum(notes["onset"] + notes["duration"], onset)
    last_index = len(starts) - 1
    first = np.clip(np.searchsorted(starts, onset + _EPS, side="right") - 1, 0, last_index)
    last = np.clip(np.searchsorted(starts, offset - _EPS, side="right") - 1, 0, last_index)
    return first, np.maximum(last, first)


def _expand_bars(first: np.ndarray, last: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(bar index, value) for every bar each note sounds in."""
    counts = last - first + 1
    total = int(counts.sum())
    offsets = np.arange(total) - np.repeat(np.cumsum(counts) - counts, counts)
    return np.repeat(first, counts) + offsets, np.repeat(values, counts)


def _distinct_per_bar(piece: Piece, modulus: int) -> float:
    notes = pitched_notes(piece)
    starts, _ = bar_edges(piece, notes)
    if not len(notes) or not len(starts):
        return math.nan
    first, last = _bars_of_notes(starts, notes)
    values = notes["pitch"].astype(np.int64) % modulus
    bars, values = _expand_bars(first, last, values)
    pairs = np.unique(bars * modulus + values)
    per_bar = np.bincount(pairs // modulus, minlength=len(starts))
    return float(per_bar.mean())


# ------------------------------------------------------------------------------------------------ pitch
def pitch_count(piece: Piece) -> float:
    notes = pitched_notes(piece)
    return float(len(np.unique(notes["pitch"]))) if len(notes) else math.nan


def pitch_count_per_bar(piece: Piece) -> float:
    return _distinct_per_bar(piece, 128)


def pitch_class_count_per_bar(piece: Piece) -> float:
    return _distinct_per_bar(piece, 12)


def pitch_range(piece: Piece) -> float:
    notes = pitched_notes(piece)
    if not len(notes):
        return math.nan
    return float(int(notes["pitch"].max()) - int(notes["pitch"].min()))


def pitch_class_histogram(piece: Piece) -> np.ndarray:
    """Counts of notes per pitch class C, C#, ..., B."""
    notes = pitched_notes(piece)
    return np.bincount(notes["pitch"].astype(np.int64) % 12, minlength=12).astype(np.float64)


def pitch_class_entropy(piece: Piece) -> float:
    hist = pitch_class_histogram(piece)
    total = hist.sum()
    if total == 0:
        return math.nan
    p = hist[hist > 0] / total
    return float(-(p * np.log2(p)).sum())


def scale_consistency(piece: Piece) -> float:
    hist = pitch_class_histogram(piece)
    total = hist.sum()
    if total == 0:
        return math.nan
    return float((SCALE_MASKS @ hist).max() / total)


# ------------------------------------------------------------------------------------------------ texture
def _sounding_segments(notes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(segment lengths, number of notes sounding) of the piecewise-constant note count over time."""
    notes = notes[notes["duration"] > _EPS]
    if not len(notes):
        return np.zeros(0), np.zeros(0, dtype=np.int64)
    times = np.concatenate([notes["onset"], notes["onset"] + notes["duration"]])
    deltas = np.concatenate([np.ones(len(notes), np.int64), -np.ones(len(notes), np.int64)])
    points, inverse = np.unique(np.round(times, 9), return_inverse=True)
    change = np.bincount(inverse, weights=deltas, minlength=len(points)).astype(np.int64)
    active = np.cumsum(change)[:-1]
    return np.diff(points), active


def polyphony(piece: Piece) -> float:
    lengths, active = _sounding_segments(pitched_notes(piece))
    sounding = lengths[active > 0].sum()
    if sounding <= 0:
        return math.nan
    return float((lengths * active).sum() / sounding)


def polyphony_rate(piece: Piece) -> float:
    lengths, active = _sounding_segments(pitched_notes(piece))
    sounding = lengths[active > 0].sum()
    if sounding <= 0:
        return math.nan
    return float(lengths[active > 1].sum() / sounding)


def notes_per_beat(piece: Piece) -> float:
    notes = pitched_notes(piece)
    end = _end(notes)
    if not len(notes) or end <= 0:
        return math.nan
    return float(len(notes) / end)


def note_length_histogram(piece: Piece) -> np.ndarray:
    """Share of notes in each class of `NOTE_LENGTH_EDGES`; all NaN for a piece without notes."""
    notes = pitched_notes(piece)
    if not len(notes):
        return np.full(len(NOTE_LENGTH_LABELS), math.nan)
    counts, _ = np.histogram(notes["duration"], bins=NOTE_LENGTH_EDGES)
    return counts / counts.sum()


def ioi(piece: Piece) -> float:
    onsets = np.unique(np.round(pitched_notes(piece)["onset"], 6))
    if len(onsets) < 2:
        return math.nan
    return float(np.diff(onsets).mean())


def empty_beat_rate(piece: Piece) -> float:
    notes = pitched_notes(piece)
    end = _end(notes)
    n_beats = int(math.ceil(end - _EPS))
    if n_beats <= 0:
        return math.nan
    onset = notes["onset"]
    offset = onset + np.maximum(notes["duration"], 0.0)
    first = np.clip(np.floor(onset + _EPS).astype(np.int64), 0, n_beats - 1)
    stop = np.clip(np.ceil(offset - _EPS).astype(np.int64), first + 1, n_beats)  # exclusive
    change = np.zeros(n_beats + 1, dtype=np.int64)
    np.add.at(change, first, 1)
    np.add.at(change, stop, -1)
    covered = np.cumsum(change)[:-1] > 0
    return float(1.0 - covered.mean())


def bar_onset_patterns(piece: Piece, steps_per_beat: int = GROOVE_STEPS_PER_BEAT) -> np.ndarray:
    """[bars, steps] booleans: is there an onset at this grid step of this bar (steps of the longest bar)."""
    notes = pitched_notes(piece)
    starts, ends = bar_edges(piece, notes)
    if not len(starts):
        return np.zeros((0, 0), dtype=bool)
    steps = np.maximum(np.round((ends - starts) * steps_per_beat).astype(np.int64), 1)
    patterns = np.zeros((len(starts), int(steps.max())), dtype=bool)
    bar = np.clip(np.searchsorted(starts, notes["onset"] + _EPS, side="right") - 1, 0, len(starts) - 1)
    pos = np.round((notes["onset"] - starts[bar]) * steps_per_beat).astype(np.int64)
    pos = np.clip(pos, 0, steps[bar] - 1)
    patterns[bar, pos] = True
    return patterns


def groove_consistency(piece: Piece) -> float:
    patterns = bar_onset_patterns(piece)
    bars, steps = patterns.shape
    if bars < 2:
        return math.nan
    # over all pairs of bars, position q differs in c_q * (bars - c_q) pairs (c_q = bars with an onset at q)
    c = patterns.sum(axis=0).astype(np.float64)
    mean_hamming = (c * (bars - c)).sum() / (bars * (bars - 1) / 2.0) / steps
    return float(1.0 - mean_hamming)


# ------------------------------------------------------------------------------------------------ all at once
NOTE_METRICS = {
    "pitch_count": pitch_count,
    "pitch_count_per_bar": pitch_count_per_bar,
    "pitch_class_count_per_bar": pitch_class_count_per_bar,
    "pitch_range": pitch_range,
    "pitch_class_entropy": pitch_class_entropy,
    "polyphony": polyphony,
    "polyphony_rate": polyphony_rate,
    "notes_per_beat": notes_per_beat,
    "note_length_hist": note_length_histogram,
    "ioi": ioi,
    "empty_beat_rate": empty_beat_rate,
    "scale_consistency": scale_consistency,
    "groove_consistency": groove_consistency,
}

# name -> (unit, one-line definition); vector metrics are those whose value is an array
METRIC_INFO = {
    "pitch_count": ("pitches", "distinct MIDI pitches in the piece"),
    "pitch_count_per_bar": ("pitches", "distinct pitches sounding in a bar, mean over bars"),
    "pitch_class_count_per_bar": ("classes", "distinct pitch classes sounding in a bar, mean over bars"),
    "pitch_range": ("semitones", "highest minus lowest pitch"),
    "pitch_class_entropy": ("bits", "entropy of the pitch-class histogram (per note)"),
    "polyphony": ("notes", "mean notes sounding at once while any sounds"),
    "polyphony_rate": ("share", "share of sounding time with more than one note"),
    "notes_per_beat": ("notes/beat", "notes per beat from 0 to the last note-off"),
    "note_length_hist": ("share", "share of notes per duration class: " + ", ".join(NOTE_LENGTH_LABELS)),
    "ioi": ("beats", "mean interval between consecutive distinct onsets"),
    "empty_beat_rate": ("share", "share of beats in which nothing sounds"),
    "scale_consistency": ("share", "largest share of notes inside one major or harmonic-minor scale"),
    "groove_consistency": ("share", "1 - mean Hamming distance of bar onset patterns on a 16th grid"),
}


def note_metrics(piece: Piece) -> dict[str, float | np.ndarray]:
    """Every note-level metric of one piece: name -> float (NaN when undefined) or vector."""
    return {name: fn(piece) for name, fn in NOTE_METRICS.items()}
