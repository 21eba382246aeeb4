"""Choosing the next token (or cell) from logits: temperature, top-k, top-p (nucleus), greedy, seeded draws.

Shared by every generator. All functions work on logits of shape ``[..., V]`` (the last axis is the vocabulary)
and leave the leading axes alone. The filters are applied in this order:

1. temperature: logits / T; higher T flattens the distribution (more random), T < 1 sharpens it; T == 0 means
   greedy (argmax);
2. top-k: keep the k largest logits (exactly k, ties broken by index), set the rest to -inf;
3. top-p: keep the smallest set of most probable tokens whose cumulative probability reaches p (always at least
   one token), set the rest to -inf.

`draw` returns ids; with a `torch.Generator` (see `make_generator`) the draws are reproducible and the global RNG is
never touched.
"""
from __future__ import annotations

import math

import torch

from fractalmusic.errors import ConfigError


def check_options(
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    greedy: bool = False,
) -> None:
    """Raise ConfigError for sampling options out of range."""
    try:
        temperature = float(temperature)
    except (TypeError, ValueError):
        raise ConfigError(f"temperature must be a number, not {temperature!r}") from None
    if not math.isfinite(temperature) or temperature < 0:
        raise ConfigError(f"temperature must be >= 0 (0 = greedy), not {temperature}")
    if top_k is not None and (isinstance(top_k, bool) or int(top_k) != top_k or int(top_k) < 1):
        raise ConfigError(f"top-k must be a whole number >= 1, not {top_k}")
    if top_p is not None:
        try:
            top_p = float(top_p)
        except (TypeError, ValueError):
            raise ConfigError(f"top-p must be a number in (0, 1], not {top_p!r}") from None
        if not (0.0 < top_p <= 1.0):
            raise ConfigError(f"top-p must be in (0, 1], not {top_p}")


def apply_temperature(logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """logits / temperature (temperature > 0)."""
    if temperature <= 0:
        raise ConfigError("temperature 0 means greedy: use argmax instead of scaling")
    if temperature == 1.0:
        return logits
    return logits / temperature


def top_k_filter(logits: torch.Tensor, k: int | None) -> torch.Tensor:
    """Keep exactly the k largest logits on the last axis (ties broken by lower index); the rest become -inf."""
    if k is None or k >= logits.shape[-1]:
        return logits
    idx = torch.topk(logits, int(k), dim=-1).indices
    keep = torch.zeros_like(logits, dtype=torch.bool).scatter_(-1, idx, True)
    return logits.masked_fill(~keep, float("-inf"))


def top_p_filter(logits: torch.Tensor, p: float | None) -> torch.Tensor:
    """Nucleus filter: keep the smallest set of most probable tokens with cumulative probability >= p.

    A token is kept when the probability mass of the tokens ranked above it is still below p, so the most probable
    token is always kept and p = 1 keeps everything.
    """
    if p is None or p >= 1.0:
        return logits
    sorted_logits, order = torch.sort(logits, dim=-1, descending=True)
    probs = torch.softmax(sorted_logits.float(), dim=-1)
    mass_before = torch.cumsum(probs, dim=-1) - probs
    keep_sorted = mass_before < p
    keep_sorted[..., 0] = True
    keep = torch.zeros_like(keep_sorted).scatter_(-1, order, keep_sorted)
    return logits.masked_fill(~keep, float("-inf"))


def filter_logits(
    logits: torch.Tensor,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
) -> torch.Tensor:
    """Temperature, then top-k, then top-p. Temperature must be > 0 here (0 is greedy, handled by `draw`)."""
    out = apply_temperature(logits, temperature)
    out = top_k_filter(out, top_k)
    return top_p_filter(out, top_p)


def probabilities(
    logits: torch.Tensor,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    greedy: bool = False,
) -> torch.Tensor:
    """The distribution `draw` samples from (one-hot on the argmax for greedy or temperature 0), in float32."""
    if greedy or temperature == 0:
        idx = logits.argmax(dim=-1, keepdim=True)
        return torch.zeros_like(logits, dtype=torch.float32).scatter_(-1, idx, 1.0)
    return torch.softmax(filter_logits(logits, temperature, top_k, top_p).float(), dim=-1)


def make_generator(seed: int | None, device: str | torch.device = "cpu") -> torch.Generator | None:
    """A private RNG on `device` seeded with `seed`; None (use the global RNG) when seed is None."""
    if seed is None:
        return None
    if isinstance(seed, bool) or int(seed) != seed:
        raise ConfigError(f"seed must be a whole number, not {seed!r}")
    gen = torch.Generator(device=torch.device(device))
    gen.manual_seed(int(seed) & 0xFFFF_FFFF_FFFF_FFFF)
    return gen


def draw(
    logits: torch.Tensor,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    greedy: bool = False,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """One id per distribution: logits ``[..., V]`` -> LongTensor ``[...]``.

    Greedy (or temperature 0) takes the argmax and consumes no random numbers; otherwise one multinomial draw per
    row from the filtered distribution, using `generator` when given.
    """
    if greedy or temperature == 0:
        return logits.argmax(dim=-1)
    probs = probabilities(logits, temperature, top_k, top_p)
    flat = probs.reshape(-1, probs.shape[-1])
    ids = torch.multinomial(flat, 1, generator=generator)
    return ids.reshape(probs.shape[:-1])
