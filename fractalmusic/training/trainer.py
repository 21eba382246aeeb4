"""The trainer: one loop for every generator. It never imports a concrete representation or generator.

    trainer = Trainer(generator, representation, TrainConfig(max_steps=1000), train_ds, val_ds,
                      make_loader=fractalmusic.data.make_loader, output_dir="runs/folk")
    stats = trainer.fit()            # {"step": 1000, "units_per_s": ..., "best": ".../best.pt", ...}

A step is one optimizer update over `accumulate_grad_batches` batches. The hot loop does no host synchronisation:
losses are summed on the device and read only when a line is logged. The data order is a function of
(seed, epoch) alone (the `make_loader` contract), so a checkpoint needs only (epoch, batch index, RNG states) to
resume exactly where it stopped.
"""
from __future__ import annotations

import contextlib
import inspect
import itertools
import math
import os
import random
import signal
import tempfile
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from fractalmusic import files
from fractalmusic.config import config_to_dict
from fractalmusic.errors import CheckpointError, ConfigError, DataError, FractalMusicError
from fractalmusic.training import cpu_memory, distributed, recommend
from fractalmusic.training.checkpoint import (
    CheckpointManager,
    capture_rng,
    check_resumable,
    load_checkpoint,
    make_payload,
    resolve_resume_path,
    restore_rng,
    to_json,
    topk_name,
)
from fractalmusic.training.config import DEFAULT_MAX_STEPS, TrainConfig
from fractalmusic.training.lock import RunLock
from fractalmusic.training.logs import RunLogger, loss_stats
from fractalmusic.training.schedule import BudgetHorizon, WarmupCosine, make_optimizer, param_groups


class TrainingError(FractalMusicError):
    """Training that cannot go on, such as a loss that became NaN."""


SIGNAL_NAMES = {signal.SIGINT: "SIGINT", signal.SIGTERM: "SIGTERM"}


class StorageError(TrainingError):
    """The run folder cannot take more writes (disk full, I/O error): one line with the last good checkpoint."""

    exit_code = 1


class TrainingInterrupted(KeyboardInterrupt):
    """`fit` stopped by SIGINT or SIGTERM: the step under way was finished and a checkpoint written after it.

    `message` is the one line to show; `exit_code` is 128 + the signal number (130 for SIGINT, 143 for SIGTERM);
    `checkpoint` is the file written (None when no step had finished since the run started).
    """

    def __init__(self, message: str, signum: int, step: int, checkpoint: str | None):
        super().__init__(message)
        self.message = message
        self.signum = int(signum)
        self.exit_code = 128 + int(signum)
        self.step = step
        self.checkpoint = checkpoint


# a training loss above EXPLODE_FACTOR x the run's first loss (and EXPLODE_MARGIN nats above it) has diverged
EXPLODE_FACTOR = 100.0
EXPLODE_MARGIN = 50.0

# Tests only: seconds to sleep inside every optimizer step (after backward, before the update), so that a test can
# deliver a signal while a step is under way.
SLOW_STEP_ENV = "FRACTALMUSIC_TEST_SLOW_STEP"


@dataclass
class RunMeter:
    """The running sums, windows and clocks of one `fit` call (a fresh one per call).

    Sums stay on the device (tensors) until a line is logged, so the hot loop never waits for the device.
    """

    clock: Callable[[], float] = time.monotonic  # seconds (a test injects a fake clock)
    t0: float | None = None  # start of the timed span (default: now)
    excluded: float = 0.0  # seconds spent validating and checkpointing inside the timed span
    units_total: float = 0.0  # units (tokens / cells) predicted in logged windows
    step_lr: float | None = None  # the learning rate the last step used
    grad_norm: Any = None  # the last step's gradient norm before clipping (when clipping)
    # the logging window: loss sum, units, extra metrics and batches since the last logged line
    win_loss: Any = 0.0
    win_n: Any = 0
    win_extra: dict[str, Any] = field(default_factory=dict)
    win_batches: int = 0
    win_t: float | None = None
    win_excluded: float = 0.0
    # since the last checkpoint: the loss sum and units (monitors the train loss when there is no validation set)
    ck_loss: Any = 0.0
    ck_n: Any = 0
    # divergence watch: (step, loss tensor) of each micro-batch since the last check, and the run's first loss
    # (None: no step yet); only read where the trainer synchronises anyway (a logged line, a checkpoint)
    recent: list[tuple[int, Any]] = field(default_factory=list)
    first_loss: Any = None

    def __post_init__(self) -> None:
        if self.t0 is None:
            self.t0 = self.clock()
        if self.win_t is None:
            self.win_t = self.t0

    def elapsed(self) -> float:
        return self.clock() - self.t0

    def add(self, loss: torch.Tensor, n: Any, extras) -> None:
        """One micro-batch: `loss` is its mean loss per unit (detached), `n` its units."""
        weighted = loss.float() * n
        self.win_loss = self.win_loss + weighted
        self.win_n = self.win_n + n
        self.ck_loss = self.ck_loss + weighted
        self.ck_n = self.ck_n + n
        for key, value in extras:
            self.win_extra[key] = self.win_extra.get(key, 0.0) + value
        self.win_batches += 1

    def watch(self, loss: torch.Tensor, step: int) -> None:
        """Keep a micro-batch's (detached) loss for the next divergence check: no device work, no waiting."""
        if self.first_loss is None:
            self.first_loss = loss
        self.recent.append((step, loss))

    def first_non_finite(self) -> tuple[int, float] | None:
        """(step, value) of the first loss since the last call that is NaN or inf; forgets them either way."""
        recent, self.recent = self.recent, []
        if not recent:
            return None
        values = torch.stack([loss.float() for _, loss in recent])
        bad = ~torch.isfinite(values)
        if not bool(bad.any()):
            return None
        i = int(bad.nonzero()[0, 0])
        return recent[i][0], float(values[i])

    def reset_window(self) -> None:
        self.win_loss, self.win_n, self.win_extra, self.win_batches = 0.0, 0, {}, 0
        self.win_t = self.clock()
        self.win_excluded = 0.0

    def exclude(self, seconds: float) -> None:
        """Take `seconds` of side work (validation, checkpoints) out of the throughput figures."""
        self.excluded += seconds
        self.win_excluded += seconds


def default_output_dir(representation_name: str, generator_name: str, root: str = "runs") -> str:
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    return str(Path(root) / f"{representation_name}-{generator_name}-{stamp}")


