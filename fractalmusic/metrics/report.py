"""Compare a set of generated pieces with a reference set, mgeval-style.

`load_set(spec)` reads a corpus (folder, list file, music file or built-in name, resolved like `--data`);
`piece_metrics(piece)` computes every metric of one piece (note-level, plus the ABC checks for ABC-born pieces);
`compare_sets(reference, generated)` gives, per metric, mean and standard deviation in each set and the overlapping
area (OA) of the reference's intra-set distances with the inter-set distances (see `fractalmusic.metrics.overlap`),
and, when both sets are ABC, the memorisation rates of the generated tunes against the reference tunes.
`format_table`, `to_json` and `save_png` present the result.
"""
from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from fractalmusic.errors import DataError
from fractalmusic.metrics import abc as abc_metrics_mod
from fractalmusic.metrics.notes import METRIC_INFO, NOTE_LENGTH_LABELS, note_metrics
from fractalmusic.metrics.overlap import metric_overlap, same_piece_matrix
from fractalmusic.piece import Piece

ALL_METRIC_INFO: dict[str, tuple[str, str]] = {**METRIC_INFO, **abc_metrics_mod.ABC_METRIC_INFO}
VECTOR_METRICS = {"note_length_hist": NOTE_LENGTH_LABELS}


@dataclass
class PieceSet:
    """Pieces read from one source, with what could not be read."""

    source: str
    pieces: list[Piece]
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (file, reason)
    total: int = 0  # pieces read before any subsetting
    all_abc: list[str] | None = None  # ABC texts of every piece read, before subsetting (memorisation checks)

    @property
    def abc_texts(self) -> list[str]:
        if self.all_abc is not None:
            return list(self.all_abc)
        return [p.abc for p in self.pieces if p.abc]


def resolve_set(spec: str | Path):
    """The corpus a set spec names (DataError, with a suggestion, when it names nothing)."""
    from fractalmusic.data.corpora import resolve_corpus

    return resolve_corpus(str(spec))


_FORMAT_PRIORITY = {".abc": 0, ".mid": 1, ".midi": 1, ".musicxml": 2, ".xml": 2, ".mxl": 2, ".krn": 3}


def one_format_per_stem(files: list[Path]) -> list[Path]:
    """A folder of samples holds each piece in several formats (sample_000.abc, sample_000.mid): read one of them,
    ABC first (it keeps the most), then MIDI, then MusicXML, then kern."""
    best: dict[tuple[Path, str], Path] = {}
    for f in files:
        key = (f.parent, f.stem)
        have = best.get(key)
        if have is None or _FORMAT_PRIORITY.get(f.suffix.lower(), 9) < _FORMAT_PRIORITY.get(have.suffix.lower(), 9):
            best[key] = f
    keep = set(best.values())
    return [f for f in files if f in keep]


def _tune_body(text: str) -> str:
    return "\n".join(line.rstrip() for line in text.strip().splitlines() if not line.startswith("X:"))


def drop_rewritten_tunes(pieces: list[Piece]) -> list[Piece]:
    """Drop an ABC tune whose text (apart from its X: number) already came from another file: the book
    `samples.abc` that `fmusic sample` writes beside sample_000.abc ... holds the same tunes again."""
    seen: dict[str, str] = {}
    out = []
    for p in pieces:
        if p.abc:
            body = _tune_body(p.abc)
            origin = (p.source or "").split("#")[0]
            if body in seen and seen[body] != origin:
                continue
            seen.setdefault(body, origin)
        out.append(p)
    return out


