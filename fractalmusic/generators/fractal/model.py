"""The fractal generators `mar` and `ar`: one hierarchy of levels over ``[128, W]`` piano-roll grids.

After "Fractal Generative Models" (Li, Sun, Fan, He 2025). Level 0 is a transformer over the 8 x W/16 grid of
16x16 patches, level 1 over the 4x4 grid of 4x4 patches inside one 16x16 patch, level 2 over the 4x4 cells of
a 4x4 patch, and a final classifier predicts each cell's class from the conditions level 2 made for it. Each level
is MAR or AR (`generator_types`); `mar` and `ar` differ only in the default (all MAR, all AR).

Loss (nats per cell). Each level predicts only some of its children (MAR: the masked ones; AR: all real ones);
their conditions go down, and the final classifier's cross-entropy is taken on the cells that were predicted at
every level. With `skip_silent`, levels 1 and 2 first predict "this patch is silent" (binary cross-entropy) and
silent patches stop there. The terms are weighted so that the sum estimates the negative log-likelihood of every
real cell of the batch: a MAR level that predicts k of its n real children multiplies what comes from below by
n / k (the any-order estimator). `loss` divides by the number of real cells; `loss_note_cells` /
`loss_empty_cells` split the same sum between cells that are sounding (onset/sustain) and silent in the target
(the silent-flag terms are shared out over a patch's cells). Padding (mask False) is never predicted nor counted.
With `note_cell_weight` w != 1, training multiplies the cell classifier's cross-entropy on sounding cells by w (the
logged `loss` is then that weighted sum, no longer a likelihood); `nll` never weighs.
The silent flag makes the likelihood an upper bound (a non-silent branch could also produce silence), never an
underestimate.

The cells before and after (`left_cell`, state version 4 on; `right_cell`, 5 on). Cells in the first column of a 4x4 patch are predicted from
conditions that summarise the patch before them in time, not from its last column itself, and most broken notes of
the samples sat there (a voice held in one patch and started again, or stopped, in the next). So the cell
classifier also gets an embedding of the cell one time step before its own at the same pitch, where that cell is
already made: in sampling, a known cell or one generated earlier (an earlier MAR iteration, an earlier AR step, a
finished window); in training, the same rule read off the masks (a child that a MAR level above did not mask, any
earlier child of an AR scan); else an "unknown" class. The column before a crop or a sampling window is unknown.
`right_cell` does the same for the cell one step after (a MAR level may have made the later patch first; in an AR
scan the later child is never made, so there it is always unknown in training).

Sampling. All n samples form one batch; at each level the children predicted in one iteration of all items are
sent down together. Cells outside the generation mask are known: never changed, only conditioned on; children
that are wholly known are skipped, silent flags are not drawn where a known cell already sounds. Wider than the
level-0 window (the widest crop seen in training, else `max_crop_length`), the roll is made window by window,
each overlapping the previous one by half a window, which is then a known primer. `temperature` (higher = more
random) divides the final classifier's logits (with top-k / top-p / greedy there) and the silent-flag logits;
the MAR visiting order is uniformly random and does not depend on it. With `note_temperature`, a cell is drawn in
two parts: silence or sound at `note_temperature` (this decides which pitches sound), then, if sounding, which
sounding class (sustain, onset) at `temperature` (the rhythm); on the chorales a cold first part (0.15-0.3) keeps
the samples in a key without making every note long (docs/BENCHMARKS.md). Pitch rows that never sounded in
training (`pitch_rows`, recorded while training, saved with the weights) are never generated: a structural prior
of the representation's 128 rows, as a model trained on the chorales has no evidence about pitches 0-35 or 89-127.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from fractalmusic import sampling
from fractalmusic.errors import ConfigError
from fractalmusic.generators.base import Generator
from fractalmusic.generators.fractal.ar import ARLevel
from fractalmusic.generators.fractal.config import (
    NUM_LEVELS,
    FractalConfig,
    FractalEvalOptions,
    FractalSampleOptions,
    check_note_temperature,
    parse_num_iter,
)
from fractalmusic.generators.fractal.layout import (
    child_grid,
    child_side_columns,
    padded_width,
    patchify,
    unpatchify,
    window_starts,
)
from fractalmusic.generators.fractal.levels import CellHead
from fractalmusic.generators.fractal.mar import MARLevel
from fractalmusic.representations.base import RepresentationSpec


@dataclass
class _SampleContext:
    generator: torch.Generator | None
    temperature: float
    top_k: int | None
    top_p: float | None
    greedy: bool
    num_iter: tuple[int, ...]
    use_cache: bool
    note_temperature: float | None = None  # silence vs sound of a cell; None: `temperature` for the whole cell

    def draw_cells(self, logits: torch.Tensor) -> torch.Tensor:
        """Cell classes [M] from the cell classifier's logits [M, V] (see the module docstring)."""
        t, nt = self.temperature, self.note_temperature
        if nt is None or self.greedy or t == 0:
            return sampling.draw(logits, t, self.top_k, self.top_p, self.greedy, self.generator)
        lp = torch.log_softmax(logits.float(), dim=-1)
        silent = lp[:, :1]
        sound = torch.logsumexp(lp[:, 1:], dim=-1, keepdim=True)
        within = torch.log_softmax(lp[:, 1:] / t, dim=-1)
        joint = torch.cat([silent / nt, sound / nt + within], dim=-1)
        return sampling.draw(joint, 1.0, self.top_k, self.top_p, False, self.generator)

    def rand(self, shape, device) -> torch.Tensor:
        if self.generator is None:
            return torch.rand(shape, device=device)
        return torch.rand(shape, generator=self.generator, device=self.generator.device).to(device)


