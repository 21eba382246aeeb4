"""`fmusic train --devices`: one process per device through torch's elastic launcher (CPU, gloo, in the suite)."""
from __future__ import annotations

import json
import os
import time

import pytest
from conftest import fmusic, run_cli

from fractalmusic.errors import ConfigError
from fractalmusic.training import distributed
from fractalmusic.training.distributed import LaunchError, launch, parse_devices, plan_launch, split_launch_args


def test_devices_spellings():
    assert parse_devices("2") == (2, None)
    assert parse_devices("0,1") == (2, [0, 1])
    assert parse_devices("[1, 3]") == (2, [1, 3])
    assert parse_devices("3,") == (1, [3])  # Lightning's spelling of "GPU 3 alone"
    for bad, message in (("0", "at least 1"), ("two", "whole number"), ("0,0", "twice"), ("", "empty")):
        with pytest.raises(ConfigError, match=message):
            parse_devices(bad)
    found, rest = split_launch_args(["--lr", "1e-3", "--devices=0,1", "--num_nodes", "2", "--node-rank", "1",
                                     "--master-addr", "10.0.0.1", "--gpus", "4", "--max-steps", "5"])
    assert found == {"--devices": "4", "--num-nodes": "2", "--node-rank": "1", "--master-addr": "10.0.0.1"}
    assert rest == ["--lr", "1e-3", "--max-steps", "5"]
    with pytest.raises(ConfigError, match="needs a value"):
        split_launch_args(["--devices", "--device", "cpu"])


def test_launch_plans(monkeypatch):
    for var in ("LOCAL_RANK", "TORCHELASTIC_RUN_ID"):
        monkeypatch.delenv(var, raising=False)
    plan = plan_launch({"--devices": "2"}, "cpu")
    assert (plan.nproc, plan.gpu_ids, plan.world_size, plan.needs_launch) == (2, None, 2, True)
    assert not plan_launch({"--devices": "1"}, "auto").needs_launch  # one process: no launcher
    plan = plan_launch({"--devices": "3", "--num-nodes": "2", "--node-rank": "1", "--master-addr": "h"}, "cpu")
    assert (plan.world_size, plan.node_rank, plan.master_addr) == (6, 1, "h")
    errors = [
        ({"--devices": "0,1"}, "cpu", "names GPUs, but --device cpu"),
        ({"--devices": "2", "--num-nodes": "2"}, "cpu", "needs --node-rank and --master-addr"),
        ({"--devices": "2", "--num-nodes": "2", "--node-rank": "2", "--master-addr": "h"}, "cpu", "not below"),
        ({"--num-nodes": "2", "--node-rank": "0", "--master-addr": "h"}, "cpu", "needs --devices"),
        ({"--devices": "2"}, "cuda:1", "names one GPU"),
        ({"--devices": "2", "--master-port": "70000"}, "cpu", "at most 65535"),
    ]
    if not __import__("torch").cuda.is_available():
        errors.append(({"--devices": "2"}, "auto", "no CUDA GPU is available here; add --device cpu"))
    for options, device, message in errors:
        with pytest.raises(ConfigError, match=message):
            plan_launch(options, device)
    monkeypatch.setenv("LOCAL_RANK", "0")
    with pytest.raises(ConfigError, match="started by torchrun"):
        plan_launch({"--devices": "2"}, "cpu")


def failing_worker(delay: float) -> None:
    """Rank 1 fails at once; rank 0 would run for `delay` seconds unless the launcher stops it."""
    if os.environ["RANK"] == "1":
        raise ValueError(f"boom in rank {os.environ['RANK']} of {os.environ['WORLD_SIZE']}")
    time.sleep(delay)


def test_a_crash_in_one_process_stops_all_with_its_one_line(monkeypatch):
    import signal

    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    plan = distributed.LaunchPlan(nproc=2)
    before = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)}
    started = time.perf_counter()
    with pytest.raises(LaunchError) as info:
        launch(plan, failing_worker, (120.0,))
    assert time.perf_counter() - started < 60  # rank 0 was stopped, not waited for
    assert info.value.rank == 1 and info.value.message == "ValueError: boom in rank 1 of 2"
    assert {s: signal.getsignal(s) for s in before} == before  # the agent's signal handlers are not left behind


