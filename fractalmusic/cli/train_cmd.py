"""`fmusic train`: pick a representation and a generator, read the corpus, train, write checkpoints.

Every option but --repr/--generator comes from a dataclass (TrainConfig, DataConfig, the representation's Config,
the generator's Config) and is parsed by `fractalmusic.config.parse_options`, so all of them get the same types,
checks and typo suggestions. The seeds' spellings (`--model_type`, `--learning_rate`, `--save_dir`, ...) work too.
"""
from __future__ import annotations

import dataclasses
import json
import sys
from typing import Any

import click

from fractalmusic.errors import CheckpointError, ConfigError

# other spellings of trainer and data options (underscores already map onto dashes)
ALIASES = {
    "--max-grad-norm": "--grad-clip",
    "--gradient-clip-val": "--grad-clip",
    "--clip-grad-norm": "--grad-clip",
    "--save-dir": "--output-dir",
    "--out-dir": "--output-dir",
    "--seq-length": "--crop-length",
    "--seq-len": "--crop-length",
    "--learning-rate": "--lr",
    "--train-batch-size": "--batch-size",
    "--eval-batch-size": "--val-batch-size",
    "--train-data": "--data",
    "--data-file": "--data",
    "--max-epochs": "--epochs",
    "--num-epochs": "--epochs",
    "--resume": "--resume-from-checkpoint",
    "--grad-checkpointing": "--grad-checkpoint",
    "--gradient-checkpointing": "--grad-checkpoint",
}

# options people bring from elsewhere that this command answers differently
ANSWERS = {
    "--log-images-every-n-steps": "fmusic train does not render samples while training; run "
                                  "`fmusic sample OUTPUT/checkpoints/last.pt --to png` on any checkpoint",
}

VOCAB_TYPES = {"char": "abc", "word": "words"}
DEFAULT_REPR = {"tokens": "abc", "grid": "pianoroll"}
DEFAULT_GENERATOR = {"tokens": "lstm", "grid": "mar"}

EPILOG = """\b
Examples:
  fmusic train --repr abc --generator lstm                     # folk tunes (embedded corpus), char LSTM
  fmusic train --repr words --generator gru --epochs 20        # musical words
  fmusic train --repr pianoroll --generator mar --crop-length 128 --model-size small
  fmusic train --resume-from-checkpoint last --output-dir runs/folk --max-steps 20000
  fmusic train --repr pianoroll --generator mar --devices 0,1 --precision bf16   # one process per GPU
  fmusic train --devices 8 --num-nodes 2 --node-rank 0 --master-addr HOST ...   # two machines (rank 1 on the other)
  torchrun --nproc_per_node 4 -m fractalmusic train --repr pianoroll --generator mar --precision bf16
"""


def _canonical(opt: str) -> str:
    name = opt.split("=", 1)[0]
    canon = "--" + name[2:].replace("_", "-") if name.startswith("--") else name
    return ALIASES.get(canon, canon)


def _peek(args: list[str], option: str) -> str | None:
    """The value given for `option` (any spelling), without parsing the rest."""
    found = None
    for i, tok in enumerate(args):
        if not tok.startswith("--") or _canonical(tok) != option:
            continue
        if "=" in tok:
            found = tok.split("=", 1)[1]
        elif i + 1 < len(args):
            found = args[i + 1]
    return found


def _option_rows(cls, skip: set[str] = frozenset()) -> list[tuple[str, str]]:
    from fractalmusic.config import _scalar, describe_options, field_help, field_types

    comments = field_help(cls)
    types = field_types(cls)
    rows = []
    for (opt, type_name, default), name in zip(describe_options(cls), types):
        if name in skip:
            continue
        if _scalar(types[name]) is bool:
            left = opt if name.startswith("no_") else f"{opt} / --no-{opt[2:]}"
        else:
            left = f"{opt} {type_name.upper() if ' ' not in type_name else 'A,B,...'}"
        right = comments.get(name, "")
        if "default" not in right.lower():
            right = f"{right} [default: {default}]" if right else f"[default: {default}]"
        rows.append((left, right))
    return rows


