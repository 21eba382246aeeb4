"""The registry finds third-party plugins through entry points, isolates broken ones and reports duplicates."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

import fractalmusic
from conftest import run_cli
from fractalmusic import plugins
from fractalmusic.errors import PluginError

GOOD_MODULE = '''
from dataclasses import dataclass
import numpy as np
from fractalmusic.piece import Piece
from fractalmusic.representations.base import Representation

@dataclass
class Config:
    modulus: int = 12

class PitchClassRepresentation(Representation):
    """A third party's representation: one token per note, its pitch class."""
    name = "pitchclass"
    kind = "tokens"
    Config = Config

    @property
    def vocab_size(self):
        return self.config.modulus

    def encode(self, piece):
        return (piece.notes["pitch"] % self.config.modulus).astype(np.int64)

    def decode(self, array):
        return Piece()
'''

BROKEN_MODULE = "import a_module_that_does_not_exist_anywhere\n"
FUTURE_MODULE = GOOD_MODULE.replace('name = "pitchclass"', 'name = "future"\n    plugin_api_version = 99')
DUP_MODULE = GOOD_MODULE.replace('name = "pitchclass"', 'name = "pianoroll"')


def make_distribution(root: Path, dist: str, module: str, source: str, entries: dict[str, dict[str, str]]) -> None:
    """A minimal installed distribution: a module plus a .dist-info folder with entry points."""
    (root / f"{module}.py").write_text(source)
    info = root / f"{dist}-0.3.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.3\n")
    lines = []
    for group, eps in entries.items():
        lines.append(f"[{group}]")
        lines += [f"{name} = {target}" for name, target in eps.items()]
    (info / "entry_points.txt").write_text("\n".join(lines) + "\n")


@pytest.fixture
def third_party(tmp_path):
    root = tmp_path / "site"
    root.mkdir()
    rep = "fractalmusic.representations"
    make_distribution(root, "fm_good_plugin", "fm_good_plugin", GOOD_MODULE,
                      {rep: {"pitchclass": "fm_good_plugin:PitchClassRepresentation"}})
    make_distribution(root, "fm_broken_plugin", "fm_broken_plugin", BROKEN_MODULE,
                      {rep: {"broken": "fm_broken_plugin:Anything"}})
    make_distribution(root, "fm_future_plugin", "fm_future_plugin", FUTURE_MODULE,
                      {rep: {"future": "fm_future_plugin:PitchClassRepresentation"}})
    # a second provider of a built-in name: must be reported, never silently shadowing
    make_distribution(root, "fm_dup_plugin", "fm_dup_plugin", DUP_MODULE,
                      {rep: {"pianoroll": "fm_dup_plugin:PitchClassRepresentation"}})
    return root


def _env(root: Path, **extra) -> dict:
    env = {"PYTHONPATH": os.pathsep.join([str(root), os.environ.get("PYTHONPATH", "")])}
    env.update(extra)
    return env


def test_third_party_plugin_found_and_broken_one_isolated(third_party, tmp_path):
    res = run_cli("plugins", "--json", env=_env(third_party), cwd=tmp_path)
    assert res.exit_code == 0, res.output
    rows = {(r["kind"], r["name"], r["package"]): r for r in json.loads(res.stdout)["plugins"]}
    good = rows[("representation", "pitchclass", "fm_good_plugin")]
    assert good["status"] == "ok" and good["version"] == "0.3"
    broken = rows[("representation", "broken", "fm_broken_plugin")]
    assert broken["status"] == "error" and "a_module_that_does_not_exist_anywhere" in broken["error"]
    future = rows[("representation", "future", "fm_future_plugin")]
    assert future["status"] == "error" and "plugin API 99" in future["error"]
    dups = [r for k, r in rows.items() if k[1] == "pianoroll"]
    assert len(dups) == 2 and all(r["status"] == "duplicate" for r in dups)


def test_plugins_table_is_readable(third_party, tmp_path):
    res = run_cli("plugins", env=_env(third_party), cwd=tmp_path)
    assert res.exit_code == 0
    assert "pitchclass" in res.stdout and "fm_good_plugin 0.3" in res.stdout
    assert "unusable" in res.stdout


def test_selecting_plugins_by_name(third_party, monkeypatch):
    monkeypatch.syspath_prepend(str(third_party))
    cls = plugins.get_representation("pitchclass")
    assert cls.name == "pitchclass" and cls().vocab_size == 12
    with pytest.raises(PluginError, match="failed to load.*a_module_that_does_not_exist"):
        plugins.get_representation("broken")
    with pytest.raises(PluginError, match="several packages"):
        plugins.get_representation("pianoroll")
    # a qualified name picks one provider
    assert plugins.get_representation("fm_dup_plugin:pianoroll").__module__ == "fm_dup_plugin"
    with pytest.raises(PluginError, match="did you mean 'pitchclass'"):
        plugins.get_representation("pitchclas")


def test_disable_third_party_plugins(third_party, monkeypatch, tmp_path):
    monkeypatch.syspath_prepend(str(third_party))
    monkeypatch.setenv(plugins.DISABLE_ENV, "1")
    with pytest.raises(PluginError, match="disabled"):
        plugins.get_representation("pitchclass")
    # the duplicate is disabled too, so the built-in name is unambiguous again
    assert plugins.get_representation("pianoroll").__module__ == "fractalmusic.representations.pianoroll"
    res = run_cli("plugins", "--json", env=_env(third_party, FRACTALMUSIC_DISABLE_PLUGINS="1"), cwd=tmp_path)
    statuses = {r["name"]: r["status"] for r in json.loads(res.stdout)["plugins"] if r["package"] != "fractalmusic"}
    assert set(statuses.values()) == {"disabled"}


def test_builtins_listed_like_third_party(tmp_path):
    res = run_cli("plugins", "--json", cwd=tmp_path, env={"FRACTALMUSIC_DISABLE_PLUGINS": "1"})
    rows = json.loads(res.stdout)["plugins"]
    got = {(r["kind"], r["name"]) for r in rows if r["package"] == "fractalmusic" and r["status"] == "ok"}
    assert {("representation", n) for n in ("abc", "words", "pianoroll")} <= got
    assert {("generator", n) for n in ("rnn", "lstm", "gru", "mar", "ar")} <= got


def test_runtime_registration_checks_the_class():
    with pytest.raises(PluginError, match="not a subclass"):
        plugins.register("generator", "bogus", object)


# ------------------------------------------------------------------------------------- identity and versions
TWIN_MODULE = '''
from fractalmusic.generators.recurrent import {base}

