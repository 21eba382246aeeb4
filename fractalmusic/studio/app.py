"""The studio's web app (Starlette): the page, its two assets and the JSON API under /api.

Safety: the page and the API answer only the Host names of the address it listens on (a web page elsewhere cannot
reach a loopback studio through DNS rebinding); with a token (set whenever it listens beyond loopback) every /api
call must carry it; POST bodies must be JSON (or raw bytes with an X-Filename header for primers), which browsers
do not send across sites without asking; files are served only by the ids of samples this session wrote; every
refusal is a JSON object {"error": "one line"} with a 4xx status.
"""
from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import secrets
from pathlib import Path
from typing import Any, Callable

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Route

from fractalmusic.errors import FractalMusicError
from fractalmusic.studio.catalog import Catalog, read_curve, run_dir_of
from fractalmusic.studio.engine import BadRequest, Studio

STATIC_DIR = Path(__file__).resolve().parent / "static"
ASSETS = {"studio.js": "text/javascript; charset=utf-8", "studio.css": "text/css; charset=utf-8"}
MAX_JSON_BYTES = 256 * 1024
DEFAULT_MAX_UPLOAD = 8 * 1024 * 1024
SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data: blob:; media-src 'self' blob:; "
                               "style-src 'self' 'unsafe-inline'; script-src 'self'; connect-src 'self'; "
                               "frame-ancestors 'none'",
}


def error(message: str, status: int = 400) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers=SECURITY_HEADERS)


def ok(data: Any, status: int = 200) -> JSONResponse:
    return JSONResponse(data, status_code=status, headers=SECURITY_HEADERS)


def endpoint(func: Callable) -> Callable:
    """Every failure becomes {"error": ...}: BadRequest with its status, user errors 400, bugs 500 (one line)."""

    @functools.wraps(func)
    async def wrapper(request: Request):
        try:
            return await func(request)
        except BadRequest as exc:
            return error(str(exc), exc.status)
        except FractalMusicError as exc:
            return error(str(exc), 400)
        except Exception as exc:  # a bug: one line for the page, no traceback
            first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else ""
            return error(f"internal error {type(exc).__name__}: {first}", 500)

    return wrapper


def _host_name(header: str) -> str:
    header = header.strip().lower()
    if header.startswith("["):  # [::1]:8765
        return header[: header.find("]") + 1] if "]" in header else header
    return header.rsplit(":", 1)[0] if header.count(":") == 1 else header


class Guard:
    """ASGI middleware: Host check, token check on /api, security headers on refusals."""

    def __init__(self, app, token: str | None, allowed_hosts: set[str] | None):
        self.app = app
        self.token = token
        self.allowed_hosts = allowed_hosts

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        if self.allowed_hosts is not None and _host_name(headers.get("host", "")) not in self.allowed_hosts:
            return await error("this studio answers only requests addressed to its own host name", 403)(
                scope, receive, send)
        path = scope.get("path", "")
        if scope.get("method") == "POST" and path.startswith("/api"):
            # only bodies a cross-site form cannot send without the browser asking first (no CORS here)
            ctype = headers.get("content-type", "").split(";")[0].strip().lower()
            if ctype != "application/json" and "x-filename" not in headers:
                return await error("POST bodies must be JSON (Content-Type: application/json), or a primer file "
                                   "with an X-Filename header", 415)(scope, receive, send)
        if self.token and path.startswith("/api"):
            given = headers.get("x-studio-token", "")
            auth = headers.get("authorization", "")
            if not given and auth.lower().startswith("bearer "):
                given = auth[7:].strip()
            if not given:
                from urllib.parse import parse_qs

                query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
                given = (query.get("token") or [""])[0]
            if not given or not secrets.compare_digest(given.encode(), self.token.encode()):
                return await error("this studio needs its token (printed when it started): send it as the "
                                   "X-Studio-Token header or ?token=", 401)(scope, receive, send)
        return await self.app(scope, receive, send)


async def read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            if int(declared) > limit:
                raise BadRequest(f"the request body is larger than the limit of {limit} bytes", 413)
        except ValueError:
            raise BadRequest("bad Content-Length header") from None
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise BadRequest(f"the request body is larger than the limit of {limit} bytes", 413)
        chunks.append(chunk)
    return b"".join(chunks)