def prepare_output_dir(path: str | os.PathLike) -> Path:
    """Create the run folder and prove it is writable; a ConfigError (one line) if not."""
    path = Path(path).expanduser()
    try:
        path.mkdir(parents=True, exist_ok=True)
        (path / "checkpoints").mkdir(exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".write-test-", dir=path)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise ConfigError(f"--output-dir {path}: cannot write there ({reason})") from None
    return path


def check_precision(precision: str, device: torch.device) -> None:
    """A ConfigError when the device cannot train at `precision`."""
    if precision == "16" and device.type != "cuda":
        # float16 autocast on CPU lacks kernels (the recurrent layers fail); bfloat16 has them
        raise ConfigError("--precision 16 needs a CUDA GPU (float16 kernels are missing on CPU); "
                          "use --precision bf16 or 32 here")
    if precision == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise ConfigError("--precision bf16: this GPU does not support bfloat16; use --precision 16 or 32")


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


@contextlib.contextmanager
def isolated_rng(seed: int):
    """Run a block with fixed seeds and give the surrounding code its RNG states back untouched afterwards."""
    saved = capture_rng()
    try:
        seed_everything(seed)
        yield
    finally:
        restore_rng(saved)


def skip_batches(loader: Iterable, k: int) -> Iterable:
    """The loader's batches after the first `k`, without loading the skipped ones where the loader allows."""
    if k <= 0:
        return loader
    if isinstance(loader, DataLoader) and loader.batch_sampler is not None:
        remaining = list(loader.batch_sampler)[k:]  # indices only: cheap
        kwargs: dict[str, Any] = dict(
            batch_sampler=remaining,
            num_workers=loader.num_workers,
            collate_fn=loader.collate_fn,
            pin_memory=loader.pin_memory,
            timeout=loader.timeout,
            worker_init_fn=loader.worker_init_fn,
            multiprocessing_context=loader.multiprocessing_context,
            generator=loader.generator,
            persistent_workers=loader.persistent_workers,
        )
        if loader.num_workers > 0:
            kwargs["prefetch_factor"] = loader.prefetch_factor
        return DataLoader(loader.dataset, **kwargs)
    return itertools.islice(loader, k, None)


def _extras(out: dict[str, Any]):
    """(key, value) of the numbers a generator's `loss` reports besides "loss" and "n" (averaged per batch)."""
    for key, value in out.items():
        if key in ("loss", "n"):
            continue
        if isinstance(value, torch.Tensor):
            if value.numel() != 1:
                continue
            value = value.detach().float()
        elif not isinstance(value, (int, float)) or isinstance(value, bool):
            continue
        yield key, value


def _to_device(batch: dict[str, Any], device: torch.device) -> dict[str, Any]:
    if device.type == "cpu":
        return batch
    return {k: v.to(device, non_blocking=True) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}


class _LossForward(nn.Module):
    """`forward(batch) = generator.loss(batch)`, so DDP and torch.compile see the loss as the forward pass."""

    def __init__(self, generator: nn.Module):
        super().__init__()
        self.generator = generator

    def forward(self, batch):
        return self.generator.loss(batch)


try:
    _SLOW_STEP = float(os.environ.get(SLOW_STEP_ENV, "") or 0.0)
except ValueError:
    _SLOW_STEP = 0.0


def payload_bytes(payload: Any) -> int:
    """Bytes of the tensors in a checkpoint payload plus a margin for the rest (what a save needs on disk)."""
    total = 0
    stack = [payload]
    while stack:
        x = stack.pop()
        if isinstance(x, torch.Tensor):
            total += x.numel() * x.element_size()
        elif isinstance(x, dict):
            stack.extend(x.values())
        elif isinstance(x, (list, tuple)):
            stack.extend(x)
        elif isinstance(x, (str, bytes)):
            total += len(x)
    return total + total // 100 + (64 << 10)  # + the archive's own records


def _default_make_loader():
    from fractalmusic.data import make_loader

    return make_loader


