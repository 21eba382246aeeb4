"""pytest fixtures for plugin tests: an in-process `fmusic` runner and the tiny generated corpus.

Import the ones a test module uses (``from fractalmusic.testing import fmusic_cli, tiny_corpus``) or list
``pytest_plugins = ["fractalmusic.testing.fixtures"]`` in a conftest.py to have them all.
"""
from __future__ import annotations

from pathlib import Path


from fractalmusic.piece import Piece
from fractalmusic.testing._compat import pytest
from fractalmusic.testing.cli import FmusicRunner
from fractalmusic.testing.corpus import tiny_pieces, write_tiny_corpus

CACHE_ENV = "FRACTALMUSIC_CACHE_DIR"


def make_runner(tmp_path: Path, monkeypatch: pytest.MonkeyPatch | None = None) -> FmusicRunner:
    """A runner working in `tmp_path`, with the encoded-piece cache inside it (never the user's cache)."""
    cache = str(Path(tmp_path) / ".fm-cache")
    if monkeypatch is not None:
        monkeypatch.setenv(CACHE_ENV, cache)
    return FmusicRunner(cwd=tmp_path, env={CACHE_ENV: cache})


@pytest.fixture
def fmusic_cli(tmp_path, monkeypatch) -> FmusicRunner:
    """`fmusic_cli("train", ...)` runs fmusic in this process inside tmp_path; returns a CliResult
    (exit_code, stdout, stderr; `.check()` fails the test with the output unless it exited 0)."""
    return make_runner(tmp_path, monkeypatch)


@pytest.fixture
def tiny_corpus(tmp_path) -> Path:
    """An ABC tune book of 8 generated 8-bar tunes under tmp_path (give it to `--data`)."""
    return write_tiny_corpus(tmp_path / "corpus", "abc")


@pytest.fixture
def tiny_midi_corpus(tmp_path) -> Path:
    """A folder of 8 MIDI files holding the same tunes (give it to `--data`)."""
    return write_tiny_corpus(tmp_path / "corpus", "midi")


@pytest.fixture
def tiny_corpus_pieces() -> list[Piece]:
    """The same 8 tunes as Pieces, with notes and ABC text."""
    return tiny_pieces()


class ContractFixtures:
    """The fixtures every contract suite's checks use: one torch thread, and an in-process `fmusic` runner."""

    @pytest.fixture(autouse=True)
    def _one_thread(self):
        """Tiny models gain nothing from intra-op threads (and lose a lot on a busy machine)."""
        import torch

        before = torch.get_num_threads()
        torch.set_num_threads(1)
        yield
        torch.set_num_threads(before)

    @pytest.fixture
    def fmusic_cli(self, tmp_path, monkeypatch):
        return make_runner(tmp_path, monkeypatch)
