"""The fractal generators (mar, ar) on tiny configs: geometry, masking, loss, sampling, caching, checkpointing."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from fractalmusic.errors import ConfigError
from fractalmusic.generators.fractal import ARGenerator, FractalConfig, MARGenerator
from fractalmusic.generators.fractal.layout import (
    child_grid,
    neighbour_table,
    patchify,
    scan_permutation,
    unpatchify,
    window_starts,
)
from fractalmusic.generators.fractal.levels import neighbour_conditions
from fractalmusic.generators.fractal.mar import draw_mask_ratios
from fractalmusic.representations.base import RepresentationSpec

SPEC = RepresentationSpec(kind="grid", vocab_size=3)


pytestmark = pytest.mark.usefixtures("one_thread")


def make(cls=MARGenerator, **kw):
    kw.setdefault("model_size", "tiny")
    kw.setdefault("dropout", 0.0)
    kw.setdefault("max_crop_length", 128)
    torch.manual_seed(0)
    return cls(FractalConfig(**kw), SPEC)


def toy_batch(b=2, w=32, seed=0):
    """A few repeated notes and a held chord: onsets (2) followed by sustains (1)."""
    g = torch.zeros(b, 128, w, dtype=torch.long)
    rng = np.random.default_rng(seed)
    for i in range(b):
        for t in range(0, w, 4):
            p = int(rng.integers(55, 70))
            g[i, p, t] = 2
            g[i, p, t + 1 : t + 4] = 1
        g[i, 48, 0] = 2
        g[i, 48, 1:w] = 1
    return {"grid": g, "mask": torch.ones(b, w, dtype=torch.bool)}


# ----------------------------------------------------------------- geometry
@pytest.mark.parametrize("w,cols", [(64, 4), (128, 8), (512, 32), (100, 7)])
def test_level0_grid_is_8_by_w_over_16(w, cols):
    assert child_grid(128, w, 0) == (8, cols)
    assert child_grid(128, w, 1) == (4, 4) and child_grid(128, w, 2) == (4, 4)


def test_patchify_roundtrip_and_child_numbering():
    x = torch.arange(128 * 512).reshape(1, 128, 512)
    p = patchify(x, 16)
    assert p.shape == (1, 8 * 32, 16, 16)
    # child (r, c) = r * 32 + c holds rows 16r.., columns 16c..
    assert p[0, 2 * 32 + 5, 0, 0] == x[0, 32, 80]
    assert torch.equal(unpatchify(p, 8, 32), x)


def test_neighbours_and_scan_orders_follow_the_2d_layout():
    t = neighbour_table(8, 32)  # W = 512: an 8 x 32 grid, not 16 x 16
    j = 3 * 32 + 10
    assert t[j].tolist() == [2 * 32 + 10, 4 * 32 + 10, j - 1, j + 1]  # below, above, before, after
    assert t[31].tolist() == [-1, 63, 30, -1]  # lowest band, last column
    assert scan_permutation(2, 3, "row_major").tolist() == [0, 1, 2, 3, 4, 5]
    assert scan_permutation(2, 3, "column_major").tolist() == [0, 3, 1, 4, 2, 5]
    # the conditions a MAR level hands down are its outputs at those grid neighbours
    out = torch.arange(256, dtype=torch.float32).reshape(1, 256, 1)
    real = torch.ones(1, 256, dtype=torch.bool)
    conds = neighbour_conditions(out, torch.tensor([0]), torch.tensor([j]), real, 8, 32)
    assert conds[0, :, 0].tolist() == [j, j - 32, j + 32, j - 1, j + 1]
    edge = neighbour_conditions(out, torch.tensor([0]), torch.tensor([0]), real, 8, 32)
    assert edge[0, :, 0].tolist() == [0, 0, 32, 0, 1]  # zeros beyond the border


def test_position_tables_are_sized_per_level():
    m = make(max_crop_length=1024)
    assert tuple(m.levels[0].child_pos.shape) == (8, 64, 64)  # 8 x max_crop/16 patches
    assert tuple(m.levels[1].child_pos.shape[:2]) == (4, 4)
    assert tuple(m.levels[2].child_pos.shape[:2]) == (4, 4)


def test_window_plan_covers_and_overlaps():
    assert window_starts(128, 128, 64) == [0]
    assert window_starts(160, 64, 32) == [0, 32, 64, 96]
    assert window_starts(144, 128, 64) == [0, 16]


# ----------------------------------------------------------------- config
def test_config_validation():
    with pytest.raises(ConfigError):
        FractalConfig(widths=(64, 32, 16))
    with pytest.raises(ConfigError):
        FractalConfig(generator_types=("mar", "xar", "ar"))
    with pytest.raises(ConfigError):
        FractalConfig(generator_types=("mar", "ar"))
    with pytest.raises(ConfigError):
        FractalConfig(scan_order="diagonal")
    with pytest.raises(ConfigError):
        FractalConfig(mask_ratio_min=1.5)
    with pytest.raises(ConfigError):
        FractalConfig(max_crop_length=100)
    with pytest.raises(ConfigError):
        FractalConfig(model_size="tiny", widths=(64, 31, 16, 16))  # 31 not divisible by 2 heads
    with pytest.raises(ConfigError):
        FractalConfig(num_iter=(0, 4, 4))
    # FractalMIDI's four-entry spelling: the last names the order-less cell level
    assert FractalConfig(generator_types=("mar", "mar", "ar", "ar")).generator_types == ("mar", "mar", "ar")
    assert FractalConfig(num_iter=(12,)).num_iter == (12, 16, 4)
    assert FractalConfig(num_iter=(8, 4, 2, 1)).num_iter == (8, 4, 2)  # FractalMIDI spelling
    assert MARGenerator.name == "mar" and ARGenerator.name == "ar"
    assert make(ARGenerator).types == ("ar", "ar", "ar")
    assert make(MARGenerator, generator_types=("mar", "ar", "ar")).types == ("mar", "ar", "ar")


def test_default_level_types_are_resolved_and_old_checkpoints_keep_theirs():
    m = make()
    assert m.types == ("mar", "mar", "ar") and m.config.generator_types == ("mar", "mar", "ar")
    assert FractalConfig().model_size == "compact" and MARGenerator.train_defaults == {"batch_size": 8, "lr": 2e-3}
    assert ARGenerator.train_defaults == {"batch_size": 8}
    # a version-1 checkpoint left the types empty, meaning every level of the generator's own kind
    old = {"config": {"model_size": "tiny", "generator_types": None}, "model": {}}
    assert MARGenerator.upgrade_state(old, 1)["config"]["generator_types"] == ["mar"] * 3
    assert ARGenerator.upgrade_state(old, 1)["config"]["generator_types"] == ["ar"] * 3
    kept = {"config": {"generator_types": ["mar", "ar", "ar"]}, "model": {}}
    assert MARGenerator.upgrade_state(kept, 1)["config"]["generator_types"] == ["mar", "ar", "ar"]
    assert MARGenerator.upgrade_state(old, 5) is old
    # before version 4 there was no left-cell embedding, before 5 no right-cell one: old checkpoints load without
    up = MARGenerator.upgrade_state(old, 3)["config"]
    assert up["left_cell"] is False and up["right_cell"] is False
    up = MARGenerator.upgrade_state({"config": {"left_cell": True}, "model": {}}, 4)["config"]
    assert up["left_cell"] is True and up["right_cell"] is False
    assert FractalConfig().left_cell is True and FractalConfig().right_cell is True


def test_pitch_rows_are_saved_and_old_checkpoints_get_none_recorded():
    m = make()
    assert "pitch_rows" in m.state_dict() and not bool(m.pitch_rows.any())
    m.train()
    m.loss(toy_batch())
    heard = m.pitch_rows.nonzero().squeeze(1).tolist()
    assert heard[0] == 48 and all(55 <= r < 70 for r in heard[1:])
    m.eval()
    m.loss(toy_batch(seed=5))  # only training batches are recorded
    assert m.pitch_rows.nonzero().squeeze(1).tolist() == heard
    # a state version 2 checkpoint has no pitch_rows: the upgrade adds an empty one (every row may sound)
    state = {k: v for k, v in m.state_dict().items() if k != "pitch_rows"}
    up = MARGenerator.upgrade_state({"config": {"generator_types": ["mar", "mar", "ar"]}, "model": state}, 2)
    fresh = make()
    fresh.load_state_dict(up["model"])  # strict
    assert fresh.pitch_rows.shape == (128,) and not bool(fresh.pitch_rows.any())
    assert bool(fresh.allowed_rows().all())


@pytest.mark.parametrize("bad", [0, -1.0, float("nan"), "2", True])
def test_note_cell_weight_must_be_positive(bad):
    with pytest.raises(ConfigError, match="note-cell-weight"):
        FractalConfig(note_cell_weight=bad)


@pytest.mark.parametrize("types", [("mar", "mar", "ar"), ("ar", "ar", "ar")])
def test_note_cell_weight_scales_training_loss_on_sounding_cells_only(types):
    plain, heavy = make(generator_types=types), make(generator_types=types, note_cell_weight=3.0)
    heavy.load_state_dict(plain.state_dict())
    batch = toy_batch(w=32)
    torch.manual_seed(2)
    a = plain.loss(batch)
    torch.manual_seed(2)
    b = heavy.loss(batch)
    # the same masks were drawn: the empty cells cost the same, the sounding ones about 3x (silent flags: 1x)
    assert b["loss_empty_cells"] == pytest.approx(a["loss_empty_cells"], rel=1e-5)
    assert 1.5 * a["loss_note_cells"] < b["loss_note_cells"] <= 3.0 * a["loss_note_cells"] * (1 + 1e-5)
    torch.manual_seed(3)
    na = plain.nll(batch)
    torch.manual_seed(3)
    nb = heavy.nll(batch)  # the likelihood is never weighted
    assert nb["nll_sum"] == pytest.approx(na["nll_sum"], rel=1e-5)


def test_crop_wider_than_table_is_a_clear_error():
    m = make(max_crop_length=64)
    with pytest.raises(ConfigError, match="max-crop-length"):
        m.loss(toy_batch(w=80))


# ----------------------------------------------------------------- masking
@pytest.mark.parametrize("loc,scale,lo", [(1.0, 0.5, 0.0), (1.0, 0.5, 0.3), (0.2, 0.05, 0.5), (5.0, 0.1, 0.1)])
def test_mask_ratios_stay_in_bounds(loc, scale, lo):
    r = draw_mask_ratios(20000, loc, scale, lo)
    assert float(r.min()) >= lo and float(r.max()) <= 1.0
    if loc < lo:
        assert float(r.mean()) < lo + 0.05  # mass piles up at the lower bound, not below it


def test_every_item_masks_at_least_one_real_child():
    m = make(mask_ratio_loc=0.0, mask_ratio_scale=0.05, mask_ratio_min=0.0)  # ratios near 0
    real = torch.ones(500, 16, dtype=torch.bool)
    real[:, 10:] = False  # padding children are never masked
    masked, factor = m.levels[1].select(real, "train")
    k = masked.sum(1)
    assert int(k.min()) >= 1 and not bool(masked[:, 10:].any())
    assert torch.allclose(factor, 10.0 / k.float())
    m2 = make(mask_ratio_min=0.5)
    masked, _ = m2.levels[0].select(torch.ones(2000, 32, dtype=torch.bool), "train")
    assert int(masked.sum(1).min()) >= 16  # ceil(0.5 * 32)


# ----------------------------------------------------------------- loss
def test_loss_keys_and_accounting():
    m = make()
    batch = toy_batch(w=40)
    batch["mask"][1, 36:] = False
    torch.manual_seed(1)
    out = m.loss(batch)
    for key in ("loss", "n", "bits_per_cell", "loss_note_cells", "loss_empty_cells"):
        assert key in out
    assert out["n"] == 128 * (40 + 36)
    assert out["loss"].requires_grad and float(out["loss"].detach()) > 0
    assert abs(out["bits_per_cell"] - float(out["loss"].detach()) / np.log(2)) < 1e-6
    n_note = int((batch["grid"][0] != 0).sum() + (batch["grid"][1, :, :36] != 0).sum())
    total = out["loss_note_cells"] * n_note + out["loss_empty_cells"] * (out["n"] - n_note)
    ref = float(out["loss"].detach()) * out["n"]
    assert abs(total - ref) < 1e-3 * ref
    # padding is neither predicted nor counted: garbage there changes nothing
    batch2 = {"grid": batch["grid"].clone(), "mask": batch["mask"]}
    batch2["grid"][1, 60:70, 36:] = 2
    torch.manual_seed(1)
    assert torch.allclose(m.loss(batch2)["loss"], out["loss"])
    res = m.nll(batch, nll_forward_number=2)
    assert res["n"] == out["n"] and res["nll_sum"] > 0
    assert MARGenerator.eval_option_names() == ("nll_forward_number",)


@pytest.mark.parametrize(
    "cls,kw",
    [
        (MARGenerator, {}),
        (ARGenerator, {}),
        (MARGenerator, {"generator_types": ("mar", "ar", "ar"), "scan_order": "column_major"}),
    ],
)
def test_loss_falls_on_a_fixed_batch(cls, kw):
    m = make(cls, **kw)
    batch = toy_batch(b=2, w=32)
    opt = torch.optim.AdamW(m.parameters(), lr=3e-3, weight_decay=0.0)
    losses = []
    torch.manual_seed(0)
    for _ in range(40):
        out = m.loss(batch)
        opt.zero_grad()
        out["loss"].backward()
        opt.step()
        losses.append(float(out["loss"].detach()))
    first, last = np.mean(losses[:5]), np.mean(losses[-5:])
    assert last < 0.6 * first, (first, last)


# ----------------------------------------------------------------- checkpointing
def test_grad_checkpointing_same_loss_and_grads_and_bf16():
    m = make()
    batch = toy_batch(w=32)

    def run():
        m.zero_grad()
        torch.manual_seed(3)
        out = m.loss(batch)
        out["loss"].backward()
        return float(out["loss"].detach()), {k: p.grad.clone() for k, p in m.named_parameters() if p.grad is not None}

    l0, g0 = run()
    m.set_grad_checkpointing(True)
    assert all(lv.transformer.grad_checkpointing for lv in m.levels)
    l1, g1 = run()
    assert abs(l0 - l1) < 1e-6 and g0.keys() == g1.keys()
    for k in g0:
        assert torch.allclose(g0[k], g1[k], atol=1e-6, rtol=1e-4), k
    m.zero_grad()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = m.loss(batch)
    out["loss"].backward()
    assert torch.isfinite(out["loss"]) and m.levels[0].start.grad is not None
    assert all(torch.isfinite(p.grad).all() for p in m.parameters() if p.grad is not None)


# ----------------------------------------------------------------- sampling
def _warm(m, steps=15):
    """A few optimizer steps so that samples are not all silence."""
    opt = torch.optim.AdamW(m.parameters(), lr=3e-3)
    batch = toy_batch(w=32)
    for _ in range(steps):
        out = m.loss(batch)
        opt.zero_grad()
        out["loss"].backward()
        opt.step()
    m.trained_width.zero_()
    return m


@pytest.fixture(scope="module")
def warm_mar():
    return _warm(make(max_crop_length=64))


def test_sample_shapes_and_windows(warm_mar):
    m = warm_mar
    for length in (64, 96, 20):
        s = m.sample(2, length, seed=0, num_iter=(4, 2, 2))
        assert s.shape == (2, 128, length) and s.dtype == np.int64
        assert s.min() >= 0 and s.max() < 3
    # wider than max_crop_length (64): windowed continuation
    s = m.sample(1, 160, seed=0, num_iter=(4, 2, 2))
    assert s.shape == (1, 128, 160)
    with pytest.raises(ConfigError):
        m.sample(1, 30)
    with pytest.raises(ConfigError):
        m.sample(1, 32, bogus=1)


def test_sampling_stays_between_the_lowest_and_highest_pitch_heard_in_training(warm_mar):
    m = warm_mar
    heard = m.pitch_rows.nonzero().squeeze(1)
    lo, hi = int(heard.min()), int(heard.max())
    assert lo == 48 and hi < 70
    assert m.allowed_rows().nonzero().squeeze(1).tolist() == list(range(lo, hi + 1))
    hot = dict(temperature=3.0, num_iter=(4, 2, 2))
    s = m.sample(4, 32, seed=3, **hot)
    rows = np.nonzero((s != 0).any(axis=(0, 2)))[0]
    assert rows.size and rows.min() >= lo and rows.max() <= hi
    saved = m.pitch_rows.clone()
    try:
        m.pitch_rows.zero_()  # nothing recorded: every row may sound (and does, this hot)
        s = m.sample(4, 32, seed=3, **hot)
        rows = np.nonzero((s != 0).any(axis=(0, 2)))[0]
        assert rows.min() < lo or rows.max() > hi
    finally:
        m.pitch_rows.copy_(saved)
    # a primer's notes outside the range are kept; only generated cells are held to it
    primer = np.zeros((128, 32), dtype=np.int64)
    primer[100, :8] = 2
    s = m.sample(1, 32, primer=primer, mask=np.arange(32) >= 8, seed=1, **hot)
    assert s[0, 100, :8].tolist() == [2] * 8 and not s[0, 100, 8:].any()


def _ctx(**kw):
    from fractalmusic.generators.fractal.model import _SampleContext

    kw.setdefault("temperature", 1.0)
    return _SampleContext(generator=torch.Generator().manual_seed(0), top_k=None, top_p=None, greedy=False,
                          num_iter=(1, 1, 1), use_cache=False, **kw)


def test_note_temperature_sets_silence_or_sound_and_temperature_the_rest():
    # silence is the likeliest class (0.4), but sound has 0.6 in all
    logits = torch.log(torch.tensor([[0.4, 0.3, 0.3]])).expand(4000, 3)
    plain = _ctx().draw_cells(logits)
    assert 0.36 < float((plain == 0).float().mean()) < 0.44
    same = _ctx(note_temperature=1.0).draw_cells(logits)  # both at 1: the plain distribution
    assert 0.36 < float((same == 0).float().mean()) < 0.44
    cold = _ctx(note_temperature=0.05).draw_cells(logits)  # cold on silence-or-sound: always sound...
    assert float((cold == 0).float().mean()) < 0.01
    sustain = float((cold == 1).float().mean())  # ... split between sustain and onset as the model says
    assert 0.45 < sustain < 0.55
    plain_cold = _ctx(temperature=0.05).draw_cells(logits)  # the old single temperature: always silence
    assert float((plain_cold == 0).float().mean()) > 0.99
    rhythm = torch.log(torch.tensor([[0.1, 0.6, 0.3]])).expand(4000, 3)
    kept = _ctx(note_temperature=1.0, temperature=0.05).draw_cells(rhythm)
    assert 0.06 < float((kept == 0).float().mean()) < 0.14  # silence keeps its 0.1
    assert not bool((kept == 2).any())  # a cold rhythm: the likelier sounding class, the sustain


def test_note_temperature_option(warm_mar):
    a = warm_mar.sample(2, 32, seed=1, num_iter=(4, 2, 2), note_temperature=0.2)
    b = warm_mar.sample(2, 32, seed=1, num_iter=(4, 2, 2), note_temperature=0.2)
    assert np.array_equal(a, b)
    for bad in (0, -1, "x", 11):
        with pytest.raises(ConfigError, match="note-temperature"):
            warm_mar.sample(1, 32, note_temperature=bad)


def test_window_follows_trained_width(warm_mar):
    m = warm_mar
    assert m.window_width() == 64
    m.trained_width.fill_(32)
    try:
        assert m.window_width() == 32
    finally:
        m.trained_width.zero_()


def test_same_seed_same_sample(warm_mar):
    a = warm_mar.sample(2, 32, seed=7, num_iter=(4, 2, 2))
    b = warm_mar.sample(2, 32, seed=7, num_iter=(4, 2, 2))
    c = warm_mar.sample(2, 32, seed=8, num_iter=(4, 2, 2))
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)


def test_infilling_keeps_cells_outside_the_mask(warm_mar):
    m = warm_mar
    rng = np.random.default_rng(0)
    primer = (rng.random((128, 48)) < 0.05).astype(np.int64) * 2
    # a time range
    mask = np.zeros((128, 48), dtype=bool)
    mask[:, 16:36] = True
    s = m.sample(2, 48, primer=primer, mask=mask, seed=1, num_iter=(4, 2, 2))
    assert np.array_equal(s[:, ~mask], np.broadcast_to(primer, s.shape)[:, ~mask])
    # a pitch band (new accompaniment under a kept melody)
    band = np.zeros((128, 48), dtype=bool)
    band[36:60, :] = True
    s = m.sample(2, 48, primer=primer, mask=band, seed=1, num_iter=(4, 2, 2))
    assert np.array_equal(s[:, ~band], np.broadcast_to(primer, s.shape)[:, ~band])
    # continuation: a narrower primer is kept, the rest generated
    s = m.sample(1, 64, primer=primer[:, :20], seed=1, num_iter=(4, 2, 2))
    assert np.array_equal(s[0, :, :20], primer[:, :20])
    with pytest.raises(ConfigError):
        m.sample(1, 32, primer=np.full((128, 8), 9))


def test_ar_kv_cache_matches_recomputation():
    # without the cells beside (they do not touch the cache): after 10 steps that model's greedy rolls sound
    m = _warm(make(ARGenerator, max_crop_length=64, scan_order="column_major", left_cell=False, right_cell=False),
              steps=10)
    primer = np.zeros((128, 32), dtype=np.int64)
    primer[60, :8] = 2
    kw = dict(primer=primer[:, :8], greedy=True, seed=0)
    m.kv_cache = True
    a = m.sample(2, 32, **kw)
    m.kv_cache = False
    b = m.sample(2, 32, **kw)
    m.kv_cache = True
    assert np.array_equal(a, b)
    assert (a[:, :, 8:] != 0).any()  # the comparison is not trivially between two silent rolls
    # the conditions themselves agree
    level = m.levels[0]
    from fractalmusic.generators.fractal.ar import _Decoder

    cells = torch.from_numpy(a[:1]).long()
    child = patchify(cells, 16)
    full = level.child_conditions(child, torch.ones(1, 16, dtype=torch.bool), None, 2)
    perm = level.perm(2, "cpu")
    dec = _Decoder(level, 1, level.n_conds + 15, use_cache=True)
    outs = [dec.feed(level.in_norm(level.cond_tokens(None, 1)), None)[:, -1]]
    for t in range(15):
        outs.append(dec.feed(level.child_tokens(child, 2, perm[t : t + 1]), None)[:, -1])
    cached = torch.stack(outs, 1)[:, torch.argsort(perm)]
    assert torch.allclose(full, cached, atol=1e-5)


@pytest.mark.parametrize("order", ["row_major", "column_major"])
def test_ar_level_is_causal_in_its_scan_order(order):
    m = make(ARGenerator, scan_order=order, max_crop_length=64)
    level = m.levels[0]
    level.eval()
    cells = toy_batch(b=1, w=64)["grid"]
    child = patchify(cells, 16)  # [1, 8 * 4, 16, 16]
    real = torch.ones(1, 32, dtype=torch.bool)
    perm = level.perm(4, "cpu")
    assert perm.tolist() == scan_permutation(8, 4, order).tolist()
    base = level.child_conditions(child, real, None, 4)
    t = 10
    changed = child.clone()
    changed[0, perm[t], 3, 3] = 2  # one more onset in the t-th child of the scan
    out = level.child_conditions(changed, real, None, 4)
    same = torch.isclose(out, base, atol=1e-6).all(-1)[0]
    assert bool(same[perm[: t + 1]].all())  # the child itself and everything before it cannot see the change
    assert not bool(same[perm[t + 1 :]].all())


def test_level0_runs_on_the_real_grid_at_w512():
    m = make(max_crop_length=512)
    seen = []
    original = m.levels[0].child_conditions

    def spy(child_cells, child_real, conds, cols, masked=None):
        seen.append((tuple(child_cells.shape[:2]), cols))
        return original(child_cells, child_real, conds, cols, masked)

    m.levels[0].child_conditions = spy
    m.loss(toy_batch(b=1, w=512))
    assert seen == [((1, 8 * 32), 32)]
    assert int(m.trained_width) == 512 and "trained_width" in m.state_dict()


def test_nll_is_exact_for_ar_and_averaged_for_mar():
    batch = toy_batch(w=32)
    ar = make(ARGenerator)
    a, b = ar.nll(batch, nll_forward_number=3), ar.nll(batch)
    assert a["nll_sum"] == pytest.approx(b["nll_sum"], rel=1e-6)
    assert a["n_note"] + a["n_empty"] == a["n"]
    mar = make()
    torch.manual_seed(0)
    one = [mar.nll(batch)["nll_sum"] for _ in range(6)]
    assert np.std(one) > 0  # a random-mask estimate
    with pytest.raises(ConfigError):
        mar.nll(batch, nll_forward_number=0)


def test_time_mask_narrower_than_length(warm_mar):
    primer = np.zeros((128, 32), dtype=np.int64)
    primer[50, ::4] = 2
    mask = np.zeros(32, dtype=bool)
    mask[8:16] = True  # regenerate steps 8..15, keep the rest of the primer, generate 32..47
    s = warm_mar.sample(1, 48, primer=primer, mask=mask, seed=0, num_iter=(4, 2, 2, 1))
    keep = ~mask
    assert np.array_equal(s[0, :, :32][:, keep], primer[:, keep])


@pytest.mark.parametrize("cls", [MARGenerator, ARGenerator])
def test_attention_in_slices_gives_the_same_loss_and_grads(cls, monkeypatch):
    """CUDA's efficient attention refuses over 65,535 sequences per call: the levels slice the batch instead."""
    from fractalmusic.generators.fractal import transformer

    def run():
        m = make(cls)
        torch.manual_seed(3)
        out = m.loss(toy_batch(b=2, w=32))
        out["loss"].backward()
        return out["loss"].detach(), [p.grad.clone() for p in m.parameters() if p.grad is not None]

    calls = []
    real = transformer.F.scaled_dot_product_attention

    def counting(q, *a, **kw):
        calls.append(q.shape[0])
        return real(q, *a, **kw)

    loss_whole, grads_whole = run()
    monkeypatch.setattr(transformer, "MAX_ATTENTION_BATCH", 5)
    monkeypatch.setattr(transformer.F, "scaled_dot_product_attention", counting)
    loss_sliced, grads_sliced = run()
    assert calls and max(calls) <= 5
    assert torch.allclose(loss_whole, loss_sliced, atol=1e-6)
    assert len(grads_whole) == len(grads_sliced)
    for a, b in zip(grads_whole, grads_sliced):
        assert torch.allclose(a, b, atol=1e-5)


