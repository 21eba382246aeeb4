"""Plugin configuration: dataclass fields become command-line options.

A plugin's `Config` is a dataclass. Field `hidden_size: int = 256` becomes `--hidden-size`; a `bool` field becomes a
flag pair `--name/--no-name`; `tuple[int, ...]` or `tuple[str, ...]` fields take comma-separated values
(`--widths 512,256,128,64`). Unknown options are rejected with a suggestion. Values are checked by type here and
by the dataclass's own `__post_init__` (which should raise ConfigError for values out of range).
"""
from __future__ import annotations

import dataclasses
import difflib
import typing
from typing import Any, Sequence

from fractalmusic.errors import ConfigError


def field_types(cls) -> dict[str, Any]:
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls) if f.init}


def option_name(field_name: str) -> str:
    return "--" + field_name.replace("_", "-")


def _scalar(tp) -> Any:
    """The base type of Optional[...] / X | None."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return tp


def _optional(tp) -> bool:
    return type(None) in typing.get_args(tp)


def convert(value: Any, tp, name: str) -> Any:
    """Convert a string (from the command line) or a JSON value into the field's type."""
    if value is None and _optional(tp):
        return None
    base = _scalar(tp)
    if isinstance(value, str) and value.lower() in ("none", "null") and _optional(tp):
        return None
    origin = typing.get_origin(base)
    try:
        if origin in (tuple, list):
            (inner, *rest) = typing.get_args(base) or (str,)
            if isinstance(value, str):
                parts = [p.strip() for p in value.split(",") if p.strip()]
            else:
                parts = list(value)
            items = [convert(p, inner, name) for p in parts]
            return tuple(items) if origin is tuple else items
        if base is bool:
            if isinstance(value, bool):
                return value
            text = str(value).strip().lower()
            if text in ("1", "true", "yes", "on"):
                return True
            if text in ("0", "false", "no", "off"):
                return False
            raise ValueError(value)
        if base is int:
            if isinstance(value, float) and not value.is_integer():
                raise ValueError(value)
            return int(value)
        if base is float:
            return float(value)
        if base is str:
            return str(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{option_name(name)}: {value!r} is not a valid {_type_name(base)}") from None
    return value


def _type_name(tp) -> str:
    origin = typing.get_origin(tp)
    if origin in (tuple, list):
        (inner, *_) = typing.get_args(tp) or (str,)
        return f"comma-separated list of {_type_name(inner)}"
    return getattr(tp, "__name__", str(tp))


def config_to_dict(config) -> dict[str, Any]:
    out = {}
    for f in dataclasses.fields(config):
        v = getattr(config, f.name)
        out[f.name] = list(v) if isinstance(v, tuple) else v
    return out


def config_from_dict(cls, data: dict[str, Any] | None, where: str = "config"):
    """Build `cls` from a dict, converting types; unknown keys are an error (with a suggestion)."""
    data = dict(data or {})
    types = field_types(cls)
    unknown = [k for k in data if k not in types]
    if unknown:
        k = unknown[0]
        raise ConfigError(f"unknown {where} field {k!r}{suggest(k, list(types))}")
    kwargs = {k: convert(v, types[k], k) for k, v in data.items()}
    for f in dataclasses.fields(cls):
        choices = f.metadata.get("choices") if f.metadata else None
        if choices is not None and f.name in kwargs and kwargs[f.name] is not None and kwargs[f.name] not in choices:
            raise ConfigError(f"{option_name(f.name)}: {kwargs[f.name]!r} is not one of "
                              f"{', '.join(map(str, choices))}")
    try:
        return cls(**kwargs)
    except ConfigError:
        raise
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"invalid {where}: {exc}") from None


