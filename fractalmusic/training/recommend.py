"""Sampling settings recommended by the trained model itself, found cheaply on validation data.

The trainer stores the result in every checkpoint (`Checkpoint.sampling`), and `fmusic sample` uses it unless the
command line says otherwise (it prints one line saying so).

* Token models (generators with `split_batch` and `predicted_logits`, i.e. every `TokenGenerator`): on at most
  `max_tokens` validation predictions,
  - `temperature`: the calibration temperature, the T in 0.5..1.5 (steps of 0.05) whose tempered softmax gives the
    validation tokens the lowest NLL (a well-calibrated model gets 1.0);
  - `top_p`: the smallest nucleus that still holds `coverage` (99%) of the validation tokens, where a token is
    in the nucleus p when the probability of the tokens likelier than it is below p. It cuts the long tail of
    unlikely tokens that a model, short of training, scatters its mistakes over; None when that needs p > 0.995.
* Token models whose decoded pieces carry ABC text (the `abc` and `words` representations), once at the end:
  the calibration temperature is a statement about single characters, while a tune is right only when the
  lengths of its notes add up to whole bars. `bar_settings` samples `BAR_SAMPLES` tunes at the calibration
  temperature and at temperatures below it (`BAR_TEMPERATURE_STEPS`, never under `BAR_MIN_TEMPERATURE`; the same
  seed for each, with the recommended top-p), scores each set by its well-formed bars (right / judged inner bars
  pooled over the tunes, by `fractalmusic.metrics.abc`, which excuses the short bars of a pickup and its
  complement around a repeat), and recommends the highest temperature whose score is within `BAR_TOLERANCE` of
  the best one: a cooler temperature only when it buys better-formed tunes, as little cooling as that needs.
  Pooled, as a listener (and issue 12's music21 check) counts them: the typical failure of a warm sample is a
  long tune that forgets its metre half-way (M:3/4 over bars of 2/4) and runs to the length limit, and its 60
  wrong bars weigh as 60 bars, not as one tune. Measured on the README job's checkpoint (docs/BENCHMARKS.md,
  folk): at T 0.9, 0.8 and 0.7 the music21 bar share of 60 tunes was 0.82-0.91, 0.87-0.90 and 0.89-0.90 over
  four seeds; at 0.7 the wrong bars are nearly all pickup pairs, as in the corpus (0.89 on the same check). At
  0.6 (0.86-0.87) the tunes repeat themselves more and write more pickup bars than the corpus (13 % of the bars
  against 10 %), which our checker excuses but a listener and music21 do not: the candidates stop at 0.7.
* Grid models (the fractal ones), once at the end: `temperature` (onset or sustain, and the silent-patch flags)
  and, for generators that take it, `note_temperature` (a cell's choice between silence and sound: which pitches
  sound), chosen together. Every pair of `GRID_NOTE_TEMPERATURES` x `GRID_TEMPERATURES` (generators without
  `note_temperature`: `GRID_PLAIN_TEMPERATURES` alone) samples `GRID_SAMPLES` rolls of the validation width (the
  same seed for each pair), and each set is held against the whole validation pieces (the trainer passes up to
  `GRID_MAX_PIECES` of them; else the validation crops, cut to their masks) on what issue 12's targets measure.
  With the representation at hand (the trainer passes it) both sides are decoded and measured as
  `fmusic evaluate` measures pieces, per piece and then averaged: notes per beat, the share of notes in the 16th
  class of the note-length histogram, scale consistency, and the mean OA of the decoded samples against the
  decoded pieces over every note metric of `fractalmusic.metrics.notes`; without it, on the grids (`roll_measures`:
  note starts per column, `sixteenth_share`, `scale_consistency`; no OA). Each measure becomes a margin that is 1
  where the samples equal the data and 0 at the edge of what the target allows:
  - note density: 1 - |log(sampled / data)| / log(1 + `GRID_DENSITY_TOLERANCE`) (20 %);
  - sixteenth-note share: 1 - sampled / (`GRID_SIXTEENTH_RATIO` (2) x data);
  - scale consistency: 1 - (data - sampled) / `GRID_SCALE_DROP` (0.08: the target's 0.85 against the chorales'
    0.93), 1 at or above the data;
  - mean OA: (OA - `GRID_MIN_OA`) / (1 - `GRID_MIN_OA`) (0.6).
  A grid holds no unisons (two voices on one pitch are one note), so the decoded validation pieces have fewer
  notes per beat than the files they came from (the chorales: 4.33 against 4.59, 6 % fewer), and a density
  margin measured here is that much kinder than the targets' check against the files.
  The recommended pair is the one whose smallest margin is the largest (the pair furthest inside every bound at
  once: a warm onset draw buys notes with sixteenths, a warm note draw buys notes with out-of-key pitches, and
  neither temperature can be chosen alone); of equal ones the colder. A note starts at an onset cell and also
  at a sustain cell that follows silence: the piano roll decodes such an orphan sustain as a note of its own, and
  an undertrained model makes many (a note broken in two).
  Sampling is the expensive part, so the trainer runs it once, at the end of training, within a time budget
  (`grid_budget`: `GRID_BUDGET_SHARE` of the training time, between `GRID_MIN_BUDGET_S` and `GRID_MAX_BUDGET_S`):
  the middle pair is sampled first and timed, and when the whole grid would not fit in what is left, an evenly
  spaced sub-grid that does is sampled (a short test run samples one or a few pairs, a 30-minute run all 15).
"""
from __future__ import annotations

