"""The studio in a real headless Chromium (Debian's package, driven by Playwright's Python driver).

Open the page, sample from a tiny ABC LSTM (notation, piano roll, audio) and from a tiny MAR (a chorale primer
uploaded, a region infilled), select a time range on the MAR's piano roll, regenerate it, and check through the API
that every cell outside the range is unchanged; then undo. `.ci/run` installs chromium; without it the test is
skipped and says why.
FMUSIC_STUDIO_SCREENSHOT=path.png also saves the final page there (docs/studio.png is made this way).
"""
from __future__ import annotations

import json
import os
import shutil
import socket
import threading
import time
import urllib.request

import numpy as np
import pytest

pytest.importorskip("starlette", reason="the studio extra is not installed: pip install 'fractalmusic[studio]'")
pytest.importorskip("uvicorn", reason="the studio extra is not installed: pip install 'fractalmusic[studio]'")
playwright_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (the test extra)")

CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--no-first-run", "--disable-sync", "--disable-quic"]
pytestmark = pytest.mark.usefixtures("one_thread")


def find_chromium() -> str | None:
    for name in (os.environ.get("FMUSIC_CHROMIUM"), "chromium", "chromium-browser", "google-chrome"):
        if name and shutil.which(name):
            return shutil.which(name)
    return None


@pytest.fixture(scope="module")
def server(studio_runs, tmp_path_factory):
    import uvicorn

    from fractalmusic.studio.app import build

    app, studio = build(runs=[studio_runs], out_dir=tmp_path_factory.mktemp("studio-browser"), device="cpu",
                        allowed_hosts={"127.0.0.1", "localhost"})
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    srv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    deadline = time.time() + 30
    while not srv.started and time.time() < deadline:
        time.sleep(0.05)
    assert srv.started, "the studio server did not start"
    yield f"http://127.0.0.1:{port}", studio
    srv.should_exit = True
    thread.join(timeout=20)


def get_json(url: str):
    with urllib.request.urlopen(url, timeout=30) as r:
        return json.loads(r.read())