class _Totals:
    """Running sums of a loss/nll pass (nats, weighted to estimate the NLL of all real cells)."""

    def __init__(self, device):
        self.total = torch.zeros((), device=device)
        self.note = torch.zeros((), device=device)
        self.empty = torch.zeros((), device=device)
        self.covered = torch.zeros((), dtype=torch.long, device=device)

    def add(self, weighted: torch.Tensor, note_fraction: torch.Tensor, covered: torch.Tensor) -> None:
        self.total = self.total + weighted.sum()
        w = weighted.detach()
        self.note = self.note + (w * note_fraction).sum()
        self.empty = self.empty + (w * (1 - note_fraction)).sum()
        self.covered = self.covered + covered


def _init_weights(module: nn.Module) -> None:
    if isinstance(module, nn.Linear):
        nn.init.trunc_normal_(module.weight, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.Embedding):
        nn.init.trunc_normal_(module.weight, std=0.02)
    elif isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)


class FractalGenerator(Generator):
    """Common code of `mar` and `ar` (see the module docstring)."""

    accepts: ClassVar[tuple[str, ...]] = ("grid",)
    Config: ClassVar[type] = FractalConfig
    plugin_api_version: ClassVar[int] = 2  # declares SampleOptions / EvalOptions
    SampleOptions: ClassVar[type | None] = FractalSampleOptions  # --num-iter and the grid region --mask-*
    EvalOptions: ClassVar[type | None] = FractalEvalOptions  # --nll-forward-number
    default_types: ClassVar[tuple[str, ...]] = ("mar", "mar", "ar")  # levels 0-2 when generator_types is empty
    # more, smaller steps: on a CPU, batch 8 at the compact size makes ~0.6 s steps (docs/BENCHMARKS.md)
    train_defaults: ClassVar[dict[str, Any]] = {"batch_size": 8}
    # 2: an empty generator_types means `default_types` (1: every level of the generator's own kind); checkpoints
    # store the resolved types from version 2 on. 3: the `pitch_rows` buffer (rows that sounded in training).
    # 4: `left_cell` (the cell classifier's left-cell embedding); older checkpoints load with it off.
    # 5: `right_cell` (its right-cell embedding), off for older checkpoints
    state_version: ClassVar[int] = 5

    def __init__(self, config: FractalConfig, spec: RepresentationSpec):
        super().__init__(config, spec)
        vocab, height = int(spec.vocab_size), int(spec.height)
        if vocab < 2:
            raise ConfigError(f"generator {self.name!r} needs at least 2 cell classes, the representation has {vocab}")
        if height < 16 or height % 16:
            raise ConfigError(f"generator {self.name!r} needs a grid height that is a multiple of 16, not {height}")
        widths, depths, heads = config.level_widths(), config.level_depths(), config.level_heads()
        self.types = config.level_types(self.default_types)
        config.generator_types = self.types  # stored resolved: a later change of the defaults keeps old checkpoints
        self.height, self.vocab = height, vocab
        levels = []
        for i in range(NUM_LEVELS):
            rows, cols = (height // 16, config.max_crop_length // 16) if i == 0 else child_grid(0, 0, i)
            n_conds = 1 if i == 0 else (MARLevel.n_next_conds if self.types[i - 1] == "mar" else 1)
            args = (i, widths[i], depths[i], heads[i], config.dropout, vocab, rows, cols, n_conds,
                    widths[i - 1] if i else widths[0], config.skip_silent and i > 0)
            if self.types[i] == "mar":
                mr = (config.mask_ratio_loc, config.mask_ratio_scale, config.mask_ratio_min)
                levels.append(MARLevel(*args, mask_ratio=mr))
            else:
                levels.append(ARLevel(*args, scan_order=config.scan_order))
        self.levels = nn.ModuleList(levels)
        head_conds = MARLevel.n_next_conds if self.types[-1] == "mar" else 1
        self.left_cell, self.right_cell = bool(config.left_cell), bool(config.right_cell)
        self.head = CellHead(
            widths[2], head_conds, widths[3], depths[3], heads[3], config.dropout, vocab,
            left_cell=self.left_cell, right_cell=self.right_cell,
        )
        # widest crop seen in training (padded to 16): the sampling window, saved with the weights
        self.register_buffer("trained_width", torch.zeros((), dtype=torch.long))
        # pitch rows that sounded in a training batch: sampling generates only rows between the lowest and the
        # highest of them (none recorded, e.g. a checkpoint older than state version 3: every row)
        self.register_buffer("pitch_rows", torch.zeros(height, dtype=torch.bool))
        self.kv_cache = True  # AR sampling with a key-value cache (False: recompute the prefix; for checks)
        self.apply(_init_weights)
        for name, p in self.named_parameters():
            if name.endswith(("start", "cond_pos", "child_pos", "mask_token", "head.pos")):
                nn.init.normal_(p, std=0.02)

    @classmethod
    def upgrade_state(cls, state: dict[str, Any], from_version: int) -> dict[str, Any]:
        """Version 1 checkpoints left generator_types empty for "every level of the generator's own kind";
        versions 1-2 have no `pitch_rows` (they get an empty one: no rows recorded, every row may sound); versions
        1-3 have no left-cell embedding (`left_cell` off), versions 1-4 no right-cell one (`right_cell` off)."""
        if from_version < 2:
            config = dict(state.get("config") or {})
            if not config.get("generator_types"):
                config["generator_types"] = [cls.name] * NUM_LEVELS
            state = {**state, "config": config}
        if from_version < 3:
            model = dict(state.get("model") or {})
            if "pitch_rows" not in model:
                width = model.get("levels.0.child_pos")
                height = int(width.shape[0]) * 16 if isinstance(width, torch.Tensor) else 128
                model["pitch_rows"] = torch.zeros(height, dtype=torch.bool)
            state = {**state, "model": model}
        if from_version < 5:
            config = dict(state.get("config") or {})
            if from_version < 4:
                config.setdefault("left_cell", False)
            config.setdefault("right_cell", False)
            state = {**state, "config": config}
        return state

    # ------------------------------------------------------------- plumbing
    def set_grad_checkpointing(self, enabled: bool = True) -> None:
        super().set_grad_checkpointing(enabled)
        for lv in self.levels:
            lv.set_grad_checkpointing(bool(enabled))
        self.head.set_grad_checkpointing(bool(enabled))

    def forward(self, batch: dict[str, torch.Tensor]) -> dict[str, Any]:
        """`loss(batch)`, so that wrappers such as DistributedDataParallel can call the module."""
        return self.loss(batch)

    def window_width(self) -> int:
        """Width of the level-0 window used for sampling (multiple of 16)."""
        width = self.config.max_crop_length
        trained = int(self.trained_width)
        return min(width, padded_width(trained)) if trained > 0 else width

    def _prepare(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        grid = batch["grid"]
        if grid.dim() != 3 or grid.shape[1] != self.height:
            raise ConfigError(
                f"generator {self.name!r} expects grids of shape [batch, {self.height}, width], got {tuple(grid.shape)}"
            )
        b, h, w = grid.shape
        if w > self.config.max_crop_length:
            raise ConfigError(
                f"crop width {w} is wider than --max-crop-length {self.config.max_crop_length} (the size of the "
                f"level-0 position table): use a shorter --crop-length or a larger --max-crop-length"
            )
        tmask = batch.get("mask")
        if tmask is None:
            tmask = torch.ones(b, w, dtype=torch.bool, device=grid.device)
        tmask = tmask.to(device=grid.device, dtype=torch.bool)
        if tmask.shape != (b, w):
            raise ConfigError(f"batch mask must have shape {(b, w)}, got {tuple(tmask.shape)}")
        if grid.numel() and (int(grid.min()) < 0 or int(grid.max()) >= self.vocab):
            raise ConfigError(
                f"cell classes must be in [0, {self.vocab}) for this model, found {int(grid.min())}..{int(grid.max())}"
            )
        wp = padded_width(w)
        grid = grid.long()
        if wp != w:
            grid = F.pad(grid, (0, wp - w))
            tmask = F.pad(tmask, (0, wp - w), value=False)
        real = tmask.unsqueeze(1).expand(b, h, wp).contiguous()
        grid = grid * real
        if self.training:
            self.trained_width.fill_(max(int(self.trained_width), wp))
            self.pitch_rows |= (grid != 0).any(dim=2).any(dim=0)
        return grid, real

    def _unknown_sides(self, n: int, device) -> torch.Tensor | None:
        """The columns before and after a level-0 item (a crop or a sampling window), [n, height, 2]: unknown;
        None without `left_cell` and `right_cell`."""
        if not (self.left_cell or self.right_cell):
            return None
        return torch.full((n, self.height, 2), self.vocab, dtype=torch.long, device=device)

    def _head(self, conds: torch.Tensor, sides: torch.Tensor | None) -> torch.Tensor:
        if sides is None:
            return self.head(conds)
        sides = sides.reshape(-1, 2)
        return self.head(conds, sides[:, 0], sides[:, 1])

    def allowed_rows(self) -> torch.Tensor:
        """Bool [height]: the rows sampling may generate, from the lowest to the highest row that sounded in
        training (every row when none was recorded)."""
        seen = self.pitch_rows.nonzero().squeeze(1)
        if seen.numel() == 0:
            return torch.ones(self.height, dtype=torch.bool, device=self.pitch_rows.device)
        rows = torch.arange(self.height, device=self.pitch_rows.device)
        return (rows >= seen.min()) & (rows <= seen.max())

    # ------------------------------------------------------------- training
    def _loss_level(self, li: int, cells, real, conds, scale, acc: _Totals, mode: str, sides=None) -> None:
        """sides: [N, rows of the item, 2] the columns before and after each item (`vocab` where not made), with
        `left_cell` / `right_cell`."""
        if li == NUM_LEVELS:  # the cell classifier
            target = cells.reshape(-1)
            ce = F.cross_entropy(self._head(conds, sides), target, reduction="none")
            sounding = (target != 0).float()
            w = self.config.note_cell_weight
            if mode == "train" and w != 1.0:  # `nll` always weighs every cell the same: it is the likelihood
                ce = ce * (1.0 + (w - 1.0) * sounding)
            acc.add(scale * ce, sounding, target.new_tensor(target.numel()))
            return
        level = self.levels[li]
        if level.silent_head is not None:
            n_real = real.flatten(1).sum(1)
            n_note = (cells != 0).flatten(1).sum(1)  # padding cells are 0
            silent = n_note == 0
            bce = F.binary_cross_entropy_with_logits(level.silent_logit(conds), silent.float(), reduction="none")
            acc.add(scale * bce, n_note.float() / n_real.clamp(min=1).float(), n_real[silent].sum())
            keep = (~silent).nonzero().squeeze(1)
            if keep.numel() == 0:
                return
            if keep.numel() < cells.shape[0]:
                cells, real, conds, scale = cells[keep], real[keep], conds[keep], scale[keep]
                sides = None if sides is None else sides[keep]
        p = level.p
        cols = cells.shape[2] // p
        child_cells = patchify(cells, p)
        child_real_cells = patchify(real, p)
        child_real = child_real_cells.flatten(2).any(2)
        chosen, factor = level.select(child_real, mode)
        masked = chosen if level.kind == "mar" else None
        if self.grad_checkpointing and self.training and torch.is_grad_enabled():
            # keep only the level's inputs; its embeddings, norms and block inputs are recomputed in backward
            out = checkpoint(level.child_conditions, child_cells, child_real, conds, cols, masked, use_reentrant=False)
        else:
            out = level.child_conditions(child_cells, child_real, conds, cols, masked)
        b, j = chosen.nonzero(as_tuple=True)
        next_conds = level.gather(out, b, j, child_real, cols)
        next_sides = None
        if sides is not None:
            # what sampling will have made before a child: MAR, the children it did not mask; AR, the earlier
            # ones (the child before in time), never the later ones (the child after)
            rows = cells.shape[1] // p
            mar = level.kind == "mar"
            before = child_side_columns(
                sides[..., 0], child_cells, ~chosen if mar else torch.ones_like(chosen), rows, cols, self.vocab
            )
            after = child_side_columns(
                sides[..., 1], child_cells, ~chosen if mar else torch.zeros_like(chosen), rows, cols, self.vocab,
                after=True,
            )
            next_sides = torch.stack([before[b, j], after[b, j]], dim=-1)
        self._loss_level(
            li + 1, child_cells[b, j], child_real_cells[b, j], next_conds, (scale * factor)[b], acc, mode, next_sides
        )

    def _run(self, grid, real, mode: str) -> _Totals:
        acc = _Totals(grid.device)
        scale = torch.ones(grid.shape[0], device=grid.device)
        sides = self._unknown_sides(grid.shape[0], grid.device)
        self._loss_level(0, grid, real, None, scale, acc, mode, sides)
        return acc

    def loss(self, batch: dict[str, torch.Tensor]) -> dict[str, Any]:
        grid, real = self._prepare(batch)
        acc = self._run(grid, real, "train")
        n = int(real.sum())
        n_note = int((grid != 0).sum())
        n_empty = n - n_note
        loss = acc.total / max(n, 1)
        if self.training and torch.is_grad_enabled() and _distributed():
            # every parameter takes part in every step (MAR masks and silent patches can leave some unused)
            loss = loss + 0.0 * sum(p.reshape(-1)[:1].sum() for p in self.parameters() if p.requires_grad)
        note = float(acc.note) / max(n_note, 1)
        empty = float(acc.empty) / max(n_empty, 1)
        return {
            "loss": loss,
            "n": n,
            "bits_per_cell": float(loss.detach()) / float(np.log(2)),
            "loss_note_cells": note,
            "loss_empty_cells": empty,
            "note_cell_fraction": n_note / max(n, 1),
            "cells_predicted": int(acc.covered),
        }

    @torch.no_grad()
    def nll(self, batch: dict[str, torch.Tensor], nll_forward_number: int = 1) -> dict[str, Any]:
        """Summed nats over the batch's real cells, averaged over `nll_forward_number` random MAR masks.

        MAR levels mask a uniformly drawn number of children (the any-order estimator); with only AR levels one
        teacher-forced pass is exact and repeats are skipped.
        """
        if isinstance(nll_forward_number, bool) or int(nll_forward_number) != nll_forward_number or nll_forward_number < 1:
            raise ConfigError(f"nll_forward_number must be a whole number >= 1, not {nll_forward_number!r}")
        was_training = self.training
        self.eval()
        try:
            grid, real = self._prepare(batch)
            repeats = int(nll_forward_number) if "mar" in self.types else 1
            total = note = empty = 0.0
            for _ in range(repeats):
                acc = self._run(grid, real, "nll")
                total += float(acc.total)
                note += float(acc.note)
                empty += float(acc.empty)
        finally:
            self.train(was_training)
        n = int(real.sum())
        n_note = int((grid != 0).sum())
        return {
            "nll_sum": total / repeats,
            "n": n,
            "nll_note_sum": note / repeats,
            "n_note": n_note,
            "nll_empty_sum": empty / repeats,
            "n_empty": n - n_note,
        }

    # ------------------------------------------------------------- sampling
    def _fill(self, li: int, cells, known, real, conds, ctx: _SampleContext, sides=None) -> torch.Tensor:
        """Generate the unknown real cells of a batch of level-`li` items; returns the filled cells. sides: as in
        `_loss_level` (the columns before and after each item where made, else `vocab`)."""
        if li == NUM_LEVELS:
            ids = ctx.draw_cells(self._head(conds, sides))
            flat = cells.reshape(-1)
            return torch.where(known.reshape(-1), flat, ids.to(flat.dtype)).reshape(cells.shape)
        level = self.levels[li]
        active = None
        if level.silent_head is not None:
            sounding = ((cells != 0) & known).flatten(1).any(1)
            logit = level.silent_logit(conds)
            if ctx.greedy or ctx.temperature == 0:
                silent = logit > 0
            else:
                silent = ctx.rand(logit.shape, logit.device) < torch.sigmoid(logit / ctx.temperature)
            silent &= ~sounding
            if bool(silent.any()):
                cells = torch.where(silent[:, None, None] & ~known, torch.zeros_like(cells), cells)
                active = (~silent).nonzero().squeeze(1)
                if active.numel() == 0:
                    return cells
        sub_cells, sub_known, sub_real, sub_conds, sub_sides = cells, known, real, conds, sides
        if active is not None:
            sub_cells, sub_known, sub_real = cells[active], known[active], real[active]
            sub_conds = None if conds is None else conds[active]
            sub_sides = None if sides is None else sides[active]
        p = level.p
        rows, cols = sub_cells.shape[1] // p, sub_cells.shape[2] // p
        child_cells = patchify(sub_cells, p).clone()
        child_known = patchify(sub_known, p)
        child_real_cells = patchify(sub_real, p)
        child_real = child_real_cells.flatten(2).any(2)
        child_unknown = (~child_known & child_real_cells).flatten(2).any(2)
        made = ~child_unknown  # children whose cells are all there: known ones, then each as it is generated

        def fill(b: torch.Tensor, j: torch.Tensor, next_conds: torch.Tensor) -> None:
            next_sides = None
            if sub_sides is not None:  # children generated together (one MAR iteration) do not see each other
                r, c = j // cols, j % cols
                edges = sub_sides[b].reshape(b.shape[0], rows, p, 2)[torch.arange(b.shape[0], device=b.device), r]
                unknown = torch.full_like(edges[..., 0], self.vocab)
                before, after = (j - 1).clamp(min=0), (j + 1).clamp(max=child_cells.shape[1] - 1)
                prev = torch.where(made[b, before].unsqueeze(1), child_cells[b, before, :, p - 1], unknown)
                nxt = torch.where(made[b, after].unsqueeze(1), child_cells[b, after, :, 0], unknown)
                next_sides = torch.stack([
                    torch.where((c == 0).unsqueeze(1), edges[..., 0], prev),
                    torch.where((c == cols - 1).unsqueeze(1), edges[..., 1], nxt),
                ], dim=-1)
            child_cells[b, j] = self._fill(
                li + 1, child_cells[b, j], child_known[b, j], child_real_cells[b, j], next_conds, ctx, next_sides
            )
            made[b, j] = True

        level.sample(child_cells, child_unknown, child_real, sub_conds, cols, ctx.num_iter[li], fill, ctx)
        filled = unpatchify(child_cells, rows, cols)
        if active is None:
            return filled
        cells = cells.clone()
        cells[active] = filled
        return cells

    def draw_samples(
        self,
        n: int,
        length: int,
        *,
        primer: np.ndarray | None,
        mask: np.ndarray | None,
        temperature: float,
        top_k: int | None,
        top_p: float | None,
        greedy: bool,
        generator: torch.Generator | None,
        **options: Any,
    ) -> np.ndarray:
        """`n` rolls ``[n, 128, length]`` (int64 numpy); `length` any multiple of 4.

        primer: known cells, ``[128, W]`` or ``[n, 128, W]`` with W <= length, placed at time 0. mask: True where
        cells are generated (``[128, W]``, ``[n, 128, W]`` or ``[W]`` for whole time steps, W <= length; beyond W
        everything is generated); cells where it is False keep the primer's value (0 beyond the primer) and are
        never changed. Without a mask, everything after the primer is generated (continuation).
        temperature: divides the logits of the cell classes and of the silent-patch flags; higher is more random,
        0 (or greedy) takes the likeliest. top_k / top_p filter the cell classes only. The MAR order is random
        from `seed` whatever the temperature. num_iter: MAR iterations per level - an int (level 0) or up to 3
        values (default: the config's `num_iter`). note_temperature: silence or sound of each cell at this
        temperature, the rest at `temperature` (None: the whole cell at `temperature`). Unknown cells in pitch
        rows outside `allowed_rows()` stay silent.
        """
        num_iter = self.config.num_iter
        if options.get("num_iter") is not None:
            num_iter = parse_num_iter(options["num_iter"], default=self.config.num_iter, option="num_iter")
        note_temperature = check_note_temperature(options.get("note_temperature"))
        if length < 4 or length % 4:
            raise ConfigError(f"sample length must be a positive multiple of 4 time steps, not {length!r}")
        device = self.device
        cells_np, known_np = self._primer_arrays(n, length, primer, mask)
        wp = padded_width(length)
        cells = torch.zeros(n, self.height, wp, dtype=torch.long, device=device)
        known = torch.ones(n, self.height, wp, dtype=torch.bool, device=device)
        cells[:, :, :length] = torch.from_numpy(cells_np).to(device)
        known[:, :, :length] = torch.from_numpy(known_np).to(device)
        cells = cells * known  # unknown cells start at 0 (never read before they are generated)
        known[:, ~self.allowed_rows().to(device), :] = True  # rows never heard in training: silent, as known cells
        real = torch.zeros(n, self.height, wp, dtype=torch.bool, device=device)
        real[:, :, :length] = True
        ctx = _SampleContext(
            generator=generator,
            temperature=float(temperature),
            top_k=top_k,
            top_p=top_p,
            greedy=bool(greedy),
            num_iter=num_iter,
            use_cache=bool(self.kv_cache),
            note_temperature=note_temperature,
        )
        window = self.window_width()
        overlap = max(16, (window // 2) // 16 * 16)
        for start in window_starts(wp, window, overlap):  # `sample` has put the model in eval mode
            end = min(start + window, wp)
            k, r = known[:, :, start:end], real[:, :, start:end]
            if not bool((~k & r).any()):
                continue
            c = cells[:, :, start:end].contiguous()
            sides = self._unknown_sides(n, device)
            cells[:, :, start:end] = self._fill(0, c, k.contiguous(), r.contiguous(), None, ctx, sides)
            known[:, :, start:end] = True
        return cells[:, :, :length].cpu().numpy().astype(np.int64)

    def _primer_arrays(self, n: int, length: int, primer, mask) -> tuple[np.ndarray, np.ndarray]:
        h = self.height
        cells = np.zeros((n, h, length), dtype=np.int64)
        known = np.zeros((n, h, length), dtype=bool)
        width = 0
        if primer is not None:
            p = np.asarray(primer)
            if p.ndim == 2:
                p = p[None]
            if p.ndim != 3 or p.shape[1] != h or p.shape[0] not in (1, n):
                raise ConfigError(f"primer must have shape [{h}, W] or [{n}, {h}, W], got {tuple(np.shape(primer))}")
            width = p.shape[2]
            if width > length:
                raise ConfigError(f"primer is {width} time steps wide, longer than the sample length {length}")
            if p.size:
                if not np.issubdtype(p.dtype, np.integer):
                    if not np.all(np.isfinite(p)) or not np.all(p == np.round(p)):
                        raise ConfigError("primer cells must be whole numbers (cell classes)")
                lo, hi = int(p.min()), int(p.max())
                if lo < 0 or hi >= self.vocab:
                    raise ConfigError(f"primer cell classes must be in [0, {self.vocab}), found {lo}..{hi}")
            cells[:, :, :width] = p.astype(np.int64)
        if mask is not None:
            m = np.asarray(mask).astype(bool)
            if m.ndim == 1:
                m = m[None, None, :]
            elif m.ndim == 2:
                m = m[None]
            if m.ndim != 3 or m.shape[1] not in (1, h) or m.shape[2] > length or m.shape[0] not in (1, n):
                raise ConfigError(
                    f"mask must have shape [W], [{h}, W] or [{n}, {h}, W] with W <= {length}, "
                    f"got {tuple(np.shape(mask))}"
                )
            known[:, :, : m.shape[2]] = ~m  # beyond the mask's width everything is generated
        else:
            known[:, :, :width] = True
        return cells, known


def _distributed() -> bool:
    return torch.distributed.is_available() and torch.distributed.is_initialized()


class MARGenerator(FractalGenerator):
    """Fractal generator: MAR over 16x16 and 4x4 patches, AR over the cells of a 4x4 patch, unless
    `generator_types` says otherwise (docs/BENCHMARKS.md: on the chorales the AR cell level trains faster and
    breaks fewer notes than an all-MAR hierarchy at the same CPU budget)."""

    name = "mar"
    default_types = ("mar", "mar", "ar")
    # lr 2e-3: after 640 steps on the chorales 0.0460 validation nats per cell against 0.0483 at 1e-3 (3e-3: 0.0459)
    train_defaults: ClassVar[dict[str, Any]] = {"batch_size": 8, "lr": 2e-3}


class ARGenerator(FractalGenerator):
    """Fractal generator, all levels autoregressive (KV-cached sampling) unless `generator_types` says otherwise."""

    name = "ar"
    default_types = ("ar", "ar", "ar")