import math
import time
from typing import Any, Iterable

import numpy as np
import torch
import torch.nn.functional as F

TEMPERATURES = tuple(round(0.5 + 0.05 * i, 2) for i in range(21))
GRID_PLAIN_TEMPERATURES = (0.6, 0.7, 0.8, 0.9, 1.0)  # grid generators without note_temperature
GRID_NOTE_TEMPERATURES = (0.2, 0.3, 0.5)  # silence vs sound of a cell (0.15 and >= 0.7 never won on the chorales)
GRID_TEMPERATURES = (1.0, 1.2, 1.4, 1.6, 1.8)  # onset vs sustain and the silent-patch flags
GRID_SAMPLES = 8  # rolls sampled per pair of temperatures
GRID_DENSITY_TOLERANCE = 0.2  # note density: margin 0 at this ratio above or below the data's
GRID_SIXTEENTH_RATIO = 2.0  # sixteenth-note share: margin 0 at this multiple of the data's
GRID_SCALE_DROP = 0.08  # scale consistency: margin 0 this far under the data's
GRID_MIN_OA = 0.6  # mean OA against the validation rolls: margin 0 here
GRID_BUDGET_SHARE = 0.06  # of the training time, for sampling the pairs at the end
GRID_MIN_BUDGET_S, GRID_MAX_BUDGET_S = 2.0, 150.0
GRID_MAX_PIECES = 64  # whole validation pieces the samples are held against
COVERAGE = 0.99
SUSTAIN, ONSET_MIN = 1, 2  # pianoroll cells: 0 silence, 1 sustain, 2.. onsets


def is_token_model(generator) -> bool:
    return hasattr(generator, "split_batch") and hasattr(generator, "predicted_logits")


@torch.no_grad()
def token_logits(generator, batches: Iterable[dict[str, Any]], max_tokens: int = 20000,
                 ) -> tuple[torch.Tensor, torch.Tensor] | None:
    """(logits [N, V], targets [N]) of up to `max_tokens` teacher-forced validation predictions."""
    logits, targets, count = [], [], 0
    for batch in batches:
        inputs, tgt, keep = generator.split_batch(batch)
        out = generator.predicted_logits(inputs, keep, teacher_forced=True).float()
        tgt = tgt[keep]
        logits.append(out)
        targets.append(tgt)
        count += int(tgt.numel())
        if count >= max_tokens:
            break
    if not count:
        return None
    return torch.cat(logits)[:max_tokens], torch.cat(targets)[:max_tokens]


