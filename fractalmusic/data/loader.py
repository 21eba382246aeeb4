"""Batches: padding + masks (`collate_for`) and loaders whose order is a pure function of (seed, epoch).

`make_loader` builds the whole epoch's list of batches up front from ``np.random.default_rng([seed, epoch])``,
shards it for torch.distributed (rank r of w takes every w-th item; the order is padded by repeating its start so
every rank gets as many items, as `DistributedSampler` does), and can start at any batch: a trainer resuming in
the middle of an epoch passes `start_batch=k` and no skipped item is ever built. Datasets with `item_lengths()`
(whole tunes) are batched by length: the shuffled order is cut into pools of 50 batches, each pool sorted by
length and cut into batches, and the batches shuffled again - so padding stays small and the order random.
"""
from __future__ import annotations

from typing import Any, Callable, Iterator

import numpy as np
import torch
from torch.utils.data import DataLoader, Sampler

BUCKET_POOL = 50  # batches per length-sorted pool


def collate_for(spec, crop_length: int | None) -> Callable[[list[dict[str, Any]]], dict[str, torch.Tensor]]:
    """The collate function producing a generator's batches for a representation spec.

    tokens: ``{"tokens": LongTensor[B, L], "mask": BoolTensor[B, L]}`` with L = crop_length + 1 (the model
    predicts crop_length tokens from them), padded with `pad_id` (0 if the vocabulary has none).
    grid: ``{"grid": LongTensor[B, 128, W], "mask": BoolTensor[B, W]}`` with W = crop_length, padded with
    silence (0). With crop_length None the batch is padded to its longest item (grids to a multiple of 4).
    """
    kind = spec.kind
    if kind == "tokens":
        pad = 0 if spec.pad_id is None else int(spec.pad_id)
        target = None if crop_length is None else int(crop_length) + 1

        def collate_tokens(items: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
            seqs = [np.asarray(it["tokens"]) for it in items]
            width = target if target is not None else max(len(s) for s in seqs)
            tokens = torch.full((len(seqs), width), pad, dtype=torch.long)
            mask = torch.zeros((len(seqs), width), dtype=torch.bool)
            for b, s in enumerate(seqs):
                n = min(len(s), width)
                tokens[b, :n] = torch.from_numpy(np.asarray(s[:n], dtype=np.int64))
                mask[b, :n] = True
            return {"tokens": tokens, "mask": mask}

        return collate_tokens
    if kind == "grid":
        height = int(getattr(spec, "height", 128) or 128)

        def collate_grid(items: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
            grids = [np.asarray(it["grid"]) for it in items]
            if crop_length is not None:
                width = int(crop_length)
            else:
                longest = max(g.shape[-1] for g in grids)
                width = max(4, -(-longest // 4) * 4)
            out = torch.zeros((len(grids), height, width), dtype=torch.long)
            mask = torch.zeros((len(grids), width), dtype=torch.bool)
            for b, g in enumerate(grids):
                n = min(g.shape[-1], width)
                out[b, :, :n] = torch.from_numpy(np.asarray(g[:, :n], dtype=np.int64))
                mask[b, :n] = True
            return {"grid": out, "mask": mask}

        return collate_grid
    raise ValueError(f"unknown representation kind {kind!r}")


def epoch_batches(
    n: int,
    batch_size: int,
    shuffle: bool,
    seed: int,
    epoch: int,
    rank: int = 0,
    world_size: int = 1,
    drop_last: bool = False,
    lengths: np.ndarray | None = None,
) -> list[list[int]]:
    """Every batch of one epoch for one rank, as lists of item indices."""
    if batch_size < 1:
        raise ValueError("batch_size must be at least 1")
    if world_size < 1 or not 0 <= rank < world_size:
        raise ValueError(f"rank {rank} is not within a world of {world_size}")
    rng = np.random.default_rng([int(seed), int(epoch)])
    order = rng.permutation(n) if shuffle else np.arange(n)
    if world_size > 1 and n:
        if drop_last:
            order = order[: n - n % world_size]
        else:
            order = np.resize(order, -(-n // world_size) * world_size)  # repeats the start cyclically
        order = order[rank::world_size]
    if lengths is not None:
        lengths = np.asarray(lengths)
        pool = batch_size * BUCKET_POOL
        batches = []
        for start in range(0, len(order), pool):
            chunk = order[start : start + pool]
            chunk = chunk[np.argsort(-lengths[chunk], kind="stable")]
            batches.extend(chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size))
        if drop_last:
            batches = [b for b in batches if len(b) == batch_size]
        if shuffle:
            batches = [batches[i] for i in rng.permutation(len(batches))]
    else:
        batches = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
        if drop_last and batches and len(batches[-1]) < batch_size:
            batches.pop()
    return [[int(i) for i in b] for b in batches]


class EpochBatchSampler(Sampler[list[int]]):
    """The batches of one epoch (see `epoch_batches`), from batch `start_batch` on."""

    def __init__(self, batches: list[list[int]], start_batch: int = 0):
        self.all_batches = batches
        self.start_batch = max(0, int(start_batch))

    def __iter__(self) -> Iterator[list[int]]:
        return iter(self.all_batches[self.start_batch :])

    def __len__(self) -> int:
        return max(0, len(self.all_batches) - self.start_batch)


def make_loader(
    dataset,
    batch_size: int,
    shuffle: bool,
    seed: int = 0,
    epoch: int = 0,
    num_workers: int = 0,
    rank: int = 0,
    world_size: int = 1,
    drop_last: bool = False,
    start_batch: int = 0,
    collate_fn: Callable | None = None,
    pin_memory: bool = False,
) -> DataLoader:
    """A DataLoader over one epoch whose batches depend only on (seed, epoch) (and rank/world_size).

    Sets `dataset.set_epoch(epoch)` first, so crops and shifts follow the epoch too. `loader.batches_per_epoch`
    is the epoch's full batch count for this rank; `len(loader)` counts from `start_batch`.
    """
    if hasattr(dataset, "set_epoch"):
        dataset.set_epoch(epoch)
    lengths = dataset.item_lengths() if hasattr(dataset, "item_lengths") else None
    batches = epoch_batches(len(dataset), batch_size, shuffle, seed, epoch, rank, world_size, drop_last, lengths)
    sampler = EpochBatchSampler(batches, start_batch)
    collate = collate_fn or getattr(dataset, "collate", None)
    loader = DataLoader(
        dataset,
        batch_sampler=sampler,
        collate_fn=collate,
        num_workers=int(num_workers),
        pin_memory=pin_memory,
        persistent_workers=False,
    )
    loader.batches_per_epoch = len(batches)  # type: ignore[attr-defined]
    return loader
