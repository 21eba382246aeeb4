"""`DataConfig`: where the music comes from and how it is cut into training items.

Every field is a command-line option of `fmusic train`, `fmusic evaluate` and `fmusic data stats`
(`crop_length` -> `--crop-length`, `cache_in_memory` -> `--cache-in-memory/--no-cache-in-memory`), parsed by
`fractalmusic.config.parse_options`. FractalMIDI's spellings (`--train_data`, `--crop_length`,
`--no_cache_in_memory`, ...) are accepted too: underscores map onto dashes, and `DATA_ALIASES` maps
`--train-data` onto `--data`.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from fractalmusic.errors import ConfigError

# steps for grids (8 bars of 4/4 in sixteenths); predicted tokens for token sequences (a whole median folk tune)
DEFAULT_CROP = {"grid": 128, "tokens": 256}
GRID_MULTIPLE = 4  # grid crops must be a multiple of this (patch geometry of the fractal generators)

# alternative option spellings -> the canonical ones (FractalMIDI calls the training list --train_data)
DATA_ALIASES = {"--train-data": "--data"}


def _default_workers() -> int:
    """Every core this process may use (reading MIDI is CPU-bound and each file is independent)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


@dataclass
class DataConfig:
    data: str | None = None  # corpus: built-in name, folder, list file, ABC book or music file; None: the default
    val_data: str | None = None  # held-out corpus (same forms); None: split `data` by piece
    dataset: str | None = None  # a recipe of datasets/ (maestro, lakh, pop909, ...): train and validate on its split
    root: str | None = None  # the folder that dataset was unpacked into (--dataset NAME --root DIR)
    val_fraction: float = 0.05  # share of pieces held out when val_data is not given
    split_seed: int = 0  # which pieces are held out
    crop_length: int | None = None  # None: 128 steps for grids, 256 predicted tokens for token sequences
    augment_factor: int = 1  # random crops per piece (grids) / per crop-length of tokens (tokens) per epoch
    pitch_shift_min: int = 0  # semitones; each item is shifted by a uniform draw in [min, max]
    pitch_shift_max: int = 0
    whole_tunes: bool = False  # tokens only: each item is a whole tune (truncated to crop_length + 1)
    max_pieces: int | None = None  # use only the first N pieces of each corpus (quick runs)
    cache_dir: str | None = None  # None: $FRACTALMUSIC_CACHE_DIR, else ~/.cache/fractalmusic
    no_cache: bool = False  # read and encode everything afresh; write nothing
    cache_in_memory: bool = True  # False: memory-map the encoded arrays from the cache folder
    num_prep_workers: int = field(default_factory=_default_workers, metadata={"help": (
        "most processes reading files (default: one per core; they start only when the files left would take over "
        "a second in-process); 0 or 1: in-process")})
    seed: int = 0  # crops and pitch shifts are a pure function of (seed, epoch, item)

    def __post_init__(self):
        if not 0.0 <= float(self.val_fraction) < 1.0:
            raise ConfigError(f"--val-fraction must be in [0, 1), not {self.val_fraction}")
        if self.crop_length is not None and self.crop_length < 1:
            raise ConfigError(f"--crop-length must be at least 1, not {self.crop_length}")
        if self.augment_factor < 1:
            raise ConfigError(f"--augment-factor must be at least 1, not {self.augment_factor}")
        for name in ("pitch_shift_min", "pitch_shift_max"):
            value = getattr(self, name)
            if not -127 <= value <= 127:
                raise ConfigError(f"--{name.replace('_', '-')} must be within -127..127 semitones, not {value}")
        if self.pitch_shift_min > self.pitch_shift_max:
            raise ConfigError(
                f"--pitch-shift-min ({self.pitch_shift_min}) is above --pitch-shift-max ({self.pitch_shift_max})"
            )
        if self.max_pieces is not None and self.max_pieces < 1:
            raise ConfigError(f"--max-pieces must be at least 1, not {self.max_pieces}")
        if self.num_prep_workers < 0:
            raise ConfigError(f"--num-prep-workers must be 0 or more, not {self.num_prep_workers}")
        for name in ("data", "val_data", "cache_dir", "dataset", "root"):
            value = getattr(self, name)
            if value is not None and not str(value).strip():
                raise ConfigError(f"--{name.replace('_', '-')} is empty")

    # ------------------------------------------------------------------ derived values
    def crop_for(self, kind: str) -> int:
        """The crop length for a representation kind; grid crops must be a multiple of 4."""
        crop = DEFAULT_CROP.get(kind, 128) if self.crop_length is None else int(self.crop_length)
        if kind == "grid" and crop % GRID_MULTIPLE:
            lower = max(GRID_MULTIPLE, crop - crop % GRID_MULTIPLE)
            raise ConfigError(
                f"--crop-length {crop} is not a multiple of {GRID_MULTIPLE}, as piano-roll crops must be "
                f"(try {lower} or {lower + GRID_MULTIPLE})"
            )
        if kind == "tokens" and crop < 1:
            raise ConfigError(f"--crop-length must be at least 1, not {crop}")
        return crop

    def resolved_cache_dir(self) -> Path:
        if self.cache_dir:
            return Path(self.cache_dir).expanduser()
        env = os.environ.get("FRACTALMUSIC_CACHE_DIR", "").strip()
        if env:
            return Path(env).expanduser()
        return Path("~/.cache/fractalmusic").expanduser()

    @property
    def shifts(self) -> bool:
        return (self.pitch_shift_min, self.pitch_shift_max) != (0, 0)


def default_corpus(representation) -> str:
    """The corpus used when --data is not given: folk tunes for token representations, chorales for grids."""
    if isinstance(representation, str):  # a kind ("grid") or a representation name ("pianoroll")
        kind = "grid" if representation in ("grid", "pianoroll") else "tokens"
    else:
        kind = getattr(representation, "kind", "")
    return "chorales" if kind == "grid" else "folk"
