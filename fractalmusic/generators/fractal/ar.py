"""AR levels: causal transformers over a level's child patches in a fixed scan order of its 2-D grid.

The sequence is ``[condition tokens, child perm[0], ..., child perm[S-2]]`` (perm = `layout.scan_permutation`,
row_major or column_major); the output at the position before child perm[t] is child perm[t]'s condition, so
training is teacher-forced over all real children at once. Sampling keeps a key-value cache per block and feeds
one token per generated child (runs of children that are already known, e.g. a primer, are fed as one chunk).
Padding children (all time steps masked) are fed but hidden from attention, exactly as in training.
"""
from __future__ import annotations

import torch

from fractalmusic.generators.fractal.layout import scan_permutation
from fractalmusic.generators.fractal.levels import Level


class ARLevel(Level):
    kind = "ar"
    n_next_conds = 1

    def __init__(self, *args, scan_order: str = "row_major", **kwargs):
        super().__init__(*args, **kwargs)
        self.scan_order = scan_order

    def perm(self, cols: int, device) -> torch.Tensor:
        return scan_permutation(self.rows, cols, self.scan_order, device)

    def child_tokens(self, child_cells, cols, which: torch.Tensor) -> torch.Tensor:
        """Input tokens [N, len(which), D] for children `which` (child indices), normalised."""
        x = self.embed_children(child_cells[:, which]) + self.positions(cols)[which]
        return self.in_norm(x)

    # ------------------------------------------------------------- training
    def select(self, child_real: torch.Tensor, mode: str) -> tuple[torch.Tensor, torch.Tensor]:
        return child_real, torch.ones(child_real.shape[0], device=child_real.device)

    def child_conditions(self, child_cells, child_real, conds, cols, masked=None):
        n, s = child_real.shape
        perm = self.perm(cols, child_real.device)
        inputs = perm[:-1]
        x = self.embed_children(child_cells[:, inputs]) + self.positions(cols)[inputs]
        x = self.in_norm(torch.cat([self.cond_tokens(conds, n).to(x.dtype), x], dim=1))
        valid = child_real[:, inputs]
        if bool(valid.all()):
            out = self.transformer(x, causal=True)
        else:
            length = x.shape[1]
            valid = torch.cat([valid.new_ones(n, self.n_conds), valid], dim=1)
            causal = torch.ones(length, length, dtype=torch.bool, device=x.device).tril()
            out = self.transformer(x, causal[None, None] & valid[:, None, None, :])
        pred = out[:, self.n_conds - 1 :]  # pred[:, t] conditions child perm[t]
        return pred[:, torch.argsort(perm)]

    # ------------------------------------------------------------- sampling
    @torch.no_grad()
    def sample(self, child_cells, child_unknown, child_real, conds, cols, num_iter, fill, ctx) -> None:
        """Generate every unknown child in scan order (in place, through `fill(b, j, conds)`)."""
        n, s = child_unknown.shape
        perm = self.perm(cols, child_unknown.device)
        todo = child_unknown[:, perm]  # [N, S] in scan order
        steps = todo.any(0).nonzero().squeeze(1).tolist()
        if not steps:
            return
        dec = _Decoder(self, n, self.n_conds + s - 1, use_cache=ctx.use_cache)
        out = dec.feed(self.in_norm(self.cond_tokens(conds, n)), None)[:, -1]
        fed = 0  # children perm[:fed] are in the sequence
        for t in steps:
            if t > fed:
                which = perm[fed:t]
                out = dec.feed(self.child_tokens(child_cells, cols, which), child_real[:, which])[:, -1]
                fed = t
            need = todo[:, t].nonzero().squeeze(1)
            j = perm[t].expand(need.shape[0])
            fill(need, j, out[need].unsqueeze(1))


class _Decoder:
    """Feeds chunks of tokens through a level's causal transformer, with or without a key-value cache."""

    def __init__(self, level: ARLevel, n: int, capacity: int, use_cache: bool):
        self.level = level
        self.n = n
        self.caches = level.transformer.new_cache(capacity) if use_cache else None
        self.tokens: torch.Tensor | None = None  # everything fed so far (uncached mode)
        self.valid: torch.Tensor | None = None  # [N, length] keys that may be attended
        self.length = 0

    def feed(self, x: torch.Tensor, valid: torch.Tensor | None) -> torch.Tensor:
        """Append `x` [N, k, D] (valid [N, k] or None = all valid); returns the outputs at the new positions."""
        n, k, _ = x.shape
        if valid is None:
            valid = torch.ones(n, k, dtype=torch.bool, device=x.device)
        self.valid = valid if self.valid is None else torch.cat([self.valid, valid], dim=1)
        start, end = self.length, self.length + k
        self.length = end
        device = x.device
        if self.caches is not None:
            q = torch.arange(start, end, device=device)
            keys = torch.arange(end, device=device)
            mask = (keys.unsqueeze(0) <= q.unsqueeze(1))[None, None] & self.valid[:, None, None, :]
            return self.level.transformer(x, mask, caches=self.caches)
        self.tokens = x if self.tokens is None else torch.cat([self.tokens, x], dim=1)
        causal = torch.ones(end, end, dtype=torch.bool, device=device).tril()
        out = self.level.transformer(self.tokens, causal[None, None] & self.valid[:, None, None, :])
        return out[:, start:end]
