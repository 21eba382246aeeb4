"""`fmusic data`: list the built-in corpora, show a corpus's statistics, fill the cache."""
from __future__ import annotations

import json
import time

import click

from fractalmusic.errors import ConfigError

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
      fmusic data prepare --data my_midis/ --repr pianoroll
    """


@command.command("list")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def list_corpora(as_json: bool):
    """The built-in corpora (from music21's embedded corpus: no download) with file and tune counts."""
    from fractalmusic.data.corpora import BUILTINS, builtin_summary

    rows = [builtin_summary(name) for name in BUILTINS]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
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


def _build(args: list[str], repr_name: str):
    """(DataConfig, representation) from the command's leftover options."""
    from fractalmusic import plugins
    from fractalmusic.config import config_from_dict, parse_options
    from fractalmusic.data.config import DATA_ALIASES, DataConfig

    rep_cls = plugins.get_representation(repr_name)
    parsed = parse_options(
        args,
        {"data": DataConfig, "representation": rep_cls.Config},
        aliases=DATA_ALIASES,
        known_elsewhere=["--repr", "--json"],
    )
    cfg = config_from_dict(DataConfig, parsed["data"], where="data")
    representation = rep_cls(**parsed["representation"])
    return cfg, representation


_PASS_THROUGH = {"ignore_unknown_options": True, "allow_extra_args": True, "help_option_names": ["-h", "--help"]}


@command.command("stats", context_settings=_PASS_THROUGH, epilog=_DATA_HELP_TAIL)
@click.option("--repr", "repr_name", default="abc", show_default=True, help="Representation to encode with.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_context
def stats(ctx, repr_name: str, as_json: bool):
    """Pieces, tokens or steps, vocabulary, pitch range, notes per beat, and what was skipped and why."""
    from fractalmusic.data.build import build_datasets

    cfg, representation = _build(list(ctx.args), repr_name)
    log = (lambda line: click.echo(line, err=True)) if as_json else None
    _, _, report = build_datasets(cfg, representation, log=log or (lambda _line: None))
    if as_json:
        click.echo(json.dumps(report.as_dict(), indent=2, default=str))
        return
    for line in report.lines():
        click.echo(line)


@command.command("prepare", context_settings=_PASS_THROUGH, epilog=_DATA_HELP_TAIL)
@click.option("--repr", "repr_name", default="abc", show_default=True, help="Representation to encode with.")
@click.option("--write-split", "split_dir", metavar="DIR", default=None,
              help="Also write DIR/train.txt and DIR/valid.txt listing the files of each split (usable as --data, "
                   "--val-data, or --reference of fmusic evaluate).")
@click.pass_context
def prepare(ctx, repr_name: str, split_dir: str | None):
    """Read, fit and encode a corpus into the cache, so that training starts without parsing anything."""
    from fractalmusic.data.build import prepare_data

    cfg, representation = _build(list(ctx.args), repr_name)
    if cfg.no_cache:
        raise ConfigError("fmusic data prepare fills the cache; --no-cache would make it do nothing")
    started = time.perf_counter()
    prepared = prepare_data(cfg, representation, log=click.echo)
    report = prepared.report
    click.echo(
        f"prepared {report.n_train + report.n_val} pieces for {representation.name} "
        f"({report.train_units + report.val_units:,} {report.unit}, vocabulary {report.vocabulary}) "
        f"in {time.perf_counter() - started:.1f} s; cache: {report.cache_dir}"
    )
    if split_dir is not None:
        train, valid, unlisted = prepared.write_split(split_dir)
        click.echo(f"split written to {train} and {valid}"
                   + (f"; {unlisted} tune books split by tune are not listed" if unlisted else ""))
