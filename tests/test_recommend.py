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


C_MAJOR = (60, 62, 64, 65, 67, 69, 71)


def _roll(width, gap=4, short=4, out=0, n=1):
    """[n, 128, width]: a note every `gap` columns from column 1, each `short`-th one column long (else two), the
    pitches of C major, the first one C# when `out`."""
    roll = torch.zeros(n, 128, width, dtype=torch.long)
    for k, t in enumerate(range(1, width - 2, gap)):
        pitch = 61 if out and k == 0 else C_MAJOR[k % 7]
        roll[:, pitch, t] = 2
        if k % short:
            roll[:, pitch, t + 1] = 1
    return roll


def test_sixteenth_share_counts_one_column_notes_that_start_and_end_inside():
    roll = _roll(32, gap=4, short=2)  # notes at 1, 5, ..., 29: every other one one column long
    assert recommend.sixteenth_share(roll) == pytest.approx(4 / 8)
    roll[0, 40, 0] = 2  # cut by the left edge: not judged
    roll[0, 41, 31] = 2  # cut by the right edge: not judged
    assert recommend.sixteenth_share(roll) == pytest.approx(4 / 8)
    roll[0, 50, 10:12] = 1  # an orphan sustain two columns long: a note, not short
    roll[0, 52, 14] = 2
    roll[0, 52, 15] = 2  # an onset right after an onset of the same pitch: the first is short
    assert recommend.sixteenth_share(roll) == pytest.approx(6 / 11)
    mask = torch.zeros(1, 32, dtype=torch.bool)
    mask[0, :9] = True  # columns 1..7 judged: the notes at 1 (short) and 5 (long)
    assert recommend.sixteenth_share(roll, mask) == pytest.approx(1 / 2)
    assert recommend.sixteenth_share(torch.zeros(1, 128, 8, dtype=torch.long)) is None
    got = recommend.roll_measures([_roll(64, short=4)[0], _roll(64, short=2)[0]])
    assert got["sixteenths"] == pytest.approx((0.25 + 0.5) / 2) and got["density"] == pytest.approx(16 / 64)
    assert got["scale"] == pytest.approx(1.0)


def test_grid_margins_are_one_at_the_data_and_zero_at_the_targets_bounds():
    data = {"density": 4.0, "sixteenths": 0.04, "scale": 0.93, "oa": 1.0}
    same = recommend.grid_margins({**data, "oa": 1.0}, data)
    assert same == {"density": 1.0, "sixteenths": pytest.approx(0.5), "scale": 1.0, "oa": 1.0}
    edge = {"density": 4.0 * 1.2, "sixteenths": 0.08, "scale": 0.85, "oa": 0.6}
    assert all(v == pytest.approx(0, abs=1e-4) for v in recommend.grid_margins(edge, data).values())
    assert recommend.grid_margins({**edge, "density": 4.0 / 1.2}, data)["density"] == pytest.approx(0, abs=1e-4)
    worse = recommend.grid_margins({"density": 3.0, "sixteenths": 0.12, "scale": 0.77, "oa": 0.4}, data)
    assert all(v < 0 for v in worse.values())
    # above the data's scale consistency is no better than equal to it; no OA without a representation
    assert recommend.grid_margins({**data, "scale": 0.99}, {**data, "oa": None}) == {
        "density": 1.0, "sixteenths": pytest.approx(0.5), "scale": 1.0}
    assert recommend.grid_budget(30 * 60) == pytest.approx(recommend.GRID_BUDGET_SHARE * 1800)
    assert recommend.grid_budget(5) == recommend.GRID_MIN_BUDGET_S
    assert recommend.grid_budget(10**6) == recommend.GRID_MAX_BUDGET_S


