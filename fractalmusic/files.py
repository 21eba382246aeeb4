"""File helpers shared by the readers, the cache and the checkpoints (no torch, no music libraries)."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any, Callable


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_write(path: str | os.PathLike, write: Callable[[Any], None], durable: bool = False,
                 wrap: Callable[[Any], Any] | None = None) -> None:
    """Call `write(fileobj)` on a temporary file beside `path`, then rename it over `path`.

    A crash leaves the old file or the new one, never half of one. `durable`: fsync the data and the folder too
    (checkpoints; the cache, which can be rebuilt, skips it). `wrap` wraps the file object (tests use it).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            os.fchmod(f.fileno(), 0o666 & ~_umask())  # mkstemp makes 0600; give the permissions open() would
            write(wrap(f) if wrap is not None else f)
            if durable:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    if durable:
        try:  # make the rename itself durable
            dfd = os.open(path.parent, os.O_RDONLY)
            try:
                os.fsync(dfd)
            finally:
                os.close(dfd)
        except OSError:
            pass


def read_file_bytes(path: str | os.PathLike, what: str = "file") -> bytes:
    """The bytes of a file; PieceReadError (one line, with the path) when it cannot be read."""
    from fractalmusic.errors import PieceReadError

    path = Path(path)
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise PieceReadError(path, "no such file") from None
    except IsADirectoryError:
        raise PieceReadError(path, f"is a directory, not a {what}") from None
    except OSError as exc:
        raise PieceReadError(path, f"cannot read: {exc.strerror or exc}") from None
