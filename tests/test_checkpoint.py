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


# ------------------------------------------------------------------------------------- integrity (one class)
def _resumable_payload(hidden_size: int = 8) -> dict:
    from fractalmusic.training.checkpoint import to_json

    rep, gen = fakes.build(hidden_size=hidden_size)
    opt = torch.optim.Adam(gen.parameters(), lr=1e-3)
    batch = {"tokens": torch.randint(0, 10, (2, 6)), "mask": torch.ones(2, 6, dtype=torch.bool)}
    gen.loss(batch)["loss"].backward()
    opt.step()
    return make_payload(rep, gen, optimizer=opt.state_dict(), scheduler={}, scaler={}, rng=[capture_rng()],
                        step=1, epoch=0, batch_in_epoch=1, world_size=1, metrics=to_json({}),
                        train_config=to_json({"batch_size": 2}), data_config=to_json({}),
                        trainer_state=to_json({}))


def _flip_weight_bytes(path: Path, count: int = 64) -> None:
    import zipfile

    with zipfile.ZipFile(path) as archive:
        member = next(i for i in archive.infolist() if "/data/" in i.filename and i.file_size >= 4 * count)
    data = bytearray(path.read_bytes())
    start = member.header_offset + 30 + len(member.filename) + len(member.extra) + 8
    for k in range(count):
        data[start + k] ^= 0x5A
    path.write_bytes(bytes(data))


def test_flipped_bytes_in_the_weights_are_found(tmp_path):
    from fractalmusic.training.checkpoint import Checkpoint

    path = tmp_path / "c.pt"
    save_checkpoint(path, _resumable_payload(hidden_size=16))
    Checkpoint.load(path, purpose="resume")
    _flip_weight_bytes(path)
    assert torch.load(path, weights_only=True)["format"]  # torch alone reads the damaged file without a word
    with pytest.raises(CheckpointError, match="fails its CRC-32 check"):
        load_checkpoint(path)


DAMAGES = {
    "no model": (lambda p: p.pop("model"), "no model weights"),
    "generator config not JSON": (lambda p: p["generator"].__setitem__("config", "{hidden_size: 8"),
                                  "generator config is not valid JSON"),
    "representation state not an object": (lambda p: p["representation"].__setitem__("state", "[1, 2]"),
                                           "representation state is not a JSON object"),
    "NaN weight": (lambda p: next(v for v in p["model"].values() if v.is_floating_point()).view(-1).__setitem__(0,
                   float("nan")), "holds NaN or infinite values"),
    "step not a number": (lambda p: p.__setitem__("step", "12"), "step is '12'"),
    "rng of the wrong shape": (lambda p: p["rng"][0]["numpy"].__setitem__("keys", torch.zeros(3, dtype=torch.int64)),
                               "RNG state of rank 0"),
    "optimizer not a state dict": (lambda p: p.__setitem__("optimizer", [1, 2]), "optimizer state"),
    "metrics not JSON": (lambda p: p.__setitem__("metrics", "nan{"), "metrics is not valid JSON"),
    "no generator entry": (lambda p: p.pop("generator"), "no generator entry"),
}


@pytest.mark.parametrize("damage", list(DAMAGES), ids=list(DAMAGES))
def test_damaged_checkpoint_is_one_line_for_sample_evaluate_and_resume(damage, tmp_path, capsys):
    from conftest import fmusic

    change, fragment = DAMAGES[damage]
    payload = _resumable_payload()
    change(payload)
    path = tmp_path / "damaged.pt"
    save_checkpoint(path, payload)
    with pytest.raises(CheckpointError, match=fragment):
        load_checkpoint(path)
    fakes.register()
    for args in (("sample", path, "--out-dir", tmp_path / "s"), ("evaluate", path),
                 ("train", "--resume-from-checkpoint", path)):
        code, _, err = fmusic(capsys, *args)
        lines = err.strip().splitlines()
        assert code == 2 and len(lines) == 1, (args, err)
        assert fragment in lines[0] and str(path) in lines[0] and "internal error" not in lines[0], (args, err)


def test_plugin_identity_recorded_and_old_checkpoints_still_load(tmp_path):
    from fractalmusic import plugins
    from fractalmusic.training.checkpoint import Checkpoint

    rep = plugins.get_representation("pianoroll")()
    gen = plugins.get_generator("fractalmusic:mar").build({"model_size": "tiny", "max_crop_length": 64}, rep.spec())
    payload = make_payload(rep, gen, step=2)
    assert payload["generator"]["name"] == "mar" and payload["generator"]["dist"] == "fractalmusic"
    assert payload["generator"]["dist_version"] and payload["representation"]["dist"] == "fractalmusic"
    # a checkpoint from before the identity was recorded: names only
    for entry in ("generator", "representation"):
        for key in ("dist", "dist_version", "state_version"):
            payload[entry].pop(key)
    save_checkpoint(tmp_path / "old.pt", payload)
    ckpt = Checkpoint.load(tmp_path / "old.pt")
    assert ckpt.generator_ref.dist is None and ckpt.generator_ref.state_version == 1
    rep2, gen2 = ckpt.build()
    assert type(gen2) is type(gen) and all(torch.equal(a, b) for a, b in zip(gen.state_dict().values(),
                                                                              gen2.state_dict().values()))


