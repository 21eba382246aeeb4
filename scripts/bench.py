#!/usr/bin/env python
"""Speed and memory measurements for docs/BENCHMARKS.md.

    python scripts/bench.py                       # every section
    python scripts/bench.py --only prep,sampling  # some sections
    python scripts/bench.py --json results.json   # also write the raw numbers

Sections:
  prep      MIDI files -> piano-roll grids: ours (MIDI reader + pianoroll) vs music21 parsing vs pretty_midi's
            get_piano_roll, same files, same run.
  realmidi  real piano and pop MIDI (--midi-dir; how to get 30 such files: see REAL_MIDI_HOWTO): symusic's own
            read + piano roll vs ours (grid and MIDI words, read alone, the `fmusic data stats` preparation path),
            the old mido event reader and pretty_midi, interleaved in one process.
  bigcorpus generated multi-track corpus (--big-files x --big-beats): preparation into memory-mapped pack shards,
            then --big-seconds of training crops; resident memory (RssAnon must stay flat) over the run.
  throughput  trainer tokens/s or cells/s of every built-in generator at its defaults on its default corpus.
  sampling  LSTM (MIT lab size: embedding 256, hidden 1024) tokens/s: 16 tunes at once with carried state, one at a
            time with carried state, and the naive loop that re-feeds the last 100 tokens for every new token.
  training  LSTM at the MIT lab configuration (embedding 256, hidden 1024, seq 100, batch 8) on the folk corpus:
            tokens/s of fmusic's Trainer vs a bare PyTorch loop over the same model and batches, interleaved.
  fractal   fractal generators at FractalMIDI's small configuration: seconds per sampled 128x128 roll (all-MAR one
            and batch of 4, all-AR one), seconds per training step (W=128, batch 4), step time vs crop length, and
            peak memory with and without gradient checkpointing (each in a fresh process).

Ratios are measured side by side in one run because the machine is shared and noisy; absolute numbers vary.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path


REPO = Path(__file__).resolve().parents[1]
RESULTS: dict[str, dict] = {}


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def table(title: str, header: list[str], rows: list[list]) -> None:
    print(f"\n### {title}\n")
    print("| " + " | ".join(header) + " |")
    print("| " + " | ".join("---" for _ in header) + " |")
    for r in rows:
        print("| " + " | ".join(str(c) for c in r) + " |")
    sys.stdout.flush()


def timed(fn, repeat: int = 3) -> float:
    """Median wall seconds of `repeat` calls."""
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


# ------------------------------------------------------------------------------------------------ prep
def _midi_corpus(n_chorales: int) -> list[Path]:
    """Real MIDI files: music21's own test MIDIs plus chorales written to MIDI by music21 (not by us)."""
    import music21

    base = Path(music21.__file__).parent
    files = sorted((base / "midi" / "testPrimitive").glob("*.mid"))
    out_dir = Path(tempfile.gettempdir()) / "fractalmusic-bench-midi"
    out_dir.mkdir(exist_ok=True)
    for src in sorted((base / "corpus" / "bach").glob("bwv*.mxl"))[:n_chorales]:
        dst = out_dir / (src.stem + ".mid")
        if not dst.exists():
            music21.converter.parse(src).write("midi", fp=str(dst))
        files.append(dst)
    return files


def bench_prep(args) -> None:
    import music21
    import pretty_midi

    from fractalmusic.errors import PieceReadError
    from fractalmusic.io.midi import read_midi
    from fractalmusic.representations.pianoroll import PianoRollRepresentation

    files = _midi_corpus(args.chorales)
    rep = PianoRollRepresentation()

    def ours():
        for f in files:
            try:
                rep.encode(read_midi(f))
            except PieceReadError:
                pass

    def with_pretty_midi():
        for f in files:
            try:
                pm = pretty_midi.PrettyMIDI(str(f))
                pm.get_piano_roll(fs=8)
            except Exception:
                pass

    def with_music21():
        for f in files:
            try:
                music21.converter.parse(f, forceSource=True)
            except Exception:
                pass

    rows, res = [], {}
    for name, fn, rep_n in (("fractalmusic (MIDI reader + pianoroll grid)", ours, 3),
                            ("pretty_midi PrettyMIDI + get_piano_roll", with_pretty_midi, 3),
                            ("music21 converter.parse (no grid)", with_music21, 1)):
        fn()  # warm imports and disk cache
        s = timed(fn, rep_n)
        res[name] = len(files) / s
    base = res["fractalmusic (MIDI reader + pianoroll grid)"]
    for name, fps in res.items():
        rows.append([name, f"{fps:.0f}", f"{base / fps:.1f}x"])
    table(f"Preparing {len(files)} MIDI files into grids (files/s; higher is better)",
          ["method", "files/s", "fractalmusic is faster by"], rows)
    RESULTS["prep"] = {"files": len(files), "files_per_s": res}


