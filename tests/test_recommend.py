"""Sampling settings found on validation data travel in the checkpoint and `fmusic sample` uses them."""
from __future__ import annotations

import json

import pytest
import torch

from conftest import fmusic
from fractalmusic.training import recommend
from fractalmusic.training.checkpoint import load_checkpoint, save_checkpoint

pytestmark = pytest.mark.usefixtures("one_thread")


def test_token_settings_find_the_calibration_temperature_and_a_nucleus():
    torch.manual_seed(0)
    true_logits = torch.randn(4000, 12) * 2.5
    targets = torch.distributions.Categorical(logits=true_logits).sample()
    calibrated = recommend.token_settings(true_logits, targets)
    assert calibrated["temperature"] == pytest.approx(1.0, abs=0.051)
    # an over-confident model (logits 1.25x too large) is best read at T = 1.25
    assert recommend.token_settings(true_logits * 1.25, targets)["temperature"] == pytest.approx(1.25, abs=0.051)
    top_p = calibrated["top_p"]
    assert top_p is not None and 0.8 < top_p < 1.0
    # the nucleus holds about 99% of the true tokens
    probs = torch.softmax(true_logits, dim=-1)
    p_true = probs.gather(1, targets[:, None])
    above = (probs * (probs > p_true)).sum(1)
    assert 0.985 <= float((above < top_p).float().mean()) <= 0.999


def test_note_density_counts_note_starts_per_column():
    grids = torch.zeros(2, 8, 4, dtype=torch.long)
    grids[0, 1, 0] = 2
    grids[0, 1, 1] = 1  # a sustain after an onset continues the note
    grids[1, 3, 2] = 3  # a louder onset class
    assert recommend.note_density(grids) == pytest.approx(2 / 8)
    mask = torch.tensor([[True, True, False, False], [False, False, False, False]])
    assert recommend.note_density(grids, mask) == pytest.approx(1 / 2)
    grids[0, 5, 2] = 1  # a sustain after silence: the roll decodes it as a note of its own
    grids[1, 6, 0] = 1  # ... also in the first column
    grids[1, 6, 1] = 1
    assert recommend.note_density(grids) == pytest.approx(4 / 8)
    assert recommend.note_starts(grids)[1, 6].tolist() == [True, False, False, False]


def train_tiny(out, capsys):
    code, _, err = fmusic(capsys, "train", "--repr", "abc", "--generator", "lstm", "--hidden-size", "16",
                          "--embedding-dim", "8", "--num-layers", "1", "--crop-length", "32", "--batch-size", "4",
                          "--max-pieces", "30", "--num-prep-workers", "0", "--no-progress", "--device", "cpu",
                          "--max-steps", "3", "--val-batches", "2", "--output-dir", out)
    assert code == 0, err
    return out / "checkpoints" / "last.pt"


def test_checkpoint_records_settings_and_sample_uses_them(tmp_path, capsys):
    last = train_tiny(tmp_path / "run", capsys)
    rec = load_checkpoint(last).sampling
    assert 0.5 <= rec["temperature"] <= 1.5 and rec["tokens"] > 0 and rec["step"] == 3
    # pin known values so the message can be checked exactly
    payload = dict(load_checkpoint(last))
    payload["sampling"] = json.dumps({"temperature": 0.85, "top_p": 0.93})
    save_checkpoint(last, payload)
    args = ("sample", last, "-n", "1", "--length", "20", "--seed", "1", "--to", "abc")
    code, out, err = fmusic(capsys, *args, "--out-dir", tmp_path / "a")
    assert code == 0, err
    assert "sampling with the checkpoint's recommended temperature 0.85, top-p 0.93" in out
    code, out, err = fmusic(capsys, *args, "--temperature", "1", "--out-dir", tmp_path / "b")
    assert code == 0 and "recommended" not in out
    code, out, err = fmusic(capsys, *args, "--greedy", "--out-dir", tmp_path / "c")
    assert code == 0 and "recommended" not in out
    # an old checkpoint without settings samples at 1.0, silently
    del payload["sampling"]
    save_checkpoint(last, payload)
    code, out, err = fmusic(capsys, *args, "--out-dir", tmp_path / "d")
    assert code == 0 and "recommended" not in out


