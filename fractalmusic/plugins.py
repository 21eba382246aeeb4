"""Plugin registry: representations and generators found through Python entry points.

The built-in plugins are registered in fractalmusic's own pyproject.toml exactly like a third party's. Discovery is
lazy: `get_representation("abc")` imports only the module behind that name. A plugin that fails to import is
reported by `fmusic plugins` and breaks nothing else; selecting it by name raises a PluginError that says why.
Two distributions offering one name are both reported, and selecting that name asks for `package:name`.

Checks made when a plugin class is loaded (`check_plugin`), each failing with one line that `fmusic plugins` shows:
it subclasses the right base; its `name` equals its entry-point name; it declares a plugin API this release serves
(`MIN_PLUGIN_API_VERSION`..`PLUGIN_API_VERSION`); its `Config`/`SampleOptions`/`EvalOptions` fields do not collide
with the trainer's, the data layer's or the commands' own options; its `train_defaults` name trainer options.
`provenance(cls)` says which distribution, version and entry point a loaded class came from (checkpoints record it).
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any

from fractalmusic.errors import PluginError

# The plugin API this release serves: plugins declaring MIN_PLUGIN_API_VERSION..PLUGIN_API_VERSION load; others are
# refused with one line naming both versions. What each version contains: the docstring of fractalmusic.plugin.
PLUGIN_API_VERSION = 2
MIN_PLUGIN_API_VERSION = 1  # versions below this are retired

GROUPS = {
    "representation": "fractalmusic.representations",
    "generator": "fractalmusic.generators",
}
BUILTIN_DIST = "fractalmusic"
DISABLE_ENV = "FRACTALMUSIC_DISABLE_PLUGINS"

RUNTIME_DIST = "<runtime>"

# Plugins registered at run time (notebooks, tests): kind -> name -> class
_RUNTIME: dict[str, dict[str, Any]] = {"representation": {}, "generator": {}}
# Where each loaded class came from: id(class) -> (class, kind, entry-point name, distribution, version); the class
# is kept so that its id is never reused by another
_PROVENANCE: dict[int, tuple[Any, str, str, str, str]] = {}


@dataclass
class PluginInfo:
    name: str
    kind: str  # "representation" | "generator"
    target: str  # "module:attr"
    dist: str  # providing distribution
    version: str
    status: str = "not loaded"  # "ok" | "error" | "duplicate" | "disabled" | "not loaded"
    error: str | None = None
    obj: Any = field(default=None, repr=False)
    entry_point: Any = field(default=None, repr=False)

    @property
    def qualified(self) -> str:
        return f"{self.dist}:{self.name}"


def third_party_disabled() -> bool:
    return os.environ.get(DISABLE_ENV, "").strip().lower() not in ("", "0", "false", "no")


def _dist_of(ep) -> tuple[str, str]:
    dist = getattr(ep, "dist", None)
    if dist is None:
        return "?", "?"
    name = dist.metadata["Name"] if dist.metadata else getattr(dist, "name", "?")
    return str(name), str(dist.version)


def _normalise(dist: str) -> str:
    return dist.lower().replace("_", "-")


def discover(kind: str) -> list[PluginInfo]:
    """Every plugin of one kind, not yet loaded (cheap: reads metadata only)."""
    if kind not in GROUPS:
        raise ValueError(f"unknown plugin kind {kind!r}")
    found: list[PluginInfo] = []
    seen: set[tuple[str, str]] = set()
    for ep in metadata.entry_points(group=GROUPS[kind]):
        dist, version = _dist_of(ep)
        key = (_normalise(dist), ep.name)
        if key in seen:  # the same distribution visible twice on sys.path (e.g. editable + build dir)
            continue
        seen.add(key)
        info = PluginInfo(ep.name, kind, ep.value, dist, version, entry_point=ep)
        if third_party_disabled() and _normalise(dist) != BUILTIN_DIST:
            info.status = "disabled"
            info.error = f"third-party plugins are turned off by {DISABLE_ENV}"
        found.append(info)
    for name, obj in _RUNTIME[kind].items():
        found.append(PluginInfo(name, kind, f"{obj.__module__}:{obj.__qualname__}", RUNTIME_DIST, "-", "ok", obj=obj))
        _PROVENANCE[id(obj)] = (obj, kind, name, RUNTIME_DIST, "-")
    names = [p.name for p in found if p.status != "disabled"]
    for p in found:
        if p.status != "disabled" and names.count(p.name) > 1:
            p.status = "duplicate"
            others = [q.dist for q in found if q.name == p.name and q is not p and q.status != "disabled"]
            p.error = f"name also provided by {', '.join(others)}; select one as package:name"
    return found


def _base_class(kind: str):
    if kind == "representation":
        from fractalmusic.representations.base import Representation

        return Representation
    from fractalmusic.generators.base import Generator

    return Generator


def _load(info: PluginInfo) -> PluginInfo:
    if info.obj is not None or info.status == "disabled":
        return info
    try:
        obj = info.entry_point.load()
    except BaseException as exc:  # a broken plugin must never take the program down
        if isinstance(exc, KeyboardInterrupt):
            raise
        info.error = f"{type(exc).__name__}: {exc}".strip().splitlines()[0]
        if info.status != "duplicate":
            info.status = "error"
        return info
    problem = check_plugin(obj, info.kind, entry_name=info.name)
    if problem:
        info.error = problem
        if info.status != "duplicate":
            info.status = "error"
        return info
    info.obj = obj
    _PROVENANCE[id(obj)] = (obj, info.kind, info.name, info.dist, info.version)
    if info.status != "duplicate":
        info.status = "ok"
    return info


def check_api_version(obj) -> str | None:
    """Why `obj`'s declared `plugin_api_version` cannot be served here, or None."""
    declared = getattr(obj, "plugin_api_version", 1)
    if isinstance(declared, bool) or not isinstance(declared, int):
        return (f"declares plugin_api_version {declared!r}, not a whole number; this fractalmusic serves plugin API "
                f"{MIN_PLUGIN_API_VERSION}..{PLUGIN_API_VERSION}")
    if declared > PLUGIN_API_VERSION:
        return (f"needs plugin API {declared}, this fractalmusic provides {PLUGIN_API_VERSION}; upgrade fractalmusic")
    if declared < MIN_PLUGIN_API_VERSION:
        return (f"was written for plugin API {declared}, which is retired; this fractalmusic serves "
                f"{MIN_PLUGIN_API_VERSION}..{PLUGIN_API_VERSION}; upgrade the plugin")
    return None


