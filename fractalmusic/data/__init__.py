"""Data: corpora, preparation, cache, splits, crop datasets and loaders.

    from fractalmusic.data import DataConfig, build_datasets, make_loader
    train_ds, val_ds, report = build_datasets(DataConfig(data="chorales", crop_length=128), representation)
    loader = make_loader(train_ds, batch_size=16, shuffle=True, seed=0, epoch=0)
    for batch in loader:   # {"grid": LongTensor[16, 128, 128], "mask": BoolTensor[16, 128]}
        ...
"""
from __future__ import annotations

import importlib
from typing import Any

# public name -> module; imported on first use, so `fmusic data list` does not pay for importing torch
_EXPORTS = {
    "DataReport": "build",
    "Prepared": "build",
    "build_datasets": "build",
    "prepare_data": "build",
    "Cache": "cache",
    "file_digest": "cache",
    "DATA_ALIASES": "config",
    "DEFAULT_CROP": "config",
    "DataConfig": "config",
    "default_corpus": "config",
    "BUILTINS": "corpora",
    "Corpus": "corpora",
    "builtin_summary": "corpora",
    "resolve_corpus": "corpora",
    "GridCropDataset": "dataset",
    "GridWindowDataset": "dataset",
    "PieceStore": "dataset",
    "TokenCropDataset": "dataset",
    "TokenWindowDataset": "dataset",
    "WholeTuneDataset": "dataset",
    "collate_for": "loader",
    "epoch_batches": "loader",
    "make_loader": "loader",
    "group_reasons": "prepare",
    "read_corpus": "prepare",
    "split_indices": "split",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'fractalmusic.data' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"fractalmusic.data.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
