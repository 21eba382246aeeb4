"""`fmusic data`: list the built-in corpora, show a corpus's statistics, fill the cache."""
from __future__ import annotations

import json
import time

import click

from fractalmusic.errors import ConfigError, DataError

_DATA_HELP_TAIL = (
    "Data options (as for fmusic train): --data, --val-data, --val-fraction, --split-seed, --crop-length, "
    "--augment-factor, --pitch-shift-min/--pitch-shift-max, --whole-tunes, --max-pieces, --cache-dir, --no-cache, "
    "--no-cache-in-memory, --num-prep-workers, --seed; plus the chosen representation's options "
    "(e.g. --steps-per-beat 4 for pianoroll)."
)


@click.group("data")
def command():
    """List corpora, show statistics, prepare caches.

    \b
      fmusic data list
      fmusic data stats --data folk --repr abc
      fmusic data stats --data chorales --repr pianoroll --steps-per-beat 4
      fmusic data stats my_midis/ --repr words        (a bare PATH means --data PATH)
      fmusic data prepare my_midis/ --repr pianoroll
      fmusic data prepare --dataset maestro --root ~/data/maestro-v3.0.0 --write-split splits/maestro
    """


@command.command("list")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def list_corpora(as_json: bool):
    """The built-in corpora (from music21's embedded corpus: no download) with file and tune counts, and the
    dataset recipes (public corpora you download yourself; see docs/DATASETS.md)."""
    from fractalmusic.data.corpora import BUILTINS, builtin_summary
    from fractalmusic.data.recipes import list_recipes

    rows = [builtin_summary(name) for name in BUILTINS]
    recipes = list_recipes()
    if as_json:
        click.echo(json.dumps({"builtin": rows, "datasets": [_recipe_row(r) for r in recipes]}, indent=2))
        return
    width = max(len(r["name"]) for r in rows)
    for r in rows:
        extra = "   (only when named: --data essen)" if r["explicit_only"] else ""
        click.echo(f"{r['name']:<{width}}  {r['files']:>5} files  {r['pieces']:>5} pieces  {r['description']}{extra}")
        click.echo(f"{'':<{width}}  licence: {r['licence']}")
    click.echo(
        "\n--data also takes a folder (searched recursively), a list file (one path per line, relative to it), "
        "an ABC tune book or a single music file (.mid .midi .abc .xml .mxl .musicxml .krn)."
    )
    click.echo("defaults: folk for token representations (abc, words), chorales for pianoroll")
    if recipes:
        click.echo("\ndataset recipes (download them yourself; fmusic data prepare --dataset NAME --root DIR):")
        width = max(len(r.name) for r in recipes)
        for r in recipes:
            count = f"{r.pieces:,} tunes" if r.format != "midi" and r.pieces else f"{r.files:,} files" if r.files else ""
            layouts = f"  variants: {', '.join(r.full_name + '/' + v for v in r.variants)}" if r.variants else ""
            click.echo(f"{r.name:<{width}}  {r.title} ({count}, {r.format}, split: {_split_word(r)}){layouts}")
            click.echo(f"{'':<{width}}  licence: {r.licence}")
            click.echo(f"{'':<{width}}  get it: {r.download or r.homepage}")
        click.echo("details, layouts and expected preparation times: docs/DATASETS.md")


def _split_word(recipe) -> str:
    method = recipe.split.get("method", "hash")
    if method == "csv":
        return f"official ({recipe.split.get('file')})"
    words = {"path": "path", "stem": "file name", "parent": "folder", "tune": "file and tune number"}
    what = "tune_id" if method == "session" else words.get(recipe.split.get("key", "path"), "path")
    return f"hash of {what}, {1 - recipe.split.get('valid', 0.05) - recipe.split.get('test', 0.05):.0%} train"


def _recipe_row(recipe) -> dict:
    return {
        "name": recipe.name, "title": recipe.title, "description": recipe.description, "format": recipe.format,
        "files": recipe.files, "pieces": recipe.pieces, "licence": recipe.licence,
        "commercial_use": recipe.commercial_use, "homepage": recipe.homepage, "download": recipe.download,
        "layouts": list(recipe.variants), "split": recipe.split, "representation": recipe.representation,
        "options": recipe.options, "train_options": recipe.train_options, "notes": list(recipe.notes),
        "recipe": str(recipe.path) if recipe.path else None,
    }


def _dataset_of(args: list[str]) -> str | None:
    """The --dataset value among the leftover options (any spelling), without parsing the rest."""
    return _peek_value(args, "--dataset")


