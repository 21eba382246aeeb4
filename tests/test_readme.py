"""README's two opening commands are the project's contract with a new user; CI must run the test one verbatim."""
from __future__ import annotations

import re

from conftest import REPO


def _readme_commands() -> list[str]:
    text = (REPO / "README.md").read_text()
    return re.findall(r"```(?:bash|sh)\n(.*?)\n```", text, flags=re.S)


def test_ci_runs_readme_test_command_verbatim():
    blocks = _readme_commands()
    test_cmds = [b.strip() for b in blocks if "pytest" in b]
    assert test_cmds, "README has no test command"
    ci = (REPO / ".ci" / "run").read_text()
    assert test_cmds[0] in ci.splitlines(), "README's test command and .ci/run differ"


def test_readme_main_job_trains_samples_and_writes_audio():
    main_job = _readme_commands()[0]
    assert "pip install" in main_job and "fmusic train" in main_job and "fmusic sample" in main_job
    assert "wav" in main_job
