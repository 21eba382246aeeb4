"""`fmusic serve`: the studio's JSON API through Starlette's TestClient, on real tiny checkpoints."""
from __future__ import annotations

import io
import json
import shlex
import time
import wave

import numpy as np
import pytest

pytest.importorskip("starlette", reason="the studio extra is not installed: pip install 'fractalmusic[studio]'")
pytest.importorskip("httpx", reason="starlette's TestClient needs httpx")

from conftest import fmusic  # noqa: E402

pytestmark = [pytest.mark.usefixtures("one_thread"),
              pytest.mark.filterwarnings("ignore:Using `httpx` with `starlette.testclient`")]


@pytest.fixture(scope="module")
def studio(studio_runs, tmp_path_factory):
    from starlette.testclient import TestClient

    from fractalmusic.studio.app import build

    app, st = build(runs=[studio_runs], out_dir=tmp_path_factory.mktemp("studio-out"), device="cpu",
                    allowed_hosts={"testserver"}, max_upload_bytes=64 * 1024)
    with TestClient(app, raise_server_exceptions=False) as client:
        client.studio = st
        yield client


@pytest.fixture(scope="module")
def ids(studio):
    cards = studio.get("/api/checkpoints").json()["checkpoints"]
    return {c["generator"]: c["id"] for c in cards}


@pytest.fixture(scope="module")
def mar_sample(studio, ids):
    r = studio.post("/api/sample", json={"checkpoint": ids["mar"], "target_width": 64, "seed": 1,
                                         "options": {"num_iter": "2"}})
    assert r.status_code == 200, r.text
    return r.json()["samples"][0]


@pytest.fixture(scope="module")
def abc_sample(studio, ids):
    r = studio.post("/api/sample", json={"checkpoint": ids["lstm"], "num_samples": 2, "length": 120, "seed": 1})
    assert r.status_code == 200, r.text
    samples = r.json()["samples"]
    assert len(samples) == 2
    return samples[0]


def assert_refused(r, status=None):
    """A refusal: 4xx, a JSON object with one one-line message, no traceback."""
    assert 400 <= r.status_code < 500, (r.status_code, r.text)
    if status is not None:
        assert r.status_code == status, (r.status_code, r.text)
    body = r.json()
    assert list(body) == ["error"] and body["error"] and "\n" not in body["error"], body
    assert "Traceback" not in r.text
    return body["error"]


def test_page_and_checkpoint_cards(studio, ids):
    page = studio.get("/")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    for testid in ("checkpoint-select", "sample-button", "cancel-button", "temperature", "top-k", "top-p", "greedy",
                   "seed", "primer-file", "primer-text", "num-samples", "length", "piano-roll", "regenerate-button",
                   "undo-button", "variations-button", "notation", "audio", "command"):
        assert f'data-testid="{testid}"' in page.text, testid
    assert "http://" not in page.text and "https://" not in page.text  # no CDN: every asset is served here
    for asset in ("studio.js", "studio.css"):
        r = studio.get(f"/static/{asset}")
        assert r.status_code == 200 and len(r.content) > 1000
        assert "https://" not in r.text
    cards = {c["generator"]: c for c in studio.get("/api/checkpoints").json()["checkpoints"]}
    assert set(cards) == {"lstm", "mar"}
    folk, mar = cards["lstm"], cards["mar"]
    assert (folk["representation"], folk["kind"], folk["step"]) == ("abc", "tokens", 40)
    assert folk["val_bits"] == pytest.approx(folk["val_loss_nats"] / np.log(2))
    assert folk["generator_config"]["hidden_size"] == 64 and folk["date"] and folk["corpus"]
    assert folk["has_curve"] and folk["training"]  # its metrics.jsonl changed just now
    assert not mar["has_curve"] and not mar["training"]
    assert (mar["representation"], mar["kind"], mar["step"], mar["crop_length"]) == ("pianoroll", "grid", 3, 64)
    assert mar["val_bits"] is not None
    assert "num_iter" in [o["name"] for o in mar["options"]]  # the generator's own option becomes a control
    assert not any(o["name"].startswith("mask_") for o in mar["options"])
    curve = studio.get(f"/api/checkpoints/{ids['lstm']}/curve").json()
    assert len(curve["train"]) == 8 and curve["val"] == [[40, pytest.approx(0.5 / np.log(2))]]  # half line skipped
    assert_refused(studio.get(f"/api/checkpoints/{ids['mar']}/curve"), 404)


