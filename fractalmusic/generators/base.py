"""The Generator contract.

A generator is an `nn.Module` built from its `Config` dataclass and the `RepresentationSpec` of the data.

Batches (dicts of tensors, made by `fractalmusic.data`):

* tokens: ``{"tokens": LongTensor[B, L], "mask": BoolTensor[B, L]}``; `mask` is True on real tokens. The model
  predicts ``tokens[:, t]`` from ``tokens[:, :t]`` for every t >= 1 where ``mask[:, t]``.
* grid: ``{"grid": LongTensor[B, 128, W], "mask": BoolTensor[B, W]}``; `mask` is True on real time steps (padding
  added for patch sizes or short pieces is False and is excluded from loss and sampling).

`loss(batch)` returns ``dict(loss=<scalar tensor, mean nats per predicted token/cell>, n=<int, how many were
predicted>, **metrics)``; metrics are floats or 0-d tensors. `nll(batch)` returns ``dict(nll_sum=float, n=int)`` for
evaluation (summed nats over all predicted positions). `sample(...)` returns an int64 numpy array: for tokens
`[n, P + G]` (the prefix - primer, else bos - then up to `length` generated tokens; rows that stopped at eos are
padded with pad_id), for grids `[n, 128, length]`.
"""
from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from fractalmusic import sampling
from fractalmusic.config import config_from_dict, config_to_dict
from fractalmusic.errors import ConfigError
from fractalmusic.representations.base import RepresentationSpec


@dataclass
class _NoConfig:
    pass


@dataclass
class GridRegion:
    """Sampling options of every grid model: the region of a primer to regenerate (infilling).

    `fractalmusic.api` turns them into the `primer` and `mask` that `Generator.sample` receives, so a grid generator
    only honours `mask`. A generator's `SampleOptions` may inherit this class to list them with its own options.
    """

    mask_start: int | None = field(default=None, metadata={"help": "Grids: regenerate from this step ..."})
    mask_end: int | None = field(default=None, metadata={"help": "... up to (not including) this step."})
    mask_pitch_low: int | None = field(default=None, metadata={"help": "Grids: regenerate this pitch band ..."})
    mask_pitch_high: int | None = field(default=None, metadata={"help": "... up to this MIDI pitch (inclusive)."})


def _whole(value: Any) -> int | None:
    """`value` as an int when it is a whole number (not a bool), else None."""
    if isinstance(value, bool):
        return None
    try:
        return int(value) if int(value) == value else None
    except (TypeError, ValueError, OverflowError):
        return None


