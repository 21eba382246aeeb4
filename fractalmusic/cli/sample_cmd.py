"""`fmusic sample CHECKPOINT`: generate pieces from any checkpoint and write them as ABC, MIDI, WAV, PNG, MusicXML.

A thin layer over `fractalmusic.api`: a notebook calling `fractalmusic.load(...).sample(...)` with the same seed
and options gets the same samples.

The command names no generator. Its common options are below; the options of the checkpoint's own model come from
the plugins: for grid representations the region to regenerate (`GridRegion`), then the generator's
`SampleOptions` fields (or the names of an API 1 `sample_options` tuple). They are added to the command when the
checkpoint argument is seen on the command line, so `fmusic sample CKPT --help` lists them.
"""
from __future__ import annotations

import os
import secrets
from typing import Any

import click

from fractalmusic import api
from fractalmusic.config import OptionSpec, convert, convert_loose, suggest
from fractalmusic.errors import ConfigError, FractalMusicError

PLUGIN_PREFIX = "plugin__"  # click parameter names of plugin-declared options
NO_CHECKPOINT_NOTE = ("Options of the checkpoint's own model (declared by its generator and, for grids, the region "
                      "to regenerate) are listed by `fmusic sample CHECKPOINT --help`.")


def find_checkpoint_arg(args: list[str], params: list[click.Parameter]) -> str | None:
    """The first positional token of `args`, skipping the values of the options among `params` that take one.

    Options not among `params` (a plugin's, typed before the checkpoint) are taken to have a value, unless they are
    written `--name=value` or start with `--no-`."""
    takes_value = set()
    known = set()
    for p in params:
        if isinstance(p, click.Option):
            names = list(p.opts) + list(p.secondary_opts)
            known.update(names)
            if not p.is_flag and not p.count:
                takes_value.update(p.opts)
    i = 0
    while i < len(args):
        tok = args[i]
        if tok == "--":
            return args[i + 1] if i + 1 < len(args) else None
        if tok.startswith("-") and len(tok) > 1:
            if "=" in tok:
                i += 1
            elif tok in takes_value or (tok not in known and not tok.startswith("--no-")):
                i += 2
            else:
                i += 1
            continue
        return tok
    return None


def plugin_click_options(specs: list[OptionSpec]) -> list[click.Option]:
    """click options for plugin-declared options; values stay text and are converted by `convert_values`."""
    out = []
    for s in specs:
        text = s.help or ""
        if s.default is not None:
            text = f"{text} [default: {s.default}]".strip()
        if s.choices:
            text = f"{text} (one of {', '.join(map(str, s.choices))})".strip()
        name = PLUGIN_PREFIX + s.name
        if s.is_flag:
            out.append(click.Option([f"{s.flag}/--no-{s.flag[2:]}", name], default=None, help=text))
        else:
            metavar = "VALUE" if s.legacy else ("A,B,..." if "list" in s.type_name else s.type_name.upper())
            out.append(click.Option([s.flag, name], default=None, metavar=metavar, help=text))
    return out


def convert_values(kwargs: dict[str, Any], specs: list[OptionSpec]) -> dict[str, Any]:
    """The plugin options the user gave, typed: {field name: value} (options left out are not passed)."""
    by_name = {s.name: s for s in specs}
    out = {}
    for key in [k for k in kwargs if k.startswith(PLUGIN_PREFIX)]:
        value = kwargs.pop(key)
        name = key[len(PLUGIN_PREFIX):]
        if value is None:
            continue
        spec = by_name[name]
        if spec.is_flag:
            out[name] = bool(value)
            continue
        value = convert_loose(value) if spec.legacy else convert(value, spec.type, name)
        if spec.choices and value not in spec.choices:
            raise ConfigError(f"{spec.flag}: {value!r} is not one of {', '.join(map(str, spec.choices))}")
        out[name] = value
    return out