# ------------------------------------------------------------------------------------------------ real MIDI
REAL_MIDI_HOWTO = """real MIDI files are not shipped with fractalmusic; MidiTok's source distribution has 30 (MAESTRO piano
performances, Lakh and other pop multitrack files, POP909 songs, one empty and one corrupt file):
    pip download --no-deps --no-binary :all: miditok==3.1.0 -d /tmp/miditok-sdist
    tar xzf /tmp/miditok-sdist/miditok-3.1.0.tar.gz -C /tmp/miditok-sdist
    mkdir -p /tmp/real-midi && cp /tmp/miditok-sdist/miditok-3.1.0/tests/MIDIs_{multitrack,one_track,corrupted}/*.mid /tmp/real-midi/
then: python scripts/bench.py --only realmidi --midi-dir /tmp/real-midi"""


def bench_realmidi(args) -> None:
    """Real piano and pop MIDI: symusic's own read + piano roll, ours (pianoroll and MIDI words, read alone, the
    `fmusic data stats` preparation path), the mido event reader, pretty_midi; one process, interleaved repeats."""
    import pretty_midi
    import symusic

    from fractalmusic.data import DataConfig
    from fractalmusic.data.build import prepare_data
    from fractalmusic.errors import FractalMusicError
    from fractalmusic.io.midi import midi_bytes_to_piece, read_midi
    from fractalmusic.representations.pianoroll import PianoRollRepresentation
    from fractalmusic.representations.words import WordsRepresentation

    folder = Path(args.midi_dir).expanduser() if args.midi_dir else None
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in (".mid", ".midi")) if folder else []
    if not files:
        log(f"[bench] realmidi: no MIDI files in {folder}; " + REAL_MIDI_HOWTO)
        return
    grid = PianoRollRepresentation()
    words = WordsRepresentation(source="midi")
    pieces = []
    for f in files:
        try:
            pieces.append(read_midi(f))
        except FractalMusicError:
            pass
    words.fit(pieces)
    n_notes = sum(p.n_notes for p in pieces)

    def each(fn):
        def run():
            for f in files:
                try:
                    fn(f)
                except Exception:  # the empty and the corrupt file: every method skips them its own way
                    pass

        return run

    def symusic_grid(f):
        score = symusic.Score.from_midi(Path(f).read_bytes(), sanitize_data=True)
        score.resample(tpq=4, min_dur=1).pianoroll(modes=["onset", "frame"], pitch_range=(0, 128))

    cache_root = Path(tempfile.mkdtemp(prefix="fm-bench-cache-"))
    cold_runs = [0]

    def prepare(make_repr, workers, cold_cache=False, defer_packs=True):
        """`fmusic data stats` in one call: a fresh representation each time (words fit their vocabulary, as a new
        process does), no cache, or (`cold_cache`) a new empty cache folder that the run fills (with the parsed
        pieces and the vocabulary; with `defer_packs` False also the packs, as `fmusic data prepare` does)."""
        def run():
            cold_runs[0] += 1
            cache = dict(cache_dir=str(cache_root / str(cold_runs[0]))) if cold_cache else dict(no_cache=True)
            cfg = DataConfig(data=str(folder), num_prep_workers=workers, val_fraction=0.1, **cache)
            prepare_data(cfg, make_repr(), log=None, defer_packs=defer_packs)

        return run

    def midi_words():
        return WordsRepresentation(source="midi")

    def pm_grid(f):
        pretty_midi.PrettyMIDI(str(f)).get_piano_roll(fs=8)

    methods = {
        "symusic: read + resample + pianoroll (its own grid)": each(symusic_grid),
        "fractalmusic: read_midi + pianoroll encode (int64 [128, T])": each(lambda f: grid.encode(read_midi(f))),
        "fractalmusic: read_midi + pianoroll encode_time_major (uint8 [T, 128], as data stats stores it)": each(
            lambda f: grid.encode_time_major(read_midi(f))),
        "fractalmusic: read_midi + MIDI words encode": each(lambda f: words.encode(read_midi(f))),
        "fractalmusic: read_midi alone": each(read_midi),
        "fmusic data stats --repr pianoroll path (prepare_data, no cache, 1 process)": prepare(
            PianoRollRepresentation, 0),
        "fmusic data stats --repr words path (prepare_data, no cache, 1 process; fits the vocabulary)": prepare(
            midi_words, 0),
        "fmusic data stats --repr pianoroll path, default --num-prep-workers": prepare(
            PianoRollRepresentation, DataConfig().num_prep_workers),
        "fmusic data stats --repr words path, default --num-prep-workers": prepare(
            midi_words, DataConfig().num_prep_workers),
        "fmusic data stats --repr pianoroll, default workers, first run (fills an empty cache)": prepare(
            PianoRollRepresentation, DataConfig().num_prep_workers, cold_cache=True),
        "fmusic data stats --repr words, default workers, first run (fills an empty cache)": prepare(
            midi_words, DataConfig().num_prep_workers, cold_cache=True),
        "fmusic data prepare --repr pianoroll, first run (fills an empty cache, packs too)": prepare(
            PianoRollRepresentation, DataConfig().num_prep_workers, cold_cache=True, defer_packs=False),
        "fmusic data prepare --repr words, first run (fills an empty cache, packs too)": prepare(
            midi_words, DataConfig().num_prep_workers, cold_cache=True, defer_packs=False),
        "fractalmusic before: mido event reader + pianoroll encode": each(
            lambda f: grid.encode(midi_bytes_to_piece(Path(f).read_bytes(), str(f), engine="mido"))),
        "pretty_midi: PrettyMIDI + get_piano_roll": each(pm_grid),
    }
    slow = {"fractalmusic before: mido event reader + pianoroll encode", "pretty_midi: PrettyMIDI + get_piano_roll"}
    times: dict[str, list[float]] = {name: [] for name in methods}
    cpu: dict[str, list[float]] = {name: [] for name in methods}
    for fn in methods.values():
        fn()  # warm imports and the disk cache
    for r in range(args.repeats):  # interleaved, so load from other processes falls on every method alike
        for name, fn in methods.items():
            if name in slow and r:
                continue  # one timed pass of the slow readers is plenty
            c, t = _cpu_seconds(), time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t)
            cpu[name].append(_cpu_seconds() - c)
            for used in cache_root.iterdir():  # a first run's cache goes before the next pass (not timed): dirty
                shutil.rmtree(used, ignore_errors=True)  # pages of earlier passes would slow later writes
    rate = {name: len(files) / statistics.median(ts) for name, ts in times.items()}
    cpu_rate = {name: len(files) / statistics.median(ts) for name, ts in cpu.items()}
    # the fastest pass of each method: on a machine shared with other jobs, the one they disturbed least
    best_cpu_rate = {name: len(files) / min(ts) for name, ts in cpu.items()}
    sym_name = "symusic: read + resample + pianoroll (its own grid)"
    sym, sym_cpu, sym_best = rate[sym_name], cpu_rate[sym_name], best_cpu_rate[sym_name]
    pm = rate["pretty_midi: PrettyMIDI + get_piano_roll"]
    rows = [[name, f"{fps:.1f}", f"{fps / sym:.2f}", f"{cpu_rate[name] / sym_cpu:.2f}",
             f"{best_cpu_rate[name] / sym_best:.2f}" if name not in slow else "-", f"{fps / pm:.0f}x"]
            for name, fps in rate.items()]
    table(
        f"Reading {len(files)} real MIDI files ({len(pieces)} with notes, {n_notes:,} notes) into grids and words "
        f"(files/s; one process; medians of {args.repeats} interleaved passes)",
        ["method", "files/s", "share of symusic's rate", "share by CPU time", "share by best pass (CPU)",
         "vs pretty_midi"],
        rows,
    )
    RESULTS["realmidi"] = {"files": len(files), "notes": n_notes, "files_per_s": rate, "files_per_cpu_s": cpu_rate,
                           "files_per_best_cpu_s": best_cpu_rate}
    shutil.rmtree(cache_root, ignore_errors=True)


