"""`RepresentationContract`: the checks every representation plugin must pass. Subclass it in a test module::

    from fractalmusic.testing import RepresentationContract

    class TestMyEvents(RepresentationContract):
        representation = "events"          # registered name ("pkg:name" works), or the class
        config = {"time_shift_steps": 32}  # keyword options of its Config

The pieces are the tiny generated tunes (`fractalmusic.testing.corpus.tiny_pieces`: notes and ABC text agree);
override `pieces()` to give others (a text representation gives texts). The end-to-end check trains a tiny
built-in generator on them through `fmusic` (lstm for tokens, mar for grids).
"""
from __future__ import annotations

import copy
import dataclasses
import json
from typing import Any, ClassVar

import numpy as np

from fractalmusic.errors import ConfigError
from fractalmusic.piece import NOTE_DTYPE, Piece
from fractalmusic.representations.base import Representation, RepresentationSpec
from fractalmusic.testing._compat import pytest
from fractalmusic.testing.corpus import tiny_pieces
from fractalmusic.testing.endtoend import TINY_GENERATORS, EndToEnd
from fractalmusic.testing.fixtures import ContractFixtures


def hypothesis_or_skip():
    """The hypothesis package, or a skip that says how to get it."""
    try:
        import hypothesis  # noqa: F401
    except ImportError:
        pytest.skip("the property checks need hypothesis: pip install 'fractalmusic[testing]'")
    import hypothesis

    return hypothesis