class TwinGenerator({base}):
    """One of two packages offering the generator name 'twin'."""
    name = "twin"
'''

MISMATCH_MODULE = '''
from fractalmusic.generators.recurrent import LSTMGenerator

class GPT(LSTMGenerator):
    name = "gpt2"
'''

RETIRED_MODULE = GOOD_MODULE.replace('name = "pitchclass"', 'name = "retired"\n    plugin_api_version = 0')

COLLIDING_MODULE = '''
from dataclasses import dataclass
from fractalmusic.generators.recurrent import LSTMGenerator, RecurrentConfig

@dataclass
class SeedConfig(RecurrentConfig):
    seed: int = 3

class SeedGen(LSTMGenerator):
    name = "seedgen"
    Config = SeedConfig

@dataclass
class Opts:
    temperature: float = 1.0

class TempGen(LSTMGenerator):
    name = "tempgen"
    SampleOptions = Opts

class DefaultsGen(LSTMGenerator):
    name = "defaultsgen"
    train_defaults = {"lrr": 0.1}
'''


@pytest.fixture
def twins(tmp_path):
    root = tmp_path / "twins"
    root.mkdir()
    gen = "fractalmusic.generators"
    make_distribution(root, "fm_twin_lstm", "fm_twin_lstm", TWIN_MODULE.format(base="LSTMGenerator"),
                      {gen: {"twin": "fm_twin_lstm:TwinGenerator"}})
    make_distribution(root, "fm_twin_gru", "fm_twin_gru", TWIN_MODULE.format(base="GRUGenerator"),
                      {gen: {"twin": "fm_twin_gru:TwinGenerator"}})
    make_distribution(root, "fm_mismatch", "fm_mismatch", MISMATCH_MODULE, {gen: {"gpt": "fm_mismatch:GPT"}})
    make_distribution(root, "fm_retired", "fm_retired", RETIRED_MODULE,
                      {"fractalmusic.representations": {"retired": "fm_retired:PitchClassRepresentation"}})
    make_distribution(root, "fm_colliding", "fm_colliding", COLLIDING_MODULE,
                      {gen: {"seedgen": "fm_colliding:SeedGen", "tempgen": "fm_colliding:TempGen",
                             "defaultsgen": "fm_colliding:DefaultsGen"}})
    return root


TINY = ("--repr", "abc", "--hidden-size", "16", "--embedding-dim", "8", "--num-layers", "1", "--crop-length", "16",
        "--batch-size", "4", "--max-pieces", "30", "--num-prep-workers", "0", "--no-progress", "--device", "cpu",
        "--val-batches", "1")


def test_two_packages_one_name_train_sample_evaluate_resume(twins, tmp_path, monkeypatch, capsys):
    from conftest import fmusic
    from fractalmusic.training.checkpoint import Checkpoint

    monkeypatch.syspath_prepend(str(twins))
    out = tmp_path / "run"
    code, _, err = fmusic(capsys, "train", "--generator", "twin", *TINY, "--max-steps", "1", "--output-dir", out)
    assert code == 2 and "several packages" in err and "package:twin" in err
    code, _, err = fmusic(capsys, "train", "--generator", "fm_twin_gru:twin", *TINY, "--max-steps", "2",
                          "--checkpoint-every-n-steps", "2", "--output-dir", out)
    assert code == 0, err
    last = out / "checkpoints" / "last.pt"
    ref = Checkpoint.load(last).generator_ref
    assert (ref.name, ref.dist, ref.dist_version) == ("twin", "fm_twin_gru", "0.3")
    assert Checkpoint.load(last).representation_ref.dist == "fractalmusic"
    model = fractalmusic.load(last)
    assert type(model.generator).__module__ == "fm_twin_gru" and "gru" in type(model.generator).__mro__[1].__name__.lower()
    code, stdout, err = fmusic(capsys, "sample", last, "-n", "1", "--length", "8", "--seed", "1",
                               "--out-dir", tmp_path / "s")
    assert code == 0, err
    code, stdout, err = fmusic(capsys, "evaluate", last, "--max-batches", "1", "--json")
    assert code == 0, err
    assert json.loads(stdout)["likelihood"]["generator"] == "twin"
    # resume names the plugin as it was trained, or as package:name; the other package is refused
    code, stdout, err = fmusic(capsys, "train", "--resume-from-checkpoint", last, "--max-steps", "3")
    assert code == 0, err
    code, _, err = fmusic(capsys, "train", "--resume-from-checkpoint", last, "--generator", "fm_twin_gru:twin",
                          "--max-steps", "4")
    assert code == 0, err
    code, _, err = fmusic(capsys, "train", "--resume-from-checkpoint", last, "--generator", "fm_twin_lstm:twin",
                          "--max-steps", "5")
    assert code == 2 and "trained with --generator twin from fm_twin_gru 0.3" in err
    assert Checkpoint.load(last).step == 4


def test_checkpoint_of_a_package_that_is_gone_says_which(twins, tmp_path, monkeypatch):
    from fractalmusic.training.checkpoint import Checkpoint, make_payload, save_checkpoint

    monkeypatch.syspath_prepend(str(twins))
    from fractalmusic.piece import Piece
    from fractalmusic.representations.abc import ABCRepresentation

    rep = ABCRepresentation().fit([Piece(abc="X:1\nK:C\nCDEF|\n")])
    gen = plugins.get_generator("fm_twin_lstm:twin").build({"hidden_size": 8, "embedding_dim": 4, "num_layers": 1},
                                                            rep.spec())
    payload = make_payload(rep, gen)
    payload["generator"]["dist"] = "fm_not_installed"
    save_checkpoint(tmp_path / "x.pt", payload)
    with pytest.raises(PluginError, match="trained with generator 'twin' from fm_not_installed 0.3.*several"):
        Checkpoint.load(tmp_path / "x.pt").build()


def test_name_mismatch_retired_api_and_collisions_refused(twins, tmp_path, monkeypatch, capsys):
    from conftest import fmusic

    monkeypatch.syspath_prepend(str(twins))
    code, stdout, err = fmusic(capsys, "plugins", "--json")
    assert code == 0, err
    rows = {r["name"]: r for r in json.loads(stdout)["plugins"]}
    assert rows["gpt"]["status"] == "error" and "named 'gpt2' but registered as 'gpt'" in rows["gpt"]["error"]
    assert rows["retired"]["status"] == "error"
    assert "plugin API 0, which is retired" in rows["retired"]["error"] and "1..2" in rows["retired"]["error"]
    assert "'seed' is also an option of the trainer" in rows["seedgen"]["error"]
    assert "'temperature' is also an option of fmusic sample" in rows["tempgen"]["error"]
    assert "train_defaults names 'lrr'" in rows["defaultsgen"]["error"] and "'lr'" in rows["defaultsgen"]["error"]
    assert rows["twin"]["package"] in ("fm_twin_gru", "fm_twin_lstm") and rows["twin"]["version"] == "0.3"
    code, stdout, _ = fmusic(capsys, "plugins")
    assert "fm_twin_gru 0.3 [tokens] API 1" in stdout and "named 'gpt2' but registered as 'gpt'" in stdout
    assert "plugins declaring 1..2 load" in stdout
    # selecting one: a single line that names the plugin and the reason
    code, _, err = fmusic(capsys, "train", "--generator", "gpt", "--max-steps", "1", "--output-dir", tmp_path / "r")
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "'gpt' from fm_mismatch 0.3 failed to load" in err and "gpt2" in err
    with pytest.raises(PluginError, match="'seedgen'.*'seed' is also an option of the trainer"):
        plugins.get_generator("seedgen")


def test_api_version_check_names_both_versions():
    class Newer(plugins._base_class("generator")):
        name = "newer"
        plugin_api_version = plugins.PLUGIN_API_VERSION + 1

    class Odd(plugins._base_class("generator")):
        name = "odd"
        plugin_api_version = "2"

    with pytest.raises(PluginError, match=f"needs plugin API {plugins.PLUGIN_API_VERSION + 1}, this fractalmusic "
                                          f"provides {plugins.PLUGIN_API_VERSION}"):
        plugins.register("generator", "newer", Newer)
    with pytest.raises(PluginError, match="not a whole number"):
        plugins.register("generator", "odd", Odd)
    with pytest.raises(PluginError, match="named 'newer' but registered as 'other'"):
        Newer.plugin_api_version = 1
        plugins.register("generator", "other", Newer)


LEGACY_GENERATOR = '''
"""A generator written against plugin API 1 as documented before API 2 (imports from the real modules)."""
from dataclasses import dataclass
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from fractalmusic.generators.base import Generator