def _cpu_seconds() -> float:
    """CPU seconds of this process and of its finished children (reader workers, once their pool has closed): on a
    machine shared with other jobs, CPU time moves far less with their load than wall time does."""
    import resource

    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + children.ru_utime + children.ru_stime


# ------------------------------------------------------------------------------------------------ big corpus
def _proc_status() -> dict[str, int]:
    """VmRSS, VmHWM, RssAnon, RssFile of this process in MB."""
    out = {}
    with open("/proc/self/status") as f:
        for line in f:
            key = line.split(":")[0]
            if key in ("VmRSS", "VmHWM", "RssAnon", "RssFile"):
                out[key] = int(line.split()[1]) // 1024
    return out


def _reset_peak() -> None:
    try:
        Path("/proc/self/clear_refs").write_text("5")  # Linux: VmHWM starts again from VmRSS
    except OSError:
        pass


def _write_generated_midi(folder: Path, n_files: int, beats: int, seed: int = 0) -> int:
    """`n_files` type-1 MIDI files of three monophonic voices, `beats` beats each (4 ticks per beat), written as
    bytes with numpy (no per-note Python loop). Returns the bytes written."""
    import numpy as np

    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    total = 0
    for i in range(n_files):
        chunks = []
        for voice in range(3):
            durs = rng.integers(1, 9, size=beats)  # 1..8 sixteenths
            durs = durs[np.cumsum(durs) <= beats * 4]
            pitch = (36 + 12 * voice + rng.integers(0, 24, size=len(durs))).astype(np.uint8)
            ev = np.zeros((len(durs), 8), dtype=np.uint8)
            ev[:, 1], ev[:, 2], ev[:, 3] = 0x90 | voice, pitch, 80  # on, delta 0 after the previous off
            ev[:, 4], ev[:, 5], ev[:, 6] = durs, 0x80 | voice, pitch  # off after its duration (velocity 0)
            body = ev.tobytes()
            body += b"\x00\xff\x2f\x00"
            chunks.append(b"MTrk" + len(body).to_bytes(4, "big") + body)
        data = b"MThd\x00\x00\x00\x06\x00\x01" + (3).to_bytes(2, "big") + (4).to_bytes(2, "big") + b"".join(chunks)
        (folder / f"gen{i:06d}.mid").write_bytes(data)
        total += len(data)
    return total


