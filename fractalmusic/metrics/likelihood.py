"""Held-out likelihood of a checkpoint: NLL in nats and bits per token (or grid cell), and perplexity.

The validation split is rebuilt exactly as training built it: the data configuration stored in the checkpoint
(JSON text under `data_config`), or the representation's default corpus, with any options the user overrides
(`--data`, `--val-fraction`, `--crop-length` ...). The checkpoint's representation is already fitted, so its
vocabulary is used as is. Summed NLL and the number of predicted units are added up over batches, so the result
does not depend on how the split is cut into batches:

    nats = sum(nll_sum) / sum(n);   bits = nats / ln 2;   perplexity = exp(nats)
"""
from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any, Callable

import torch

from fractalmusic.errors import ConfigError, DataError


def stored_data_config(ckpt: dict[str, Any]) -> dict[str, Any]:
    """The data configuration a checkpoint was trained with (a dict; empty when the checkpoint has none)."""
    from fractalmusic.training.checkpoint import Checkpoint

    return dict((ckpt if isinstance(ckpt, Checkpoint) else Checkpoint(ckpt)).data_config)


def resolve_data_config(ckpt: dict[str, Any], representation, overrides: dict[str, Any] | None = None):
    """DataConfig for evaluation: stored config, then the user's overrides; default corpus when none names one."""
    from fractalmusic.config import config_from_dict
    from fractalmusic.data.config import DataConfig, default_corpus

    values = stored_data_config(ckpt)
    known = {f for f in DataConfig.__dataclass_fields__}
    values = {k: v for k, v in values.items() if k in known}  # fields of an older/newer package are dropped
    values.update(overrides or {})
    if not values.get("data"):
        values["data"] = default_corpus(representation)
    return config_from_dict(DataConfig, values, where="data")


def evaluate_nll(
    generator,
    loader,
    nll_forward_number: int | None = None,
    max_batches: int | None = None,
    device: str | torch.device = "cpu",
    progress: bool = False,
    options: dict[str, Any] | None = None,
) -> dict[str, float]:
    """Sum NLL over `loader`'s batches: {"nll_sum", "n", "batches", "nats", "bits", "perplexity", "parts"}.

    `options` are the generator's own evaluation options (its `EvalOptions` fields, or API 1 `nll_options` names),
    passed to every `nll` call; `nll_forward_number` is one of them, kept as a keyword for callers.
    A generator whose `nll` also returns pairs `nll_<part>_sum` / `n_<part>` (the fractal generators split note
    cells from empty ones) gets those summed too, under `parts[<part>]` with their own nats and bits."""
    options = check_eval_options(generator, options, nll_forward_number)
    from tqdm import tqdm

    total_nats = 0.0
    total_n = 0
    batches = 0
    parts: dict[str, list[float]] = {}  # "note" -> [nll_note_sum, n_note] for generators that split their NLL
    was_training = generator.training
    generator.eval()
    try:
        with torch.no_grad():
            bar = tqdm(total=max_batches, desc="evaluating", unit="batch", disable=not progress, leave=False)
            for batch in loader:
                if max_batches is not None and batches >= max_batches:
                    break
                batch = {k: v.to(device) if torch.is_tensor(v) else v for k, v in batch.items()}
                out = generator.nll(batch, **options)
                total_nats += float(out["nll_sum"])
                total_n += int(out["n"])
                for key, value in out.items():
                    part = key[4:-4] if key.startswith("nll_") and key.endswith("_sum") else None
                    if part and f"n_{part}" in out:
                        acc = parts.setdefault(part, [0.0, 0])
                        acc[0] += float(value)
                        acc[1] += int(out[f"n_{part}"])
                batches += 1
                bar.update(1)
            bar.close()
    finally:
        generator.train(was_training)
    if total_n == 0:
        raise DataError("the validation split gave nothing to predict (no tokens or cells)")
    nats = total_nats / total_n
    return {
        "nll_sum": total_nats,
        "n": total_n,
        "batches": batches,
        "nats": nats,
        "bits": nats / math.log(2.0),
        "perplexity": math.exp(min(nats, 700.0)),
        "parts": {
            name: {"nll_sum": s, "n": n, "nats": s / n, "bits": s / n / math.log(2.0)}
            for name, (s, n) in parts.items()
            if n > 0
        },
    }