GOOD_TUNE = "X:1\nM:4/4\nL:1/8\nK:G\nG2 | ABcd efga | gfed cBAG | ABcd efga | gfed cBA |]\n"
BAD_TUNE = "X:1\nM:4/4\nL:1/8\nK:G\nG2 | ABcd efg | gfed cBAGF | ABcd efga | gfed cBA |]\n"  # 2 of 3 inner bars wrong


class _TextModel:
    """A stand-in generator + representation: at temperature >= `hot` every tune has wrong bars, below it right ones.
    It records the settings it was asked for."""

    def __init__(self, hot):
        self.hot, self.calls = hot, []

    def sample(self, n, length, temperature=1.0, top_p=None, seed=None):
        self.calls.append((n, length, temperature, top_p, seed))
        return [(temperature,)] * n

    def decode(self, array):
        from fractalmusic.piece import Piece

        t = array[0]
        return Piece(abc=BAD_TUNE if t >= self.hot - 1e-9 else GOOD_TUNE, meta={"ended": True})


def test_bar_score_pools_the_right_inner_bars_of_all_tunes():
    from fractalmusic.piece import Piece

    good, counts = recommend.bar_score([Piece(abc=GOOD_TUNE, meta={"ended": True})])
    assert good == 1.0 and counts == {"tunes": 1, "ended": 1, "judged": 3, "right": 3}
    long_bad = BAD_TUNE.replace("ABcd efga |", "ABcd efga | " * 10, 1)  # 9 more right bars: 10 of 12 right
    score, counts = recommend.bar_score([Piece(abc=GOOD_TUNE, meta={"ended": False}), Piece(abc=long_bad)])
    assert score == pytest.approx((3 + 10) / (3 + 12)) and counts["ended"] == 1 and counts["judged"] == 15
    # a long tune that loses its metre weighs by its bars: one such tune among three short good ones
    lost = "X:1\nM:3/4\nL:1/8\nK:G\nD2 | G2 A2 B2 | c2 d2 e2 |" + " d2 B2 |" * 20 + " G4 |]\n"  # 2 of 22 right
    score, _ = recommend.bar_score([Piece(abc=GOOD_TUNE)] * 3 + [Piece(abc=lost)])
    assert score == pytest.approx((9 + 2) / (9 + 22)) and score < 0.5  # a mean over tunes would say 0.77
    assert recommend.bar_score([Piece(abc="X:1\nM:4/4\nK:G\nAB|\n")]) is None  # nothing to judge
    assert recommend.bar_score([Piece()]) is None  # no ABC text: nothing to say


def test_bar_settings_cool_only_as_far_as_well_formed_bars_need():
    # bars go right below T 0.95: of 1.0, 0.9, 0.8, 0.7 the highest that reaches the best score is 0.9
    model = _TextModel(hot=0.95)
    got = recommend.bar_settings(model, model, {"temperature": 1.0, "top_p": 0.97}, n=3, length=50, seed=7)
    assert got["temperature"] == 0.9 and got["calibration_temperature"] == 1.0 and got["top_p"] == 0.97
    assert got["bar_scores"] == {"1": pytest.approx(1 / 3, abs=1e-4), "0.9": 1.0, "0.8": 1.0, "0.7": 1.0}
    assert [c[2] for c in model.calls] == [1.0, 0.9, 0.8, 0.7]
    assert all(c[0] == 3 and c[1] == 50 and c[3] == 0.97 and c[4] == 7 for c in model.calls)  # same seed for each
    # bars right at every temperature: the calibration temperature stays
    model = _TextModel(hot=9.0)
    assert recommend.bar_settings(model, model, {"temperature": 1.0, "top_p": None}, n=2)["temperature"] == 1.0
    # never below BAR_MIN_TEMPERATURE
    model = _TextModel(hot=0.65)
    got = recommend.bar_settings(model, model, {"temperature": 0.8, "top_p": None}, n=2)
    assert got["temperature"] == 0.8 and set(got["bar_scores"]) == {"0.8", "0.7"}  # 0.6 would be right: not tried
    # a warm calibration temperature is cooled by up to 0.4
    assert recommend.bar_settings(model, model, {"temperature": 1.1, "top_p": None}, n=2)["bar_scores"].keys() == {
        "1.1", "1", "0.9", "0.8", "0.7"}


