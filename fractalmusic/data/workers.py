"""Reader worker processes that never outlive the process that started them.

`ProcessPoolExecutor(initializer=die_with_parent, initargs=(os.getpid(),))`: if the parent is killed (SIGKILL, an
out-of-memory kill) the workers would otherwise wait on their task queue forever. On Linux the kernel sends each
worker SIGKILL when its parent dies (prctl PR_SET_PDEATHSIG); everywhere a small daemon thread also checks once a
second whether the parent is still there and ends the worker when it is not.
"""
from __future__ import annotations

import ctypes
import os
import signal
import sys
import threading
from contextlib import contextmanager

PR_SET_PDEATHSIG = 1
POLL_SECONDS = 1.0


def _parent_gone(parent_pid: int) -> bool:
    return os.getppid() != parent_pid


def _watch(parent_pid: int) -> None:
    stop = threading.Event()
    while not stop.wait(POLL_SECONDS):
        if _parent_gone(parent_pid):
            os._exit(1)


def die_with_parent(parent_pid: int) -> None:
    """Pool initializer: end this worker when `parent_pid` (the pid of the process that made the pool) dies.

    Workers also ignore SIGINT: Ctrl-C reaches the whole process group, and it is the parent's to handle (it stops
    the pool with `stop_pool`), not something each worker should answer with a traceback of its own."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if hasattr(signal, "pthread_sigmask"):  # forked while the parent held SIGINT back (`sigint_held`): let it in now
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
        except (OSError, AttributeError):
            pass
    if _parent_gone(parent_pid):  # the parent died before the signal was armed
        os._exit(1)
    threading.Thread(target=_watch, args=(parent_pid,), name="die-with-parent", daemon=True).start()


@contextmanager
def sigint_held():
    """Block SIGINT in this thread while worker processes are forked from it: a forked worker keeps the block until
    its initializer (`die_with_parent`) has set SIGINT to be ignored, so a Ctrl-C in that moment cannot reach it
    early (it would print a traceback of its own). The parent still hears a Ctrl-C (through another thread, or
    when the block ends). A no-op off the main thread or where the platform has no signal masks."""
    if not hasattr(signal, "pthread_sigmask") or threading.current_thread() is not threading.main_thread():
        yield
        return
    old = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


def stop_pool(pool) -> None:
    """Stop a ProcessPoolExecutor now (Ctrl-C, an error in the parent): queued tasks are dropped and the workers
    ended, instead of every queued file being read before the parent may exit."""
    procs = list((getattr(pool, "_processes", None) or {}).values())  # shutdown() forgets them
    pool.shutdown(wait=False, cancel_futures=True)
    for proc in procs:
        try:
            proc.terminate()
        except (OSError, ValueError, AttributeError):
            pass