class PluginOptionsCommand(click.Command):
    """A command whose options grow with the plugin options of the checkpoint named on its command line.

    Subclasses give `specs_for(checkpoint) -> (title, specs)`; the loaded checkpoint is kept in
    `ctx.meta["fmusic.checkpoint"]` so that it is read once."""

    section_title = "Options of this checkpoint's model"
    note_without_checkpoint = NO_CHECKPOINT_NOTE

    def specs_for(self, ckpt) -> list[OptionSpec]:
        raise NotImplementedError

    def describe(self, ckpt) -> str:
        rep, gen = ckpt.representation_ref, ckpt.generator_ref
        return f"{self.section_title} ({gen.name} generator, {rep.name} representation)"

    def parse_args(self, ctx, args):
        if not hasattr(self, "_base_params"):
            self._base_params = list(self.params)
        self.params = list(self._base_params)
        self._plugin_title = None
        self._plugin_note = None
        self._plugin_flags: list[str] = []
        wants_help = any(a in ctx.help_option_names for a in args)
        path = find_checkpoint_arg(list(args), self.params)
        specs: list[OptionSpec] = []
        if path is None:
            self._plugin_note = self.note_without_checkpoint
        else:
            from fractalmusic.training.checkpoint import Checkpoint

            try:
                ckpt = Checkpoint.load(path)
                specs = self.specs_for(ckpt)
            except FractalMusicError as exc:
                if not wants_help:
                    raise
                self._plugin_note = f"The checkpoint's own options are unavailable: {exc}"
            else:
                ctx.meta["fmusic.checkpoint"] = ckpt
                ctx.meta["fmusic.specs"] = specs
                self._plugin_title = self.describe(ckpt)
                self._plugin_flags = [s.flag for s in specs]
                self.params += plugin_click_options(specs)
        try:
            return super().parse_args(ctx, args)
        except click.NoSuchOption as exc:
            ckpt = ctx.meta.get("fmusic.checkpoint")
            if ckpt is None:
                raise
            raise ConfigError(self.unknown_option(exc.option_name, ckpt, specs)) from None

    def unknown_option(self, option: str, ckpt, specs: list[OptionSpec]) -> str:
        from dataclasses import fields

        from fractalmusic.generators.base import GridRegion

        known = [o for p in self.params if isinstance(p, click.Option) for o in p.opts]
        gen = ckpt.generator_ref.name
        region = ["--" + f.name.replace("_", "-") for f in fields(GridRegion)]
        if option in region and option not in known:
            return (f"{option} regenerates part of a grid; the checkpoint's {ckpt.representation_ref.name} "
                    f"representation is not a grid")
        own = ", ".join(s.flag for s in specs) or "none"
        return f"no such option: {option}{suggest(option, known)} (options of the {gen} generator here: {own})"

    def format_options(self, ctx, formatter):
        common = [p for p in self.get_params(ctx) if isinstance(p, click.Option)
                  and not (p.name or "").startswith(PLUGIN_PREFIX) and p.get_help_record(ctx) is not None]
        rows = [p.get_help_record(ctx) for p in common]
        with formatter.section("Options"):
            formatter.write_dl([r for r in rows if r])
        own = [p.get_help_record(ctx) for p in self.get_params(ctx) if (p.name or "").startswith(PLUGIN_PREFIX)]
        if self._plugin_title:
            with formatter.section(self._plugin_title):
                if own:
                    formatter.write_dl([r for r in own if r])
                else:
                    formatter.write_text("(none)")
        if getattr(self, "_plugin_note", None):
            formatter.write_paragraph()
            formatter.write_text(self._plugin_note)


class SampleCommand(PluginOptionsCommand):
    section_title = "Sampling options of this checkpoint's model"

    def specs_for(self, ckpt) -> list[OptionSpec]:
        gen_cls = ckpt.plugin_class("generator")
        rep_cls = ckpt.plugin_class("representation")
        return api.sample_option_specs(gen_cls, rep_cls.kind)


@click.command("sample", cls=SampleCommand)
@click.argument("checkpoint", type=click.Path(path_type=str))
@click.option("-n", "--num-samples", type=click.IntRange(min=1), default=4, show_default=True,
              help="How many pieces, generated as one batch.")
@click.option("--length", type=click.IntRange(min=0), default=None,
              help="Tokens to generate (default 1000; rows stop earlier at end-of-tune). Grids: width in steps.")
@click.option("--target-width", type=click.IntRange(min=1), default=None,
              help="Grids: width in time steps, a multiple of 4 (default: the training crop length).")
@click.option("--temperature", type=float, default=None,
              help="Higher is more random; 0 is greedy (default: the checkpoint's recommended value, else 1.0).")