class _LosingModel(_TextModel):
    """One tune in `n` loses its metre (as a long warm sample does) at temperatures >= `hot`, none below."""

    def decode(self, array):
        from fractalmusic.piece import Piece

        t, k = array
        return Piece(abc=BAD_TUNE if (t >= self.hot - 1e-9 and k == 0) else GOOD_TUNE, meta={"ended": True})

    def sample(self, n, length, temperature=1.0, top_p=None, seed=None):
        self.calls.append((n, length, temperature, top_p, seed))
        return [(temperature, k) for k in range(n)]


def test_bar_settings_tolerance_is_tight_a_few_wrong_bars_cost_the_warm_temperature():
    # one tune of 20 with 2 of 3 bars wrong: 58 of 60 bars right at T >= 0.85, 0.967 against 1.0 - the old
    # tolerance (0.03) kept the warm temperature, BAR_TOLERANCE (0.01) cools to the first clean one
    model = _LosingModel(hot=0.85)
    got = recommend.bar_settings(model, model, {"temperature": 1.0, "top_p": None}, n=20)
    assert got["bar_scores"]["0.9"] == pytest.approx(58 / 60, abs=1e-4) and got["temperature"] == 0.8
    assert recommend.BAR_TOLERANCE < 1 - 58 / 60


def test_scale_consistency_of_rolls_counts_note_starts_in_the_best_scale():
    roll = torch.zeros(2, 128, 16, dtype=torch.long)
    for i, p in enumerate((60, 62, 64, 65, 67, 69, 71, 72)):  # C major, one note each
        roll[0, p, 2 * i] = 2
    for p in range(60, 72):  # every pitch class once: 7 of them fit one scale
        roll[1, p, p - 60] = 2
    roll[1, 61, 12:16] = 1  # a sustain after silence starts a note too (C#: now 8 C# / D-flat-side notes of 13)
    assert recommend.scale_consistency(roll[:1]) == pytest.approx(1.0)
    assert recommend.scale_consistency(roll[1:]) == pytest.approx(8 / 13)
    assert recommend.scale_consistency(roll) == pytest.approx((1.0 + 8 / 13) / 2)
    mask = torch.zeros(2, 16, dtype=torch.bool)
    mask[1, :12] = True  # the first roll is masked out, the second keeps its 12 single notes
    assert recommend.scale_consistency(roll, mask) == pytest.approx(7 / 12)
    assert recommend.scale_consistency(torch.zeros(1, 128, 8, dtype=torch.long)) is None


class _GridModel:
    """A stand-in grid generator: rolls in C major when note_temperature <= `cold`, chromatic above it; note
    density grows with the temperature. It records the settings it was asked for."""

    def __init__(self, cold=0.3, takes=True, silent_below=0.0):
        self.cold, self.takes, self.silent_below, self.calls = cold, takes, silent_below, []

    def sample_option_names(self):
        return ("num_iter", "note_temperature") if self.takes else ("num_iter",)

    def sample(self, n, width, temperature=1.0, seed=None, note_temperature=None):
        self.calls.append((n, width, temperature, note_temperature))
        roll = torch.zeros(n, 128, width, dtype=torch.long)
        pitches = (60, 62, 64, 65, 67, 69, 71) if note_temperature is not None and note_temperature <= self.cold \
            else tuple(range(60, 72))
        every = max(1, round(4 / temperature ** 2))  # temperature 1: a note every 4 columns
        if note_temperature is not None and note_temperature < self.silent_below:
            every = 4 * width  # one note per roll
        for k, t in enumerate(range(0, width, every)):
            roll[:, pitches[k % len(pitches)], t] = 2
        return roll


