"""Limits on what fractalmusic reads, samples and renders, and the size estimates checked against them.

Every reader, sampler and renderer checks the size of what it is about to do BEFORE it allocates anything large,
and refuses with one line that names the limit and what to lower, instead of running out of memory, filling a
disk or running for hours. The limits are generous for real music (see docs/RELIABILITY.md for the reasoning):

    reading     MAX_FILE_BYTES, MAX_ABC_LINE_CHARS, MAX_ABC_TUNE_CHARS, MAX_TITLE_CHARS, MAX_TUNES_PER_BOOK,
                MAX_NOTES, MAX_PIECE_BEATS, MAX_GRID_STEPS (a piano roll of one piece)
    sampling    MAX_NUM_SAMPLES, MAX_TOKEN_LENGTH, MAX_GRID_WIDTH, and an estimate of the memory the outputs
                need against what the device has free
    rendering   MAX_WAV_SECONDS, MAX_PNG_STEPS (wider rolls are drawn at a coarser time resolution),
                MAX_MUSICXML_NOTES

Nothing here imports torch or a music library at module level.
"""
from __future__ import annotations

import os
import stat

from fractalmusic.errors import ConfigError, FractalMusicError, PieceReadError

# ------------------------------------------------------------------------------------------- reading
MAX_FILE_BYTES = 64 * 1024 * 1024  # one music file (MIDI files are rarely over 1 MB, ABC books a few MB)
MAX_ABC_LINE_CHARS = 8192  # one line of ABC text (real tunes: under 200)
MAX_ABC_TUNE_CHARS = 16384  # one tune's text: music21's ABC parser slows down quadratically (16k chars ~ 15 s)
MAX_TITLE_CHARS = 1000  # a T: field
MAX_TUNES_PER_BOOK = 20000  # tunes read from one ABC file; the rest are skipped, counted in one line
MAX_PIECE_BEATS = 20000  # one piece's duration (about 2.8 hours at 120 quarter notes per minute)
MAX_NOTES = 1_000_000  # notes in one piece, whatever its format (the MIDI reader checks it while parsing)
MAX_GRID_STEPS = 131072  # one piece as a piano roll, in time steps (duration x steps per beat)

# ------------------------------------------------------------------------------------------- sampling
MAX_NUM_SAMPLES = 10000  # pieces in one sampling batch
MAX_TOKEN_LENGTH = 100000  # tokens generated per piece
MAX_GRID_WIDTH = 16384  # grid steps generated per piece (4,096 beats at 4 steps per beat)
MEMORY_HEADROOM = 0.8  # an estimate may use at most this share of the memory the device has free

# ------------------------------------------------------------------------------------------- rendering
MAX_WAV_SECONDS = 1800.0  # 30 minutes of audio (22,050 samples a second: about 320 MB while rendering)
MAX_PNG_STEPS = 16384  # columns of a piano-roll picture before it is drawn coarser (the picture is <= 4,000 px)
MAX_MUSICXML_NOTES = 4000  # music21 writes MusicXML in time that grows with the square of the notes (8,000: 90 s)


def _num(n: float) -> str:
    return f"{n:,.0f}" if float(n).is_integer() else f"{n:,.1f}"


def human_bytes(n: float) -> str:
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:,.0f} {unit}" if unit == "bytes" else f"{n:,.1f} {unit}"
        n /= 1024
    return f"{n:,.1f} TiB"  # pragma: no cover


# ------------------------------------------------------------------------------------------- files
def file_problem(st: os.stat_result) -> str | None:
    """Why a file with this `os.stat` result must not be opened as music, or None (a regular file in limits)."""
    mode = st.st_mode
    if stat.S_ISFIFO(mode):
        return "not a regular file (a FIFO)"
    if stat.S_ISSOCK(mode):
        return "not a regular file (a socket)"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "not a regular file (a device)"
    if stat.S_ISDIR(mode):
        return "a folder, not a file"
    if not stat.S_ISREG(mode):
        return "not a regular file"
    return size_problem(st.st_size)


