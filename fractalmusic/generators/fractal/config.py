"""Hyper-parameters of the fractal generators (`mar` and `ar`): one dataclass for both.

Every field is a `fmusic train` option (`--model-size`, `--widths 256,256,128,64`, `--generator-types mar,ar,ar`).
Per-level tuples have one entry per level of the hierarchy:

* widths / depths / heads: 4 entries - levels 0, 1, 2 (the transformers over 16x16 patches, 4x4 patches and
  cells) and level 3, the per-cell classifier. Empty or None takes the entry from the `model_size` preset.
* generator_types / num_iter: 3 entries - levels 0, 1, 2 (the final classifier predicts one categorical, it has no
  order and no iterations). For FractalMIDI's spellings (`mar,mar,mar,mar`, `8,4,2,1`) a 4th entry is accepted
  and dropped: it named that final level.

Defaults, and why (measured on the Bach chorales on one CPU thread, docs/BENCHMARKS.md):

* model_size compact (with the generators' train_defaults batch 8, and lr 2e-3 for `mar`): about 0.5-0.7 s per
  step, so 30 minutes make 2,500-3,500 steps; the old default, FractalMIDI's small at batch 32, made about 180.
  `tiny` makes about 2.5 times more steps and samples more in key, but with more sixteenths and fewer pitch
  classes per bar after 15 minutes (docs/BENCHMARKS.md).
* generator_types: empty means the generator's own default, `mar` = mar,mar,ar (an AR cell level trains faster and
  breaks fewer notes than all-MAR at the same budget) and `ar` = ar,ar,ar; checkpoints store the resolved types.
* note_cell_weight 1.0: the plain likelihood. 3 cut the sixteenth-note share of 640-step samples by a third but
  made them too dense and wider in pitch than the data, so it is an option, not the default.
* mask_ratio_min 0.0: as in the fractal paper's code (a normal truncated to [0, 1] in ratio units). `nll` masks
  down to one child in N and the last MAR sampling iterations predict with only ~pi/(2T) of the children still
  masked, so training must visit low ratios too; they are rare with loc 1 / scale 0.5 (3% of draws below 0.1),
  and every item still masks at least one child.
* num_iter 8,16,4: 8 at level 0 as FractalMIDI; 16 at level 1, one 4x4 patch per iteration, so that of two
  neighbouring patches one is always made first and the other sees its edge column (`left_cell` / `right_cell`):
  with those, 8,4,4 left 0.069 of the notes a sixteenth long and 8,16,4 0.050 (chorale MAR, 800 steps; 32,16,4
  0.057, docs/BENCHMARKS.md); 4 (not FractalMIDI's 2) at level 2, where cells predicted in the same iteration can
  break a note. 16 rolls of 128 x 128 at the compact size take about 20 s on one CPU thread. The level-0 count is
  for the whole window: raise it with the width (e.g. 32 for 512 steps) to keep 8 patches per iteration.
* max_crop_length 1024: the widest crop FractalMIDI's guide lists; the level-0 position table costs
  8 x 64 x width parameters (0.13M at small). Wider samples are made in overlapping windows.
* left_cell: the cell classifier sees the cell one time step before its own, at the same pitch, when that cell is
  already made (in training: not masked at any level above; in sampling: generated in an earlier MAR iteration or
  AR step, or known), else an "unknown" token. Without it the first column of a 4x4 patch cannot see the note
  its left neighbour patch holds, and most of the sampled sixteenths were notes broken there (docs/BENCHMARKS.md).
* right_cell: the same for the cell one time step after (a MAR level may make the later patch first; an AR scan
  never has: there it is always "unknown").
* skip_silent: most 16x16 and 4x4 patches of a piano roll are silent (in Bach chorales about 67% and 87%); a
  flag predicted from the patch's conditions stops those at once, in training and sampling.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from fractalmusic.errors import ConfigError
from fractalmusic.generators.base import GridRegion

NUM_LEVELS = 3  # generator levels: 16x16 patches, 4x4 patches, cells; then the cell classifier
GENERATOR_TYPES = ("mar", "ar")
DEFAULT_NUM_ITER = (8, 16, 4)
SCAN_ORDERS = ("row_major", "column_major")

# widths, depths, heads for levels 0, 1, 2 and the cell classifier (level 3)
PRESETS: dict[str, dict[str, tuple[int, ...]]] = {
    # trains on a CPU in seconds: for tests and CI
    "tiny": {"widths": (64, 32, 16, 16), "depths": (1, 1, 1, 1), "heads": (2, 2, 1, 1)},
    # the default: sized so that 30 CPU-minutes make ~2,000-3,000 steps at batch 8 and crop 128 (docs/BENCHMARKS.md)
    "compact": {"widths": (128, 128, 64, 32), "depths": (4, 2, 1, 1), "heads": (4, 2, 1, 1)},
    # FractalMIDI's "small"
    "small": {"widths": (256, 256, 128, 64), "depths": (8, 4, 2, 1), "heads": (4, 2, 1, 1)},
    # FractalMIDI's default ("base")
    "base": {"widths": (512, 256, 128, 64), "depths": (12, 3, 2, 1), "heads": (8, 4, 2, 2)},
    "large": {"widths": (768, 384, 192, 96), "depths": (16, 4, 3, 1), "heads": (12, 6, 3, 2)},
}


@dataclass
class FractalConfig:
    """Hyper-parameters of the fractal MAR/AR generators over piano-roll grids."""

    model_size: str = "compact"  # preset for widths/depths/heads: tiny | compact | small | base | large
    widths: tuple[int, ...] | None = None  # transformer width per level (4: levels 0-2 + cell classifier)
    depths: tuple[int, ...] | None = None  # transformer blocks per level (4)
    heads: tuple[int, ...] | None = None  # attention heads per level (4)
    generator_types: tuple[str, ...] | None = None  # mar|ar per level (3); empty: the generator's default (mar: mar,mar,ar; ar: ar,ar,ar)
    scan_order: str = "row_major"  # AR order on each level's 2-D patch grid: row_major | column_major
    mask_ratio_loc: float = 1.0  # MAR training: mean of the normal the mask ratio is drawn from
    mask_ratio_scale: float = 0.5  # MAR training: its standard deviation (ratio units)
    mask_ratio_min: float = 0.0  # MAR training: the normal is truncated to [mask_ratio_min, 1]
    dropout: float = 0.1  # attention and projection dropout
    max_crop_length: int = 1024  # widest training crop / sampling window (sizes the level-0 position table)
    num_iter: tuple[int, ...] = DEFAULT_NUM_ITER  # MAR sampling iterations per level (3); AR levels ignore theirs
    skip_silent: bool = True  # predict a "silent patch" flag first and skip finer levels for silent patches
    note_cell_weight: float = 1.0  # training only: weight of the cell classifier's loss on sounding cells (1: the likelihood)
    left_cell: bool = True  # the cell classifier also sees the cell before it (same pitch), where already made
    right_cell: bool = True  # ... and the cell after it (same pitch), where already made

    def __post_init__(self):
        if self.model_size not in PRESETS:
            raise ConfigError(f"--model-size must be one of {', '.join(PRESETS)}, not {self.model_size!r}")
        preset = PRESETS[self.model_size]
        for name in ("widths", "depths", "heads"):
            value = getattr(self, name)
            value = tuple(value) if value else None
            if value is not None:
                if len(value) != NUM_LEVELS + 1:
                    raise ConfigError(
                        f"--{name} takes {NUM_LEVELS + 1} comma-separated values (levels 0-2 and the cell "
                        f"classifier), got {len(value)}: {','.join(map(str, value))}"
                    )
                for v in value:
                    if isinstance(v, bool) or not isinstance(v, int):
                        raise ConfigError(f"--{name} must be whole numbers, not {v!r}")
            setattr(self, name, value)
        widths, depths, heads = (getattr(self, n) or preset[n] for n in ("widths", "depths", "heads"))
        for level, (w, d, h) in enumerate(zip(widths, depths, heads)):
            if w < 1 or h < 1:
                raise ConfigError(f"--widths and --heads must be >= 1 (level {level}: width {w}, heads {h})")
            if d < (0 if level == NUM_LEVELS else 1):
                raise ConfigError(f"--depths must be >= 1 (>= 0 for the cell classifier); level {level} has {d}")
            if w % h:
                raise ConfigError(f"level {level}: width {w} is not divisible by its {h} attention heads")
        types = tuple(str(t).strip().lower() for t in self.generator_types) if self.generator_types else None
        if types is not None:
            if len(types) == NUM_LEVELS + 1:
                types = types[:NUM_LEVELS]  # FractalMIDI spelling: the 4th named the final (order-less) level
            if len(types) != NUM_LEVELS:
                raise ConfigError(
                    f"--generator-types takes {NUM_LEVELS} values (levels 0-2, e.g. mar,mar,ar), got {len(types)}"
                )
            for t in types:
                if t not in GENERATOR_TYPES:
                    raise ConfigError(f"--generator-types: {t!r} is not one of {', '.join(GENERATOR_TYPES)}")
        self.generator_types = types
        if self.scan_order not in SCAN_ORDERS:
            raise ConfigError(f"--scan-order must be one of {', '.join(SCAN_ORDERS)}, not {self.scan_order!r}")
        lo = float(self.mask_ratio_min)
        if not (0.0 <= lo <= 1.0):
            raise ConfigError(f"--mask-ratio-min must be in [0, 1], not {self.mask_ratio_min}")
        if not float(self.mask_ratio_scale) >= 0.0:
            raise ConfigError(f"--mask-ratio-scale must be >= 0, not {self.mask_ratio_scale}")
        if not (-1e6 < float(self.mask_ratio_loc) < 1e6):
            raise ConfigError(f"--mask-ratio-loc must be a finite number, not {self.mask_ratio_loc}")
        if not (0.0 <= float(self.dropout) < 1.0):
            raise ConfigError(f"--dropout must be in [0, 1), not {self.dropout}")
        m = self.max_crop_length
        if isinstance(m, bool) or not isinstance(m, int) or m < 16 or m % 16:
            raise ConfigError(f"--max-crop-length must be a positive multiple of 16, not {m!r}")
        self.num_iter = parse_num_iter(self.num_iter, default=DEFAULT_NUM_ITER, option="--num-iter")
        self.skip_silent = bool(self.skip_silent)
        self.left_cell = bool(self.left_cell)
        self.right_cell = bool(self.right_cell)
        w = self.note_cell_weight
        if isinstance(w, bool) or not isinstance(w, (int, float)) or not (0.0 < float(w) < 1e6):
            raise ConfigError(f"--note-cell-weight must be a number > 0, not {w!r}")
        self.note_cell_weight = float(w)

    # ------------------------------------------------------------- resolved values
    def level_widths(self) -> tuple[int, ...]:
        return self.widths or PRESETS[self.model_size]["widths"]

    def level_depths(self) -> tuple[int, ...]:
        return self.depths or PRESETS[self.model_size]["depths"]

    def level_heads(self) -> tuple[int, ...]:
        return self.heads or PRESETS[self.model_size]["heads"]

    def level_types(self, default: tuple[str, ...]) -> tuple[str, ...]:
        return self.generator_types or tuple(default)


def parse_num_iter(value, default: tuple[int, ...] | None, option: str = "num_iter") -> tuple[int, ...]:
    """MAR iterations per level from an int (top level only), a sequence (per level) or a '16,4,4' string.

    Levels not given keep `default` (or must all be given when `default` is None).
    """
    if isinstance(value, str):
        parts = [p.strip() for p in value.split(",") if p.strip()]
    elif isinstance(value, (int,)) and not isinstance(value, bool):
        parts = [value]
    else:
        try:
            parts = list(value)
        except TypeError:
            raise ConfigError(f"{option} must be whole numbers >= 1, not {value!r}") from None
    out = []
    for p in parts:
        try:
            if isinstance(p, bool) or float(p) != int(float(p)):
                raise ValueError
            v = int(float(p))
        except (TypeError, ValueError):
            raise ConfigError(f"{option} must be whole numbers >= 1, not {p!r}") from None
        if v < 1:
            raise ConfigError(f"{option} must be whole numbers >= 1, not {v}")
        out.append(v)
    if len(out) == NUM_LEVELS + 1:
        out = out[:NUM_LEVELS]  # FractalMIDI's num_iter_list names the cell level too, which has no iterations
    if not out or len(out) > NUM_LEVELS:
        raise ConfigError(f"{option} takes 1 to {NUM_LEVELS} values (MAR iterations for levels 0-2)")
    if len(out) < NUM_LEVELS:
        if default is None:
            raise ConfigError(f"{option} takes {NUM_LEVELS} values (MAR iterations for levels 0-2)")
        out += list(default[len(out):])
    return tuple(out)


# ------------------------------------------------------------------------------------------ declared options
@dataclass
class FractalSampleOptions(GridRegion):
    """`fmusic sample` options of the fractal generators: the grid region (infilling) and MAR iterations."""

    num_iter: tuple[int, ...] | None = field(default=None, metadata={
        "help": "Fractal generators: MAR iterations per level (one int for level 0, or a comma list)."})
    note_temperature: float | None = field(default=None, metadata={
        "help": "Fractal generators: temperature of each cell's choice between silence and sound (which pitches "
                "sound); --temperature then sets onset-or-sustain and the silent-patch flags (default: the "
                "checkpoint's recommendation unless --temperature is given, else --temperature)."})

    def __post_init__(self):
        if self.num_iter is not None:
            parse_num_iter(self.num_iter, default=DEFAULT_NUM_ITER, option="--num-iter")
        check_note_temperature(self.note_temperature)


def check_note_temperature(value) -> float | None:
    """`value` as a float in (0, 10], or None; ConfigError otherwise."""
    if value is None:
        return None
    try:
        if isinstance(value, bool):
            raise ValueError
        t = float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"--note-temperature must be a number in (0, 10], not {value!r}") from None
    if not (0.0 < t <= 10.0):
        raise ConfigError(f"--note-temperature must be a number in (0, 10], not {value!r}")
    return t


@dataclass
class FractalEvalOptions:
    """`fmusic evaluate` options of the fractal generators."""

    nll_forward_number: int | None = field(default=None, metadata={
        "help": "Forward passes (random MAR masks) averaged per batch; the NLL of MAR levels is an estimate."})

    def __post_init__(self):
        if self.nll_forward_number is not None and self.nll_forward_number < 1:
            raise ConfigError(f"--nll-forward-number must be at least 1, not {self.nll_forward_number}")