def token_settings(logits: torch.Tensor, targets: torch.Tensor, coverage: float = COVERAGE) -> dict[str, Any]:
    """{"temperature", "top_p", "val_nll", "tokens"} from validation logits (see the module docstring)."""
    logits = logits.float()
    nll = [float(F.cross_entropy(logits / t, targets)) for t in TEMPERATURES]
    best = min(range(len(TEMPERATURES)), key=lambda i: nll[i])
    temperature = TEMPERATURES[best]
    probs = torch.softmax(logits / temperature, dim=-1)
    p_true = probs.gather(1, targets[:, None])
    above = (probs * (probs > p_true)).sum(dim=1)  # mass of the tokens likelier than the true one
    need = float(torch.quantile(above, coverage))
    top_p = math.ceil((need + 1e-6) * 100) / 100  # the nucleus p holds a token when `above` < p
    return {
        "temperature": temperature,
        "top_p": top_p if top_p <= 0.995 else None,
        "val_nll": nll[best],
        "tokens": int(targets.numel()),
    }


BAR_TEMPERATURE_STEPS = (0.0, 0.1, 0.2, 0.3, 0.4)  # below the calibration temperature
BAR_MIN_TEMPERATURE = 0.7  # colder: more pickup bars than the corpus writes, and repetition (BENCHMARKS)
BAR_TOLERANCE = 0.01  # of pooled bar share: 0.03 let T 0.9 through at 0.975 against 0.989 (music21: 0.82-0.91)
BAR_SAMPLES = 96
BAR_LENGTH = 1000  # new tokens per sampled tune (fmusic sample's default length)


def bar_score(pieces) -> tuple[float, dict[str, int]] | None:
    """(score, counts) over the pieces with ABC text: right / judged inner bars (bars whose length is the bar of
    their `M:`, pickups excused), pooled over the tunes; None when no piece has ABC text or nothing can be
    judged."""
    from fractalmusic.metrics.abc import check_bar_lengths

    judged = right = texts = ended = 0
    for piece in pieces:
        text = getattr(piece, "abc", None)
        if not text:
            continue
        texts += 1
        ended += bool(piece.meta.get("ended", True))
        check = check_bar_lengths(text)
        judged += check.judged
        right += check.right
    if not texts or not judged:
        return None
    return right / judged, {"tunes": texts, "ended": ended, "judged": judged, "right": right}


@torch.no_grad()
def bar_settings(generator, representation, settings: dict[str, Any], n: int = BAR_SAMPLES,
                 length: int = BAR_LENGTH, seed: int = 0) -> dict[str, Any] | None:
    """`settings` (from `token_settings`) with the temperature chosen for well-formed bars (see the module
    docstring), and the scores per temperature under "bar_scores"; None when the samples carry no ABC text."""
    base = float(settings.get("temperature") or 1.0)
    candidates = sorted({round(base - d, 2) for d in BAR_TEMPERATURE_STEPS if base - d >= BAR_MIN_TEMPERATURE - 1e-9}
                        | {base}, reverse=True)
    scores: dict[str, float] = {}
    for t in candidates:
        arrays = generator.sample(n, length, temperature=t, top_p=settings.get("top_p"), seed=seed)
        got = bar_score([representation.decode(a) for a in arrays])
        if got is None:
            return None
        scores[f"{t:g}"] = round(got[0], 4)
    best = max(scores.values())
    chosen = next(t for t in candidates if scores[f"{t:g}"] >= best - BAR_TOLERANCE)
    out = dict(settings)
    out.update(temperature=chosen, calibration_temperature=base, bar_scores=scores, bar_samples=n)
    return out


