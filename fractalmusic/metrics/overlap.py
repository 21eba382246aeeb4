"""Overlapping area (OA) between two sets of pieces for one metric, as in mgeval (Yang & Lerch 2018).

For a metric with per-piece values r_1..r_n (reference) and g_1..g_m (generated):

* the intra-set distances of the reference are d(r_i, r_j) for all pairs i < j;
* the inter-set distances are d(r_i, g_j) for all i, j, except pairs of pieces that are the same piece (equal
  fingerprints: an exact copy of a reference piece is not compared with itself; such copies are counted and
  reported separately, since the intra-set distances never compare a piece with itself either);
* d is |a - b| for a scalar metric and the Euclidean distance for a vector (histogram) metric;
* each of the two distance samples is smoothed with a Gaussian kernel density estimate whose bandwidth follows
  Scott's rule (sigma * n^(-1/5)), with a floor of 1e-3 of the pooled distances' range so that a sample of
  identical distances is a narrow bump rather than a spike;
* OA = integral of min(f_intra, f_inter) over a common grid spanning both samples +- 6 bandwidths (trapezoid rule,
  2,048 points). OA is 1 for identical distributions and 0 for disjoint ones. A sample of more than 5,000
  distances is thinned to a seeded random 5,000 before smoothing (the density barely changes; the cost does).

An OA near 1 says that generated pieces differ from reference pieces about as much as reference pieces differ from
each other; a low OA says the generated set sits elsewhere (or is far more or less varied). Values that are NaN
(a metric undefined for a piece) are left out.
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np

GRID_POINTS = 2048
BANDWIDTH_FLOOR = 1e-3  # of the pooled range
MAX_KDE_SAMPLE = 5_000  # larger distance samples are thinned (seeded) before smoothing


def _as_matrix(values: np.ndarray) -> np.ndarray:
    values = np.asarray(values, dtype=np.float64)
    return values[:, None] if values.ndim == 1 else values


def pairwise_distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """[len(a), len(b)] distances: absolute difference for scalars, Euclidean for rows of vectors."""
    a, b = _as_matrix(a), _as_matrix(b)
    diff = a[:, None, :] - b[None, :, :]
    return np.sqrt((diff * diff).sum(axis=-1))


def valid_rows(values: np.ndarray) -> np.ndarray:
    """Mask of values (rows for vectors) without NaN."""
    m = _as_matrix(values)
    return ~np.isnan(m).any(axis=1)


def intra_set_distances(values: np.ndarray) -> np.ndarray:
    d = pairwise_distances(values, values)
    i, j = np.triu_indices(len(d), k=1)
    return d[i, j]


def inter_set_distances(
    reference: np.ndarray,
    generated: np.ndarray,
    same: np.ndarray | None = None,
) -> np.ndarray:
    """Distances of every (reference, generated) pair; pairs where `same[i, j]` is True are left out."""
    d = pairwise_distances(reference, generated)
    if same is not None:
        return d[~same]
    return d.ravel()


def scott_bandwidth(sample: np.ndarray) -> float:
    n = len(sample)
    if n < 2:
        return 0.0
    return float(np.std(sample, ddof=1) * n ** (-1.0 / 5.0))


def gaussian_kde(sample: np.ndarray, grid: np.ndarray, bandwidth: float) -> np.ndarray:
    """Density of `sample` smoothed with a Gaussian kernel of `bandwidth`, evaluated on `grid` (chunked)."""
    sample = np.asarray(sample, dtype=np.float64)
    out = np.zeros(len(grid))
    norm = 1.0 / (len(sample) * bandwidth * math.sqrt(2.0 * math.pi))
    step = max(1, 4_000_000 // max(len(grid), 1))
    for start in range(0, len(sample), step):
        z = (grid[:, None] - sample[None, start : start + step]) / bandwidth
        out += np.exp(-0.5 * z * z).sum(axis=1)
    return out * norm


def overlap_area(a: np.ndarray, b: np.ndarray, grid_points: int = GRID_POINTS) -> float:
    """Area under min(KDE(a), KDE(b)); NaN if either sample is empty."""
    a = np.asarray(a, dtype=np.float64).ravel()
    b = np.asarray(b, dtype=np.float64).ravel()
    a, b = a[~np.isnan(a)], b[~np.isnan(b)]
    if not len(a) or not len(b):
        return math.nan
    rng = np.random.default_rng(0)
    if len(a) > MAX_KDE_SAMPLE:
        a = rng.choice(a, size=MAX_KDE_SAMPLE, replace=False)
    if len(b) > MAX_KDE_SAMPLE:
        b = rng.choice(b, size=MAX_KDE_SAMPLE, replace=False)
    pooled = np.concatenate([a, b])
    span = float(pooled.max() - pooled.min())
    if span == 0.0:
        return 1.0  # every distance is the same number in both samples
    floor = BANDWIDTH_FLOOR * span
    ha = max(scott_bandwidth(a), floor)
    hb = max(scott_bandwidth(b), floor)
    pad = 6.0 * max(ha, hb)
    grid = np.linspace(pooled.min() - pad, pooled.max() + pad, grid_points)
    fa = gaussian_kde(a, grid, ha)
    fb = gaussian_kde(b, grid, hb)
    return float(min(1.0, _trapezoid(np.minimum(fa, fb), grid)))


def metric_overlap(
    reference: np.ndarray,
    generated: np.ndarray,
    same: np.ndarray | None = None,
) -> tuple[float, np.ndarray, np.ndarray]:
    """(OA, intra-set distances of the reference, inter-set distances) for one metric.

    `reference` and `generated` are per-piece values (1-D) or vectors (2-D, one row per piece); `same[i, j]` marks
    reference piece i and generated piece j as one and the same piece. Rows with NaN are left out.
    """
    reference = _as_matrix(reference)
    generated = _as_matrix(generated)
    keep_r, keep_g = valid_rows(reference), valid_rows(generated)
    if same is not None:
        same = np.asarray(same, dtype=bool)[np.ix_(keep_r, keep_g)]
    reference, generated = reference[keep_r], generated[keep_g]
    if len(reference) < 2 or len(generated) < 1:
        return math.nan, np.zeros(0), np.zeros(0)
    intra = intra_set_distances(reference)
    inter = inter_set_distances(reference, generated, same)
    return overlap_area(intra, inter), intra, inter


def same_piece_matrix(reference_ids: Sequence[str], generated_ids: Sequence[str]) -> np.ndarray:
    ref = np.asarray(list(reference_ids), dtype=object)
    gen = np.asarray(list(generated_ids), dtype=object)
    return ref[:, None] == gen[None, :]


def _trapezoid(y: np.ndarray, x: np.ndarray) -> float:
    return float(((y[1:] + y[:-1]) * 0.5 * np.diff(x)).sum())
