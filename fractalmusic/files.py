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


def free_bytes(path: str | os.PathLike) -> int | None:
    """Bytes an unprivileged writer may still use on the filesystem holding `path`; None where nobody can tell."""
    try:
        st = os.statvfs(path)
    except (OSError, AttributeError):  # no statvfs (Windows) or the folder is gone
        return None
    if st.f_frsize <= 0 or st.f_blocks == 0:  # pseudo filesystems report zeros
        return None
    return st.f_bavail * st.f_frsize


def errno_name(exc: BaseException) -> str:
    """`ENOSPC`, `EIO`, ... for an OSError (EIO when it carries no errno)."""
    import errno

    code = getattr(exc, "errno", None)
    return errno.errorcode.get(code, "EIO") if isinstance(code, int) else "EIO"


def append_line(fd: int, line: str, path: str | os.PathLike = "") -> None:
    """Append one whole line to the file open at `fd` (O_APPEND) with a single write.

    If the disk takes only part of it, the part is cut off again and OSError(ENOSPC) is raised: the file never
    ends in a torn line.
    """
    import errno

    data = line.encode("utf-8")
    if not data.endswith(b"\n"):
        data += b"\n"
    before = os.fstat(fd).st_size
    try:
        written = os.write(fd, data)
    except OSError:
        _cut(fd, before)
        raise
    if written != len(data):
        _cut(fd, before)
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))


def _cut(fd: int, size: int) -> None:
    try:
        if os.fstat(fd).st_size > size:
            os.ftruncate(fd, size)
    except OSError:
        pass
