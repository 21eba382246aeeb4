"""Trainer hardening (issue 13): one writer per run folder, exact resume after SIGINT/SIGTERM, memory checks
before allocating, divergent losses, disk full and I/O errors on checkpoints and metrics."""
from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))
import fakes  # noqa: E402
from conftest import fmusic  # noqa: E402

from fractalmusic import files  # noqa: E402
from fractalmusic.errors import ConfigError  # noqa: E402
from fractalmusic.training import Trainer, TrainConfig, TrainingError  # noqa: E402
from fractalmusic.training.checkpoint import load_checkpoint  # noqa: E402
from fractalmusic.training.lock import LOCK_NAME, RunLock, holds_lock  # noqa: E402
from fractalmusic.training.trainer import SLOW_STEP_ENV, StorageError  # noqa: E402

REPO = Path(__file__).resolve().parents[1]

TOKEN_RUN = ("--repr", "abc", "--generator", "lstm", "--hidden-size", "16", "--embedding-dim", "8", "--num-layers", "1",
             "--crop-length", "16", "--batch-size", "4", "--max-pieces", "30", "--num-prep-workers", "0")
GRID_RUN = ("--repr", "pianoroll", "--generator", "mar", "--model-size", "tiny", "--crop-length", "64",
            "--max-pieces", "4", "--num-prep-workers", "0", "--batch-size", "2", "--val-batches", "1",
            "--val-fraction", "0.25", "--no-recommend-sampling")  # the grid recommender is test_recommend's
COMMON = ("--log-every-n-steps", "1", "--val-check-interval-steps", "100", "--checkpoint-every-n-steps", "100",
          "--no-progress", "--no-tensorboard", "--device", "cpu")
STEPS = 8


def make_trainer(out, echo=None, **cfg):
    base = dict(batch_size=4, log_every_n_steps=1, val_check_interval_steps=4, checkpoint_every_n_steps=4,
                warmup_steps=2, progress=False, tensorboard=False, output_dir=str(out))
    base.update(cfg)
    rep, gen = fakes.build(seed=base.get("seed", 0))
    return Trainer(gen, rep, TrainConfig(**base), fakes.FakeSequences(10, 9), fakes.FakeSequences(4, 9, seed=99),
                   make_loader=fakes.make_loader, echo=echo or (lambda *_: None))


def one_line(text: str) -> str:
    lines = [line for line in text.splitlines() if line.strip()]
    assert len(lines) == 1, text
    return lines[0]


# ------------------------------------------------------------------------------------------------ the run lock
# another process holding the lock the way RunLock does (plain Python: no torch to import, so it starts at once)
_HOLDER = """
import fcntl, os, sys, time
os.makedirs(sys.argv[1], exist_ok=True)
fd = os.open(os.path.join(sys.argv[1], sys.argv[2]), os.O_RDWR | os.O_CREAT)
fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
os.write(fd, f"{os.getpid()} fmusic train\\n".encode())
print("held", flush=True)
time.sleep(60)
"""


