"""`TrainConfig`: every trainer option of `fmusic train`, one dataclass field each.

Fields become options through `fractalmusic.config.parse_options` (`max_steps` -> `--max-steps`), exactly like a
plugin's Config, so typos get the same suggestions. The comment after each field is its help text.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from fractalmusic.errors import ConfigError

DEFAULT_MAX_STEPS = 2000  # used when none of --max-steps, --epochs, --max-minutes is given


@dataclass
class TrainConfig:
    max_steps: int | None = None  # optimizer steps to train (default 2000 unless --epochs or --max-minutes is given)
    epochs: int | None = None  # passes over the training data (with --max-steps: whichever ends first)
    batch_size: int = 32  # sequences / rolls per optimizer step, per process (before accumulation)
    val_batch_size: int | None = None  # validation batch size (default: --batch-size)
    lr: float = 1e-3  # peak learning rate of AdamW
    min_lr_ratio: float = 0.0  # cosine decay ends at lr * this
    warmup_steps: int = 100  # linear warm-up from 0 to --lr
    decay_steps: int | None = None  # cosine horizon in steps (default: the run's length; set it to resume further)
    lr_schedule: str = "cosine"  # cosine | wsd (the peak, then a cosine over the last 30%) | constant (after warm-up)
    weight_decay: float = 0.01  # AdamW weight decay on matrices (not on biases, norms or 1-D parameters)
    beta1: float = 0.9  # AdamW beta1
    beta2: float = 0.99  # AdamW beta2
    grad_clip: float | None = 1.0  # clip the global gradient norm to this (none or 0: off)
    accumulate_grad_batches: int = 1  # batches whose gradients add up to one optimizer step
    precision: str = "32"  # 32 | 16 (float16 autocast + grad scaler, CUDA only) | bf16 (bfloat16 autocast)
    grad_checkpoint: bool = False  # recompute activations in backward to save memory
    keep_freed_memory: bool = True  # CPU, glibc: keep freed memory for reuse (no page faults on big tensors)
    seed: int = 0  # seeds model initialisation, data order, crops and dropout
    num_workers: int = 0  # DataLoader worker processes
    log_every_n_steps: int = 50  # train metrics to metrics.jsonl / TensorBoard / progress bar every N steps
    val_check_interval_steps: int = 500  # validate every N steps (and at the end)
    val_batches: int | None = None  # at most this many validation batches per check (default: all)
    checkpoint_every_n_steps: int = 500  # write checkpoints/last.pt (and top-k, best) every N steps and at the end
    save_top_k: int = 3  # keep the k best step_XXXXXXXX-val_loss_Y.pt files (0: none, -1: all)
    output_dir: str | None = None  # run folder (default runs/<repr>-<generator>-<timestamp>)
    resume_from_checkpoint: str | None = None  # checkpoint PATH to continue from, or "last" (OUTPUT/checkpoints/last.pt)
    device: str = "auto"  # auto | cpu | cuda | cuda:N (several GPUs: launch with torchrun)
    compile: bool = False  # torch.compile the model's loss
    early_stopping_patience: int | None = None  # stop after N checks without a better monitored loss (default: off)
    max_minutes: float | None = None  # wall-clock budget of the run (resumes included): the lr schedule is fitted to it, then stop cleanly and checkpoint
    progress: bool = True  # progress bar (only on a terminal; plain log lines otherwise)
    tensorboard: bool = True  # TensorBoard event files under OUTPUT/logs when tensorboard is installed
    log_samples_every_n_steps: int | None = None  # every N steps sample a few pieces into OUTPUT/samples/step_N (png, mid, abc for text) and TensorBoard, their note statistics into metrics.jsonl (split "samples"); default: off
    log_samples_num: int = 2  # pieces sampled each time --log-samples-every-n-steps comes round
    recommend_sampling: bool = True  # store sampling settings found on validation data in checkpoints (fmusic sample uses them): token models at each validation, grids once at the end (a few samples)

    def __post_init__(self):
        def positive(name, allow_none=False):
            value = getattr(self, name)
            if value is None and allow_none:
                return
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"--{name.replace('_', '-')} must be a whole number >= 1, not {value!r}")

        for name in ("max_steps", "epochs", "val_batch_size", "val_batches", "decay_steps",
                     "early_stopping_patience", "log_samples_every_n_steps"):
            positive(name, allow_none=True)
        for name in ("batch_size", "accumulate_grad_batches", "log_every_n_steps", "val_check_interval_steps",
                     "checkpoint_every_n_steps", "log_samples_num"):
            positive(name)
        if self.warmup_steps < 0:
            raise ConfigError(f"--warmup-steps must be >= 0, not {self.warmup_steps}")
        if self.num_workers < 0:
            raise ConfigError(f"--num-workers must be >= 0, not {self.num_workers}")
        if self.save_top_k < -1:
            raise ConfigError(f"--save-top-k must be -1 (all), 0 (none) or a positive number, not {self.save_top_k}")
        for name in ("lr", "weight_decay", "min_lr_ratio"):
            value = float(getattr(self, name))
            if not math.isfinite(value) or value < 0:
                raise ConfigError(f"--{name.replace('_', '-')} must be a finite number >= 0, not {value}")
        if self.lr <= 0:
            raise ConfigError(f"--lr must be > 0, not {self.lr}")
        if self.min_lr_ratio > 1:
            raise ConfigError(f"--min-lr-ratio must be in [0, 1], not {self.min_lr_ratio}")
        for name in ("beta1", "beta2"):
            if not 0.0 <= float(getattr(self, name)) < 1.0:
                raise ConfigError(f"--{name} must be in [0, 1), not {getattr(self, name)}")
        if self.grad_clip is not None:
            if not math.isfinite(float(self.grad_clip)) or self.grad_clip < 0:
                raise ConfigError(f"--grad-clip must be a finite number >= 0 (0 or none: off), not {self.grad_clip}")
            if self.grad_clip == 0:
                self.grad_clip = None
        self.precision = str(self.precision).strip().lower()
        aliases = {"fp32": "32", "32-true": "32", "fp16": "16", "16-mixed": "16", "half": "16",
                   "bf16-mixed": "bf16", "bfloat16": "bf16"}
        self.precision = aliases.get(self.precision, self.precision)
        if self.precision not in ("32", "16", "bf16"):
            raise ConfigError(f"--precision must be 32, 16 or bf16, not {self.precision!r}")
        if self.lr_schedule not in ("cosine", "wsd", "constant"):
            raise ConfigError(f"--lr-schedule must be cosine, wsd or constant, not {self.lr_schedule!r}")
        dev = str(self.device).strip().lower()
        if not (dev in ("auto", "cpu", "cuda") or (dev.startswith("cuda:") and dev[5:].isdigit())):
            raise ConfigError(f"--device must be auto, cpu, cuda or cuda:N, not {self.device!r}")
        self.device = dev
        if self.max_minutes is not None and not (float(self.max_minutes) > 0):
            raise ConfigError(f"--max-minutes must be > 0, not {self.max_minutes}")

    @property
    def effective_max_steps(self) -> int | None:
        """--max-steps, or the default when none of --max-steps, --epochs, --max-minutes bounds the run."""
        if self.max_steps is None and self.epochs is None and self.max_minutes is None:
            return DEFAULT_MAX_STEPS
        return self.max_steps