def _help_text(repr_name: str | None, gen_name: str | None) -> str:
    from fractalmusic import plugins
    from fractalmusic.data.config import DataConfig
    from fractalmusic.training.config import TrainConfig

    f = click.HelpFormatter(max_width=110)
    f.write_usage("fmusic train", "[--repr NAME] [--generator NAME] [OPTIONS]")
    f.write_paragraph()
    f.write_text("Train a generator on a corpus. Checkpoints, metrics.jsonl, TensorBoard logs and hparams.json go "
                 "to --output-dir. Unknown options are errors, with a suggestion.")
    reps = plugins.names("representation")
    gens = plugins.names("generator")
    with f.section("Plugins"):
        f.write_dl([
            ("--repr NAME", f"representation: {', '.join(reps) or 'none installed'} (default: abc, or pianoroll "
                            f"for a grid generator)"),
            ("--generator NAME", f"generator: {', '.join(gens) or 'none installed'} (default: lstm, or mar for a "
                                 f"grid representation)"),
        ])
    with f.section("Training options"):
        f.write_dl(_option_rows(TrainConfig))
    with f.section("Processes (several devices or machines; torch's elastic launcher, as torchrun)"):
        f.write_dl([
            ("--devices N | I,J,...", "one process per device: a count (2) or CUDA indices (0,1; 3, is GPU 3 alone); "
                                     "with --device cpu, N CPU processes (gloo) [default: 1]"),
            ("--num-nodes N", "machines taking part, each running the same command [default: 1]"),
            ("--node-rank R", "this machine's number, 0..N-1 (0 on the --master-addr machine)"),
            ("--master-addr HOST / --master-port P", "where the machines meet [default port: 29500]"),
        ])
    with f.section("Data options"):
        train_fields = {f.name for f in dataclasses.fields(TrainConfig)}
        f.write_dl(_option_rows(DataConfig, skip=train_fields))  # --seed: one option sets both
    for kind, selected, names in (("representation", repr_name, reps), ("generator", gen_name, gens)):
        for name in ([selected] if selected else names):
            try:
                cls = plugins.get(kind, name)
            except Exception as exc:  # a broken plugin must not break the help
                with f.section(f"{kind.capitalize()} {name!r} options"):
                    f.write_text(f"unavailable: {str(exc).splitlines()[0]}")
                continue
            what = cls.kind if kind == "representation" else "/".join(cls.accepts)
            rows = _option_rows(cls.Config)
            with f.section(f"{kind.capitalize()} {name!r} options ({what})"):
                if rows:
                    f.write_dl(rows)
                else:
                    f.write_text("(none)")
    with f.section("Other spellings accepted"):
        pairs = [("--model_type NAME", "--generator NAME"), ("--vocab_type char|word", "--repr abc|words")]
        pairs += [(a, b) for a, b in ALIASES.items()]
        f.write_dl(pairs)
        f.write_text("Underscores may replace dashes in every option (--hidden_size = --hidden-size).")
    f.write_paragraph()
    f.write_text(EPILOG)
    return f.getvalue()


def _select_plugins(repr_name: str | None, gen_name: str | None):
    from fractalmusic import plugins

    rep_cls = plugins.get_representation(repr_name) if repr_name else None
    gen_cls = plugins.get_generator(gen_name) if gen_name else None
    if rep_cls is None:
        kind = "grid" if gen_cls is not None and "tokens" not in gen_cls.accepts else "tokens"
        rep_cls = plugins.get_representation(DEFAULT_REPR[kind])
    if gen_cls is None:
        gen_cls = plugins.get_generator(DEFAULT_GENERATOR.get(rep_cls.kind, "lstm"))
    if rep_cls.kind not in gen_cls.accepts:
        raise ConfigError(f"generator {gen_cls.name!r} works on {'/'.join(gen_cls.accepts)} representations; "
                          f"{rep_cls.name!r} is a {rep_cls.kind} representation")
    return rep_cls, gen_cls


def _refuse_model_changes(cls, given: dict[str, Any], stored: dict[str, Any], what: str) -> None:
    """A resumed run keeps the checkpoint's model: options that would change it are an error."""
    from fractalmusic.config import config_from_dict, config_to_dict

    if not given:
        return
    before = config_to_dict(config_from_dict(cls, stored, where=what))
    after = config_to_dict(config_from_dict(cls, {**stored, **given}, where=what))
    for key in given:
        if before.get(key) != after.get(key):
            raise ConfigError(f"--{key.replace('_', '-')} {given[key]}: the checkpoint's {what} has {stored.get(key)}; "
                              f"a resumed run keeps the checkpoint's {what} (drop the option or start a new run)")