def test_a_live_holder_refuses_a_second_writer_and_a_dead_ones_lock_is_taken_over(tmp_path):
    out = tmp_path / "run"
    holder = subprocess.Popen([sys.executable, "-c", _HOLDER, str(out), LOCK_NAME], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        # the live writer's checkpoint in progress: a second run's start-up clean-up must not touch it
        (out / "checkpoints").mkdir(parents=True)
        in_progress = out / "checkpoints" / ".last.pt.x1y2z3.tmp"
        in_progress.write_bytes(b"PK\x03\x04 being written")
        with pytest.raises(ConfigError, match=rf"in use by another run \(PID {holder.pid} holds"):
            make_trainer(out, max_steps=2).fit()
        assert not (out / "checkpoints" / "last.pt").exists()  # refused before anything was written
        assert in_progress.exists()
    finally:
        holder.kill()
        holder.wait()
    # the holder died without letting go: its PID is still in the file, the kernel dropped the lock
    assert (out / LOCK_NAME).read_text().split()[0] == str(holder.pid)
    said = []
    stats = make_trainer(out, echo=said.append, max_steps=2).fit()
    assert stats["step"] == 2
    assert any(f"took over the run lock of {out} from PID {holder.pid} (no longer running)" in s for s in said)
    assert (out / LOCK_NAME).read_text() == ""  # released at the end of fit
    assert not holds_lock(out)


def test_the_lock_nests_within_one_process(tmp_path):
    out = tmp_path / "run"
    outer = RunLock(out).acquire()  # as the CLI does before reading the corpus
    try:
        (out / "checkpoints").mkdir(parents=True)
        make_trainer(out, max_steps=2).fit()  # the Trainer takes it again: nested, not refused
        assert holds_lock(out)  # still held by the outer holder
    finally:
        outer.release()
    assert not holds_lock(out)


def test_second_cli_run_into_a_live_folder_is_refused_and_the_live_run_finishes(capsys, tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    monkeypatch.setenv("FRACTALMUSIC_CACHE_DIR", str(cache))
    out = tmp_path / "run"
    env = dict(os.environ, OMP_NUM_THREADS="1", **{SLOW_STEP_ENV: "0.3"})
    live = subprocess.Popen([sys.executable, "-m", "fractalmusic", "train", *TOKEN_RUN, *COMMON, "--max-steps", "6",
                             "--output-dir", str(out)], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, cwd=tmp_path)
    try:
        _wait_for_a_step(out, live)
        code, _, err = fmusic(capsys, "train", *TOKEN_RUN, *COMMON, "--max-steps", "2", "--output-dir", out)
        assert code == 2
        assert f"is in use by another run (PID {live.pid} holds" in one_line(err)
        stdout, stderr = live.communicate(timeout=120)
    finally:
        if live.poll() is None:
            live.kill()
            live.wait()
    assert live.returncode == 0, stderr
    steps = [json.loads(line)["step"] for line in (out / "metrics.jsonl").read_text().splitlines()
             if json.loads(line)["split"] == "train"]
    assert steps == list(range(1, 7))  # nothing duplicated, nothing out of order
    assert load_checkpoint(out / "checkpoints" / "last.pt")["step"] == 6


# ------------------------------------------------------------------------------------------------ signals
def _wait_for_a_step(out: Path, proc, timeout: float = 120.0) -> None:
    metrics = out / "metrics.jsonl"
    deadline = time.monotonic() + timeout
    while True:
        if metrics.exists() and any('"split": "train"' in line for line in metrics.read_text().splitlines()):
            return
        if proc.poll() is not None:
            raise AssertionError(f"the run ended before a step was logged: {proc.communicate()[1][-2000:]}")
        assert time.monotonic() < deadline, "no step was logged in time"
        time.sleep(0.02)


def _same_state(a: Path, b: Path) -> None:
    ca, cb = load_checkpoint(a), load_checkpoint(b)
    assert ca["step"] == cb["step"] == STEPS
    assert (ca["epoch"], ca["batch_in_epoch"]) == (cb["epoch"], cb["batch_in_epoch"])
    for k, v in ca["model"].items():
        assert torch.equal(v, cb["model"][k]), k  # bit-exact
    for sa, sb in zip(ca["optimizer"]["state"].values(), cb["optimizer"]["state"].values()):
        for k in sa:
            assert torch.equal(torch.as_tensor(sa[k]), torch.as_tensor(sb[k])), k


@pytest.fixture(scope="module")
def reference_runs(tmp_path_factory, one_thread):
    """Uninterrupted runs of STEPS steps (made on first use), with the corpus cache they and the others share."""
    root = tmp_path_factory.mktemp("reference")
    made: dict[str, Path] = {}

    def get(kind: str, capsys) -> Path:
        if kind not in made:
            out = root / kind
            code, _, err = fmusic(capsys, "train", *(TOKEN_RUN if kind == "tokens" else GRID_RUN), *COMMON,
                                  "--max-steps", str(STEPS), "--output-dir", out)
            assert code == 0, err
            made[kind] = out
        return made[kind]

    get.cache = root / "cache"
    return get


# each case starts a process (torch's import alone takes seconds on a busy machine): the default suite runs one
# signal per generator kind, `-m slow` the other two
@pytest.mark.parametrize("kind,signum", [
    ("tokens", signal.SIGTERM),
    ("grid", signal.SIGINT),
    pytest.param("tokens", signal.SIGINT, marks=pytest.mark.slow),
    pytest.param("grid", signal.SIGTERM, marks=pytest.mark.slow),
], ids=["lstm-SIGTERM", "mar-SIGINT", "lstm-SIGINT", "mar-SIGTERM"])
def test_a_signal_finishes_the_step_checkpoints_and_resumes_bit_exactly(capsys, tmp_path, monkeypatch,
                                                                         reference_runs, kind, signum):
    monkeypatch.setenv("FRACTALMUSIC_CACHE_DIR", str(reference_runs.cache))
    run = TOKEN_RUN if kind == "tokens" else GRID_RUN
    reference = reference_runs(kind, capsys) / "checkpoints" / "last.pt"
    out = tmp_path / "run"
    # each step sleeps 0.3 s after its backward pass, so the signal lands while a step is under way
    env = dict(os.environ, OMP_NUM_THREADS="1", **{SLOW_STEP_ENV: "0.3"})
    proc = subprocess.Popen([sys.executable, "-m", "fractalmusic", "train", *run, *COMMON, "--max-steps", str(STEPS),
                             "--output-dir", str(out)], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, cwd=tmp_path)
    try:
        _wait_for_a_step(out, proc)
        proc.send_signal(signum)
        _, stderr = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 128 + signum, stderr
    name = "SIGINT" if signum == signal.SIGINT else "SIGTERM"
    line = one_line(stderr)
    saved = load_checkpoint(out / "checkpoints" / "last.pt")
    k = saved["step"]
    assert 1 <= k < STEPS
    assert line == (f"stopped by {name} after step {k}: checkpoint of step {k} saved to "
                    f"{out / 'checkpoints' / 'last.pt'} (an exact resume point); continue with: fmusic train "
                    f"--resume-from-checkpoint last --output-dir {out}")
    assert not (out / LOCK_NAME).read_text()  # released
    code, _, err = fmusic(capsys, "train", "--resume-from-checkpoint", "last", "--output-dir", out,
                          "--max-steps", str(STEPS), "--no-progress")
    assert code == 0, err
    _same_state(out / "checkpoints" / "last.pt", reference)


def test_a_signal_stop_from_the_api_raises_training_interrupted(tmp_path, monkeypatch):
    from fractalmusic.training.trainer import TrainingInterrupted

    out = tmp_path / "run"
    t = make_trainer(out, max_steps=20, checkpoint_every_n_steps=100, val_check_interval_steps=100)
    real = t.generator.loss
    calls = []

    def signalled_in_third_step(batch):
        calls.append(1)
        if len(calls) == 3:
            os.kill(os.getpid(), signal.SIGTERM)  # the handler only asks; the step goes on
        return real(batch)

    monkeypatch.setattr(t.generator, "loss", signalled_in_third_step)
    before = signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)
    with pytest.raises(TrainingInterrupted) as info:
        t.fit()
    assert info.value.exit_code == 143 and info.value.step == 3
    assert load_checkpoint(out / "checkpoints" / "last.pt")["step"] == 3
    assert (signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)) == before  # handlers restored


