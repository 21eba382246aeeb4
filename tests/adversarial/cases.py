"""Every case of issue 13, generated here (no fixture files in the repository), run through the real `fmusic`.

Areas: reading (bad files, loops, FIFOs, huge lines and ticks, copies, drums), sampling and rendering sizes,
options, checkpoints (bit flips, missing keys, non-JSON config, NaN weights), training (one writer per folder,
SIGINT/SIGTERM, SIGKILL during data preparation, a full disk on a tiny tmpfs).
"""
from __future__ import annotations

import importlib.util
import json
import os
import shutil
import signal
import struct
import subprocess
import sys
import time
import zipfile
from pathlib import Path

from harness import Context, case, no_crash

# ================================================================================================ inputs


def chorale() -> Path:
    spec = importlib.util.find_spec("music21")
    return Path(spec.origin).parent / "corpus" / "bach" / "bwv66.6.mxl"


def _vlq(n: int) -> bytes:
    out = [n & 0x7F]
    n >>= 7
    while n:
        out.append(0x80 | (n & 0x7F))
        n >>= 7
    return bytes(reversed(out))


def midi_bytes(events: bytes, division: int = 96) -> bytes:
    """A format-0 MIDI file with one track of `events` (an end-of-track is appended)."""
    track = events + b"\x00\xff\x2f\x00"
    return b"MThd" + struct.pack(">IHHH", 6, 0, 1, division) + b"MTrk" + struct.pack(">I", len(track)) + track


def gap_midi(gap: int = 10**7) -> bytes:
    """About 45 bytes: a tempo, a note, then a note-off 10^7 ticks later (over 100,000 beats at 96 per beat)."""
    return midi_bytes(b"\x00\xff\x51\x03\x07\xa1\x20" + b"\x00\x90\x3c\x40" + _vlq(gap) + b"\x80\x3c\x40")


def drum_midi() -> bytes:
    """Eight bass-drum hits on channel 10 and nothing else."""
    return midi_bytes(b"".join(b"\x00\x99\x24\x64" + _vlq(48) + b"\x89\x24\x40" for _ in range(8)))


