"""The plugin contract suites of `fractalmusic.testing`, run over EVERY registered plugin (built-in or installed).

One test class per plugin, made from the registry's listing when this module is collected: a plugin installed in
the environment (e.g. from plugins/) is checked by the same suites as the built-ins. Tiny configs: built-ins from
the table below, other plugins from their class attribute `test_config` (else their defaults).

The end-to-end `fmusic train -> resume -> sample -> evaluate` runs in the default suite for lstm; for the other
plugins it is marked slow (the same path is exercised for them by test_train_cli / test_fractal_cli, and by each
plugin package's own tests).
"""
from __future__ import annotations

import functools
import re

import pytest

from fractalmusic import plugins
from fractalmusic.testing import GeneratorContract, RepresentationContract

RECURRENT = {"embedding_dim": 8, "hidden_size": 16, "num_layers": 2, "dropout": 0.1}
FRACTAL = {"model_size": "tiny", "max_crop_length": 64, "num_iter": (2, 2, 2)}

GENERATOR_SETTINGS: dict[str, dict] = {
    "rnn": {"config": RECURRENT},
    "lstm": {"config": RECURRENT},
    "gru": {"config": RECURRENT},
    # MAR: nll averages random masking orders (an estimate), and the order is random even when greedy
    "mar": {"config": FRACTAL, "exact_nll": False, "greedy_ignores_seed": False, "sample_length": 8},
    "ar": {"config": FRACTAL, "exact_nll": False, "sample_length": 8},
}
# checks too slow for the default run on 2 CPU cores, each also exercised elsewhere: AR draws a tiny untrained roll
# cell by cell (about 3 s a sample here); test_fractal covers seeded and KV-cached AR sampling
SLOW_CHECKS: dict[str, tuple[str, ...]] = {
    "ar": ("test_sample_seed_determinism", "test_state_dict_round_trip", "test_greedy_determinism"),
}
# words: fit the vocabulary on tunes moved by up to 3 semitones too, so shifted tunes have no unknown words
REPRESENTATION_SETTINGS: dict[str, dict] = {"words": {"config": {"vocab_transpositions": 3}}}
FAST_END_TO_END = {("generator", "lstm")}


def _slow(function):
    """A copy of an inherited test marked slow (the mark must not reach the base class's function)."""

    @functools.wraps(function)
    def wrapper(self, *args, **kwargs):
        return function(self, *args, **kwargs)

    wrapper.pytestmark = [*getattr(function, "pytestmark", []), pytest.mark.slow]
    return wrapper


def _usable(kind: str) -> list[tuple[str, type]]:
    """(selector, class) of every installed plugin of `kind` that loads (not the ones other tests register at run
    time); duplicates by package:name."""
    out = []
    for info in plugins.list_plugins():
        if info.kind != kind or info.status not in ("ok", "duplicate") or info.obj is None:
            continue
        if info.dist == getattr(plugins, "RUNTIME_DIST", "<runtime>"):
            continue
        selector = info.qualified if info.status == "duplicate" else info.name
        out.append((selector, info.obj))
    return sorted(out, key=lambda item: item[0])


def _class_name(prefix: str, selector: str) -> str:
    return f"Test{prefix}_" + re.sub(r"\W", "_", selector)


for _selector, _cls in _usable("generator"):
    _name = _selector.split(":")[-1]
    _attrs = {"generator": _selector, "config": getattr(_cls, "test_config", {})}
    _attrs.update(GENERATOR_SETTINGS.get(_name, {}))
    if ("generator", _name) not in FAST_END_TO_END:
        _attrs["test_train_resume_sample_evaluate"] = _slow(GeneratorContract.test_train_resume_sample_evaluate)
    for _check in SLOW_CHECKS.get(_name, ()):
        _attrs[_check] = _slow(getattr(GeneratorContract, _check))
    globals()[_class_name("Generator", _selector)] = type(
        _class_name("Generator", _selector), (GeneratorContract,), _attrs
    )

for _selector, _cls in _usable("representation"):
    _name = _selector.split(":")[-1]
    _attrs = {"representation": _selector, "config": getattr(_cls, "test_config", {})}
    _attrs.update(REPRESENTATION_SETTINGS.get(_name, {}))
    if ("representation", _name) not in FAST_END_TO_END:
        _attrs["test_train_resume_sample_evaluate"] = _slow(
            RepresentationContract.test_train_resume_sample_evaluate
        )
    globals()[_class_name("Representation", _selector)] = type(
        _class_name("Representation", _selector), (RepresentationContract,), _attrs
    )