def test_devices_2_on_cpu_trains_two_processes_and_resumes_on_one(tmp_path, capsys, one_thread):
    """The issue's command: two gloo processes, world size 2, one checkpoint, resumed with --devices 1."""
    env = {"OMP_NUM_THREADS": "1"}
    run = tmp_path / "run"
    # a small Nottingham-like layout instead of the folk corpus (the test is about processes), through --dataset:
    # rank 0 builds the split, the other finds it
    root = tmp_path / "nottingham"
    (root / "ABC_cleaned").mkdir(parents=True)
    (root / "ABC_cleaned" / "jigs.abc").write_text("\n".join(
        f"X:{i}\nT:t{i}\nM:6/8\nL:1/8\nK:G\n|:GAB {'cde'[i % 3]}BA|G3 {'DEF'[i % 3]}3:|\n" for i in range(40)))
    common = ("--dataset", "nottingham", "--root", root, "--num-prep-workers", "0", "--no-progress", "--no-tensorboard",
              "--val-check-interval-steps", "5", "--checkpoint-every-n-steps", "5", "--batch-size", "4",
              "--crop-length", "32")
    out = run_cli("train", "--devices", "2", "--device", "cpu", "--repr", "abc", "--generator", "lstm",
                  "--hidden-size", "32", "--max-steps", "5", "--output-dir", run, *common, env=env, cwd=tmp_path,
                  timeout=300)
    assert out.exit_code == 0, out.output[-3000:]
    assert "starting 2 processes (cpu): world size 2, backend gloo" in out.stdout
    assert "device cpu x 2 processes" in out.stdout
    assert out.stdout.count("stopped at step 5") == 1  # rank 0 alone reports
    assert json.loads((run / "hparams.json").read_text())["world_size"] == 2
    from fractalmusic.training.checkpoint import load_checkpoint

    ck = load_checkpoint(run / "checkpoints" / "last.pt")
    assert ck["world_size"] == 2 and ck["step"] == 5
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert len([r for r in rows if r.get("split") == "train" and r.get("step") == 5]) == 1  # one writer

    code, stdout, stderr = fmusic(capsys, "train", "--devices", "1", "--resume-from-checkpoint",
                                  run / "checkpoints" / "last.pt", "--max-steps", "7", *common)
    assert code == 0, stderr[-3000:]
    assert "resumed from" in stdout and "stopped at step 7" in stdout
    assert load_checkpoint(run / "checkpoints" / "last.pt")["world_size"] == 1


def test_devices_errors_in_process(capsys, tmp_path):
    code, _, err = fmusic(capsys, "train", "--devices", "0,1", "--device", "cpu")
    assert code == 2 and "give a process count instead (--devices 2)" in err
    code, _, err = fmusic(capsys, "train", "--devices", "2", "--device", "cpu", "--num-nodes", "2")
    assert code == 2 and "needs --node-rank and --master-addr" in err
    # option errors are found before any process starts: one line, once
    code, out, err = fmusic(capsys, "train", "--devices", "2", "--device", "cpu", "--crop-length", "0")
    assert code == 2 and err.strip() == "error: --crop-length must be at least 1, not 0"
    assert "starting" not in out
    code, out, err = fmusic(capsys, "train", "--devices", "2", "--device", "cpu", "--hiden-size", "8")
    assert code == 2 and len(err.strip().splitlines()) == 1 and "--hidden-size" in err and "starting" not in out
    code, out, err = fmusic(capsys, "train", "--devices", "2", "--device", "cpu", "--dataset", "maestro", "--root",
                            tmp_path)
    assert code == 2 and "has no maestro-v3.0.0.csv" in err and "starting" not in out


@pytest.mark.slow
def test_two_machines_meet_at_the_master_address(tmp_path):
    """--num-nodes 2: two launchers (here both on this machine, one process each) meet by static rendezvous."""
    import socket
    import subprocess
    import sys

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    tunes = tmp_path / "tunes.abc"
    tunes.write_text("\n".join(f"X:{i}\nT:t{i}\nM:6/8\nL:1/8\nK:G\n|:GAB {'cde'[i % 3]}BA|G3 D3:|\n" for i in range(24)))
    args = ["train", "--repr", "abc", "--generator", "lstm", "--hidden-size", "16", "--data", str(tunes),
            "--crop-length", "32", "--batch-size", "4", "--max-steps", "2", "--no-progress", "--no-tensorboard",
            "--num-prep-workers", "0", "--output-dir", str(tmp_path / "run"), "--device", "cpu", "--devices", "1",
            "--num-nodes", "2", "--master-addr", "127.0.0.1", "--master-port", str(port)]
    env = dict(os.environ, OMP_NUM_THREADS="1", FRACTALMUSIC_CACHE_DIR=str(tmp_path / "cache"))
    other = subprocess.Popen([sys.executable, "-m", "fractalmusic", *args, "--node-rank", "1"], env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    out = run_cli(*args, "--node-rank", "0", env={"OMP_NUM_THREADS": "1"}, cwd=tmp_path, timeout=300)
    assert other.wait(timeout=300) == 0, other.stdout.read()
    assert out.exit_code == 0, out.output[-3000:]
    assert "on machine 0 of 2" in out.stdout and "world size 2" in out.stdout
    assert json.loads((tmp_path / "run" / "hparams.json").read_text())["world_size"] == 2