def bench_bigcorpus(args) -> None:
    """A generated corpus whose encoded pack is several hundred MB to GB: preparation (resident memory while the
    pack is built shard by shard) and an epoch of training crops from the memory-mapped shards (resident memory
    over time: anonymous memory must stay flat; mapped pages are file-backed and reclaimable)."""
    import numpy as np
    import torch

    from fractalmusic.data import DataConfig, build_datasets
    from fractalmusic.representations.pianoroll import PianoRollRepresentation

    root = Path(args.big_dir or tempfile.mkdtemp(prefix="fractalmusic-big-"))
    folder = root / "midi"
    if not any(folder.glob("*.mid")):
        t = time.perf_counter()
        size = _write_generated_midi(folder, args.big_files, args.big_beats)
        log(f"[bench] wrote {args.big_files} MIDI files ({size / 1e6:.0f} MB) in {time.perf_counter() - t:.0f} s")
    cfg = DataConfig(data=str(folder), cache_dir=str(root / "cache"), cache_in_memory=False, crop_length=128,
                     val_fraction=0.01)
    _reset_peak()
    before = _proc_status()
    t = time.perf_counter()
    train, val, report = build_datasets(cfg, PianoRollRepresentation(), log=None)
    prep_s = time.perf_counter() - t
    after = _proc_status()
    pack_mb = sum(Path(p).stat().st_size for p in train.store.shard_paths) / 1e6
    rows = [["MIDI files", f"{report.files:,}"], ["pack (training split)", f"{pack_mb:,.0f} MB in "
             f"{len(train.store.shard_paths)} shards"], ["preparation", f"{prep_s:.0f} s ({report.files / prep_s:.0f} files/s, "
             f"{cfg.num_prep_workers} processes)"],
            ["RSS before / after preparation, peak during", f"{before['VmRSS']} / {after['VmRSS']} MB, peak {after['VmHWM']} MB"]]  # fmt: skip
    loader = torch.utils.data.DataLoader(train, batch_size=16, shuffle=True, num_workers=0, collate_fn=train.collate)
    _reset_peak()
    samples = []
    t = time.perf_counter()
    n = 0
    epoch = 0
    while time.perf_counter() - t < args.big_seconds:  # epochs until the time is up, as training would
        train.set_epoch(epoch)
        for batch in loader:
            n += 1
            if n % 50 == 1:
                st = _proc_status()
                samples.append((time.perf_counter() - t, st["VmRSS"], st["RssAnon"], st["RssFile"]))
            if time.perf_counter() - t > args.big_seconds:
                break
        epoch += 1
    st = _proc_status()
    samples.append((time.perf_counter() - t, st["VmRSS"], st["RssAnon"], st["RssFile"]))
    anon = [a for _, _, a, _ in samples]
    rows.append(["crops read", f"{n * 16:,} in {samples[-1][0]:.0f} s ({epoch} epochs)"])
    rows.append(["RssAnon over the run (min / max)", f"{min(anon)} / {max(anon)} MB"])
    rows.append(["VmRSS first / last (file-backed pages of the shards included)",
                 f"{samples[0][1]} / {samples[-1][1]} MB (RssFile {samples[0][3]} -> {samples[-1][3]} MB)"])
    table(f"Generated corpus: {args.big_files} files x {args.big_beats} beats, memory-mapped shards", ["what", "value"], rows)
    RESULTS["bigcorpus"] = {"pack_mb": pack_mb, "prep_s": prep_s, "samples": samples, "before": before, "after": after}


