"""Before/after pairs of `fmusic data stats` against symusic's read + grid, steady enough on a shared machine.

    git archive <commit> fractalmusic | tar -x -C /tmp/before
    OMP_NUM_THREADS=1 python scripts/prep_pairs.py /tmp/real-midi --before /tmp/before --rounds 40
    OMP_NUM_THREADS=1 python scripts/prep_pairs.py BIG_FOLDER --before /tmp/before --rounds 6 --paths words-first

One long-lived process per contender: symusic's loop (`Score.from_midi`, `resample(tpq=4, min_dur=1)`,
`pianoroll`), and each path (`words-first`, `words-nocache`, `pianoroll-first`, `pianoroll-nocache`: `prepare_data`
as `fmusic data stats` runs it, a new representation and, for a first run, a new cache folder each time) with the
code of `--before` (put first on PYTHONPATH) and with this checkout. Each process runs once to warm up, then they take
turns, one run each per round, so that the load of other jobs falls on all of them alike; a bench that times the
paths in one process at a time moved by 0.1 between two runs of the same code at a load of 3 on two cores. Prints the
medians of CPU time (the process and its finished reader workers) and wall time as shares of symusic's rate.
"""
from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PATHS = ("words-first", "words-nocache", "pianoroll-first", "pianoroll-nocache")


def _cpu() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def _runner(path: str, folder: Path):
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in (".mid", ".midi"))
    if path == "symusic":
        import symusic

        def run() -> None:
            for f in files:
                try:
                    score = symusic.Score.from_midi(f.read_bytes(), sanitize_data=True)
                    score.resample(tpq=4, min_dur=1).pianoroll(modes=["onset", "frame"], pitch_range=(0, 128))
                except Exception:  # the empty and the corrupt file: symusic skips them its own way
                    pass

        return run
    from fractalmusic.data import DataConfig
    from fractalmusic.data.build import prepare_data
    from fractalmusic.representations.pianoroll import PianoRollRepresentation
    from fractalmusic.representations.words import WordsRepresentation

    rep, mode = path.split("-")
    make = (lambda: WordsRepresentation(source="midi")) if rep == "words" else PianoRollRepresentation

    def run() -> None:
        cache_dir = tempfile.mkdtemp(prefix="fm-pairs-")
        cache = dict(cache_dir=cache_dir) if mode == "first" else dict(no_cache=True)
        try:
            prepare_data(DataConfig(data=str(folder), val_fraction=0.1, **cache), make(), log=None, defer_packs=True)
        finally:
            shutil.rmtree(cache_dir, ignore_errors=True)

    return run


def serve(path: str, folder: Path) -> None:
    """One contender: a warm-up run, then one run per line read, answered with 'cpu_seconds wall_seconds'."""
    run = _runner(path, folder)
    run()
    print("ready", flush=True)
    for _ in sys.stdin:
        cpu, wall = _cpu(), time.perf_counter()
        run()
        print(f"{_cpu() - cpu:.6f} {time.perf_counter() - wall:.6f}", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("folder", type=Path, help="a folder of MIDI files")
    ap.add_argument("--before", help="a folder holding the `fractalmusic` package to compare with (git archive)")
    ap.add_argument("--rounds", type=int, default=20)
    ap.add_argument("--paths", default=",".join(PATHS), help=f"comma list of {', '.join(PATHS)}")
    ap.add_argument("--serve", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.serve:
        serve(args.serve, args.folder)
        return
    paths = [p for p in args.paths.split(",") if p]
    for p in paths:
        if p not in PATHS:
            ap.error(f"unknown path {p!r}; choose from {', '.join(PATHS)}")
    env = dict(os.environ, OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "1"))
    env.pop("PYTHONPATH", None)
    versions = [("after", env)]
    if args.before:
        versions.insert(0, ("before", dict(env, PYTHONPATH=str(Path(args.before).resolve()))))
    contenders = [("symusic", "symusic", env)] + [(p, v, e) for p in paths for v, e in versions]
    procs = {}
    for path, version, penv in contenders:
        procs[(path, version)] = subprocess.Popen(
            [sys.executable, __file__, str(args.folder), "--serve", path], stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, text=True, env=penv)
    for key, proc in procs.items():
        if proc.stdout.readline().strip() != "ready":
            raise SystemExit(f"{key} did not start")
    times = {key: [] for key in procs}
    loads = []
    for _ in range(args.rounds):
        for key, proc in procs.items():
            proc.stdin.write("go\n")
            proc.stdin.flush()
            times[key].append(tuple(map(float, proc.stdout.readline().split())))
        loads.append(os.getloadavg()[0])
    for proc in procs.values():
        proc.stdin.close()
        proc.wait()
    sym_cpu = statistics.median(c for c, _ in times[("symusic", "symusic")])
    sym_wall = statistics.median(w for _, w in times[("symusic", "symusic")])
    print(f"{args.folder}: {args.rounds} rounds, load {min(loads):.1f}-{max(loads):.1f}; symusic's read + grid "
          f"{sym_cpu * 1000:.1f} ms CPU, {sym_wall * 1000:.1f} ms wall (medians)")
    for path in paths:
        parts = []
        for version, _ in versions:
            cpu = statistics.median(c for c, _ in times[(path, version)])
            wall = statistics.median(w for _, w in times[(path, version)])
            parts.append(f"{version} {sym_cpu / cpu:.2f} by CPU ({cpu * 1000:.1f} ms), {sym_wall / wall:.2f} by wall")
        print(f"  data stats {path:18s} " + " | ".join(parts))


if __name__ == "__main__":
    main()