def write(path: Path, data: bytes | str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(data, str):
        path.write_text(data)
    else:
        path.write_bytes(data)
    return path


def one_line_abc(size: int = 5 * 1024 * 1024) -> str:
    return "X:1\nT:long\nM:4/4\nL:1/8\nK:C\n" + "CDEF" * (size // 4) + "\n"


TUNE = "X:{n}\nT:{title}\nM:4/4\nL:1/8\nK:G\nGABc dBAG|FGAB cAFD|GABc dBAG|FGAB G4|\n\n"


# ================================================================================================ shared runs
TOKEN_RUN = ("--repr", "abc", "--generator", "lstm", "--hidden-size", "16", "--embedding-dim", "8", "--num-layers",
             "1", "--crop-length", "16", "--batch-size", "4", "--max-pieces", "30", "--num-prep-workers", "0")
COMMON = ("--log-every-n-steps", "1", "--val-check-interval-steps", "100", "--checkpoint-every-n-steps", "2",
          "--no-progress", "--no-tensorboard", "--device", "cpu")


def token_run(ctx: Context) -> Path:
    """A finished two-step LSTM run (made once per suite run): its folder."""
    if "token_run" not in ctx.shared:
        out = ctx.shared["base"] / "token-run"
        res = ctx.fmusic("train", *TOKEN_RUN, *COMMON, "--max-steps", "2", "--output-dir", out, limit=300)
        assert res.code == 0, res.stderr[-2000:]
        ctx.shared["token_run"] = out
    return ctx.shared["token_run"]


def mar_checkpoint(ctx: Context) -> Path:
    """An untrained tiny MAR checkpoint over piano rolls (enough for sizes and shapes)."""
    if "mar" not in ctx.shared:
        import torch

        from fractalmusic.generators.fractal import MARGenerator
        from fractalmusic.representations.pianoroll import PianoRollRepresentation
        from fractalmusic.training.checkpoint import make_payload, save_checkpoint

        torch.manual_seed(0)
        rep = PianoRollRepresentation()
        gen = MARGenerator.build({"model_size": "tiny", "max_crop_length": 128}, rep.spec())
        path = ctx.shared["base"] / "mar.pt"
        save_checkpoint(path, make_payload(rep, gen, data_config=json.dumps({"crop_length": 64})))
        ctx.shared["mar"] = path
    return ctx.shared["mar"]


def tampered(ctx: Context, change) -> Path:
    """A copy of the token run's last.pt, loaded, changed by `change(dict)` and saved again with torch.save."""
    import torch

    ckpt = torch.load(token_run(ctx) / "checkpoints" / "last.pt", map_location="cpu", weights_only=True)
    change(ckpt)
    path = ctx.tmp / "tampered.pt"
    torch.save(ckpt, path)
    return path


# ================================================================================================ reading
@case("reading", "data stats finishes in seconds; the FIFO and the symlink loop are reported with reasons")
def case_folder_with_symlink_loop_fifo_and_chorale(ctx: Context):
    d = ctx.tmp / "corpus"
    (d / "sub").mkdir(parents=True)
    shutil.copy(chorale(), d)
    (d / "sub" / "loop").symlink_to("..")
    os.mkfifo(d / "pipe.mid")
    res = ctx.fmusic("data", "stats", "--data", d, "--repr", "pianoroll", limit=60)
    ctx.note(res)
    no_crash(res)
    assert res.code == 0, res.stderr
    first = res.stdout.splitlines()[0]
    ctx.outcome = f"exit 0 in {res.seconds:.1f} s: {first}"
    assert "1 pieces from 1 files read, 2 skipped" in first, first
    assert "not a regular file (a FIFO) (pipe.mid)" in first and "symbolic link loop" in first, first
    assert res.seconds < 30


@case("reading", "two symlink loops: each file read once, each loop reported once, no duplicates")
def case_two_symlink_loops(ctx: Context):
    d = ctx.tmp / "corpus"
    (d / "a" / "b").mkdir(parents=True)
    shutil.copy(chorale(), d / "a" / "b")
    (d / "a" / "b" / "up").symlink_to("../..")
    (d / "a" / "back").symlink_to("..")
    (d / "again").symlink_to("a")  # a second way into a folder: searched once, not a loop
    res = ctx.fmusic("data", "stats", "--data", d, "--repr", "pianoroll", limit=60)
    ctx.note(res)
    no_crash(res)
    assert res.code == 0, res.stderr
    first = res.stdout.splitlines()[0]
    ctx.outcome = f"exit 0 in {res.seconds:.1f} s: {first}"
    assert "1 pieces from 1 files read, 2 skipped: 2 symbolic link loop" in first, first
    assert "duplicate" not in first


@case("reading", "a FIFO named .mid given as --data: exit 2, one line, never opened")
def case_fifo_as_data(ctx: Context):
    os.mkfifo(ctx.tmp / "song.mid")
    ctx.one_line(ctx.fmusic("data", "stats", "--data", ctx.tmp / "song.mid", "--repr", "pianoroll", limit=30),
                 contains="not a regular file (a FIFO)", within=30)


@case("rendering", "fmusic render of a FIFO: exit 2, one line")
def case_fifo_render(ctx: Context):
    os.mkfifo(ctx.tmp / "song.mid")
    ctx.one_line(ctx.fmusic("render", ctx.tmp / "song.mid", "--out-dir", ctx.tmp / "out", limit=30),
                 contains="FIFO", within=30)


@case("reading", "a folder of only bad files: exit 2 in seconds, one line with the reasons")
def case_only_bad_files(ctx: Context):
    d = ctx.tmp / "bad"
    write(d / "junk.mid", b"not a midi file at all")
    write(d / "empty.mid", b"")
    write(d / "binary.abc", b"\x00\x01\x02" * 100)
    write(d / "broken.xml", "<score-partwise><part")
    line = ctx.one_line(ctx.fmusic("data", "stats", "--data", d, "--repr", "pianoroll", limit=60),
                        contains="no readable music", within=60)
    assert "4 skipped" in line, line


@case("reading", "a training run on a folder of only bad files: exit 2 in seconds, one line")
def case_train_on_only_bad_files(ctx: Context):
    d = ctx.tmp / "bad"
    write(d / "junk.mid", b"MThd\x00\x00\x00\x06junk")
    write(d / "other.mid", b"RIFF....")
    ctx.one_line(ctx.fmusic("train", "--data", d, "--repr", "pianoroll", "--generator", "mar", "--model-size",
                            "tiny", "--num-prep-workers", "0", "--output-dir", ctx.tmp / "run", limit=60),
                 contains="no readable music", within=60)


@case("rendering", "render of a 5 MB one-line ABC file: exit 2 in seconds, one line naming the line limit")
def case_render_5mb_abc_line(ctx: Context):
    path = write(ctx.tmp / "long.abc", one_line_abc())
    ctx.one_line(ctx.fmusic("render", path, "--out-dir", ctx.tmp / "out", limit=60),
                 contains=("line 6 is 5,242,880 characters long", "limit"), within=30)


@case("rendering", "render of a book with a good tune and one over the line limit: the good one is written, the "
      "other named in one warning; --tune of the bad one: exit 2, one line")
def case_render_book_with_a_long_tune(ctx: Context):
    book = write(ctx.tmp / "book.abc", TUNE.format(n=1, title="good") + "X:2\nT:long\nK:C\n" + "C" * 9000 + "\n")
    res = ctx.fmusic("render", book, "--to", "abc", "--out-dir", ctx.tmp / "out", limit=60)
    no_crash(res)
    assert res.code == 0, res.stderr
    assert res.lines == [f"warning: skipped {book}#X2: line 4 is 9,000 characters long (limit 8,192)"], res.stderr
    assert (ctx.tmp / "out" / "book.abc").exists()
    line = ctx.one_line(ctx.fmusic("render", book, "--tune", "2", "--to", "abc", "--out-dir", ctx.tmp / "out",
                                   limit=60), contains="line 4 is 9,000 characters long")
    ctx.outcome = f"exit 0 with {res.lines[0]} | --tune 2: exit 2: {line}"


@case("reading", "data stats of a 5 MB one-line ABC file: exit 2 in seconds, one line")
def case_stats_5mb_abc_line(ctx: Context):
    path = write(ctx.tmp / "long.abc", one_line_abc())
    ctx.one_line(ctx.fmusic("data", "stats", "--data", path, "--repr", "abc", limit=60),
                 contains=("no readable music", "characters long"), within=30)


@case("reading", "an ABC tune with a 5 MB title beside a good tune: the good one is read, the other skipped")
def case_abc_5mb_title(ctx: Context):
    book = "X:1\nT:" + "t" * (5 * 1024 * 1024) + "\nK:C\nCDEF|\n\n" + TUNE.format(n=2, title="good")
    path = write(ctx.tmp / "title.abc", book)
    res = ctx.fmusic("data", "stats", "--data", path, "--repr", "abc", limit=60)
    ctx.note(res)
    no_crash(res)
    assert res.code == 0, res.stderr
    first = res.stdout.splitlines()[0]
    ctx.outcome = f"exit 0 in {res.seconds:.1f} s: {first}"
    assert "1 pieces" in first and "title is 5,242,882 characters long" in first, first


@case("reading", "an ABC book of 20,001 tunes: the first 20,000 are read, the rest counted as skipped")
def case_tunes_per_book(ctx: Context):
    text = "".join(f"X:{n}\nT:t{n}\nK:C\n{'CDEF'[n % 4]}{'GABc'[n // 4 % 4]}{n % 7 + 1}|\n\n" for n in range(20001))
    path = write(ctx.tmp / "many.abc", text)
    res = ctx.fmusic("data", "stats", "--data", path, "--repr", "abc", "--val-fraction", "0", limit=120)
    ctx.note(res)
    no_crash(res)
    assert res.code == 0, res.stderr
    first = res.stdout.splitlines()[0]
    ctx.outcome = f"exit 0 in {res.seconds:.1f} s: {first}"
    assert "over the limit of 20,000 tunes per book (1 not read) (many.abc#X...)" in first, first


@case("reading", "a file over the 64 MiB limit (sparse): skipped with the size, never read")
def case_huge_file(ctx: Context):
    d = ctx.tmp / "corpus"
    d.mkdir()
    shutil.copy(chorale(), d)
    with open(d / "huge.mid", "wb") as f:
        f.truncate(200 * 1024 * 1024)
    res = ctx.fmusic("data", "stats", "--data", d, "--repr", "pianoroll", limit=60)
    ctx.note(res)
    no_crash(res)
    assert res.code == 0, res.stderr
    first = res.stdout.splitlines()[0]
    ctx.outcome = f"exit 0 in {res.seconds:.1f} s: {first}"
    assert "over the 64.0 MiB limit" in first and "(huge.mid)" in first, first


@case("reading", "a .mxl zip bomb (70 KB that unpacks to 70 MiB) and a billion-laughs .xml: refused in seconds")
def case_xml_bombs(ctx: Context):
    import zipfile

    with zipfile.ZipFile(ctx.tmp / "bomb.mxl", "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("META-INF/container.xml", '<?xml version="1.0"?><container><rootfiles>'
                   '<rootfile full-path="score.xml"/></rootfiles></container>')
        z.writestr("score.xml", "<score-partwise>" + " " * (70 * 1024 * 1024) + "</score-partwise>")
    a = ctx.one_line(ctx.fmusic("render", ctx.tmp / "bomb.mxl", "--to", "mid", "--out-dir", ctx.tmp / "o",
                                limit=60), contains="unpacks to 70.0 MiB, over the 64.0 MiB limit", within=30)
    entities = "".join(f'<!ENTITY l{i} "{("&l%d;" % (i - 1)) * 10}">\n' for i in range(1, 10))
    write(ctx.tmp / "laughs.xml", f'<?xml version="1.0"?>\n<!DOCTYPE s [\n<!ENTITY l0 "lol">\n{entities}]>\n'
          "<score-partwise><work><work-title>&l9;</work-title></work></score-partwise>\n")
    b = ctx.one_line(ctx.fmusic("render", ctx.tmp / "laughs.xml", "--to", "mid", "--out-dir", ctx.tmp / "o",
                                limit=60), within=30)
    ctx.outcome = f"{a} | {b}"


@case("reading", "a link to /dev/zero named .mid in a corpus: reported as a device, never read")
def case_device_in_corpus(ctx: Context):
    d = ctx.tmp / "corpus"
    d.mkdir()
    shutil.copy(chorale(), d)
    (d / "zero.mid").symlink_to("/dev/zero")
    res = ctx.fmusic("data", "stats", "--data", d, "--repr", "pianoroll", limit=60)
    ctx.note(res)
    no_crash(res)
    assert res.code == 0, res.stderr
    first = res.stdout.splitlines()[0]
    ctx.outcome = f"exit 0 in {res.seconds:.1f} s: {first}"
    assert "not a regular file (a device) (zero.mid)" in first, first


@case("rendering", "render of a 45-byte MIDI with a 10^7-tick gap: exit 2 in seconds, one line (no 92 GiB)")
def case_render_gap_midi(ctx: Context):
    path = write(ctx.tmp / "gap.mid", gap_midi())
    assert len(gap_midi()) <= 50
    ctx.one_line(ctx.fmusic("render", path, "--out-dir", ctx.tmp / "out", limit=60), contains="gap.mid",
                 within=30)
    assert not (ctx.tmp / "out" / "gap.png").exists() and not (ctx.tmp / "out" / "gap.wav").exists()


@case("reading", "data stats --repr pianoroll of the 10^7-tick MIDI beside a chorale: skipped with a reason")
def case_stats_gap_midi(ctx: Context):
    d = ctx.tmp / "corpus"
    write(d / "gap.mid", gap_midi())
    shutil.copy(chorale(), d)
    res = ctx.fmusic("data", "stats", "--data", d, "--repr", "pianoroll", limit=60)
    ctx.note(res)
    no_crash(res)
    assert res.code == 0, res.stderr
    first = res.stdout.splitlines()[0]
    ctx.outcome = f"exit 0 in {res.seconds:.1f} s: {first}"
    assert "1 pieces from" in first and "1 skipped" in first and "(gap.mid)" in first, first
    cache = sum(f.stat().st_size for f in (ctx.tmp / ".fm-cache").rglob("*") if f.is_file())
    assert cache < 20 * 1024 * 1024, f"cache grew to {cache} bytes"


@case("rendering", "a 1,000-beat MIDI rendered to PNG and WAV within limits in seconds")
def case_render_long_piece_within_limits(ctx: Context):
    path = write(ctx.tmp / "long.mid", midi_bytes(b"\x00\x90\x3c\x40" + _vlq(96 * 1000) + b"\x80\x3c\x40"))
    res = ctx.fmusic("render", path, "--to", "png,mid", "--out-dir", ctx.tmp / "out", limit=120)
    ctx.note(res)
    no_crash(res)
    assert res.code == 0, res.stderr
    png = ctx.tmp / "out" / "long.png"
    assert png.stat().st_size < 5 * 1024 * 1024
    ctx.outcome += f"; PNG {png.stat().st_size // 1024} KiB"


@case("rendering", "WAV of a piece over 30 minutes: exit 2, one line naming the WAV limit")
def case_render_wav_too_long(ctx: Context):
    path = write(ctx.tmp / "long.mid", midi_bytes(b"\x00\x90\x3c\x40" + _vlq(96 * 4000) + b"\x80\x3c\x40"))
    ctx.one_line(ctx.fmusic("render", path, "--to", "wav", "--out-dir", ctx.tmp / "out", limit=60),
                 contains="WAV rendering is limited to 1,800 s", within=30)


@case("reading", "a book of 2,000 identical tunes: 1,999 copies dropped before the split, nothing in validation")
def case_identical_tunes(ctx: Context):
    path = write(ctx.tmp / "same.abc", "".join(TUNE.format(n=n, title="Same") for n in range(1, 2001)))
    res = ctx.fmusic("data", "stats", "--data", path, "--repr", "abc", limit=60)
    ctx.note(res)
    no_crash(res)
    assert res.code == 0, res.stderr
    assert "1999 copies of pieces already read dropped before the split" in res.stdout, res.stdout
    assert "pieces: 1 training, 0 validation" in res.stdout, res.stdout
    ctx.outcome = f"exit 0 in {res.seconds:.1f} s: {res.stdout.splitlines()[1]}"


@case("reading", "a drum-only MIDI beside a chorale (drums excluded): skipped with a reason, not a silent roll")
def case_drum_only(ctx: Context):
    d = ctx.tmp / "corpus"
    write(d / "drums.mid", drum_midi())
    shutil.copy(chorale(), d)
    res = ctx.fmusic("data", "stats", "--data", d, "--repr", "pianoroll", limit=60)
    ctx.note(res)
    no_crash(res)
    assert res.code == 0, res.stderr
    line = next(x for x in res.stdout.splitlines() if x.startswith("encoding:"))
    ctx.outcome = f"exit 0 in {res.seconds:.1f} s: {line}"
    assert "drums only, and pianoroll leaves drums out (--include-drums keeps them) (drums.mid)" in line, line
    assert "pieces: 1 training" in res.stdout


@case("reading", "an unreadable sub-folder is reported, the rest is read")
def case_unreadable_subfolder(ctx: Context):
    d = ctx.tmp / "corpus"
    (d / "locked").mkdir(parents=True)
    shutil.copy(chorale(), d)
    write(d / "locked" / "x.mid", drum_midi())
    real = os.scandir
    locked = str(d / "locked")

    def scandir(path="."):  # root reads any folder: make this one fail as it would for a user
        if os.fspath(path) == locked:
            raise PermissionError(13, "Permission denied", locked)
        return real(path)

    os.scandir = scandir
    try:
        res = ctx.fmusic("data", "stats", "--data", d, "--repr", "pianoroll", limit=60)
    finally:
        os.scandir = real
    ctx.note(res)
    no_crash(res)
    assert res.code == 0, res.stderr
    first = res.stdout.splitlines()[0]
    ctx.outcome = f"exit 0 in {res.seconds:.1f} s: {first}"
    assert "folder cannot be read (Permission denied) (locked)" in first, first


@case("reading", "a failure cached under one path is reported with the file's current path")
def case_cached_failure_current_path(ctx: Context):
    bad = "X:1\nT:a\nK:C\n\nX:2\nT:b\nK:C\n"  # two tunes with no notes
    write(ctx.tmp / "a" / "bad.abc", bad)
    shutil.copy(chorale(), ctx.tmp / "a")
    first = ctx.fmusic("data", "stats", "--data", ctx.tmp / "a", "--repr", "pianoroll", limit=60)
    assert first.code == 0, first.stderr
    (ctx.tmp / "a").rename(ctx.tmp / "b")
    res = ctx.fmusic("data", "stats", "--data", ctx.tmp / "b", "--repr", "pianoroll", limit=60)
    ctx.note(res)
    no_crash(res)
    line = res.stdout.splitlines()[0]
    ctx.outcome = f"exit 0 in {res.seconds:.1f} s: {line}"
    assert "from the cache" in line and "skipped" in line, line
    assert str(ctx.tmp / "a") not in res.stdout + res.stderr, res.stdout


@case("reading", "decoding piano rolls of the wrong height never raises (the repair is recorded)")
def case_decode_wrong_height(ctx: Context):
    import numpy as np

    from fractalmusic.representations.pianoroll import PianoRollRepresentation

    rep = PianoRollRepresentation()
    shapes = [(64, 16), (200, 8), (16,), (), (2, 3, 4), (0,)]
    for shape in shapes:
        piece = rep.decode(np.full(shape, 2, dtype=np.int64))
        assert piece.meta["repairs"]["shape"] == list(shape)
    ctx.outcome = f"{len(shapes)} shapes decoded, each with repairs['shape']"


@case("reading", "SIGKILL of `fmusic data prepare`: its reader workers exit too (none left blocked)")
def case_sigkill_prepare(ctx: Context):
    d = ctx.tmp / "corpus"
    d.mkdir()
    for p in sorted(chorale().parent.glob("bwv*.mxl"))[:24]:
        shutil.copy(p, d)
    proc = ctx.spawn("data", "prepare", "--data", d, "--repr", "pianoroll", "--num-prep-workers", "2")
    try:
        workers = []
        deadline = time.monotonic() + 90
        while not workers and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.2)
            workers = _children(proc.pid)
        assert workers, "no worker processes appeared"
        proc.kill()
        proc.wait()
        deadline = time.monotonic() + 10
        while [w for w in workers if _alive(w)] and time.monotonic() < deadline:
            time.sleep(0.1)
        left = [w for w in workers if _alive(w)]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    for w in left:
        os.kill(w, signal.SIGKILL)  # our own stray workers only
    assert not left, f"workers {left} outlived their parent"
    ctx.outcome = f"{len(workers)} workers exited within seconds of the parent's SIGKILL"


@case("reading", "Ctrl-C (SIGINT to the process group) during `fmusic data prepare`: exit 130 in seconds, one "
      "line, no worker left (queued files are not read first)")
def case_sigint_prepare(ctx: Context):
    d = ctx.tmp / "corpus"
    d.mkdir()
    for p in sorted(chorale().parent.glob("bwv*.mxl"))[:40]:
        shutil.copy(p, d)
    proc = ctx.spawn("data", "prepare", "--data", d, "--repr", "pianoroll", "--num-prep-workers", "2",
                     "--cache-dir", ctx.tmp / "cache", start_new_session=True)
    try:
        workers = []
        deadline = time.monotonic() + 90
        while not workers and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.2)
            workers = _children(proc.pid)
        assert workers, "no worker processes appeared"
        os.killpg(proc.pid, signal.SIGINT)
        start = time.monotonic()
        _, stderr = proc.communicate(timeout=60)
        seconds = time.monotonic() - start
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    lines = [x for x in stderr.splitlines() if x.strip()]
    ctx.outcome = f"exit {proc.returncode} {seconds:.1f} s after SIGINT: {lines[0] if lines else ''}"
    assert "Traceback" not in stderr, stderr[-1500:]
    assert proc.returncode == 130 and len(lines) == 1, f"exit {proc.returncode}: {stderr[-1500:]}"
    assert seconds < 15, f"took {seconds:.1f} s to stop"
    time.sleep(0.5)
    assert not [w for w in workers if _alive(w)]