def load_set(
    spec,
    max_pieces: int | None = None,
    seed: int = 0,
    cache_dir: str | Path | None = None,
    use_cache: bool = True,
    workers: int = 0,
    log=None,
) -> PieceSet:
    """Read the pieces of a corpus spec (a folder, list file, music file or built-in name, or a resolved Corpus),
    through the data layer's parsed-piece cache. ABC tunes keep their text; their notes are parsed later, per piece.

    With `max_pieces`, a seeded random subset of that many pieces is kept (in corpus order); files holding one
    piece each (MIDI, MusicXML) are subset before they are read, so a large reference corpus costs only what is
    used. The ABC texts of every tune read stay in `all_abc`, so that memorisation is checked against all of them.
    """
    import dataclasses

    from fractalmusic.data.cache import Cache
    from fractalmusic.data.config import DataConfig
    from fractalmusic.data.prepare import read_corpus

    corpus = resolve_set(spec) if isinstance(spec, (str, Path)) else spec
    files = one_format_per_stem(list(corpus.files))
    if len(files) != len(corpus.files):
        corpus = dataclasses.replace(corpus, files=files)
    single = [f for f in files if f.suffix.lower() != ".abc"]
    unread = 0
    rng = np.random.default_rng(seed)
    if max_pieces is not None and len(single) > max_pieces:
        chosen = set(rng.choice(len(single), size=max_pieces, replace=False).tolist())
        keep = {f for i, f in enumerate(single) if i in chosen}
        unread = len(single) - max_pieces
        files = [f for f in files if f.suffix.lower() == ".abc" or f in keep]
        corpus = dataclasses.replace(corpus, files=files)
    if use_cache:
        cache = Cache(cache_dir if cache_dir is not None else DataConfig().resolved_cache_dir())
    else:
        cache = Cache(None)
    read = read_corpus(corpus, notes=False, cache=cache, workers=workers, log=log)
    pieces = drop_rewritten_tunes([ref.file.pieces(cache, False)[ref.index] for ref in read.refs])
    for entry in read.files:
        entry.release()
    skipped = [(str(a), str(b)) for a, b in read.skipped_files + read.skipped_pieces]
    source = str(corpus.spec)
    if not pieces:
        first = f" (first: {skipped[0][0]}: {skipped[0][1]})" if skipped else ""
        raise DataError(f"{source}: no readable pieces{first}")
    total = len(pieces) + unread
    all_abc = [p.abc for p in pieces if p.abc]
    if max_pieces is not None and len(pieces) > max_pieces:
        keep_idx = np.sort(rng.choice(len(pieces), size=max_pieces, replace=False))
        pieces = [pieces[i] for i in keep_idx]
    return PieceSet(source, pieces, skipped, total, all_abc)


def fingerprint(piece: Piece) -> str:
    """Content hash of a piece's notes and ABC text (equal for the same piece read twice)."""
    h = hashlib.sha1()
    if piece.abc:
        h.update(abc_metrics_mod.normalised_body(piece.abc).encode())
    else:
        notes = np.sort(piece.notes, order=["onset", "pitch", "duration"])
        h.update(np.ascontiguousarray(notes).tobytes())
    return h.hexdigest()


def piece_metrics(piece: Piece) -> dict[str, Any]:
    """Every metric of one piece. ABC-born pieces (with `abc` text) are parsed with music21 when they have no notes
    yet; the parse result is the `parse_ok` metric."""
    out: dict[str, Any] = {}
    if piece.abc:
        from fractalmusic.io.abc import abc_parse_text

        text = abc_parse_text(piece)  # with the fields the tune inherits from its book's header
        ok = True
        if not len(piece.notes):
            from fractalmusic.io import ensure_notes

            try:
                piece = ensure_notes(piece)
            except Exception:  # any music21 failure on generated text is a failed parse, not a crash
                ok = False
            ok = ok and len(piece.notes) > 0
        out.update(abc_metrics_mod.abc_metrics(text, parsed=ok))
        out["playable"] = float(ok and len(piece.notes) >= abc_metrics_mod.PLAYABLE_MIN_NOTES)
    out.update(note_metrics(piece))
    return out


def set_metrics(pieces: Sequence[Piece], progress: bool = False, desc: str = "") -> list[dict[str, Any]]:
    from tqdm import tqdm

    return [piece_metrics(p) for p in tqdm(pieces, desc=desc, disable=not progress, leave=False)]


def _stack(rows: list[dict[str, Any]], name: str) -> np.ndarray | None:
    """Per-piece values of one metric: 1-D for scalars, 2-D for vectors; None when no piece has the metric."""
    if not any(name in r for r in rows):
        return None
    if name in VECTOR_METRICS:
        width = len(VECTOR_METRICS[name])
        return np.array([r.get(name, np.full(width, np.nan)) for r in rows], dtype=np.float64).reshape(-1, width)
    return np.array([r.get(name, np.nan) for r in rows], dtype=np.float64)


def _summary(values: np.ndarray | None) -> dict[str, Any]:
    if values is None:
        return {"n": 0, "mean": None, "std": None}
    if values.ndim == 2:
        good = values[~np.isnan(values).any(axis=1)]
        if not len(good):
            return {"n": 0, "mean": None, "std": None}
        return {"n": int(len(good)), "mean": good.mean(axis=0).tolist(), "std": good.std(axis=0).tolist()}
    good = values[~np.isnan(values)]
    if not len(good):
        return {"n": 0, "mean": None, "std": None}
    return {"n": int(len(good)), "mean": float(good.mean()), "std": float(good.std())}


def _finite(x: float) -> float | None:
    return None if x is None or (isinstance(x, float) and math.isnan(x)) else float(x)