class Trainer:
    """Trains `generator` on `train_data` (and validates on `val_data`) as `config` says.

    `make_loader(dataset, batch_size, shuffle, seed, epoch, num_workers=0, rank=0, world_size=1, drop_last=False)`
    returns the batches of one epoch in an order that depends only on (seed, epoch); default:
    `fractalmusic.data.make_loader`. `data_config` (a dataclass or dict) is stored in checkpoints and hparams.
    """

    def __init__(
        self,
        generator,
        representation,
        config: TrainConfig,
        train_data,
        val_data=None,
        *,
        make_loader: Callable[..., Iterable] | None = None,
        data_config: Any = None,
        output_dir: str | os.PathLike | None = None,
        dist_ctx: distributed.DistContext | None = None,
        echo: Callable[[str], None] = print,
        extra_hparams: dict[str, Any] | None = None,
        clock: Callable[[], float] | None = None,
    ):
        self.config = cfg = config
        self.clock = clock or time.monotonic  # wall clock of --max-minutes and throughput (tests inject one)
        self.generator = generator
        self.representation = representation
        self.train_data = train_data
        self.val_data = val_data
        self.make_loader = make_loader or _default_make_loader()
        self._loader_extras: dict[str, Any] = {}
        if data_config is not None and not isinstance(data_config, dict):
            data_config = config_to_dict(data_config)
        self.data_config = data_config
        self.extra_hparams = dict(extra_hparams or {})
        self.ctx = dist_ctx or distributed.setup(cfg.device)
        self.echo = echo if self.ctx.is_main else (lambda *_: None)
        self.device = self.ctx.device
        self.unit = "cell" if getattr(getattr(generator, "spec", None), "kind", "tokens") == "grid" else "token"

        name = output_dir or cfg.output_dir
        if name is None:
            name = default_output_dir(representation.name, generator.name)
        self.output_dir = Path(name).expanduser()
        if self.ctx.is_main:
            prepare_output_dir(self.output_dir)

        # precision
        dev_type = self.device.type
        check_precision(cfg.precision, self.device)
        if dev_type == "cpu" and cfg.keep_freed_memory:
            cpu_memory.keep_freed_memory()
        if dev_type == "cuda":
            try:
                accepts_pin = "pin_memory" in inspect.signature(self.make_loader).parameters
            except (TypeError, ValueError):
                accepts_pin = False
            if accepts_pin:
                self._loader_extras["pin_memory"] = True  # page-locked batches copy to the GPU asynchronously
        self.autocast_dtype = {"16": torch.float16, "bf16": torch.bfloat16}.get(cfg.precision)
        self.scaler = torch.amp.GradScaler(dev_type, enabled=cfg.precision == "16")

        # model, optimizer
        generator.to(self.device)
        generator.train()
        generator.set_grad_checkpointing(bool(cfg.grad_checkpoint))
        if not any(p.requires_grad for p in generator.parameters()):
            raise ConfigError(f"generator {generator.name!r} has no trainable parameters")
        self.optimizer = make_optimizer(generator, cfg.lr, cfg.weight_decay, (cfg.beta1, cfg.beta2), dev_type)
        module: nn.Module = _LossForward(generator)
        self._ddp = None
        if self.ctx.distributed:
            from torch.nn.parallel import DistributedDataParallel

            # a generator that may leave parameters unused in a step (skipped levels) says so with this attribute
            unused = bool(getattr(generator, "ddp_find_unused_parameters", False))
            module = DistributedDataParallel(module, device_ids=[self.device.index] if dev_type == "cuda" else None,
                                             find_unused_parameters=unused)
            self._ddp = module
        if cfg.compile:
            module = torch.compile(module)
        self.loss_module = module
        self.scheduler: WarmupCosine | None = None

        # progress
        self.step = 0
        self.epoch = 0
        self.batch_in_epoch = 0
        self.best_value: float | None = None
        self.bad_checks = 0
        self.last_metrics: dict[str, Any] = {}
        self.stop_reason: str | None = None
        self._pending_rng: dict[str, Any] | None = None
        self._prior_elapsed = 0.0
        self._resumed_from: str | None = None
        self.reference_loss: float | None = None  # the run's first training loss (divergence is judged against it)
        self.last_saved: tuple[str, int] | None = None  # (path, step) of the last checkpoint known good
        self.meter = RunMeter(clock=self.clock)
        self.horizon: BudgetHorizon | None = None  # the lr horizon fitted to --max-minutes
        self._resumed_horizon: dict[str, Any] | None = None
        self.sampling_rec: dict[str, Any] | None = None  # recommended sampling settings (fractalmusic.training.recommend)
        self._stop_signal: int | None = None  # set by the SIGINT/SIGTERM handler while fit runs
        self._in_update = False  # between the optimizer update and the step count catching up with it
        self.checkpoints: CheckpointManager | None = None
        self.logger: RunLogger | None = None
        self.run_lock: RunLock | None = None

    # ------------------------------------------------------------------------------------------ helpers
    @property
    def monitor(self) -> str:
        return "val" if self.val_data is not None else "train"

    def _autocast(self):
        if self.autocast_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.autocast_dtype)

    def _loader(self, dataset, batch_size: int, shuffle: bool, epoch: int):
        return self.make_loader(
            dataset, batch_size=batch_size, shuffle=shuffle, seed=self.config.seed, epoch=epoch,
            num_workers=self.config.num_workers, rank=self.ctx.rank, world_size=self.ctx.world_size,
            drop_last=False, **self._loader_extras,
        )

    def _steps_per_epoch(self) -> int:
        if hasattr(self.train_data, "set_epoch"):
            self.train_data.set_epoch(0)
        n = len(self._loader(self.train_data, self.config.batch_size, True, 0))
        if n == 0:
            raise DataError("the training set gives no batches (is it empty?)")
        return math.ceil(n / self.config.accumulate_grad_batches)

    def _total_steps(self, per_epoch: int) -> int:
        cfg = self.config
        limits = [s for s in (cfg.effective_max_steps, cfg.epochs * per_epoch if cfg.epochs else None) if s]
        return min(limits) if limits else None  # None: only --max-minutes bounds the run

    def _finished(self) -> bool:
        cfg = self.config
        if cfg.effective_max_steps is not None and self.step >= cfg.effective_max_steps:
            return True
        return cfg.epochs is not None and self.epoch >= cfg.epochs

    # ------------------------------------------------------------------------------------------ resume
    def load_resume_state(self, ckpt: dict[str, Any] | str | os.PathLike, source: str | None = None) -> None:
        """Restore weights, optimizer, scaler, position, RNG and best-so-far from a checkpoint (dict or path)."""
        if not isinstance(ckpt, dict):
            path = resolve_resume_path(str(ckpt), self.output_dir)
            ckpt = load_checkpoint(path, purpose="resume")
        else:
            path = source or getattr(ckpt, "path", None) or "checkpoint"
        ckpt = check_resumable(ckpt, path)  # a checked Checkpoint: typed fields, decoded JSON, upgraded state
        model = self.generator
        if ckpt.generator_ref.name != model.name:
            raise CheckpointError(f"{path}: holds a {ckpt.generator_ref.name!r} generator, not {model.name!r}")
        try:
            model.load_state_dict(ckpt.model_state)
        except RuntimeError as exc:
            raise CheckpointError(f"{path}: weights do not fit this {model.name} generator "
                                  f"({str(exc).splitlines()[0][:160]})") from None
        try:
            self.optimizer.load_state_dict(ckpt["optimizer"])
        except (ValueError, KeyError) as exc:
            raise CheckpointError(f"{path}: optimizer state does not fit this model ({exc})") from None
        # the options of this run win over those stored with the optimizer state (the lr follows the schedule)
        for group, fresh in zip(self.optimizer.param_groups, param_groups(model, self.config.weight_decay)):
            group["weight_decay"] = fresh["weight_decay"]
            group["betas"] = (self.config.beta1, self.config.beta2)
        if ckpt.get("scaler") and self.scaler.is_enabled():
            self.scaler.load_state_dict(ckpt["scaler"])
        self.step = int(ckpt["step"])
        self.epoch = int(ckpt.get("epoch", 0))
        self.batch_in_epoch = int(ckpt.get("batch_in_epoch", 0))
        state = ckpt.trainer_state
        self.best_value = state.get("best_value")
        self.bad_checks = int(state.get("bad_checks", 0))
        self._prior_elapsed = float(state.get("elapsed_s", 0.0))
        ref = state.get("reference_loss")
        self.reference_loss = float(ref) if isinstance(ref, (int, float)) else None
        self._resumed_horizon = state.get("lr_horizon")
        self.sampling_rec = ckpt.sampling or None
        self.last_metrics = ckpt.metrics
        old = ckpt.train_config
        same_world = int(ckpt.get("world_size", 1)) == self.ctx.world_size
        same_batches = (old.get("batch_size") == self.config.batch_size
                        and old.get("accumulate_grad_batches") == self.config.accumulate_grad_batches)
        rngs = ckpt["rng"] if isinstance(ckpt["rng"], list) else [ckpt["rng"]]
        if same_world and self.ctx.rank < len(rngs):
            self._pending_rng = rngs[self.ctx.rank]
        else:
            seed_everything(self.config.seed + self.ctx.rank + self.step)
        if not (same_world and same_batches) and self.batch_in_epoch:
            self.echo(f"batch size or number of processes changed since the checkpoint: continuing from the start "
                      f"of epoch {self.epoch + 1} (exact resume needs the same settings)")
            self.epoch += 1
            self.batch_in_epoch = 0
        self._resumed_from = str(path)
        self.last_saved = (str(path), self.step)

    # ------------------------------------------------------------------------------------------ fit
    def fit(self, resume: dict[str, Any] | str | os.PathLike | None = None,
            resume_source: str | None = None) -> dict[str, Any]:
        """Train until --max-steps / --epochs / --max-minutes / early stopping; returns run statistics.

        `resume`: a loaded checkpoint (with `resume_source` naming it in messages) or a path or "last";
        default: `config.resume_from_checkpoint`.
        """
        lock = None
        if self.ctx.is_main:
            # one writer per run folder, from before the resume state is read until the last file is written
            lock = RunLock(self.output_dir, echo=self.echo).acquire()
        self.run_lock = lock
        try:
            with self._stop_signals():
                return self._fit(resume, resume_source)
        finally:
            self.run_lock = None
            if lock is not None:
                lock.release()

    @contextlib.contextmanager
    def _stop_signals(self):
        """While fit runs, SIGINT and SIGTERM ask the loop to stop after the step under way (a second one: now)."""
        self._stop_signal = None
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        previous: dict[int, Any] = {}

        def handler(signum, frame):
            if self._stop_signal is not None:  # asked twice: stop at once, as before
                for s, h in previous.items():
                    signal.signal(s, h)
                raise KeyboardInterrupt
            self._stop_signal = signum

        for s in SIGNAL_NAMES:
            previous[s] = signal.getsignal(s)
            signal.signal(s, handler)
        try:
            yield
        finally:
            for s, h in previous.items():
                signal.signal(s, h)

    def _fit(self, resume, resume_source) -> dict[str, Any]:
        cfg = self.config
        self._resumed_from = None
        if resume is None and cfg.resume_from_checkpoint:
            resume = cfg.resume_from_checkpoint
        if resume is not None:
            self.load_resume_state(resume, resume_source)
        else:
            seed_everything(cfg.seed + self.ctx.rank)

        per_epoch = self._steps_per_epoch()
        total = self._total_steps(per_epoch)
        decay = cfg.decay_steps or total or DEFAULT_MAX_STEPS  # (a --max-minutes run: until measured)
        self.scheduler = WarmupCosine(self.optimizer, cfg.lr, cfg.warmup_steps, decay, cfg.lr_schedule,
                                      cfg.min_lr_ratio)
        self.horizon = None
        if cfg.max_minutes is not None and cfg.decay_steps is None and cfg.lr_schedule != "constant":
            # the cosine ends when the budget does: its horizon follows the measured speed (capped by the steps)
            self.horizon = BudgetHorizon(cfg.max_minutes * 60.0, cfg.warmup_steps, cap=total,
                                         every=10 if self.ctx.distributed else 1)
            self.horizon.load_state_dict(self._resumed_horizon)
            if self.horizon.horizon is not None:
                self.horizon.apply(self.scheduler, self.horizon.horizon)
        self.scheduler.load_state_dict({"step": self.step})
        start_step = self.step

        main = self.ctx.is_main
        if main:
            self.checkpoints = CheckpointManager(self.output_dir / "checkpoints", cfg.save_top_k)
        self.logger = RunLogger(self.output_dir, enabled=main, tensorboard=cfg.tensorboard, progress=cfg.progress,
                                total_steps=total, start_step=start_step, unit=self.unit, echo=self.echo)
        try:
            self.logger.write_hparams(self.hparams())
        except OSError as exc:
            self._close_logger_quietly()
            raise self._storage_error(self.output_dir, files.errno_name(exc), exc.strerror or str(exc)) from None
        if self._resumed_from:
            self.logger.message(f"resumed from {self._resumed_from} at step {self.step} (epoch {self.epoch})")
        elif main and self.checkpoints is not None and self.checkpoints.last.exists():
            self.logger.message(f"note: {self.checkpoints.dir} already holds checkpoints of an earlier run; this "
                                f"run replaces last.pt and best.pt (to continue that run instead: "
                                f"--resume-from-checkpoint last)")
        if self._finished():
            self.logger.message(f"already at step {self.step}: nothing to train (raise --max-steps or --epochs)")
            self.logger.close()
            return self._stats(0, 0.0, 0.0)

        self.meter = meter = RunMeter(clock=self.clock)
        self.stop_reason = None
        interrupted = False
        try:
            self._loop()
        except KeyboardInterrupt:
            interrupted = True
            self.stop_reason = "interrupted"
        except OSError as exc:  # metrics.jsonl, TensorBoard or hparams: the disk is full or failing
            self._close_logger_quietly()
            folder = Path(exc.filename).parent if getattr(exc, "filename", None) else self.output_dir
            raise self._storage_error(folder, files.errno_name(exc), exc.strerror or str(exc)) from None
        except BaseException:
            self._close_logger_quietly()
            raise
        finally:
            wall = meter.elapsed()
            train_s = max(1e-9, wall - meter.excluded)
        if (interrupted and main and self.step > start_step and self.checkpoints is not None
                and not self._in_update):
            # an interrupt from elsewhere (not our signal handler): weights and optimizer are those of the last
            # finished step, but the RNG may be part-way into the next one (close to, not exactly, a resume point)
            self._checkpoint(None, False, collective=False)
            self.logger.message(f"interrupted: checkpoint of step {self.step} saved to {self.checkpoints.last}")
        self.logger.close()
        if interrupted:
            raise KeyboardInterrupt
        if self.stop_reason in ("sigint", "sigterm"):
            signum = signal.SIGINT if self.stop_reason == "sigint" else signal.SIGTERM
            where = self.last_saved[0] if self.last_saved is not None and self.last_saved[1] == self.step else None
            said = (f"checkpoint of step {self.step} saved to {where} (an exact resume point)" if where
                    else "no step had finished, so no checkpoint was written")
            raise TrainingInterrupted(f"stopped by {SIGNAL_NAMES[signum]} after step {self.step}: {said}",
                                      signum, self.step, where)
        return self._stats(self.step - start_step, train_s, wall)

    def _close_logger_quietly(self) -> None:
        try:
            self.logger.close()
        except Exception:  # already failing (e.g. a full disk): the first error is the one to report
            pass

    def _stats(self, steps: int, train_s: float, wall: float) -> dict[str, Any]:
        units = self.meter.units_total
        ck = self.output_dir / "checkpoints"
        return {
            "step": self.step,
            "epoch": self.epoch,
            "steps_run": steps,
            "units": units,
            "unit": self.unit,
            "train_seconds": train_s,
            "wall_seconds": wall,
            "units_per_s": units / train_s if train_s > 0 else 0.0,
            "stop_reason": self.stop_reason or "finished",
            "metrics": dict(self.last_metrics),
            "best_value": self.best_value,
            "monitor": self.monitor,
            "output_dir": str(self.output_dir),
            "last": str(ck / "last.pt"),
            "best": str(ck / "best.pt"),
        }

    def _loop(self) -> None:
        cfg = self.config
        accum = cfg.accumulate_grad_batches
        while not self._finished():
            if hasattr(self.train_data, "set_epoch"):
                self.train_data.set_epoch(self.epoch)
            loader = self._loader(self.train_data, cfg.batch_size, True, self.epoch)
            n_batches = len(loader)
            if n_batches == 0:
                raise DataError("the training set gives no batches (is it empty?)")
            if self.batch_in_epoch >= n_batches:  # a checkpoint from a longer epoch: start the next one
                self.epoch += 1
                self.batch_in_epoch = 0
                continue
            # RNG restore point: the original run drew from the RNG when it created this epoch's iterator, so
            # a resume at an epoch start restores before creating it, a resume mid-epoch after creating it
            if self._pending_rng is not None and self.batch_in_epoch == 0:
                restore_rng(self._pending_rng)
                self._pending_rng = None
            batches = iter(skip_batches(loader, self.batch_in_epoch))
            if self._pending_rng is not None:
                restore_rng(self._pending_rng)
                self._pending_rng = None
            while True:
                group = min(accum, n_batches - self.batch_in_epoch)
                self._train_step(batches, group)  # sets _in_update once the optimizer has updated the weights
                self.step += 1
                self.scheduler.step()
                self.batch_in_epoch += group
                step_epoch = self.epoch
                end_of_epoch = self.batch_in_epoch >= n_batches
                if end_of_epoch:
                    self.epoch += 1
                    self.batch_in_epoch = 0
                self._in_update = False
                self.logger.advance()
                if self._after_step(step_epoch):
                    return
                if end_of_epoch or self._finished():
                    break

    def _train_step(self, batches, group: int) -> None:
        module = self.loss_module
        ddp = self._ddp
        meter = self.meter
        meter.step_lr = self.optimizer.param_groups[0]["lr"]
        watch = self.config.precision != "16"  # float16's grad scaler skips non-finite steps itself
        for i in range(group):
            try:
                batch = next(batches)
            except StopIteration:
                raise DataError("the data loader gave fewer batches than its length says") from None
            batch = _to_device(batch, self.device)
            # gradients of all but the last micro-batch stay local: one all-reduce per optimizer step
            sync = ddp.no_sync() if ddp is not None and i < group - 1 else contextlib.nullcontext()
            with sync:
                with self._autocast():
                    out = module(batch)
                loss = out["loss"]
                scaled = loss / group if group > 1 else loss
                self.scaler.scale(scaled).backward()
            n = out["n"]
            n = n.detach() if isinstance(n, torch.Tensor) else n
            meter.add(loss.detach(), n, _extras(out))
            if watch:
                meter.watch(loss.detach(), self.step + 1)
        if _SLOW_STEP:
            time.sleep(_SLOW_STEP)
        if self.config.grad_clip is not None:
            self.scaler.unscale_(self.optimizer)
            meter.grad_norm = torch.nn.utils.clip_grad_norm_(self.generator.parameters(), self.config.grad_clip)
        self._in_update = True  # from here until the loop counts the step, weights are ahead of self.step
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)

    # ------------------------------------------------------------------------------------------ periodic work
    def _after_step(self, step_epoch: int) -> bool:
        """Logging, validation, checkpoints and stop decisions after a step; True means stop now."""
        cfg = self.config
        s = self.step
        finished = self._finished()
        stop = None if finished else self._signal_stop()  # a signal during the last step changes nothing
        signalled = stop is not None
        if stop is None and cfg.max_minutes is not None and (not self.ctx.distributed or s % 10 == 0 or finished):
            over = self._prior_elapsed + self.meter.elapsed() > cfg.max_minutes * 60.0
            if distributed.any_rank(self.ctx, over):
                stop = "max_minutes"
        end = finished or stop is not None
        if self.horizon is not None and not end:
            self._update_horizon()
        if s % cfg.log_every_n_steps == 0 or end:
            self._log_train(step_epoch)
        t_side = self.clock()
        metric = None
        do_ckpt = s % cfg.checkpoint_every_n_steps == 0 or end
        if signalled:
            pass  # stop quickly: the checkpoint below is written without validating first
        elif self.val_data is not None and (s % cfg.val_check_interval_steps == 0 or end or do_ckpt):
            # checkpoint steps validate too: top-k files are named and ranked by this step's own val loss
            metric = self.validate(step_epoch)
            self._recommend_sampling(at_end=end)
        if cfg.log_samples_every_n_steps and s % cfg.log_samples_every_n_steps == 0 and not signalled:
            self._log_samples(step_epoch)
        elif self.val_data is None and do_ckpt:
            metric = self._train_loss_since_checkpoint()
        new_best = False
        if metric is not None:
            new_best = math.isfinite(metric) and (self.best_value is None or metric < self.best_value)
            if new_best:
                self.best_value = metric
                self.bad_checks = 0
            else:
                self.bad_checks += 1
            patience = cfg.early_stopping_patience
            if patience is not None and self.bad_checks >= patience and stop is None and not finished:
                stop = "early_stopping"
                do_ckpt = True
                self.logger.message(f"early stopping: no better {self.monitor} loss in {patience} checks "
                                    f"(best {self.best_value:.4f})")
        if stop == "max_minutes":
            self.logger.message(f"time budget of {cfg.max_minutes:g} min spent at step {s}: stopping")
        if do_ckpt:
            self._checkpoint(metric, new_best)
        elif new_best:
            self._save_best()
        if end and not new_best and self.sampling_rec is not None and self.sampling_rec.get("at_end"):
            self._add_sampling_to_best()
        if stop is None and not finished:
            late = self._signal_stop()  # arrived while validating or writing: stop before the next step
            if late is not None:
                stop = late
                if not do_ckpt:
                    self._checkpoint(None, False)
        self.meter.exclude(self.clock() - t_side)
        self.stop_reason = stop
        return stop is not None

    def _recommend_sampling(self, at_end: bool) -> None:
        """Find sampling settings on validation data (fractalmusic.training.recommend) for the checkpoints: token
        models at every validation (a few batches of logits), grid models once at the end (a few samples)."""
        cfg = self.config
        gen = self.generator
        if not (cfg.recommend_sampling and self.ctx.is_main and self.val_data is not None):
            return
        tokens = recommend.is_token_model(gen)
        if not tokens and not (self.unit == "cell" and at_end):
            return
        was_training = gen.training
        gen.eval()
        try:
            with isolated_rng(cfg.seed + 104729), torch.no_grad(), self._autocast():
                if hasattr(self.val_data, "set_epoch"):
                    self.val_data.set_epoch(0)
                loader = self._loader(self.val_data, cfg.val_batch_size or cfg.batch_size, False, 0)
                batches = (_to_device(b, self.device) for b in loader)
                if tokens:
                    got = recommend.token_logits(gen, batches)
                    rec = recommend.token_settings(*got) if got is not None else None
                    if rec is not None and at_end:  # ABC text: a temperature for well-formed bars (a few samples)
                        rec = recommend.bar_settings(gen, self.representation, rec, seed=cfg.seed) or rec
                else:
                    rec = recommend.grid_settings(gen, batches, seed=cfg.seed, representation=self.representation,
                                                  pieces=recommend.validation_pieces(self.val_data),
                                                  budget_s=recommend.grid_budget(
                                                      self._prior_elapsed + self.meter.elapsed()))
        finally:
            gen.train(was_training)
        if rec is None:
            return
        rec.update(step=self.step, at_end=bool(at_end) and (not tokens or "bar_scores" in rec))
        self.sampling_rec = rec
        if at_end:
            self.logger.message(f"recommended sampling settings (stored in the checkpoints, used by fmusic sample): "
                                f"{recommend.explain(rec)}")

    def _log_samples(self, epoch: int) -> None:
        """--log-samples-every-n-steps: a few pieces sampled now (with the recommended settings where known) into
        OUTPUT/samples/step_N and TensorBoard, their mean note statistics into metrics.jsonl (split "samples").
        Rank 0 only; the training RNG is left untouched (exact resume), and a failure here never stops training."""
        if not self.ctx.is_main or self.logger is None:
            return
        from fractalmusic import api
        from fractalmusic.metrics.report import piece_metrics

        cfg = self.config
        folder = self.output_dir / "samples" / f"step_{self.step:08d}"
        model = api.Model(self.representation, self.generator, {"data_config": self.data_config or {},
                                                                 "train_config": config_to_dict(cfg)})
        rec = model.recommended_sampling if self.sampling_rec is None else {
            k: self.sampling_rec[k] for k in ("temperature", "top_p", "note_temperature")
            if self.sampling_rec.get(k) is not None}
        formats = ["png", "mid"] + (["abc"] if "abc" in model.default_formats else [])
        try:
            with isolated_rng(cfg.seed + 15485863):
                pieces = model.sample(cfg.log_samples_num, seed=cfg.seed + self.step, **rec)
                report = api.write_samples(pieces, folder, formats, representation=self.representation)
                rows = [piece_metrics(p) for p in pieces]
        except OSError:
            raise
        except Exception as exc:  # sampling or music21 on half-trained output: say so, keep training
            self.logger.message(f"step {self.step}: could not log samples ({type(exc).__name__}: "
                                f"{str(exc).splitlines()[0][:120] if str(exc) else ''})")
            return
        record: dict[str, Any] = {"step": self.step, "epoch": epoch, "split": "samples", "samples": len(pieces)}
        keys = sorted({k for r in rows for k, v in r.items() if isinstance(v, (int, float)) and not isinstance(v, bool)})
        for key in keys:
            values = [float(r[key]) for r in rows if isinstance(r.get(key), (int, float))]
            values = [v for v in values if math.isfinite(v)]
            record[key] = sum(values) / len(values) if values else None
        record["notes"] = sum(len(p.notes) for p in pieces) / max(1, len(pieces))
        record["folder"] = str(folder)
        self.logger.log(record)
        writer = self.logger.writer
        if writer is not None:
            from fractalmusic.io.image import roll_image

            for i, piece in enumerate(pieces):
                if len(piece.notes):
                    image = roll_image(piece)[0][::-1]  # high pitches on top
                    writer.add_image(f"samples/{i}", np.ascontiguousarray(image), self.step, dataformats="HWC")
                if piece.abc:
                    writer.add_text(f"samples/{i}", "```\n" + piece.abc + "\n```", self.step)
        for problem in report.problems[:1]:
            self.logger.message(f"step {self.step} samples: {problem}")

    def _add_sampling_to_best(self) -> None:
        """Settings found at the end also go into an earlier best.pt (its weights are the best, the settings the
        last measured)."""
        if not self.ctx.is_main or self.checkpoints is None or not self.checkpoints.best.exists():
            return
        best = load_checkpoint(self.checkpoints.best)
        payload = dict(best)
        payload["sampling"] = to_json(self.sampling_rec)
        kept = self.last_saved
        self._write(payload, ["best.pt"])
        self.last_saved = kept  # (the last checkpoint of this step is still last.pt)

    def _update_horizon(self) -> None:
        """Re-estimate the cosine horizon from the measured speed (all processes agree on rank 0's figure)."""
        h = self.horizon
        new = h.update(self.step, self._prior_elapsed + self.meter.elapsed())
        if self.ctx.distributed and h.due:
            # every process must use the same lr: take the mean estimate (all call update at the same steps)
            got = distributed.all_reduce_sum(self.ctx, [float(new if new is not None else 0), 1.0])
            new = int(got[0] // got[1]) if got[0] > 0 else None
            h.horizon = new if new is not None else h.horizon
        if new is None:
            return
        h.apply(self.scheduler, new)
        if not h.announced:
            h.announced = True
            self.logger.message(f"--max-minutes {self.config.max_minutes:g}: about {new} steps fit the budget at "
                                f"the speed measured so far; the learning rate anneals by then (re-estimated "
                                f"as it goes)")

    def _signal_stop(self) -> str | None:
        """"sigint" / "sigterm" when a stop signal has arrived (on any process: all stop after the same step)."""
        sig = self._stop_signal
        if self.ctx.distributed:
            if not distributed.any_rank(self.ctx, sig is not None):
                return None
            if sig is None:  # another process got it: stop alike
                self._stop_signal = sig = signal.SIGTERM
        elif sig is None:
            return None
        return "sigint" if sig == signal.SIGINT else "sigterm"

    # ------------------------------------------------------------------------------------------ divergence
    def _diverged(self, what: str) -> TrainingError:
        if self.last_saved is not None:
            kept = f"the last good checkpoint, {self.last_saved[0]} (step {self.last_saved[1]}), is kept"
        else:
            kept = "no checkpoint had been written yet"
        return TrainingError(f"{what}: stopped; {kept}; try a lower --lr (now {self.config.lr:g}), --grad-clip, "
                             f"or --precision 32")

    def _check_divergence(self, loss: float | None = None) -> None:
        """TrainingError when a training loss since the run began was not finite, or `loss` (a window's mean
        training loss) has exploded far above the run's first loss. Called before anything is saved."""
        m = self.meter
        if m.first_loss is not None:
            if self.reference_loss is None:
                first = float(m.first_loss)
                self.reference_loss = first if math.isfinite(first) else None
        bad = m.first_non_finite()
        if bad is not None and not self.ctx.distributed:  # in DDP a bad loss shows in the summed loss and weights
            raise self._diverged(f"the training loss became {bad[1]} at step {bad[0]}")
        if loss is None or self.config.precision == "16":
            return
        if not math.isfinite(loss):
            raise self._diverged(f"the training loss became {loss} at step {self.step}")
        ref = self.reference_loss
        if ref is not None and loss > ref + max(EXPLODE_MARGIN, (EXPLODE_FACTOR - 1.0) * abs(ref)):
            raise self._diverged(f"the training loss exploded to {loss:.4g} by step {self.step} (the run began at "
                                 f"{ref:.4g})")

    def _check_weights(self) -> None:
        """TrainingError naming the first parameter holding NaN or inf (then nothing is saved)."""
        params = [(name, p) for name, p in self.generator.named_parameters()]
        if not params:
            return
        ok = torch.stack([torch.isfinite(p.detach()).all() for _, p in params])
        if bool(ok.all()):
            return
        name = next(n for (n, _), good in zip(params, ok.tolist()) if not good)
        raise self._diverged(f"the weights hold NaN or inf after step {self.step} (first: {name})")

    def _train_loss_since_checkpoint(self) -> float | None:
        m = self.meter
        loss_sum, n = distributed.all_reduce_sum(self.ctx, [float(m.ck_loss), float(m.ck_n)])
        m.ck_loss, m.ck_n = 0.0, 0
        return loss_sum / n if n > 0 else None

    def _log_train(self, epoch: int) -> None:
        m = self.meter
        keys = sorted(m.win_extra)
        values = [float(m.win_loss), float(m.win_n), float(m.win_batches)]
        values += [float(m.win_extra[k]) for k in keys]
        values = distributed.all_reduce_sum(self.ctx, values)
        loss_sum, n, batches = values[:3]
        if n <= 0:
            return
        loss = loss_sum / n
        self._check_divergence(loss)
        now = self.clock()
        seconds = max(1e-9, now - m.win_t - m.win_excluded)
        m.units_total += n
        record: dict[str, Any] = {"step": self.step, "epoch": epoch, "split": "train"}
        record.update(loss_stats(loss))
        record["lr"] = m.step_lr  # the lr this step used
        record["units_per_s"] = n / seconds
        record["units"] = n
        for k, v in zip(keys, values[3:]):
            record[k] = v / batches
        if m.grad_norm is not None:
            record["grad_norm"] = float(m.grad_norm)
        if self.horizon is not None and self.horizon.horizon is not None:
            record["lr_horizon"] = self.horizon.horizon
        if self.config.precision == "16":
            record["loss_scale"] = float(self.scaler.get_scale())
        if self.device.type == "cuda":  # this process's peak so far (grad checkpointing, batch size choices)
            record["cuda_peak_gb"] = torch.cuda.max_memory_allocated(self.device) / 2**30
        record["elapsed_s"] = self._prior_elapsed + (now - m.t0)
        self.logger.log(record)
        self.last_metrics["train"] = record
        m.reset_window()

    @torch.no_grad()
    def validate(self, epoch: int | None = None) -> float | None:
        """Mean validation loss in nats per unit over (at most --val-batches) validation batches."""
        if self.val_data is None:
            return None
        cfg = self.config
        model = self.generator
        was_training = model.training
        model.eval()
        loss_sum = torch.zeros((), dtype=torch.float64, device=self.device)
        count: Any = 0
        extra: dict[str, Any] = {}
        batches = 0
        with isolated_rng(cfg.seed + 7919):
            if hasattr(self.val_data, "set_epoch"):
                self.val_data.set_epoch(0)
            loader = self._loader(self.val_data, cfg.val_batch_size or cfg.batch_size, False, 0)
            for i, batch in enumerate(loader):
                if cfg.val_batches is not None and i >= cfg.val_batches:
                    break
                batch = _to_device(batch, self.device)
                with self._autocast():
                    out = model.loss(batch)
                n = out["n"]
                loss_sum += out["loss"].detach().double() * n
                count = count + n
                for key, value in _extras(out):  # e.g. the fractal loss split into note and empty cells
                    extra[key] = extra.get(key, 0.0) + value  # summed on the device, read once at the end
                batches += 1
        if was_training:
            model.train()
        keys = sorted(extra)
        sums = distributed.all_reduce_sum(self.ctx, [float(loss_sum), float(count), float(batches)]
                                          + [float(extra[k]) for k in keys])
        total, n, batches = sums[:3]
        if n <= 0:
            return None
        loss = total / n
        record: dict[str, Any] = {"step": self.step, "epoch": self.epoch if epoch is None else epoch, "split": "val"}
        record.update(loss_stats(loss))
        record["units"] = n
        record.update({k: v / batches for k, v in zip(keys, sums[3:])})
        record["elapsed_s"] = self._prior_elapsed + self.meter.elapsed()
        if self.logger is not None:
            self.logger.log(record)
        self.last_metrics["val"] = record
        return loss

    # ------------------------------------------------------------------------------------------ checkpoints
    def _payload(self, rng: Any) -> dict[str, Any]:
        return make_payload(
            self.representation,
            self.generator,
            optimizer=self.optimizer.state_dict(),
            scheduler=self.scheduler.state_dict() if self.scheduler is not None else {},
            scaler=self.scaler.state_dict() if self.scaler.is_enabled() else {},
            rng=rng,
            step=self.step,
            epoch=self.epoch,
            batch_in_epoch=self.batch_in_epoch,
            world_size=self.ctx.world_size,
            metrics=to_json(self.last_metrics),
            train_config=to_json(config_to_dict(self.config)),
            data_config=to_json(self.data_config or {}),
            sampling=to_json(self.sampling_rec or {}),
            trainer_state=to_json({
                "best_value": self.best_value,
                "bad_checks": self.bad_checks,
                "monitor": self.monitor,
                "elapsed_s": self._prior_elapsed + self.meter.elapsed(),
                "reference_loss": self.reference_loss,
                "lr_horizon": self.horizon.state_dict() if self.horizon is not None else None,
            }),
        )

    def _rng_states(self, collective: bool = True) -> list[dict[str, Any]]:
        if collective:
            return distributed.gather_objects(self.ctx, capture_rng())
        return [capture_rng()]

    def _checkpoint(self, metric: float | None, new_best: bool, collective: bool = True) -> None:
        self._check_before_save()
        rng = self._rng_states(collective)
        if not self.ctx.is_main or self.checkpoints is None:
            return
        names = ["last.pt"]
        if metric is not None and self.checkpoints.wants_topk(metric):
            names.append(topk_name(self.step, self.monitor, metric))
        if new_best:
            names.append("best.pt")
        self._write(self._payload(rng), names)
        self.checkpoints.prune_topk()

    def _save_best(self) -> None:
        self._check_before_save()
        rng = self._rng_states()
        if self.ctx.is_main and self.checkpoints is not None:
            self._write(self._payload(rng), ["best.pt"])

    def _check_before_save(self) -> None:
        """Nothing diverged since the last check: a checkpoint never holds the weights of a NaN loss."""
        m = self.meter
        loss = None
        if not self.ctx.distributed:  # (in DDP the window is summed over processes only when a line is logged)
            n = float(m.win_n)
            loss = float(m.win_loss) / n if n > 0 else None
        self._check_divergence(loss)
        self._check_weights()

    def _write(self, payload: dict[str, Any], names: list[str]) -> None:
        """Write a checkpoint; disk full or another I/O error ends the run with one line (StorageError)."""
        folder = self.checkpoints.dir
        need = payload_bytes(payload)
        free = files.free_bytes(folder)
        if free is not None and free < need:
            raise self._storage_error(folder, "ENOSPC", f"{free / 2**20:.1f} MiB free, a checkpoint needs about "
                                                        f"{need / 2**20:.1f} MiB", saving=True)
        try:
            paths = self.checkpoints.write(payload, names)
        except OSError as exc:
            raise self._storage_error(folder, files.errno_name(exc), exc.strerror or str(exc), saving=True) from None
        except RuntimeError as exc:  # torch.save reports a failed write as a RuntimeError ("unexpected pos")
            inner = exc.__cause__ or exc.__context__  # the OSError (ENOSPC, EIO, ...) behind it, where kept
            if isinstance(inner, OSError):
                raise self._storage_error(folder, files.errno_name(inner), inner.strerror or str(inner),
                                          saving=True) from None
            free = files.free_bytes(folder)
            if free is not None and free < need:
                raise self._storage_error(folder, "ENOSPC", "the disk filled up while writing", saving=True) from None
            if "unexpected pos" not in str(exc) and "write" not in str(exc).lower():
                raise
            first = str(exc).strip().splitlines()[0][:120]
            raise self._storage_error(folder, "EIO", f"the write failed: {first}", saving=True) from None
        self.last_saved = (str(paths[0]), self.step)

    def _storage_error(self, folder, condition: str, detail: str, saving: bool = False) -> "StorageError":
        what = f"cannot save the checkpoint of step {self.step}" if saving else "cannot write the run's files"
        if self.last_saved is not None:
            kept = f"the last good checkpoint is {self.last_saved[0]} (step {self.last_saved[1]})"
        else:
            kept = "no checkpoint had been written yet"
        hint = "; free some space or train into another --output-dir" if condition == "ENOSPC" else ""
        label = "disk full" if condition == "ENOSPC" else "I/O error"
        return StorageError(f"{folder}: {label} ({condition}: {detail}): {what}; {kept}{hint}")

    def hparams(self) -> dict[str, Any]:
        from fractalmusic import __version__

        spec = getattr(self.generator, "spec", None)
        return {
            "representation": {"name": self.representation.name, "state": self.representation.state_dict()},
            "generator": {"name": self.generator.name, "config": self.generator.config_dict()},
            "train": config_to_dict(self.config),
            "data": self.data_config or {},
            "spec": dict(vars(spec)) if spec is not None else {},
            "num_parameters": int(self.generator.num_parameters()),
            "world_size": self.ctx.world_size,
            "device": str(self.device),
            "unit": self.unit,
            "package_version": __version__,
            "torch_version": torch.__version__,
            **self.extra_hparams,
        }


def sigterm_as_interrupt() -> Callable[[], None]:
    """Until the returned function is called, SIGTERM raises TrainingInterrupted (exit 143, one line) instead of
    killing the process, so a scheduler's stop before training begins is reported like Ctrl-C. `fit` installs
    its own handlers (finish the step, checkpoint) while it runs. Main thread only; elsewhere a no-op."""
    if threading.current_thread() is not threading.main_thread():
        return lambda: None

    def handler(signum, frame):
        raise TrainingInterrupted("stopped by SIGTERM before training began: nothing was trained",
                                  signum, 0, None)

    previous = signal.signal(signal.SIGTERM, handler)

    def restore() -> None:
        signal.signal(signal.SIGTERM, previous)

    return restore