@click.command(
    "train",
    add_help_option=False,
    context_settings={"ignore_unknown_options": True, "allow_extra_args": True, "help_option_names": []},
)
@click.option("--repr", "--representation", "repr_name", metavar="NAME", default=None)
@click.option("--generator", "--model-type", "--model_type", "gen_name", metavar="NAME", default=None)
@click.option("--vocab-type", "--vocab_type", "vocab_type", default=None)
@click.option("-h", "--help", "show_help", is_flag=True, default=False)
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def command(repr_name, gen_name, vocab_type, show_help, args):
    """Train a generator on a corpus (see `fmusic train --help`)."""
    args = list(args)
    if vocab_type is not None:
        if vocab_type not in VOCAB_TYPES:
            raise ConfigError(f"--vocab_type must be char or word, not {vocab_type!r} (or use --repr NAME)")
        if repr_name is not None and repr_name != VOCAB_TYPES[vocab_type]:
            raise ConfigError(f"--vocab_type {vocab_type} means --repr {VOCAB_TYPES[vocab_type]}, "
                              f"but --repr {repr_name} was given")
        repr_name = VOCAB_TYPES[vocab_type]
    if show_help:
        click.echo(_help_text(repr_name, gen_name), nl=False)
        return
    for tok in args:
        if tok.startswith("--") and _canonical(tok) in ANSWERS:
            raise ConfigError(f"{tok.split('=')[0]}: {ANSWERS[_canonical(tok)]}")
    if _launch_processes(repr_name, gen_name, args):
        return
    run_training(repr_name, gen_name, args)


def _launch_processes(repr_name: str | None, gen_name: str | None, args: list[str]) -> bool:
    """--devices N / --devices 0,1 (and --num-nodes ...): run the training in one process per device through
    torch's elastic launcher (fractalmusic.training.distributed.launch). False when one process will do, with the
    launch options taken out of `args` (so --devices 1 trains here, in this process)."""
    from fractalmusic.errors import FractalMusicError
    from fractalmusic.training import distributed

    options, rest = distributed.split_launch_args(args)
    if not options:
        return False
    plan = distributed.plan_launch(options, _peek(rest, "--device"))
    args[:] = rest
    if not plan.needs_launch:
        if plan.gpu_ids is not None:  # --devices 3, : this one GPU
            args += ["--device", f"cuda:{plan.gpu_ids[0]}"]
        return False
    run_training(repr_name, gen_name, list(rest), check_only=True)  # option errors: here, once, before any process
    try:
        distributed.launch(plan, _launched_worker, (repr_name, gen_name, list(rest)), log=click.echo)
    except distributed.LaunchError as exc:
        user = exc.message.split(":", 1)[0] in _user_error_names()
        err = FractalMusicError(f"process {exc.rank} of {plan.world_size} failed: {exc.message}"
                                + ("" if user else " (the others were stopped; FRACTALMUSIC_DEBUG=1 shows tracebacks)"))
        err.exit_code = 2 if user else 1
        raise err from None
    return True


def _user_error_names() -> set[str]:
    from fractalmusic.errors import FractalMusicError

    names, todo = set(), [FractalMusicError]
    while todo:
        cls = todo.pop()
        names.add(cls.__name__)
        todo.extend(cls.__subclasses__())
    return names


def _launched_worker(repr_name: str | None, gen_name: str | None, args: list[str]) -> None:
    """One process started by --devices (module level: the launcher imports it in each new process)."""
    import os

    if os.environ.get("FRACTALMUSIC_DEBUG", "") in ("", "0"):
        import warnings

        warnings.filterwarnings("ignore", module="torch.distributed")
    run_training(repr_name, gen_name, args)