def test_sample_files_for_both_models(studio, mar_sample, abc_sample):
    import pretty_midi

    for s in (mar_sample, abc_sample):
        assert {"mid", "wav", "png"} <= set(s["files"])
        midi = studio.get(s["files"]["mid"])
        assert midi.status_code == 200
        pm = pretty_midi.PrettyMIDI(io.BytesIO(midi.content))
        assert sum(len(i.notes) for i in pm.instruments) > 0
        with wave.open(io.BytesIO(studio.get(s["files"]["wav"]).content)) as w:
            frames = np.frombuffer(w.readframes(w.getnframes()), dtype=np.int16)
        assert frames.size > 0 and np.abs(frames).max() > 100  # not silent
        assert studio.get(s["files"]["png"]).content[:8] == b"\x89PNG\r\n\x1a\n"
        assert s["command"].startswith("fmusic sample ") and f"--seed {s['settings']['seed']}" in s["command"]
    abc = studio.get(abc_sample["files"]["abc"]).text
    assert abc.startswith("X:") and "K:" in abc
    svg = studio.get(abc_sample["notation_url"])
    assert svg.status_code == 200 and svg.headers["content-type"].startswith("image/svg") and "<svg" in svg.text
    listed = {s["id"] for s in studio.get("/api/samples").json()["samples"]}
    assert {mar_sample["id"], abc_sample["id"]} <= listed
    roll = studio.get(mar_sample["roll_url"]).json()
    assert roll["width"] == 64 and roll["steps_per_beat"] == 4 and roll["notes"] and roll["cells"]


def kept_grid(studio, sample):
    """The grid a regeneration keeps: the source's MIDI file read and encoded as `fmusic sample --primer` does."""
    import fractalmusic

    model = fractalmusic.load(studio.studio.catalog.get(sample["checkpoint"]).path)
    path = studio.studio.samples[sample["id"]].dir / studio.studio.samples[sample["id"]].files["mid"]
    return model.encode_primer(str(path))


def new_grid(studio, sample_id):
    roll = studio.get(f"/api/samples/{sample_id}/roll").json()
    grid = np.zeros((128, roll["width"]), dtype=np.int64)
    for p, t, v in roll["cells"]:
        grid[p, t] = v
    return grid


def test_regenerate_mar_keeps_every_cell_outside_the_region(studio, mar_sample, tmp_path, capsys):
    before = kept_grid(studio, mar_sample)
    r = studio.post("/api/regenerate", json={"sample_id": mar_sample["id"], "mask_start": 16, "mask_end": 32,
                                             "seed": 7})
    assert r.status_code == 200, r.text
    new = r.json()["samples"][0]
    assert new["parent"] == mar_sample["id"] and new["region"] == {"mask_start": 16, "mask_end": 32}
    after = new_grid(studio, new["id"])
    width = before.shape[1]
    assert np.array_equal(after[:, :16], before[:, :16])
    assert np.array_equal(after[:, 32:width], before[:, 32:])
    assert not np.array_equal(after[:, 16:32], before[:, 16:32])  # something was drawn anew inside
    # a pitch band inside the time range: everything outside the rectangle is kept
    r = studio.post("/api/regenerate", json={"sample_id": mar_sample["id"], "mask_start": 8, "mask_end": 40,
                                             "mask_pitch_low": 40, "mask_pitch_high": 80, "seed": 8})
    band = new_grid(studio, r.json()["samples"][0]["id"])
    outside = np.ones_like(band, dtype=bool)
    outside[40:81, 8:40] = False
    padded = np.zeros_like(band)
    padded[:, :width] = before
    assert np.array_equal(band[outside], padded[outside])
    # the card's command recreates the same MIDI file through the real CLI
    args = shlex.split(new["command"])
    assert args[:2] == ["fmusic", "sample"]
    args[args.index("--out-dir") + 1] = str(tmp_path / "again")
    args[args.index("--to") + 1] = "mid"  # the same draws; skip the audio and picture
    code, _, err = fmusic(capsys, *args[1:])
    assert code == 0, err
    studio_mid = studio.get(new["files"]["mid"]).content
    assert (tmp_path / "again" / "sample_000.mid").read_bytes() == studio_mid


