"""MAR levels: masked autoregressive transformers over a level's 2-D grid of child patches (bidirectional).

Training masks a random subset of the real children of every item and predicts only those (their conditions go
down to the next level; the unmasked ones are seen as input). The mask ratio of each item is drawn from a normal
``N(mask_ratio_loc, mask_ratio_scale)`` truncated to ``[mask_ratio_min, 1]`` in ratio units (inverse-CDF sampling,
never outside the bounds); the masked count is ``ceil(ratio * real children)``, at least 1, so no item ever masks
nothing. `nll` masks a count drawn uniformly from 1..real children instead (the any-order estimator of the fractal
paper). Sampling visits the unknown children in a random order (from the sampling seed; temperature does not touch
the order) and predicts, at iteration i of T, enough of them that ``floor(U * cos(pi/2 * (i+1)/T))`` stay masked
(U = unknown children of the item), at least one per iteration, all the rest at the last one.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from fractalmusic.generators.fractal.levels import Level, neighbour_conditions


def draw_mask_ratios(n: int, loc: float, scale: float, lo: float, device=None, generator=None) -> torch.Tensor:
    """n ratios from N(loc, scale) truncated to [lo, 1] (ratio units), float32 on `device`."""
    loc, scale, lo = float(loc), float(scale), float(lo)
    if scale <= 0:
        return torch.full((n,), min(max(loc, lo), 1.0), device=device)
    a = torch.special.ndtr(torch.tensor((lo - loc) / scale, dtype=torch.float64))
    b = torch.special.ndtr(torch.tensor((1.0 - loc) / scale, dtype=torch.float64))
    if float(b - a) < 1e-12:  # all the mass is beyond one bound: the nearer bound
        return torch.full((n,), lo if loc < lo else 1.0, device=device)
    u = torch.rand(n, dtype=torch.float64, generator=generator, device=generator.device if generator else None)
    r = loc + scale * torch.special.ndtri(a + (b - a) * u)
    return r.clamp(lo, 1.0).float().to(device)


def random_subset(valid: torch.Tensor, counts: torch.Tensor, generator=None) -> torch.Tensor:
    """Bool [N, S]: `counts[i]` positions chosen uniformly among the True ones of `valid[i]`."""
    scores = torch.rand(valid.shape, generator=generator, device=valid.device)
    scores = scores.masked_fill(~valid, 2.0)
    rank = scores.argsort(dim=1).argsort(dim=1)
    return rank < counts.unsqueeze(1)


class MARLevel(Level):
    kind = "mar"
    n_next_conds = 5  # own output + below, above, before, after

    def __init__(self, *args, mask_ratio=(1.0, 0.5, 0.0), **kwargs):
        super().__init__(*args, **kwargs)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, self.width))
        self.mask_ratio = tuple(float(x) for x in mask_ratio)  # loc, scale, min

    # ------------------------------------------------------------- training
    def select(self, child_real: torch.Tensor, mode: str) -> tuple[torch.Tensor, torch.Tensor]:
        """(masked [N, S], factor [N] = real children / masked children) for "train" or "nll" masking."""
        n = child_real.shape[0]
        n_real = child_real.sum(1)
        if mode == "train":
            loc, scale, lo = self.mask_ratio
            ratios = draw_mask_ratios(n, loc, scale, lo, device=child_real.device)
            counts = torch.ceil(ratios * n_real).long()
        else:
            u = torch.rand(n, device=child_real.device)
            counts = torch.floor(u * n_real).long() + 1
        counts = torch.minimum(counts.clamp(min=1), n_real)
        masked = random_subset(child_real, counts)
        factor = n_real.float() / counts.clamp(min=1).float()
        return masked, factor

    def child_conditions(self, child_cells, child_real, conds, cols, masked=None):
        n = child_real.shape[0]
        x = self.embed_children(child_cells)
        if masked is not None:
            x = torch.where(masked.unsqueeze(-1), self.mask_token.to(x.dtype), x)
        x = x + self.positions(cols)
        x = self.in_norm(torch.cat([self.cond_tokens(conds, n).to(x.dtype), x], dim=1))
        mask = None
        if not bool(child_real.all()):
            valid = torch.cat([child_real.new_ones(n, self.n_conds), child_real], dim=1)
            mask = valid[:, None, None, :]
        return self.transformer(x, mask)[:, self.n_conds :]

    def gather(self, out, b, j, child_real, cols):
        return neighbour_conditions(out, b, j, child_real, self.rows, cols)

    # ------------------------------------------------------------- sampling
    @torch.no_grad()
    def sample(self, child_cells, child_unknown, child_real, conds, cols, num_iter, fill, ctx) -> None:
        """Generate every unknown child (in place, through `fill(b, j, conds)`), cosine schedule."""
        n, s = child_unknown.shape
        total = child_unknown.sum(1)
        top = int(total.max())
        if top == 0:
            return
        scores = ctx.rand((n, s), child_unknown.device).masked_fill(~child_unknown, 2.0)
        rank = scores.argsort(dim=1).argsort(dim=1)  # unknown children get ranks 0..U-1: the order, reversed
        steps = min(int(num_iter), top)
        remaining = total.clone()
        for it in range(steps):
            if it == steps - 1:
                keep = torch.zeros_like(total)
            else:
                target = torch.floor(total.float() * math.cos(math.pi / 2 * (it + 1) / steps)).long()
                keep = torch.minimum(target.clamp(min=1), (remaining - 1).clamp(min=0))
            predict = (rank >= keep.unsqueeze(1)) & (rank < remaining.unsqueeze(1))
            items = predict.any(1).nonzero().squeeze(1)
            if items.numel():
                masked = rank[items] < remaining[items].unsqueeze(1)
                sub_real = child_real[items]
                out = self.child_conditions(
                    child_cells[items], sub_real, None if conds is None else conds[items], cols, masked
                )
                bl, j = predict[items].nonzero(as_tuple=True)
                fill(items[bl], j, self.gather(out, bl, j, sub_real, cols))
            remaining = keep
