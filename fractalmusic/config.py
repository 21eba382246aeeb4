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