@dataclass
class Config:
    hidden_size: int = 8

class OldGRU(Generator):
    name = "oldgru"
    accepts = ("tokens",)
    Config = Config
    sample_options = ("beam",)
    nll_options = ("passes",)
    seen = []

    def __init__(self, config, spec):
        super().__init__(config, spec)
        self.embed = nn.Embedding(spec.vocab_size, config.hidden_size)
        self.rnn = nn.GRU(config.hidden_size, config.hidden_size, batch_first=True)
        self.head = nn.Linear(config.hidden_size, spec.vocab_size)

    def loss(self, batch):
        tokens, mask = batch["tokens"], batch["mask"]
        out, _ = self.rnn(self.embed(tokens[:, :-1]))
        per = F.cross_entropy(self.head(out).transpose(1, 2), tokens[:, 1:], reduction="none")
        w = mask[:, 1:].float()
        return {"loss": (per * w).sum() / w.sum().clamp(min=1), "n": w.sum()}

    @torch.no_grad()
    def nll(self, batch, passes=1):
        type(self).seen.append(("nll", passes))
        out = self.loss(batch)
        return {"nll_sum": float(out["loss"]) * int(out["n"]), "n": int(out["n"])}

    @torch.no_grad()
    def sample(self, n, length, primer=None, mask=None, temperature=1.0, top_k=None, top_p=None, greedy=False,
               seed=None, **options):
        self.check_sample_options(options)
        type(self).seen.append(("sample", options))
        ids = np.full((n, length + 1), self.spec.bos_id, dtype=np.int64)
        return ids
