"""`fmusic evaluate`: held-out likelihood of a checkpoint, and/or musical metrics of generated against reference."""
from __future__ import annotations

import json
import sys
import typing

import click

from fractalmusic.cli.sample_cmd import PluginOptionsCommand
from fractalmusic.errors import ConfigError

EPILOG = """\b
Examples:
  fmusic evaluate runs/x/checkpoints/best.pt                  # NLL on the validation split it trained with
  fmusic evaluate best.pt --data my_midis/ --crop-length 256  # ... on another corpus, other crops
  fmusic evaluate --generated samples/ --reference chorales --png metrics.png
  fmusic evaluate best.pt --generated samples/                # both; the reference is the checkpoint's corpus

\b
Data options (with a checkpoint) are those of `fmusic train` (--data, --val-data, --val-fraction, --split-seed,
--crop-length, --max-pieces, ...); each defaults to the value stored in the checkpoint. --cache-dir, --no-cache and
--num-prep-workers also apply to reading the sets of a comparison (parsed pieces are cached like training data).

\b
--json prints one object: "likelihood" (with a checkpoint) and "comparison" (with --generated), every number in it.
OA (overlapping area): for each metric, the overlap of the Gaussian-KDE densities of the reference set's intra-set
distances and of the reference-to-generated inter-set distances (1 = indistinguishable, 0 = disjoint).
"""


# data options that also apply to reading the sets of a comparison (the others shape a validation split)
SET_DATA_OPTIONS = ("cache_dir", "no_cache", "num_prep_workers")


def _split_args(args: tuple[str, ...], extra_flags: typing.Iterable[str] = ()) -> tuple[str | None, list[str]]:
    """(checkpoint, option tokens) from the free arguments; `extra_flags`: plugin options that take no value."""
    from fractalmusic.config import field_types
    from fractalmusic.data.config import DATA_ALIASES, DataConfig

    flags = set(extra_flags)
    for name, tp in field_types(DataConfig).items():
        if tp is bool or bool in typing.get_args(tp):
            flags.add("--" + name.replace("_", "-"))
            flags.add("--no-" + name.replace("_", "-"))
    checkpoint = None
    options: list[str] = []
    i = 0
    while i < len(args):
        tok = args[i]
        if tok.startswith("--"):
            canon = "--" + tok[2:].split("=")[0].replace("_", "-")
            canon = DATA_ALIASES.get(canon, canon)
            options.append(tok)
            if "=" not in tok and canon not in flags and i + 1 < len(args):
                options.append(args[i + 1])
                i += 1
        elif tok.startswith("-") and len(tok) > 1:
            raise ConfigError(f"no such option: {tok}")
        elif checkpoint is None:
            checkpoint = tok
        else:
            raise ConfigError(f"unexpected argument {tok!r} (one checkpoint at most)")
        i += 1
    return checkpoint, options


def _parse_data_options(tokens: list[str], specs: list | None = None) -> tuple[dict[str, typing.Any], dict]:
    """(data options, the generator's own evaluation options) from the free option tokens."""
    from fractalmusic.config import parse_declared, parse_options
    from fractalmusic.data.config import DATA_ALIASES, DataConfig

    specs = list(specs or [])
    own = ["--generated", "--reference", "--json", "--png", "--batch-size", "--max-batches", "--device", "--seed",
           "--max-set-pieces", "--copy-threshold"] + [s.flag for s in specs]
    flags = {s.flag for s in specs} | {"--no-" + s.flag[2:] for s in specs if s.is_flag}
    plugin_tokens: list[str] = []
    data_tokens: list[str] = []
    i = 0
    while i < len(tokens):
        tok = tokens[i]
        canon = "--" + tok[2:].split("=")[0].replace("_", "-") if tok.startswith("--") else tok
        target = plugin_tokens if canon in flags else data_tokens
        target.append(tok)
        is_flag = any(s.is_flag and canon in (s.flag, "--no-" + s.flag[2:]) for s in specs)
        if canon in flags and "=" not in tok and not is_flag and i + 1 < len(tokens):
            target.append(tokens[i + 1])  # a plugin option's value (a data option's value follows on its own)
            i += 1
        i += 1
    data = parse_options(data_tokens, {"data": DataConfig}, aliases=DATA_ALIASES, known_elsewhere=own)["data"]
    return data, parse_declared(plugin_tokens, specs)