# ------------------------------------------------------------------------------------------------ memory
def test_impossible_sizes_are_refused_before_anything_is_allocated(capsys, tmp_path):
    t0 = time.monotonic()
    code, _, err = fmusic(capsys, "train", "--repr", "abc", "--generator", "lstm", "--hidden-size", "1000000000",
                          "--max-pieces", "30", "--num-prep-workers", "0", "--output-dir", tmp_path / "a")
    assert code == 2 and "lower --hidden-size 1000000000" in one_line(err)
    code, _, err = fmusic(capsys, "train", "--repr", "abc", "--generator", "lstm", "--crop-length", "10000000",
                          "--max-pieces", "30", "--num-prep-workers", "0", "--output-dir", tmp_path / "b")
    line = one_line(err)
    assert code == 2 and "this run needs at least" in line and "lower --crop-length or --batch-size" in line
    code, _, err = fmusic(capsys, "train", "--repr", "abc", "--generator", "lstm", "--hidden-size", "200000",
                          "--max-pieces", "30", "--num-prep-workers", "0", "--output-dir", tmp_path / "c")
    assert code == 2 and "lower the model size (--hidden-size 200000)" in one_line(err)
    code, _, err = fmusic(capsys, "train", "--repr", "abc", "--generator", "lstm", "--val-batch-size", "100000000",
                          "--max-pieces", "30", "--num-prep-workers", "0", "--output-dir", tmp_path / "d")
    assert code == 2 and "lower --crop-length or --val-batch-size" in one_line(err)
    assert time.monotonic() - t0 < 60


def test_the_estimate_grows_with_crop_and_batch():
    from fractalmusic.generators.recurrent import LSTMGenerator
    from fractalmusic.representations.abc import ABCRepresentation
    from fractalmusic.training.budget import estimate_training_memory

    spec = ABCRepresentation(ABCRepresentation.Config()).spec()
    small = estimate_training_memory(LSTMGenerator, {"hidden_size": 32}, spec, batch_size=2, crop_length=64)
    big = estimate_training_memory(LSTMGenerator, {"hidden_size": 32}, spec, batch_size=4, crop_length=128)
    assert small.parameters == big.parameters > 0 and small.parameter_bytes == 16 * small.parameters
    assert 0 < small.activation_bytes and big.activation_bytes == pytest.approx(4 * small.activation_bytes, rel=0.05)


