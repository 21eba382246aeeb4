"""docs/PLUGINS.md's examples work: its example files are extracted, registered, and pass the contract suites and
`fmusic train -> sample -> evaluate`; its pyproject.toml names those classes."""
from __future__ import annotations

import importlib
import re
import sys

import pytest

from conftest import REPO
from fractalmusic import plugins
from fractalmusic.testing import GeneratorContract, RepresentationContract

DOC = (REPO / "docs" / "PLUGINS.md").read_text(encoding="utf-8")


def _files() -> dict[str, str]:
    """Code blocks that start with `# file: PATH`: PATH -> text (the marker line kept: it is a comment)."""
    out = {}
    for block in re.findall(r"```(?:python|toml)\n(.*?)```", DOC, flags=re.S):
        first = block.splitlines()[0]
        if first.startswith("# file: "):
            out[first[len("# file: "):].strip()] = block
    return out


FILES = _files()


@pytest.fixture(scope="module")
def example(tmp_path_factory):
    root = tmp_path_factory.mktemp("example")
    for path, text in FILES.items():
        target = root / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")
    (root / "example_plugin" / "__init__.py").write_text("")
    sys.path.insert(0, str(root))
    try:
        pitches = importlib.import_module("example_plugin.pitches").PitchesRepresentation
        bigram = importlib.import_module("example_plugin.bigram").BigramGenerator
        plugins.register("representation", "pitches", pitches)
        plugins.register("generator", "bigram", bigram)
        yield {"root": root, "pitches": pitches, "bigram": bigram}
    finally:
        plugins.unregister("representation", "pitches")
        plugins.unregister("generator", "bigram")
        sys.path.remove(str(root))
        for name in [m for m in sys.modules if m == "example_plugin" or m.startswith("example_plugin.")]:
            del sys.modules[name]


def test_the_page_holds_both_examples_the_pyproject_and_the_tests():
    assert {"example_plugin/pitches.py", "example_plugin/bigram.py", "pyproject.toml",
            "tests/test_example_plugin.py"} <= set(FILES)  # fmt: skip


def test_pyproject_entry_points_name_the_example_classes(example):
    try:
        import tomllib
    except ImportError:  # Python 3.10
        tomllib = pytest.importorskip("tomli")
    project = tomllib.loads(FILES["pyproject.toml"])["project"]
    eps = project["entry-points"]
    assert eps["fractalmusic.representations"] == {"pitches": "example_plugin.pitches:PitchesRepresentation"}
    assert eps["fractalmusic.generators"] == {"bigram": "example_plugin.bigram:BigramGenerator"}
    for target in (*eps["fractalmusic.representations"].values(), *eps["fractalmusic.generators"].values()):
        module, attr = target.split(":")
        assert getattr(importlib.import_module(module), attr).name in target


def _contract_classes() -> dict[str, type]:
    """The test classes of the page's tests/test_example_plugin.py."""
    namespace: dict = {}
    exec(compile(FILES["tests/test_example_plugin.py"], "test_example_plugin.py", "exec"), namespace)
    return {k: v for k, v in namespace.items() if k.startswith("Test")}


_CLASSES = _contract_classes()


@pytest.mark.usefixtures("example")
class TestDocPitches(_CLASSES["TestPitches"]):
    pass


@pytest.mark.usefixtures("example")
class TestDocBigram(_CLASSES["TestBigram"]):
    pass


def test_doc_classes_are_the_contract_suites():
    assert issubclass(TestDocPitches, RepresentationContract) and issubclass(TestDocBigram, GeneratorContract)