def run_training(repr_name: str | None, gen_name: str | None, args: list[str],
                 check_only: bool = False) -> dict[str, Any]:
    """Train; `check_only`: parse and check the options (and a checkpoint to resume), then return {} (what
    --devices does before it starts processes, so that a typo fails here and once)."""
    import os
    from pathlib import Path

    from fractalmusic import data as fdata
    from fractalmusic.config import config_from_dict, parse_options
    from fractalmusic.training import distributed
    from fractalmusic.config import check_config_pair, check_pitch_shift
    from fractalmusic.training.checkpoint import check_resumable, load_checkpoint, resolve_resume_path
    from fractalmusic.training.config import TrainConfig
    from fractalmusic.training.budget import check_training_memory
    from fractalmusic.training.lock import RunLock
    from fractalmusic.training.trainer import (
        Trainer,
        check_precision,
        default_output_dir,
        prepare_output_dir,
        seed_everything,
        sigterm_as_interrupt,
    )

    # ---- a resumed run takes its plugins and model from the checkpoint
    ckpt = None
    path = None
    resume_dir = None
    resume_value = _peek(args, "--resume-from-checkpoint")
    if resume_value:
        path = resolve_resume_path(resume_value, _peek(args, "--output-dir"))
        if Path(path).parent.name == "checkpoints":
            resume_dir = str(Path(path).parent.parent)  # continue in the run folder the checkpoint is in
        ckpt = load_checkpoint(path, purpose="resume")
        check_resumable(ckpt, path)
        rep_ref, gen_ref = ckpt.representation_ref, ckpt.generator_ref  # name, providing package and version
        for given, ref, what in ((repr_name, rep_ref, "--repr"), (gen_name, gen_ref, "--generator")):
            if given is not None and not ref.matches(given):
                origin = f" from {ref.dist} {ref.dist_version or ''}".rstrip() if ref.dist else ""
                raise CheckpointError(f"{path} was trained with {what} {ref.name}{origin}, not {given}")
        repr_name, gen_name = rep_ref.qualified, gen_ref.qualified
    if ckpt is None and _peek(args, "--dataset"):
        repr_name, args = _dataset_defaults(_peek(args, "--dataset"), repr_name, args, quiet=check_only)
    if ckpt is not None:  # the checkpoint's own plugins (as package:name), whatever else offers those names
        rep_cls, gen_cls = ckpt.plugin_class("representation"), ckpt.plugin_class("generator")
    else:
        rep_cls, gen_cls = _select_plugins(repr_name, gen_name)
    check_config_pair(rep_cls, gen_cls)

    targets = {"train": TrainConfig, "data": fdata.DataConfig, "representation": rep_cls.Config,
               "generator": gen_cls.Config}
    aliases = dict(fdata.DATA_ALIASES)
    aliases.update(ALIASES)
    parsed = parse_options(args, targets, aliases=aliases,
                           known_elsewhere=["--repr", "--generator", "--help", "--vocab-type"])
    # an option several configs share (--seed: trainer and data) sets all of them
    fields = {label: {f.name for f in dataclasses.fields(cls)} for label, cls in targets.items()}
    for label, given in list(parsed.items()):
        for name, value in given.items():
            for other, names in fields.items():
                if other != label and name in names and name not in parsed[other]:
                    parsed[other][name] = value

    if ckpt is not None:
        train_base = dict(ckpt.train_config)
        train_base = {k: v for k, v in train_base.items() if k in fields["train"]}
        if resume_dir is not None:
            train_base["output_dir"] = resume_dir
        data_base = dict(ckpt.data_config)
        data_base = {k: v for k, v in data_base.items() if k in fields["data"]}
        train_cfg = config_from_dict(TrainConfig, {**train_base, **parsed["train"]}, where="training options")
        data_cfg = config_from_dict(fdata.DataConfig, {**data_base, **parsed["data"]}, where="data options")
        stored_rep = ckpt.representation_state
        _refuse_model_changes(rep_cls.Config, parsed["representation"], stored_rep.get("config", {}),
                              "representation")
        _refuse_model_changes(gen_cls.Config, parsed["generator"], ckpt.generator_config,
                              "generator")
    else:
        suggested = {k: v for k, v in getattr(gen_cls, "train_defaults", {}).items()
                     if k in fields["train"] and k not in parsed["train"]}
        if suggested and os.environ.get("RANK", "0") == "0" and not check_only:  # launched: rank 0 says it
            click.echo(f"generator {gen_cls.name} trains with "
                       + " ".join(f"--{k.replace('_', '-')} {v}" for k, v in suggested.items())
                       + " unless told otherwise")
        train_cfg = config_from_dict(TrainConfig, {**suggested, **parsed["train"]}, where="training options")
        # the representation's suggested data options (abc: pitch shifts), by group: a group applies
        # whole, and only when none of its options is given
        data_suggested = {}
        for group in getattr(rep_cls, "data_defaults", ()) or ():
            if not any(k in parsed["data"] for k in group):
                data_suggested.update(group)
        if data_suggested and os.environ.get("RANK", "0") == "0" and not check_only:
            shown = [f"--{'' if v else 'no-'}{k.replace('_', '-')}" if isinstance(v, bool)
                     else f"--{k.replace('_', '-')} {v}" for k, v in data_suggested.items()]
            click.echo(f"representation {rep_cls.name} trains with {' '.join(shown)} unless told otherwise")
        data_cfg = config_from_dict(fdata.DataConfig, {**data_suggested, **parsed["data"]}, where="data options")

    if check_only:
        if data_cfg.dataset or data_cfg.root:
            from fractalmusic.data.recipes import check_dataset_options

            check_dataset_options(data_cfg)
        return {}

    # ---- processes, devices, the run folder: fail before any slow work
    ctx = distributed.setup(train_cfg.device)
    echo = click.echo if ctx.is_main else (lambda *a, **k: None)
    run_lock = None
    restore_sigterm = sigterm_as_interrupt()
    try:
        check_precision(train_cfg.precision, ctx.device)
        output_dir = train_cfg.output_dir
        if output_dir is None:
            output_dir = default_output_dir(rep_cls.name, gen_cls.name)
        output_dir = distributed.broadcast_object(ctx, output_dir)
        train_cfg = dataclasses.replace(train_cfg, output_dir=str(output_dir))
        if ctx.is_main:
            prepare_output_dir(output_dir)
            run_lock = RunLock(output_dir, echo=echo).acquire()  # one writer per run folder (refused: one line)

        # ---- a dataset recipe (--dataset NAME --root DIR): its train and valid lists become --data/--val-data
        if data_cfg.dataset or data_cfg.root:
            from fractalmusic.data.recipes import resolve_data_config

            resolved = resolve_data_config(data_cfg, log=echo) if ctx.is_main else None
            distributed.barrier(ctx)  # rank 0 wrote the lists (and any copies); the others find them done
            data_cfg = resolved if ctx.is_main else resolve_data_config(data_cfg, log=None)

        # ---- representation and data (rank 0 first: it fills the cache the others then read)
        if ckpt is not None:
            representation = rep_cls.from_state_dict(ckpt.representation_state)
        else:
            representation = rep_cls(config_from_dict(rep_cls.Config, parsed["representation"],
                                                      where=f"{rep_cls.name} representation"))
        check_pitch_shift(representation, data_cfg)  # a shift the representation cannot make: one line
        if data_cfg.data is None:
            data_cfg = dataclasses.replace(data_cfg, data=fdata.default_corpus(representation))
            echo(f"data: {data_cfg.data} (the built-in default for {rep_cls.name}; choose another with --data)")
        # ---- will it fit? (model size, crop x batch against the device's memory) before anything large exists
        check_training_memory(gen_cls, ckpt.generator_config if ckpt is not None
                              else parsed["generator"], representation.spec(), batch_size=train_cfg.batch_size,
                              val_batch_size=train_cfg.val_batch_size,
                              crop_length=data_cfg.crop_for(representation.spec().kind), device=ctx.device,
                              precision=train_cfg.precision, grad_checkpoint=train_cfg.grad_checkpoint,
                              options=parsed["generator"])
        datasets = None
        if ctx.is_main:
            datasets = fdata.build_datasets(data_cfg, representation, log=echo)
        distributed.barrier(ctx)
        if not ctx.is_main:
            datasets = fdata.build_datasets(data_cfg, representation, log=None)
        train_ds, val_ds, report = datasets
        echo(f"pieces: {report.n_train} training, {report.n_val} validation; {report.train_items:,} training "
             f"items per epoch ({report.item_kind})")

        # ---- the generator
        seed_everything(train_cfg.seed)
        gen_config = ckpt.generator_config if ckpt is not None else parsed["generator"]
        generator = gen_cls.build(gen_config, representation.spec())
        spec = representation.spec()
        echo(f"representation {rep_cls.name} ({spec.kind}, vocabulary {spec.vocab_size}); generator {gen_cls.name}: "
             f"{generator.num_parameters():,} parameters")
        unit = "cells" if spec.kind == "grid" else "tokens"
        echo(f"device {ctx.device}" + (f" x {ctx.world_size} processes" if ctx.distributed else "")
             + f", precision {train_cfg.precision}, output {output_dir}")

        trainer = Trainer(
            generator, representation, train_cfg, train_ds, val_ds,
            make_loader=fdata.make_loader, data_config=data_cfg, output_dir=output_dir, dist_ctx=ctx, echo=echo,
            extra_hparams={"argv": list(sys.argv),
                           "data_summary": {"train_pieces": report.n_train, "val_pieces": report.n_val,
                                            f"train_{unit}": report.train_units, f"val_{unit}": report.val_units}},
        )
        try:
            stats = trainer.fit(resume=ckpt, resume_source=str(path) if ckpt is not None else None)
        except KeyboardInterrupt as exc:
            hint = f"continue with: fmusic train --resume-from-checkpoint last --output-dir {output_dir}"
            if getattr(exc, "message", None):  # SIGINT/SIGTERM: the step was finished and checkpointed
                if getattr(exc, "checkpoint", None):
                    exc.message = f"{exc.message}; {hint}"
                raise
            echo(f"interrupted; {hint}", err=True)
            raise
        if ctx.is_main:
            _summary(stats, train_cfg, output_dir, unit)
        return stats
    finally:
        restore_sigterm()
        if run_lock is not None:
            run_lock.release()
        distributed.teardown(ctx)