def suggest(word: str, choices: Sequence[str]) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def parse_options(
    args: Sequence[str],
    targets: dict[str, type],
    aliases: dict[str, str] | None = None,
    known_elsewhere: Sequence[str] = (),
) -> dict[str, dict[str, Any]]:
    """Parse `--name value` / `--name=value` / `--flag` / `--no-flag` tokens against several Config classes.

    `targets` maps a label ("generator", "representation") to its Config class. Returns label -> {field: value}
    with only the options given. `aliases` maps alternative option names (e.g. seed spellings such as
    `--hidden_size`) to canonical ones. `known_elsewhere` lists options handled by the caller, to improve the
    suggestion for a typo.
    """
    aliases = dict(aliases or {})
    owners: dict[str, tuple[str, str, Any]] = {}  # option -> (label, field, type)
    for label, cls in targets.items():
        for name, tp in field_types(cls).items():
            opt = option_name(name)
            owners.setdefault(opt, (label, name, tp))
            if _scalar(tp) is bool:
                owners.setdefault("--no-" + name.replace("_", "-"), (label, name, "neg"))
    out: dict[str, dict[str, Any]] = {label: {} for label in targets}
    i = 0
    args = list(args)
    while i < len(args):
        tok = args[i]
        if not tok.startswith("--"):
            raise ConfigError(f"unexpected argument {tok!r}")
        opt, eq, val = tok.partition("=")
        canon = aliases.get(opt, opt)
        if canon not in owners:
            # seed spellings with underscores map onto the dashed names
            dashed = "--" + canon[2:].replace("_", "-")
            canon = aliases.get(dashed, dashed) if dashed in owners or dashed in aliases else canon
        if canon not in owners:
            choices = list(owners) + list(known_elsewhere)
            raise ConfigError(f"no such option: {opt}{suggest(opt, choices)}")
        label, name, tp = owners[canon]
        if tp == "neg":
            if eq:
                raise ConfigError(f"{opt} takes no value")
            out[label][name] = False
            i += 1
            continue
        if _scalar(tp) is bool and not eq:
            # a bare flag means True; an explicit value may follow only with '='
            out[label][name] = True
            i += 1
            continue
        if not eq:
            if i + 1 >= len(args):
                raise ConfigError(f"option {opt} needs a value")
            val = args[i + 1]
            i += 2
        else:
            i += 1
        out[label][name] = convert(val, tp, name)
    return out


def describe_options(cls) -> list[tuple[str, str, str]]:
    """(option, type, default) rows for help texts."""
    rows = []
    defaults = {f.name: f for f in dataclasses.fields(cls)}
    for name, tp in field_types(cls).items():
        f = defaults[name]
        if f.default is not dataclasses.MISSING:
            default = f.default
        elif f.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
            default = f.default_factory()  # type: ignore[misc]
        else:
            default = "required"
        if isinstance(default, tuple):
            default = ",".join(map(str, default))
        rows.append((option_name(name), _type_name(_scalar(tp)), str(default)))
    return rows


# ------------------------------------------------------------------------------------------ declared options
@dataclasses.dataclass(frozen=True)
class OptionSpec:
    """One plugin-declared option, as the CLI and the studio show it."""

    name: str  # field name, the keyword the plugin receives
    flag: str  # command-line spelling: "--num-iter"
    type: Any  # the field's type (int, float, str, bool, tuple[int, ...], X | None ...)
    type_name: str  # "int", "comma-separated list of int", ...
    default: Any  # the field's default (None when it has none or is a factory)
    help: str = ""
    choices: tuple[Any, ...] | None = None  # from `field(metadata={"choices": (...)})` or a Literal type
    is_flag: bool = False  # bool fields: --name / --no-name
    optional: bool = False  # None is allowed
    legacy: bool = False  # an untyped name from an API 1 `sample_options` / `nll_options` tuple


def field_help(cls) -> dict[str, str]:
    """Help text of a dataclass's fields: `field(metadata={"help": ...})`, else the comment after the field."""
    import inspect
    import re

    out: dict[str, str] = {}
    for f in dataclasses.fields(cls):
        text = f.metadata.get("help") if f.metadata else None
        if text:
            out[f.name] = str(text)
    try:
        source = inspect.getsource(cls)
    except (OSError, TypeError):
        return out
    for line in source.splitlines():
        m = re.match(r"^\s+(\w+)\s*:[^#]*#\s*(.+)$", line)
        if m and m.group(1) not in out:
            out[m.group(1)] = m.group(2).strip()
    return out