@click.option("--top-k", type=click.IntRange(min=1), default=None, help="Draw only from the k likeliest.")
@click.option("--top-p", type=float, default=None,
              help="Draw only from the smallest set with probability >= p (default: the checkpoint's recommended "
                   "value unless --temperature, --top-k or --greedy is given; 1 for none).")
@click.option("--greedy", is_flag=True, help="Always take the likeliest (deterministic).")
@click.option("--seed", type=int, default=None, help="Same seed, same samples (default: a fresh one, printed).")
@click.option("--primer", default=None,
              help="A music file (its first piece) or text in the representation's alphabet to continue.")
@click.option("--strip-primer", is_flag=True, help="Leave the primer out of the written pieces.")
@click.option("--to", "formats", default=None,
              help="Comma list of abc,mid,wav,png,musicxml and any format the representation writes itself "
                   "(default: abc,mid for ABC; mid,png for grids; or the representation's own choice).")
@click.option("--out-dir", default="samples", show_default=True, help="Folder for sample_000.* and samples.abc.")
@click.option("--soundfont", type=click.Path(exists=True, dir_okay=False), default=None,
              help="SoundFont (.sf2) for WAV through FluidSynth (default: the built-in synth).")
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:N.")
def command(checkpoint, num_samples, length, target_width, temperature, top_k, top_p, greedy, seed, primer,
            strip_primer, formats, out_dir, soundfont, device, **plugin_options):
    """Sample pieces from CHECKPOINT (any representation, any generator).

    \b
      fmusic sample runs/folk/checkpoints/best.pt --num-samples 8 --seed 1
      fmusic sample best.pt --primer "X:1\\nT:" --temperature 0.8 --to abc,mid,wav
      fmusic sample roll.pt --target-width 256 --primer bach.mid
      fmusic sample CHECKPOINT --help          # also lists the options of that checkpoint's model
    """
    ctx = click.get_current_context()
    specs = ctx.meta.get("fmusic.specs", [])
    options = convert_values(plugin_options, specs)
    model = api.Model.load(ctx.meta.get("fmusic.checkpoint") or checkpoint, device=device)
    if formats is not None:
        formats = api.parse_formats(formats, model.representation)
    else:
        formats = model.default_formats

    if model.kind == "grid":
        if length is not None and target_width is not None and length != target_width:
            raise ConfigError(f"--length {length} and --target-width {target_width} disagree; give one")
        length = target_width if target_width is not None else length
    elif target_width is not None:
        raise ConfigError("--target-width is for grid representations; use --length for tokens")

    # the checkpoint's recommended settings (found on validation data at training time) unless told otherwise
    rec = model.recommended_sampling if not greedy else {}
    used = {}
    if temperature is None:
        temperature = rec.get("temperature", 1.0)
        if "temperature" in rec:
            used["temperature"] = temperature
        if top_p is None and top_k is None and rec.get("top_p") is not None:
            top_p = used["top_p"] = rec["top_p"]
        if options.get("note_temperature") is None and rec.get("note_temperature") is not None:
            options["note_temperature"] = used["note_temperature"] = rec["note_temperature"]
    if top_p == 1.0:
        top_p = None
    if used:
        said = ", ".join(f"{k.replace('_', '-')} {v:g}" for k, v in used.items())
        click.echo(f"sampling with the checkpoint's recommended {said} (found on validation data; "
                   f"--temperature / --top-p override)")

    if primer is not None and not os.path.isfile(primer):
        primer = primer.replace("\\n", "\n")  # text typed on a command line: \n means a new line
    fresh_seed = seed is None
    if fresh_seed:
        seed = secrets.randbelow(2**31)
    request = model.prepare(  # every option and the primer are checked before anything is written
        num_samples,
        length,
        primer=primer,
        temperature=temperature,
        top_k=top_k,
        top_p=top_p,
        greedy=greedy,
        seed=seed,
        strip_primer=strip_primer,
        **options,
    )
    out = api.prepare_output_dir(out_dir)
    if fresh_seed:
        click.echo(f"seed: {seed} (pass --seed {seed} to repeat)")
    pieces = model.decode(model.run(request))
    report = api.write_samples(pieces, out, formats, soundfont=soundfont, representation=model.representation)
    for problem in report.problems:
        click.echo(f"warning: {problem}", err=True)
    click.echo(report.summary())
