"""The `fmusic` command. Each sub-command lives in its own module and is imported only when used."""
from __future__ import annotations

import importlib
import os
import sys

import click

from fractalmusic.errors import FractalMusicError

COMMANDS = {
    "train": "Train a generator on a corpus.",
    "sample": "Sample pieces from a checkpoint.",
    "evaluate": "Held-out likelihood, or musical metrics of generated against reference music.",
    "data": "List corpora, show statistics, prepare caches.",
    "render": "Convert a music file to MIDI, WAV, PNG, ABC or MusicXML.",
    "plugins": "List installed representations and generators, and any that failed to load.",
    "serve": "A local studio in the browser: sample, hear, see and reshape (needs the studio extra).",
}


class LazyGroup(click.Group):
    def list_commands(self, ctx):
        return list(COMMANDS)

    def get_command(self, ctx, name):
        if name not in COMMANDS:
            return None
        module = importlib.import_module(f"fractalmusic.cli.{name}_cmd")
        return module.command

    def format_commands(self, ctx, formatter):
        rows = [(name, help_) for name, help_ in COMMANDS.items()]
        with formatter.section("Commands"):
            formatter.write_dl(rows)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="fractalmusic", prog_name="fmusic")
def cli():
    """fractalmusic: train and sample symbolic-music generators.

    \b
      fmusic train --repr abc --generator lstm          # folk tunes, embedded corpus
      fmusic train --repr pianoroll --generator mar     # Bach chorales as piano rolls
      fmusic sample runs/x/checkpoints/best.pt --num-samples 8 --to wav,mid,png
      fmusic evaluate runs/x/checkpoints/best.pt
    """


def fail(message: str, code: int = 2) -> None:
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


def main(argv=None) -> None:
    debug = os.environ.get("FRACTALMUSIC_DEBUG", "") not in ("", "0")
    try:
        cli.main(args=argv, prog_name="fmusic", standalone_mode=False)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.exceptions.Abort as exc:
        cause = exc.__cause__ or exc.__context__  # click turns KeyboardInterrupt into Abort
        if getattr(cause, "message", None):  # fmusic train stopped by SIGINT/SIGTERM after a checkpoint
            click.echo(cause.message, err=True)
            sys.exit(int(getattr(cause, "exit_code", 130)))
        fail("aborted", 130)
    except click.ClickException as exc:  # usage errors: one line, with the command's name
        ctx = getattr(exc, "ctx", None)
        where = f"{ctx.command_path}: " if ctx is not None else ""
        fail(f"{where}{exc.format_message()}", exc.exit_code if exc.exit_code else 2)
    except FractalMusicError as exc:
        if debug:
            raise
        fail(str(exc), exc.exit_code)
    except KeyboardInterrupt as exc:
        message = getattr(exc, "message", None)  # fmusic train stopped by SIGINT/SIGTERM after a checkpoint
        if message:
            click.echo(message, err=True)
            sys.exit(int(getattr(exc, "exit_code", 130)))
        fail("interrupted", 130)
    except OSError as exc:  # unwritable output folder, disk full, missing file passed through...
        if debug:
            raise
        where = f"{exc.filename}: " if getattr(exc, "filename", None) else ""
        fail(f"{where}{exc.strerror or exc}", 1)
    except MemoryError:  # an allocation no size check foresaw: still one line that says what to do
        if debug:
            raise
        fail("out of memory: lower what was asked for (--num-samples, --length, --target-width, --batch-size, "
             "--crop-length, the model size) or free some memory", 1)
    except Exception as exc:  # a bug: say so in one line, keep the traceback one variable away
        if debug:
            raise
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        fail(f"internal error {type(exc).__name__}: {first} (set FRACTALMUSIC_DEBUG=1 for the traceback)", 1)
