"""Shared fixtures. Tests are tiny and fast; anything slower is marked `slow`."""
from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

os.environ.setdefault("MPLBACKEND", "Agg")
REPO = Path(__file__).resolve().parents[1]


@dataclass
class CliResult:
    exit_code: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        return self.stdout + self.stderr


def run_cli(*args: str, env: dict | None = None, cwd=None, timeout: float = 600) -> CliResult:
    """Run `python -m fractalmusic ARGS` in a subprocess (the real entry point, real exit codes)."""
    full_env = dict(os.environ)
    full_env.setdefault("FRACTALMUSIC_CACHE_DIR", str(Path(cwd or ".").resolve() / ".fm-cache"))
    if env:
        full_env.update(env)
    proc = subprocess.run(
        [sys.executable, "-m", "fractalmusic", *map(str, args)],
        capture_output=True,
        text=True,
        env=full_env,
        cwd=cwd,
        timeout=timeout,
    )
    return CliResult(proc.returncode, proc.stdout, proc.stderr)


@pytest.fixture
def cli(tmp_path):
    """`cli("train", "--max-steps", "2")` runs fmusic in a subprocess with a private cache under tmp_path."""

    def _run(*args, env=None, cwd=None):
        env = dict(env or {})
        env.setdefault("FRACTALMUSIC_CACHE_DIR", str(tmp_path / ".fm-cache"))
        return run_cli(*args, env=env, cwd=cwd or tmp_path)

    return _run


@pytest.fixture(autouse=True)
def _private_cache(tmp_path, monkeypatch):
    """Keep every test's encoded-piece cache inside its own tmp folder."""
    monkeypatch.setenv("FRACTALMUSIC_CACHE_DIR", str(tmp_path / ".fm-cache"))


def music21_corpus_dir() -> Path:
    import music21.corpus

    return Path(music21.corpus.__file__).parent


@pytest.fixture(scope="session")
def chorale_path() -> Path:
    """bwv66.6 from music21's embedded corpus (MusicXML)."""
    return music21_corpus_dir() / "bach" / "bwv66.6.mxl"


@pytest.fixture(scope="session")
def chorale_paths() -> list[Path]:
    d = music21_corpus_dir() / "bach"
    return sorted(d.glob("bwv*.mxl"))[:6]


def fmusic(capsys, *args):
    """Run the real entry point in this process: (exit code, stdout, stderr)."""
    from fractalmusic.cli import main

    code = 0
    try:
        main([str(a) for a in args])
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.fixture(scope="module")
def one_thread():
    """Tiny models gain nothing from intra-op threads and lose a lot to them on a shared, busy CPU."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def studio_runs(tmp_path_factory, chorale_path) -> Path:
    """A runs folder for the studio tests: a tiny ABC LSTM (folk/checkpoints/best.pt, with a metrics.jsonl) and a
    tiny MAR trained a few steps on a chorale (mar/checkpoints/best.pt), both real checkpoints."""
    import json

    import torch

    from fractalmusic.generators.fractal import MARGenerator
    from fractalmusic.io import read_pieces
    from fractalmusic.representations.pianoroll import PianoRollRepresentation
    from fractalmusic.training.checkpoint import make_payload, save_checkpoint
    from test_api import train_abc_checkpoint

    root = tmp_path_factory.mktemp("studio-runs")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        folk = root / "folk" / "checkpoints"
        folk.mkdir(parents=True)
        train_abc_checkpoint(folk / "best.pt", steps=40)
        lines = [{"step": s, "split": "train", "loss": 3.0 / s} for s in range(1, 41, 5)]
        lines.append({"step": 40, "split": "val", "loss": 0.5})
        (root / "folk" / "metrics.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines) + '{"step": 7')
        torch.manual_seed(0)
        rep = PianoRollRepresentation()
        gen = MARGenerator.build({"model_size": "tiny", "max_crop_length": 128}, rep.spec())
        grid = torch.as_tensor(rep.encode(read_pieces(chorale_path)[0])[:, :64])[None]
        batch = {"grid": grid, "mask": torch.ones(1, grid.shape[-1], dtype=torch.bool)}
        opt = torch.optim.Adam(gen.parameters(), lr=1e-3)
        gen.train()
        for _ in range(3):
            out = gen.loss(batch)
            opt.zero_grad()
            out["loss"].backward()
            opt.step()
        mar = root / "mar" / "checkpoints"
        mar.mkdir(parents=True)
        metrics = json.dumps({"val": {"loss": float(out["loss"].detach())}})
        save_checkpoint(mar / "best.pt", make_payload(rep, gen, step=3, metrics=metrics,
                                                      data_config=json.dumps({"crop_length": 64})))
    finally:
        torch.set_num_threads(threads)
    return root