def metric_overlaps(
    reference_rows: list[dict[str, Any]],
    generated_rows: list[dict[str, Any]],
    same: np.ndarray | None = None,
) -> dict[str, float | None]:
    """The OA of every metric that both sets of `piece_metrics` rows hold (None where it cannot be computed),
    in `ALL_METRIC_INFO`'s order; `same` marks reference and generated rows that are one piece (excused).
    `compare_sets` reports these, and their mean is its `mean_oa`."""
    out: dict[str, float | None] = {}
    for name in ALL_METRIC_INFO:
        r, g = _stack(reference_rows, name), _stack(generated_rows, name)
        if r is not None and g is not None:
            oa, _, _ = metric_overlap(r, g, same)
            out[name] = _finite(oa)
    return out


def mean_of_overlaps(overlaps: dict[str, float | None]) -> float | None:
    """Mean OA over the metrics that have one (None when none has)."""
    oas = [oa for oa in overlaps.values() if oa is not None]
    return float(np.mean(oas)) if oas else None


def compare_sets(
    reference: PieceSet | Sequence[Piece],
    generated: PieceSet | Sequence[Piece],
    memorisation_threshold: float = abc_metrics_mod.NEAR_COPY_THRESHOLD,
    reference_abc: Sequence[str] | None = None,
    progress: bool = False,
) -> dict[str, Any]:
    """The full comparison as a JSON-able dict (NaN written as null).

    `reference_abc` (default: the reference set's ABC texts) is what generated tunes are checked against for
    memorisation; pass the whole training corpus here when `reference` is only a subset of it.
    """
    ref = reference if isinstance(reference, PieceSet) else PieceSet("reference", list(reference))
    gen = generated if isinstance(generated, PieceSet) else PieceSet("generated", list(generated))
    if len(ref.pieces) < 2:
        raise DataError(f"{ref.source}: a reference set needs at least 2 pieces, not {len(ref.pieces)}")
    if not gen.pieces:
        raise DataError(f"{gen.source}: no generated pieces to evaluate")
    ref_rows = set_metrics(ref.pieces, progress, "reference")
    gen_rows = set_metrics(gen.pieces, progress, "generated")
    same = same_piece_matrix([fingerprint(p) for p in ref.pieces], [fingerprint(p) for p in gen.pieces])

    overlaps = metric_overlaps(ref_rows, gen_rows, same)
    metrics: dict[str, Any] = {}
    for name, (unit, definition) in ALL_METRIC_INFO.items():
        r, g = _stack(ref_rows, name), _stack(gen_rows, name)
        if r is None and g is None:
            continue
        entry: dict[str, Any] = {
            "unit": unit,
            "definition": definition,
            "kind": "histogram" if name in VECTOR_METRICS else "scalar",
            "reference": _summary(r),
            "generated": _summary(g),
            "oa": overlaps.get(name),
        }
        if name in VECTOR_METRICS:
            entry["classes"] = list(VECTOR_METRICS[name])
        metrics[name] = entry

    report: dict[str, Any] = {
        "reference": {"source": ref.source, "pieces": len(ref.pieces), "read": ref.total or len(ref.pieces),
                      "skipped": len(ref.skipped)},
        "generated": {"source": gen.source, "pieces": len(gen.pieces), "read": gen.total or len(gen.pieces),
                      "skipped": len(gen.skipped)},
        "metrics": metrics,
        "mean_oa": mean_of_overlaps(overlaps),
        "exact_copies": int(same.any(axis=0).sum()),
    }
    gen_abc = gen.abc_texts
    ref_abc = list(reference_abc) if reference_abc is not None else ref.abc_texts
    if gen_abc and ref_abc:
        mem = abc_metrics_mod.memorisation(gen_abc, ref_abc, threshold=memorisation_threshold)
        report["memorisation"] = {k: _finite(v) if isinstance(v, float) else v for k, v in mem.items()
                                  if k not in ("best_similarity", "best_match")}
        report["memorisation"]["reference_tunes"] = len(ref_abc)
    report["_values"] = {"reference": ref_rows, "generated": gen_rows}  # for the PNG; dropped by to_json
    return report


# --------------------------------------------------------------------------------------------------- output
def to_json(report: dict[str, Any]) -> str:
    clean = {k: v for k, v in report.items() if not k.startswith("_")}
    return json.dumps(clean, indent=2, allow_nan=False, default=_json_default)


def _json_default(obj):
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    raise TypeError(type(obj).__name__)


def _fmt(mean, std) -> str:
    if mean is None:
        return "-"
    return f"{mean:.3g} ± {std:.2g}"