class EvaluateCommand(PluginOptionsCommand):
    section_title = "Evaluation options of this checkpoint's model"
    note_without_checkpoint = ("Evaluation options of the checkpoint's own generator are listed by "
                               "`fmusic evaluate CHECKPOINT --help`.")

    def specs_for(self, ckpt) -> list:
        from fractalmusic.api import eval_option_specs

        return eval_option_specs(ckpt.plugin_class("generator"))

    def parse_args(self, ctx, args):
        # plugin options travel in the free ARGS (with the data options); only --help needs them as click options
        wants_help = any(a in ctx.help_option_names for a in args)
        if wants_help:
            return super().parse_args(ctx, args)
        if not hasattr(self, "_base_params"):
            self._base_params = list(self.params)
        self.params = list(self._base_params)
        self._plugin_title = self._plugin_note = None
        return click.Command.parse_args(self, ctx, args)


def _device(name: str) -> str:
    import torch

    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"--device {name}: no CUDA device is available here")
    if name != "cpu" and not name.startswith(("cuda", "mps")):
        raise ConfigError(f"--device must be auto, cpu, cuda, cuda:N or mps, not {name!r}")
    return name


@click.command(
    "evaluate",
    cls=EvaluateCommand,
    epilog=EPILOG,
    context_settings={"ignore_unknown_options": True, "allow_extra_args": True},
)
@click.argument("args", nargs=-1, type=click.UNPROCESSED, metavar="[CHECKPOINT] [DATA OPTIONS]")
@click.option("--generated", metavar="PATH", help="Generated pieces: folder, list file, music file or ABC book.")
@click.option("--reference", metavar="CORPUS", help="Reference pieces: folder, list file, file or built-in name "
              "(folk, chorales). Default with a checkpoint: its training corpus.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object with every number.")
@click.option("--png", "png_path", metavar="PATH", help="Write per-metric histograms of both sets to this PNG.")
@click.option("--batch-size", type=int, default=16, show_default=True, help="Validation batch size.")
@click.option("--max-batches", type=int, default=None, help="Evaluate only the first N validation batches.")
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda, cuda:N or mps.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of random masking orders and subsets.")
@click.option("--max-set-pieces", type=int, default=200, show_default=True,
              help="Compare at most N pieces of each set (a seeded random subset); 0 = all.")
@click.option("--copy-threshold", type=float, default=None,
              help="8-gram Jaccard similarity from which a generated ABC tune is a near copy [0.7].")
