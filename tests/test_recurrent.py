"""The recurrent generators (rnn, lstm, gru): config, loss, scheduled sampling, carried-state sampling; the token
generator base they are built on, and the sampling preamble of the Generator base."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from fractalmusic import plugins, sampling
from fractalmusic.errors import ConfigError
from fractalmusic.generators.base import Generator
from fractalmusic.generators.recurrent import GRUGenerator, LSTMGenerator, RecurrentConfig, RNNGenerator
from fractalmusic.generators.token import TokenGenerator
from fractalmusic.representations.base import RepresentationSpec

PAD, BOS, EOS = 0, 1, 2
V = 9
SPEC = RepresentationSpec("tokens", V, pad_id=PAD, bos_id=BOS, eos_id=EOS)
TINY = {"embedding_dim": 8, "hidden_size": 16, "num_layers": 2, "dropout": 0.0}
CLASSES = [RNNGenerator, LSTMGenerator, GRUGenerator]


pytestmark = pytest.mark.usefixtures("one_thread")


def make(cls=LSTMGenerator, spec=SPEC, seed=0, **overrides):
    torch.manual_seed(seed)
    return cls.build({**TINY, **overrides}, spec)


def pattern_batch(batch=4, length=33):
    """bos, then 3 4 5 6 7 8 repeated: perfectly predictable after the first few tokens."""
    rows = []
    for b in range(batch):
        body = [3 + (b + i) % 6 for i in range(length - 1)]
        rows.append([BOS] + body)
    tokens = torch.tensor(rows)
    return {"tokens": tokens, "mask": torch.ones_like(tokens, dtype=torch.bool)}


def test_registered_under_their_names():
    assert plugins.get_generator("rnn") is RNNGenerator
    assert plugins.get_generator("lstm") is LSTMGenerator
    assert plugins.get_generator("gru") is GRUGenerator
    assert all(c.accepts == ("tokens",) and c.Config is RecurrentConfig for c in CLASSES)


def test_config_validation():
    for bad in (
        {"hidden_size": 0},
        {"embedding_dim": -1},
        {"num_layers": 0},
        {"dropout": 1.0},
        {"dropout": -0.1},
        {"teacher_forcing_ratio": 1.5},
    ):
        with pytest.raises(ConfigError):
            LSTMGenerator.build(bad, SPEC)
    with pytest.raises(ConfigError, match="hidden_size"):
        LSTMGenerator.build({"hiden_size": 4}, SPEC)  # typo gets a suggestion
    with pytest.raises(ConfigError):
        LSTMGenerator.build({}, RepresentationSpec("grid", 3))


def test_three_generators_differ_only_by_cell():
    built = [make(cls) for cls in CLASSES]
    assert [type(g.rnn) for g in built] == [nn.RNN, nn.LSTM, nn.GRU]
    names = [sorted(n for n, _ in g.named_parameters()) for g in built]
    assert names[0] == names[1] == names[2]
    for name, p in built[0].named_parameters():
        if not name.startswith("rnn."):
            assert all(dict(g.named_parameters())[name].shape == p.shape for g in built)
    # gate count is the only size difference: 1 (tanh), 4 (lstm), 3 (gru) blocks of hidden_size
    assert [g.rnn.weight_hh_l0.shape[0] // 16 for g in built] == [1, 4, 3]


@pytest.mark.parametrize("cls", CLASSES)
def test_loss_falls_on_repeated_pattern(cls):
    g = make(cls)
    g.train()
    batch = pattern_batch()
    opt = torch.optim.Adam(g.parameters(), lr=2e-2)
    first = None
    for _ in range(30):
        out = g.loss(batch)
        first = out["loss"].item() if first is None else first
        opt.zero_grad()
        out["loss"].backward()
        opt.step()
    last = g.loss(batch)
    assert last["loss"].item() < 0.25 * first
    assert float(last["accuracy"]) > 0.8
    assert last["n"] == 4 * 32


def test_loss_is_masked_mean_over_predicted_tokens():
    g = make()
    g.eval()
    batch = pattern_batch(batch=3, length=10)
    mask = batch["mask"].clone()
    mask[0, 6:] = False
    mask[2, 3:] = False
    a = {"tokens": batch["tokens"], "mask": mask}
    garbage = batch["tokens"].clone()
    garbage[0, 6:] = 7
    garbage[2, 3:] = -5  # outside the vocabulary: must never reach the embedding
    b = {"tokens": garbage, "mask": mask}
    la, lb = g.loss(a), g.loss(b)
    assert la["n"] == int(mask[:, 1:].sum()) == 9 + 5 + 2
    assert torch.allclose(la["loss"], lb["loss"])
    # the mean equals the summed nll / n, and a manual cross-entropy over the kept positions
    nll = g.nll(a)
    assert nll["n"] == la["n"]
    assert nll["nll_sum"] == pytest.approx(la["loss"].item() * la["n"], rel=1e-5)
    logits, _ = g(batch["tokens"][:, :-1])
    keep = mask[:, 1:]
    manual = nn.functional.cross_entropy(logits[keep], batch["tokens"][:, 1:][keep])
    assert torch.allclose(la["loss"], manual, atol=1e-6)


@pytest.mark.parametrize("emb,hidden", [(16, 16), (8, 16)])
def test_tie_weights(emb, hidden):
    g = make(embedding_dim=emb, hidden_size=hidden, tie_weights=True)
    untied = make(embedding_dim=emb, hidden_size=hidden, tie_weights=False)
    assert g.head is None
    assert (g.proj is None) == (emb == hidden)
    h = torch.randn(5, hidden)
    projected = h if g.proj is None else g.proj(h)
    assert torch.allclose(g.logits(h), projected @ g.embedding.weight.T + g.out_bias, atol=1e-6)
    if emb == hidden:
        assert g.num_parameters() < untied.num_parameters()
    # the embedding matrix receives gradient from the output head too
    g.train()
    g.loss(pattern_batch(2, 6))["loss"].backward()
    used_rows = torch.zeros(V, dtype=torch.bool)
    used_rows[pattern_batch(2, 6)["tokens"][:, :-1].unique()] = True
    assert g.embedding.weight.grad[~used_rows].abs().sum() > 0  # rows never fed as input still learn


def test_scheduled_sampling_runs_and_differs_from_teacher_forcing():
    batch = pattern_batch(batch=4, length=20)
    forced = make(teacher_forcing_ratio=1.0)
    sched = make(teacher_forcing_ratio=0.0)
    sched.load_state_dict(forced.state_dict())
    forced.train()
    sched.train()
    torch.manual_seed(5)
    lf = forced.loss(batch)
    torch.manual_seed(5)
    ls = sched.loss(batch)
    assert ls["n"] == lf["n"]
    assert not torch.allclose(lf["loss"], ls["loss"])
    ls["loss"].backward()
    assert all(p.grad is not None for p in sched.parameters())
    # evaluation is always teacher forced
    forced.eval()
    sched.eval()
    assert torch.allclose(forced.loss(batch)["loss"], sched.loss(batch)["loss"])
    assert forced.nll(batch) == sched.nll(batch)
    # ratio 1 through the step-by-step path would match the fused one: check the step loop itself
    half = make(teacher_forcing_ratio=0.5)
    half.load_state_dict(forced.state_dict())
    half.train()
    steps = half._hidden_scheduled(batch["tokens"][:, :-1])
    assert steps.shape == (4, 19, 16)
    assert torch.isfinite(half.loss(batch)["loss"])


def test_grad_checkpointing_gives_same_loss_and_gradients():
    batch = pattern_batch(3, 12)
    a = make(dropout=0.0)
    b = make(dropout=0.0)
    b.load_state_dict(a.state_dict())
    b.set_grad_checkpointing(True)
    a.train()
    b.train()
    la, lb = a.loss(batch)["loss"], b.loss(batch)["loss"]
    la.backward()
    lb.backward()
    assert torch.allclose(la, lb)
    for (n, pa), pb in zip(a.named_parameters(), b.parameters()):
        assert torch.allclose(pa.grad, pb.grad, atol=1e-6), n


# ----------------------------------------------------------------------------------------------- sampling


def _naive_sample(g, n, length, primer, gen, **kw):
    """Reference: re-run the whole sequence for every new token (what the design guide warns about)."""
    seq = torch.as_tensor(primer).expand(n, -1).clone()
    for _ in range(length):
        logits, _ = g(seq)
        tok = sampling.draw(logits[:, -1], generator=gen, **kw)
        seq = torch.cat([seq, tok[:, None]], dim=1)
    return seq.numpy()


@pytest.mark.parametrize("cls", CLASSES)
def test_greedy_batch_equals_one_at_a_time(cls):
    g = make(cls, spec=RepresentationSpec("tokens", V, pad_id=PAD, bos_id=BOS, eos_id=None)).double()
    primers = np.array([[BOS, 3, 4], [BOS, 5, 6], [BOS, 8, 8], [BOS, 7, 3]])
    batched = g.sample(4, 25, primer=primers, greedy=True)
    for i in range(4):
        single = g.sample(1, 25, primer=primers[i], greedy=True)
        assert np.array_equal(batched[i], single[0])
    assert np.array_equal(batched, _naive_sample(g, 4, 25, torch.tensor(primers), None, greedy=True))


def test_carried_state_equals_refeeding_with_same_draws():
    g = make(spec=RepresentationSpec("tokens", V, pad_id=PAD, bos_id=BOS, eos_id=None)).double()
    fast = g.sample(6, 30, primer=np.array([BOS, 4]), seed=11, temperature=1.3, top_k=6)
    slow = _naive_sample(
        g, 6, 30, torch.tensor([[BOS, 4]]), sampling.make_generator(11), temperature=1.3, top_k=6
    )
    assert np.array_equal(fast, slow)
    assert len({tuple(r) for r in fast}) > 1  # six different rows from one batch


def test_seed_reproducible_and_global_rng_untouched():
    g = make()
    state = torch.get_rng_state().clone()
    a = g.sample(3, 40, seed=1)
    b = g.sample(3, 40, seed=1)
    c = g.sample(3, 40, seed=2)
    assert torch.equal(torch.get_rng_state(), state)
    assert a.dtype == np.int64
    assert np.array_equal(a, b)
    assert a.shape != c.shape or not np.array_equal(a, c)


def _eos_prone(spec=SPEC):
    g = make(spec=spec)
    with torch.no_grad():
        g.head.bias.zero_()
        g.head.bias[EOS] = 2.2  # about 1 in 4 draws is eos
        g.head.bias[PAD] = -50.0
        g.head.bias[BOS] = -50.0
    return g


def test_rows_stop_at_eos_and_are_padded_and_trimmed():
    g = _eos_prone()
    out = g.sample(8, 200, seed=3)
    assert out[:, 0].tolist() == [BOS] * 8  # starts from bos
    ends = []
    for row in out:
        hits = np.flatnonzero(row[1:] == EOS)
        assert len(hits), "every row should finish within 200 draws"
        end = hits[0] + 2  # length including bos and eos
        assert (row[end:] == PAD).all()
        assert PAD not in row[:end]
        ends.append(end)
    assert out.shape[1] == max(ends)  # trimmed to the longest row
    assert len(set(ends)) > 1  # rows finished at different times
    # without an eos id, every row runs to the full length
    g2 = _eos_prone(RepresentationSpec("tokens", V, pad_id=PAD, bos_id=BOS, eos_id=None))
    assert g2.sample(2, 50, seed=3).shape == (2, 51)


def test_all_finished_stops_the_loop_early():
    g = _eos_prone()
    with torch.no_grad():
        g.head.bias[EOS] = 50.0  # eos at once
    steps = []
    hook = g.rnn.register_forward_hook(lambda m, i, o: steps.append(i[0].shape[1]))
    out = g.sample(5, 1000)
    hook.remove()
    assert out.tolist() == [[BOS, EOS]] * 5
    assert sum(steps) < 20


def test_primer_respected_and_run_once():
    spec = RepresentationSpec("tokens", V, pad_id=PAD, bos_id=BOS, eos_id=None)
    g = make(spec=spec)
    steps = []
    batches = []

    def count(module, inputs, output):
        steps.append(inputs[0].shape[1])
        batches.append(inputs[0].shape[0])

    hook = g.rnn.register_forward_hook(count)
    primer = np.array([BOS, 3, 4, 5, 6, 7, 8])
    out = g.sample(4, 20, primer=primer, seed=0)
    hook.remove()
    assert out.shape == (4, 27)
    assert (out[:, :7] == primer).all()
    # the primer once, then one time step per new token (the last draw is never fed back)
    assert steps[0] == 7 and sum(steps) == 7 + 20 - 1 and set(steps[1:]) == {1}
    assert set(batches) == {4}  # one batch for all samples
    # one primer per row
    rows = np.array([[BOS, 3], [BOS, 4], [BOS, 5]])
    out = g.sample(3, 5, primer=rows, seed=0)
    assert (out[:, :2] == rows).all()


def test_no_bos_starts_from_seeded_random_token():
    spec = RepresentationSpec("tokens", V, pad_id=None, bos_id=None, eos_id=None)
    g = make(spec=spec)
    a = g.sample(16, 3, seed=4)
    assert a.shape == (16, 4)
    assert len(set(a[:, 0].tolist())) > 1
    assert np.array_equal(a, g.sample(16, 3, seed=4))


def test_sample_rejects_bad_requests_and_restores_mode():
    g = make()
    g.train()
    with pytest.raises(ConfigError, match="infill"):
        g.sample(1, 5, mask=np.ones(5, dtype=bool))
    with pytest.raises(ConfigError, match="num_iter"):
        g.sample(1, 5, num_iter=4)
    with pytest.raises(ConfigError, match="vocabulary"):
        g.sample(1, 5, primer=np.array([BOS, V]))
    with pytest.raises(ConfigError):
        g.sample(2, 5, primer=np.zeros((3, 2), dtype=np.int64))
    with pytest.raises(ConfigError):
        g.sample(1, 5, top_p=2.0)
    with pytest.raises(ConfigError):
        g.sample(0, 5)
    g.sample(1, 3, seed=0)
    assert g.training
    assert g.sample(2, 0, primer=np.array([BOS, 3])).tolist() == [[BOS, 3], [BOS, 3]]


# ----------------------------------------------------------------------------------------------- the token base


class _Bigram(TokenGenerator):
    """The smallest token generator: logits from the previous token only. The state records every `step` width."""

    name = "test-bigram"
    max_context = None

    def __init__(self, config, spec):
        super().__init__(config, spec)
        self.table = nn.Embedding(spec.vocab_size, spec.vocab_size)

    def init_state(self, batch_size, device):
        return {"widths": [], "batch": batch_size}

    def step(self, tokens, state):
        state["widths"].append(tokens.shape[1])
        return self.table(tokens), state


class _WindowedBigram(_Bigram):
    max_context = 3


def test_token_base_gives_loss_nll_and_sampling_to_a_bare_network():
    torch.manual_seed(0)
    g = _Bigram.build({}, SPEC)
    batch = pattern_batch(3, 9)
    batch["mask"][2, 5:] = False
    out = g.loss(batch)
    assert out["n"] == 8 + 8 + 4
    logits = g.table(batch["tokens"][:, :-1])
    keep = batch["mask"][:, 1:]
    manual = nn.functional.cross_entropy(logits[keep], batch["tokens"][:, 1:][keep])
    assert torch.allclose(out["loss"], manual)
    assert g.nll(batch)["nll_sum"] == pytest.approx(manual.item() * 20, rel=1e-5)
    g.train()
    samples = g.sample(4, 12, seed=3)
    assert g.training and samples.shape[0] == 4 and (samples[:, 0] == BOS).all()
    assert np.array_equal(samples, g.sample(4, 12, seed=3))


def test_token_base_feeds_prefix_once_then_one_token_and_chunks_past_max_context():
    spec = RepresentationSpec("tokens", V, pad_id=PAD, bos_id=BOS, eos_id=None)
    seen = []
    for cls in (_Bigram, _WindowedBigram):
        torch.manual_seed(0)
        g = cls.build({}, spec)
        original = g.init_state

        def init_state(batch_size, device, _orig=original):
            state = _orig(batch_size, device)
            seen.append(state)
            return state

        g.init_state = init_state
        out = g.sample(2, 6, primer=np.array([BOS, 3, 4, 5, 6, 7, 8]), seed=0)
        assert out.shape == (2, 13)
        widths = seen[-1]["widths"]
        assert seen[-1]["batch"] == 2
        if cls.max_context is None:
            assert widths == [7, 1, 1, 1, 1, 1]  # the primer in one call, then one token at a time
        else:
            assert widths == [3, 3, 1, 1, 1, 1, 1, 1]  # chunks of at most max_context, then one at a time
    # the sampled continuations do not depend on how the prefix was cut (a bigram only sees the last token)
    a = _Bigram.build({}, spec)
    b = _WindowedBigram.build({}, spec)
    b.load_state_dict(a.state_dict())
    primer = np.array([BOS, 3, 4, 5, 6, 7, 8])
    assert np.array_equal(a.sample(3, 20, primer=primer, seed=5), b.sample(3, 20, primer=primer, seed=5))


class _DrawOnly(Generator):
    """A generator that implements only `draw_samples`: the base `sample` must check and prepare everything."""

    name = "test-draw-only"
    accepts = ("tokens",)
    sample_options = ("flavour",)
    calls: list = []

    def __init__(self, config, spec):
        super().__init__(config, spec)
        self.weight = nn.Parameter(torch.zeros(1))

    def draw_samples(self, n, length, *, primer, mask, temperature, top_k, top_p, greedy, generator, **options):
        self.calls.append(dict(n=n, length=length, training=self.training, grad=torch.is_grad_enabled(),
                               temperature=temperature, top_k=top_k, greedy=greedy, options=options))
        if options.get("flavour") == "boom":
            raise RuntimeError("boom")
        return torch.randint(V, (n, length), generator=generator).numpy()


def test_generator_sample_preamble_checks_seeds_and_restores_mode():
    g = _DrawOnly.build({}, SPEC)
    g.train()
    a = g.sample(2, 5, seed=4, temperature=0.5, top_k=3, flavour="x")
    call = _DrawOnly.calls[-1]
    assert call == dict(n=2, length=5, training=False, grad=False, temperature=0.5, top_k=3, greedy=False,
                        options={"flavour": "x"})
    assert g.training
    assert np.array_equal(a, g.sample(2, 5, seed=4))  # the seed reaches draw_samples as a private generator
    for bad in (dict(n=0), dict(n=1.5), dict(n=True), dict(length=-1), dict(temperature=-2), dict(top_p=0.0),
                dict(colour="red")):
        kwargs = {"n": 1, "length": 3, **bad}
        with pytest.raises(ConfigError):
            g.sample(**kwargs)
    before = len(_DrawOnly.calls)
    with pytest.raises(ConfigError, match="colour"):
        g.sample(1, 3, colour="red")
    assert len(_DrawOnly.calls) == before  # refused before any drawing
    with pytest.raises(RuntimeError):
        g.sample(1, 3, flavour="boom")
    assert g.training  # restored after an error too
    assert g.sample(np.int64(2), 2.0, seed=1).shape == (2, 2)  # whole numbers of any type


def test_state_dict_keys_unchanged_so_old_checkpoints_load():
    """The keys (and shapes) the recurrent generators had before they moved onto TokenGenerator."""
    untied = make(LSTMGenerator, num_layers=2)
    assert list(untied.state_dict()) == [
        "embedding.weight",
        "rnn.weight_ih_l0", "rnn.weight_hh_l0", "rnn.bias_ih_l0", "rnn.bias_hh_l0",
        "rnn.weight_ih_l1", "rnn.weight_hh_l1", "rnn.bias_ih_l1", "rnn.bias_hh_l1",
        "head.weight", "head.bias",
    ]  # fmt: skip
    tied = make(GRUGenerator, num_layers=1, tie_weights=True)
    assert list(tied.state_dict()) == [
        "out_bias", "embedding.weight", "rnn.weight_ih_l0", "rnn.weight_hh_l0", "rnn.bias_ih_l0", "rnn.bias_hh_l0",
        "proj.weight", "proj.bias",
    ]  # fmt: skip


def test_bf16_autocast_on_cpu_trains_and_samples():
    g = make()
    g.train()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = g.loss(pattern_batch(2, 8))
    out["loss"].backward()
    assert torch.isfinite(out["loss"]) and all(torch.isfinite(p.grad).all() for p in g.parameters())
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert g.sample(2, 5, seed=0).shape[0] == 2