def _children(pid: int) -> list[int]:
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout
    return [int(x) for x in out.split()]


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ")[-1][:1] not in ("Z", "X")
    except OSError:
        return False


# ================================================================================================ sampling
@case("sampling", "--target-width 10000000: exit 2 in seconds, one line saying what to lower")
def case_target_width_huge(ctx: Context):
    ctx.one_line(ctx.fmusic("sample", mar_checkpoint(ctx), "--target-width", "10000000", "--out-dir",
                            ctx.tmp / "s", limit=60), contains="lower --target-width", within=30)
    assert not list((ctx.tmp / "s").glob("sample_*")) if (ctx.tmp / "s").exists() else True


@case("sampling", "--num-samples 1000000: exit 2 in seconds, one line saying what to lower")
def case_num_samples_huge(ctx: Context):
    ctx.one_line(ctx.fmusic("sample", mar_checkpoint(ctx), "--num-samples", "1000000", "--out-dir", ctx.tmp / "s",
                            limit=60), contains="lower --num-samples", within=30)


@case("sampling", "--num-samples 1000000 from a token model: exit 2 in seconds, one line")
def case_num_samples_huge_tokens(ctx: Context):
    ckpt = token_run(ctx) / "checkpoints" / "last.pt"
    ctx.one_line(ctx.fmusic("sample", ckpt, "--num-samples", "1000000", "--out-dir", ctx.tmp / "s", limit=60),
                 contains="lower --num-samples", within=30)


