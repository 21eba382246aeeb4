"""`fmusic plugins`: what is installed, and what failed to load."""
from __future__ import annotations

import json

import click

from fractalmusic import plugins


def _api(info) -> int | None:
    """The plugin API version a loaded plugin declares (None when it did not load)."""
    if info.obj is None:
        return None
    value = getattr(info.obj, "plugin_api_version", 1)
    return value if isinstance(value, int) and not isinstance(value, bool) else None


@click.command("plugins")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def command(as_json: bool):
    """List installed representations and generators with their providing package, its version, the plugin API
    each declares, and their load status (with the reason when one is refused)."""
    infos = plugins.list_plugins(load=True)
    if as_json:
        rows = [
            {
                "name": p.name,
                "kind": p.kind,
                "package": p.dist,
                "version": p.version,
                "target": p.target,
                "status": p.status,
                "error": p.error,
                "plugin_api_version": _api(p),
            }
            for p in infos
        ]
        click.echo(json.dumps({"plugin_api_version": plugins.PLUGIN_API_VERSION,
                               "min_plugin_api_version": plugins.MIN_PLUGIN_API_VERSION, "plugins": rows}, indent=2))
        return
    click.echo(f"plugin API version {plugins.PLUGIN_API_VERSION} (plugins declaring "
               f"{plugins.MIN_PLUGIN_API_VERSION}..{plugins.PLUGIN_API_VERSION} load)")
    if plugins.third_party_disabled():
        click.echo(f"third-party plugins disabled by {plugins.DISABLE_ENV}")
    width = max([len(p.name) for p in infos] + [4])
    for kind in plugins.GROUPS:
        rows = [p for p in infos if p.kind == kind]
        click.echo(f"\n{kind}s:")
        if not rows:
            click.echo("  (none)")
        for p in rows:
            extra = ""
            if p.obj is not None and getattr(p.obj, "kind", None) and kind == "representation":
                extra = f" [{p.obj.kind}]"
            if p.obj is not None and kind == "generator":
                extra = f" [{'/'.join(getattr(p.obj, 'accepts', ()))}]"
            api = _api(p)
            extra += f" API {api}" if api is not None else ""
            line = f"  {p.name:<{width}}  {p.status:<9} {p.dist} {p.version}{extra}"
            if p.error:
                line += f"  -- {p.error}"
            click.echo(line)
    bad = [p for p in infos if p.status in ("error", "duplicate")]
    if bad:
        click.echo(f"\n{len(bad)} plugin(s) unusable; the others work normally.")
