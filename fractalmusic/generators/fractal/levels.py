"""What every generator level shares, and the final per-cell classifier.

A level receives a batch of items (level 0: rolls; level 1: 16x16 patches; level 2: 4x4 patches), each with the
condition tokens its parent computed for it (level 0: one learned start token). It splits every item into a 2-D
grid of child patches (`layout`), embeds the children's cells, runs a transformer over
``[condition tokens, child tokens]`` and returns, for each child it predicts, the condition tokens of the next,
finer level: the child's own output, and for MAR levels also the outputs of its four neighbours on the 2-D grid
(below, above, before, after; zeros at the border), as in fractalgen. AR levels hand over one condition, the output
of the position before the child in the scan order (its neighbours' outputs would leak later children).

With `skip_silent`, levels 1 and 2 first predict from the conditions whether their whole item is silent (all cells
0); silent items stop there, in training and in sampling. On sparse piano rolls this skips most of the work.
"""
from __future__ import annotations

from typing import ClassVar

import torch
from torch import nn

from fractalmusic.generators.fractal.layout import PATCH_SIZES, neighbour_table
from fractalmusic.generators.fractal.transformer import Transformer

CELL_DIM = 8  # per-cell embedding width inside a 16x16 or 4x4 child patch, before the patch projection


class Level(nn.Module):
    kind: ClassVar[str] = ""
    n_next_conds: ClassVar[int] = 1  # condition tokens handed to each child

    def __init__(
        self,
        index: int,
        width: int,
        depth: int,
        heads: int,
        dropout: float,
        vocab: int,
        rows: int,
        max_cols: int,
        n_conds: int,
        cond_dim: int,
        silent_head: bool,
    ):
        super().__init__()
        self.index = index
        self.p = PATCH_SIZES[index]
        self.rows, self.max_cols = rows, max_cols
        self.n_conds = n_conds
        self.width = width
        if index == 0:
            self.start = nn.Parameter(torch.zeros(1, n_conds, width))
            self.cond_proj = None
        else:
            self.start = None
            self.cond_proj = nn.Linear(cond_dim, width)
        if self.p == 1:
            self.cell_embed = nn.Embedding(vocab, width)
            self.child_proj = None
        else:
            self.cell_embed = nn.Embedding(vocab, CELL_DIM)
            self.child_proj = nn.Linear(self.p * self.p * CELL_DIM, width)
        self.cond_pos = nn.Parameter(torch.zeros(n_conds, width))
        self.child_pos = nn.Parameter(torch.zeros(rows, max_cols, width))
        self.in_norm = nn.LayerNorm(width, eps=1e-6)
        self.transformer = Transformer(width, depth, heads, dropout)
        if silent_head:
            self.silent_head = nn.Sequential(
                nn.Linear(n_conds * cond_dim, width), nn.GELU(), nn.Linear(width, 1)
            )
        else:
            self.silent_head = None

    # ------------------------------------------------------------- pieces
    def embed_children(self, child_cells: torch.Tensor) -> torch.Tensor:
        """[N, S, p, p] cell classes -> [N, S, width]."""
        n, s = child_cells.shape[:2]
        e = self.cell_embed(child_cells.reshape(n, s, -1))
        if self.child_proj is None:
            return e[:, :, 0]
        return self.child_proj(e.reshape(n, s, -1))

    def positions(self, cols: int) -> torch.Tensor:
        """[rows*cols, width]: the 2-D position table's first `cols` columns, row-major."""
        return self.child_pos[:, :cols].reshape(-1, self.width)

    def cond_tokens(self, conds: torch.Tensor | None, n: int) -> torch.Tensor:
        tok = self.start.expand(n, -1, -1) if conds is None else self.cond_proj(conds)
        return tok + self.cond_pos

    def silent_logit(self, conds: torch.Tensor) -> torch.Tensor:
        """[N, n_conds, cond_dim] -> [N] logit of "this item is silent"."""
        return self.silent_head(conds.reshape(conds.shape[0], -1)).squeeze(-1).float()

    def set_grad_checkpointing(self, enabled: bool) -> None:
        self.transformer.grad_checkpointing = enabled

    # ------------------------------------------------------------- per kind
    def child_conditions(self, child_cells, child_real, conds, cols, masked=None) -> torch.Tensor:
        """Outputs [N, S, width] in child order: row j is what the level knows about child j (teacher forced)."""
        raise NotImplementedError

    def gather(self, out: torch.Tensor, b: torch.Tensor, j: torch.Tensor, child_real: torch.Tensor, cols: int):
        """Condition tokens [M, n_next_conds, width] for children (b[m], j[m])."""
        return out[b, j].unsqueeze(1)


def neighbour_conditions(out, b, j, child_real, rows, cols):
    """[M, 5, D]: child j's own output and those of its 4 grid neighbours (zeros at the border/padding)."""
    n, s, d = out.shape
    table = neighbour_table(rows, cols, out.device)[j]  # [M, 4]
    inside = table >= 0
    safe = table.clamp(min=0)
    bb = b.unsqueeze(1).expand_as(safe)
    nb = out[bb, safe]  # [M, 4, D]
    keep = inside & child_real[bb, safe]
    nb = nb * keep.unsqueeze(-1).to(nb.dtype)
    return torch.cat([out[b, j].unsqueeze(1), nb], dim=1)


class CellHead(nn.Module):
    """The final level: the class of one cell from its condition tokens (a small transformer over them)."""

    def __init__(
        self, cond_dim: int, n_conds: int, width: int, depth: int, heads: int, dropout: float, vocab: int,
        left_cell: bool = False,
        right_cell: bool = False,
    ):
        super().__init__()
        self.proj = nn.Linear(cond_dim, width)
        self.pos = nn.Parameter(torch.zeros(n_conds, width))
        # the class of the cell one time step before (same pitch), or `vocab` for "not made yet / unknown"
        self.left_embed = nn.Embedding(vocab + 1, width) if left_cell else None
        self.right_embed = nn.Embedding(vocab + 1, width) if right_cell else None  # the cell one step after
        self.in_norm = nn.LayerNorm(width, eps=1e-6)
        self.transformer = Transformer(width, depth, heads, dropout)
        self.out = nn.Linear(width, vocab)

    def forward(
        self, conds: torch.Tensor, left: torch.Tensor | None = None, right: torch.Tensor | None = None
    ) -> torch.Tensor:
        """[M, n_conds, cond_dim] (and, with left/right-cell embeddings, left / right [M]: the classes of the cells
        one step before / after, `vocab` = unknown) -> logits [M, vocab] (float32)."""
        x = self.proj(conds) + self.pos
        for embed, side in ((self.left_embed, left), (self.right_embed, right)):
            if embed is None:
                continue
            if side is None:
                raise ValueError("this cell classifier needs the classes of the cells beside (or `vocab` for unknown)")
            x = torch.cat([x[:, :1] + embed(side).to(x.dtype).unsqueeze(1), x[:, 1:]], dim=1)
        x = self.in_norm(x)
        x = self.transformer(x)
        return self.out(x[:, 0]).float()

    def set_grad_checkpointing(self, enabled: bool) -> None:
        self.transformer.grad_checkpointing = enabled