# ----------------------------------------------------------------- the cell before (left_cell)
def _true_pairs(grid: torch.Tensor, unknown: int, after: bool = False) -> list[tuple[int, int]]:
    """(class of the cell before, class of the cell) over every cell; `unknown` before column 0. after: (class of
    the cell after, class of the cell), `unknown` after the last column."""
    edge = torch.full_like(grid[:, :, :1], unknown)
    side = torch.cat([grid[:, :, 1:], edge], dim=2) if after else torch.cat([edge, grid[:, :, :-1]], dim=2)
    return sorted(zip(side.reshape(-1).tolist(), grid.reshape(-1).tolist()))


def _counts(pairs) -> dict:
    out: dict = {}
    for pair in pairs:
        out[pair] = out.get(pair, 0) + 1
    return out


def _record_head(m, monkeypatch):
    """Record (left, target) of every cell the cell classifier's loss is taken on."""
    seen = {"left": [], "right": [], "target": []}
    head_forward = m.head.forward

    def head(conds, left=None, right=None):
        seen["left"].append(left.clone())
        seen["right"].append(right.clone())
        return head_forward(conds, left, right)

    cross_entropy = torch.nn.functional.cross_entropy

    def ce(logits, target, **kw):
        seen["target"].append(target.clone())
        return cross_entropy(logits, target, **kw)

    monkeypatch.setattr(m.head, "forward", head)
    monkeypatch.setattr(torch.nn.functional, "cross_entropy", ce)
    return seen


