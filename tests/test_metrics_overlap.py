"""Overlapping areas: the KDE, Scott's bandwidth, and OA against closed-form answers."""
from __future__ import annotations

import math

import numpy as np
import pytest

from fractalmusic.metrics import overlap


def test_kde_is_a_density():
    rng = np.random.default_rng(0)
    sample = rng.normal(2.0, 0.5, 300)
    h = overlap.scott_bandwidth(sample)
    assert h == pytest.approx(np.std(sample, ddof=1) * 300 ** (-0.2))
    grid = np.linspace(-3, 7, 4001)
    f = overlap.gaussian_kde(sample, grid, h)
    assert np.sum(f) * (grid[1] - grid[0]) == pytest.approx(1.0, abs=1e-3)
    assert grid[np.argmax(f)] == pytest.approx(2.0, abs=0.25)


def test_kde_of_one_point_is_the_gaussian_kernel():
    grid = np.array([0.0, 1.0, 2.0])
    f = overlap.gaussian_kde(np.array([1.0]), grid, 1.0)
    assert f[1] == pytest.approx(1 / math.sqrt(2 * math.pi))
    assert f[0] == pytest.approx(math.exp(-0.5) / math.sqrt(2 * math.pi))


def test_overlap_of_two_normals_matches_the_closed_form():
    # OA of N(0, 1) and N(d, 1) is 2 * Phi(-d / 2)
    rng = np.random.default_rng(1)
    a = rng.normal(0.0, 1.0, 3000)
    for d in (0.0, 1.0, 3.0):
        b = rng.normal(d, 1.0, 3000)
        expected = 1.0 + math.erf(-d / 2 / math.sqrt(2))
        assert overlap.overlap_area(a, b) == pytest.approx(expected, abs=0.05)


def test_overlap_edge_cases():
    assert overlap.overlap_area(np.array([1.0, 2.0, 3.0]), np.array([1.0, 2.0, 3.0])) == pytest.approx(1.0, abs=1e-6)
    assert overlap.overlap_area(np.zeros(5), np.zeros(7)) == 1.0  # identical constant samples
    assert overlap.overlap_area(np.zeros(5), np.ones(7)) < 1e-6  # constant and disjoint
    assert overlap.overlap_area(np.array([0.0, 0.1]), np.array([100.0, 100.2])) < 1e-6
    assert math.isnan(overlap.overlap_area(np.array([]), np.ones(3)))


def test_distances_scalar_and_vector():
    d = overlap.pairwise_distances(np.array([0.0, 3.0]), np.array([1.0]))
    assert d.tolist() == [[1.0], [2.0]]
    v = overlap.pairwise_distances(np.array([[0.0, 0.0]]), np.array([[3.0, 4.0]]))
    assert v.tolist() == [[5.0]]
    assert sorted(overlap.intra_set_distances(np.array([0.0, 1.0, 3.0])).tolist()) == [1.0, 2.0, 3.0]


def test_metric_overlap_of_a_set_with_itself_leaves_out_self_pairs():
    rng = np.random.default_rng(2)
    values = rng.normal(0, 1, 8)
    same = np.eye(8, dtype=bool)
    oa, intra, inter = overlap.metric_overlap(values, values, same)
    assert len(intra) == 28 and len(inter) == 56
    assert np.allclose(np.sort(inter), np.sort(np.repeat(intra, 2)))
    assert oa > 0.9
    # without the exclusion the 8 zero self-distances pull the densities apart
    oa_with_self, _, inter_with_self = overlap.metric_overlap(values, values)
    assert len(inter_with_self) == 64 and oa_with_self < oa


def test_metric_overlap_separates_sets_and_skips_nan():
    rng = np.random.default_rng(3)
    ref = rng.normal(0, 1, 30)
    far = rng.normal(10, 1, 30)
    oa, _, _ = overlap.metric_overlap(ref, far)
    assert oa < 0.05
    with_nan = np.concatenate([ref, [np.nan, np.nan]])
    oa_nan, intra, _ = overlap.metric_overlap(with_nan, ref[:10])
    assert len(intra) == 30 * 29 // 2 and not math.isnan(oa_nan)
    hist_ref = rng.dirichlet(np.ones(5), 20)
    hist_gen = np.tile(np.eye(5)[0], (20, 1))  # every piece all in one class
    oa_hist, _, _ = overlap.metric_overlap(hist_ref, hist_gen)
    assert oa_hist < 0.3


def test_sample_folders_count_each_piece_once(tmp_path):
    """`fmusic sample` writes sample_000.abc + sample_000.mid + the book samples.abc: one piece, not three."""
    from fractalmusic.metrics.report import load_set

    tune = "X:{x}\nT:T\nM:2/4\nL:1/8\nK:G\n{body}|\n"
    bodies = ["GABc dBAG", "dcBA GFED"]
    for i, body in enumerate(bodies):
        (tmp_path / f"sample_{i:03d}.abc").write_text(tune.format(x=1, body=body))
        (tmp_path / f"sample_{i:03d}.mid").write_bytes(b"not even read")
    (tmp_path / "samples.abc").write_text("\n".join(tune.format(x=i + 1, body=b) for i, b in enumerate(bodies)))
    got = load_set(tmp_path, use_cache=False)
    assert len(got.pieces) == 2
    assert sorted(p.source.split("/")[-1].split("#")[0] for p in got.pieces) == ["sample_000.abc", "sample_001.abc"]
