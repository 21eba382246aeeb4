"""`fmusic serve`: the studio, a local web app to sample, hear, see and reshape what checkpoints write.

Needs the `studio` extra: pip install "fractalmusic[studio]" (Starlette, uvicorn, verovio).
"""
from __future__ import annotations

import ipaddress
import secrets
import socket
import threading
import webbrowser

import click

from fractalmusic.errors import ConfigError, FractalMusicError

LOOPBACK_NAMES = {"localhost", "ip6-localhost"}


def is_loopback(host: str) -> bool:
    if host.lower() in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def allowed_host_names(host: str, port: int) -> set[str]:
    """Host header names a loopback studio answers (anything else may be a DNS-rebinding page)."""
    del port  # the port is stripped from the header before comparing
    return {"127.0.0.1", "localhost", "[::1]", host.lower()}


def _check_port(host: str, port: int) -> None:
    family = socket.AF_INET6 if ":" in host.strip("[]") else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host.strip("[]"), port))
        except OSError as exc:
            raise FractalMusicError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None


@click.command("serve")
@click.option("--runs", "runs", multiple=True, type=click.Path(file_okay=False, path_type=str),
              help="Folder searched (recursively) for checkpoints (*.pt); repeatable. Default: ./runs if it exists.")
@click.option("--checkpoint", "checkpoints", multiple=True, type=click.Path(dir_okay=False, path_type=str),
              help="A checkpoint file to offer; repeatable.")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on. Anything but loopback needs --allow-remote.")
@click.option("--port", type=click.IntRange(0, 65535), default=8765, show_default=True)
@click.option("--allow-remote", is_flag=True,
              help="Allow a non-loopback --host; every /api call then needs the token printed at start-up.")
@click.option("--token", default=None, help="Token to require (default: a fresh random one when remote).")
@click.option("--out-dir", default=None,
              help="Folder for the samples of this session (default: a new temporary folder).")
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:N.")
@click.option("--max-upload-mb", type=click.FloatRange(0.01, 1024), default=8.0, show_default=True,
              help="Largest primer file accepted.")
@click.option("--soundfont", type=click.Path(exists=True, dir_okay=False), default=None,
              help="SoundFont (.sf2) for WAV through FluidSynth (default: the built-in synth).")
@click.option("--open", "open_browser", is_flag=True, help="Open the studio in the default web browser.")
def command(runs, checkpoints, host, port, allow_remote, token, out_dir, device, max_upload_mb, soundfont,
            open_browser):
    """Serve the studio: models, sampling, piano rolls, notation, audio and regeneration in the browser.

    \b
      fmusic serve --runs runs                      # every checkpoint under runs/, on http://127.0.0.1:8765/
      fmusic serve --checkpoint best.pt --port 9000 --open
      fmusic serve --runs runs --host 0.0.0.0 --allow-remote     # prints the token every /api call needs
    """
    import os

    try:
        import uvicorn

        from fractalmusic.studio.app import build
    except ImportError as exc:
        raise ConfigError(f"fmusic serve needs the studio extra ({exc.name} is missing): "
                          f"pip install 'fractalmusic[studio]'") from None
    if not runs and not checkpoints:
        if os.path.isdir("runs"):
            runs = ("runs",)
        else:
            raise ConfigError("give checkpoints to serve: --runs DIR (searched recursively) or --checkpoint CKPT")
    remote = not is_loopback(host)
    if remote and not allow_remote:
        raise ConfigError(f"--host {host} would let other machines reach the studio; add --allow-remote to do "
                          f"that (every /api call then needs the token printed at start-up)")
    if token is not None and len(token) < 16:
        raise ConfigError("--token must be at least 16 characters")
    if remote and token is None:
        token = secrets.token_urlsafe(24)
    _check_port(host, port)
    app, studio = build(runs=runs, checkpoints=checkpoints, out_dir=out_dir, device=device, token=token,
                        allowed_hosts=None if remote else allowed_host_names(host, port),
                        max_upload_bytes=int(max_upload_mb * 1024 * 1024), soundfont=soundfont)
    shown = "127.0.0.1" if host in ("0.0.0.0", "::") else host
    shown = f"[{shown}]" if ":" in shown and not shown.startswith("[") else shown
    url = f"http://{shown}:{port}/"
    n = len(studio.catalog.entries())
    click.echo(f"fmusic studio on {url} ({n} checkpoint{'s' if n != 1 else ''}; samples go to {studio.out_dir})")
    if token:
        click.echo(f"token: {token}")
        click.echo(f"open {url}#token={token}")
        url = f"{url}#token={token}"
    click.echo("press Ctrl+C to stop")
    if open_browser:
        threading.Timer(1.0, webbrowser.open, args=(url,)).start()
    uvicorn.run(app, host=host.strip("[]"), port=port, log_level="warning", access_log=False)
