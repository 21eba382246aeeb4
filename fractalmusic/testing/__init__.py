"""Contract test suites for plugin authors (pytest), installed with fractalmusic.

    # tests/test_my_plugin.py of a plugin package
    from fractalmusic.testing import GeneratorContract, RepresentationContract

    class TestTransformer(GeneratorContract):
        generator = "transformer"
        config = {"width": 32, "depth": 1, "heads": 2}      # tiny

    class TestEvents(RepresentationContract):
        representation = "events"

pytest collects the inherited checks in each `Test*` subclass: declarations, unknown config refused, loss/nll
agreement, padding ignored, grad checkpointing, bf16 autocast on CPU, sampling (shape, seed and greedy determinism,
primer kept, eos padding, bad arguments refused, train mode restored), state_dict round trip; for representations
round trip, decode never raises (hypothesis), JSON state and fingerprint, transposition; and for both a tiny
`fmusic train` -> resume -> `sample` -> `evaluate` run on a generated corpus. Class attributes (documented on each
class) adapt them; a check that does not apply to a plugin is skipped with the reason.

Fixtures (import them into a test module, or `pytest_plugins = ["fractalmusic.testing.fixtures"]` in conftest.py):
`fmusic_cli` (runs `fmusic` in-process inside tmp_path), `tiny_corpus` (an ABC tune book), `tiny_midi_corpus`
(MIDI files), `tiny_corpus_pieces` (Pieces). Helpers: `FmusicRunner`, `CliResult`, `one_error_line`,
`config_args`, `tiny_pieces`, `tiny_tunes`, `write_tiny_corpus`.

Importing needs only fractalmusic; running the checks needs pytest, and the property checks hypothesis
(`pip install 'fractalmusic[testing]'`: they are skipped with that hint when it is missing). No network.

fractalmusic's own tests run these suites over every installed plugin; for that run a plugin may give a tiny config
as a class attribute `test_config` (a dict of its Config's fields) on its Generator or Representation class.
"""
from __future__ import annotations

from fractalmusic.testing.cli import CliResult, FmusicRunner, config_args, one_error_line
from fractalmusic.testing.corpus import tiny_pieces, tiny_tunes, write_abc_book, write_midi_files, write_tiny_corpus
from fractalmusic.testing.endtoend import EndToEnd
from fractalmusic.testing.fixtures import fmusic_cli, tiny_corpus, tiny_corpus_pieces, tiny_midi_corpus
from fractalmusic.testing.generator import GeneratorContract
from fractalmusic.testing.representation import RepresentationContract

__all__ = [
    "GeneratorContract",
    "RepresentationContract",
    "EndToEnd",
    "FmusicRunner",
    "CliResult",
    "one_error_line",
    "config_args",
    "fmusic_cli",
    "tiny_corpus",
    "tiny_midi_corpus",
    "tiny_corpus_pieces",
    "tiny_pieces",
    "tiny_tunes",
    "write_abc_book",
    "write_midi_files",
    "write_tiny_corpus",
]
