"""Plugin-declared command-line surface: SampleOptions / EvalOptions / output formats reach the plugin through
`fmusic sample` and `fmusic evaluate`, which name no concrete generator themselves."""
from __future__ import annotations

import dataclasses
import json
import re
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))
import fakes  # noqa: E402
from conftest import fmusic  # noqa: E402

from fractalmusic import plugins  # noqa: E402
from fractalmusic.config import option_specs  # noqa: E402
from fractalmusic.errors import PluginError  # noqa: E402
from fractalmusic.plugin import GridRegion, option  # noqa: E402
from fractalmusic.training.checkpoint import make_payload, save_checkpoint  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.usefixtures("one_thread")


# ----------------------------------------------------------------------------------------- test plugins
@dataclasses.dataclass
class BeamOptions:
    beam: int | None = option(None, help="Beam width for the test generator.")
    mode: str = option("fast", help="Decoding mode.", choices=("fast", "exact"))
    verbose: bool = option(False, help="Say more.")

    def __post_init__(self):
        if self.beam is not None and self.beam < 1:
            from fractalmusic.errors import ConfigError

            raise ConfigError(f"--beam must be >= 1, not {self.beam}")


class OptionsGRU(fakes.FakeGRU):
    """API 2: declares its sampling options as a dataclass."""

    name = "options-gru"
    plugin_api_version = 2
    SampleOptions = BeamOptions
    calls: list = []

    def sample(self, n, length, primer=None, mask=None, temperature=1.0, top_k=None, top_p=None, greedy=False,
               seed=None, **options):
        self.check_sample_options(options)
        type(self).calls.append(options)
        return super().sample(n, length, primer, mask, temperature, top_k, top_p, greedy, seed)


class LegacyGRU(fakes.FakeGRU):
    """Written against API 1: a tuple of option names, no types."""

    name = "legacy-gru"
    sample_options = ("beam",)
    calls: list = []

    def sample(self, n, length, primer=None, mask=None, temperature=1.0, top_k=None, top_p=None, greedy=False,
               seed=None, **options):
        self.check_sample_options(options)
        type(self).calls.append(options)
        return super().sample(n, length, primer, mask, temperature, top_k, top_p, greedy, seed)


class TextTokens(fakes.FakeTokens):
    """Writes its own 'txt' format, and makes it the default."""

    name = "text-tokens"
    output_formats = ("txt",)
    default_output_formats = ("txt",)

    def write_output(self, piece, path, fmt):
        Path(path).write_text(" ".join(str(p) for p in piece.notes["pitch"]) + "\n")


@pytest.fixture
def registered():
    fakes.register()
    for kind, cls in (("generator", OptionsGRU), ("generator", LegacyGRU), ("representation", TextTokens)):
        plugins.register(kind, cls.name, cls)
    OptionsGRU.calls, LegacyGRU.calls = [], []
    yield
    for kind, cls in (("generator", OptionsGRU), ("generator", LegacyGRU), ("representation", TextTokens)):
        plugins.unregister(kind, cls.name)


def _checkpoint(tmp_path, gen_cls, rep_cls=fakes.FakeTokens) -> Path:
    rep = rep_cls()
    gen = gen_cls.build({"hidden_size": 8}, rep.spec())
    path = tmp_path / f"{gen_cls.name}.pt"
    save_checkpoint(path, make_payload(rep, gen, step=1))
    return path


# ----------------------------------------------------------------------------------------- the commands
def test_sample_and_evaluate_commands_name_no_generator():
    for name in ("sample_cmd.py", "evaluate_cmd.py"):
        text = (REPO / "fractalmusic" / "cli" / name).read_text()
        for word in ("num_iter", "num-iter", "mask_start", "mask-start", "nll_forward", "nll-forward"):
            assert word not in text, (name, word)
        assert not re.search(r"\bfractal\b", text, flags=re.I), name
        for gen in ("mar", "ar", "lstm", "gru", "rnn"):
            assert not re.search(rf"[\"']{gen}[\"']", text), (name, gen)


def test_fractal_declares_its_options_with_the_cli_spellings_of_today():
    from fractalmusic.generators.fractal import MARGenerator

    flags = [s.flag for s in option_specs(MARGenerator.SampleOptions)]
    assert flags == ["--mask-start", "--mask-end", "--mask-pitch-low", "--mask-pitch-high", "--num-iter",
                     "--note-temperature"]
    assert [s.flag for s in option_specs(MARGenerator.EvalOptions)] == ["--nll-forward-number"]
    assert all(s.help for s in option_specs(MARGenerator.SampleOptions))
    # the region becomes `mask`, never a keyword
    assert MARGenerator.sample_option_names() == ("num_iter", "note_temperature")


