"""`fmusic plugins`: what is installed, and what failed to load."""
from __future__ import annotations

import json

import click

from fractalmusic import plugins


@click.command("plugins")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def command(as_json: bool):
    """List installed representations and generators with their providing package and load status."""
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
            }
            for p in infos
        ]
        click.echo(json.dumps({"plugin_api_version": plugins.PLUGIN_API_VERSION, "plugins": rows}, indent=2))
        return
    click.echo(f"plugin API version {plugins.PLUGIN_API_VERSION}")
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
            line = f"  {p.name:<{width}}  {p.status:<9} {p.dist} {p.version}{extra}"
            if p.error:
                line += f"  -- {p.error}"
            click.echo(line)
    bad = [p for p in infos if p.status in ("error", "duplicate")]
    if bad:
        click.echo(f"\n{len(bad)} plugin(s) unusable; the others work normally.")