@case("sampling", "--length 1000000000 tokens: exit 2 in seconds, one line")
def case_length_huge_tokens(ctx: Context):
    ckpt = token_run(ctx) / "checkpoints" / "last.pt"
    ctx.one_line(ctx.fmusic("sample", ckpt, "--length", "1000000000", "--out-dir", ctx.tmp / "s", limit=60),
                 contains="lower --length", within=30)


@case("sampling", "a big batch of wide rolls that cannot fit in memory: exit 2, one line with the estimate")
def case_sample_memory_estimate(ctx: Context):
    ctx.one_line(ctx.fmusic("sample", mar_checkpoint(ctx), "--num-samples", "10000", "--target-width", "16384",
                            "--out-dir", ctx.tmp / "s", limit=60), contains=("need at least", "free"), within=30)


@case("sampling", "a 10^7-tick MIDI as --primer: exit 2, one line (no 38 GiB primer)")
def case_gap_midi_primer(ctx: Context):
    path = write(ctx.tmp / "gap.mid", gap_midi())
    ctx.one_line(ctx.fmusic("sample", mar_checkpoint(ctx), "--primer", path, "--out-dir", ctx.tmp / "s",
                            limit=60), contains="gap.mid", within=30)


# ================================================================================================ options
@case("options", "bad sampling options (temperature -1, top-p 2, top-k 0): exit 2, one line each")
def case_bad_sample_options(ctx: Context):
    ckpt = token_run(ctx) / "checkpoints" / "last.pt"
    lines = []
    for opts in (("--temperature", "-1"), ("--top-p", "2"), ("--top-k", "0"), ("--to", "mp3")):
        lines.append(ctx.one_line(ctx.fmusic("sample", ckpt, *opts, "--out-dir", ctx.tmp / "s", limit=60)))
    ctx.outcome = f"exit 2 x{len(lines)}: " + " | ".join(lines)