def test_sample_help_lists_the_checkpoints_own_options(tmp_path, capsys):
    from fractalmusic.generators.fractal import MARGenerator
    from fractalmusic.representations.pianoroll import PianoRollRepresentation

    rep = PianoRollRepresentation()
    gen = MARGenerator.build({"model_size": "tiny", "max_crop_length": 64}, rep.spec())
    path = tmp_path / "mar.pt"
    save_checkpoint(path, make_payload(rep, gen, step=1))
    code, out, err = fmusic(capsys, "sample", path, "--help")
    assert code == 0, err
    own = out[out.index("Sampling options of this checkpoint's model"):]
    assert "mar generator, pianoroll representation" in own
    for flag in ("--num-iter", "--mask-start", "--mask-end", "--mask-pitch-low", "--mask-pitch-high"):
        assert flag in own
    assert "MAR iterations per level" in own
    code, out, _ = fmusic(capsys, "sample", "--help")
    assert code == 0 and "--num-iter" not in out and "fmusic sample CHECKPOINT --help" in out
    code, out, _ = fmusic(capsys, "evaluate", path, "--help")
    assert code == 0 and "--nll-forward-number" in out
    code, out, _ = fmusic(capsys, "sample", tmp_path / "missing.pt", "--help")
    out = " ".join(out.split())
    assert code == 0 and "unavailable" in out and "no such checkpoint file" in out


def test_declared_sampling_options_reach_the_generator(registered, tmp_path, capsys):
    path = _checkpoint(tmp_path, OptionsGRU)
    code, out, err = fmusic(capsys, "sample", path, "-n", "1", "--length", "4", "--seed", "1", "--beam", "3",
                            "--mode", "exact", "--verbose", "--out-dir", tmp_path / "s")
    assert code == 0, err
    assert OptionsGRU.calls == [{"beam": 3, "mode": "exact", "verbose": True}]
    code, out, err = fmusic(capsys, "sample", path, "--length", "4", "--out-dir", tmp_path / "s")
    assert code == 0 and OptionsGRU.calls[-1] == {}  # options not given are not passed
    for args, fragment in ((["--beam", "x"], "--beam: 'x' is not a valid int"),
                           (["--beam", "0"], "--beam must be >= 1"),
                           (["--mode", "slow"], "--mode: 'slow' is not one of fast, exact"),
                           (["--bem", "2"], "did you mean '--beam'"),
                           (["--mask-start", "2"], "not a grid")):
        code, _, err = fmusic(capsys, "sample", path, "--length", "4", "--out-dir", tmp_path / "s", *args)
        assert code == 2 and len(err.strip().splitlines()) == 1 and fragment in err, (args, err)
    code, out, _ = fmusic(capsys, "sample", path, "--help")
    assert "--beam INT" in out and "Beam width for the test generator." in out and "--verbose / --no-verbose" in out
    # the Python API takes the same options, checked the same way
    import fractalmusic

    model = fractalmusic.load(path)
    assert [s.name for s in model.sample_option_specs()] == ["beam", "mode", "verbose"]
    with pytest.raises(Exception, match="not one of"):
        model.generate(1, 3, mode="slow")


def test_api1_option_names_still_reach_the_generator(registered, tmp_path, capsys):
    path = _checkpoint(tmp_path, LegacyGRU)
    code, _, err = fmusic(capsys, "sample", path, "-n", "1", "--length", "4", "--beam", "4,2",
                          "--out-dir", tmp_path / "s")
    assert code == 0, err
    assert LegacyGRU.calls == [{"beam": (4, 2)}]
    code, _, err = fmusic(capsys, "sample", path, "-n", "1", "--length", "4", "--beam", "5",
                          "--out-dir", tmp_path / "s")
    assert code == 0 and LegacyGRU.calls[-1] == {"beam": 5}


def test_representation_writes_its_own_output_format(registered, tmp_path, capsys):
    path = _checkpoint(tmp_path, fakes.FakeGRU, TextTokens)
    code, out, err = fmusic(capsys, "sample", path, "-n", "2", "--length", "5", "--seed", "2",
                            "--out-dir", tmp_path / "t")
    assert code == 0, err
    assert sorted(p.name for p in (tmp_path / "t").iterdir()) == ["sample_000.txt", "sample_001.txt"]
    code, _, err = fmusic(capsys, "sample", path, "-n", "1", "--length", "5", "--to", "txt,mid",
                          "--out-dir", tmp_path / "u")
    assert code == 0, err
    assert sorted(p.suffix for p in (tmp_path / "u").iterdir()) == [".mid", ".txt"]
    code, _, err = fmusic(capsys, "sample", path, "--to", "docx", "--out-dir", tmp_path / "v")
    assert code == 2 and "docx" in err and "txt" in err


