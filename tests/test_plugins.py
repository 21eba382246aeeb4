"""The registry finds third-party plugins through entry points, isolates broken ones and reports duplicates."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

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
