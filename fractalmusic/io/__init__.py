"""Readers and writers: every music file the package touches goes through here.

    pieces = read_pieces("tunes.abc", notes=False)     # an ABC book: one Piece per tune, text and header only
    piece = ensure_notes(pieces[0])                    # parse that tune's notes through music21 when needed
    write_outputs(piece, "out", "tune", ["wav", "mid", "png"])

Readers raise `PieceReadError(path, reason)` for missing, empty, corrupt or unsupported files. Heavy libraries
(music21, matplotlib) are imported only by the functions that need them.
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterable

from fractalmusic.errors import ConfigError, FractalMusicError, PieceReadError
from fractalmusic.limits import check_music_file, check_musicxml_notes, piece_problem, size_problem
from fractalmusic.piece import Piece

MIDI_SUFFIXES = (".mid", ".midi")
ABC_SUFFIXES = (".abc",)
MUSIC21_SUFFIXES = (".xml", ".mxl", ".musicxml", ".krn")
SUPPORTED_SUFFIXES = MIDI_SUFFIXES + ABC_SUFFIXES + MUSIC21_SUFFIXES

# output format name -> file suffix
WRITE_FORMATS = {"mid": ".mid", "abc": ".abc", "musicxml": ".musicxml", "wav": ".wav", "png": ".png"}
_FORMAT_ALIASES = {"midi": "mid", "xml": "musicxml", "mxl": "musicxml"}
_SUFFIX_FORMATS = {".mid": "mid", ".midi": "mid", ".abc": "abc", ".musicxml": "musicxml", ".xml": "musicxml",
                   ".wav": "wav", ".png": "png"}  # fmt: skip


def read_pieces(path, notes: bool = True, errors: list | None = None, data: bytes | None = None) -> list[Piece]:
    """Read one music file. ABC files give one Piece per tune (see `fractalmusic.io.abc.read_abc` for `notes` and
    `errors`); MIDI, MusicXML and kern files give one Piece. A file that yields nothing raises PieceReadError.

    Bounded: only a regular file within `limits.MAX_FILE_BYTES` is opened (a FIFO or a device never is), and a piece
    longer than `limits.MAX_PIECE_BEATS` is refused (a tune of a book is left out and reported in `errors`).
    `data`: a MIDI file's bytes, when the caller read them already (preparation, which hashed them): the file is
    not looked at again, only the bytes' number is bounded (other formats read the file themselves)."""
    if data is not None and str(path).lower().endswith(MIDI_SUFFIXES):
        why = size_problem(len(data))
        if why:
            raise PieceReadError(path, why)
        from fractalmusic.io.midi import midi_bytes_to_piece

        return [midi_bytes_to_piece(data, source=str(path))]  # it refuses pieces over the limits itself
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix in SUPPORTED_SUFFIXES:
        check_music_file(path)
    if suffix in ABC_SUFFIXES:
        from fractalmusic.io.abc import read_abc

        pieces = read_abc(path, notes=notes, errors=errors)
        kept = []
        for p in pieces:
            why = piece_problem(p)
            if why is None:
                kept.append(p)
            elif errors is not None:
                errors.append((p.source, why))
        if not kept:
            raise PieceReadError(path, piece_problem(pieces[0]) if len(pieces) == 1 else
                                 f"none of {len(pieces)} tunes is usable ({piece_problem(pieces[0])})")
        return kept
    if suffix in MIDI_SUFFIXES:
        from fractalmusic.io.midi import read_midi

        return [read_midi(path, data)]  # the MIDI reader refuses pieces over the limits itself (piece_problem)
    if suffix in MUSIC21_SUFFIXES:
        from fractalmusic.io.music21_io import read_music21

        return [_bounded(read_music21(path), path)]
    if not path.exists():
        raise PieceReadError(path, "no such file")
    wanted = " ".join(SUPPORTED_SUFFIXES)
    raise PieceReadError(path, f"unsupported file type {suffix or '(no suffix)'!r} (readable: {wanted})")


