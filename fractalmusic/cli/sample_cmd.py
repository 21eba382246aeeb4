"""`fmusic sample CHECKPOINT`: generate pieces from any checkpoint and write them as ABC, MIDI, WAV, PNG, MusicXML.

A thin layer over `fractalmusic.api`: a notebook calling `fractalmusic.load(...).sample(...)` with the same seed
and options gets the same samples.
"""
from __future__ import annotations

import os
import secrets

import click

from fractalmusic import api
from fractalmusic.errors import ConfigError

_FRACTAL_HELP = "Fractal generators: "


def _num_iter(text: str | None):
    """'8' -> 8; '8,4,2,1' -> (8, 4, 2, 1)."""
    if text is None:
        return None
    parts = [p.strip() for p in str(text).split(",") if p.strip()]
    try:
        values = [int(p) for p in parts]
    except ValueError:
        raise ConfigError(f"--num-iter takes one whole number or a comma list (8,4,2,1), not {text!r}") from None
    if not values or any(v < 1 for v in values):
        raise ConfigError(f"--num-iter values must be >= 1, not {text!r}")
    return values[0] if len(values) == 1 else tuple(values)


@click.command("sample")
@click.argument("checkpoint", type=click.Path(path_type=str))
@click.option("-n", "--num-samples", type=click.IntRange(min=1), default=4, show_default=True,
              help="How many pieces, generated as one batch.")
@click.option("--length", type=click.IntRange(min=0), default=None,
              help="Tokens to generate (default 1000; rows stop earlier at end-of-tune). Grids: width in steps.")
@click.option("--target-width", type=click.IntRange(min=1), default=None,
              help="Grids: width in time steps, a multiple of 4 (default: the training crop length).")
@click.option("--temperature", type=float, default=1.0, show_default=True,
              help="Higher is more random; 0 is greedy.")
@click.option("--top-k", type=click.IntRange(min=1), default=None, help="Draw only from the k likeliest.")
@click.option("--top-p", type=float, default=None, help="Draw only from the smallest set with probability >= p.")
@click.option("--greedy", is_flag=True, help="Always take the likeliest (deterministic).")
@click.option("--seed", type=int, default=None, help="Same seed, same samples (default: a fresh one, printed).")
@click.option("--primer", default=None,
              help="A music file (its first piece) or text in the representation's alphabet to continue.")
@click.option("--strip-primer", is_flag=True, help="Leave the primer out of the written pieces.")
@click.option("--to", "formats", default=None,
              help="Comma list of abc,mid,wav,png,musicxml (default: abc,mid for ABC; mid,png for grids).")
@click.option("--out-dir", default="samples", show_default=True, help="Folder for sample_000.* and samples.abc.")
@click.option("--soundfont", type=click.Path(exists=True, dir_okay=False), default=None,
              help="SoundFont (.sf2) for WAV through FluidSynth (default: the built-in synth).")
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:N.")
@click.option("--num-iter", default=None, help=_FRACTAL_HELP + "iterations per level (one int or a comma list).")
@click.option("--mask-start", type=int, default=None, help=_FRACTAL_HELP + "regenerate from this step ...")
@click.option("--mask-end", type=int, default=None, help="... up to (not including) this step.")
@click.option("--mask-pitch-low", type=int, default=None, help=_FRACTAL_HELP + "regenerate this pitch band ...")
@click.option("--mask-pitch-high", type=int, default=None, help="... up to this MIDI pitch (inclusive).")
def command(checkpoint, num_samples, length, target_width, temperature, top_k, top_p, greedy, seed, primer,
            strip_primer, formats, out_dir, soundfont, device, num_iter, mask_start, mask_end, mask_pitch_low,
            mask_pitch_high):
    """Sample pieces from CHECKPOINT (any representation, any generator).

    \b
      fmusic sample runs/folk/checkpoints/best.pt --num-samples 8 --seed 1
      fmusic sample best.pt --primer "X:1\\nT:" --temperature 0.8 --to abc,mid,wav
      fmusic sample roll.pt --target-width 256 --primer bach.mid --mask-start 64 --mask-end 128
    """
    model = api.Model.load(checkpoint, device=device)
    if formats is not None:
        formats = api.parse_formats(formats)
    else:
        formats = model.default_formats

    if model.kind == "grid":
        if length is not None and target_width is not None and length != target_width:
            raise ConfigError(f"--length {length} and --target-width {target_width} disagree; give one")
        length = target_width if target_width is not None else length
    elif target_width is not None:
        raise ConfigError("--target-width is for grid representations; use --length for tokens")

    options = {}
    iters = _num_iter(num_iter)
    if iters is not None:
        if "num_iter" not in model.generator.sample_options:
            raise ConfigError(f"--num-iter is not an option of the {model.generator.name!r} generator")
        options["num_iter"] = iters
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
        mask_start=mask_start,
        mask_end=mask_end,
        mask_pitch_low=mask_pitch_low,
        mask_pitch_high=mask_pitch_high,
        **options,
    )
    out = api.prepare_output_dir(out_dir)
    if fresh_seed:
        click.echo(f"seed: {seed} (pass --seed {seed} to repeat)")
    pieces = model.decode(model.run(request))
    report = api.write_samples(pieces, out, formats, soundfont=soundfont)
    for problem in report.problems:
        click.echo(f"warning: {problem}", err=True)
    click.echo(report.summary())
