"""Running `fmusic` inside the test process: real argument parsing, real exit codes, captured output."""
from __future__ import annotations

import contextlib
import io
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping


@dataclass
class CliResult:
    """What one `fmusic` command did: its exit code and what it printed."""

    args: tuple[str, ...]
    exit_code: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        return self.stdout + self.stderr

    def check(self) -> "CliResult":
        """The result itself when the command succeeded; an AssertionError with its output when it did not."""
        if self.exit_code != 0:
            raise AssertionError(
                f"fmusic {' '.join(self.args)} exited with {self.exit_code}\n--- stdout\n{self.stdout}"
                f"\n--- stderr\n{self.stderr}"
            )
        return self


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def config_args(config: Mapping[str, Any] | None) -> list[str]:
    """A Config dict as `fmusic train` options: {"hidden_size": 16, "tie_weights": False, "widths": (8, 8)} ->
    ["--hidden-size", "16", "--no-tie-weights", "--widths", "8,8"] (the Config -> CLI rules)."""
    out: list[str] = []
    for name, value in (config or {}).items():
        if value is None:
            continue
        if isinstance(value, bool):
            out.append(_flag(name) if value else "--no-" + name.replace("_", "-"))
        elif isinstance(value, (list, tuple)):
            out += [_flag(name), ",".join(str(v) for v in value)]
        else:
            out += [_flag(name), str(value)]
    return out


class FmusicRunner:
    """`runner("train", "--max-steps", 2)` runs `fmusic train --max-steps 2` in this process.

    Output is captured here (not through pytest's capture), so a runner works in any fixture or plain function.
    `env` entries are set for the duration of each call (e.g. FRACTALMUSIC_CACHE_DIR); `cwd` is the working folder
    of each call.
    """

    def __init__(self, cwd: str | os.PathLike | None = None, env: Mapping[str, str] | None = None):
        self.cwd = Path(cwd) if cwd is not None else None
        self.env = dict(env or {})

    def __call__(self, *args: Any, env: Mapping[str, str] | None = None) -> CliResult:
        from fractalmusic.cli import main

        argv = tuple(str(a) for a in args)
        out, err = io.StringIO(), io.StringIO()
        code = 0
        saved_env = {k: os.environ.get(k) for k in {**self.env, **(env or {})}}
        saved_cwd = os.getcwd()
        try:
            os.environ.update({**self.env, **(env or {})})
            if self.cwd is not None:
                os.chdir(self.cwd)
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
                try:
                    main(list(argv))
                except SystemExit as exc:
                    code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        finally:
            os.chdir(saved_cwd)
            for k, v in saved_env.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
        return CliResult(argv, code, out.getvalue(), err.getvalue())

    def run_ok(self, *args: Any) -> CliResult:
        """Run and fail the test (with the command's output) unless it exits 0."""
        return self(*args).check()


def one_error_line(result: CliResult, *fragments: str) -> str:
    """The single `error: ...` line a refused command prints (exit code 2); asserts the shape and the fragments."""
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.exit_code == 2 and len(lines) == 1 and lines[0].startswith("error: "), (
        result.exit_code,
        result.stderr,
    )
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
    return lines[0]