# ------------------------------------------------------------------------------------------------ sampling
def _lstm(embedding=256, hidden=1024, layers=1, vocab=90, eos=None):
    import torch

    from fractalmusic.generators.recurrent import LSTMGenerator
    from fractalmusic.representations.base import RepresentationSpec

    torch.manual_seed(0)
    spec = RepresentationSpec(kind="tokens", vocab_size=vocab, pad_id=0, bos_id=1, eos_id=eos)
    gen = LSTMGenerator.build({"embedding_dim": embedding, "hidden_size": hidden, "num_layers": layers,
                               "dropout": 0.0}, spec)
    return gen.eval()


def bench_sampling(args) -> None:
    import torch

    from fractalmusic import sampling

    gen = _lstm()
    L = args.sample_tokens

    def batched():
        gen.sample(16, L, seed=1)

    def one_at_a_time():
        for i in range(2):
            gen.sample(1, L, seed=i)

    @torch.no_grad()
    def naive(window=100):
        g = sampling.make_generator(0, "cpu")
        seq = [1]
        for _ in range(L):
            x = torch.tensor([seq[-window:]], dtype=torch.long)
            logits, _ = gen(x)
            seq.append(int(sampling.draw(logits[:, -1], 1.0, None, None, False, g)[0]))

    batched()
    t_b = timed(batched, 3)
    t_1 = timed(one_at_a_time, 2) / 2
    t_n = timed(naive, 1)
    tps = {"16 at once, carried state": 16 * L / t_b, "one at a time, carried state": L / t_1,
           "naive: re-feed last 100 tokens per token": L / t_n}
    base = tps["16 at once, carried state"]
    rows = [[k, f"{v:,.0f}", f"{base / v:.1f}x"] for k, v in tps.items()]
    table(f"LSTM sampling, embedding 256 / hidden 1024, {L} tokens per tune (tokens/s)",
          ["method", "tokens/s", "16-at-once is faster by"], rows)
    RESULTS["sampling"] = {"tokens_per_s": tps, "tokens_per_tune": L}