# ------------------------------------------------------------------------------------------------ divergence
def test_a_nan_loss_never_reaches_a_checkpoint(tmp_path, monkeypatch):
    out = tmp_path / "run"
    t = make_trainer(out, max_steps=20, log_every_n_steps=50, checkpoint_every_n_steps=3, val_check_interval_steps=3)
    real = t.generator.loss
    calls = []

    def nan_from_step_five(batch):
        if t.generator.training:  # not the validation batches
            calls.append(1)
        out_ = real(batch)
        if len(calls) >= 5:
            out_["loss"] = out_["loss"] * float("nan")
        return out_

    monkeypatch.setattr(t.generator, "loss", nan_from_step_five)
    last = out / "checkpoints" / "last.pt"
    with pytest.raises(TrainingError) as info:
        t.fit()
    # no line was logged after step 3 (log every 50): the check before the step-6 checkpoint caught it
    assert str(info.value).startswith(f"the training loss became nan at step 5: stopped; the last good checkpoint, "
                                      f"{last} (step 3), is kept")
    ck = load_checkpoint(last)
    assert ck["step"] == 3 and all(torch.isfinite(v).all() for v in ck["model"].values())


def test_an_exploding_loss_stops_and_lr_1e6_does_not_crash(capsys, tmp_path):
    code, out, err = fmusic(capsys, "train", *TOKEN_RUN, "--lr", "1e6", "--max-steps", "30", "--log-every-n-steps",
                            "5", "--no-progress", "--device", "cpu", "--output-dir", tmp_path / "r")
    line = one_line(err)
    assert code == 2 and "the training loss exploded to" in line and "try a lower --lr (now 1e+06)" in line


def test_summary_without_perplexity():
    from fractalmusic.cli.train_cmd import _summary

    stats = {"step": 3, "stop_reason": "finished", "steps_run": 3, "units_per_s": 10.0, "best": "/nonexistent/b.pt",
             "last": "/nonexistent/l.pt",
             "metrics": {"val": {"loss": 900.0, "bits_per_unit": 1298.4, "perplexity": None}}}
    _summary(stats, TrainConfig(), "/tmp/x", "tokens")


# ------------------------------------------------------------------------------------------------ disk full
def _enospc(*args, **kwargs):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def test_disk_full_while_saving_keeps_the_last_good_checkpoint(tmp_path, monkeypatch):
    out = tmp_path / "run"
    t = make_trainer(out, max_steps=8, checkpoint_every_n_steps=4)
    real_save = torch.save
    saves = []

    def save_then_fill(obj, f, *args, **kwargs):
        saves.append(1)
        if len(saves) == 2:  # the step-8 checkpoint: half written, then the disk is full
            f.write(b"PK\x03\x04 half a checkpoint")
            raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 1234 vs 99")
        return real_save(obj, f, *args, **kwargs)

    monkeypatch.setattr(torch, "save", save_then_fill)
    monkeypatch.setattr(files, "free_bytes", lambda path: 1000 if len(saves) >= 2 else None)
    with pytest.raises(StorageError) as info:
        t.fit()
    last = out / "checkpoints" / "last.pt"
    assert info.value.exit_code == 1
    assert str(info.value) == (f"{out / 'checkpoints'}: disk full (ENOSPC: the disk filled up while writing): cannot "
                               f"save the checkpoint of step 8; the last good checkpoint is {last} (step 4); free "
                               f"some space or train into another --output-dir")
    assert sorted(p.name for p in (out / "checkpoints").iterdir() if p.name.startswith(".")) == []  # temp removed
    assert load_checkpoint(last)["step"] == 4


def test_too_little_free_space_is_refused_before_writing(tmp_path, monkeypatch):
    out = tmp_path / "run"
    t = make_trainer(out, max_steps=4)
    monkeypatch.setattr(files, "free_bytes", lambda path: 4096)
    with pytest.raises(StorageError, match=r"disk full \(ENOSPC: 0.0 MiB free, a checkpoint needs about"):
        t.fit()
    assert not [p for p in (out / "checkpoints").iterdir()]


def test_metrics_lines_are_never_torn(tmp_path, monkeypatch):
    path = tmp_path / "m.jsonl"
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    try:
        files.append_line(fd, '{"step": 1}', path)
        real_write = os.write
        monkeypatch.setattr(os, "write", lambda f, data: real_write(f, data[:5]))  # the disk takes 5 bytes
        with pytest.raises(OSError) as info:
            files.append_line(fd, '{"step": 2, "loss": 1.5}', path)
        assert info.value.errno == errno.ENOSPC
    finally:
        monkeypatch.undo()
        os.close(fd)
    assert path.read_text() == '{"step": 1}\n'