def test_token_model_regenerates_after_kept_bars_and_variations(studio, abc_sample):
    r = studio.post("/api/regenerate", json={"sample_id": abc_sample["id"], "keep_bars": 2, "seed": 3})
    assert r.status_code == 200, r.text
    new = r.json()["samples"][0]
    source_abc = studio.get(abc_sample["files"]["abc"]).text
    from fractalmusic.studio.engine import cut_abc

    kept = cut_abc(source_abc.strip("\n"), 2)
    assert kept.count("|") >= 2
    assert studio.get(new["files"]["abc"]).text.startswith(kept)
    assert "--primer" in new["command"]
    assert_refused(studio.post("/api/regenerate", json={"sample_id": abc_sample["id"], "mask_start": 1,
                                                        "mask_end": 4}), 400)
    r = studio.post("/api/variations", json={"sample_id": abc_sample["id"], "num_samples": 2, "seed": 11})
    assert r.status_code == 200, r.text
    assert len(r.json()["samples"]) == 2 and r.json()["samples"][0]["settings"]["seed"] == 11


@pytest.mark.parametrize("url", [
    "/api/files/../../etc/passwd",
    "/api/files/%2e%2e/%2e%2e/etc/passwd",
    "/api/files/%2E%2E%2F%2E%2E%2Fetc%2Fpasswd",
    "/api/files/s1/..%2F..%2F..%2Fetc%2Fpasswd",
    "/api/files/s1/%252e%252e%252fetc%252fpasswd",
    "/api/files/s1/sample_000.mid%00.png",
    "/api/files/s1/..%5C..%5Cetc%5Cpasswd",
    "/static/..%2F..%2F..%2Fetc%2Fpasswd",
    "/static/../app.py",
    "/api/files/s1/app.py",
])
def test_path_traversal_is_refused(studio, mar_sample, url):
    r = studio.get(url)
    assert r.status_code in (403, 404), (url, r.status_code)
    assert "root:" not in r.text and "import" not in r.text
    assert r.headers["content-type"].startswith("application/json")


def test_a_sample_file_is_served_only_under_its_own_sample(studio, mar_sample, abc_sample):
    name = mar_sample["files"]["mid"].rsplit("/", 1)[1]
    assert studio.get(mar_sample["files"]["mid"]).status_code == 200
    other = studio.get(f"/api/files/{abc_sample['id']}/sample_000.png")
    assert other.status_code == 200  # its own png
    assert_refused(studio.get(f"/api/files/nope/{name}"), 404)
    assert_refused(studio.get(f"/api/files/{mar_sample['id']}/samples.abc"), 404)