def option_specs(cls) -> list[OptionSpec]:
    """The options a dataclass declares (by the same rules as a `Config` -> `fmusic train` options)."""
    if cls is None:
        return []
    helps = field_help(cls)
    types = field_types(cls)
    out = []
    for f in dataclasses.fields(cls):
        if not f.init:
            continue
        tp = types[f.name]
        base = _scalar(tp)
        default = None if f.default is dataclasses.MISSING else f.default
        choices = f.metadata.get("choices") if f.metadata else None
        if choices is None and typing.get_origin(base) is typing.Literal:
            choices = typing.get_args(base)
        out.append(OptionSpec(
            name=f.name, flag=option_name(f.name), type=tp, type_name=_type_name(base), default=default,
            help=helps.get(f.name, ""), choices=None if choices is None else tuple(choices),
            is_flag=base is bool, optional=_optional(tp),
        ))
    return out


def legacy_option_specs(names: Sequence[str], what: str) -> list[OptionSpec]:
    """Specs for an API 1 tuple of option names: untyped, the value read as a number, a comma list or text."""
    return [OptionSpec(name=n, flag=option_name(n), type=Any, type_name="value", default=None,
                       help=f"{what} (a number, a comma list or text)", legacy=True) for n in names]


def convert_loose(text: Any) -> Any:
    """A command-line value for an untyped (API 1) option: '8' -> 8, '0.5' -> 0.5, '8,4' -> (8, 4), else text."""
    if not isinstance(text, str):
        return text
    if "," in text:
        return tuple(convert_loose(p.strip()) for p in text.split(",") if p.strip())
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    lowered = text.strip().lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    if lowered in ("none", "null"):
        return None
    return text


def parse_declared(args: Sequence[str], specs: Sequence[OptionSpec]) -> dict[str, Any]:
    """Parse `--flag value` tokens against declared options; returns {field: value} for the options given."""
    by_flag: dict[str, tuple[OptionSpec, bool]] = {}
    for s in specs:
        by_flag[s.flag] = (s, True)
        if s.is_flag:
            by_flag["--no-" + s.flag[2:]] = (s, False)
    out: dict[str, Any] = {}
    args = list(args)
    i = 0
    while i < len(args):
        tok = args[i]
        opt, eq, val = tok.partition("=")
        canon = "--" + opt[2:].replace("_", "-") if opt.startswith("--") else opt
        if canon not in by_flag:
            raise ConfigError(f"no such option: {opt}{suggest(opt, list(by_flag))}")
        spec, positive = by_flag[canon]
        if spec.is_flag and not eq:
            out[spec.name] = positive
            i += 1
            continue
        if not positive:
            raise ConfigError(f"{opt} takes no value")
        if not eq:
            if i + 1 >= len(args):
                raise ConfigError(f"option {opt} needs a value")
            val = args[i + 1]
            i += 2
        else:
            i += 1
        out[spec.name] = convert_loose(val) if spec.legacy else convert(val, spec.type, spec.name)
    return out


def check_declared(cls, values: dict[str, Any], where: str) -> dict[str, Any]:
    """Validate given values by building the dataclass (its `__post_init__` checks ranges); returns them as given."""
    if cls is None or not values:
        return dict(values)
    config_from_dict(cls, values, where=where)
    return dict(values)


# Option names that belong to the trainer, the data layer or the commands: a plugin may not declare them.
SAMPLE_COMMON = ("n", "num_samples", "length", "target_width", "primer", "mask", "temperature", "top_k", "top_p",
                 "greedy", "seed", "strip_primer", "to", "formats", "out_dir", "soundfont", "device", "help")
EVAL_COMMON = ("generated", "reference", "json", "png", "batch_size", "max_batches", "device", "seed",
               "max_set_pieces", "copy_threshold", "help", "batch")
TRAIN_COMMAND = ("repr", "representation", "generator", "model_type", "vocab_type", "help")


