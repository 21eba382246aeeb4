"""Bits per note of checkpoints on held-out chorales (issue 12 item 7), and the samples picture of docs/.

`bits`: bits per note of checkpoints, comparable across representations.

`fmusic evaluate CHECKPOINT --json` sums the negative log-likelihood over the validation split's windows (cells for
a piano roll, tokens for MIDI `words`), each window on its own. Dividing that sum by the number of notes in the
same held-out pieces gives bits per note, a unit that a piano-roll model and a token model share: both describe the
same notes, whatever they count as their steps. The notes are those of the pieces listed in REFERENCE (the
`--write-split` list of the validation pieces, the split every checkpoint of the comparison was trained with).

    python scripts/fractal_quality.py bits --reference split/valid.txt runs/mar/checkpoints/last.pt runs/lstm/checkpoints/last.pt

Prints one line per checkpoint: generator, representation, steps, nats per unit, bits per note. MAR levels make
the NLL an estimate (one random masking per window, `--nll-forward-number` 1): the script passes
`--nll-forward-number N` to checkpoints that take it.

`picture`: the first `--beats` beats of a few generated pieces above one held-out piece, as piano rolls (a note is
a bar from its onset to its end, its first sixteenth darker, so a note broken in two shows as two dark heads):

    python scripts/fractal_quality.py picture samples/ --reference-piece bwv127.5.mxl --out docs/chorales.png

`sixteenths`: where the notes one sixteenth long start, as the onset column modulo 4 (the fractal generators' 4x4
patches start at columns 0, 4, 8, ...) and modulo 16 (16x16 patches), at 4 steps per beat:

    python scripts/fractal_quality.py sixteenths samples/
"""
from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import subprocess

import numpy as np

from fractalmusic.io import read_pieces
from fractalmusic.metrics.notes import pitched_notes


def count_notes(list_file: str) -> tuple[int, int]:
    """(pieces, pitched notes) of the files named in `list_file` (one path per line)."""
    with open(list_file, encoding="utf-8") as fh:
        paths = [line.strip() for line in fh if line.strip() and not line.startswith("#")]
    notes = pieces = 0
    for path in paths:
        for piece in read_pieces(path):
            pieces += 1
            notes += int(len(pitched_notes(piece)))
    return pieces, notes


def evaluate(checkpoint: str, forward: int) -> dict:
    fmusic = shutil.which("fmusic") or "fmusic"
    cmd = [fmusic, "evaluate", checkpoint, "--json"]
    help_text = subprocess.run([fmusic, "evaluate", checkpoint, "--help"], capture_output=True, text=True).stdout
    if "--nll-forward-number" in help_text:
        cmd += ["--nll-forward-number", str(forward)]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    return json.loads(out)["likelihood"]