def test_left_cell_in_training_is_the_true_cell_before_where_sampling_would_have_made_it(monkeypatch):
    batch = toy_batch(w=32)
    grid = batch["grid"]
    # all AR: every child is made before the next in time, so every cell sees the true cell before it
    m = make(generator_types=("ar", "ar", "ar"), skip_silent=False)
    seen = _record_head(m, monkeypatch)
    m.loss(batch)
    pairs = sorted(zip(torch.cat(seen["left"]).tolist(), torch.cat(seen["target"]).tolist()))
    assert pairs == _true_pairs(grid, unknown=3)
    assert bool((torch.cat(seen["right"]) == 3).all())  # an AR scan never has made the cell after
    # MAR above: a cell whose neighbour patch was masked sees "unknown" (3), never a wrong class
    m = make(skip_silent=False)
    seen = _record_head(m, monkeypatch)
    torch.manual_seed(1)
    m.loss(batch)
    target = torch.cat(seen["target"])
    for name in ("left", "right"):
        side = torch.cat(seen[name])
        known = side != 3
        assert 0 < int(known.sum()) < side.numel()
        true = _counts(_true_pairs(grid, unknown=3, after=name == "right"))
        for pair, k in _counts(zip(side[known].tolist(), target[known].tolist())).items():
            assert true.get(pair, 0) >= k, (name, pair)
    # without left_cell / right_cell the head has no such embedding
    plain = make(left_cell=False, right_cell=False)
    assert plain.head.left_embed is None and plain.head.right_embed is None
    assert not any("_embed" in k and k.startswith("head.") for k in plain.state_dict())