@case("options", "--hidden-size 1000000000: exit 2 in seconds, one line")
def case_hidden_size_huge(ctx: Context):
    ctx.one_line(ctx.fmusic("train", *TOKEN_RUN, "--hidden-size", "1000000000", "--output-dir", ctx.tmp / "run",
                            limit=60), contains="--hidden-size", within=60)


@case("options", "token --crop-length 10000000: exit 2 in seconds, one line")
def case_crop_length_huge(ctx: Context):
    ctx.one_line(ctx.fmusic("train", *TOKEN_RUN, "--crop-length", "10000000", "--output-dir", ctx.tmp / "run",
                            limit=60), contains="--crop-length", within=60)


@case("training", "--lr 1e6: the divergent loss stops the run with one line (no crash in the summary)")
def case_lr_huge(ctx: Context):
    res = ctx.fmusic("train", *TOKEN_RUN, *COMMON, "--lr", "1e6", "--max-steps", "30", "--output-dir",
                     ctx.tmp / "run", limit=120)
    ctx.one_line(res, contains="--lr")


# ================================================================================================ checkpoints
def _checkpoint_refused(ctx: Context, path: Path, contains=()) -> None:
    """Both the sampling and the resume path answer one line, exit 2."""
    a = ctx.one_line(ctx.fmusic("sample", path, "--num-samples", "1", "--length", "8", "--out-dir", ctx.tmp / "s",
                                limit=60), contains=contains)
    b = ctx.one_line(ctx.fmusic("train", "--resume-from-checkpoint", path, "--max-steps", "3", "--output-dir",
                                ctx.tmp / "resumed", *COMMON, limit=60), contains=contains)
    ctx.outcome = f"sample: {a} | resume: {b}"


