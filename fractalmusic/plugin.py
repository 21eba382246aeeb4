"""The one import path for plugin authors: everything a representation or generator plugin needs.

    from fractalmusic.plugin import Generator, TokenGenerator, Representation, RepresentationSpec, Piece, option

Nothing a plugin needs lives only in a private module: import from here, and a later fractalmusic keeps these names
working for as long as it serves your plugin's declared API version (`plugin_api_version`, a class attribute;
default 1). A release serves a range of API versions (`MIN_PLUGIN_API_VERSION`..`PLUGIN_API_VERSION`, now 1..2); a
plugin declaring a version outside it is refused at load time with one line naming both versions, and
`fmusic plugins` shows why. Declare the lowest version whose features you use.

Plugin API 1 (the contract of fractalmusic 0.1; every plugin written against it keeps working unchanged)
------------------------------------------------------------------------------------------------------------
Registration: an entry point in group ``fractalmusic.representations`` or ``fractalmusic.generators`` whose name
equals the class's `name` (a mismatch is refused); `package:name` selects one of several packages offering a name.

Representation (subclass `Representation`):
  * class attributes `name`, `kind` ("tokens" | "grid"), `Config` (a dataclass: its fields become `fmusic train`
    options), `uses_abc_text`; instance attributes `pad_id`, `bos_id`, `eos_id`; property `vocab_size`;
  * `__init__(config=None, **overrides)`; `fit(pieces)`, `is_fitted`; `encode(piece) -> int64 array` (tokens:
    ``[bos, ..., eos]``; grids ``[128, T]``); `decode(array) -> Piece` that never raises (repairs counted in
    ``piece.meta["repairs"]``); `transpose(array, semitones) -> (array, dropped) | None`; `text_to_array`,
    `array_to_text` (token representations with a text form);
  * `state_dict()` (JSON-able, ``{"config": ..., plus what fit learnt}``), `load_state(state)` (restores what fit
    learnt; `from_state_dict` calls it after building the config), `fingerprint()`, `spec() -> RepresentationSpec`.
Generator (subclass `Generator`, an ``nn.Module``):
  * class attributes `name`, `accepts` (representation kinds), `Config`, `train_defaults` (trainer options it
    trains best with; keys must be `fmusic train` options), `sample_options` (names of extra `sample` keywords),
    `nll_options` (names of extra `nll` keywords), `ddp_find_unused_parameters`;
  * `__init__(config, spec)`, `build(config_dict, spec)`, `config_dict()`; `loss(batch) -> {"loss", "n",
    **metrics}`; `nll(batch, **options) -> {"nll_sum", "n"}`; `sample(n, length, primer, mask, temperature, top_k,
    top_p, greedy, seed, **options) -> int64 array`; `set_grad_checkpointing(bool)`; `check_sample_options`.
    Batch and sample semantics: the docstring of `fractalmusic.generators.base`.
Shared: `Piece` (notes, tempo map, time signatures, key, title, abc, meta), `make_notes`, `NOTE_DTYPE`; the errors
(`FractalMusicError` and kinds: raise them for bad input; the CLI prints one line); the sampling helpers
(`check_options`, `filter_logits`, `probabilities`, `make_generator`, `draw`, `apply_temperature`,
`top_k_filter`, `top_p_filter`); `config_from_dict`, `config_to_dict`; `register`/`unregister` for run-time
registration (notebooks, tests); `PLUGIN_API_VERSION`.
Config -> CLI rules: field `hidden_size: int = 256` is `--hidden-size`; a bool is `--name/--no-name`; `tuple[int,
...]` takes `512,256`; `X | None` accepts `none`; help is `field(metadata={"help": ...})` or the comment after the
field; `__post_init__` raises `ConfigError` for values out of range. A field named like a trainer or data option
(`seed`, `crop_length`, `lr` ...) is refused at load time.

Plugin API 2 (adds, never removes)
----------------------------------
  * `TokenGenerator` (fractalmusic.generators.token): implement `init_state` and `step`; the base gives `loss`,
    `nll` and `sample`. `Generator.draw_samples`: the base `sample` checks the arguments, seeds and switches to
    eval mode, then calls it.
  * Declared command-line surface: `Generator.SampleOptions` (a dataclass: its fields become `fmusic sample`
    options, passed to `sample` by field name) and `Generator.EvalOptions` (`fmusic evaluate` options, passed to
    `nll`), by the Config -> CLI rules; `option(...)` declares a field with help and choices; `option_specs(cls)`
    lists them as `OptionSpec` rows (what the CLI and the studio build their controls from). `GridRegion`: the
    region options every grid model gets (`--mask-start` ...), which a `SampleOptions` may inherit. Names used by
    the commands themselves (`SAMPLE_COMMON`, `EVAL_COMMON`) are refused.
  * `Representation.output_formats` + `write_output(piece, path, fmt)` (formats it writes itself, e.g. "txt"),
    `default_output_formats`; `input_suffixes` + `read_file(path) -> list[Piece]` (files it reads itself);
    `can_transpose`.
  * State versions: `state_version` (class attribute, default 1) on both kinds; a checkpoint written with an older
    version goes through the classmethod `upgrade_state(state, from_version)` when loaded (representation: its
    `state_dict()`; generator: ``{"config": config_dict, "model": weights}``); a newer one is refused.
  * Checkpoints record each plugin's entry-point name, providing package and its version; `Checkpoint` reads them.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Sequence

from fractalmusic.config import (
    EVAL_COMMON,
    SAMPLE_COMMON,
    OptionSpec,
    config_from_dict,
    config_to_dict,
    option_specs,
)
from fractalmusic.errors import (
    CheckpointError,
    ConfigError,
    DataError,
    FractalMusicError,
    PieceReadError,
    PluginError,
)
from fractalmusic.generators.base import Generator, GridRegion
from fractalmusic.piece import NOTE_DTYPE, Piece, make_notes
from fractalmusic.plugins import MIN_PLUGIN_API_VERSION, PLUGIN_API_VERSION, register, unregister
from fractalmusic.representations.base import Representation, RepresentationSpec
from fractalmusic.sampling import (
    apply_temperature,
    check_options,
    draw,
    filter_logits,
    make_generator,
    probabilities,
    top_k_filter,
    top_p_filter,
)

try:  # API 2; the module is fractalmusic.generators.token
    from fractalmusic.generators.token import TokenGenerator
except ImportError:  # pragma: no cover - only while the token base is absent from a partial install
    TokenGenerator = None  # type: ignore[assignment,misc]


def option(default: Any = None, *, help: str = "", choices: Sequence[Any] | None = None) -> Any:
    """A dataclass field for a `Config`, `SampleOptions` or `EvalOptions` with its help text and allowed values.

        @dataclass
        class SampleOptions:
            beam: int | None = option(None, help="Beam width (default: sampling).")
            mode: str = option("fast", help="Decoding mode.", choices=("fast", "exact"))
    """
    metadata: dict[str, Any] = {}
    if help:
        metadata["help"] = help
    if choices is not None:
        metadata["choices"] = tuple(choices)
    if isinstance(default, (list, dict, set)):
        value = default
        return dataclasses.field(default_factory=lambda: type(value)(value), metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


__all__ = [
    "CheckpointError",
    "ConfigError",
    "DataError",
    "EVAL_COMMON",
    "FractalMusicError",
    "Generator",
    "GridRegion",
    "MIN_PLUGIN_API_VERSION",
    "NOTE_DTYPE",
    "OptionSpec",
    "PLUGIN_API_VERSION",
    "Piece",
    "PieceReadError",
    "PluginError",
    "Representation",
    "RepresentationSpec",
    "SAMPLE_COMMON",
    "TokenGenerator",
    "apply_temperature",
    "check_options",
    "config_from_dict",
    "config_to_dict",
    "draw",
    "filter_logits",
    "make_generator",
    "make_notes",
    "option",
    "option_specs",
    "probabilities",
    "register",
    "top_k_filter",
    "top_p_filter",
    "unregister",
]
