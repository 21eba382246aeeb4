"""fractalmusic.sampling: each filter's exact effect on known logits, greedy, seeded reproducibility."""
from __future__ import annotations

import math

import pytest
import torch

from fractalmusic import sampling
from fractalmusic.errors import ConfigError


def _log(probs):
    return torch.log(torch.tensor(probs, dtype=torch.float64))


def test_temperature_scales_logits_exactly():
    logits = torch.tensor([1.0, 3.0, 2.0, 0.0], dtype=torch.float64)
    for t in (0.5, 1.0, 2.0):
        got = sampling.probabilities(logits, temperature=t)
        want = torch.softmax(logits / t, dim=-1).float()
        assert torch.allclose(got, want, atol=1e-7)
    entropy = lambda p: float(-(p * p.log()).sum())  # noqa: E731
    cold, warm = sampling.probabilities(logits, 0.5), sampling.probabilities(logits, 2.0)
    assert entropy(cold) < entropy(sampling.probabilities(logits, 1.0)) < entropy(warm)


def test_temperature_zero_and_greedy_are_argmax():
    logits = torch.tensor([[1.0, 3.0, 2.0], [5.0, -1.0, 4.9]])
    for kw in ({"temperature": 0.0}, {"greedy": True}, {"greedy": True, "temperature": 5.0, "top_k": 3}):
        assert sampling.draw(logits, **kw).tolist() == [1, 0]
        assert sampling.probabilities(logits, **kw).tolist() == [[0, 1, 0], [1, 0, 0]]
    # greedy consumes no random numbers
    gen = sampling.make_generator(3)
    before = gen.get_state().clone()
    sampling.draw(logits, greedy=True, generator=gen)
    assert torch.equal(gen.get_state(), before)


def test_top_k_keeps_exactly_k_largest():
    logits = torch.tensor([1.0, 3.0, 2.0, 0.0])
    probs = sampling.probabilities(logits, top_k=2)
    want = torch.zeros(4)
    want[[1, 2]] = torch.softmax(torch.tensor([3.0, 2.0]), dim=-1)
    assert torch.allclose(probs, want)
    # ties: still exactly k survivors
    tied = torch.tensor([[2.0, 2.0, 2.0, 1.0]])
    assert int((sampling.top_k_filter(tied, 2) > float("-inf")).sum()) == 2
    # k >= V keeps everything; top_k=1 always gives the argmax
    assert torch.equal(sampling.top_k_filter(logits, 9), logits)
    gen = sampling.make_generator(0)
    many = logits.expand(200, 4)
    assert set(sampling.draw(many, top_k=1, generator=gen).tolist()) == {1}


def test_top_p_keeps_smallest_nucleus():
    logits = _log([0.5, 0.3, 0.15, 0.05])
    kept = lambda p: (sampling.top_p_filter(logits, p) > float("-inf")).nonzero().flatten().tolist()  # noqa: E731
    assert kept(0.1) == [0]  # the top token alone already reaches p
    assert kept(0.5) == [0]
    assert kept(0.7) == [0, 1]
    assert kept(0.9) == [0, 1, 2]
    assert kept(0.97) == [0, 1, 2, 3]
    assert kept(1.0) == [0, 1, 2, 3]
    # the order of the vocabulary does not matter
    shuffled = _log([0.15, 0.05, 0.5, 0.3])
    assert (sampling.top_p_filter(shuffled, 0.7) > float("-inf")).nonzero().flatten().tolist() == [2, 3]
    # renormalised over the nucleus
    probs = sampling.probabilities(logits, top_p=0.7)
    assert torch.allclose(probs, torch.tensor([0.625, 0.375, 0.0, 0.0]), atol=1e-6)


def test_filters_compose_in_order_temperature_top_k_top_p():
    logits = _log([0.4, 0.3, 0.2, 0.1])
    # top_k=3 leaves [0.4, 0.3, 0.2]/0.9; top_p=0.5 then keeps the first two (0.444 < 0.5 <= 0.777)
    probs = sampling.probabilities(logits, top_k=3, top_p=0.5)
    assert torch.allclose(probs, torch.tensor([4 / 7, 3 / 7, 0, 0]).float(), atol=1e-6)
    # temperature acts before top-p: a hot distribution needs more tokens to reach the same mass
    hot = sampling.filter_logits(logits, temperature=10.0, top_p=0.5)
    assert int((hot > float("-inf")).sum()) == 2
    cold = sampling.filter_logits(logits, temperature=0.1, top_p=0.5)
    assert int((cold > float("-inf")).sum()) == 1


def test_draw_shapes_and_distribution():
    logits = torch.zeros(2, 3, 5)
    assert sampling.draw(logits, generator=sampling.make_generator(1)).shape == (2, 3)
    # empirical frequencies follow the filtered distribution
    logits = _log([0.6, 0.3, 0.1]).float().expand(20000, 3)
    ids = sampling.draw(logits, generator=sampling.make_generator(7))
    freq = torch.bincount(ids, minlength=3).float() / ids.numel()
    assert torch.allclose(freq, torch.tensor([0.6, 0.3, 0.1]), atol=0.02)


def test_seeded_draws_reproducible_and_private():
    logits = torch.zeros(500, 10)
    global_before = torch.get_rng_state().clone()
    a = sampling.draw(logits, generator=sampling.make_generator(123))
    b = sampling.draw(logits, generator=sampling.make_generator(123))
    c = sampling.draw(logits, generator=sampling.make_generator(124))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
    assert torch.equal(torch.get_rng_state(), global_before)
    assert sampling.make_generator(None) is None


@pytest.mark.parametrize(
    "kwargs",
    [
        {"temperature": -0.1},
        {"temperature": math.inf},
        {"top_k": 0},
        {"top_k": 2.5},
        {"top_p": 0.0},
        {"top_p": 1.5},
    ],
)
def test_check_options_rejects_out_of_range(kwargs):
    with pytest.raises(ConfigError):
        sampling.check_options(**kwargs)


def test_check_options_accepts_valid():
    sampling.check_options(temperature=0.0, top_k=1, top_p=1.0, greedy=True)
    sampling.check_options(temperature=1.5, top_k=None, top_p=0.9)