class Generator(nn.Module):
    name: ClassVar[str] = ""
    accepts: ClassVar[tuple[str, ...]] = ()  # representation kinds: "tokens", "grid"
    Config: ClassVar[type] = _NoConfig
    plugin_api_version: ClassVar[int] = 1
    # API 2: a dataclass whose fields are extra keyword options of `sample` (`fmusic sample --num-iter ...`), and
    # one whose fields are extra keyword options of `nll` (`fmusic evaluate --nll-forward-number ...`)
    SampleOptions: ClassVar[type | None] = None
    EvalOptions: ClassVar[type | None] = None
    # API 1: names of extra keyword options `sample` understands beyond the common ones (e.g. "num_iter");
    # with SampleOptions declared, leave it empty (the fields are added to it)
    sample_options: ClassVar[tuple[str, ...]] = ()
    nll_options: ClassVar[tuple[str, ...]] = ()
    # API 2: the version of what `config_dict()` + `state_dict()` hold; a checkpoint written with an older version
    # goes through `upgrade_state` when loaded
    state_version: ClassVar[int] = 1
    # trainer options this generator trains best with (e.g. {"lr": 3e-3}); `fmusic train` uses them for a fresh
    # run unless the user gives the option, and says so
    train_defaults: ClassVar[dict[str, Any]] = {}

    def __init__(self, config, spec: RepresentationSpec):
        super().__init__()
        if spec.kind not in self.accepts:
            raise ConfigError(
                f"generator {self.name!r} works on {'/'.join(self.accepts)} representations, "
                f"not on {spec.kind!r} ones"
            )
        self.config = config
        self.spec = spec
        self.grad_checkpointing = False

    @classmethod
    def build(cls, config: dict[str, Any] | Any, spec: RepresentationSpec) -> "Generator":
        if isinstance(config, dict) or config is None:
            config = config_from_dict(cls.Config, config, where=f"{cls.name} generator")
        return cls(config, spec)

    def config_dict(self) -> dict[str, Any]:
        return config_to_dict(self.config)

    @classmethod
    def upgrade_state(cls, state: dict[str, Any], from_version: int) -> dict[str, Any]:
        """Turn a checkpoint's `{"config": dict, "model": state dict}` written at `from_version` (< state_version)
        into the current form. Default: nothing to change. Raise ConfigError when it cannot be upgraded."""
        return state

    @classmethod
    def sample_option_names(cls) -> tuple[str, ...]:
        """Every extra keyword `sample` takes: the SampleOptions fields plus the API 1 `sample_options` names."""
        region = {f.name for f in fields(GridRegion)}  # turned into `mask` by fractalmusic.api, never passed on
        declared = tuple(f.name for f in fields(cls.SampleOptions)) if cls.SampleOptions is not None else ()
        declared = tuple(n for n in declared if n not in region)
        return declared + tuple(n for n in cls.sample_options if n not in declared)

    @classmethod
    def eval_option_names(cls) -> tuple[str, ...]:
        """Every extra keyword `nll` takes: the EvalOptions fields plus the API 1 `nll_options` names."""
        declared = tuple(f.name for f in fields(cls.EvalOptions)) if cls.EvalOptions is not None else ()
        return declared + tuple(n for n in cls.nll_options if n not in declared)

    # ------------------------------------------------------------- training
    def loss(self, batch: dict[str, torch.Tensor]) -> dict[str, Any]:
        raise NotImplementedError

    @torch.no_grad()
    def nll(self, batch: dict[str, torch.Tensor]) -> dict[str, float]:
        out = self.loss(batch)
        n = int(out["n"])
        return {"nll_sum": float(out["loss"]) * n, "n": n}

    def set_grad_checkpointing(self, enabled: bool = True) -> None:
        self.grad_checkpointing = bool(enabled)

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    @property
    def device(self) -> torch.device:
        for p in self.parameters():
            return p.device
        return torch.device("cpu")

    # ------------------------------------------------------------- sampling
    @torch.no_grad()
    def sample(
        self,
        n: int,
        length: int,
        primer: np.ndarray | None = None,
        mask: np.ndarray | None = None,
        temperature: float = 1.0,
        top_k: int | None = None,
        top_p: float | None = None,
        greedy: bool = False,
        seed: int | None = None,
        **options: Any,
    ) -> np.ndarray:
        """`n` samples of up to `length` new time steps (tokens) as an int64 array (see the module docstring).

        The common preamble lives here, so a generator implements only `draw_samples`: unknown `options` are
        refused, temperature/top-k/top-p/greedy are checked (`fractalmusic.sampling.check_options`), `n` must be
        a whole number >= 1 and `length` a whole number >= 0; `seed` becomes a private `torch.Generator` on the
        model's device (None: the global RNG), so a seed gives the same samples without touching the global RNG.
        The model runs in eval mode under no_grad, and its train/eval mode is restored afterwards, even on error.
        """
        self.check_sample_options(options)
        sampling.check_options(temperature, top_k, top_p, greedy)
        if _whole(n) is None or n < 1:
            raise ConfigError(f"number of samples must be a whole number >= 1, not {n!r}")
        if _whole(length) is None or length < 0:
            raise ConfigError(f"sample length must be a whole number >= 0, not {length!r}")
        generator = sampling.make_generator(seed, self.device)
        was_training = self.training
        self.eval()
        try:
            return self.draw_samples(
                int(n),
                int(length),
                primer=primer,
                mask=mask,
                temperature=float(temperature),
                top_k=None if top_k is None else int(top_k),
                top_p=None if top_p is None else float(top_p),
                greedy=bool(greedy),
                generator=generator,
                **options,
            )
        finally:
            self.train(was_training)

    def draw_samples(
        self,
        n: int,
        length: int,
        *,
        primer: np.ndarray | None,
        mask: np.ndarray | None,
        temperature: float,
        top_k: int | None,
        top_p: float | None,
        greedy: bool,
        generator: torch.Generator | None,
        **options: Any,
    ) -> np.ndarray:
        """The drawing itself, called by `sample` with checked arguments, in eval mode and under no_grad.

        Draw every random number from `generator` (pass it to `fractalmusic.sampling.draw`). `primer`, `mask` and
        the generator's own `options` arrive as the caller gave them: check them here.
        """
        raise NotImplementedError(f"generator {self.name!r} implements neither sample nor draw_samples")

    def check_sample_options(self, options: dict[str, Any]) -> None:
        unknown = [k for k in options if k not in self.sample_option_names()]
        if unknown:
            raise ConfigError(f"generator {self.name!r} does not take sampling option {unknown[0]!r}")
