"""Sampling speed of checkpoints, side by side: tokens drawn per CPU-second and per wall-second.

    python plugins/fractalmusic-transformer/bench/sampling_speed.py runs/folk-lstm/checkpoints/last.pt \\
        runs/folk-transformer/checkpoints/last.pt --n 16 --length 1024 --repeats 2

Each checkpoint draws `n` rows of `length` tokens as one batch (eos is masked out, so every row runs to the
full length and both models do the same number of steps), `repeats` times, alternating between the checkpoints so
that a busy machine slows both alike. One thread (torch.set_num_threads(1)) unless --threads says otherwise.
"""
from __future__ import annotations

import argparse
import json
import time

import torch


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("checkpoints", nargs="+")
    ap.add_argument("--n", type=int, default=16)
    ap.add_argument("--length", type=int, default=1024)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    import fractalmusic

    models = [fractalmusic.load(path) for path in args.checkpoints]
    for model in models:
        eos = model.generator.spec.eos_id
        if eos is not None:  # never stop early: every row draws `length` tokens
            head_bias = getattr(model.generator, "out_bias", None)
            if head_bias is None:
                head = getattr(model.generator, "head", None)
                head_bias = head.bias if head is not None else None
            with torch.no_grad():
                head_bias[eos] = -1e9
    results = {path: {"cpu_s": 0.0, "wall_s": 0.0, "tokens": 0} for path in args.checkpoints}
    for r in range(args.repeats):
        for path, model in zip(args.checkpoints, models):
            c0, w0 = time.process_time(), time.perf_counter()
            out = model.generator.sample(args.n, args.length, seed=r)
            c1, w1 = time.process_time(), time.perf_counter()
            res = results[path]
            res["cpu_s"] += c1 - c0
            res["wall_s"] += w1 - w0
            res["tokens"] += int(out.shape[0] * (out.shape[1] - 1))
    for path, model in zip(args.checkpoints, models):
        res = results[path]
        res.update(
            generator=model.generator.name,
            parameters=model.generator.num_parameters(),
            tokens_per_cpu_s=res["tokens"] / res["cpu_s"],
            tokens_per_wall_s=res["tokens"] / res["wall_s"],
        )
        print(json.dumps({path: res}))


if __name__ == "__main__":
    main()