def test_disk_full_on_metrics_is_one_line_with_the_last_checkpoint(tmp_path, monkeypatch):
    out = tmp_path / "run"
    t = make_trainer(out, max_steps=8, checkpoint_every_n_steps=2, val_check_interval_steps=100)
    real = files.append_line
    lines = []

    def fill_after_five(fd, line, path=""):
        lines.append(line)
        if len(lines) > 5:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(fd, line, path)

    monkeypatch.setattr(files, "append_line", fill_after_five)
    with pytest.raises(StorageError) as info:
        t.fit()
    assert str(info.value).startswith(f"{out}: disk full (ENOSPC: No space left on device): cannot write the run's "
                                      f"files; the last good checkpoint is {out / 'checkpoints' / 'last.pt'}")
    assert all(json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines())


def _can_mount_tmpfs(target: Path) -> str | None:
    if os.geteuid() != 0:
        return "needs root to mount a tmpfs"
    target.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1536k", "tmpfs", str(target)], capture_output=True,
                          text=True)
    if proc.returncode != 0:
        return f"cannot mount a tmpfs here ({(proc.stderr or proc.stdout).strip()[:80]})"
    return None


def test_a_real_full_disk_is_one_line_and_the_first_checkpoint_resumes_elsewhere(tmp_path):
    """A 1.5 MiB tmpfs holds the first checkpoint (~0.85 MB: weights and AdamW state) but not a second beside it."""
    disk = tmp_path / "small"
    reason = _can_mount_tmpfs(disk)
    if reason:
        pytest.skip(reason)
    try:
        out = disk / "run"
        spec = {"train": {"max_steps": 6, "batch_size": 4, "checkpoint_every_n_steps": 2, "val_check_interval_steps": 2,
                          "log_every_n_steps": 1, "progress": False, "tensorboard": False, "output_dir": str(out),
                          "save_top_k": 0},
                "model": {"ballast": 70_000}}
        with pytest.raises(StorageError) as info:
            fakes.main([json.dumps(spec)])
        last = out / "checkpoints" / "last.pt"
        assert str(info.value).startswith(f"{out / 'checkpoints'}: disk full (ENOSPC: ")
        assert f"the last good checkpoint is {last} (step 2)" in str(info.value)
        assert not [p for p in (out / "checkpoints").iterdir() if p.name.startswith(".")]
        assert all(json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines())
        first = torch.load(last, weights_only=True)
        assert first["step"] == 2
        elsewhere = tmp_path / "elsewhere"
        (elsewhere / "checkpoints").mkdir(parents=True)
        (elsewhere / "checkpoints" / "last.pt").write_bytes(last.read_bytes())
    finally:
        subprocess.run(["umount", str(disk)], capture_output=True)
    spec["train"].update(output_dir=str(elsewhere), resume_from_checkpoint="last")
    fakes.main([json.dumps(spec)])
    assert load_checkpoint(elsewhere / "checkpoints" / "last.pt")["step"] == 6


def test_a_real_enospc_in_the_middle_of_a_write_is_one_line_and_leaves_no_temp_file(tmp_path, monkeypatch):
    """The same small tmpfs, with the free-space check blinded: torch.save itself hits ENOSPC half-way."""
    disk = tmp_path / "small"
    reason = _can_mount_tmpfs(disk)
    if reason:
        pytest.skip(reason)
    monkeypatch.setattr(files, "free_bytes", lambda path: None)
    try:
        out = disk / "run"
        spec = {"train": {"max_steps": 4, "batch_size": 4, "checkpoint_every_n_steps": 2, "val_check_interval_steps": 2,
                          "log_every_n_steps": 1, "progress": False, "tensorboard": False, "output_dir": str(out),
                          "save_top_k": 0},
                "model": {"ballast": 70_000}}
        with pytest.raises(StorageError) as info:
            fakes.main([json.dumps(spec)])
        last = out / "checkpoints" / "last.pt"
        assert str(info.value) == (f"{out / 'checkpoints'}: disk full (ENOSPC: No space left on device): cannot save "
                                   f"the checkpoint of step 4; the last good checkpoint is {last} (step 2); free "
                                   f"some space or train into another --output-dir")
        assert not [p for p in (out / "checkpoints").iterdir() if p.name.startswith(".")]
        assert torch.load(last, weights_only=True)["step"] == 2
    finally:
        subprocess.run(["umount", str(disk)], capture_output=True)