def test_plugin_state_versions_upgrade_older_and_refuse_newer(tmp_path):
    from fractalmusic import plugins
    from fractalmusic.training.checkpoint import Checkpoint

    rep, gen = fakes.build(hidden_size=8)

    class RenamedTokens(type(rep)):
        """Version 2 of the fake representation: its state calls 'config' 'settings' no more (upgrade adds it)."""

        name = "fake-tokens-v2"
        state_version = 2
        upgrades = []

        @classmethod
        def upgrade_state(cls, state, from_version):
            cls.upgrades.append(from_version)
            return {"config": state.pop("settings"), **state}

    class WiderGRU(type(gen)):
        name = "fake-gru-v3"
        state_version = 3

        @classmethod
        def upgrade_state(cls, state, from_version):
            model = {k.replace("old.", ""): v for k, v in state["model"].items()}
            return {"config": {**state["config"], "hidden_size": 8}, "model": model}

    plugins.register("representation", RenamedTokens.name, RenamedTokens)
    plugins.register("generator", WiderGRU.name, WiderGRU)
    try:
        payload = make_payload(rep, gen)
        payload["representation"].update(name=RenamedTokens.name, state_version=1,
                                         state=json.dumps({"settings": json.loads(payload["representation"]["state"])
                                                           ["config"]}))
        payload["generator"].update(name=WiderGRU.name, state_version=1,
                                    config=json.dumps({"hidden_size": 99, "dropout": 0.1, "ballast": 0}))
        payload["model"] = {"old." + k: v for k, v in payload["model"].items()}
        save_checkpoint(tmp_path / "v1.pt", payload)
        rep2, gen2 = Checkpoint.load(tmp_path / "v1.pt").build()
        assert RenamedTokens.upgrades == [1] and isinstance(gen2, WiderGRU) and gen2.config.hidden_size == 8
        payload["generator"]["state_version"] = 4
        save_checkpoint(tmp_path / "v4.pt", payload)
        with pytest.raises(CheckpointError, match="state version 4; the installed 'fake-gru-v3' reads state versions "
                                                  "up to 3"):
            Checkpoint.load(tmp_path / "v4.pt").build()
    finally:
        plugins.unregister("representation", RenamedTokens.name)
        plugins.unregister("generator", WiderGRU.name)


def test_an_abc_run_from_before_the_bar_clean_up_resumes_on_the_tunes_it_started_with(tmp_path):
    # abc state version 1 had no min_bar_share: the upgrade sets 0 (keep every tune), a new state keeps its value
    from fractalmusic import plugins
    from fractalmusic.piece import Piece
    from fractalmusic.training.checkpoint import Checkpoint

    rep = plugins.get_representation("abc")()
    rep.fit([Piece(abc="X:1\nM:2/4\nL:1/8\nK:D\nABcd|efga|\n")])
    gen = plugins.get_generator("fractalmusic:lstm").build({"hidden_size": 8}, rep.spec())
    payload = make_payload(rep, gen, step=1)
    assert payload["representation"]["state_version"] == 3
    save_checkpoint(tmp_path / "new.pt", payload)
    new, _ = Checkpoint.load(tmp_path / "new.pt").build()
    assert new.config.min_bar_share == 0.9 and new.config.respell_lengths == rep.config.respell_lengths
    state = json.loads(payload["representation"]["state"])
    # version 2 had no respell_lengths, rescale_units or length_spelling: they upgrade to what version 2 did (a
    # resumed run keeps its items, and a loaded model reads text, as they were)
    for name in ("respell_lengths", "rescale_units", "length_spelling"):
        del state["config"][name]
    payload["representation"].update(state_version=2, state=json.dumps(state))
    save_checkpoint(tmp_path / "v2.pt", payload)
    v2, _ = Checkpoint.load(tmp_path / "v2.pt").build()
    assert v2.config.min_bar_share == 0.9
    assert (v2.config.respell_lengths, v2.config.rescale_units, v2.config.length_spelling) == (0.0, 0.0, "keep")
    del state["config"]["min_bar_share"]
    payload["representation"].update(state_version=1, state=json.dumps(state))
    save_checkpoint(tmp_path / "old.pt", payload)
    old, _ = Checkpoint.load(tmp_path / "old.pt").build()
    assert old.config.min_bar_share == 0.0 and old.config.respell_lengths == 0.0 and old.chars == rep.chars