def _bounded(piece: Piece, path) -> Piece:
    why = piece_problem(piece)
    if why:
        raise PieceReadError(path, why)
    return piece


def ensure_notes(piece: Piece) -> Piece:
    """The piece itself if it has notes or no ABC text; else a copy with its ABC parsed through music21.

    PieceReadError when the tune is over the limits (`limits.MAX_ABC_TUNE_CHARS` before parsing: music21 slows
    down quadratically; `limits.MAX_PIECE_BEATS` after)."""
    if piece.n_notes or not piece.abc:
        return piece
    from fractalmusic.io.abc import tune_problem
    from fractalmusic.io.music21_io import add_abc_notes

    where = piece.source or piece.title or "ABC tune"
    why = tune_problem(piece.abc)
    if why:
        raise PieceReadError(where, why)
    return _bounded(add_abc_notes(piece), where)


def parse_formats(spec: str | Iterable[str]) -> list[str]:
    """'wav,mid,png' (or a list) -> canonical format names, in order, without repeats. ConfigError if unknown."""
    items = spec.split(",") if isinstance(spec, str) else list(spec)
    out: list[str] = []
    for item in items:
        name = str(item).strip().lower().lstrip(".")
        if not name:
            continue
        name = _FORMAT_ALIASES.get(name, name)
        if name not in WRITE_FORMATS:
            choices = ", ".join(sorted(WRITE_FORMATS))
            raise ConfigError(f"unknown output format {str(item).strip()!r} (choose from {choices})")
        if name not in out:
            out.append(name)
    if not out:
        raise ConfigError(f"no output format given (choose from {', '.join(sorted(WRITE_FORMATS))})")
    return out


def write_piece(piece: Piece, path, soundfont=None) -> Path:
    """Write a piece in the format its suffix names: .mid/.midi .abc .musicxml/.xml .wav .png.

    ABC output of a piece that did not come from ABC is its top voice only (see `fractalmusic.io.abc`). Pieces
    that carry only ABC text get their notes parsed first for the other formats."""
    path = Path(path)
    fmt = _SUFFIX_FORMATS.get(path.suffix.lower())
    if fmt is None:
        choices = " ".join(sorted(_SUFFIX_FORMATS))
        raise ConfigError(f"{path}: cannot write {path.suffix or 'a file without a suffix'} (writable: {choices})")
    if fmt == "abc":
        from fractalmusic.io.abc import write_abc

        return write_abc(piece, path)
    piece = ensure_notes(piece)
    if fmt == "mid":
        from fractalmusic.io.midi import write_midi

        return write_midi(piece, path)
    if fmt == "musicxml":
        from fractalmusic.io.music21_io import write_musicxml

        check_musicxml_notes(piece.n_notes, str(piece.source or piece.title or "the piece"))
        return write_musicxml(piece, path)
    if fmt == "wav":
        from fractalmusic.io.audio import render_wav

        return render_wav(piece, path, soundfont=soundfont)
    from fractalmusic.io.image import render_png

    return render_png(piece, path)


def write_outputs(piece: Piece, out_dir, stem: str, formats, soundfont=None) -> list[Path]:
    """Write `piece` as `out_dir/stem.<suffix>` for each format ('wav', 'mid', 'png', 'abc', 'musicxml');
    `formats` may be a list or a comma-separated string. Creates `out_dir`. Returns the paths written."""
    names = parse_formats(formats)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if any(n != "abc" for n in names):
        piece = ensure_notes(piece)
    return [write_piece(piece, out_dir / f"{stem}{WRITE_FORMATS[name]}", soundfont=soundfont) for name in names]


__all__ = [
    "SUPPORTED_SUFFIXES",
    "WRITE_FORMATS",
    "FractalMusicError",
    "PieceReadError",
    "ensure_notes",
    "parse_formats",
    "read_pieces",
    "write_outputs",
    "write_piece",
]

# Bumped whenever a reader's output changes, so cached parsed pieces are re-read (see fractalmusic.data.cache).
READER_VERSION = 3  # 2: bounded readers (limits), summaries carry a content hash; 3: MIDI read with symusic