class RepresentationContract(ContractFixtures):
    """Contract tests for a Representation plugin (pytest collects them in subclasses named Test*)."""

    representation: ClassVar[Any] = None  # registered name, "package:name", or the Representation subclass
    config: ClassVar[dict[str, Any]] = {}  # keyword options of its Config
    round_trip: ClassVar[str] = "stable"  # "stable": encode(decode(encode(p))) == encode(p); "none": no check
    transposes: ClassVar[bool | None] = None  # True: transpose must work; False: must return None; None: either
    decode_examples: ClassVar[int] = 40  # hypothesis examples for "decode never raises"
    max_decode_length: ClassVar[int] = 80  # longest token array (or grid width) decode is tried on
    # the end-to-end `fmusic` run
    e2e_generator: ClassVar[str | None] = None  # default: lstm for tokens, mar for grids (tiny)
    e2e_generator_config: ClassVar[dict[str, Any]] = {}
    e2e_corpus_format: ClassVar[str | None] = None  # "abc" | "midi"; default: abc when it reads ABC text, else midi
    train_args: ClassVar[tuple[str, ...]] = ()
    sample_args: ClassVar[tuple[str, ...]] = ()

    # ----------------------------------------------------------------------------------------- building
    @classmethod
    def representation_class(cls) -> type[Representation]:
        if isinstance(cls.representation, type):
            return cls.representation
        if not cls.representation:
            raise TypeError(f"{cls.__name__}: set `representation` to a registered name or a Representation class")
        from fractalmusic import plugins

        return plugins.get_representation(str(cls.representation))

    def pieces(self) -> list[Piece]:
        """The pieces the checks encode (and fit on)."""
        return tiny_pieces(6)

    def make_representation(self, fit: bool = True, **overrides) -> Representation:
        rep = self.representation_class()(**{**copy.deepcopy(self.config), **overrides})
        if fit:
            rep.fit(self.pieces())
        return rep

    def _check_array(self, rep: Representation, array: np.ndarray) -> None:
        array = np.asarray(array)
        assert array.dtype == np.int64, array.dtype
        if rep.kind == "tokens":
            assert array.ndim == 1, array.shape
        else:
            assert array.ndim == 2 and array.shape[0] == rep.spec().height, array.shape
        if array.size:
            assert array.min() >= 0 and array.max() < rep.vocab_size

    # ----------------------------------------------------------------------------------------- declarations
    def test_declarations(self):
        cls = self.representation_class()
        assert issubclass(cls, Representation)
        assert isinstance(cls.name, str) and cls.name, "a representation needs a non-empty `name`"
        if isinstance(self.representation, str):
            assert cls.name == self.representation.split(":")[-1], "the entry-point name must be the class's `name`"
        assert cls.kind in ("tokens", "grid"), cls.kind
        assert dataclasses.is_dataclass(cls.Config), "Config must be a dataclass"
        assert isinstance(cls.plugin_api_version, int)

    def test_unknown_config_refused(self):
        with pytest.raises(ConfigError):
            self.representation_class()(no_such_option_for_this_test=1)

    def test_spec(self):
        rep = self.make_representation()
        spec = rep.spec()
        assert isinstance(spec, RepresentationSpec) and spec.kind == rep.kind
        assert spec.vocab_size == rep.vocab_size >= 2
        for name in ("pad_id", "bos_id", "eos_id"):
            value = getattr(spec, name)
            assert value is None or 0 <= value < spec.vocab_size, (name, value)

    def test_encode(self):
        rep = self.make_representation()
        for piece in self.pieces():
            array = rep.encode(piece)
            self._check_array(rep, array)
            assert array.size, f"{piece.title}: encoded to nothing"
            if rep.kind == "tokens":
                if rep.bos_id is not None:
                    assert array[0] == rep.bos_id, "a whole piece starts with bos"
                if rep.eos_id is not None:
                    assert array[-1] == rep.eos_id, "a whole piece ends with eos"

    # ----------------------------------------------------------------------------------------- round trip
    def test_round_trip(self):
        if self.round_trip == "none":
            pytest.skip("round trip not checked (round_trip = 'none')")
        rep = self.make_representation()
        for piece in self.pieces():
            array = rep.encode(piece)
            decoded = rep.decode(array)
            assert isinstance(decoded, Piece)
            again = rep.encode(decoded)
            assert np.array_equal(again, array), f"{piece.title}: encode(decode(a)) != a"
            repairs = decoded.meta.get("repairs") or {}
            assert not any(repairs.values()), f"{piece.title}: a valid encoding needed repairs {repairs}"

    def test_decode_never_raises(self):
        hypothesis = hypothesis_or_skip()
        from hypothesis import strategies as st

        rep = self.make_representation()
        V = rep.vocab_size
        specials = np.array([i for i in (rep.pad_id, rep.bos_id, rep.eos_id) if i is not None] or [0])
        real = [rep.encode(p) for p in self.pieces()]
        top = self.max_decode_length
        # arrays are made from a few drawn numbers (cheap to draw, shrink and replay): uniform ids, mostly special
        # ids, or a real encoding with some ids replaced and cut at random places
        if rep.kind == "tokens":

            def make(args):
                seed, length, mode = args
                rng = np.random.default_rng(seed)
                if mode == "uniform":
                    return rng.integers(0, V, size=length).astype(np.int64)
                if mode == "specials":
                    ids = rng.integers(0, V, size=length)
                    return np.where(rng.random(length) < 0.5, rng.choice(specials, size=length), ids).astype(np.int64)
                base = real[int(rng.integers(len(real)))].copy()
                hits = rng.random(len(base)) < (0.02 if mode == "corrupt" else 0.3)
                base[hits] = rng.integers(0, V, size=int(hits.sum()))
                start = int(rng.integers(0, max(1, len(base) // 2)))
                return base[start:start + max(length, 1) * 4].astype(np.int64)

        else:
            height = rep.spec().height

            def make(args):
                seed, width, mode = args
                rng = np.random.default_rng(seed)
                if mode in ("corrupt", "scramble"):
                    base = real[int(rng.integers(len(real)))][:, :width].copy()
                    hits = rng.random(base.shape) < (0.01 if mode == "corrupt" else 0.2)
                    base[hits] = rng.integers(0, V, size=int(hits.sum()))
                    return base.astype(np.int64)
                density = 0.02 if mode == "specials" else 0.3
                cells = rng.integers(0, V, size=(height, width))
                return np.where(rng.random((height, width)) < density, cells, 0).astype(np.int64)

        modes = st.sampled_from(["uniform", "specials", "corrupt", "scramble"])
        arrays = st.tuples(st.integers(0, 2**32 - 1), st.integers(0, top), modes).map(make)

        @hypothesis.settings(
            max_examples=self.decode_examples,
            deadline=None,
            database=None,
            derandomize=True,
            suppress_health_check=list(hypothesis.HealthCheck),
        )
        @hypothesis.given(arrays)
        def check(array):
            piece = rep.decode(array)
            assert isinstance(piece, Piece)
            assert piece.notes.dtype == NOTE_DTYPE
            if piece.n_notes:
                assert piece.notes["pitch"].min() >= 0 and piece.notes["pitch"].max() <= 127
                assert np.isfinite(piece.notes["onset"]).all() and (piece.notes["onset"] >= 0).all()
                assert np.isfinite(piece.notes["duration"]).all() and (piece.notes["duration"] >= 0).all()
            repairs = piece.meta.get("repairs", {})
            assert isinstance(repairs, dict)
            assert all(isinstance(k, str) and isinstance(v, int) and v >= 0 for k, v in repairs.items()), repairs

        check()

    # ----------------------------------------------------------------------------------------- state
    def test_json_state_and_fingerprint_survive_save_and_load(self):
        rep = self.make_representation()
        state = rep.state_dict()
        blob = json.dumps(state, sort_keys=True)  # plain JSON: no default= fallback
        assert isinstance(state.get("config"), dict), "state_dict() holds the config under 'config'"
        fingerprint = rep.fingerprint()
        assert isinstance(fingerprint, str) and len(fingerprint) >= 8
        assert rep.fingerprint() == fingerprint, "the fingerprint must be stable"
        loaded = self.representation_class().from_state_dict(json.loads(blob))
        assert json.dumps(loaded.state_dict(), sort_keys=True) == blob
        assert loaded.fingerprint() == fingerprint
        assert loaded.spec() == rep.spec()
        for piece in self.pieces():
            assert np.array_equal(loaded.encode(piece), rep.encode(piece))
        # a state saved twice is the same state (nothing random, nothing order-dependent)
        assert json.dumps(self.make_representation().state_dict(), sort_keys=True) == blob

    # ----------------------------------------------------------------------------------------- transposition
    def test_transposition(self):
        rep = self.make_representation()
        pieces = self.pieces()
        first = rep.encode(pieces[0])
        if rep.transpose(first, 0) is None:
            assert self.transposes is not True, "transpose returned None, but transposes = True"
            pytest.skip("this representation does not transpose")
        assert self.transposes is not False, "transpose works, but transposes = False"
        moved_any = False
        for piece in pieces:
            array = rep.encode(piece)
            same, dropped = rep.transpose(array, 0)
            assert dropped == 0 and np.array_equal(same, array), "a shift by 0 changes nothing"
            for shift in (2, -3):
                result = rep.transpose(array, shift)
                if result is None:  # allowed: e.g. the moved piece needs symbols outside the fitted vocabulary
                    continue
                moved, dropped = result
                self._check_array(rep, moved)
                assert isinstance(dropped, (int, np.integer)) and dropped >= 0
                if dropped:
                    continue
                moved_any = True
                assert not np.array_equal(moved, array), f"a shift by {shift} left the encoding as it was"
                back = rep.transpose(moved, -shift)
                assert back is not None and back[1] == 0 and np.array_equal(back[0], array), (
                    f"a shift by {shift} and back is not the identity"
                )
                before, after = rep.decode(array), rep.decode(moved)
                if before.n_notes and after.n_notes:
                    assert sorted(after.notes["pitch"].tolist()) == sorted(
                        (before.notes["pitch"] + shift).tolist()
                    ), f"decoded pitches did not move by {shift}"
        assert moved_any, "transpose worked for 0 semitones only: no tune of the tiny corpus moved by 2 or -3"

    # ----------------------------------------------------------------------------------------- end to end
    def end_to_end(self) -> EndToEnd:
        rep = self.make_representation(fit=False)
        kind = rep.kind
        generator, generator_config = TINY_GENERATORS[kind]
        if self.e2e_generator:
            generator, generator_config = self.e2e_generator, dict(self.e2e_generator_config)
        fmt = self.e2e_corpus_format or ("abc" if getattr(rep, "uses_abc_text", False) else "midi")
        name = self.representation if isinstance(self.representation, str) else rep.name
        sample_args = self.sample_args or (("--to", "abc") if name == "abc" else ())
        return EndToEnd(kind, name, dict(self.config), generator, generator_config, fmt, tuple(self.train_args),
                        sample_args)

    def test_train_resume_sample_evaluate(self, fmusic_cli, tmp_path):
        if isinstance(self.representation, type):
            from fractalmusic import plugins

            try:
                registered = plugins.get_representation(self.representation.name)
            except Exception:
                registered = None
            if registered is not self.representation:
                pytest.skip("the representation is not registered: fmusic cannot select it by name")
        self.end_to_end().run(fmusic_cli, tmp_path)
