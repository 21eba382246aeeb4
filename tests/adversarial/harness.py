"""The adversarial suite's machinery: a registry of cases, the real `fmusic` run in this process or in a
subprocess, and the checks every case shares (exit code, one line on stderr, no traceback, no "internal error").

A case is a function `case(ctx) -> None` registered with `@case(area, expected)`; it builds its own inputs under
`ctx.tmp`, runs the CLI through `ctx.fmusic(...)` (in-process, with an alarm as a time limit) or `ctx.spawn(...)`
(a subprocess, for signals, locks and kills), and asserts with plain `assert`. `ctx.outcome` is what the summary
table of docs/RELIABILITY.md shows. The same registry is run by `tests/adversarial/test_adversarial.py` (pytest)
and by `scripts/adversarial_report.py` (the table).
"""
from __future__ import annotations

import contextlib
import io
import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

REPO = Path(__file__).resolve().parents[2]


@dataclass
class Case:
    name: str
    area: str
    expected: str
    func: Callable[["Context"], None]
    pending: str | None = None  # what is still missing, if the case is expected to fail for now


CASES: dict[str, Case] = {}


def case(area: str, expected: str, pending: str | None = None):
    """Register `func` as a case named after it (without a leading `case_`)."""

    def wrap(func):
        name = func.__name__.removeprefix("case_")
        assert name not in CASES, name
        CASES[name] = Case(name, area, expected, func, pending)
        return func

    return wrap


class CaseTimeout(BaseException):
    """Raised in the main thread when an in-process run goes past its limit (a BaseException: the CLI's
    `except Exception` must not swallow it)."""


@dataclass
class Result:
    code: int
    stdout: str
    stderr: str
    seconds: float

    @property
    def lines(self) -> list[str]:
        return [line for line in self.stderr.splitlines() if line.strip()]

    def brief(self) -> str:
        """exit code, seconds and the first stderr line, for the table."""
        first = self.lines[0] if self.lines else (self.stdout.strip().splitlines() or [""])[0]
        return f"exit {self.code} in {self.seconds:.1f} s: {first}".rstrip(": ")


@dataclass
class Context:
    tmp: Path
    shared: dict = field(default_factory=dict)  # fixtures made once per run (checkpoints), see cases.py
    outcome: str = ""

    # ------------------------------------------------------------------ running fmusic
    def env(self, **extra: str) -> dict[str, str]:
        env = dict(os.environ)
        env.setdefault("MPLBACKEND", "Agg")
        env["OMP_NUM_THREADS"] = "1"
        env["FRACTALMUSIC_CACHE_DIR"] = str(self.tmp / ".fm-cache")
        env.pop("FRACTALMUSIC_DEBUG", None)
        env.update(extra)
        return env

    def fmusic(self, *args, limit: float = 60.0, cwd: Path | None = None) -> Result:
        """Run `fmusic ARGS` in this process (the real entry point); CaseTimeout after `limit` seconds."""
        from fractalmusic.cli import main

        out, err = io.StringIO(), io.StringIO()
        old_env = dict(os.environ)
        old_cwd = os.getcwd()
        os.environ.clear()
        os.environ.update(self.env())
        code = 0

        def alarm(_signum, _frame):
            raise CaseTimeout(f"fmusic {' '.join(map(str, args))} ran past {limit:.0f} s")

        handlers = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}  # put back afterwards
        previous = signal.signal(signal.SIGALRM, alarm)
        signal.setitimer(signal.ITIMER_REAL, limit)
        start = time.monotonic()
        try:
            os.chdir(cwd or self.tmp)
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
                try:
                    main([str(a) for a in args])
                except SystemExit as exc:
                    code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, previous)
            for signum, handler in handlers.items():
                if handler is not None:
                    signal.signal(signum, handler)
            os.chdir(old_cwd)
            os.environ.clear()
            os.environ.update(old_env)
        return Result(code, out.getvalue(), err.getvalue(), time.monotonic() - start)

    def spawn(self, *args, env: dict | None = None, **popen) -> subprocess.Popen:
        """`python -m fractalmusic ARGS` as a subprocess (stdout and stderr piped, text), started as from a terminal:
        SIGINT at its default and not blocked. A process inherits an ignored SIGINT (a test run started in the
        background of a non-interactive shell, or under nohup), and Python then keeps ignoring it, as it should,
        so a Ctrl-C case would test the launcher of the test run instead of fmusic."""
        return subprocess.Popen([sys.executable, "-m", "fractalmusic", *map(str, args)], cwd=self.tmp,
                                env=self.env(**(env or {})), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True, preexec_fn=_sigint_as_from_a_terminal, **popen)

    def run_proc(self, *args, limit: float = 120.0, env: dict | None = None) -> Result:
        start = time.monotonic()
        proc = self.spawn(*args, env=env)
        try:
            out, err = proc.communicate(timeout=limit)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate()
            raise AssertionError(f"fmusic {' '.join(map(str, args))} ran past {limit:.0f} s") from None
        return Result(proc.returncode, out, err, time.monotonic() - start)

    # ------------------------------------------------------------------ shared checks
    def note(self, res: Result, extra: str = "") -> Result:
        self.outcome = res.brief() + (f"; {extra}" if extra else "")
        return res

    def one_line(self, res: Result, code: int = 2, contains: tuple[str, ...] | str = (), within: float | None = None,
                 pattern: str | None = None) -> str:
        """Assert: exit `code`, exactly one non-empty line on stderr starting with 'error:', no traceback, no
        'internal error', each of `contains` in it (case-insensitive), within `within` seconds. Returns the line."""
        self.note(res)
        no_crash(res)
        assert res.code == code, f"exit {res.code}, expected {code}: {res.stderr[-800:]}"
        assert len(res.lines) == 1, f"expected one line on stderr, got {len(res.lines)}: {res.stderr[-800:]}"
        line = res.lines[0]
        assert line.startswith("error: "), line
        for text in (contains,) if isinstance(contains, str) else contains:
            assert text.lower() in line.lower(), f"{text!r} not in {line!r}"
        if pattern is not None:
            assert re.search(pattern, line), f"{pattern!r} does not match {line!r}"
        if within is not None:
            assert res.seconds < within, f"took {res.seconds:.1f} s (limit {within} s)"
        return line


def _sigint_as_from_a_terminal() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})


def no_crash(res: Result) -> None:
    text = res.stdout + res.stderr
    assert "Traceback (most recent call last)" not in text, text[-2000:]
    assert "internal error" not in text, text[-2000:]