def check_plugin(obj, kind: str, entry_name: str | None = None) -> str | None:
    """Why `obj` cannot serve as a plugin of `kind` (registered as `entry_name`), or None if it can."""
    base = _base_class(kind)
    if not (isinstance(obj, type) and issubclass(obj, base)):
        return f"{obj!r} is not a subclass of {base.__module__}.{base.__name__}"
    problem = check_api_version(obj)
    if problem:
        return problem
    declared = getattr(obj, "name", "")
    if entry_name is not None and declared != entry_name:
        return (f"class {obj.__module__}.{obj.__qualname__} is named {declared!r} but registered as {entry_name!r}; "
                f"the class's name and its entry point must match")
    from fractalmusic.config import check_plugin_options

    return check_plugin_options(obj, kind)


def provenance(cls) -> dict[str, str] | None:
    """{"kind", "entry_point", "dist", "version"} of a class loaded through the registry; None if it was not."""
    found = _PROVENANCE.get(id(cls))
    if found is None or found[0] is not cls:
        return None
    _, kind, name, dist, version = found
    return {"kind": kind, "entry_point": name, "dist": dist, "version": version}


def list_plugins(load: bool = True) -> list[PluginInfo]:
    out: list[PluginInfo] = []
    for kind in GROUPS:
        for info in discover(kind):
            out.append(_load(info) if load else info)
    return out


def names(kind: str) -> list[str]:
    return sorted({p.name for p in discover(kind) if p.status != "disabled"})


def get(kind: str, name: str):
    """The class registered as `name` (or `package:name`) for `kind`; a PluginError says why not."""
    wanted_dist = None
    if ":" in name:
        wanted_dist, name = name.split(":", 1)
    candidates = [p for p in discover(kind) if p.name == name]
    if wanted_dist is not None:
        candidates = [p for p in candidates if _normalise(p.dist) == _normalise(wanted_dist)]
    if not candidates:
        available = ", ".join(names(kind)) or "none"
        import difflib

        close = difflib.get_close_matches(name, names(kind), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise PluginError(f"no {kind} plugin named {name!r}{hint}; installed: {available}")
    active = [p for p in candidates if p.status != "disabled"]
    if not active:
        raise PluginError(f"{kind} plugin {name!r} from {candidates[0].dist} is disabled: {candidates[0].error}")
    if len(active) > 1:
        provs = ", ".join(p.dist for p in active)
        raise PluginError(
            f"{kind} name {name!r} is provided by several packages ({provs}); select one as package:{name}"
        )
    info = _load(active[0])
    if info.obj is None:
        raise PluginError(f"{kind} plugin {name!r} from {info.dist} {info.version} failed to load: {info.error}")
    return info.obj


def get_representation(name: str):
    return get("representation", name)


def get_generator(name: str):
    return get("generator", name)


def register(kind: str, name: str, cls) -> None:
    """Register a plugin class at run time (for notebooks and tests); entry points are the normal way."""
    problem = check_plugin(cls, kind, entry_name=name)
    if problem:
        raise PluginError(problem)
    _RUNTIME[kind][name] = cls
    _PROVENANCE[id(cls)] = (cls, kind, name, RUNTIME_DIST, "-")


def unregister(kind: str, name: str) -> None:
    cls = _RUNTIME[kind].pop(name, None)
    if cls is not None:
        _PROVENANCE.pop(id(cls), None)
