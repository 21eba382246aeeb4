"""Evaluation: held-out likelihood, note-level statistics, ABC checks, and overlapping areas between sets.

* `likelihood`: `evaluate_checkpoint(path, ...)` -> NLL in nats and bits per token/cell, perplexity.
* `notes`: per-piece statistics (`note_metrics(piece)`), after mgeval and Dong et al.
* `abc`: parse rate, header completeness, bar lengths against the meter, memorisation of training tunes.
* `overlap`: intra-/inter-set distance distributions, Gaussian KDE, overlapping area (OA).
* `report`: `compare_sets(reference, generated)` with a terminal table, JSON and a PNG of the histograms.

Importing this package is cheap: torch, music21 and matplotlib are imported only by the functions that need them.
"""
from __future__ import annotations

from fractalmusic.metrics.abc import (
    BarCheck,
    MemorisationIndex,
    abc_metrics,
    bar_length_consistency,
    check_bar_lengths,
    header_completeness,
    memorisation,
    normalised_body,
    parse_ok,
)
from fractalmusic.metrics.notes import (
    METRIC_INFO,
    NOTE_LENGTH_EDGES,
    NOTE_LENGTH_LABELS,
    empty_beat_rate,
    groove_consistency,
    ioi,
    note_length_histogram,
    note_metrics,
    notes_per_beat,
    pitch_class_count_per_bar,
    pitch_class_entropy,
    pitch_count,
    pitch_count_per_bar,
    pitch_range,
    polyphony,
    polyphony_rate,
    scale_consistency,
)
from fractalmusic.metrics.overlap import gaussian_kde, metric_overlap, overlap_area, scott_bandwidth

__all__ = [
    "BarCheck", "MemorisationIndex", "abc_metrics", "bar_length_consistency", "check_bar_lengths",
    "header_completeness", "memorisation", "normalised_body", "parse_ok",
    "METRIC_INFO", "NOTE_LENGTH_EDGES", "NOTE_LENGTH_LABELS", "empty_beat_rate", "groove_consistency", "ioi",
    "note_length_histogram", "note_metrics", "notes_per_beat", "pitch_class_count_per_bar", "pitch_class_entropy",
    "pitch_count", "pitch_count_per_bar", "pitch_range", "polyphony", "polyphony_rate", "scale_consistency",
    "gaussian_kde", "metric_overlap", "overlap_area", "scott_bandwidth",
]
