"""The transformer generator's own behaviour: KV cache and sliding window agree with a full forward pass, rotary
positions, gradient checkpointing, sampling past the context, options, and a run through `fmusic`."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from fractalmusic.errors import ConfigError
from fractalmusic.plugins import get_generator
from fractalmusic.representations.base import RepresentationSpec
from fractalmusic_transformer import TransformerConfig, TransformerGenerator
from fractalmusic_transformer.generator import apply_rotary, band_mask, rotary_tables

SPEC = RepresentationSpec(kind="tokens", vocab_size=23, pad_id=0, bos_id=1, eos_id=2)


def tiny(context_length: int = 64, dropout: float = 0.0, **kw) -> TransformerGenerator:
    torch.manual_seed(0)
    config = TransformerConfig(num_layers=2, d_model=32, num_heads=4, context_length=context_length, dropout=dropout,
                               **kw)  # fmt: skip
    return TransformerGenerator(config, SPEC)


@pytest.fixture(autouse=True)
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_registered_through_its_entry_point():
    assert get_generator("transformer") is TransformerGenerator
    assert get_generator("fractalmusic-transformer:transformer") is TransformerGenerator


def test_defaults_are_small_for_a_cpu():
    c = TransformerConfig()
    assert (c.num_layers, c.d_model, c.num_heads, c.dropout) == (4, 256, 4, 0.1)
    assert TransformerGenerator.train_defaults["lr"] == 1e-3


@pytest.mark.parametrize("window", [64, 5, 1])
def test_kv_cache_step_by_step_and_in_chunks_equals_one_pass(window):
    gen = tiny(context_length=window).eval()
    x = torch.randint(3, 23, (3, 13))
    with torch.no_grad():
        full, _ = gen.step(x, None)
        state = gen.init_state(3, x.device)
        steps = torch.cat([gen.step(x[:, t : t + 1], state)[0] for t in range(13)], dim=1)
        state = gen.init_state(3, x.device)
        a, state = gen.step(x[:, :6], state)
        b, state = gen.step(x[:, 6:], state)
    assert torch.allclose(full, steps, atol=1e-5)
    assert torch.allclose(full, torch.cat([a, b], dim=1), atol=1e-5)
    assert state.pos == 13 and state.length >= min(window - 1, 13)


def test_sliding_window_sees_only_the_last_context_length_positions_per_layer():
    gen = tiny(context_length=4).eval()  # 2 layers, each 3 positions back: token 9 depends on tokens 3..9
    x = torch.randint(3, 23, (1, 10))
    far, near = x.clone(), x.clone()
    far[0, :3] = (x[0, :3] - 3 + 1) % 20 + 3
    near[0, 3] = (x[0, 3] - 3 + 1) % 20 + 3
    with torch.no_grad():
        lx, lfar, lnear = (gen.step(t, None)[0][0, -1] for t in (x, far, near))
    assert torch.allclose(lx, lfar, atol=1e-5)
    assert not torch.allclose(lx, lnear, atol=1e-5)


def test_rotary_scores_depend_only_on_the_distance():
    d = 8
    q, k = torch.randn(1, 1, 1, d), torch.randn(1, 1, 1, d)

    def score(pq, pk):
        cq, sq = rotary_tables(torch.tensor([pq]), d, 10000.0, torch.float32)
        ck, sk = rotary_tables(torch.tensor([pk]), d, 10000.0, torch.float32)
        return float((apply_rotary(q, cq, sq) * apply_rotary(k, ck, sk)).sum())

    assert score(7, 3) == pytest.approx(score(1007, 1003), rel=1e-4, abs=1e-4)
    assert score(7, 3) != pytest.approx(score(7, 5), rel=1e-3)
    assert band_mask(torch.arange(3, 5), torch.arange(0, 5), 3).tolist() == [
        [False, True, True, True, False],
        [False, False, True, True, True],
    ]


def _batch():
    tokens = torch.randint(3, 23, (4, 12))
    mask = torch.ones_like(tokens, dtype=torch.bool)
    mask[1, 7:] = False
    tokens[1, 7:] = 999  # padding may hold anything
    return {"tokens": tokens, "mask": mask}


def test_loss_and_nll_agree_and_padding_is_ignored():
    gen = tiny().eval()
    batch = _batch()
    out = gen.loss(batch)
    nll = gen.nll(batch)
    assert out["n"] == nll["n"] == 4 * 11 - 5
    assert float(out["loss"].detach()) * out["n"] == pytest.approx(nll["nll_sum"], rel=1e-5)
    other = {k: v.clone() for k, v in batch.items()}
    other["tokens"][1, 7:] = 5
    assert gen.nll(other)["nll_sum"] == pytest.approx(nll["nll_sum"], rel=1e-6)


def test_gradient_checkpointing_gives_the_same_gradients():
    batch = _batch()
    grads = []
    for on in (False, True):
        gen = tiny(dropout=0.1).train()
        gen.set_grad_checkpointing(on)
        torch.manual_seed(5)
        gen.loss(batch)["loss"].backward()
        grads.append([p.grad.clone() for p in gen.parameters()])
    for a, b in zip(*grads):
        assert torch.allclose(a, b, atol=1e-6)


def test_bf16_autocast_trains():
    gen = tiny().train()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = gen.loss(_batch())["loss"]
    loss.backward()
    assert torch.isfinite(loss) and all(torch.isfinite(p.grad).all() for p in gen.parameters())


def test_sampling_runs_past_the_context_and_repeats_with_a_seed():
    gen = tiny(context_length=8)
    a = gen.sample(3, 40, primer=np.array([1, 5, 6]), seed=11, temperature=1.5)
    b = gen.sample(3, 40, primer=np.array([1, 5, 6]), seed=11, temperature=1.5)
    assert a.dtype == np.int64 and a.shape[0] == 3 and np.array_equal(a, b)
    assert (a[:, :3] == [1, 5, 6]).all()
    assert gen.training  # the mode is restored
    g1 = gen.sample(2, 20, greedy=True, seed=1)
    g2 = gen.sample(2, 20, greedy=True, seed=2)
    assert np.array_equal(g1, g2)


def test_a_long_primer_is_fed_in_windows():
    gen = tiny(context_length=6).eval()
    primer = np.random.default_rng(0).integers(3, 23, 20)
    out = gen.sample(1, 1, primer=primer, greedy=True)
    with torch.no_grad():
        logits, _ = gen.step(torch.from_numpy(primer)[None], None)
    assert out[0, -1] == int(logits[0, -1].argmax())


@pytest.mark.parametrize(
    "config, message",
    [
        ({"d_model": 30, "num_heads": 4}, "multiple of --num-heads"),
        ({"d_model": 12, "num_heads": 4}, "even head width"),
        ({"num_layers": 0}, "--num-layers"),
        ({"dropout": 1.0}, "--dropout"),
        ({"context_length": 0}, "--context-length"),
    ],
)
def test_bad_config_is_one_config_error(config, message):
    with pytest.raises(ConfigError, match=message):
        TransformerConfig(**config)


def test_refuses_grids():
    with pytest.raises(ConfigError, match="tokens"):
        TransformerGenerator(TransformerConfig(), RepresentationSpec(kind="grid", vocab_size=3))


def test_fmusic_trains_samples_and_evaluates_abc(tmp_path, monkeypatch):
    from fractalmusic.testing.cli import FmusicRunner
    from fractalmusic.testing.corpus import write_tiny_corpus

    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    runner = FmusicRunner(cwd=tmp_path, env={"FRACTALMUSIC_CACHE_DIR": str(tmp_path / "cache")})
    data = write_tiny_corpus(tmp_path / "data", "abc")
    runner("train", "--repr", "abc", "--generator", "transformer", "--num-layers", "1", "--d-model", "16",
           "--num-heads", "2", "--context-length", "32", "--data", data, "--crop-length", "32", "--batch-size", "4",
           "--max-steps", "3", "--val-fraction", "0.25", "--no-progress", "--device", "cpu", "--num-prep-workers",
           "0", "--output-dir", "run").check()  # fmt: skip
    ckpt = tmp_path / "run" / "checkpoints" / "last.pt"
    runner("sample", ckpt, "-n", "2", "--length", "100", "--seed", "1", "--to", "abc", "--out-dir", "s").check()
    assert (tmp_path / "s" / "samples.abc").is_file()
    report = json.loads(runner("evaluate", ckpt, "--json", "--device", "cpu").check().stdout)
    assert report["likelihood"]["generator"] == "transformer" and report["likelihood"]["n"] > 0
