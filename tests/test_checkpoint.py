"""Checkpoint files: atomic writes, safe loading, RNG state, the run folder's last/best/top-k files."""
from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))
import fakes  # noqa: E402

from fractalmusic.errors import CheckpointError  # noqa: E402
from fractalmusic.training.checkpoint import (  # noqa: E402
    PAUSE_ENV,
    CheckpointManager,
    atomic_write,
    build_from_checkpoint,
    capture_rng,
    load_checkpoint,
    make_payload,
    restore_rng,
    save_checkpoint,
    topk_name,
)

FAKES = Path(__file__).parent / "fakes.py"


def test_atomic_write_keeps_the_old_file_when_writing_fails(tmp_path):
    target = tmp_path / "f.bin"
    atomic_write(target, lambda f: f.write(b"old"))

    def broken(f):
        f.write(b"half of the new")
        raise RuntimeError("disk on fire")

    with pytest.raises(RuntimeError):
        atomic_write(target, broken)
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["f.bin"]
    umask = os.umask(0)
    os.umask(umask)
    assert (target.stat().st_mode & 0o777) == (0o666 & ~umask)


def test_round_trip_with_weights_only_and_rebuild(tmp_path):
    rep, gen = fakes.build(hidden_size=8)
    path = tmp_path / "c.pt"
    save_checkpoint(path, make_payload(rep, gen, step=3, metrics=json.dumps({"a": 1})))
    raw = torch.load(path, weights_only=True)  # nothing in it can run code
    assert raw["format"] == "fractalmusic-checkpoint" and raw["step"] == 3
    assert json.loads(raw["generator"]["config"])["hidden_size"] == 8
    rep2, gen2 = build_from_checkpoint(load_checkpoint(path))
    assert rep2.vocab_size == rep.vocab_size and not gen2.training
    for k, v in gen.state_dict().items():
        assert torch.equal(v, gen2.state_dict()[k])


def test_load_rejects_what_is_not_a_checkpoint(tmp_path):
    with pytest.raises(CheckpointError, match="no such checkpoint"):
        load_checkpoint(tmp_path / "nope.pt")
    with pytest.raises(CheckpointError, match="is a directory"):
        load_checkpoint(tmp_path)
    text = tmp_path / "text.pt"
    text.write_text("hello")
    with pytest.raises(CheckpointError, match="not a PyTorch checkpoint file"):
        load_checkpoint(text)
    empty = tmp_path / "empty.pt"
    empty.write_bytes(b"")
    with pytest.raises(CheckpointError, match="an empty file"):
        load_checkpoint(empty)
    truncated = tmp_path / "truncated.pt"
    torch.save({"w": torch.zeros(1000)}, truncated)
    truncated.write_bytes(truncated.read_bytes()[:2000])
    with pytest.raises(CheckpointError, match="not a readable fractalmusic checkpoint"):
        load_checkpoint(truncated)
    import datetime

    unsafe = tmp_path / "unsafe.pt"
    torch.save({"when": datetime.datetime(2020, 1, 1)}, unsafe)  # a pickled object, refused by weights_only
    with pytest.raises(CheckpointError, match="could run code"):
        load_checkpoint(unsafe)
    other = tmp_path / "other.pt"
    torch.save({"state_dict": {}}, other)
    with pytest.raises(CheckpointError, match="not a fractalmusic checkpoint"):
        load_checkpoint(other)
    newer = tmp_path / "newer.pt"
    torch.save({"format": "fractalmusic-checkpoint", "format_version": 99}, newer)
    with pytest.raises(CheckpointError, match="newer"):
        load_checkpoint(newer)


def test_rng_state_round_trip_is_weights_only_safe(tmp_path):
    torch.manual_seed(1)
    np.random.seed(2)
    random.seed(3)
    np.random.normal()  # leaves a cached gaussian in numpy's state
    state = capture_rng()
    path = tmp_path / "rng.pt"
    torch.save({"rng": state}, path)
    loaded = torch.load(path, weights_only=True)["rng"]
    expected = (torch.rand(3), np.random.rand(3), np.random.normal(), random.random())
    torch.manual_seed(99)
    np.random.seed(99)
    random.seed(99)
    restore_rng(loaded)
    got = (torch.rand(3), np.random.rand(3), np.random.normal(), random.random())
    assert torch.equal(got[0], expected[0]) and np.array_equal(got[1], expected[1])
    assert got[2] == expected[2] and got[3] == expected[3]