def test_grid_settings_choose_note_temperature_for_the_key_then_temperature_for_density():
    val = torch.zeros(4, 128, 32, dtype=torch.long)
    for t in range(0, 32, 4):  # one C-major note every 4 columns (scale consistency 1, density 0.25)
        val[:, (60, 62, 64, 65, 67, 69, 71)[(t // 4) % 7], t] = 2
    model = _GridModel(cold=0.3)
    rec = recommend.grid_settings(model, [{"grid": val}], n=2, key_samples=3)
    # 0.15, 0.2 and 0.3 all give the key: the warmest of them; density 0.25 at temperature 1.0
    assert rec["note_temperature"] == 0.3 and rec["temperature"] == 1.0
    assert rec["data_scale_consistency"] == pytest.approx(1.0)
    assert rec["scale_consistency"]["0.3"] == pytest.approx(1.0) and rec["scale_consistency"]["0.5"] < 0.8
    assert set(rec["note_density"]) == {str(t) for t in recommend.GRID_TEMPERATURES}
    assert all(c[3] == 0.3 for c in model.calls[len(recommend.GRID_NOTE_TEMPERATURES):])
    assert recommend.describe(rec) == "temperature 1, note temperature 0.3"
    # only 0.15 gives the key, but this model falls nearly silent there: it does not take part, and of the
    # others (all equally out of key) the warmest is chosen
    rec = recommend.grid_settings(_GridModel(cold=0.15, silent_below=0.2), [{"grid": val}], n=2, key_samples=3)
    assert rec["scale_consistency"]["0.15"] == pytest.approx(1.0) and rec["key_note_density"]["0.15"] < 0.1
    assert rec["note_temperature"] == 1.0
    # a grid generator without note_temperature: the temperature alone, over the plain candidates
    plain = _GridModel(takes=False)
    rec = recommend.grid_settings(plain, [{"grid": val}], n=2)
    # (the coldest within 15 % of the data's density: 0.9, 7 notes in 32 columns against 8)
    assert "note_temperature" not in rec and rec["temperature"] == 0.9
    assert [c[2] for c in plain.calls] == list(recommend.GRID_PLAIN_TEMPERATURES)


class _SteppedGridModel(_GridModel):
    """Rolls in C major at every note temperature; a note every `gaps[temperature]` columns."""

    def __init__(self, gaps):
        super().__init__(cold=10.0)
        self.gaps = gaps

    def sample(self, n, width, temperature=1.0, seed=None, note_temperature=None):
        self.calls.append((n, width, temperature, note_temperature))
        roll = torch.zeros(n, 128, width, dtype=torch.long)
        for k, t in enumerate(range(0, width, self.gaps[temperature])):
            roll[:, (60, 62, 64, 65, 67, 69, 71)[k % 7], t] = 2
        return roll


def test_grid_settings_take_the_coldest_temperature_within_the_density_tolerance():
    val = torch.zeros(4, 128, 64, dtype=torch.long)
    for t in range(0, 64, 4):  # density 0.25
        val[:, (60, 62, 64, 65, 67, 69, 71)[(t // 4) % 7], t] = 2
    # density 64/g/64: gap 5 -> 0.2 (-20 %: too sparse), gap 4 -> exact, gap 3 -> 0.34 (+37 %)
    gaps = {0.8: 6, 1.0: 5, 1.2: 4, 1.4: 4, 1.6: 3, 1.8: 3}
    rec = recommend.grid_settings(_SteppedGridModel(gaps), [{"grid": val}], n=2, key_samples=2)
    assert rec["temperature"] == 1.2
    # within 15 % at 1.0 too (gap 4 at 56 of 64 columns ~ -12 %): the colder one, not the closest
    gaps = {0.8: 6, 1.0: 4, 1.2: 4, 1.4: 4, 1.6: 3, 1.8: 3}
    val_dense = val.clone()
    val_dense[:, 72, 2:64:32] = 2  # two more notes: density 18/64 = 0.281; 0.25 is 11 % under it
    rec = recommend.grid_settings(_SteppedGridModel(gaps), [{"grid": val_dense}], n=2, key_samples=2)
    assert rec["temperature"] == 1.0
    # nothing within 15 %: the closest
    gaps = {t: 8 for t in recommend.GRID_TEMPERATURES}
    gaps[1.8] = 6
    rec = recommend.grid_settings(_SteppedGridModel(gaps), [{"grid": val}], n=2, key_samples=2)
    assert rec["temperature"] == 1.8
