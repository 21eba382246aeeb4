"""`GeneratorContract`: the checks every generator plugin must pass. Subclass it in a test module::

    from fractalmusic.testing import GeneratorContract

    class TestMyTransformer(GeneratorContract):
        generator = "transformer"                      # registered name ("pkg:name" works), or the class
        config = {"width": 32, "depth": 1, "heads": 2}  # tiny: every check builds a fresh model

The checks run on a small synthetic vocabulary (tokens: pad 0, bos 1, eos 2, 7 more ids) or a 3-class piano-roll
grid, except the end-to-end one, which trains through `fmusic` on the tiny generated corpus with a built-in
representation (abc for tokens, pianoroll for grids). Class attributes below tune what a generator cannot share.
"""
from __future__ import annotations

import copy
import dataclasses
import io
import math
from typing import Any, ClassVar

import numpy as np
import torch

from fractalmusic.errors import ConfigError
from fractalmusic.generators.base import Generator
from fractalmusic.generators.token import TokenGenerator
from fractalmusic.representations.base import RepresentationSpec
from fractalmusic.testing._compat import pytest
from fractalmusic.testing.endtoend import TINY_REPRESENTATIONS, EndToEnd
from fractalmusic.testing.fixtures import ContractFixtures

PAD, BOS, EOS = 0, 1, 2


def _finite(value) -> bool:
    return bool(torch.isfinite(torch.as_tensor(value, dtype=torch.float32)).all())