def _dataset_defaults(dataset: str, repr_name: str | None, args: list[str],
                      quiet: bool = False) -> tuple[str | None, list[str]]:
    """A recipe's representation and options, for those the command line leaves out (and says which)."""
    import os

    from fractalmusic.data.recipes import load_recipe

    recipe = load_recipe(dataset)
    added: list[str] = []
    if repr_name is None:
        repr_name = recipe.representation
        added += ["--repr", recipe.representation]
    tables = [recipe.train_options] + ([recipe.options] if repr_name == recipe.representation else [])
    given = {_canonical(tok) for tok in args if tok.startswith("--")}
    extra: list[str] = []
    for table in tables:
        for key, value in table.items():
            flag = "--" + key.replace("_", "-")
            if flag in given or f"--no-{key.replace('_', '-')}" in given:
                continue
            if isinstance(value, bool):
                extra.append(flag if value else f"--no-{key.replace('_', '-')}")
            else:
                extra += [flag, str(value)]
    if (added or extra) and os.environ.get("RANK", "0") == "0" and not quiet:
        click.echo(f"dataset {recipe.full_name}: {' '.join(added + extra)} (from its recipe, unless given)")
    return repr_name, list(args) + extra


def _summary(stats: dict[str, Any], cfg, output_dir, unit: str) -> None:
    from pathlib import Path

    m = stats.get("metrics", {})
    parts = [f"stopped at step {stats['step']} ({stats['stop_reason'].replace('_', ' ')})"]
    if m.get("train", {}).get("loss") is not None:
        parts.append(f"train loss {m['train']['loss']:.4f}")
    if m.get("val", {}).get("loss") is not None:
        v = m["val"]
        text = f"val loss {v['loss']:.4f} nats"
        if v.get("bits_per_unit") is not None:
            text += f" = {v['bits_per_unit']:.3f} bits per {unit[:-1]}"
        if v.get("perplexity") is not None:  # None where exp(loss) overflows (a diverged run)
            text += f", perplexity {v['perplexity']:.2f}"
        parts.append(text)
    if stats.get("steps_run"):
        parts.append(f"{stats['units_per_s']:,.0f} {unit}/s")
    click.echo("; ".join(parts))
    ck = Path(output_dir) / "checkpoints"
    best = Path(stats["best"])
    target = best if best.exists() else Path(stats["last"])
    click.echo(f"checkpoints: {ck} (last.pt, best.pt and the top {cfg.save_top_k} step files)"
               if cfg.save_top_k > 0 else f"checkpoints: {ck} (last.pt, best.pt)")
    click.echo(f"metrics: {Path(output_dir) / 'metrics.jsonl'}")
    click.echo(f"try: fmusic sample {target} --num-samples 4 --out-dir {Path(output_dir) / 'samples'}")