def _reserved_train_options() -> dict[str, str]:
    from fractalmusic.data.config import DataConfig
    from fractalmusic.training.config import TrainConfig

    out = {name: "fmusic train" for name in TRAIN_COMMAND}
    out.update({f.name: "the data layer" for f in dataclasses.fields(DataConfig)})
    out.update({f.name: "the trainer" for f in dataclasses.fields(TrainConfig)})
    return out


def _fields_of(cls) -> list[str]:
    if cls is None:
        return []
    if not dataclasses.is_dataclass(cls):
        raise TypeError("not a dataclass")
    return [f.name for f in dataclasses.fields(cls)]


def check_plugin_options(cls, kind: str) -> str | None:
    """Why a plugin class's declared options cannot be used (a collision, a bad declaration), or None."""
    reserved_train = _reserved_train_options()
    try:
        config_fields = _fields_of(getattr(cls, "Config", None))
    except TypeError:
        return f"{cls.__qualname__}.Config must be a dataclass"
    for name in config_fields:
        if name in reserved_train:
            return (f"Config field {name!r} is also an option of {reserved_train[name]} "
                    f"({option_name(name)}); rename the field")
    if kind != "generator":
        return None
    from fractalmusic.generators.base import GridRegion

    region = {f.name for f in dataclasses.fields(GridRegion)}
    sample_cls = getattr(cls, "SampleOptions", None)
    eval_cls = getattr(cls, "EvalOptions", None)
    try:
        declared_sample = _fields_of(sample_cls)
        declared_eval = _fields_of(eval_cls)
    except TypeError:
        return f"{cls.__qualname__}.SampleOptions and .EvalOptions must be dataclasses (or None)"
    legacy_sample = [n for n in getattr(cls, "sample_options", ()) if n not in declared_sample]
    legacy_eval = [n for n in getattr(cls, "nll_options", ()) if n not in declared_eval]
    for name in list(declared_sample) + legacy_sample:
        if name in SAMPLE_COMMON:
            return f"sampling option {name!r} is also an option of fmusic sample ({option_name(name)}); rename it"
        if name in region and not (sample_cls is not None and issubclass(sample_cls, GridRegion)):
            return (f"sampling option {name!r} is the grid region option of fmusic sample; inherit "
                    f"fractalmusic.plugin.GridRegion to declare it")
    data_fields = {k for k, v in reserved_train.items() if v == "the data layer"}
    for name in list(declared_eval) + legacy_eval:
        if name in EVAL_COMMON or name in data_fields:
            return f"evaluation option {name!r} is also an option of fmusic evaluate ({option_name(name)}); rename it"
    defaults = getattr(cls, "train_defaults", {}) or {}
    if not isinstance(defaults, dict):
        return "train_defaults must be a dict of trainer options"
    from fractalmusic.training.config import TrainConfig

    types = field_types(TrainConfig)
    for key, value in defaults.items():
        if key not in types:
            return f"train_defaults names {key!r}, which is not a trainer option{suggest(str(key), list(types))}"
        try:
            convert(value, types[key], key)
        except ConfigError as exc:
            return f"train_defaults: {exc}"
    return None


def check_config_pair(rep_cls, gen_cls) -> None:
    """A representation and a generator whose Config fields share a name would both take one option: refused."""
    rep_fields = set(_fields_of(getattr(rep_cls, "Config", None)))
    for name in _fields_of(getattr(gen_cls, "Config", None)):
        if name in rep_fields:
            raise ConfigError(
                f"{option_name(name)} is an option of both the {rep_cls.name} representation and the {gen_cls.name} "
                f"generator; one of the plugins must rename its Config field")


def check_pitch_shift(representation, data_config) -> None:
    """A pitch shift asked of a representation that cannot transpose would train unshifted: refused."""
    low, high = int(data_config.pitch_shift_min), int(data_config.pitch_shift_max)
    if (low, high) != (0, 0) and not getattr(representation, "can_transpose", True):
        raise ConfigError(
            f"--pitch-shift-min/--pitch-shift-max: the {representation.name} representation cannot transpose "
            f"(it does not implement transpose), so training would be unshifted; drop the pitch shift")