def test_browser_samples_shows_plays_and_regenerates_a_region(server, tmp_path, chorale_path):
    chromium = find_chromium()
    if chromium is None:
        pytest.skip("no Chromium found (apt-get install chromium, as .ci/run does, or set FMUSIC_CHROMIUM)")
    base, studio = server
    expect = playwright_api.expect
    with playwright_api.sync_playwright() as p:
        context = p.chromium.launch_persistent_context(
            str(tmp_path / "profile"), executable_path=chromium, headless=True, args=CHROMIUM_FLAGS,
            viewport={"width": 1360, "height": 1000})
        try:
            page = context.new_page()
            errors: list[str] = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(base + "/")
            expect(page.locator("[data-testid=model-card]")).to_have_count(2)
            select = page.get_by_test_id("checkpoint-select")
            labels = select.locator("option").all_text_contents()
            folk = next(x for x in labels if x.startswith("folk"))
            mar = next(x for x in labels if x.startswith("mar"))

            # 1. the ABC model: notation, a piano roll with notes, audio that plays
            select.select_option(label=folk)
            page.get_by_test_id("length").fill("150")
            page.get_by_test_id("seed").fill("1")
            page.get_by_test_id("sample-button").click()
            card = page.locator("[data-testid=result-card]").first
            expect(card).to_have_attribute("data-sample-id", "s1", timeout=60_000)
            img = card.get_by_test_id("notation-img")
            expect(img).to_be_visible(timeout=30_000)
            deadline = time.time() + 20
            while img.evaluate("i => i.naturalWidth") == 0 and time.time() < deadline:
                time.sleep(0.1)
            assert img.evaluate("i => i.naturalWidth") > 100  # an engraved SVG, not a broken image
            assert note_pixels(card) > 50
            card.get_by_test_id("play-button").click()
            audio = card.get_by_test_id("audio")
            deadline = time.time() + 20
            while audio.evaluate("a => a.currentTime") <= 0 and time.time() < deadline:
                time.sleep(0.1)
            assert audio.evaluate("a => a.currentTime") > 0, "the audio did not play"
            card.get_by_test_id("play-button").click()  # pause
            expect(card.get_by_test_id("command")).to_contain_text("fmusic sample")

            # 2. the MAR model: a chorale primer (uploaded) with steps 16-32 infilled, then select steps 32-48 on
            # its piano roll and regenerate that region
            select.select_option(label=mar)
            page.get_by_test_id("primer-file").set_input_files(str(chorale_path))
            page.get_by_test_id("length").fill("64")
            page.get_by_test_id("mask-start").fill("16")
            page.get_by_test_id("mask-end").fill("32")
            page.get_by_test_id("seed").fill("2")
            page.get_by_test_id("option-num_iter").fill("2")
            page.get_by_test_id("sample-button").click()
            expect(page.locator("[data-testid=result-card]")).to_have_count(2, timeout=60_000)
            card = page.locator("[data-testid=result-card]").first
            source_id = card.get_attribute("data-sample-id")
            assert studio.samples[source_id].kind == "grid"
            assert note_pixels(card) > 50
            canvas = card.get_by_test_id("piano-roll")
            canvas.scroll_into_view_if_needed()
            box = canvas.bounding_box()
            px_beat = (box["width"] - 1) / 16  # 64 steps = 16 beats across the canvas; steps 32-48 = beats 8-12
            y = max(box["y"], 0) + 40  # a point of the roll inside the viewport
            page.mouse.move(box["x"] + 8 * px_beat + 2, y)
            page.mouse.down()
            page.mouse.move(box["x"] + 10 * px_beat, y, steps=4)
            page.mouse.move(box["x"] + 12 * px_beat - 2, y, steps=4)
            page.mouse.up()
            expect(card.get_by_test_id("region-label")).to_have_text("steps 32–48")
            card.get_by_test_id("regen-seed").fill("9")
            card.get_by_test_id("regenerate-button").click()
            expect(card).not_to_have_attribute("data-sample-id", source_id, timeout=60_000)
            new_id = card.get_attribute("data-sample-id")
            expect(card.get_by_test_id("command")).to_contain_text("--mask-start 32 --mask-end 48")
            if os.environ.get("FMUSIC_STUDIO_SCREENSHOT"):
                page.screenshot(path=os.environ["FMUSIC_STUDIO_SCREENSHOT"], full_page=True)

            # 3. through the API: outside steps 32-48 nothing changed
            source = get_json(f"{base}/api/samples/{source_id}")
            new = get_json(f"{base}/api/samples/{new_id}")
            assert "--primer" in source["command"] and "--mask-start 16 --mask-end 32" in source["command"]
            assert new["parent"] == source_id and new["region"] == {"mask_start": 32, "mask_end": 48}
            mid = tmp_path / "source.mid"
            mid.write_bytes(urllib.request.urlopen(base + source["files"]["mid"], timeout=30).read())
            import fractalmusic

            kept = fractalmusic.load(studio.catalog.get(source["checkpoint"]).path).encode_primer(str(mid))
            roll = get_json(base + new["roll_url"])
            after = np.zeros((128, roll["width"]), dtype=np.int64)
            for pitch, step, value in roll["cells"]:
                after[pitch, step] = value
            assert np.array_equal(after[:, :32], kept[:, :32])
            assert np.array_equal(after[:, 48:kept.shape[1]], kept[:, 48:])
            assert not after[:, kept.shape[1]:].any()

            # 4. undo brings the source back on the card
            card.get_by_test_id("undo-button").click()
            expect(card).to_have_attribute("data-sample-id", source_id)
            assert not errors, errors
        finally:
            context.close()


def note_pixels(card) -> int:
    """How many pixels of the card's piano roll have the note colour (drawn by the page's own script)."""
    return card.get_by_test_id("piano-roll").evaluate(
        """c => { const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data; let n = 0;
                  for (let i = 0; i < d.length; i += 4) if (d[i + 2] > 150 && d[i] < 140 && d[i + 1] < 190) n++;
                  return n; }""")