def check_eval_options(generator, options: dict[str, Any] | None, nll_forward_number: int | None = None):
    """The generator's evaluation options, checked: names it declares, values its EvalOptions accepts."""
    from fractalmusic.config import check_declared, option_name

    options = dict(options or {})
    if nll_forward_number is not None:
        options["nll_forward_number"] = nll_forward_number
    cls = type(generator)
    names = cls.eval_option_names() if hasattr(cls, "eval_option_names") else tuple(getattr(cls, "nll_options", ()))
    for key in options:
        if key not in names:
            extra = " (its NLL is exact in one pass)" if key == "nll_forward_number" else ""
            raise ConfigError(f"generator {getattr(generator, 'name', '?')!r} does not take {option_name(key)}{extra}")
    declared = getattr(cls, "EvalOptions", None)
    if declared is not None:
        check_declared(declared, options, where=f"{getattr(generator, 'name', '?')} evaluation options")
    elif options.get("nll_forward_number") is not None:
        n = options["nll_forward_number"]
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ConfigError(f"--nll-forward-number must be at least 1, not {n}")
    return options


def evaluate_checkpoint(
    path: str | Path,
    data_overrides: dict[str, Any] | None = None,
    batch_size: int = 16,
    max_batches: int | None = None,
    nll_forward_number: int | None = None,
    device: str | torch.device = "cpu",
    seed: int = 0,
    progress: bool = False,
    log: Callable[[str], Any] | None = None,
    options: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Held-out NLL of a checkpoint (a path or a loaded `Checkpoint`) over the validation split of its data (see
    the module's documentation). `options`: the generator's evaluation options (`EvalOptions`).

    `log` receives the data layer's progress lines (default: dropped)."""
    from fractalmusic.data import build_datasets, collate_for, make_loader
    from fractalmusic.training.checkpoint import Checkpoint

    if batch_size < 1:
        raise ConfigError(f"--batch-size must be at least 1, not {batch_size}")
    if max_batches is not None and max_batches < 1:
        raise ConfigError(f"--max-batches must be at least 1, not {max_batches}")
    started = time.perf_counter()
    ckpt = path if isinstance(path, Checkpoint) else Checkpoint.load(path, map_location="cpu")
    path = ckpt.path
    representation, generator = ckpt.build(device=device)
    options = check_eval_options(generator, options, nll_forward_number)
    data_config = resolve_data_config(ckpt, representation, data_overrides)
    _, val_ds, report = build_datasets(data_config, representation, log=log or (lambda line: None))
    if val_ds is None or len(val_ds) == 0:
        raise DataError(
            f"{data_config.data}: the validation split is empty (raise --val-fraction or give --val-data)"
        )
    crop = int(report.crop_length)
    collate = collate_for(representation.spec(), crop)
    loader = make_loader(val_ds, batch_size, shuffle=False, collate_fn=collate)
    torch.manual_seed(seed)  # generators with a random masking order (MAR) give a reproducible estimate
    result = evaluate_nll(generator, loader, None, max_batches, device, progress, options=options)
    unit = "cell" if representation.kind == "grid" else "token"
    return {
        "checkpoint": str(path),
        "representation": representation.name,
        "generator": generator.name,
        "step": ckpt.step,
        "data": str(data_config.data),
        "val_data": None if data_config.val_data is None else str(data_config.val_data),
        "val_fraction": float(data_config.val_fraction),
        "crop_length": crop,
        "val_items": len(val_ds),
        "val_pieces": int(report.n_val),
        "unit": unit,
        **{k: result[k] for k in ("nll_sum", "n", "batches")},
        f"nats_per_{unit}": result["nats"],
        f"bits_per_{unit}": result["bits"],
        "perplexity": result["perplexity"],
        "parts": result["parts"],
        "nll_forward_number": options.get("nll_forward_number"),
        "options": options,
        "seconds": round(time.perf_counter() - started, 3),
    }


def format_likelihood(result: dict[str, Any]) -> str:
    unit = result["unit"]
    lines = [
        f"checkpoint:  {result['checkpoint']} ({result['representation']} + {result['generator']}"
        + (f", step {result['step']}" if result.get("step") is not None else "")
        + ")",
        f"data:        {result['data']} validation split ({result['val_pieces']} pieces, "
        f"{result['val_items']} windows of {result['crop_length']} {unit}s)",
        f"evaluated:   {result['n']} {unit}s in {result['batches']} batches",
        f"NLL:         {result[f'nats_per_{unit}']:.4f} nats/{unit}   {result[f'bits_per_{unit}']:.4f} bits/{unit}",
        f"perplexity:  {result['perplexity']:.3f}",
    ]
    for name, part in (result.get("parts") or {}).items():
        lines.append(f"  {name + ' ' + unit + 's:':<14} {part['nats']:.4f} nats/{unit}   {part['bits']:.4f} bits/{unit}"
                     f"   ({part['n']} {unit}s)")
    return "\n".join(lines)