def test_every_bad_input_gets_one_clear_4xx(studio, ids, mar_sample):
    post = studio.post
    js = {"content-type": "application/json"}
    cases = [
        (post("/api/sample", content=b"{bad json", headers=js), 400, "malformed JSON"),
        (post("/api/sample", content=b"", headers=js), 400, "empty"),
        (post("/api/sample", content=b"[1, 2]", headers=js), 400, "JSON object"),
        (post("/api/sample", content=b"\xff\xfe", headers=js), 400, "UTF-8"),
        (post("/api/sample", content=b"[" * 50000 + b"]" * 50000, headers=js), 400, "nested"),
        (post("/api/sample", content=b" " * 300_000 + b"{}", headers=js), 413, "limit"),
        (post("/api/sample", content=b"checkpoint=x", headers={"content-type": "text/plain"}), 415, "JSON"),
        (post("/api/sample", json={"checkpoint": "nope"}), 404, "no checkpoint"),
        (post("/api/sample", json={}), 400, "checkpoint"),
        (post("/api/sample", json={"checkpoint": ids["mar"], "frobnicate": 1}), 400, "unknown field"),
        (post("/api/sample", json={"checkpoint": ids["mar"], "num_samples": 0}), 400, "num_samples"),
        (post("/api/sample", json={"checkpoint": ids["mar"], "num_samples": "3"}), 400, "whole number"),
        (post("/api/sample", json={"checkpoint": ids["mar"], "temperature": -1}), 400, "temperature"),
        (post("/api/sample", json={"checkpoint": ids["mar"], "top_p": 0}), 400, "top_p"),
        (post("/api/sample", json={"checkpoint": ids["mar"], "greedy": "yes"}), 400, "greedy"),
        (post("/api/sample", json={"checkpoint": ids["mar"], "seed": 2**40}), 400, "seed"),
        (post("/api/sample", json={"checkpoint": ids["mar"], "target_width": 10}), 400, "multiple of 4"),
        (post("/api/sample", json={"checkpoint": ids["lstm"], "target_width": 64}), 400, "target_width"),
        (post("/api/sample", json={"checkpoint": ids["mar"], "options": {"depth": 3}}), 400, "not an option"),
        (post("/api/sample", json={"checkpoint": ids["mar"], "options": {"num_iter": "a,b"}}), 400, "num-iter"),
        (post("/api/sample", json={"checkpoint": ids["mar"], "primer_text": "X:1"}), 400, "primer file"),
        (post("/api/sample", json={"checkpoint": ids["mar"], "mask_start": 4}), 400, "primer"),
        (post("/api/sample", json={"checkpoint": ids["mar"], "primer_upload": "u99"}), 404, "primer_upload"),
        (post("/api/sample", json={"checkpoint": ids["lstm"], "primer_text": "X:1\n\u2603\u4e2d"}), 400, ""),
        (post("/api/sample", json={"checkpoint": ids["mar"], "formats": ["exe"]}), 400, "unknown format"),
        (post("/api/sample", json={"checkpoint": ids["mar"], "formats": ["abc"]}), 400, "ABC"),
        (post("/api/sample", json={"checkpoint": ids["mar"], "wait": "no"}), 400, "wait"),
        (post("/api/regenerate", json={"sample_id": "s999", "mask_start": 0, "mask_end": 4}), 404, "no sample"),
        (post("/api/regenerate", json={"sample_id": mar_sample["id"]}), 400, "region"),
        (post("/api/regenerate", json={"sample_id": mar_sample["id"], "mask_start": 30, "mask_end": 10}), 400,
         "mask"),
        (post("/api/regenerate", json={"sample_id": mar_sample["id"], "mask_start": 0, "mask_end": 999}), 400,
         "mask_end"),
        (post("/api/regenerate", json={"sample_id": mar_sample["id"], "keep_bars": 2}), 400, "keep_bars"),
        (post("/api/primers", content=b"MThd", headers={"x-filename": "evil.exe"}), 415, "primer files"),
        (post("/api/primers", content=b"MThd garbage", headers={"x-filename": "bad.mid"}), 422, "cannot be read"),
        (post("/api/primers", content=b"x" * (65 * 1024), headers={"x-filename": "big.mid"}), 413, "limit"),
        (post("/api/primers", content=b"MThd", headers={"x-filename": "../../x.mid"}), 400, "plain file name"),
        (post("/api/primers", content=b"MThd"), 415, "X-Filename"),
        (studio.get("/api/jobs/j999"), 404, "no job"),
        (post("/api/jobs/j999/cancel", json={}), 404, "no job"),
        (studio.get("/api/samples/s999/roll"), 404, "no sample"),
        (studio.get("/api/nothing-here"), 404, "no API endpoint"),
        (studio.delete("/api/checkpoints"), 405, "not allowed"),
        (studio.get("/api/sample"), 405, "not allowed"),
    ]
    for r, status, fragment in cases:
        message = assert_refused(r, status)
        assert fragment in message, (fragment, message)
    jobs = len(studio.get("/api/jobs").json()["jobs"])
    assert_refused(post("/api/sample", json={"checkpoint": ids["mar"], "wait": 1}), 400)
    assert len(studio.get("/api/jobs").json()["jobs"]) == jobs  # refused before anything was queued