# ------------------------------------------------------------------------------------------------ training
def bench_training(args) -> None:
    import torch

    from fractalmusic import plugins
    from fractalmusic.data import DataConfig, build_datasets, make_loader
    from fractalmusic.training.config import TrainConfig
    from fractalmusic.training.trainer import Trainer

    rep = plugins.get_representation("abc")()
    dcfg = DataConfig(data="folk", crop_length=100, num_prep_workers=2)
    train_ds, _, _ = build_datasets(dcfg, rep, log=lambda *_: None)
    steps = args.train_steps
    batch = 8

    def bare() -> float:
        gen = _lstm(vocab=rep.vocab_size, eos=rep.eos_id).train()
        opt = torch.optim.AdamW(gen.parameters(), lr=2e-3)
        loader = make_loader(train_ds, batch, True, seed=0, epoch=0)
        it = iter(loader)
        n_units = 0
        t = time.perf_counter()
        for _ in range(steps):
            b = next(it)
            out = gen.loss(b)
            opt.zero_grad(set_to_none=True)
            out["loss"].backward()
            torch.nn.utils.clip_grad_norm_(gen.parameters(), 1.0)
            opt.step()
            n_units += int(out["n"])
        return n_units / (time.perf_counter() - t)

    def trainer() -> float:
        gen = _lstm(vocab=rep.vocab_size, eos=rep.eos_id).train()
        with tempfile.TemporaryDirectory() as d:
            cfg = TrainConfig(max_steps=steps, batch_size=batch, lr=2e-3, warmup_steps=0, grad_clip=1.0,
                              log_every_n_steps=50, val_check_interval_steps=10**6,
                              checkpoint_every_n_steps=10**6, save_top_k=0, output_dir=d, progress=False,
                              tensorboard=False, device="cpu")
            t = Trainer(gen, rep, cfg, train_ds, None, echo=lambda *_: None)
            stats = t.fit()
        return stats["units_per_s"]

    bare_r, tr_r = [], []
    for _ in range(args.repeats):
        bare_r.append(bare())
        tr_r.append(trainer())
    b, tr = statistics.median(bare_r), statistics.median(tr_r)
    table(f"LSTM training at the MIT lab configuration (embedding 256, hidden 1024, seq 100, batch 8), "
          f"{steps} steps x {args.repeats} interleaved runs (tokens/s, median)",
          ["loop", "tokens/s", "relative"],
          [["bare PyTorch loop", f"{b:,.0f}", "1.00"], ["fmusic Trainer", f"{tr:,.0f}", f"{tr / b:.2f}"]])
    RESULTS["training"] = {"bare": bare_r, "trainer": tr_r}


# ------------------------------------------------------------------------------------------------ fractal
FRACTAL_CHILD = r"""
import json, resource, sys, time, torch
from fractalmusic.generators.fractal import MARGenerator
from fractalmusic.representations.base import RepresentationSpec
from fractalmusic.training.cpu_memory import keep_freed_memory
cfg = json.loads(sys.argv[1])
def status_mb(key):  # this process's VmRSS / VmHWM (ru_maxrss would carry the parent's peak over the exec)
    for line in open("/proc/self/status"):
        if line.startswith(key + ":"):
            return int(line.split()[1]) / 1024
if cfg.get("keep_freed", True):
    keep_freed_memory()  # what the Trainer does on CPU
torch.manual_seed(0)
spec = RepresentationSpec(kind="grid", vocab_size=3)
gen = MARGenerator.build(cfg["model"], spec)
W, B = cfg["width"], cfg["batch"]
gen.set_grad_checkpointing(cfg["ckpt"])
opt = torch.optim.AdamW(gen.parameters(), lr=1e-4)
g = torch.Generator().manual_seed(0)
grid = (torch.rand(B, 128, W, generator=g) < 0.04).long() * 2
mask = torch.ones(B, W, dtype=torch.bool)
times, cells, faults = [], [], []
base = status_mb("VmRSS")  # python, torch, the model; before any step
# Two passes over the same seeds: the first grows the heap to fit these steps (as the first minutes of a run do),
# the second is timed.
for rep in range(2):
    for i in range(cfg["steps"]):
        torch.manual_seed(1000 + i)  # the same level-0 mask ratios at every width: the step cost follows them
        r0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        t = time.perf_counter()
        out = gen.loss({"grid": grid, "mask": mask})
        opt.zero_grad(set_to_none=True)
        out["loss"].backward()
        opt.step()
        if rep:
            times.append(time.perf_counter() - t)
            cells.append(out["cells_predicted"])
            faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - r0)
peak = status_mb("VmHWM")
print(json.dumps({"step_s": sum(times) / len(times), "times": times, "us_per_cell": 1e6 * sum(times) / sum(cells),
                  "faults_per_step": sum(faults) / len(faults), "peak_mb": peak, "base_mb": base}))
"""


def _child(cfg: dict) -> dict:
    out = subprocess.run([sys.executable, "-c", FRACTAL_CHILD, json.dumps(cfg)], capture_output=True, text=True)
    if out.returncode:
        raise RuntimeError(out.stderr[-2000:])
    return json.loads(out.stdout.strip().splitlines()[-1])