class GeneratorContract(ContractFixtures):
    """Contract tests for a Generator plugin (pytest collects them in subclasses named Test*)."""

    generator: ClassVar[Any] = None  # registered name, "package:name", or the Generator subclass
    config: ClassVar[dict[str, Any]] = {}  # a tiny config: each check builds its own model
    spec: ClassVar[RepresentationSpec | None] = None  # None: the synthetic spec of the generator's kind
    batch_size: ClassVar[int] = 3
    sequence_length: ClassVar[int] = 12  # tokens per training row
    grid_width: ClassVar[int] = 64  # time steps per training grid (a multiple of 16 suits the fractal levels)
    sample_length: ClassVar[int] = 16  # tokens / time steps asked of `sample`
    exact_nll: ClassVar[bool] = True  # nll_sum == loss * n in eval mode (False: nll is a random estimate)
    greedy_ignores_seed: ClassVar[bool] = True  # greedy samples are the same whatever the seed (False: MAR order)
    tolerance: ClassVar[float] = 1e-4  # relative tolerance of loss/nll/gradient comparisons
    # the end-to-end `fmusic` run
    e2e_representation: ClassVar[str | None] = None  # default: abc for tokens, pianoroll for grids
    e2e_representation_config: ClassVar[dict[str, Any]] = {}
    e2e_corpus_format: ClassVar[str | None] = None  # "abc" | "midi"; default: abc for tokens, midi for grids
    train_args: ClassVar[tuple[str, ...]] = ()  # extra `fmusic train` options
    sample_args: ClassVar[tuple[str, ...]] = ()  # extra `fmusic sample` options (default for tokens: --to abc)

    # ----------------------------------------------------------------------------------------- building
    @classmethod
    def generator_class(cls) -> type[Generator]:
        if isinstance(cls.generator, type):
            return cls.generator
        if not cls.generator:
            raise TypeError(f"{cls.__name__}: set `generator` to a registered name or a Generator subclass")
        from fractalmusic import plugins

        return plugins.get_generator(str(cls.generator))

    @classmethod
    def kind(cls) -> str:
        accepts = cls.generator_class().accepts
        return "tokens" if "tokens" in accepts else accepts[0]

    def make_spec(self) -> RepresentationSpec:
        if self.spec is not None:
            return self.spec
        if self.kind() == "tokens":
            return RepresentationSpec("tokens", 10, pad_id=PAD, bos_id=BOS, eos_id=EOS)
        return RepresentationSpec("grid", 3)

    def make_generator(self, seed: int = 0, spec: RepresentationSpec | None = None, **overrides) -> Generator:
        torch.manual_seed(seed)
        return self.generator_class().build({**copy.deepcopy(self.config), **overrides}, spec or self.make_spec())

    def make_batch(self, seed: int = 0) -> dict[str, torch.Tensor]:
        """A training batch; row 1 is padded after its first half (mask False there)."""
        spec = self.make_spec()
        rng = np.random.default_rng(seed)
        B = self.batch_size
        if spec.kind == "tokens":
            L = self.sequence_length
            low = 3 if spec.vocab_size > 4 else 0
            tokens = rng.integers(low, spec.vocab_size, size=(B, L))
            if spec.bos_id is not None:
                tokens[:, 0] = spec.bos_id
            mask = np.ones((B, L), dtype=bool)
            mask[1, L // 2:] = False
            tokens[~mask] = spec.pad_id if spec.pad_id is not None else 0
            return {"tokens": torch.from_numpy(tokens.astype(np.int64)), "mask": torch.from_numpy(mask)}
        W = self.grid_width
        grid = np.zeros((B, spec.height, W), dtype=np.int64)
        for b in range(B):  # a few notes: onset then sustains, on pitches 60..72
            for _ in range(W // 2):
                p, t = int(rng.integers(60, 73)), int(rng.integers(0, W - 4))
                d = int(rng.integers(1, 4))
                grid[b, p, t] = min(2, spec.vocab_size - 1)
                grid[b, p, t + 1:t + d] = 1
        mask = np.ones((B, W), dtype=bool)
        mask[1, W // 2 + 8:] = False
        grid = grid * mask[:, None, :]
        return {"grid": torch.from_numpy(grid), "mask": torch.from_numpy(mask)}

    def _loss(self, g: Generator, batch, seed: int = 0) -> dict[str, Any]:
        torch.manual_seed(seed)  # generators that draw random masks draw the same ones
        return g.loss(batch)

    def _nll(self, g: Generator, batch, seed: int = 0) -> dict[str, Any]:
        torch.manual_seed(seed)
        return g.nll(batch)

    # ----------------------------------------------------------------------------------------- declarations
    def test_declarations(self):
        cls = self.generator_class()
        assert issubclass(cls, Generator)
        assert isinstance(cls.name, str) and cls.name, "a generator needs a non-empty `name`"
        if isinstance(self.generator, str):
            assert cls.name == self.generator.split(":")[-1], "the entry-point name must be the class's `name`"
        assert cls.accepts and set(cls.accepts) <= {"tokens", "grid"}, cls.accepts
        assert dataclasses.is_dataclass(cls.Config), "Config must be a dataclass"
        assert isinstance(cls.plugin_api_version, int)

    def test_unknown_config_refused(self):
        with pytest.raises(ConfigError):
            self.make_generator(no_such_option_for_this_test=1)

    def test_config_round_trips_through_config_dict(self):
        g = self.make_generator()
        again = self.generator_class().build(g.config_dict(), self.make_spec())
        assert again.config_dict() == g.config_dict()
        assert {k: v.shape for k, v in again.state_dict().items()} == {k: v.shape for k, v in g.state_dict().items()}

    # ----------------------------------------------------------------------------------------- training
    def test_loss_is_a_finite_mean_with_gradients(self):
        g = self.make_generator()
        g.train()
        batch = self.make_batch()
        out = self._loss(g, batch)
        loss = out["loss"]
        assert torch.is_tensor(loss) and loss.dim() == 0 and _finite(loss) and loss.requires_grad
        assert int(out["n"]) > 0
        if self.kind() == "tokens":
            assert int(out["n"]) == int(batch["mask"][:, 1:].sum()), "n counts the predicted tokens"
        for key, value in out.items():
            if key not in ("loss", "n"):
                assert isinstance(value, (int, float)) or (torch.is_tensor(value) and value.dim() == 0), key
        loss.backward()
        grads = [p.grad for p in g.parameters() if p.requires_grad]
        assert any(gr is not None and gr.abs().sum() > 0 for gr in grads), "no parameter received a gradient"
        assert all(gr is None or _finite(gr) for gr in grads)

    def test_loss_and_nll_agree(self):
        g = self.make_generator()
        g.eval()
        batch = self.make_batch()
        with torch.no_grad():
            loss = self._loss(g, batch)
        nll = self._nll(g, batch)
        assert int(nll["n"]) == int(loss["n"])
        assert isinstance(nll["nll_sum"], float) and math.isfinite(nll["nll_sum"]) and nll["nll_sum"] >= 0
        if self.exact_nll:
            assert nll["nll_sum"] == pytest.approx(float(loss["loss"]) * int(loss["n"]), rel=self.tolerance)
        else:  # an estimate: the same order of magnitude as the training loss
            per = nll["nll_sum"] / int(nll["n"])
            assert 0.1 < per / max(float(loss["loss"]), 1e-6) < 10.0

    def test_padding_is_ignored(self):
        g = self.make_generator()
        g.eval()
        batch = self.make_batch()
        spec = self.make_spec()
        key = "tokens" if spec.kind == "tokens" else "grid"
        mask = batch["mask"]
        other = batch[key].clone()
        rng = np.random.default_rng(1)
        if key == "tokens":
            garbage = torch.from_numpy(rng.integers(0, spec.vocab_size, size=other.shape))
            if isinstance(g, TokenGenerator):  # the token base promises any value (outside the vocabulary too)
                garbage[..., ::2] = spec.vocab_size + 3
                garbage[..., 1::4] = -5
            other = torch.where(mask, other, garbage)
        else:
            garbage = torch.from_numpy(rng.integers(0, spec.vocab_size, size=other.shape))
            other = torch.where(mask[:, None, :], other, garbage)
        changed = {**batch, key: other}
        with torch.no_grad():
            a, b = self._loss(g, batch), self._loss(g, changed)
        assert int(a["n"]) == int(b["n"])
        assert float(a["loss"]) == pytest.approx(float(b["loss"]), rel=self.tolerance, abs=1e-6), (
            "values at padded positions changed the loss"
        )
        na, nb = self._nll(g, batch), self._nll(g, changed)
        assert na["nll_sum"] == pytest.approx(nb["nll_sum"], rel=self.tolerance, abs=1e-6)
        # control: changing a real position does change it
        real = batch[key].clone()
        if key == "tokens":
            real[0, 1:] = torch.roll(real[0, 1:], 1)
            real[0, 2] = (real[0, 2] + 1) % spec.vocab_size
        else:
            real[0] = 0
        with torch.no_grad():
            c = self._loss(g, {**batch, key: real})
        assert float(c["loss"]) != pytest.approx(float(a["loss"]), rel=1e-6, abs=1e-7)

    def test_grad_checkpointing_gives_the_same_gradients(self):
        batch = self.make_batch()
        a = self.make_generator()
        b = self.make_generator(seed=1)
        b.load_state_dict(a.state_dict())
        b.set_grad_checkpointing(True)
        a.train()
        b.train()
        la, lb = self._loss(a, batch, seed=3)["loss"], self._loss(b, batch, seed=3)["loss"]
        la.backward()
        lb.backward()
        assert float(la.detach()) == pytest.approx(float(lb.detach()), rel=self.tolerance)
        for (name, pa), pb in zip(a.named_parameters(), b.parameters()):
            if pa.grad is None:
                assert pb.grad is None or not pb.grad.any(), name
                continue
            assert pb.grad is not None, name
            assert torch.allclose(pa.grad, pb.grad, rtol=self.tolerance * 10, atol=1e-5), name

    def test_bf16_autocast_on_cpu(self):
        g = self.make_generator()
        g.train()
        batch = self.make_batch()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = self._loss(g, batch)
        assert _finite(out["loss"])
        out["loss"].float().backward()
        assert all(p.grad is None or _finite(p.grad) for p in g.parameters())
        g.eval()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            nll = self._nll(g, batch)
            sample = g.sample(2, self.sample_length, seed=0)
        assert math.isfinite(nll["nll_sum"])
        assert sample.dtype == np.int64

    def test_state_dict_round_trip(self):
        a = self.make_generator()
        b = self.make_generator(seed=5)
        buffer = io.BytesIO()
        torch.save(a.state_dict(), buffer)
        buffer.seek(0)
        b.load_state_dict(torch.load(buffer, weights_only=True))
        batch = self.make_batch()
        a.eval()
        b.eval()
        with torch.no_grad():
            assert float(self._loss(a, batch)["loss"]) == float(self._loss(b, batch)["loss"])
        assert np.array_equal(a.sample(2, self.sample_length, seed=2), b.sample(2, self.sample_length, seed=2))

    # ----------------------------------------------------------------------------------------- sampling
    def _check_sample(self, out: np.ndarray, n: int, length: int, prefix: int = 1) -> None:
        spec = self.make_spec()
        assert isinstance(out, np.ndarray) and out.dtype == np.int64
        if spec.kind == "tokens":
            assert out.ndim == 2 and out.shape[0] == n
            assert prefix <= out.shape[1] <= prefix + length, out.shape
        else:
            assert out.shape == (n, spec.height, length)
        assert out.min() >= 0 and out.max() < spec.vocab_size

    def test_sample_shape_and_ids(self):
        g = self.make_generator()
        L = self.sample_length
        out = g.sample(3, L, seed=0)
        self._check_sample(out, 3, L)
        spec = self.make_spec()
        if spec.kind == "tokens" and spec.bos_id is not None:
            assert (out[:, 0] == spec.bos_id).all(), "without a primer every row starts with bos"

    def test_sample_seed_determinism(self):
        g = self.make_generator()
        rng_state = torch.get_rng_state().clone()
        a = g.sample(3, self.sample_length, seed=1)
        b = g.sample(3, self.sample_length, seed=1)
        c = g.sample(3, self.sample_length, seed=2)
        assert torch.equal(torch.get_rng_state(), rng_state), "a seeded sample must not touch the global RNG"
        assert np.array_equal(a, b), "one seed must give the same samples"
        assert a.shape != c.shape or not np.array_equal(a, c), "two seeds gave the same samples"

    def test_greedy_determinism(self):
        g = self.make_generator()
        primer = self._primer()
        a = g.sample(2, self.sample_length, primer=primer, greedy=True, seed=1)
        b = g.sample(2, self.sample_length, primer=primer, greedy=True, seed=1 if not self.greedy_ignores_seed else 9)
        assert np.array_equal(a, b)
        t0 = g.sample(2, self.sample_length, primer=primer, temperature=0, seed=1)
        assert np.array_equal(a, t0), "temperature 0 is greedy"

    def _primer(self, rows: int | None = None) -> np.ndarray:
        spec = self.make_spec()
        rng = np.random.default_rng(3)
        if spec.kind == "tokens":
            low = 3 if spec.vocab_size > 4 else 0
            body = rng.integers(low, spec.vocab_size, size=(rows or 1, 4))
            if spec.bos_id is not None:
                body = np.concatenate([np.full((body.shape[0], 1), spec.bos_id), body], axis=1)
            return (body[0] if rows is None else body).astype(np.int64)
        width = max(2, min(8, self.sample_length // 2))
        grid = np.zeros((rows or 1, spec.height, width), dtype=np.int64)
        grid[:, 60, 0] = min(2, spec.vocab_size - 1)
        grid[:, 60, 1:width - 1] = 1
        grid[:, 64, width - 1] = min(2, spec.vocab_size - 1)
        return grid[0] if rows is None else grid

    def test_primer_is_kept(self):
        g = self.make_generator()
        spec = self.make_spec()
        L = self.sample_length
        primer = self._primer()
        out = g.sample(3, L, primer=primer, seed=0)
        if spec.kind == "tokens":
            P = primer.shape[0]
            self._check_sample(out, 3, L, prefix=P)
            assert (out[:, :P] == primer).all()
            rows = self._primer(rows=3)
            rows[:, -1] = np.arange(3) + (3 if spec.vocab_size > 6 else 0)
            out = g.sample(3, L, primer=rows, seed=0)
            assert (out[:, :rows.shape[1]] == rows).all(), "a primer per row [n, P] is kept per row"
            with pytest.raises(ConfigError):
                g.sample(1, L, primer=np.array([spec.vocab_size]))
            with pytest.raises(ConfigError):
                g.sample(2, L, primer=np.zeros((3, 2), dtype=np.int64))
        else:
            self._check_sample(out, 3, L)
            assert (out[:, :, :primer.shape[1]] == primer).all()

    def test_eos_stops_rows_and_pads_them(self):
        spec = self.make_spec()
        if spec.kind != "tokens" or spec.eos_id is None:
            pytest.skip("only token generators with an eos id stop early")
        g = self.make_generator()
        fill = spec.pad_id if spec.pad_id is not None else spec.eos_id
        out = g.sample(8, 60, seed=4, temperature=2.0)
        stopped = 0
        for row in out:
            hits = np.flatnonzero(row[1:] == spec.eos_id)
            if len(hits):
                end = hits[0] + 2
                assert (row[end:] == fill).all(), f"after eos a row holds only padding: {row.tolist()}"
                stopped += 1
        assert stopped, "no row drew eos in 8 x 60 hot draws: cannot check the padding"
        if fill != spec.eos_id:
            assert not (out[:, -1] == fill).all(), "the array is trimmed to the longest row"
        assert g.sample(2, 0, primer=self._primer()).shape == (2, self._primer().shape[0])

    def test_refuses_unknown_options_and_bad_arguments(self):
        g = self.make_generator()
        g.train()
        L = self.sample_length
        for bad in (
            dict(no_such_sampling_option=1),
            dict(temperature=-1.0),
            dict(top_p=1.5),
            dict(top_k=0),
            dict(seed=1.5),
        ):
            with pytest.raises(ConfigError):
                g.sample(1, L, **bad)
        with pytest.raises(ConfigError):
            g.sample(0, L)
        with pytest.raises(ConfigError):
            g.sample(1, -1)
        assert g.training, "a refused sample must leave the model in train mode"
        g.sample(1, L, seed=0)
        assert g.training, "sample must restore train mode"

    def test_samples_past_max_context(self):
        g = self.make_generator()
        context = getattr(g, "max_context", None)
        if not context:
            pytest.skip("no max_context")
        spec = self.make_spec()
        no_eos = dataclasses.replace(spec, eos_id=None)
        g = self.make_generator(spec=no_eos)
        out = g.sample(2, int(context) + 5, seed=0)
        assert out.shape == (2, 1 + int(context) + 5)

    # ----------------------------------------------------------------------------------------- end to end
    def end_to_end(self) -> EndToEnd:
        kind = self.kind()
        rep, rep_config = TINY_REPRESENTATIONS[kind]
        if self.e2e_representation:
            rep, rep_config = self.e2e_representation, dict(self.e2e_representation_config)
        fmt = self.e2e_corpus_format or ("abc" if kind == "tokens" else "midi")
        sample_args = self.sample_args or (("--to", "abc") if rep == "abc" else ())
        name = self.generator if isinstance(self.generator, str) else self.generator_class().name
        return EndToEnd(kind, rep, rep_config, name, dict(self.config), fmt, tuple(self.train_args), sample_args)

    def test_train_resume_sample_evaluate(self, fmusic_cli, tmp_path):
        if isinstance(self.generator, type) and self.generator is not self._registered_class():
            pytest.skip("the generator is not registered: fmusic cannot select it by name")
        self.end_to_end().run(fmusic_cli, tmp_path)

    def _registered_class(self):
        from fractalmusic import plugins

        try:
            return plugins.get_generator(self.generator_class().name)
        except Exception:
            return None
