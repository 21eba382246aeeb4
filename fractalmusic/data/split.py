"""Train/validation split by piece, deterministic and stable.

Each piece's key ("<sha256 of its file>:<index in the file>") is hashed with the split seed to a number in [0, 1);
pieces below `val_fraction` are held out. The split therefore never depends on where a corpus lies on disk, on the
order files are listed in, or on the other pieces (adding files moves no existing piece across), and windows of
one piece can never land on both sides. A book's tunes are split one by one.

Two small-corpus rules: at least one piece always stays for training, and when the corpus is large enough to
expect a validation piece (n * val_fraction >= 1) but the hashes gave none, the piece nearest the threshold is
held out. Otherwise validation may be empty, and the caller reports it.
"""
from __future__ import annotations

import hashlib
from typing import Sequence


def split_score(key: str, seed: int) -> float:
    digest = hashlib.sha256(f"{seed}\x00{key}".encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64


def split_indices(keys: Sequence[str], val_fraction: float, seed: int = 0) -> tuple[list[int], list[int]]:
    """(train indices, validation indices) into `keys`, each in the original order."""
    n = len(keys)
    if n == 0 or val_fraction <= 0:
        return list(range(n)), []
    scores = [split_score(k, seed) for k in keys]
    val = {i for i, s in enumerate(scores) if s < val_fraction}
    if len(val) == n:  # keep one piece to train on: the one least eager to be held out
        val.discard(max(range(n), key=lambda i: scores[i]))
    if not val and n >= 2 and n * val_fraction >= 1:
        val.add(min(range(n), key=lambda i: scores[i]))
    train = [i for i in range(n) if i not in val]
    return train, sorted(val)