# a cell classifier that follows the cell before it: unknown -> onset, onset -> sustain, sustain -> silence,
# silence -> onset; so a row is 2,1,0,2,1,0,... exactly where every cell saw the cell really made before it
_NEXT = torch.tensor([2, 0, 1, 2])


def _follow_left(m, monkeypatch):
    def head(conds, left=None, right=None):
        return torch.nn.functional.one_hot(_NEXT[left], 3).float() * 50.0

    monkeypatch.setattr(m.head, "forward", head)


@pytest.mark.parametrize("types", ["ar,ar,ar", "mar,mar,ar", "mar,mar,mar"])
def test_left_cell_in_sampling_is_the_cell_made_before_it(types, monkeypatch):
    m = make(generator_types=tuple(types.split(",")), skip_silent=False, max_crop_length=32)
    _follow_left(m, monkeypatch)
    m.pitch_rows[48:64] = True  # one band of 16 pitches is generated (the rest stays silent): quick
    s = m.sample(2, 32, seed=0, temperature=1.0, num_iter=(4, 4, 4))[:, 48:64]
    nxt = _NEXT[torch.from_numpy(s[:, :, :-1])].numpy()
    follows = s[:, :, 1:] == nxt
    # every cell either followed the cell really there before it, or did not see it (and is an onset)
    assert np.all(follows | (s[:, :, 1:] == 2))
    assert np.all(s[:, :, 0] == 2)
    if types == "ar,ar,ar":  # AR everywhere: every cell saw the one before it
        assert follows.all()
    else:  # MAR: cells at the start of a patch made in the same iteration as the patch before did not
        assert 0.3 < follows.mean() < 1.0