def bench_fractal(args) -> None:
    import torch

    from fractalmusic.generators.fractal import ARGenerator, MARGenerator
    from fractalmusic.representations.base import RepresentationSpec

    spec = RepresentationSpec(kind="grid", vocab_size=3)
    small = {"model_size": "small"}
    torch.manual_seed(0)
    mar = MARGenerator.build(dict(small), spec).eval()
    ar = ARGenerator.build(dict(small), spec).eval()
    rows = []
    t_mar1 = timed(lambda: mar.sample(1, 128, seed=0), 2)
    t_mar4 = timed(lambda: mar.sample(4, 128, seed=0), 1) / 4
    t_ar1 = timed(lambda: ar.sample(1, 128, seed=0), 1)
    fm = {"mar1": 2.5, "mar4": 1.6, "ar1": 23.0}
    rows.append(["all-MAR, one roll", f"{t_mar1:.2f}", fm["mar1"], f"{fm['mar1'] / t_mar1:.1f}x"])
    rows.append(["all-MAR, per roll in a batch of 4", f"{t_mar4:.2f}", fm["mar4"], f"{fm['mar4'] / t_mar4:.1f}x"])
    rows.append(["all-AR, one roll", f"{t_ar1:.2f}", fm["ar1"], f"{fm['ar1'] / t_ar1:.1f}x"])
    if args.sixteen:
        t_mar16 = timed(lambda: mar.sample(16, 128, seed=0), 1)
        rows.append(["all-MAR, 16 rolls at once (total)", f"{t_mar16:.2f}", "-", "-"])
    table("Fractal sampling at FractalMIDI's small configuration (widths 256/256/128/64, depths 8/4/2/1), "
          "one 128x128 roll (seconds; FractalMIDI measured on a 2-core CPU)",
          ["case", "fractalmusic s", "FractalMIDI s", "faster by"], rows)
    RESULTS["fractal_sampling"] = {"mar1": t_mar1, "mar4_per_roll": t_mar4, "ar1": t_ar1}

    step = _child({"model": small, "width": 128, "batch": 4, "ckpt": False, "steps": args.fractal_steps})
    table("Fractal training step at the small configuration, W=128, batch 4, all-MAR (seconds)",
          ["fractalmusic s/step", "FractalMIDI s/step"], [[f"{step['step_s']:.2f}", "1.55"]])
    RESULTS["fractal_train_step"] = step

    # Time with the trainer's allocator setting (keep freed memory); memory with glibc's default, which hands big
    # freed blocks back at once, so that peak RSS follows the peak of live tensors rather than heap fragmentation.
    rows, scale = [], {}
    model = {"model_size": "tiny" if args.quick else "small", "max_crop_length": 1024}
    for W in (128, 512, 1024):
        case = {"model": model, "width": W, "batch": 2, "steps": args.scale_steps}
        r = _child({**case, "ckpt": False})
        rg = _child({**case, "ckpt": False, "keep_freed": False})
        rc = _child({**case, "ckpt": True, "keep_freed": False})
        scale[W] = {"plain": r, "glibc_default": rg, "glibc_default_grad_ckpt": rc}
        base, base_g = scale[128]["plain"]["step_s"], scale[128]["glibc_default"]["step_s"]
        rows.append([W, f"{r['step_s']:.2f}", f"{r['step_s'] / base * 128 / W:.2f}", f"{r['us_per_cell']:.0f}",
                     f"{r['faults_per_step']:,.0f}", f"{rg['step_s']:.2f}", f"{rg['step_s'] / base_g * 128 / W:.2f}",
                     f"{rg['faults_per_step']:,.0f}", f"{rg['peak_mb']:.0f}", f"{rc['peak_mb']:.0f}",
                     f"{rc['peak_mb'] / rg['peak_mb']:.2f}", f"{rg['base_mb']:.0f}",
                     f"{(rc['peak_mb'] - rc['base_mb']) / (rg['peak_mb'] - rg['base_mb']):.2f}", f"{rc['step_s']:.2f}"])
    table(f"Training cost against crop length ({model['model_size']} preset, batch 2, all-MAR, mean of "
          f"{args.scale_steps} steps with the same mask-ratio draws at every width, timed on a second pass over them; "
          f"each case a fresh process; "
          f"peak RSS in MB with glibc's default allocator)",
          ["crop W", "s/step", "per step of width vs W=128 (1.0 = linear)", "us per predicted cell",
           "page faults/step", "s/step, glibc default", "per width vs 128, glibc default",
           "page faults/step, glibc default", "peak MB", "peak MB, grad ckpt", "ckpt/plain", "MB before step 1",
           "ckpt/plain above that", "s/step, grad ckpt (glibc default)"],
          rows)
    RESULTS["fractal_scaling"] = {str(k): v for k, v in scale.items()}