def _build(args: list[str], repr_name: str | None, log=None, split=None):
    """(DataConfig, representation) from the command's leftover options; --dataset NAME --root DIR becomes the
    recipe's train/valid lists (and, with no --repr, the recipe's representation and options)."""
    from fractalmusic import plugins
    from fractalmusic.config import config_from_dict, parse_options
    from fractalmusic.data.config import DATA_ALIASES, DataConfig

    args = _positional_data(args, plugins.get_representation(repr_name or "abc"))
    dataset = _dataset_of(args)
    if dataset:
        from fractalmusic.cli.train_cmd import _dataset_defaults

        repr_name, full = _dataset_defaults(dataset, repr_name, args)
        args = args + _only_data_and_representation(full[len(args):], repr_name)
    rep_cls = plugins.get_representation(repr_name or "abc")
    parsed = parse_options(
        args,
        {"data": DataConfig, "representation": rep_cls.Config},
        aliases=DATA_ALIASES,
        known_elsewhere=["--repr", "--json"],
    )
    cfg = config_from_dict(DataConfig, parsed["data"], where="data")
    representation = rep_cls(**parsed["representation"])
    if split is not None:  # the split prepare just wrote (--write-split): read its lists, do not build another
        import dataclasses

        if cfg.data or cfg.val_data:
            raise ConfigError(f"--{'data' if cfg.data else 'val-data'} and --dataset {cfg.dataset} both name the "
                              "data; give one of them")

        valid = str(split.lists["valid"]) if split.counts["valid"] else None
        cfg = dataclasses.replace(cfg, data=str(split.lists["train"]), val_data=valid,
                                  val_fraction=cfg.val_fraction if valid else 0.0)
    elif cfg.dataset or cfg.root:
        from fractalmusic.data.recipes import resolve_data_config

        cfg = resolve_data_config(cfg, log=log)
    return cfg, representation


def _positional_data(args: list[str], rep_cls) -> list[str]:
    """`fmusic data stats PATH ...`: a bare PATH among the options (not an option's value) means --data PATH.
    ConfigError when two are given, or PATH and --data both are."""
    from fractalmusic.config import _scalar, field_types, option_name
    from fractalmusic.data.config import DATA_ALIASES, DataConfig

    flags = set()  # options that take no value: a bare token after one is not its value
    for cls in (DataConfig, rep_cls.Config):
        for name, tp in field_types(cls).items():
            if _scalar(tp) is bool:
                flags |= {option_name(name), "--no-" + name.replace("_", "-")}
    rest, bare, named, i = [], [], None, 0
    while i < len(args):
        tok = args[i]
        if not tok.startswith("--"):
            bare.append(tok)
            i += 1
            continue
        opt, eq, value = tok.partition("=")
        opt = "--" + opt[2:].replace("_", "-")
        takes_value = not eq and opt not in flags and i + 1 < len(args)
        if DATA_ALIASES.get(opt, opt) == "--data":
            named = value if eq else args[i + 1] if takes_value else ""
        rest += args[i : i + (2 if takes_value else 1)]
        i += 2 if takes_value else 1
    if not bare:
        return rest
    if len(bare) > 1:
        raise ConfigError(f"one data folder or file, not {len(bare)}: {', '.join(map(repr, bare))} (a list file, one "
                          "path per line, names several; --val-data names the validation data)")
    if named is not None:
        raise ConfigError(f"the data is named twice: {bare[0]!r} and --data {named!r}; give one of them")
    return rest + ["--data", bare[0]]


def _only_data_and_representation(args: list[str], repr_name: str) -> list[str]:
    """The recipe's suggested options that fmusic data takes (its trainer options are left out)."""
    import dataclasses

    from fractalmusic import plugins
    from fractalmusic.data.config import DataConfig

    known = {f.name for f in dataclasses.fields(DataConfig)}
    known |= {f.name for f in dataclasses.fields(plugins.get_representation(repr_name).Config)}
    out, i = [], 0
    while i < len(args):
        tok = args[i]
        name = tok[2:].split("=", 1)[0].replace("-", "_") if tok.startswith("--") else None
        takes_value = "=" not in tok and i + 1 < len(args) and not args[i + 1].startswith("--")
        if name is not None and name not in known and name.removeprefix("no_") not in known:
            i += 2 if takes_value else 1
            continue
        out.append(tok)
        i += 1
    return out


_PASS_THROUGH = {"ignore_unknown_options": True, "allow_extra_args": True, "help_option_names": ["-h", "--help"]}


@command.command("stats", context_settings=_PASS_THROUGH, epilog=_DATA_HELP_TAIL)
@click.option("--repr", "repr_name", default=None, help="Representation to encode with [default: abc, or the "
                                                            "--dataset recipe's].")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_context
