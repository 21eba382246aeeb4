"""`fmusic render`: convert a music file to WAV, MIDI, PNG, ABC or MusicXML."""
from __future__ import annotations

from pathlib import Path

import click

from fractalmusic.errors import ConfigError, FractalMusicError, PieceReadError


@click.command("render")
@click.argument("input_path", metavar="INPUT", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--to",
    "formats",
    default="wav,mid,png",
    show_default=True,
    help="Comma-separated output formats: wav, mid, png, abc, musicxml.",
)
@click.option(
    "--out-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("."),
    show_default="current directory",
    help="Folder for the outputs (created if missing).",
)
@click.option(
    "--soundfont",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="SoundFont (.sf2) for WAV through FluidSynth (needs libfluidsynth and `pip install fractalmusic[audio]`).",
)
@click.option("--tune", "tune", default=None, metavar="X", help="For an ABC book: render only the tune with X:<X>.")
def command(input_path: Path, formats: str, out_dir: Path, soundfont: Path | None, tune: str | None):
    """Convert INPUT (.mid .midi .abc .xml .mxl .musicxml .krn) to other formats.

    Outputs are named after INPUT (song.mid -> song.wav, song.png ...). Every tune of an ABC book is rendered,
    as <stem>_X<number>.<format>, unless --tune picks one. One line per written file is printed.

    \b
    WAV uses FluidSynth with a SoundFont when it is installed, else a built-in piano-like synthesiser.
    ABC output of a piece that is not ABC-born (MIDI, MusicXML, kern) holds its TOP VOICE ONLY:
    the highest note at each onset, quantised to sixteenths.

    \b
      fmusic render song.mid --to wav,png
      fmusic render book.abc --tune 626 --to mid,wav --out-dir renders
    """
    from fractalmusic.io import (
        ABC_SUFFIXES,
        SUPPORTED_SUFFIXES,
        WRITE_FORMATS,
        ensure_notes,
        parse_formats,
        read_pieces,
        write_outputs,
    )

    names = parse_formats(formats)
    if soundfont is not None and "wav" in names:
        from fractalmusic.io.audio import fluidsynth_available

        if not soundfont.expanduser().is_file():
            raise FractalMusicError(f"soundfont not found: {soundfont}")
        if not fluidsynth_available():
            raise FractalMusicError(
                "--soundfont needs FluidSynth: install the libfluidsynth library (e.g. apt install fluidsynth) "
                "and `pip install fractalmusic[audio]`"
            )
    suffix = input_path.suffix.lower()
    if suffix not in SUPPORTED_SUFFIXES:
        if not input_path.exists():
            raise PieceReadError(input_path, "no such file")
        raise PieceReadError(input_path, f"unsupported file type {suffix or '(no suffix)'!r} "
                                         f"(readable: {' '.join(SUPPORTED_SUFFIXES)})")
    is_abc = suffix in ABC_SUFFIXES
    if tune is not None and not is_abc:
        raise ConfigError("--tune applies to ABC files only")

    left_out: list = []  # tunes of a book over the reading limits: named, not dropped silently
    pieces = read_pieces(input_path, notes=False, errors=left_out) if is_abc else read_pieces(input_path)
    for source, reason in left_out:
        if tune is None:
            click.echo(f"warning: skipped {source}: {reason}", err=True)
        elif str(source).endswith(f"#X{tune.strip()}"):  # the tune asked for is over the limits: say so
            raise PieceReadError(source, reason)
    stem = input_path.stem
    jobs: list[tuple[str, object]] = []
    if is_abc:
        if tune is not None:
            wanted = tune.strip()
            pieces = [p for p in pieces if str(p.meta.get("abc_header", {}).get("X", "")).strip() == wanted]
            if not pieces:
                raise ConfigError(f"{input_path}: no tune with X:{wanted}")
        used: set[str] = set()
        many = tune is not None or len(pieces) > 1
        for k, p in enumerate(pieces):
            number = str(p.meta.get("abc_header", {}).get("X") or k + 1)
            name = f"{stem}_X{_safe(number)}" if many else stem
            base, n = name, 2
            while name in used:
                name, n = f"{base}_{n}", n + 1
            used.add(name)
            jobs.append((name, p))
    else:
        jobs = [(stem, p) for p in pieces]

    source = input_path.resolve()
    for name, _ in jobs:
        for fmt in names:
            target = (out_dir / f"{name}{WRITE_FORMATS[fmt]}").resolve()
            if target == source:
                raise ConfigError(f"writing {target.name} would overwrite the input; choose another --out-dir")

    needs_notes = any(n != "abc" for n in names)
    written = 0
    failed: list[str] = []
    for name, piece in jobs:
        if needs_notes:
            try:
                piece = ensure_notes(piece)
            except PieceReadError as exc:
                if len(jobs) == 1:
                    raise
                failed.append(f"{name}: {exc.reason}")
                click.echo(f"warning: skipped {piece.source}: {exc.reason}", err=True)
                continue
        for path in write_outputs(piece, out_dir, name, names, soundfont=soundfont):
            click.echo(str(path))
            written += 1
    if not written:
        raise PieceReadError(input_path, f"no tune could be rendered ({failed[0] if failed else 'nothing to write'})")


def _safe(text: str) -> str:
    """A tune number as a file-name part."""
    return "".join(c if c.isalnum() or c in "-." else "_" for c in text) or "tune"
