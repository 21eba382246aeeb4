"""Independent checks of the folk-tune model (issue 12's targets), with music21 rather than our own bar checker.

    python scripts/folk_quality.py bars samples/folk60            # parse rate and bar consistency of *.abc tunes
    python scripts/folk_quality.py bars --corpus 80                # the same on 80 random tunes of the folk corpus
    python scripts/folk_quality.py bodies CKPT --book miscFolk --max-tunes 300   # bits/char of bodies
    python scripts/folk_quality.py bodies CKPT --book ryansMammoth --drop-near-copies   # a held-out folk book
    python scripts/folk_quality.py bodies CKPT --book ryansMammoth --by-class          # where the bits go
    python scripts/folk_quality.py lr runs/folk/metrics.jsonl      # last logged lr against the peak

bars: a tune counts as parsed when music21 reads it into a score with notes. Over the parsed tunes, every inner
measure of the first part (its first and last measure left out: anacrusis and its complement) is judged: right
when its duration equals the bar of the time signature in force. Bar consistency = right / judged, pooled.

bodies: the bits per character the checkpoint gives the characters after each tune's K: line (the body), read as
the representation normalises tunes, each tune fed from its own start (so the header conditions the body). With
--drop-near-copies the tunes of a held-out folk book that another folk book also holds (a near copy by
fractalmusic.metrics.abc: Jaccard similarity of body 8-grams >= 0.7) are left out and counted. body_bits is the
total: when two checkpoints normalise the text differently (abc --length-spelling writes "A/2" as "A/"), compare
the bits of the same tunes as well as bits per character. With --by-class
the body bits are also split by character class (note letters, digits, bar lines, ...; other characters each on
their own): each class's share of the bits and of the characters, and its bits per character.
"""
from __future__ import annotations

import argparse
import json
import math
import random
import sys
from pathlib import Path


def tunes_of(paths: list[Path]) -> list[str]:
    from fractalmusic.io.abc import read_text, split_abc_book

    out = []
    for path in paths:
        if path.is_dir():
            out += tunes_of(sorted(p for p in path.rglob("*.abc") if p.name != "samples.abc"))
        else:
            out += split_abc_book(read_text(path))
    return out


def music21_bars(text: str) -> tuple[bool, int, int]:
    """(parsed, judged inner bars, right ones) of one tune."""
    import music21

    try:
        score = music21.converter.parse(text, format="abc")
        if isinstance(score, music21.stream.Opus):
            score = score.scores[0]
        if not len(score.flatten().notes):
            return False, 0, 0
    except Exception:  # music21 raises many kinds of error on bad ABC
        return False, 0, 0
    parts = score.parts if score.parts else [score]
    measures = list(parts[0].getElementsByClass("Measure"))
    judged = right = 0
    for m in measures[1:-1]:
        ts = m.timeSignature or m.getContextByClass("TimeSignature")
        if ts is None:
            continue
        judged += 1
        right += abs(float(m.duration.quarterLength) - float(ts.barDuration.quarterLength)) < 1e-6
    return True, judged, right


def cmd_bars(args) -> dict:
    if args.corpus:
        from fractalmusic.data.corpora import BUILTINS, music21_corpus_dir

        tunes = tunes_of([music21_corpus_dir() / f for f in BUILTINS["folk"].folders])
        tunes = random.Random(args.seed).sample(tunes, args.corpus)
    else:
        tunes = tunes_of([Path(p) for p in args.paths])
    parsed = judged = right = 0
    for t in tunes:
        ok, j, r = music21_bars(t)
        parsed += ok
        judged += j
        right += r
    return {"tunes": len(tunes), "parse": parsed / max(1, len(tunes)), "bars_judged": judged,
            "bar_consistency": right / judged if judged else math.nan}


def char_class(c: str) -> str:
    """The class a body character is counted in by `bodies --by-class`."""
    for name, members in (("note letter", "ABCDEFGabcdefg"), ("digit", "0123456789"), ("newline", "\n"),
                          ("space", " "), ("bar/repeat", "|:[]"), ("octave", ",'"), ("slash/broken", "/<>"),
                          ("accidental", "^_="), ("slur/tuplet", "()"), ("grace", "{}"), ("rest", "zxZX")):
        if c in members:
            return name
    return repr(c)


