"""One writer per run folder: an advisory lock (`fcntl.flock`) on `OUTPUT/.fmusic-train.lock`, held for a run's life.

    with RunLock(output_dir, echo=print):   # ConfigError (one line, with the holder's PID) if a live run holds it
        ...train...

The kernel drops a `flock` when its holder dies (even by SIGKILL), so a lock file left by a dead process is simply
taken over; the PID written in it says whose it was, and the new holder says so. Within one process the lock is
re-entrant (the CLI takes it before reading the corpus, the Trainer again around `fit`): nested holders share one
open file and the last to leave releases it. Platforms without `fcntl` (Windows) and filesystems without locks run unlocked (the latter say so).
"""
from __future__ import annotations

import errno
import os
import threading
from pathlib import Path
from typing import Callable

from fractalmusic.errors import ConfigError

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None

LOCK_NAME = ".fmusic-train.lock"

_held: dict[str, list] = {}  # real path of the lock file -> [fd, count]
_guard = threading.Lock()


def _pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    except OSError:
        return False
    return True


def _read_owner(fd: int) -> tuple[int | None, str]:
    """(pid, the rest of the line) recorded in the lock file, or (None, "") when unreadable."""
    try:
        os.lseek(fd, 0, os.SEEK_SET)
        text = os.read(fd, 4096).decode("utf-8", "replace").strip()
    except OSError:
        return None, ""
    first, _, rest = text.partition(" ")
    try:
        return int(first), rest
    except ValueError:
        return None, ""


def _holder_pid(path: Path) -> int | None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        return _read_owner(fd)[0]
    finally:
        os.close(fd)


class RunLock:
    """An exclusive, non-blocking lock on a run folder; `acquire()` raises ConfigError when a live run holds it."""

    def __init__(self, directory: str | os.PathLike, echo: Callable[[str], None] | None = None,
                 what: str = "fmusic train"):
        self.dir = Path(directory)
        self.path = self.dir / LOCK_NAME
        self.echo = echo or (lambda *_: None)
        self.what = what
        self._key: str | None = None
        self.took_over_from: int | None = None  # PID of a dead holder whose lock file was taken over

    @property
    def held(self) -> bool:
        return self._key is not None

    def acquire(self) -> "RunLock":
        if self._key is not None:
            return self
        if fcntl is None:  # pragma: no cover
            self._key = ""
            return self
        self.dir.mkdir(parents=True, exist_ok=True)
        key = os.path.realpath(self.path)
        with _guard:
            entry = _held.get(key)
            if entry is not None:  # this process already holds it: nest
                entry[1] += 1
                self._key = key
                return self
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            except OSError as exc:
                raise ConfigError(f"{self.dir}: cannot create the run lock {LOCK_NAME} "
                                  f"({exc.strerror or exc})") from None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:
                os.close(fd)
                if exc.errno in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL):
                    # a filesystem without locks (some network mounts): train, but say nothing guards the folder
                    self._key = ""
                    self.echo(f"note: {self.dir} cannot be locked ({exc.strerror or exc}); make sure no other run "
                              f"writes there")
                    return self
                if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                    raise ConfigError(f"{self.dir}: cannot lock the run folder ({exc.strerror or exc})") from None
                pid = _holder_pid(self.path)
                if pid is None:
                    who = "another process"
                elif _pid_alive(pid):
                    who = f"PID {pid}"
                else:
                    who = f"PID {pid} has exited but a process it started"
                raise ConfigError(f"{self.dir} is in use by another run ({who} holds {self.path.name}); "
                                  f"wait for it to finish, stop it, or choose another --output-dir") from None
            old_pid, _ = _read_owner(fd)
            if old_pid is not None and old_pid != os.getpid():
                # flock is free, so its last holder is gone (the kernel released it when that process ended)
                self.took_over_from = old_pid
            try:
                os.ftruncate(fd, 0)
                os.lseek(fd, 0, os.SEEK_SET)
                os.write(fd, f"{os.getpid()} {self.what}\n".encode())
            except OSError:
                pass  # the lock itself is what matters; the PID is only for messages
            _held[key] = [fd, 1]
            self._key = key
        if self.took_over_from is not None:
            state = "no longer running" if not _pid_alive(self.took_over_from) else "no longer holding it"
            self.echo(f"note: took over the run lock of {self.dir} from PID {self.took_over_from} ({state})")
        return self

    def release(self) -> None:
        key, self._key = self._key, None
        if not key:
            return
        with _guard:
            entry = _held.get(key)
            if entry is None:
                return
            entry[1] -= 1
            if entry[1] > 0:
                return
            del _held[key]
            fd = entry[0]
        try:
            # empty the PID first so a reader never sees this process as holder after it let go
            os.ftruncate(fd, 0)
        except OSError:
            pass
        try:
            fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)

    def __enter__(self) -> "RunLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def holds_lock(directory: str | os.PathLike) -> bool:
    """Whether this process holds the run lock of `directory`."""
    key = os.path.realpath(Path(directory) / LOCK_NAME)
    with _guard:
        return key in _held