def format_table(report: dict[str, Any]) -> str:
    ref, gen = report["reference"], report["generated"]
    head_r = f"reference (n={ref['pieces']})"
    head_g = f"generated (n={gen['pieces']})"
    rows = [("metric", head_r, head_g, "OA")]
    for name, m in report["metrics"].items():
        oa = "-" if m["oa"] is None else f"{m['oa']:.3f}"
        if m["kind"] == "histogram":
            rows.append((f"{name} [{m['unit']}]", "histogram", "histogram", oa))
            for i, label in enumerate(m["classes"]):
                rm, rs = (m["reference"]["mean"] or [None] * 99)[i], (m["reference"]["std"] or [None] * 99)[i]
                gm, gs = (m["generated"]["mean"] or [None] * 99)[i], (m["generated"]["std"] or [None] * 99)[i]
                rows.append((f"  {label}", _fmt(rm, rs), _fmt(gm, gs), ""))
            continue
        rows.append((f"{name} [{m['unit']}]", _fmt(m["reference"]["mean"], m["reference"]["std"]),
                     _fmt(m["generated"]["mean"], m["generated"]["std"]), oa))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    lines = [f"reference: {ref['source']} ({ref['pieces']} pieces, {ref['skipped']} files skipped)",
             f"generated: {gen['source']} ({gen['pieces']} pieces, {gen['skipped']} files skipped)", ""]
    for k, r in enumerate(rows):
        lines.append("  ".join(c.ljust(widths[i]) if i == 0 else c.rjust(widths[i]) for i, c in enumerate(r)))
        if k == 0:
            lines.append("  ".join("-" * w for w in widths))
    lines.append("")
    mean_oa = report.get("mean_oa")
    lines.append(f"mean OA: {'-' if mean_oa is None else f'{mean_oa:.3f}'}"
                 "  (overlap of reference intra-set and reference-generated inter-set distance densities)")
    if report.get("exact_copies"):
        lines.append(f"{report['exact_copies']} generated piece(s) are exact copies of reference pieces "
                     "(left out of the inter-set distances)")
    mem = report.get("memorisation")
    if mem:
        lines.append(
            f"memorisation: {mem['exact_copy_rate']:.1%} exact copies, {mem['near_copy_rate']:.1%} near copies "
            f"(8-gram Jaccard >= {mem['threshold']}) of {mem['reference_tunes']} reference tunes; "
            f"mean best similarity {mem['mean_best_similarity']:.3f}"
        )
    return "\n".join(lines)


def save_png(report: dict[str, Any], path: str | Path) -> Path:
    """Per-metric histograms of both sets side by side (one panel per metric), written with matplotlib Agg."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure

    values = report["_values"]
    names = list(report["metrics"])
    cols = 4
    rows = max(1, math.ceil(len(names) / cols))
    fig = Figure(figsize=(4.2 * cols, 3.0 * rows), dpi=100)
    for k, name in enumerate(names):
        ax = fig.add_subplot(rows, cols, k + 1)
        m = report["metrics"][name]
        r, g = _stack(values["reference"], name), _stack(values["generated"], name)
        if m["kind"] == "histogram":
            x = np.arange(len(m["classes"]))
            for offset, summary, label in ((-0.2, m["reference"], "reference"), (0.2, m["generated"], "generated")):
                if summary["mean"] is not None:
                    ax.bar(x + offset, summary["mean"], width=0.4, label=label)
            ax.set_xticks(x)
            ax.set_xticklabels(m["classes"], rotation=60, fontsize=6)
        else:
            r = r[~np.isnan(r)] if r is not None else np.zeros(0)
            g = g[~np.isnan(g)] if g is not None else np.zeros(0)
            pooled = np.concatenate([r, g])
            if len(pooled):
                lo, hi = float(pooled.min()), float(pooled.max())
                if hi <= lo:
                    lo, hi = lo - 0.5, hi + 0.5
                edges = np.linspace(lo, hi, 16)
                width = (edges[1] - edges[0]) * 0.45
                centres = (edges[:-1] + edges[1:]) / 2
                for offset, data, label in ((-width / 2, r, "reference"), (width / 2, g, "generated")):
                    if len(data):
                        counts, _ = np.histogram(data, bins=edges)
                        ax.bar(centres + offset, counts / len(data), width=width, label=label)
        oa = "-" if m["oa"] is None else f"{m['oa']:.2f}"
        ax.set_title(f"{name} (OA {oa})", fontsize=8)
        ax.tick_params(labelsize=6)
        if k == 0:
            ax.legend(fontsize=6)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    return path