class _TableGridModel:
    """A stand-in grid generator whose rolls follow a table {(note_temperature, temperature): _roll keywords}
    (`default` elsewhere); it records the settings it was asked for and ticks a fake clock per call."""

    def __init__(self, table, default, takes=True, tick=1.0):
        self.table, self.default, self.takes, self.tick, self.calls, self.now = table, default, takes, tick, [], 0.0

    def sample_option_names(self):
        return ("num_iter", "note_temperature") if self.takes else ("num_iter",)

    def clock(self):
        return self.now

    def sample(self, n, width, temperature=1.0, seed=None, note_temperature=None):
        self.calls.append((n, width, temperature, note_temperature, seed))
        self.now += self.tick
        return _roll(width, n=n, **self.table.get((note_temperature, temperature), self.default))


def test_grid_settings_choose_both_temperatures_together_by_the_smallest_margin():
    val = _roll(64, short=4)  # 16 notes in 64 columns, a quarter of them one column long, C major
    far = {"gap": 6}  # density 0.67 of the data's: margin -1.2
    table = {
        (0.2, 1.8): {"short": 2},  # density right, in key, but twice the data's sixteenths: margin 0
        (0.3, 1.4): {"out": 1},  # density and sixteenths right, 15 of 16 notes in C major: margin 0.22
        (0.5, 1.0): {"gap": 4, "out": 1, "short": 1},  # every note a sixteenth
    }
    model = _TableGridModel(table, far)
    rec = recommend.grid_settings(model, [{"grid": val}], n=2, clock=model.clock)
    assert (rec["note_temperature"], rec["temperature"]) == (0.3, 1.4)
    assert len(rec["grid_pairs"]) == 15 and len(model.calls) == 15 and model.calls[0][2:4] == (1.4, 0.3)
    chosen = rec["grid_pairs"]["0.3/1.4"]
    assert chosen["margins"] == {"density": 1.0, "sixteenths": 0.5, "scale": pytest.approx(1 - (1 / 16) / 0.08,
                                                                                             abs=1e-4)}
    assert rec["grid_pairs"]["0.2/1.8"]["score"] == pytest.approx(0, abs=1e-4)
    assert rec["grid_data"] == {"density": 0.25, "sixteenths": 0.25, "scale": 1.0, "oa": None}
    assert all(c[0] == 2 and c[1] == 64 and c[4] == 0 for c in model.calls)  # same seed for every pair
    assert recommend.describe(rec) == "temperature 1.4, note temperature 0.3"
    assert "of 15 pairs, 2 rolls each" in recommend.explain(rec) and "sixteenth share 0.250" in recommend.explain(rec)
    # equal margins: the colder pair
    table[(0.3, 1.2)] = table[(0.3, 1.4)]
    rec = recommend.grid_settings(_TableGridModel(table, far), [{"grid": val}], n=2)
    assert (rec["note_temperature"], rec["temperature"]) == (0.3, 1.2)
    # a grid generator without note_temperature: the temperature alone, over the plain candidates
    plain = _TableGridModel({(None, 0.8): {}}, far, takes=False)
    rec = recommend.grid_settings(plain, [{"grid": val}], n=2)
    assert "note_temperature" not in rec and rec["temperature"] == 0.8
    assert sorted(c[2] for c in plain.calls) == list(recommend.GRID_PLAIN_TEMPERATURES)
    # masks cut the validation crops: the padding is no silence of the data
    padded = torch.cat([val, torch.zeros(1, 128, 64, dtype=torch.long)], dim=2)
    mask = torch.zeros(1, 128, dtype=torch.bool)
    mask[0, :64] = True
    rec = recommend.grid_settings(_TableGridModel(table, far), [{"grid": padded, "mask": mask}], n=2)
    assert rec["grid_data"]["density"] == pytest.approx(0.25)