# ------------------------------------------------------------------------------------------------ throughput
def bench_throughput(args) -> None:
    """Trainer units/s of every built-in generator at its default configuration on its default corpus."""
    import torch

    from fractalmusic import plugins
    from fractalmusic.data import DataConfig, build_datasets
    from fractalmusic.training.config import TrainConfig
    from fractalmusic.training.trainer import Trainer

    rows, res = [], {}
    cases = [("abc", "rnn", {}, 32), ("abc", "gru", {}, 32), ("abc", "lstm", {}, 32),
             ("pianoroll", "mar", {"model_size": "small"}, 4), ("pianoroll", "ar", {"model_size": "small"}, 4)]
    datasets = {}
    for rep_name, gen_name, gen_cfg, batch in cases:
        rep_cls = plugins.get_representation(rep_name)
        if rep_name not in datasets:
            rep = rep_cls()
            datasets[rep_name] = (rep, build_datasets(DataConfig(num_prep_workers=2), rep, log=lambda *_: None)[0])
        rep, train_ds = datasets[rep_name]
        torch.manual_seed(0)
        gen = plugins.get_generator(gen_name).build(gen_cfg, rep.spec())
        with tempfile.TemporaryDirectory() as d:
            cfg = TrainConfig(max_steps=args.throughput_steps, batch_size=batch, warmup_steps=0,
                              log_every_n_steps=10**6, val_check_interval_steps=10**6,
                              checkpoint_every_n_steps=10**6, save_top_k=0, output_dir=d, progress=False,
                              tensorboard=False, device="cpu")
            stats = Trainer(gen, rep, cfg, train_ds, None, echo=lambda *_: None).fit()
        res[gen_name] = stats["units_per_s"]
        unit = stats["unit"]
        crop = train_ds.crop_length if hasattr(train_ds, "crop_length") else "-"
        rows.append([gen_name, rep_name, f"{gen.num_parameters() / 1e6:.2f}M", batch, crop,
                     f"{stats['units_per_s']:,.0f} {unit}/s", f"{stats['train_seconds'] / stats['steps_run']:.2f}"])
    table(f"Training throughput of each generator at its defaults ({args.throughput_steps} steps, default corpus)",
          ["generator", "repr", "parameters", "batch", "crop", "throughput", "s/step"], rows)
    RESULTS["throughput"] = res


SECTIONS = {"prep": bench_prep, "realmidi": bench_realmidi, "bigcorpus": bench_bigcorpus, "throughput": bench_throughput, "sampling": bench_sampling, "training": bench_training, "fractal": bench_fractal}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", default=",".join(SECTIONS), help="comma list of sections")
    ap.add_argument("--json", help="write raw results here")
    ap.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's choice)")
    ap.add_argument("--chorales", type=int, default=40, help="chorales converted to MIDI for the prep section")
    ap.add_argument("--big-files", type=int, default=4000, help="generated MIDI files for the bigcorpus section")
    ap.add_argument("--big-beats", type=int, default=1000, help="beats per generated file")
    ap.add_argument("--big-seconds", type=float, default=120.0, help="seconds of crops read in the bigcorpus section")
    ap.add_argument("--big-dir", default=None, help="folder for the generated corpus and its cache (kept)")
    ap.add_argument("--midi-dir", default=os.environ.get("FRACTALMUSIC_BENCH_MIDI"),
                    help="folder of real MIDI files for the realmidi section (see its how-to)")
    ap.add_argument("--sample-tokens", type=int, default=400)
    ap.add_argument("--train-steps", type=int, default=40)
    ap.add_argument("--throughput-steps", type=int, default=15)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--fractal-steps", type=int, default=3)
    ap.add_argument("--scale-steps", type=int, default=6, help="steps per crop length (run twice, the second timed)")
    ap.add_argument("--sixteen", action="store_true", help="also time 16 MAR rolls at once")
    ap.add_argument("--quick", action="store_true", help="tiny preset for the crop-length sweep")
    args = ap.parse_args()
    import torch

    warnings.filterwarnings("ignore")  # music21's lyric-decoding chatter on the test MIDIs
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} CPUs")
    for name in args.only.split(","):
        name = name.strip()
        if name not in SECTIONS:
            ap.error(f"unknown section {name!r}; choose from {', '.join(SECTIONS)}")
        log(f"[bench] {name} ...")
        SECTIONS[name](args)
    if args.json:
        Path(args.json).write_text(json.dumps(RESULTS, indent=2, default=float))


if __name__ == "__main__":
    main()
