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
* Grid models (generators that take `note_temperature`, the fractal ones), two settings in two passes, each
  compared with the validation rolls (crops of the training width):
  - `note_temperature` (a cell's choice between silence and sound, i.e. which pitches sound) among
    `GRID_NOTE_TEMPERATURES`, sampled at temperature 1: the one whose rolls' scale consistency (the share of
    note starts inside the best-fitting major or harmonic-minor scale, per roll, `GRID_KEY_SAMPLES` rolls) is
    closest to the validation rolls'; of candidates within `GRID_KEY_TOLERANCE` (0.04) of the closest, the warmest
    (the coldest one thins the harmony and the note density: 3.5 notes per beat against 4.6 in a 30-minute run).
    Only candidates whose rolls keep at least `GRID_KEY_MIN_DENSITY` of the validation rolls' note density take
    part (all of them when none does): a model that is unsure everywhere falls nearly silent when it samples
    cold, and a few notes in one key are no music. An undertrained model scatters notes over every pitch class
    when it samples warm; cold, it keeps the pitches it is sure of, which are mostly those of one key;
  - `temperature` (onset or sustain, and the silent-patch flags) among `GRID_TEMPERATURES` (0.8-1.8) with that note
    temperature: the coldest whose sampled note density (note starts per column, `GRID_SAMPLES` rolls) is within
    `GRID_DENSITY_TOLERANCE` (15 %, in ratio) of the validation rolls', else the one closest to it. The coldest,
    because what a warmer onset-or-sustain draw adds is mostly onsets inside held notes (a chorale MAR at 800
    steps, note temperature 0.2: 16th-note share 0.069 at 1.4, 0.11 at 1.8, docs/BENCHMARKS.md); and the 128-step
    validation crops are denser than whole chorales (5.0 note starts per beat against 4.6: the held last chords
    fall outside), so a sample a little sparser than the crops is still as dense as the pieces.
  A note starts at an onset cell and also at a sustain cell that follows silence: the piano roll decodes such an
  orphan sustain as a note of its own, and an undertrained model makes many (a note broken in two). Grid
  generators without `note_temperature` get the temperature pass alone, over `GRID_PLAIN_TEMPERATURES`.
  Sampling is the expensive part (about 60 rolls), so the trainer runs it once, at the end of training.
"""
from __future__ import annotations

import math
from typing import Any, Iterable

import torch
import torch.nn.functional as F

TEMPERATURES = tuple(round(0.5 + 0.05 * i, 2) for i in range(21))
GRID_PLAIN_TEMPERATURES = (0.6, 0.7, 0.8, 0.9, 1.0)  # grid generators without note_temperature
GRID_NOTE_TEMPERATURES = (0.15, 0.2, 0.3, 0.5, 0.7, 1.0)  # silence vs sound of a cell, chosen for the key
GRID_TEMPERATURES = (0.8, 1.0, 1.2, 1.4, 1.6, 1.8)  # onset vs sustain and silent flags, chosen for note density
GRID_SAMPLES = 4  # rolls sampled per temperature
GRID_KEY_SAMPLES = 8  # rolls sampled per note temperature
GRID_KEY_TOLERANCE = 0.04  # a cold note temperature costs notes: the warmest one near the closest
GRID_KEY_MIN_DENSITY = 0.5  # share of the validation rolls' note density a note temperature must keep
GRID_DENSITY_TOLERANCE = 0.15  # the coldest temperature whose note density is within this ratio of the data's
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


def _takes_note_temperature(generator) -> bool:
    names = getattr(generator, "sample_option_names", None)
    try:
        return callable(names) and "note_temperature" in names()
    except Exception:  # a plugin's option listing that fails: treat as absent
        return False


@torch.no_grad()
def grid_settings(generator, batches: Iterable[dict[str, Any]], n: int = GRID_SAMPLES, seed: int = 0,
                  temperatures: tuple[float, ...] | None = None, max_batches: int = 4,
                  note_temperatures: tuple[float, ...] = GRID_NOTE_TEMPERATURES,
                  key_samples: int = GRID_KEY_SAMPLES) -> dict[str, Any] | None:
    """{"temperature", "note_density": {T: density}, "data_note_density"}, and for generators that take it
    "note_temperature", "scale_consistency": {T: share}, "data_scale_consistency" (see the module docstring)."""
    total, columns, width = 0.0, 0, 0
    key_sum, key_rolls = 0.0, 0
    for i, batch in enumerate(batches):
        if i >= max_batches:
            break
        grid = batch["grid"]
        mask = batch.get("mask")
        cols = int(mask.sum()) if mask is not None else grid.shape[0] * grid.shape[2]
        total += note_density(grid, mask) * cols
        columns += cols
        width = max(width, int(grid.shape[2]))
        for b in range(grid.shape[0]):
            share = scale_consistency(grid[b:b + 1], None if mask is None else mask[b:b + 1])
            if share is not None:
                key_sum += share
                key_rolls += 1
    if not columns or total <= 0:
        return None
    data = total / columns
    width = max(16, width // 16 * 16)
    out: dict[str, Any] = {}
    options: dict[str, Any] = {}
    if _takes_note_temperature(generator) and key_rolls and note_temperatures:
        data_key = key_sum / key_rolls
        keys: dict[str, float] = {}
        densities: dict[str, float] = {}
        for nt in note_temperatures:
            rolls = torch.as_tensor(generator.sample(key_samples, width, temperature=1.0, seed=seed,
                                                     note_temperature=nt))
            share = scale_consistency(rolls)
            keys[str(nt)] = share if share is not None else 0.0
            densities[str(nt)] = note_density(rolls)
        dense = [nt for nt in note_temperatures if densities[str(nt)] >= GRID_KEY_MIN_DENSITY * data]
        dense = dense or list(note_temperatures)
        gap = {nt: abs(keys[str(nt)] - data_key) for nt in dense}
        closest = min(gap.values())
        chosen = max(nt for nt in dense if gap[nt] <= closest + GRID_KEY_TOLERANCE)
        options["note_temperature"] = chosen
        out.update(note_temperature=chosen, scale_consistency=keys, key_note_density=densities,
                   data_scale_consistency=data_key)
        temperatures = GRID_TEMPERATURES if temperatures is None else temperatures
    else:
        temperatures = GRID_PLAIN_TEMPERATURES if temperatures is None else temperatures
    got: dict[str, float] = {}
    for t in temperatures:
        rolls = torch.as_tensor(generator.sample(n, width, temperature=t, seed=seed, **options))
        got[str(t)] = note_density(rolls)

    def distance(t: float) -> float:
        d = got[str(t)]
        return abs(math.log(d / data)) if d > 0 else math.inf

    near = [t for t in temperatures if distance(t) <= math.log1p(GRID_DENSITY_TOLERANCE)]
    best = min(near) if near else min(temperatures, key=distance)
    return {"temperature": best, **out, "note_density": got, "data_note_density": data}


def explain(settings: dict[str, Any]) -> str:
    """`describe`, and for a temperature chosen for well-formed bars the score of every temperature tried."""
    text = describe(settings) or "the defaults"
    scores = settings.get("bar_scores")
    if scores:
        tried = ", ".join(f"T {t} {v:.3f}" for t, v in scores.items())
        text += (f" (well-formed bars in {settings.get('bar_samples')} sampled tunes: {tried}; calibration "
                 f"temperature {settings.get('calibration_temperature'):g})")
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
