"""Train/validation split by piece, deterministic and stable.

Each piece's key ("<sha256 of its file>:<index in the file>") is hashed with the split seed to a number in [0, 1);
pieces below `val_fraction` are held out. The split therefore never depends on where a corpus lies on disk, on the
order files are listed in, or on the other pieces (adding files moves no existing piece across), and windows of
one piece can never land on both sides. A book's tunes are split one by one.

Two small-corpus rules: at least one piece always stays for training, and when the corpus is large enough to
expect a validation piece (n * val_fraction >= 1) but the hashes gave none, the piece nearest the threshold is
held out. Otherwise validation may be empty, and the caller reports it.

Copies are dropped before the split (`dedupe`): two pieces with the same `content_key` (the tune's ABC text less
its X: line, comments and spacing; or the notes of a piece without text) are one piece, so a book that repeats a
tune can never put a copy of a training piece into validation.
"""
from __future__ import annotations

import hashlib
import re
from typing import Any, Sequence

import numpy as np

_SPACE = re.compile(r"[ \t]+")


def _normal_abc(text: str) -> str:
    """A tune's text as compared for copies: no X: line, no %-comment lines, runs of blanks as one, no blank lines."""
    out = []
    for line in text.replace("\r\n", "\n").replace("\r", "\n").split("\n"):
        stripped = line.strip()
        if not stripped or stripped.startswith("%") or re.match(r"^X:", stripped):
            continue
        out.append(_SPACE.sub(" ", stripped))
    return "\n".join(out)


def content_key(piece: Any) -> str:
    """A hash of what a piece holds, equal for copies of one tune (see the module docstring)."""
    h = hashlib.sha256()
    text = (getattr(piece, "meta", None) or {}).get("text")
    if getattr(piece, "abc", None):
        h.update(b"abc\x00" + _normal_abc(piece.abc).encode("utf-8", "surrogatepass"))
    elif isinstance(text, str):  # a plain-text document (text plugin: meta["text"]), compared as written
        h.update(b"text\x00" + text.encode("utf-8", "surrogatepass"))
    else:
        notes = np.ascontiguousarray(piece.notes)
        h.update(_notes_prefix(notes.dtype))
        h.update(notes.reshape(-1).view(np.uint8))  # the records' bytes as they are (no copy)
    return h.hexdigest()[:32]


_PREFIXES: dict[np.dtype, bytes] = {}


def _notes_prefix(dtype: np.dtype) -> bytes:
    """What a note array's content key starts with: its dtype's description (made once: numpy takes a while)."""
    prefix = _PREFIXES.get(dtype)
    if prefix is None:
        prefix = _PREFIXES[dtype] = b"notes\x00" + str(dtype.descr).encode()
    return prefix


def dedupe(keys: Sequence[str | None]) -> tuple[list[int], list[tuple[int, int]]]:
    """(indices to keep, [(dropped index, index of the first copy kept)]); None keys are never copies."""
    first: dict[str, int] = {}
    keep, dropped = [], []
    for i, k in enumerate(keys):
        if k is None:
            keep.append(i)
        elif k in first:
            dropped.append((i, first[k]))
        else:
            first[k] = i
            keep.append(i)
    return keep, dropped


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