def stats(ctx, repr_name: str | None, as_json: bool):
    """Pieces, tokens or steps, vocabulary, pitch range, notes per beat, and what was skipped and why."""
    from fractalmusic.data.build import build_datasets

    log = (lambda line: click.echo(line, err=True)) if as_json else None
    cfg, representation = _build(list(ctx.args), repr_name, log=log or click.echo)
    # a first look caches the parsed pieces and the vocabulary, not the packs training reads (a later run that
    # parses nothing, `data prepare` or `train` writes them)
    _, _, report = build_datasets(cfg, representation, log=log or (lambda _line: None), defer_packs=True)
    if as_json:
        click.echo(json.dumps(report.as_dict(), indent=2, default=str))
        return
    for line in report.lines():
        click.echo(line)


@command.command("prepare", context_settings=_PASS_THROUGH, epilog=_DATA_HELP_TAIL)
@click.option("--repr", "repr_name", default=None, help="Representation to encode with [default: abc, or the "
                                                            "--dataset recipe's].")
@click.option("--write-split", "split_dir", metavar="DIR", default=None,
              help="Also write DIR/train.txt and DIR/valid.txt listing the files of each split (usable as --data, "
                   "--val-data, or --reference of fmusic evaluate); with --dataset, the recipe's split: "
                   "train.txt, valid.txt and test.txt (tune collections: with abc/train.abc ... beside them).")
@click.option("--split-only", is_flag=True,
              help="With --dataset: check the layout and write the split lists, without reading any music.")
@click.pass_context
def prepare(ctx, repr_name: str | None, split_dir: str | None, split_only: bool):
    """Read, fit and encode a corpus into the cache, so that training starts without parsing anything.

    \b
    With --dataset NAME --root DIR (a recipe of `fmusic data list`): check that DIR holds the dataset as its recipe
    describes (one line naming what is missing, exit code 2), build its split (the official one where it has one),
    then fill the cache for its train and valid splits.
    """
    from fractalmusic.data.build import prepare_data

    args = list(ctx.args)
    dataset = _dataset_of(args)
    if split_only and not dataset:
        raise ConfigError("--split-only goes with --dataset NAME --root DIR")
    split = None
    if dataset and split_dir is not None:
        from fractalmusic.data.recipes import load_recipe, make_split

        started = time.perf_counter()
        split = make_split(load_recipe(dataset), _root_of(args), split_dir, log=click.echo)
        click.echo(f"split written to {', '.join(str(split.lists[s]) for s in ('train', 'valid', 'test'))} "
                   f"in {time.perf_counter() - started:.1f} s")
        if split_only:
            return
    elif split_only:
        from fractalmusic.data.config import DataConfig
        from fractalmusic.data.recipes import detect_variant, load_recipe, make_split, resolve_root, work_dir

        recipe = load_recipe(dataset)
        base = resolve_root(recipe, _root_of(args))
        recipe = detect_variant(recipe, base)
        folder = work_dir(DataConfig(cache_dir=_peek_value(args, "--cache-dir")).resolved_cache_dir(), recipe, base)
        make_split(recipe, base, folder, log=click.echo)
        click.echo(f"split lists: {folder} (fmusic train --dataset {dataset} --root {base} uses them)")
        return

    cfg, representation = _build(args, repr_name, log=click.echo, split=split)
    if cfg.no_cache:
        raise ConfigError("fmusic data prepare fills the cache; --no-cache would make it do nothing")
    try:  # the time it reports leaves out the readers' first imports
        prepared = prepare_data(cfg, representation, log=click.echo)
    except DataError as exc:
        if not (dataset and split_dir is not None):
            raise
        # the split asked for is written; say in one line why the cache could not be filled
        click.echo(f"warning: the split lists are written, but the cache was not filled: {exc}", err=True)
        return
    report = prepared.report
    click.echo(
        f"prepared {report.n_train + report.n_val} pieces for {representation.name} "
        f"({report.train_units + report.val_units:,} {report.unit}, vocabulary {report.vocabulary}) "
        f"from {report.files:,} files in {report.seconds:.2f} s"
        + (f" ({report.files / report.seconds:,.0f} files/s)" if report.files and report.seconds > 0 else "")
        + f"; cache: {report.cache_dir}"
    )
    if split_dir is not None and not dataset:
        train, valid, unlisted = prepared.write_split(split_dir)
        click.echo(f"split written to {train} and {valid}"
                   + (f"; {unlisted} tune books split by tune are not listed" if unlisted else ""))


def _peek_value(args: list[str], option: str) -> str | None:
    for i, tok in enumerate(args):
        if tok.split("=", 1)[0].replace("_", "-") == option:
            if "=" in tok:
                return tok.split("=", 1)[1]
            return args[i + 1] if i + 1 < len(args) else None
    return None


def _root_of(args: list[str]) -> str | None:
    return _peek_value(args, "--root")