def note_starts(grids: torch.Tensor) -> torch.Tensor:
    """Bool [B, H, W]: where a note starts in [B, H, W] pianoroll grids, as the representation decodes them (an
    onset cell, or a sustain cell whose left neighbour is silent or outside the grid)."""
    onset = grids >= ONSET_MIN
    before = F.pad(grids[..., :-1], (1, 0))  # the cell one step earlier; silence before the first column
    return onset | ((grids == SUSTAIN) & (before == 0))


def note_density(grids: torch.Tensor, mask: torch.Tensor | None = None) -> float:
    """Note starts per column of [B, H, W] grids (only columns where `mask` [B, W] is True)."""
    starts = note_starts(grids).sum(dim=1).float()  # [B, W]
    if mask is not None:
        mask = mask.to(torch.bool)
        return float(starts[mask].sum()) / max(1, int(mask.sum()))
    return float(starts.sum()) / max(1, starts.numel())


def _scale_masks() -> torch.Tensor:
    from fractalmusic.metrics.notes import SCALE_MASKS

    return torch.as_tensor(SCALE_MASKS, dtype=torch.float32)  # [24, 12]


def scale_consistency(grids: torch.Tensor, mask: torch.Tensor | None = None) -> float | None:
    """Mean over the rolls of [B, H, W] grids (only columns where `mask` [B, W] is True) that hold a note of the
    share of their note starts whose pitch class (row mod 12) lies in the roll's best-fitting major or
    harmonic-minor scale (as `fractalmusic.metrics.notes.scale_consistency` counts notes); None without notes."""
    starts = note_starts(grids)
    if mask is not None:
        starts = starts & mask.to(torch.bool)[:, None, :]
    per_row = starts.sum(dim=2).float()  # [B, H]
    h = per_row.shape[1]
    classes = torch.zeros(per_row.shape[0], 12)
    classes.index_add_(1, torch.arange(h) % 12, per_row.cpu())
    notes = classes.sum(dim=1)
    inside = (classes @ _scale_masks().T).max(dim=1).values  # [B]
    keep = notes > 0
    if not bool(keep.any()):
        return None
    return float((inside[keep] / notes[keep]).mean())


def sixteenth_share(grids: torch.Tensor, mask: torch.Tensor | None = None) -> float | None:
    """Share of the notes of [B, H, W] grids that last one column (a sixteenth at 4 steps per beat), among the
    notes that start after the first column and end before the last one (only columns where `mask` [B, W] is
    True): a note cut by a crop's edge is no short note. None without such notes."""
    cells = grids
    starts = note_starts(cells)
    held_next = F.pad(cells[..., 1:] == SUSTAIN, (0, 1))  # the note goes on in the next column
    inside = torch.ones_like(starts)
    inside[..., 0] = False
    inside[..., -1] = False
    if mask is not None:
        m = mask.to(torch.bool)
        nxt = F.pad(m[:, 1:], (0, 1))
        prv = F.pad(m[:, :-1], (1, 0))
        inside = inside & (m & nxt & prv)[:, None, :]
    # a note is judged when it starts inside; it is short when the next column does not hold it (and that next
    # column is inside the roll: a note starting in the second-to-last column is short only if it stops there)
    judged = starts & inside
    notes = int(judged.sum())
    if not notes:
        return None
    return int((judged & ~held_next).sum()) / notes


def _takes_note_temperature(generator) -> bool:
    names = getattr(generator, "sample_option_names", None)
    try:
        return callable(names) and "note_temperature" in names()
    except Exception:  # a plugin's option listing that fails: treat as absent
        return False


def grid_budget(train_seconds: float) -> float:
    """Seconds the end-of-training grid recommendation may spend sampling (see the module docstring)."""
    return min(GRID_MAX_BUDGET_S, max(GRID_MIN_BUDGET_S, GRID_BUDGET_SHARE * float(train_seconds)))