def cmd_bodies(args) -> dict:
    import numpy as np
    import torch
    import torch.nn.functional as F

    from fractalmusic import abcsyntax, api
    from fractalmusic.piece import Piece

    model = api.Model.load(args.checkpoint)
    rep, gen = model.representation, model.generator
    root = Path(args.book)
    if not root.exists():
        import music21

        root = Path(music21.__file__).parent / "corpus" / args.book
    tunes = tunes_of([root])
    tunes = [t for t in tunes if "K:" in t]
    random.Random(0).shuffle(tunes)
    tunes = tunes[: args.max_tunes]
    near = 0
    if args.drop_near_copies:
        # tunes of the book that another folk book also holds (Jaccard of body 8-grams >= 0.7): a held-out book
        # shares repertoire with the others, and those tunes were in effect seen in training
        from fractalmusic.data.corpora import BUILTINS
        from fractalmusic.metrics.abc import NEAR_COPY_THRESHOLD, MemorisationIndex

        others = [p for p in BUILTINS["folk"].files() if p.parent.resolve() != root.resolve()]
        index = MemorisationIndex(tunes_of(others))
        kept = [t for t in tunes if index.best_match(t)[0] < NEAR_COPY_THRESHOLD]
        near = len(tunes) - len(kept)
        tunes = kept
    nats = chars = 0.0
    class_nats: dict[str, float] = {}
    class_chars: dict[str, int] = {}
    with torch.no_grad():
        for t in tunes:
            text = rep.normalise(t)
            header, body = abcsyntax.split_header_body(text)
            head_len = len("\n".join(header)) + 1
            if not "".join(body).strip():
                continue
            ids = np.asarray(rep.encode(Piece(abc=t)), dtype=np.int64)  # <bos> text <eos>, unknown chars <unk>
            assert len(ids) == len(text) + 2, (len(ids), len(text))
            offset = head_len + 1  # index of the first body character
            ids = ids[:-1]  # the body's characters only, not the end of the tune
            tokens = torch.as_tensor(ids)[None]
            batch = {"tokens": tokens, "mask": torch.ones_like(tokens, dtype=torch.bool)}
            inputs, targets, keep = gen.split_batch(batch)
            logits = gen.predicted_logits(inputs, keep, teacher_forced=True).float()
            nll = F.cross_entropy(logits, targets[keep], reduction="none")
            # target k is token k + 1: body targets are those from `offset` on
            body = nll[max(0, offset - 1):]
            nats += float(body.sum())
            chars += body.numel()
            if args.by_class:
                # target k is text[k] (ids[0] is <bos>): body targets are text[head_len:]
                for c, v in zip(text[head_len:], body.tolist()):
                    name = char_class(c)
                    class_nats[name] = class_nats.get(name, 0.0) + v
                    class_chars[name] = class_chars.get(name, 0) + 1
    out = {"tunes": len(tunes), "near_copies_left_out": near, "body_chars": int(chars),
           "body_bits": round(nats / math.log(2), 1), "bits_per_char": nats / chars / math.log(2)}
    if args.by_class:
        out["by_class"] = {
            name: {"share_of_bits": round(class_nats[name] / nats, 4),
                   "share_of_chars": round(class_chars[name] / chars, 4),
                   "bits_per_char": round(class_nats[name] / class_chars[name] / math.log(2), 3)}
            for name in sorted(class_nats, key=class_nats.get, reverse=True)}
    return out


def cmd_lr(args) -> dict:
    rows = [json.loads(line) for line in Path(args.metrics).read_text().splitlines()]
    train = [r for r in rows if r.get("split") == "train" and r.get("lr") is not None]
    peak = max(r["lr"] for r in train)
    return {"steps": train[-1]["step"], "last_lr": train[-1]["lr"], "peak_lr": peak,
            "last_over_peak": train[-1]["lr"] / peak, "lr_horizon": train[-1].get("lr_horizon")}


def main(argv: list[str]) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("bars")
    b.add_argument("paths", nargs="*")
    b.add_argument("--corpus", type=int, default=0, help="check this many random tunes of the folk corpus")
    b.add_argument("--seed", type=int, default=0)
    d = sub.add_parser("bodies")
    d.add_argument("checkpoint")
    d.add_argument("--book", default="miscFolk", help="folder or music21 corpus folder name")
    d.add_argument("--max-tunes", type=int, default=300)
    d.add_argument("--drop-near-copies", action="store_true",
                   help="leave out tunes that another book of the folk corpus holds too (near copies)")
    d.add_argument("--by-class", action="store_true", help="also split the body bits by character class")
    lr = sub.add_parser("lr")
    lr.add_argument("metrics")
    args = p.parse_args(argv)
    out = {"bars": cmd_bars, "bodies": cmd_bodies, "lr": cmd_lr}[args.cmd](args)
    print(json.dumps(out))


if __name__ == "__main__":
    main(sys.argv[1:])