def command(args, generated, reference, as_json, png_path, batch_size, max_batches, device,
            seed, max_set_pieces, copy_threshold):
    """Held-out NLL (nats and bits per token or cell, perplexity) of CHECKPOINT on the validation split of its
    data, and/or note-level and ABC metrics of --generated pieces against --reference pieces, with mean ± std per
    set and the overlapping area (OA) of their distance distributions."""
    checkpoint, option_tokens = _split_args(tuple(args))
    ckpt, specs = None, []
    if checkpoint is not None:  # its generator declares its own evaluation options
        from fractalmusic.training.checkpoint import Checkpoint

        ckpt = Checkpoint.load(checkpoint)
        specs = EvaluateCommand.specs_for(None, ckpt)
        flags = [s.flag for s in specs if s.is_flag] + ["--no-" + s.flag[2:] for s in specs if s.is_flag]
        checkpoint, option_tokens = _split_args(tuple(args), flags)
    data_overrides, eval_options = _parse_data_options(option_tokens, specs)
    if checkpoint is None and generated is None:
        raise ConfigError("give a CHECKPOINT for held-out likelihood, or --generated PATH --reference CORPUS")
    split_options = sorted(set(data_overrides) - set(SET_DATA_OPTIONS))
    if split_options and checkpoint is None:
        name = "--" + split_options[0].replace("_", "-")
        raise ConfigError(f"{name} applies to a CHECKPOINT's validation split; give a checkpoint")
    if reference is not None and generated is None:
        raise ConfigError("--reference needs --generated (the pieces to compare with it)")
    if png_path and generated is None:
        raise ConfigError("--png draws the metrics of --generated against --reference; give both")
    if generated is not None and reference is None and checkpoint is None:
        raise ConfigError("--generated needs --reference CORPUS (or a CHECKPOINT, whose training corpus is used)")
    if max_set_pieces < 0:
        raise ConfigError(f"--max-set-pieces must be 0 or more, not {max_set_pieces}")
    if copy_threshold is not None and not 0.0 < copy_threshold <= 1.0:
        raise ConfigError(f"--copy-threshold must be in (0, 1], not {copy_threshold}")

    progress = not as_json and sys.stderr.isatty()
    corpora = {}
    if generated is not None:  # name problems surface before any slow work
        from fractalmusic.metrics.report import resolve_set

        corpora["generated"] = resolve_set(generated)
        if reference is not None:
            corpora["reference"] = resolve_set(reference)

    out: dict[str, typing.Any] = {}
    texts: list[str] = []
    if checkpoint is not None:
        from fractalmusic.metrics.likelihood import evaluate_checkpoint, format_likelihood

        result = evaluate_checkpoint(
            ckpt,
            data_overrides=data_overrides,
            batch_size=batch_size,
            max_batches=max_batches,
            options=eval_options,
            device=_device(device),
            seed=seed,
            progress=progress,
            log=lambda line: click.echo(line, err=True),
        )
        out["likelihood"] = result
        texts.append(format_likelihood(result))
        if generated is not None and reference is None:
            from fractalmusic.metrics.report import resolve_set

            corpora["reference"] = resolve_set(result["data"])

    if generated is not None:
        from fractalmusic.data.config import DataConfig
        from fractalmusic.metrics import abc as abc_checks
        from fractalmusic.metrics.report import compare_sets, format_table, load_set, save_png

        limit = max_set_pieces or None
        defaults = DataConfig()
        reading = {
            "cache_dir": data_overrides.get("cache_dir"),
            "use_cache": not data_overrides.get("no_cache", False),
            "workers": data_overrides.get("num_prep_workers", defaults.num_prep_workers),
            "log": lambda line: click.echo(line, err=True),
        }
        ref_set = load_set(corpora["reference"], max_pieces=limit, seed=seed, **reading)
        gen_set = load_set(corpora["generated"], max_pieces=limit, seed=seed, **reading)
        threshold = abc_checks.NEAR_COPY_THRESHOLD if copy_threshold is None else copy_threshold
        report = compare_sets(ref_set, gen_set, memorisation_threshold=threshold, progress=progress)
        if png_path:
            report["png"] = str(save_png(report, png_path))
        out["comparison"] = report
        table = format_table(report)
        if ref_set.total > len(ref_set.pieces) or gen_set.total > len(gen_set.pieces):
            table += (f"\nsubsets: {len(ref_set.pieces)} of {ref_set.total} reference and {len(gen_set.pieces)} of "
                      f"{gen_set.total} generated pieces (--max-set-pieces {max_set_pieces}, --seed {seed})")
        if png_path:
            table += f"\nhistograms: {report['png']}"
        texts.append(table)

    if as_json:
        from fractalmusic.metrics.report import to_json

        if "comparison" in out:
            out["comparison"] = json.loads(to_json(out["comparison"]))
        click.echo(json.dumps(out, indent=2, allow_nan=False))
    else:
        click.echo("\n\n".join(texts))