@case("checkpoints", "64 flipped bytes in the weights: refused on sample and resume, one line each")
def case_checkpoint_bit_flips(ctx: Context):
    path = ctx.tmp / "flipped.pt"
    shutil.copy(token_run(ctx) / "checkpoints" / "last.pt", path)
    with zipfile.ZipFile(path) as z:
        info = max((i for i in z.infolist() if "/data/" in i.filename), key=lambda i: i.file_size)
    data = bytearray(path.read_bytes())
    name_len, extra_len = struct.unpack("<HH", data[info.header_offset + 26: info.header_offset + 30])
    start = info.header_offset + 30 + name_len + extra_len + info.file_size // 2
    for k in range(64):
        data[start + k] ^= 0xFF
    path.write_bytes(bytes(data))
    _checkpoint_refused(ctx, path)


@case("checkpoints", "a checkpoint without 'model': refused on sample and resume, one line each")
def case_checkpoint_missing_model(ctx: Context):
    _checkpoint_refused(ctx, tampered(ctx, lambda c: c.pop("model")))


@case("checkpoints", "a checkpoint without 'optimizer': resume refused with one line")
def case_checkpoint_missing_optimizer(ctx: Context):
    path = tampered(ctx, lambda c: c.pop("optimizer"))
    line = ctx.one_line(ctx.fmusic("train", "--resume-from-checkpoint", path, "--max-steps", "3", "--output-dir",
                                   ctx.tmp / "resumed", *COMMON, limit=60))
    ctx.outcome = f"resume: {line}"