def test_every_builtin_plugin_is_covered():
    classes = [cls for name, cls in globals().items() if name.startswith("Test") and isinstance(cls, type)]
    names = {cls.generator.split(":")[-1] for cls in classes if issubclass(cls, GeneratorContract)}
    assert {"rnn", "lstm", "gru", "mar", "ar"} <= names
    reps = {cls.representation.split(":")[-1] for cls in classes if issubclass(cls, RepresentationContract)}
    assert {"abc", "words", "pianoroll"} <= reps
    # and every loadable plugin of the environment, third-party ones included
    assert names == {s.split(":")[-1] for s, _ in _usable("generator")}
    assert reps == {s.split(":")[-1] for s, _ in _usable("representation")}


# --------------------------------------------------------------------------------------------- the suites can fail
# Plugins with one deliberate contract bug each: the matching check must catch it (and the others still pass).
import numpy as np  # noqa: E402
import torch  # noqa: E402

from fractalmusic.generators.recurrent import LSTMGenerator  # noqa: E402
from fractalmusic.representations.pianoroll import PianoRollRepresentation  # noqa: E402


class _LeaksPadding(LSTMGenerator):
    def split_batch(self, batch):
        tokens = batch["tokens"].clamp(0, self.spec.vocab_size - 1)
        return tokens[:, :-1], tokens[:, 1:], torch.ones_like(tokens[:, 1:], dtype=torch.bool)


class _UsesGlobalRNG(LSTMGenerator):
    def draw_samples(self, n, length, **kwargs):
        kwargs["generator"] = None
        return super().draw_samples(n, length, **kwargs)


class _NoPadAfterEos(LSTMGenerator):
    def draw_samples(self, n, length, **kwargs):
        out = super().draw_samples(n, length, **kwargs)
        return np.where(out == self.spec.pad_id, 5, out)


class _StaysInEvalMode(LSTMGenerator):
    def sample(self, *args, **kwargs):
        out = super().sample(*args, **kwargs)
        self.eval()
        return out


class _NumpyState(PianoRollRepresentation):
    def state_dict(self):
        return {**super().state_dict(), "table": np.arange(3)}


class _DecodeRaisesOnOddWidths(PianoRollRepresentation):
    def decode(self, array):
        if np.asarray(array).shape[-1] % 2:
            raise ValueError("odd width")
        return super().decode(array)


class _TransposesOneTooFar(PianoRollRepresentation):
    def transpose(self, array, semitones):
        return super().transpose(array, semitones + 1 if semitones else 0)


@pytest.mark.parametrize("plugin,check", [
    (_LeaksPadding, "test_padding_is_ignored"),
    (_UsesGlobalRNG, "test_sample_seed_determinism"),
    (_NoPadAfterEos, "test_eos_stops_rows_and_pads_them"),
    (_StaysInEvalMode, "test_refuses_unknown_options_and_bad_arguments"),
], ids=["padding", "global-rng", "eos-padding", "train-mode"])
def test_generator_contract_catches_a_broken_plugin(plugin, check):
    suite = type("Suite", (GeneratorContract,), {"generator": plugin, "config": RECURRENT})()
    getattr(LSTMContract(), check)()  # the same check passes on the real lstm
    with pytest.raises(AssertionError):
        getattr(suite, check)()


@pytest.mark.parametrize("plugin,check", [
    (_NumpyState, "test_json_state_and_fingerprint_survive_save_and_load"),
    (_DecodeRaisesOnOddWidths, "test_decode_never_raises"),
    (_TransposesOneTooFar, "test_transposition"),
], ids=["json-state", "decode-raises", "transposition"])
def test_representation_contract_catches_a_broken_plugin(plugin, check):
    suite = type("Suite", (RepresentationContract,), {"representation": plugin})()
    getattr(PianoRollContract(), check)()
    with pytest.raises((AssertionError, TypeError, ValueError)):
        getattr(suite, check)()


class LSTMContract(GeneratorContract):  # not collected (no Test prefix): the reference for the checks above
    generator = "lstm"
    config = RECURRENT


class PianoRollContract(RepresentationContract):
    representation = "pianoroll"