def test_region_options_need_the_grid_region_base():
    @dataclasses.dataclass
    class Stray:
        mask_start: int | None = None

    class StrayGen(fakes.FakeGRU):
        name = "stray"
        SampleOptions = Stray

    @dataclasses.dataclass
    class Inherited(GridRegion):
        steps: int = 4

    class GridGen(fakes.FakeGRU):
        name = "gridgen"
        accepts = ("grid",)
        SampleOptions = Inherited

    with pytest.raises(PluginError, match="'mask_start' is the grid region option"):
        plugins.register("generator", "stray", StrayGen)
    plugins.register("generator", "gridgen", GridGen)
    plugins.unregister("generator", "gridgen")


# ----------------------------------------------------------------------------------------- evaluation options
@pytest.fixture
def estimating_lstm(tmp_path):
    from fractalmusic.generators.recurrent import LSTMGenerator

    @dataclasses.dataclass
    class Passes:
        passes: int = option(1, help="Passes averaged per batch.")

    class EstimatingLSTM(LSTMGenerator):
        name = "estimating-lstm"
        EvalOptions = Passes
        seen: list = []

        def nll(self, batch, passes=1):
            type(self).seen.append(passes)
            return super().nll(batch)

    plugins.register("generator", EstimatingLSTM.name, EstimatingLSTM)
    yield EstimatingLSTM
    plugins.unregister("generator", EstimatingLSTM.name)


def test_declared_evaluation_options_reach_nll(estimating_lstm, tmp_path, capsys):
    out = tmp_path / "run"
    code, _, err = fmusic(capsys, "train", "--repr", "abc", "--generator", "estimating-lstm", "--hidden-size", "8",
                          "--embedding-dim", "4", "--num-layers", "1", "--crop-length", "16", "--batch-size", "4",
                          "--max-pieces", "30", "--num-prep-workers", "0", "--no-progress", "--device", "cpu",
                          "--max-steps", "1", "--val-batches", "1", "--output-dir", out)
    assert code == 0, err
    last = out / "checkpoints" / "last.pt"
    estimating_lstm.seen.clear()
    code, stdout, err = fmusic(capsys, "evaluate", last, "--passes", "3", "--max-batches", "2", "--json")
    assert code == 0, err
    assert estimating_lstm.seen == [3, 3] and json.loads(stdout)["likelihood"]["options"] == {"passes": 3}
    code, _, err = fmusic(capsys, "evaluate", last, "--passes", "x")
    assert code == 2 and "--passes: 'x' is not a valid int" in err
    code, _, err = fmusic(capsys, "evaluate", last, "--nll-forward-number", "2")
    assert code == 2 and "no such option: --nll-forward-number" in err


# ----------------------------------------------------------------------------------------- train-time refusals
def test_pitch_shift_of_a_representation_that_cannot_transpose_is_refused(tmp_path, capsys):
    fakes.register()  # the fake token representation does not implement transpose
    assert not fakes.FakeTokens().can_transpose
    from fractalmusic.representations.pianoroll import PianoRollRepresentation

    assert PianoRollRepresentation().can_transpose
    code, _, err = fmusic(capsys, "train", "--repr", fakes.REP_NAME, "--generator", fakes.GEN_NAME,
                          "--pitch-shift-max", "2", "--output-dir", tmp_path / "r", "--device", "cpu")
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "fake-tokens representation cannot transpose" in err and "drop the pitch shift" in err


def test_one_option_name_in_both_chosen_plugins_is_refused(tmp_path, capsys):
    @dataclasses.dataclass
    class ClashConfig(fakes.FakeGRUConfig):
        n_pitches: int = 4  # also a field of the fake representation's Config

    class ClashGRU(fakes.FakeGRU):
        name = "clash-gru"
        Config = ClashConfig

    fakes.register()
    plugins.register("generator", ClashGRU.name, ClashGRU)
    try:
        code, _, err = fmusic(capsys, "train", "--repr", fakes.REP_NAME, "--generator", ClashGRU.name,
                              "--n-pitches", "5", "--output-dir", tmp_path / "r", "--device", "cpu")
    finally:
        plugins.unregister("generator", ClashGRU.name)
    assert code == 2 and "--n-pitches is an option of both the fake-tokens representation and the clash-gru" in err