@case("checkpoints", "a non-JSON generator config: refused on sample and resume, one line each")
def case_checkpoint_non_json_config(ctx: Context):
    def change(c):
        c["generator"]["config"] = "{this is not json"

    _checkpoint_refused(ctx, tampered(ctx, change))


@case("checkpoints", "NaN weights: refused on sample and resume, one line each")
def case_checkpoint_nan_weights(ctx: Context):
    def change(c):
        name = next(k for k, v in c["model"].items() if v.is_floating_point())
        c["model"][name].fill_(float("nan"))

    _checkpoint_refused(ctx, tampered(ctx, change))


@case("checkpoints", "a truncated checkpoint and one of random bytes: one line each")
def case_checkpoint_truncated_and_junk(ctx: Context):
    src = (token_run(ctx) / "checkpoints" / "last.pt").read_bytes()
    write(ctx.tmp / "half.pt", src[: len(src) // 2])
    write(ctx.tmp / "junk.pt", os.urandom(4096))
    a = ctx.one_line(ctx.fmusic("sample", ctx.tmp / "half.pt", "--out-dir", ctx.tmp / "s", limit=60))
    b = ctx.one_line(ctx.fmusic("sample", ctx.tmp / "junk.pt", "--out-dir", ctx.tmp / "s", limit=60))
    ctx.outcome = f"{a} | {b}"


@case("checkpoints", "a FIFO given as the checkpoint to sample, resume and evaluate: one line each, never opened")
def case_checkpoint_fifo(ctx: Context):
    os.mkfifo(ctx.tmp / "pipe.pt")
    lines = [ctx.one_line(ctx.fmusic(*args, limit=30), contains="not a regular file", within=30) for args in (
        ("sample", ctx.tmp / "pipe.pt", "--out-dir", ctx.tmp / "s"),
        ("train", "--resume-from-checkpoint", ctx.tmp / "pipe.pt", "--max-steps", "2", "--output-dir", ctx.tmp / "r"),
        ("evaluate", ctx.tmp / "pipe.pt"),
    )]
    ctx.outcome = f"exit 2 x3: {lines[0]}"


# ================================================================================================ training
def _slow_steps() -> dict[str, str]:
    try:
        from fractalmusic.training.trainer import SLOW_STEP_ENV
    except ImportError:
        return {}
    return {SLOW_STEP_ENV: "0.3"}


def _wait_for_step(out: Path, proc: subprocess.Popen, timeout: float = 120.0) -> None:
    metrics = out / "metrics.jsonl"
    deadline = time.monotonic() + timeout
    while True:
        if metrics.exists() and '"split": "train"' in metrics.read_text():
            return
        if proc.poll() is not None:
            raise AssertionError(f"the run ended before a step was logged: {proc.communicate()[1][-1500:]}")
        assert time.monotonic() < deadline, "no training step was logged in time"
        time.sleep(0.05)


@case("training", "a second fmusic train into a live run's folder: refused with one line, the live run finishes")
def case_concurrent_runs(ctx: Context):
    from fractalmusic.training.checkpoint import load_checkpoint

    token_run(ctx)  # the corpus cache is warm
    out = ctx.tmp / "run"
    env = dict(_slow_steps(), FRACTALMUSIC_CACHE_DIR=str(ctx.shared["base"] / ".fm-cache"))
    live = ctx.spawn("train", *TOKEN_RUN, *COMMON, "--max-steps", "10", "--output-dir", out, env=env)
    try:
        _wait_for_step(out, live)
        # in this process, so that it starts while the live run is still going
        second = ctx.fmusic("train", *TOKEN_RUN, *COMMON, "--max-steps", "2", "--output-dir", out, limit=120)
        _, stderr = live.communicate(timeout=180)
    finally:
        if live.poll() is None:
            live.kill()
            live.wait()
    line = ctx.one_line(second, contains=f"PID {live.pid}")
    assert live.returncode == 0, stderr[-1500:]
    steps = [json.loads(x)["step"] for x in (out / "metrics.jsonl").read_text().splitlines()
             if json.loads(x)["split"] == "train"]
    assert steps == list(range(1, 11)), steps  # nothing duplicated, nothing out of order
    assert load_checkpoint(out / "checkpoints" / "last.pt")["step"] == 10
    ctx.outcome = f"second run: exit {second.code}: {line}; live run exit 0 at step 10, steps 1..10 once each"


def _signalled(ctx: Context, signum: int) -> None:
    import torch

    token_run(ctx)
    out = ctx.tmp / "run"
    env = dict(_slow_steps(), FRACTALMUSIC_CACHE_DIR=str(ctx.shared["base"] / ".fm-cache"))
    proc = ctx.spawn("train", *TOKEN_RUN, *COMMON, "--max-steps", "40", "--output-dir", out, env=env)
    try:
        _wait_for_step(out, proc)
        proc.send_signal(signum)
        _, stderr = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    name = signal.Signals(signum).name
    lines = [x for x in stderr.splitlines() if x.strip()]
    ctx.outcome = f"exit {proc.returncode}: {lines[0] if lines else ''}"
    assert "Traceback" not in stderr and "internal error" not in stderr, stderr[-1500:]
    assert proc.returncode == 128 + signum, stderr[-1500:]
    assert len(lines) == 1 and f"stopped by {name}" in lines[0], stderr[-1500:]
    last = out / "checkpoints" / "last.pt"
    step = torch.load(last, map_location="cpu", weights_only=True)["step"]
    assert 1 <= step < 40
    res = ctx.fmusic("train", "--resume-from-checkpoint", "last", "--output-dir", out, "--max-steps", str(step + 1),
                     "--no-progress", limit=120)
    assert res.code == 0, res.stderr[-1500:]


@case("training", "SIGINT during training: exit 130, one line, a checkpoint that resumes")
def case_sigint(ctx: Context):
    _signalled(ctx, signal.SIGINT)


@case("training", "SIGTERM during training: exit 143, one line, a checkpoint that resumes")
def case_sigterm(ctx: Context):
    _signalled(ctx, signal.SIGTERM)


def _mount_tmpfs(target: Path, size: str) -> str | None:
    """None when a tmpfs of `size` is mounted at `target`, else why not."""
    if not sys.platform.startswith("linux"):
        return "tmpfs needs Linux"
    if os.geteuid() != 0:
        return "mounting a tmpfs needs root"
    target.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(target)],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        return f"cannot mount a tmpfs here: {(proc.stderr or proc.stdout).strip()[:100]}"
    return None


@case("training", "a disk too small for the second checkpoint (tiny tmpfs): one line naming the full disk; the "
      "first checkpoint loads with weights_only=True and resumes elsewhere")
def case_disk_full(ctx: Context):
    import torch

    run = token_run(ctx)
    one = (run / "checkpoints" / "last.pt").stat().st_size
    disk = ctx.tmp / "small"
    # room for the first save (last.pt, best.pt, a step file) and the run's small files, not for a second set
    size = f"{(one * 4 + 64 * 1024) // 4096 * 4}k"
    why = _mount_tmpfs(disk, size)
    if why:
        import pytest

        ctx.outcome = f"skipped: {why}"
        pytest.skip(why)
    try:
        out = disk / "run"
        full = ctx.fmusic("train", *TOKEN_RUN, *COMMON, "--max-steps", "8", "--output-dir", out, limit=180)
        line = ctx.one_line(full, code=1, contains="disk full")
        last = out / "checkpoints" / "last.pt"
        ckpt = torch.load(last, map_location="cpu", weights_only=True)
        assert str(last) in line, line
        assert not [p for p in (out / "checkpoints").iterdir() if p.name.endswith(".tmp")]
        for raw in (out / "metrics.jsonl").read_text().splitlines():
            json.loads(raw)  # whole lines only
        elsewhere = ctx.tmp / "elsewhere"
        shutil.copytree(out, elsewhere)
    finally:
        subprocess.run(["umount", "-l", str(disk)], capture_output=True)
    step = ckpt["step"]
    res = ctx.fmusic("train", "--resume-from-checkpoint", elsewhere / "checkpoints" / "last.pt", "--output-dir",
                     elsewhere, "--max-steps", str(step + 1), "--no-progress", limit=120)
    assert res.code == 0, res.stderr[-1500:]
    ctx.outcome = f"exit {full.code} in {full.seconds:.1f} s: {line}; step {step} resumed elsewhere"