def size_problem(n_bytes: int) -> str | None:
    """Why a music file of `n_bytes` bytes must not be read (over MAX_FILE_BYTES), or None."""
    if n_bytes > MAX_FILE_BYTES:
        return f"{human_bytes(n_bytes)}, over the {human_bytes(MAX_FILE_BYTES)} limit for one music file"
    return None


def check_music_file(path: str | os.PathLike) -> None:
    """PieceReadError unless `path` is a regular file within MAX_FILE_BYTES (never opens it: a FIFO would block).

    A compressed MusicXML file (.mxl, a zip archive) must also unpack to at most MAX_FILE_BYTES: its members' sizes
    are read from the archive's directory (zipfile never returns more than a member's stated size), so a small
    file that would unpack to gigabytes is refused before music21 unpacks it."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise PieceReadError(path, "no such file") from None
    except OSError as exc:
        raise PieceReadError(path, f"cannot read: {exc.strerror or exc}") from None
    why = file_problem(st)
    if why:
        raise PieceReadError(path, why)
    if str(path).lower().endswith(".mxl"):
        import zipfile

        try:
            with zipfile.ZipFile(path) as z:
                unpacked = sum(max(int(i.file_size), 0) for i in z.infolist())
        except (zipfile.BadZipFile, OSError, ValueError):
            return  # not a zip: the MusicXML reader says what is wrong with it
        if unpacked > MAX_FILE_BYTES:
            raise PieceReadError(path, f"unpacks to {human_bytes(unpacked)}, over the {human_bytes(MAX_FILE_BYTES)} "
                                       "limit for one music file")


# ------------------------------------------------------------------------------------------- pieces
def piece_problem(piece, steps_per_beat: float | None = None) -> str | None:
    """Why a piece is too big to use (MAX_NOTES, MAX_PIECE_BEATS; with `steps_per_beat`, MAX_GRID_STEPS), or None."""
    return notes_problem(int(piece.n_notes)) or beats_problem(float(piece.end_beat), steps_per_beat)


def summary_problem(summary: dict, steps_per_beat: float | None = None) -> str | None:
    """`piece_problem` from a cached piece summary (its n_notes and end_beat), without loading the piece."""
    return (notes_problem(int(summary.get("n_notes") or 0))
            or beats_problem(float(summary.get("end_beat") or 0.0), steps_per_beat))


def notes_problem(n_notes: int) -> str | None:
    if n_notes > MAX_NOTES:
        return f"has {n_notes:,} notes, over the limit of {MAX_NOTES:,} for one piece"
    return None


def beats_problem(beats: float, steps_per_beat: float | None = None) -> str | None:
    """Why a piece of `beats` beats is too long (see `piece_problem`), or None."""
    if not beats <= MAX_PIECE_BEATS:  # also NaN
        return f"lasts {_num(beats)} beats, over the limit of {_num(MAX_PIECE_BEATS)} beats for one piece"
    if steps_per_beat and beats * steps_per_beat > MAX_GRID_STEPS:
        return (f"lasts {_num(beats)} beats = {_num(beats * steps_per_beat)} steps, over the limit of "
                f"{_num(MAX_GRID_STEPS)} steps for one piano roll")
    return None


# ------------------------------------------------------------------------------------------- sampling
def available_memory(device=None) -> int | None:
    """Bytes free now on `device` (a torch.device or name), None when the platform won't say: the trainer's answer
    (`fractalmusic.training.budget.available_memory`: free GPU memory, or MemAvailable lowered to a container's
    memory limit), else free GPU memory or MemAvailable read here."""
    try:
        from fractalmusic.training.budget import available_memory as budget_memory

        return budget_memory(device if device is not None else "cpu")[0]
    except Exception:  # noqa: BLE001 - no trainer installed, or a device name it does not know: answer below
        pass
    kind = getattr(device, "type", None) or (str(device).split(":")[0] if device is not None else "cpu")
    if kind == "cuda":
        try:
            import torch

            free, _total = torch.cuda.mem_get_info(device)
            return int(free)
        except Exception:
            return None
    try:
        with open("/proc/meminfo", "rb") as f:
            for line in f:
                if line.startswith(b"MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    except (OSError, ValueError, AttributeError):
        return None


def estimate_sample_bytes(kind: str, n: int, length: int, height: int = 128, vocab_size: int = 0) -> int:
    """A lower bound on the memory one sampling batch needs for its inputs and outputs alone.

    Grids: per cell, the int64 result, the primer canvas and the generator's working tensor (8 bytes each) and the
    mask (1 byte), i.e. n x width x height x 25. Tokens: per generated token the int64 ids in the generator and in
    the result (16 bytes), plus the float32 logits of one step (n x vocab x 4, several copies while filtering).
    A generator's own activations come on top, so the check against free memory only catches what can never fit.
    """
    n, length = int(n), int(length)
    if kind == "grid":
        return n * length * int(height) * 25
    return n * length * 16 + n * max(int(vocab_size), 1) * 4 * 4


def check_sample_size(kind: str, n: int, length: int, height: int = 128, vocab_size: int = 0,
                      device=None, length_option: str | None = None) -> None:
    """ConfigError (one line, saying what to lower) when a sampling request is over a limit or cannot fit."""
    n, length = int(n), int(length)
    opt = length_option or ("--target-width" if kind == "grid" else "--length")
    if n > MAX_NUM_SAMPLES:
        raise ConfigError(
            f"--num-samples {n:,} is over the limit of {MAX_NUM_SAMPLES:,} pieces in one batch; "
            "lower --num-samples (run several times with different --seed for more)"
        )
    cap = MAX_GRID_WIDTH if kind == "grid" else MAX_TOKEN_LENGTH
    unit = "steps" if kind == "grid" else "tokens"
    if length > cap:
        raise ConfigError(f"{opt} {length:,} is over the limit of {cap:,} {unit} per piece; lower {opt}")
    need = estimate_sample_bytes(kind, n, length, height, vocab_size)
    free = available_memory(device)
    if free is not None and need > MEMORY_HEADROOM * free:
        where = getattr(device, "type", None) or str(device or "cpu")
        raise ConfigError(
            f"{n:,} samples of {length:,} {unit} need at least {human_bytes(need)}, but {where} has "
            f"{human_bytes(free)} free; lower --num-samples or {opt}"
        )


# ------------------------------------------------------------------------------------------- rendering
def check_wav_seconds(seconds: float, what: str = "the piece") -> None:
    """FractalMusicError when a WAV of `seconds` would be over MAX_WAV_SECONDS."""
    if not seconds <= MAX_WAV_SECONDS:  # also NaN
        raise FractalMusicError(
            f"{what} lasts {_num(seconds)} s; WAV rendering is limited to {_num(MAX_WAV_SECONDS)} s "
            "(write MIDI or PNG instead, or shorten it)"
        )


def check_musicxml_notes(n_notes: int, what: str = "the piece") -> None:
    """FractalMusicError when writing MusicXML of `n_notes` notes would take minutes (MAX_MUSICXML_NOTES)."""
    if n_notes > MAX_MUSICXML_NOTES:
        raise FractalMusicError(
            f"{what} has {n_notes:,} notes; MusicXML is written for at most {MAX_MUSICXML_NOTES:,} (music21 slows "
            "down with the square of the notes): write MIDI instead"
        )


def png_steps_per_beat(end_beat: float, steps_per_beat: float) -> float:
    """The time resolution a piano-roll picture is drawn at: `steps_per_beat`, coarser if it would be wider than
    MAX_PNG_STEPS columns (the picture itself is at most 4,000 pixels wide, so nothing visible is lost)."""
    end = max(float(end_beat), 0.0)
    if end * steps_per_beat <= MAX_PNG_STEPS:
        return float(steps_per_beat)
    return MAX_PNG_STEPS / end