def _piece_rows(representation, grids: torch.Tensor, widths: list[int] | None = None) -> list[dict[str, Any]]:
    """Note metrics of the decoded rolls (each cut to its width); [] when the representation decodes no Piece."""
    from fractalmusic.metrics.notes import note_metrics
    from fractalmusic.piece import Piece

    rows = []
    for b in range(grids.shape[0]):
        w = grids.shape[2] if widths is None else widths[b]
        piece = representation.decode(grids[b, :, :w].cpu().numpy())
        if not isinstance(piece, Piece):
            return []
        if len(piece.notes):
            rows.append(note_metrics(piece))
    return rows


def mean_overlap(reference: list[dict[str, Any]], generated: list[dict[str, Any]]) -> float | None:
    """Mean OA over the note metrics of two sets of `note_metrics` rows, computed by `fmusic evaluate`'s own
    `metric_overlaps` (no copies are excused: these rolls are never the reference's); None when none can be
    computed."""
    from fractalmusic.metrics.report import mean_of_overlaps, metric_overlaps

    if len(reference) < 2 or not generated:
        return None
    return mean_of_overlaps(metric_overlaps(reference, generated))


def _even(values: tuple, k: int) -> tuple:
    """k evenly spaced members of `values` (its ends first; the middle one for k = 1)."""
    if k >= len(values):
        return tuple(values)
    if k == 1:
        return (values[(len(values) - 1) // 2],)
    return tuple(values[i] for i in sorted({round(j * (len(values) - 1) / (k - 1)) for j in range(k)}))


def grid_margins(got: dict[str, float | None], data: dict[str, float | None]) -> dict[str, float]:
    """The margins of one sampled set against the data (see the module docstring); 1 where they are equal,
    below 0 outside a target's bound."""
    out: dict[str, float] = {}
    d = got.get("density") or 0.0
    out["density"] = (1 - abs(math.log(d / data["density"])) / math.log1p(GRID_DENSITY_TOLERANCE)) if d > 0 \
        else -math.inf
    if data.get("sixteenths") is not None:
        bound = GRID_SIXTEENTH_RATIO * max(data["sixteenths"], 0.01)
        out["sixteenths"] = 1 - (got["sixteenths"] if got.get("sixteenths") is not None else 1.0) / bound
    if data.get("scale") is not None:
        k = got.get("scale")
        out["scale"] = 1 - max(0.0, data["scale"] - k) / GRID_SCALE_DROP if k is not None else -math.inf
    if data.get("oa") is not None:  # the data's own OA is 1 by definition; a flag that OA is measured
        oa = got.get("oa")
        out["oa"] = (oa - GRID_MIN_OA) / (1 - GRID_MIN_OA) if oa is not None else -math.inf
    return {k: round(max(-10.0, min(1.0, v)), 4) for k, v in out.items()}  # finite: stored as JSON


def roll_measures(rolls: list[torch.Tensor]) -> dict[str, float | None]:
    """What the targets measure, per roll and then averaged over the rolls ([H, W] grids, whole pieces or
    samples), as `fmusic evaluate` averages over pieces: "density" (note starts per column), "sixteenths"
    (`sixteenth_share`, over the rolls that have judged notes), "scale" (`scale_consistency`)."""
    dens, sixteenths, scales = [], [], []
    for roll in rolls:
        roll = roll[None]
        dens.append(note_density(roll))
        for values, got in ((sixteenths, sixteenth_share(roll)), (scales, scale_consistency(roll))):
            if got is not None:
                values.append(got)
    return {"density": float(np.mean(dens)) if dens else 0.0,
            "sixteenths": float(np.mean(sixteenths)) if sixteenths else None,
            "scale": float(np.mean(scales)) if scales else None}


def row_measures(rows: list[dict[str, Any]]) -> dict[str, float | None]:
    """The measures of `roll_measures` as `fmusic evaluate` computes them, from `note_metrics` rows of decoded
    pieces (means over the pieces): "density" is then notes per beat (to the last note's end), "sixteenths" the
    share of notes in the 16th class of the note-length histogram."""
    from fractalmusic.metrics.notes import NOTE_LENGTH_LABELS

    def mean(values) -> float | None:
        values = np.asarray([v for v in values if v is not None and math.isfinite(v)], dtype=np.float64)
        return float(values.mean()) if len(values) else None

    sixteenth = NOTE_LENGTH_LABELS.index("16th")
    return {"density": mean(r["notes_per_beat"] for r in rows) or 0.0,
            "sixteenths": mean(r["note_length_hist"][sixteenth] for r in rows),
            "scale": mean(r["scale_consistency"] for r in rows)}


def validation_pieces(val_data, limit: int = GRID_MAX_PIECES) -> list[torch.Tensor] | None:
    """Whole validation grids ([H, L] each, up to `limit`, evenly spread) of a dataset with a grid `store`
    (`fractalmusic.data.dataset.PieceStore`); None for any other."""
    store = getattr(val_data, "store", None)
    if store is None or getattr(store, "kind", None) != "grid" or not len(store):
        return None
    k = min(limit, len(store))
    pick = sorted({round(i * (len(store) - 1) / max(1, k - 1)) for i in range(k)})  # all of them when k = len
    return [torch.as_tensor(np.asarray(store[i], dtype=np.int64)) for i in pick]


@torch.no_grad()
def grid_settings(generator, batches: Iterable[dict[str, Any]], n: int = GRID_SAMPLES, seed: int = 0,
                  temperatures: tuple[float, ...] | None = None, max_batches: int = 4,
                  note_temperatures: tuple[float, ...] = GRID_NOTE_TEMPERATURES, representation=None,
                  pieces: list[torch.Tensor] | None = None, budget_s: float | None = None,
                  clock=time.perf_counter) -> dict[str, Any] | None:
    """{"temperature", "note_temperature" (generators that take it), "grid_pairs": {"NT/T": {measures and
    margins}}, "grid_data": the validation data's measures, "grid_samples", "grid_seconds"} (see the module
    docstring). The batches give the sampling width (and the data, cut to their masks, without `pieces`: the
    whole validation pieces, [H, L] grids); `budget_s` None: no limit. None when the data hold no notes."""
    rolls: list[torch.Tensor] = []
    width = 0
    for i, batch in enumerate(batches):
        if i >= max_batches:
            break
        grid = batch["grid"].cpu()
        mask = batch.get("mask")
        width = max(width, int(grid.shape[2]))
        for b in range(grid.shape[0]):
            w = int(grid.shape[2]) if mask is None else int(mask[b].sum())
            if w:
                rolls.append(grid[b, :, :w])
    if pieces:
        rolls = [torch.as_tensor(p).long().cpu() for p in pieces if p.shape[-1]]
    if not rolls or not width:
        return None
    ref_rows: list[dict[str, Any]] = []
    if representation is not None:
        for roll in rolls:
            ref_rows += _piece_rows(representation, roll[None])
    data: dict[str, Any] = row_measures(ref_rows) if len(ref_rows) >= 2 else roll_measures(rolls)
    if not data["density"] or data["density"] <= 0:
        return None
    data["oa"] = 1.0 if len(ref_rows) >= 2 else None
    width = max(16, width // 16 * 16)
    if _takes_note_temperature(generator) and note_temperatures:
        nts: tuple = tuple(note_temperatures)
        ts = GRID_TEMPERATURES if temperatures is None else tuple(temperatures)
    else:
        nts = (None,)
        ts = GRID_PLAIN_TEMPERATURES if temperatures is None else tuple(temperatures)

    def key(nt, t) -> str:
        return f"{t:g}" if nt is None else f"{nt:g}/{t:g}"

    pairs: dict[str, dict[str, Any]] = {}

    def measure(nt, t) -> None:
        options = {} if nt is None else {"note_temperature": nt}
        sampled = torch.as_tensor(generator.sample(n, width, temperature=t, seed=seed, **options)).cpu()
        if len(ref_rows) >= 2:
            rows = _piece_rows(representation, sampled)
            got: dict[str, Any] = row_measures(rows)
            got["oa"] = mean_overlap(ref_rows, rows)
        else:
            got = roll_measures(list(sampled))
            got["oa"] = None
        margins = grid_margins(got, data)
        pairs[key(nt, t)] = {"note_temperature": nt, "temperature": t, **got, "margins": margins,
                             "score": min(margins.values())}

    start = clock()
    first = (_even(nts, 1)[0], _even(ts, 1)[0])  # the middle pair, timed
    measure(*first)
    cost = max(clock() - start, 1e-6)
    todo_nts, todo_ts = nts, ts
    if budget_s is not None:
        room = int(max(0.0, budget_s - cost) // cost) + 1  # pairs the budget holds, the first one included
        if room < len(nts) * len(ts):
            shapes = [(q * m, m, q) for q in range(1, len(nts) + 1) for m in range(1, len(ts) + 1) if q * m <= room]
            _, m, q = max(shapes)  # the largest sub-grid; of equal ones the one with more temperatures
            todo_nts, todo_ts = _even(nts, q), _even(ts, m)
    for nt in todo_nts:
        for t in todo_ts:
            if key(nt, t) not in pairs:
                measure(nt, t)
    # the largest smallest margin; of equal ones the colder (note temperature first, then temperature)
    best = max(pairs.values(), key=lambda p: (p["score"], -(p["note_temperature"] or 0.0), -p["temperature"]))
    out: dict[str, Any] = {"temperature": best["temperature"]}
    if best["note_temperature"] is not None:
        out["note_temperature"] = best["note_temperature"]
    out.update(grid_pairs=pairs, grid_data=data, grid_samples=n, grid_seconds=round(clock() - start, 1))
    return out


def explain(settings: dict[str, Any]) -> str:
    """`describe`, and for a temperature chosen for well-formed bars the score of every temperature tried; for
    grid settings what the chosen pair measured against the validation rolls."""
    text = describe(settings) or "the defaults"
    scores = settings.get("bar_scores")
    if scores:
        tried = ", ".join(f"T {t} {v:.3f}" for t, v in scores.items())
        text += (f" (well-formed bars in {settings.get('bar_samples')} sampled tunes: {tried}; calibration "
                 f"temperature {settings.get('calibration_temperature'):g})")
    pairs = settings.get("grid_pairs")
    if pairs:
        key = f"{settings['temperature']:g}" if settings.get("note_temperature") is None else \
            f"{settings['note_temperature']:g}/{settings['temperature']:g}"
        chosen = pairs.get(key, {})
        data = settings.get("grid_data", {})

        def show(name: str, fmt: str) -> str:
            got, ref = chosen.get(name), data.get(name)
            return "?" if got is None else (format(got, fmt) + ("" if ref is None or name == "oa"
                                                                 else f" (data {format(ref, fmt)})"))

        text += (f" (of {len(pairs)} pairs, {settings.get('grid_samples')} rolls each, in "
                 f"{settings.get('grid_seconds')} s: the largest smallest margin, {chosen.get('score', 0):.2f}; "
                 f"note density {show('density', '.3f')}, sixteenth share {show('sixteenths', '.3f')}, "
                 f"scale consistency {show('scale', '.3f')}, mean OA {show('oa', '.3f')})")
    return text


def describe(settings: dict[str, Any]) -> str:
    """'temperature 0.95, top-p 0.97' for the settings a sampler would apply."""
    parts = []
    if settings.get("temperature") is not None:
        parts.append(f"temperature {settings['temperature']:g}")
    if settings.get("top_p") is not None:
        parts.append(f"top-p {settings['top_p']:g}")
    if settings.get("note_temperature") is not None:
        parts.append(f"note temperature {settings['note_temperature']:g}")
    return ", ".join(parts)