def test_manager_keeps_the_k_best_and_links_share_one_write(tmp_path):
    rep, gen = fakes.build(hidden_size=4)
    m = CheckpointManager(tmp_path / "ck", save_top_k=2)
    for step, loss in [(1, 3.0), (2, 2.0), (3, 2.5), (4, 2.7), (5, 1.0)]:
        names = ["last.pt"]
        if m.wants_topk(loss):
            names.append(topk_name(step, "val", loss))
        m.write(make_payload(rep, gen, step=step), names)
        m.prune_topk()
    kept = sorted(p.name for p in (tmp_path / "ck").glob("step_*.pt"))
    assert kept == ["step_00000002-val_loss_2.0000.pt", "step_00000005-val_loss_1.0000.pt"]
    assert not m.wants_topk(2.4) and m.wants_topk(1.5)
    # step 5's file and last.pt are the same bytes; rewriting last.pt leaves the step file alone
    five = tmp_path / "ck" / "step_00000005-val_loss_1.0000.pt"
    assert five.read_bytes() == m.last.read_bytes()
    m.write(make_payload(rep, gen, step=6), ["last.pt"])
    assert load_checkpoint(five)["step"] == 5 and load_checkpoint(m.last)["step"] == 6
    assert CheckpointManager(tmp_path / "ck", save_top_k=0).wants_topk(0.1) is False


def test_manager_removes_partial_files_left_by_a_crash(tmp_path):
    ck = tmp_path / "ck"
    ck.mkdir()
    (ck / ".last.pt.abc123.tmp").write_bytes(b"half")
    (ck / "notes.txt").write_text("keep me")
    m = CheckpointManager(ck)
    assert m.removed_partial == 1
    assert sorted(p.name for p in ck.iterdir()) == ["notes.txt"]


def _train_script(out: Path, max_steps: int, resume: bool, **extra) -> list[str]:
    spec = {
        "train": {"max_steps": max_steps, "batch_size": 4, "checkpoint_every_n_steps": 2, "val_check_interval_steps": 2,
                  "log_every_n_steps": 1, "progress": False, "tensorboard": False, "output_dir": str(out),
                  "decay_steps": 8, **({"resume_from_checkpoint": "last"} if resume else {}), **extra},
        "model": {"ballast": 200_000},  # ~800 kB of weights: the write takes many chunks
    }
    return [sys.executable, str(FAKES), json.dumps(spec)]


def test_sigkill_while_writing_a_checkpoint_leaves_the_previous_one(tmp_path):
    out = tmp_path / "run"
    fakes.main(_train_script(out, 2, False)[2:])  # in this process: only the run to be killed needs its own
    last = out / "checkpoints" / "last.pt"
    before = last.read_bytes()
    assert load_checkpoint(last)["step"] == 2

    # second run: atomic_write pauses half-way through writing last.pt (tests-only hook); we kill it there
    env = dict(os.environ, **{PAUSE_ENV: "last.pt"})
    proc = subprocess.Popen(_train_script(out, 4, True), env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    marker = out / "checkpoints" / "last.pt.writing"
    try:
        deadline = time.monotonic() + 240
        while not marker.exists():
            assert proc.poll() is None, proc.communicate()[1].decode()[-2000:]
            assert time.monotonic() < deadline, "the training process never reached the checkpoint write"
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == -signal.SIGKILL
    partial = [p for p in (out / "checkpoints").iterdir() if p.name.startswith(".last.pt.")]
    assert len(partial) == 1 and 0 < partial[0].stat().st_size < len(before)
    with pytest.raises(Exception):
        torch.load(partial[0], weights_only=True)  # really half a file
    assert last.read_bytes() == before  # the old last.pt is untouched...
    assert load_checkpoint(last)["step"] == 2  # ...and loads

    # a third run resumes from it, finishes, and clears the partial file away
    marker.unlink()
    fakes.main(_train_script(out, 4, True)[2:])
    assert load_checkpoint(last)["step"] == 4
    assert not [p for p in (out / "checkpoints").iterdir() if p.name.startswith(".")]