'''


def test_a_plugin_written_against_api_1_works_unchanged(third_party, tmp_path, monkeypatch, capsys):
    from conftest import fmusic

    gen = "fractalmusic.generators"
    make_distribution(third_party, "fm_old_gen", "fm_old_gen", LEGACY_GENERATOR, {gen: {"oldgru": "fm_old_gen:OldGRU"}})
    monkeypatch.syspath_prepend(str(third_party))
    out = tmp_path / "run"
    tiny = list(TINY)
    del tiny[tiny.index("--embedding-dim"):tiny.index("--embedding-dim") + 4]  # the old generator's Config has neither
    code, _, err = fmusic(capsys, "train", "--generator", "oldgru", *tiny, "--max-steps", "2", "--output-dir", out)
    assert code == 0, err
    last = out / "checkpoints" / "last.pt"
    cls = plugins.get_generator("oldgru")
    code, _, err = fmusic(capsys, "sample", last, "-n", "1", "--length", "3", "--beam", "2", "--out-dir", tmp_path / "s")
    assert code == 0, err
    assert ("sample", {"beam": 2}) in cls.seen
    code, _, err = fmusic(capsys, "evaluate", last, "--passes", "2", "--max-batches", "1")
    assert code == 0, err
    assert ("nll", 2) in cls.seen
    code, _, err = fmusic(capsys, "train", "--resume-from-checkpoint", last, "--max-steps", "3")
    assert code == 0, err