# a cell classifier that reads the cell after it: unknown -> silence, silence -> sustain, sustain -> onset,
# onset -> sustain
_PREV = torch.tensor([1, 2, 1, 0])


@pytest.mark.parametrize("types", ["mar,mar,ar", "mar,mar,mar"])
def test_right_cell_in_sampling_is_the_cell_made_after_it(types, monkeypatch):
    m = make(generator_types=tuple(types.split(",")), skip_silent=False, max_crop_length=32)

    def head(conds, left=None, right=None):
        return torch.nn.functional.one_hot(_PREV[right], 3).float() * 50.0

    monkeypatch.setattr(m.head, "forward", head)
    m.pitch_rows[48:64] = True
    s = m.sample(2, 32, seed=0, temperature=1.0, num_iter=(4, 4, 4))[:, 48:64]
    read = s[:, :, :-1] == _PREV[torch.from_numpy(s[:, :, 1:])].numpy()
    # every cell either read the cell really there after it, or did not see it (and is silent)
    assert np.all(read | (s[:, :, :-1] == 0))
    assert np.all(s[:, :, -1] == 0)
    assert 0.05 < read.mean() < 1.0


def test_a_version_3_checkpoint_loads_without_the_cells_beside_and_samples():
    # what a state-version-3 checkpoint holds: a config without left_cell / right_cell, weights without the
    # classifier's left/right embeddings
    old = make(left_cell=False, right_cell=False)
    config = {k: v for k, v in vars(old.config).items() if k not in ("left_cell", "right_cell")}
    up = MARGenerator.upgrade_state({"config": config, "model": old.state_dict()}, 3)
    fresh = MARGenerator(FractalConfig(**up["config"]), SPEC)
    fresh.load_state_dict(up["model"])  # strict: no embedding missing or left over
    assert fresh.head.left_embed is None and fresh.head.right_embed is None
    assert fresh.sample(1, 16, seed=0, num_iter=(2, 2, 2)).shape == (1, 128, 16)