def test_primer_upload_then_infill(studio, ids, tmp_path):
    import pretty_midi

    pm = pretty_midi.PrettyMIDI(initial_tempo=120)
    inst = pretty_midi.Instrument(0)
    for i in range(32):  # eighth notes at 120 qpm: two steps each
        inst.notes.append(pretty_midi.Note(velocity=90, pitch=60 + (i * 5) % 19, start=i * 0.25, end=i * 0.25 + 0.25))
    pm.instruments.append(inst)
    primer_path = tmp_path / "primer.mid"
    pm.write(str(primer_path))
    r = studio.post("/api/primers", content=primer_path.read_bytes(), headers={"x-filename": "primer.mid"})
    assert r.status_code == 201, r.text
    uid = r.json()["primer_upload"]
    r = studio.post("/api/sample", json={"checkpoint": ids["mar"], "primer_upload": uid, "target_width": 64,
                                         "mask_start": 16, "mask_end": 32, "seed": 4, "options": {"num_iter": 2}})
    assert r.status_code == 200, r.text
    s = r.json()["samples"][0]
    assert "--primer" in s["command"] and "--mask-start 16" in s["command"]
    import fractalmusic

    primer = fractalmusic.load(studio.studio.catalog.get(ids["mar"]).path).encode_primer(str(primer_path))
    assert primer.shape[1] == 64 and primer[:, :16].any() and primer[:, 32:].any()
    got = new_grid(studio, s["id"])
    assert np.array_equal(got[:, :16], primer[:, :16]) and np.array_equal(got[:, 32:64], primer[:, 32:64])


def test_jobs_queue_report_progress_and_cancel(studio, ids):
    long = studio.post("/api/sample", json={"checkpoint": ids["mar"], "num_samples": 16, "target_width": 1024,
                                            "options": {"num_iter": "64,16,16"}, "seed": 1, "wait": False})
    assert long.status_code == 202, long.text
    short = studio.post("/api/sample", json={"checkpoint": ids["lstm"], "length": 30, "seed": 2, "wait": False})
    job, queued = long.json()["job"], short.json()["job"]
    assert queued["status"] == "queued" and queued["queue_position"] >= 1  # one model runs at a time
    deadline = time.time() + 30
    while studio.get(f"/api/jobs/{job['id']}").json()["passes"] == 0 and time.time() < deadline:
        time.sleep(0.05)
    assert_refused(studio.post(f"/api/jobs/{job['id']}/cancel"), 415)  # a cross-site form could send that
    r = studio.post(f"/api/jobs/{job['id']}/cancel", json={})
    assert r.status_code == 200
    while time.time() < deadline:
        states = [studio.get(f"/api/jobs/{j['id']}").json() for j in (job, queued)]
        if states[1]["status"] in ("done", "error"):
            break
        time.sleep(0.05)
    assert states[0]["status"] == "cancelled" and not states[0]["samples"]
    assert states[1]["status"] == "done" and states[1]["passes"] > 0 and states[1]["progress"] == 1.0


def test_remote_mode_needs_the_token(studio_runs, tmp_path):
    from starlette.testclient import TestClient

    from fractalmusic.studio.app import build

    app, _ = build(runs=[studio_runs], out_dir=tmp_path / "o", token="t" * 24, allowed_hosts=None)
    with TestClient(app) as c:
        assert_refused(c.get("/api/checkpoints"), 401)
        assert_refused(c.get("/api/checkpoints", headers={"x-studio-token": "wrong" * 5}), 401)
        assert c.get("/api/checkpoints", headers={"x-studio-token": "t" * 24}).status_code == 200
        assert c.get("/api/checkpoints", headers={"authorization": "Bearer " + "t" * 24}).status_code == 200
        assert c.get("/api/samples?token=" + "t" * 24).status_code == 200
    # a loopback studio answers only its own host names (no DNS rebinding)
    app, _ = build(runs=[studio_runs], out_dir=tmp_path / "p", allowed_hosts={"127.0.0.1", "localhost"})
    with TestClient(app, base_url="http://evil.example") as c:
        assert_refused(c.get("/api/checkpoints"), 403)
        assert c.get("/", headers={"host": "localhost:8765"}).status_code == 200