def picture(samples: list[str], reference: str | None, out: str, beats: float, label: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = []
    for i, path in enumerate(samples):
        panels.append((f"sample {i}" + (f" ({label})" if label else ""), read_pieces(path)[0]))
    if reference:
        panels.append((f"held-out {os.path.splitext(os.path.basename(reference))[0]}, first {beats:g} beats",
                       read_pieces(reference)[0]))
    notes = [pitched_notes(p) for _, p in panels]
    shown = [n[n["onset"] < beats] for n in notes]
    pitches = np.concatenate([n["pitch"] for n in shown if len(n)] or [np.array([60])])
    lo, hi = int(pitches.min()) - 2, int(pitches.max()) + 2
    fig, axes = plt.subplots(len(panels), 1, figsize=(7, 2.6 * len(panels)), squeeze=False)
    for ax, (title, _), n in zip(axes[:, 0], panels, shown):
        for onset, duration, pitch in zip(n["onset"], n["duration"], n["pitch"]):
            end = min(onset + duration, beats)
            ax.add_patch(plt.Rectangle((onset, pitch - 0.4), end - onset, 0.8, color="cornflowerblue", lw=0))
            ax.add_patch(plt.Rectangle((onset, pitch - 0.4), min(0.25, end - onset), 0.8, color="navy", lw=0))
        for bar in np.arange(4, beats, 4):
            ax.axvline(bar, color="0.8", lw=0.6)
        ax.set_xlim(0, beats)
        ax.set_ylim(lo, hi)
        ax.set_yticks([c for c in range(0, 128, 12) if lo <= c <= hi])
        ax.set_yticklabels([f"C{c // 12 - 1}" for c in range(0, 128, 12) if lo <= c <= hi])
        ax.set_ylabel("pitch")
        ax.set_title(title, fontsize=9)
    axes[-1, 0].set_xlabel("beats")
    fig.tight_layout()
    fig.savefig(out, dpi=72)
    plt.close(fig)


def sixteenths(folder: str) -> dict:
    """Counts of the notes one sixteenth long in the MIDI files of `folder`, by onset column mod 4 and mod 16."""
    total, short = 0, 0
    by4, by16 = np.zeros(4, dtype=int), np.zeros(16, dtype=int)
    for name in sorted(os.listdir(folder)):
        if not name.lower().endswith((".mid", ".midi")):
            continue
        n = pitched_notes(read_pieces(os.path.join(folder, name))[0])
        onset = np.round(n["onset"] * 4).astype(int)
        steps = np.round(n["duration"] * 4).astype(int)
        total += len(n)
        cols = onset[steps == 1]
        short += len(cols)
        np.add.at(by4, cols % 4, 1)
        np.add.at(by16, cols % 16, 1)
    return {"notes": total, "sixteenths": short, "mod4": by4.tolist(), "mod16": by16.tolist()}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="command", required=True)
    b = sub.add_parser("bits", help="bits per note of checkpoints on the held-out pieces")
    b.add_argument("checkpoints", nargs="+")
    b.add_argument("--reference", required=True, help="list file of the held-out pieces (split/valid.txt)")
    b.add_argument("--nll-forward-number", type=int, default=4, help="random maskings averaged for MAR levels")
    p = sub.add_parser("picture", help="piano-roll picture of generated pieces and a held-out one")
    p.add_argument("samples", help="folder of generated MIDI files")
    p.add_argument("--reference-piece", help="a held-out piece to show below them")
    p.add_argument("--out", required=True)
    p.add_argument("-n", "--num", type=int, default=4, help="generated pieces shown")
    p.add_argument("--beats", type=float, default=32.0)
    p.add_argument("--label", default="", help="text after each sample's title")
    w = sub.add_parser("sixteenths", help="where the notes one sixteenth long start (onset column mod 4 and 16)")
    w.add_argument("samples", help="folder of generated MIDI files")
    args = ap.parse_args(argv)
    if args.command == "sixteenths":
        got = sixteenths(args.samples)
        print(f"{got['sixteenths']} of {got['notes']} notes are one sixteenth long; by onset column mod 4: "
              f"{got['mod4']}; mod 16: {got['mod16']}")
        return 0
    if args.command == "picture":
        files = sorted(f for f in os.listdir(args.samples) if f.lower().endswith((".mid", ".midi")))[: args.num]
        picture([os.path.join(args.samples, f) for f in files], args.reference_piece, args.out, args.beats, args.label)
        print(f"wrote {args.out}")
        return 0
    pieces, notes = count_notes(args.reference)
    print(f"reference: {pieces} pieces, {notes} notes")
    for ckpt in args.checkpoints:
        got = evaluate(ckpt, args.nll_forward_number)
        bits = got["nll_sum"] / math.log(2) / max(notes, 1)
        print(f"{ckpt}: {got['generator']} over {got['representation']}, step {got['step']}, "
              f"{got['nll_sum'] / max(got['n'], 1):.4f} nats per {got['unit']} ({got['n']} {got['unit']}s), "
              f"{bits:.2f} bits per note")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
