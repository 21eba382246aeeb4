"""What a run writes besides checkpoints: metrics.jsonl, TensorBoard events, hparams.json, and the progress bar.

metrics.jsonl has one JSON object per line, e.g.
  {"step": 500, "epoch": 3, "split": "val", "loss": 1.234, "bits_per_unit": 1.780, "perplexity": 3.43, ...}
with the loss in nats per predicted unit (token or cell). Only rank 0 writes anything. Each line goes to the file in
one write of the whole line (O_APPEND), cut off again if the disk takes only part of it: never a torn line.
"""
from __future__ import annotations

import json
import math
import os
import sys
from pathlib import Path
from typing import Any, Callable

from fractalmusic import files
from fractalmusic.training.checkpoint import atomic_write


def loss_stats(loss: float) -> dict[str, float | None]:
    """nats -> bits per unit and perplexity (None where it would overflow)."""
    loss = float(loss)
    bits = loss / math.log(2.0) if math.isfinite(loss) else None
    ppl = math.exp(loss) if math.isfinite(loss) and loss < 700 else None
    return {"loss": loss if math.isfinite(loss) else None, "bits_per_unit": bits, "perplexity": ppl}


def _finite(v: Any) -> Any:
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


class RunLogger:
    """metrics.jsonl + TensorBoard (when importable) + progress bar + plain lines when there is no bar."""

    def __init__(self, output_dir: str | os.PathLike, enabled: bool = True, tensorboard: bool = True,
                 progress: bool = True, total_steps: int | None = None, start_step: int = 0,
                 unit: str = "token", echo: Callable[[str], None] = print):
        self.dir = Path(output_dir)
        self.enabled = enabled
        self.echo = echo if enabled else (lambda *_: None)
        self.unit = unit
        self.total = total_steps
        self.writer = None
        self.bar = None
        self.metrics_path = self.dir / "metrics.jsonl"
        if not enabled:
            return
        self.dir.mkdir(parents=True, exist_ok=True)
        self._truncate_after(start_step)
        self._fd: int | None = os.open(self.metrics_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except Exception:  # tensorboard is optional
                self.echo("tensorboard is not installed: metrics go to metrics.jsonl only "
                          "(pip install tensorboard for event files under OUTPUT/logs)")
            else:
                # purge_step drops events a crashed run wrote after the checkpoint we resume from
                self.writer = SummaryWriter(log_dir=str(self.dir / "logs"),
                                            purge_step=start_step + 1 if start_step else None)
        if progress:
            from tqdm.auto import tqdm

            # disable=None: a bar on a terminal, nothing when stderr is a file or a pipe
            self.bar = tqdm(total=total_steps, initial=start_step, unit="step", dynamic_ncols=True,
                            disable=None, file=sys.stderr)
            if self.bar.disable:
                self.bar = None

    def _truncate_after(self, step: int) -> None:
        """On resume, forget lines a previous run wrote after the checkpoint it is resumed from."""
        if not self.metrics_path.exists():
            return
        keep, dropped = [], 0
        for line in self.metrics_path.read_text(encoding="utf-8").splitlines():
            try:
                rec = json.loads(line)
            except ValueError:
                dropped += 1
                continue
            if int(rec.get("step", 0)) > step:
                dropped += 1
                continue
            keep.append(line)
        if dropped:
            text = "".join(line + "\n" for line in keep)
            atomic_write(self.metrics_path, lambda f: f.write(text.encode("utf-8")))

    def write_hparams(self, hparams: dict[str, Any]) -> None:
        if not self.enabled:
            return
        text = json.dumps(hparams, indent=2, sort_keys=True, default=str)
        atomic_write(self.dir / "hparams.json", lambda f: f.write(text.encode("utf-8")))
        if self.writer is not None:
            self.writer.add_text("hparams", "```\n" + text + "\n```", 0)

    def log(self, record: dict[str, Any]) -> None:
        if not self.enabled:
            return
        record = {k: _finite(v) for k, v in record.items()}
        try:
            files.append_line(self._fd, json.dumps(record), self.metrics_path)
        except OSError as exc:
            raise OSError(exc.errno, exc.strerror, str(self.metrics_path)) from None
        if self.writer is not None:
            step = int(record["step"])
            split = record.get("split", "train")
            for key, value in record.items():
                if key in ("step", "split", "epoch") or not isinstance(value, (int, float)) or isinstance(value, bool):
                    continue
                tag = f"{split}/{key}" if key not in ("lr",) else "lr"
                self.writer.add_scalar(tag, value, step)
        if self.bar is not None:
            if record.get("split") == "train":
                post = {"loss": f"{record['loss']:.4f}" if record.get("loss") is not None else "nan",
                        "lr": f"{record.get('lr', 0):.2e}"}
                if record.get("units_per_s"):
                    post[f"{self.unit}/s"] = f"{record['units_per_s']:.0f}"
                self.bar.set_postfix(post, refresh=False)
            else:
                self.bar.write(self._line(record))
        else:
            self.echo(self._line(record))

    def _line(self, r: dict[str, Any]) -> str:
        total = f"/{self.total}" if self.total else ""
        parts = [f"step {r['step']}{total}", f"epoch {r.get('epoch', 0)}", r.get("split", "train")]
        if r.get("loss") is not None:
            parts.append(f"loss {r['loss']:.4f}")
        if r.get("bits_per_unit") is not None:
            parts.append(f"bits/{self.unit} {r['bits_per_unit']:.3f}")
        if r.get("perplexity") is not None:
            parts.append(f"ppl {r['perplexity']:.2f}")
        if r.get("lr") is not None:
            parts.append(f"lr {r['lr']:.2e}")
        if r.get("units_per_s"):
            parts.append(f"{r['units_per_s']:.0f} {self.unit}/s")
        return "  ".join(parts)

    def advance(self, n: int = 1) -> None:
        if self.bar is not None:
            self.bar.update(n)

    def message(self, text: str) -> None:
        if not self.enabled:
            return
        if self.bar is not None:
            self.bar.write(text)
        else:
            self.echo(text)

    def close(self) -> None:
        if not self.enabled:
            return
        if self.bar is not None:
            self.bar.close()
            self.bar = None
        try:
            if self.writer is not None:
                writer, self.writer = self.writer, None
                writer.flush()
                writer.close()
        finally:
            if self._fd is not None:
                fd, self._fd = self._fd, None
                os.close(fd)
