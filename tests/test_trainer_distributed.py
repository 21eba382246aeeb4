"""DDP through torchrun on CPU (gloo): two processes train the fake generator for 3 steps."""
from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))
import fakes  # noqa: E402

from fractalmusic.training import Trainer, TrainConfig  # noqa: E402
from fractalmusic.training.checkpoint import load_checkpoint  # noqa: E402

FAKES = Path(__file__).parent / "fakes.py"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _torchrun() -> list[str]:
    exe = Path(sys.executable).with_name("torchrun")
    if exe.exists():
        return [str(exe)]
    if shutil.which("torchrun"):
        return ["torchrun"]
    return [sys.executable, "-m", "torch.distributed.run"]


@pytest.mark.slow
def test_torchrun_two_cpu_processes(tmp_path):
    out = tmp_path / "ddp"
    train = {"max_steps": 3, "batch_size": 4, "log_every_n_steps": 1, "progress": False, "tensorboard": False,
             "checkpoint_every_n_steps": 1, "val_check_interval_steps": 1, "save_top_k": -1, "warmup_steps": 0,
             "lr": 0.05, "output_dir": str(out), "device": "cpu"}
    spec = {"train": train, "model": {"dropout": 0.0}}
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.run(
        _torchrun() + ["--nproc_per_node", "2", "--master_addr", "127.0.0.1", "--master_port", str(_free_port()),
                       str(FAKES), json.dumps(spec)],
        capture_output=True, text=True, env=env, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.count("STATS ") == 1  # only rank 0 reports
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    train_rows = [r for r in rows if r["split"] == "train"]
    assert [r["step"] for r in train_rows] == [1, 2, 3]  # one writer: no duplicate lines
    # 10 sequences shared by 2 ranks = 5 each: batches of 4 and 1 per rank; units summed over ranks
    assert [r["units"] for r in train_rows] == [64, 16, 64]
    assert json.loads((out / "hparams.json").read_text())["world_size"] == 2
    ck = load_checkpoint(out / "checkpoints" / "last.pt")
    assert ck["world_size"] == 2 and len(ck["rng"]) == 2 and ck["step"] == 3

    # DDP averaged the two ranks' gradients: step 1 equals one process training on the same 8 sequences
    step1 = load_checkpoint(next((out / "checkpoints").glob("step_00000001-*.pt")))
    rep, gen = fakes.build(dropout=0.0)
    single = Trainer(gen, rep, TrainConfig(**dict(train, max_steps=1, batch_size=8, output_dir=str(tmp_path / "one"))),
                     fakes.FakeSequences(10, 9), None, make_loader=_first_8_like_ddp, echo=lambda *_: None)
    stats = single.fit()
    assert stats["metrics"]["train"]["loss"] == pytest.approx(train_rows[0]["loss"], rel=1e-5)
    for k, v in gen.state_dict().items():
        assert torch.allclose(v, step1["model"][k], atol=1e-6), k


def _first_8_like_ddp(dataset, batch_size, shuffle, seed=0, epoch=0, num_workers=0, rank=0, world_size=1,
                      drop_last=False):
    """The 8 sequences the two ranks saw in their first batches, as one batch."""
    a = list(fakes.make_loader(dataset, 4, shuffle, seed, epoch, 0, 0, 2).sampler)[:4]
    b = list(fakes.make_loader(dataset, 4, shuffle, seed, epoch, 0, 1, 2).sampler)[:4]
    from torch.utils.data import DataLoader

    return DataLoader(dataset, batch_size=8, sampler=a + b)