async def read_json(request: Request) -> Any:
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype != "application/json":
        raise BadRequest("send the request body as JSON (Content-Type: application/json)", 415)
    raw = await read_body(request, MAX_JSON_BYTES)
    if not raw.strip():
        raise BadRequest("the request body is empty; send a JSON object")
    try:
        return json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise BadRequest("the request body is not UTF-8 text") from None
    except RecursionError:
        raise BadRequest("the JSON body is nested too deeply") from None
    except ValueError as exc:
        raise BadRequest(f"malformed JSON: {getattr(exc, 'msg', str(exc))} at character "
                         f"{getattr(exc, 'pos', '?')}") from None


def create_app(studio: Studio, token: str | None = None, allowed_hosts: set[str] | None = None,
               max_upload_bytes: int = DEFAULT_MAX_UPLOAD) -> Starlette:
    """The ASGI app for a `Studio`. `allowed_hosts=None` accepts any Host header (remote mode, with a token)."""

    async def page(request: Request):
        return FileResponse(STATIC_DIR / "index.html", media_type="text/html; charset=utf-8",
                            headers={**SECURITY_HEADERS, "Cache-Control": "no-store"})

    async def asset(request: Request):
        name = request.path_params["name"]
        if name not in ASSETS:
            return error(f"no asset {name!r}", 404)
        return FileResponse(STATIC_DIR / name, media_type=ASSETS[name],
                            headers={**SECURITY_HEADERS, "Cache-Control": "no-store"})

    @endpoint
    async def checkpoints(request: Request):
        def cards():
            return [studio.catalog.card(e) for e in studio.catalog.entries()]

        return ok({"checkpoints": await asyncio.to_thread(cards)})

    @endpoint
    async def curve(request: Request):
        entry = studio._entry(request.path_params["cid"])
        metrics = run_dir_of(entry.path) / "metrics.jsonl"
        card = await asyncio.to_thread(studio.catalog.card, entry)
        if not metrics.is_file():
            return error("this checkpoint's run folder has no metrics.jsonl", 404)
        points = await asyncio.to_thread(read_curve, metrics)
        return ok({"id": entry.id, "training": card.get("training", False), "unit": "bits", **points})

    async def _answer(job, wait: bool):
        if not wait:
            return ok({"job": job.to_json(studio.position(job))}, 202)
        while not job.done_event.is_set():
            await asyncio.sleep(0.05)
        if job.status == "error":
            return error(job.error or "sampling failed", getattr(job, "error_status", 400))
        if job.status == "cancelled":
            return error("the request was cancelled", 409)
        samples = [studio.samples[s].to_json() for s in job.samples]
        return ok({"job": job.to_json(), "sample_ids": job.samples, "samples": samples})

    def _wait_flag(body: Any) -> bool:
        value = body.get("wait", True) if isinstance(body, dict) else True
        if not isinstance(value, bool):
            raise BadRequest(f"wait must be true or false, not {value!r}")
        return value

    def job_endpoint(make_job: Callable) -> Callable:
        """POST a JSON body, queue the job `make_job(body)` makes, answer when done (or at once with wait false)."""

        @endpoint
        async def queue(request: Request):
            body = await read_json(request)
            wait = _wait_flag(body)
            job = await asyncio.to_thread(make_job, body)
            return await _answer(job, wait)

        return queue

    sample = job_endpoint(studio.sample_job)
    regenerate = job_endpoint(studio.regenerate_job)
    variations = job_endpoint(studio.variations_job)

    @endpoint
    async def jobs(request: Request):
        return ok({"jobs": [j.to_json(studio.position(j)) for j in list(studio.jobs.values())]})

    @endpoint
    async def job(request: Request):
        j = studio.get_job(request.path_params["jid"])
        return ok(j.to_json(studio.position(j)))

    @endpoint
    async def cancel(request: Request):
        j = studio.cancel(request.path_params["jid"])
        return ok(j.to_json(studio.position(j)))

    @endpoint
    async def samples(request: Request):
        return ok({"samples": [s.to_json() for s in list(studio.samples.values())]})

    @endpoint
    async def one_sample(request: Request):
        return ok(studio.get_sample(request.path_params["sid"]).to_json())

    @endpoint
    async def roll(request: Request):
        s = studio.get_sample(request.path_params["sid"])
        return ok(await asyncio.to_thread(studio.roll, s))

    @endpoint
    async def notation(request: Request):
        s = studio.get_sample(request.path_params["sid"])
        svg = await asyncio.to_thread(studio.notation_svg, s)
        return Response(svg, media_type="image/svg+xml",
                        headers={**SECURITY_HEADERS, "Content-Security-Policy": "default-src 'none'; style-src "
                                 "'unsafe-inline'"})

    @endpoint
    async def upload(request: Request):
        name = request.headers.get("x-filename") or request.query_params.get("name") or ""
        if not name:
            raise BadRequest("name the primer file: X-Filename header (e.g. tune.mid)")
        if len(name) > 255 or "/" in name or "\\" in name or "\x00" in name:
            raise BadRequest("X-Filename must be a plain file name")
        data = await read_body(request, max_upload_bytes)
        uid, path = await asyncio.to_thread(studio.add_upload, name, data)
        return ok({"primer_upload": uid, "name": name, "bytes": len(data)}, 201)

    @endpoint
    async def files(request: Request):
        sid = request.path_params["sid"]
        name = request.path_params["name"]
        s = studio.samples.get(sid)
        if s is None or name not in s.files.values():
            return error("no such file: the studio serves only the files of this session's samples "
                         "(see GET /api/samples)", 404)
        path = s.dir / name
        if not path.is_file():
            return error("that file is gone from the samples folder", 404)
        return FileResponse(path, headers=SECURITY_HEADERS, filename=name if request.query_params.get(
            "download") else None)

    async def api_missing(request: Request):
        from starlette.routing import Match

        for route in routes[:-1]:
            if route.matches(request.scope)[0] == Match.PARTIAL:  # the path exists, with other methods
                return error(f"{request.method} is not allowed on {request.url.path}", 405)
        return error(f"no API endpoint {request.method} {request.url.path} (see docs/STUDIO.md)", 404)

    async def not_found(request: Request, exc):
        status = getattr(exc, "status_code", 404)
        detail = getattr(exc, "detail", "") or "not found"
        if status == 405:
            detail = f"{request.method} is not allowed on {request.url.path}"
        return error(str(detail), status)

    async def server_error(request: Request, exc):
        return error(f"internal error {type(exc).__name__}", 500)

    routes = [
        Route("/", page),
        Route("/static/{name}", asset),
        Route("/favicon.ico", lambda request: Response(status_code=204)),
        Route("/api/checkpoints", checkpoints),
        Route("/api/checkpoints/{cid}/curve", curve),
        Route("/api/sample", sample, methods=["POST"]),
        Route("/api/regenerate", regenerate, methods=["POST"]),
        Route("/api/variations", variations, methods=["POST"]),
        Route("/api/primers", upload, methods=["POST"]),
        Route("/api/jobs", jobs),
        Route("/api/jobs/{jid}", job),
        Route("/api/jobs/{jid}/cancel", cancel, methods=["POST"]),
        Route("/api/samples", samples),
        Route("/api/samples/{sid}", one_sample),
        Route("/api/samples/{sid}/roll", roll),
        Route("/api/samples/{sid}/notation.svg", notation),
        Route("/api/files/{sid}/{name}", files),
        Route("/api/{rest:path}", api_missing, methods=["GET", "POST", "PUT", "DELETE", "PATCH"]),
    ]
    @contextlib.asynccontextmanager
    async def lifespan(app):
        yield
        studio.close()

    app = Starlette(routes=routes, exception_handlers={404: not_found, 405: not_found, 500: server_error},
                    lifespan=lifespan)
    app.state.studio = studio
    return Guard(app, token, allowed_hosts)


def build(runs=(), checkpoints=(), out_dir=None, device="cpu", token=None, allowed_hosts=None,
          max_upload_bytes=DEFAULT_MAX_UPLOAD, soundfont=None):
    """(asgi app, studio) for the given folders and files; `out_dir=None` makes a fresh temporary folder."""
    import tempfile

    catalog = Catalog(list(runs), list(checkpoints))
    out = out_dir if out_dir is not None else tempfile.mkdtemp(prefix="fmusic-studio-")
    studio = Studio(catalog, out, device=device, soundfont=soundfont)
    return create_app(studio, token=token, allowed_hosts=allowed_hosts, max_upload_bytes=max_upload_bytes), studio
