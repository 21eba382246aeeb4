"""Geometry of the fractal hierarchy on a piano-roll grid of `height` pitch rows x `width` time steps.

Every level sees its item as a 2-D grid of child patches, pitch bands by time columns:

=====  ==========================  =========================  ======================
level  item                        children (patch size p)    child grid (rows x cols)
=====  ==========================  =========================  ======================
0      the roll, height x W        16 x 16 patches            height/16 x W/16
1      one 16 x 16 patch           4 x 4 patches              4 x 4
2      one 4 x 4 patch             single cells               4 x 4
=====  ==========================  =========================  ======================

The grid comes from the real shape (8 x 32 for 128 x 512), never from a square root of the child count.
Children are numbered row-major on that grid: child (r, c) is ``r * cols + c``; row 0 is the lowest pitch band,
column 0 the earliest time. W is padded to a multiple of 16 first (the padding is masked out).

Scan orders for AR levels, on each level's own child grid:

* ``row_major``: all time columns of a pitch band, lowest band first, before the next band up;
* ``column_major``: all pitch bands of a time column, lowest first, before the next column (left to right in time).

Neighbours (the extra conditions a MAR level hands to its children) are, in this order: the band below (lower
pitch), the band above, the column before (earlier), the column after; -1 where the grid ends.
"""
from __future__ import annotations

import functools

import torch

PATCH_SIZES = (16, 4, 1)  # child patch size at levels 0, 1, 2
ALIGN = PATCH_SIZES[0]  # widths are padded to this


def padded_width(width: int) -> int:
    return -(-int(width) // ALIGN) * ALIGN


def child_grid(height: int, width: int, level: int) -> tuple[int, int]:
    """(rows, cols) of the child grid of a level-`level` item; `height`/`width` are the roll's (level 0 only)."""
    if level == 0:
        return height // PATCH_SIZES[0], padded_width(width) // PATCH_SIZES[0]
    parent, child = PATCH_SIZES[level - 1], PATCH_SIZES[level]
    return parent // child, parent // child


def patchify(x: torch.Tensor, p: int) -> torch.Tensor:
    """[N, R*p, C*p] -> [N, R*C, p, p], children numbered row-major over (r, c)."""
    n, h, w = x.shape
    r, c = h // p, w // p
    return x.reshape(n, r, p, c, p).permute(0, 1, 3, 2, 4).reshape(n, r * c, p, p)


def unpatchify(x: torch.Tensor, rows: int, cols: int) -> torch.Tensor:
    """[N, R*C, p, p] -> [N, R*p, C*p] (inverse of `patchify`)."""
    n, s, p, _ = x.shape
    return x.reshape(n, rows, cols, p, p).permute(0, 1, 3, 2, 4).reshape(n, rows * p, cols * p)


@functools.lru_cache(maxsize=64)
def _neighbours(rows: int, cols: int) -> torch.Tensor:
    r = torch.arange(rows).repeat_interleave(cols)
    c = torch.arange(cols).repeat(rows)
    idx = r * cols + c
    below = torch.where(r > 0, idx - cols, -1)
    above = torch.where(r < rows - 1, idx + cols, -1)
    before = torch.where(c > 0, idx - 1, -1)
    after = torch.where(c < cols - 1, idx + 1, -1)
    return torch.stack([below, above, before, after], dim=1)


def neighbour_table(rows: int, cols: int, device=None) -> torch.Tensor:
    """LongTensor [rows*cols, 4]: child index of the (below, above, before, after) neighbour, -1 at the border."""
    return _neighbours(rows, cols).to(device)


@functools.lru_cache(maxsize=64)
def _scan(rows: int, cols: int, order: str) -> torch.Tensor:
    grid = torch.arange(rows * cols).reshape(rows, cols)
    if order == "row_major":
        return grid.reshape(-1)
    if order == "column_major":
        return grid.t().reshape(-1)
    raise ValueError(f"unknown scan order {order!r}")


def scan_permutation(rows: int, cols: int, order: str, device=None) -> torch.Tensor:
    """LongTensor [rows*cols]: entry t is the child index generated t-th by an AR level."""
    return _scan(rows, cols, order).to(device)


def window_starts(total: int, window: int, overlap: int) -> list[int]:
    """Start columns of the windows that cover [0, total) with `window`-wide windows overlapping by >= `overlap`.

    The last window ends exactly at `total`. All values stay multiples of 16 when the arguments are.
    """
    if total <= window:
        return [0]
    step = max(window - overlap, ALIGN)
    starts = [0]
    while starts[-1] + window < total:
        starts.append(min(starts[-1] + step, total - window))
    return starts


def child_side_columns(
    edge: torch.Tensor, child_cells: torch.Tensor, visible: torch.Tensor, rows: int, cols: int, unknown: int,
    after: bool = False,
) -> torch.Tensor:
    """The column just before each child, [N, R*C, p] (with `after`: just after it): for a child in the first grid
    column (the last, with `after`) the item's own `edge` column ([N, R*p], its rows), else the nearest column of
    the child before (after) it on the grid where `visible` [N, R*C] says that child is made, and `unknown` where
    not. child_cells: [N, R*C, p, p] (as from `patchify`)."""
    n, _, p, _ = child_cells.shape
    near = child_cells[..., 0 if after else p - 1]  # [N, S, p]: the time step of a child next to its neighbour
    near = torch.where(visible.unsqueeze(-1), near, torch.full_like(near, unknown)).reshape(n, rows, cols, p)
    own = edge.to(near.dtype).reshape(n, rows, 1, p)
    parts = [near[:, :, 1:], own] if after else [own, near[:, :, :-1]]
    return torch.cat(parts, dim=2).reshape(n, rows * cols, p)