def test_given_checkpoints_and_a_checkpoint_that_would_run_code(studio_runs, tmp_path):
    """--checkpoint files are offered as given; a pickle that runs code when loaded is refused (weights_only)."""
    import os

    import torch
    from starlette.testclient import TestClient

    from fractalmusic.studio.app import build

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {tmp_path / 'pwned'}",))

    runs = tmp_path / "runs"
    runs.mkdir()
    torch.save({"format": "fractalmusic", "boom": Evil()}, runs / "evil.pt")
    (runs / "notes.pt").write_text("not a checkpoint")
    app, _ = build(runs=[runs], checkpoints=[studio_runs / "mar" / "checkpoints" / "best.pt"],
                   out_dir=tmp_path / "o", allowed_hosts={"testserver"})
    with TestClient(app) as c:
        cards = {card["label"]: card for card in c.get("/api/checkpoints").json()["checkpoints"]}
        assert set(cards) == {"mar/best.pt", "evil.pt", "notes.pt"}
        assert cards["mar/best.pt"]["generator"] == "mar" and "error" not in cards["mar/best.pt"]
        assert "refused" in cards["evil.pt"]["error"] and "generator" not in cards["evil.pt"]
        assert "not a fractalmusic checkpoint" in cards["notes.pt"]["error"]
        message = assert_refused(c.post("/api/sample", json={"checkpoint": cards["evil.pt"]["id"]}), 422)
        assert "refused" in message
    assert not (tmp_path / "pwned").exists()


def test_serve_command_refuses_a_public_host_without_allow_remote(studio_runs, capsys):
    code, _, err = fmusic(capsys, "serve", "--runs", studio_runs, "--host", "0.0.0.0")
    assert code == 2 and err.startswith("error: ") and "--allow-remote" in err and len(err.strip().splitlines()) == 1
    code, _, err = fmusic(capsys, "serve", "--runs", studio_runs / "nope")
    assert code == 2 and len(err.strip().splitlines()) == 1
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        code, _, err = fmusic(capsys, "serve", "--runs", studio_runs, "--port", busy.getsockname()[1])
    assert code == 2 and "cannot listen on 127.0.0.1" in err and len(err.strip().splitlines()) == 1


def test_serve_on_all_interfaces_prints_a_token_that_every_api_call_needs(studio_runs, tmp_path, monkeypatch,
                                                                         capsys):
    """The real command and a real uvicorn server on a socket (in a thread, stopped by the test)."""
    import socket
    import threading
    import urllib.error
    import urllib.request

    import uvicorn

    servers = []

    def run(app, host, port, **kwargs):  # what serve_cmd calls, with a handle to stop it
        server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="warning"))
        servers.append(server)
        server.run()

    monkeypatch.setattr(uvicorn, "run", run)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    args = ["serve", "--runs", studio_runs, "--host", "0.0.0.0", "--allow-remote", "--port", port,
            "--out-dir", tmp_path / "o"]
    thread = threading.Thread(target=fmusic, args=(capsys, *args), daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{port}/api/checkpoints"
        body = None
        deadline = time.time() + 60
        while body is None and time.time() < deadline:
            try:
                urllib.request.urlopen(url, timeout=5)
            except urllib.error.HTTPError as exc:
                assert exc.code == 401
                body = json.loads(exc.read())
            except OSError:
                time.sleep(0.1)
        assert body and "token" in body["error"]
        out = capsys.readouterr().out
        token = next(line.split(": ", 1)[1] for line in out.splitlines() if line.startswith("token: "))
        req = urllib.request.Request(url, headers={"X-Studio-Token": token})
        assert len(json.loads(urllib.request.urlopen(req, timeout=10).read())["checkpoints"]) == 2
        page = urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=10).read().decode()
        assert 'data-testid="sample-button"' in page  # the page itself carries no secret; its API calls do
    finally:
        for server in servers:
            server.should_exit = True
        thread.join(timeout=20)