def test_grid_settings_fit_the_time_budget_with_an_evenly_spread_sub_grid():
    val = _roll(64)
    model = _TableGridModel({}, {}, tick=1.0)  # every pair costs one second on the fake clock
    rec = recommend.grid_settings(model, [{"grid": val}], n=2, budget_s=9.5, clock=model.clock)
    assert sorted(rec["grid_pairs"]) == sorted(f"{nt:g}/{t:g}" for nt in (0.2, 0.3, 0.5) for t in (1.0, 1.4, 1.8))
    model = _TableGridModel({}, {}, tick=1.0)
    rec = recommend.grid_settings(model, [{"grid": val}], n=2, budget_s=5, clock=model.clock)
    assert sorted(rec["grid_pairs"]) == sorted(f"0.3/{t:g}" for t in recommend.GRID_TEMPERATURES)
    model = _TableGridModel({}, {}, tick=1.0)
    rec = recommend.grid_settings(model, [{"grid": val}], n=2, budget_s=0.5, clock=model.clock)
    assert list(rec["grid_pairs"]) == ["0.3/1.4"] and rec["temperature"] == 1.4 and len(model.calls) == 1


def test_grid_settings_hold_decoded_samples_against_whole_validation_pieces(chorale_paths):
    from fractalmusic.io import read_pieces
    from fractalmusic.representations.pianoroll import PianoRollRepresentation

    rep = PianoRollRepresentation()
    pieces = [torch.as_tensor(rep.encode(read_pieces(p)[0])).long() for p in chorale_paths[:6]]
    windows = torch.stack([p[:, :64] for p in pieces])

    class Model(_TableGridModel):
        def sample(self, n, width, temperature=1.0, seed=None, note_temperature=None):
            self.calls.append((n, width, temperature, note_temperature, seed))
            if (note_temperature, temperature) == (0.5, 1.8):  # the chorales themselves
                return windows[:n, :, :width].clone()
            return _roll(width, gap=2, short=1, n=n)  # a sixteenth every other column

    rec = recommend.grid_settings(Model({}, {}), [{"grid": windows[:2]}], n=4, representation=rep, pieces=pieces)
    assert (rec["note_temperature"], rec["temperature"]) == (0.5, 1.8)
    data, chorale, dots = rec["grid_data"], rec["grid_pairs"]["0.5/1.8"], rec["grid_pairs"]["0.2/1"]
    assert data["oa"] == 1.0 and 2 < data["density"] < 8 and 0.85 < data["scale"] <= 1.0  # notes per beat
    assert chorale["oa"] > dots["oa"] and dots["sixteenths"] > 0.9 and dots["margins"]["sixteenths"] < 0


def test_validation_pieces_are_every_piece_of_a_small_split_and_spread_over_a_large_one():
    from fractalmusic.data.dataset import GridWindowDataset, PieceStore

    arrays = [torch.full((128, 8 + i), i % 3, dtype=torch.long).numpy() for i in range(29)]
    got = recommend.validation_pieces(GridWindowDataset(PieceStore("grid", arrays), None, 8))
    assert [p.shape[1] for p in got] == [8 + i for i in range(29)]  # all 29, not the first 13
    got = recommend.validation_pieces(GridWindowDataset(PieceStore("grid", arrays), None, 8), limit=5)
    assert [p.shape[1] - 8 for p in got] == [0, 7, 14, 21, 28]
    assert recommend.validation_pieces(object()) is None


def test_grid_oa_is_evaluates_mean_oa():
    """The grid recommender's OA is `fmusic evaluate`'s own mean OA (one computation, metrics.report), and it moves
    when the generated set does."""
    from fractalmusic.metrics.notes import note_metrics
    from fractalmusic.metrics.report import compare_sets
    from fractalmusic.testing.corpus import tiny_pieces

    ref, gen = tiny_pieces(8, seed=0), tiny_pieces(5, seed=3)
    for p in ref + gen:
        p.abc = None  # rolls have no ABC text: only the note metrics are compared
    ref_rows = [note_metrics(p) for p in ref]
    gen_rows = [note_metrics(p) for p in gen]
    report = compare_sets(ref, gen)
    assert report["mean_oa"] is not None
    assert recommend.mean_overlap(ref_rows, gen_rows) == pytest.approx(report["mean_oa"], abs=1e-12)
    fewer = recommend.mean_overlap(ref_rows, gen_rows[:2])
    assert fewer is not None and fewer != pytest.approx(report["mean_oa"], abs=1e-9)
    assert recommend.mean_overlap(ref_rows[:1], gen_rows) is None
