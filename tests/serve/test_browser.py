"""End to end: headless Chromium drives the page of a real `mka serve` process on a tiny CLIP pipeline.

Text, image and video inputs, a microphone recording, and an inpainting mask drawn with the
mouse; a screenshot of each screen is written under the test's tmp folder (``screens/``).
Needs Debian's chromium (``apt-get install chromium``) and the playwright package; the test
skips only when /usr/bin/chromium is absent. No browser is ever downloaded.
"""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from tests.serve.helpers import png_bytes, wav_bytes, write_video

CHROMIUM = Path("/usr/bin/chromium")
pytestmark = pytest.mark.skipif(not CHROMIUM.exists(),
                                reason="Debian's chromium is not installed (apt-get install -y chromium)")


@pytest.fixture(scope="module")
def clip_model(tmp_path_factory) -> Path:
    """A tiny random pipeline in the OpenCLIP space: clip-text, clip-image and clip-video all fit it."""
    from mka_core.plugins import manager
    from mka_core.presets import build_pipeline

    manager.reset_plugins()
    folder = tmp_path_factory.mktemp("models") / "tiny-clip"
    build_pipeline("tiny", cond="clip-text", seed=0).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def served(clip_model, tmp_path_factory):
    """`mka serve --port 0` as a real process; yields its base URL."""
    workdir = tmp_path_factory.mktemp("serve-work")
    process = subprocess.Popen(
        [sys.executable, "-m", "mka_core.cli.main", "serve", "--model", str(clip_model), "--port", "0",
         "--device", "cpu", "--workdir", str(workdir)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=os.environ.copy())
    url = None
    deadline = time.time() + 120
    while time.time() < deadline and url is None:
        line = process.stdout.readline()
        if not line:
            break
        match = re.search(r"open (http://\S+)", line)
        url = match.group(1).rstrip("/") if match else None
    if url is None:
        process.kill()
        pytest.fail(f"mka serve did not start: {process.stderr.read()}")
    yield url
    process.terminate()  # SIGTERM: a clean stop
    assert process.wait(30) == 0, process.stderr.read()


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=str(CHROMIUM),
            args=["--no-sandbox", "--autoplay-policy=no-user-gesture-required",
                  "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream"])
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser, served):
    context = browser.new_context(viewport={"width": 1280, "height": 1100}, permissions=["microphone"])
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    # A page that breaks its own Content-Security-Policy (inline styles, eval) shows up here.
    page.on("console", lambda message: errors.append(message.text) if "Content Security Policy" in message.text else None)
    page.goto(served + "/")
    page.wait_for_selector("body[data-ready='1']", timeout=20_000)
    yield page
    context.close()
    assert errors == [], errors


def wait_for_js(page, expression: str, timeout: float = 30.0) -> None:
    """Poll a JavaScript expression from Python (page.wait_for_function evaluates strings in the page,
    which the server's Content-Security-Policy rightly forbids)."""
    deadline = time.time() + timeout
    while not page.evaluate(expression):
        if time.time() > deadline:
            raise AssertionError(f"timed out waiting for: {expression}")
        time.sleep(0.05)


def fetch(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=30) as response:
        return response.read()


def results_count(page) -> int:
    return page.locator("#history-list .job").count()


def generate(page, before: int) -> None:
    page.click("#generate")
    wait_for_js(page, f"document.querySelectorAll('#history-list .job').length > {before}", 60)
    assert page.locator("#error").is_hidden(), page.locator("#error").inner_text()


def fast_settings(page, seed: int) -> None:
    page.fill("#steps", "2")
    page.uncheck("#seed-random")
    page.fill("#seed", str(seed))


def test_the_page_drives_every_input_kind_and_inpaints_only_the_drawn_region(page, served, tmp_path):
    screens = tmp_path / "screens"
    screens.mkdir()
    shot = lambda name: page.screenshot(path=str(screens / f"{name}.png"), full_page=True)

    # The controls come from the plugin registry.
    options = page.locator("#cond option").all_inner_texts()
    assert any(o.startswith("clip-image") for o in options) and any(o.startswith("clip-video") for o in options)
    assert set(page.locator("#task option").all_inner_texts()) >= {"t2a", "sdedit", "inpaint"}
    page.click("#plugins summary")
    names = page.locator("#conditioner-table tbody td:first-child").all_inner_texts()
    assert names == sorted(names) and {"clip-text", "clip-image", "clip-video", "bert"} <= set(names)
    shot("01-start")
    page.click("#plugins summary")

    # Text: type, generate, play.
    page.fill("#prompt", "a bell ringing")
    fast_settings(page, seed=7)
    page.fill("#duration", "1")
    generate(page, 0)
    assert "seed 7" in page.locator("#current .output h3").inner_text()
    page.evaluate("document.querySelector('#current audio').play()")
    wait_for_js(page, "document.querySelector('#current audio').currentTime > 0.05", 10)
    assert page.locator("#current img.mel").evaluate("img => img.naturalWidth") > 0
    shot("02-text-result")

    # Image upload through clip-image.
    image = tmp_path / "photo.png"
    image.write_bytes(png_bytes(64, 48))
    page.select_option("#cond", "clip-image")
    page.set_input_files("#input-file-picker", str(image))
    page.wait_for_selector("#input-image-preview:not([hidden])")
    generate(page, 1)
    assert "photo.png" in page.locator("#current .meta").inner_text()
    shot("03-image-result")

    # Video upload through clip-video: the four frames it picked are shown.
    video = write_video(tmp_path / "clip.mp4", num_frames=12)
    page.select_option("#cond", "clip-video")
    page.set_input_files("#input-file-picker", str(video))
    page.wait_for_selector("#input-video-preview:not([hidden])")
    generate(page, 2)
    frames = page.locator("#current img.picked-frame")
    assert frames.count() == 4
    levels = []
    for k in range(4):  # frame k of the clip is grey 16 k; picked indices floor((2i+1) * 12 / 8) = 1, 4, 7, 10
        from PIL import Image

        picture = Image.open(io.BytesIO(fetch(served + frames.nth(k).get_attribute("src"))))
        levels.append(round(float(np.asarray(picture).mean()) / 16))
    assert levels == [1, 4, 7, 10]
    shot("04-video-result")

    # Inpainting: upload audio, draw one time box and one time x frequency box, generate.
    sound = tmp_path / "tone.wav"
    sound.write_bytes(wav_bytes(2.0, freq=660.0))
    page.select_option("#task", "inpaint")
    page.select_option("#cond", "clip-text")
    page.fill("#prompt", "birdsong")
    page.set_input_files("#init-file", str(sound))
    page.wait_for_selector("#spectrogram-block:not([hidden])")
    wait_for_js(page, "document.getElementById('mask-canvas').width > 0")
    page.select_option("#option-variant", "blend")
    page.fill("#duration", "")
    box = page.locator("#mask-canvas").bounding_box()
    frames_count, n_mels = 125, 80

    def drag(x0: float, y0: float, x1: float, y1: float) -> None:
        page.mouse.move(box["x"] + x0 * box["width"], box["y"] + y0 * box["height"])
        page.mouse.down()
        page.mouse.move(box["x"] + x1 * box["width"], box["y"] + y1 * box["height"], steps=6)
        page.mouse.up()

    def cell(x: float, y: float) -> tuple[int, int]:
        return int(x * frames_count), n_mels - 1 - int(y * n_mels)

    drag(0.203, 0.5, 0.398, 0.9)               # time only: every bin
    page.check("#mask-freq")
    drag(0.601, 0.31, 0.803, 0.69)             # a time x frequency box
    assert page.locator("#mask-list li").count() == 2
    shot("05-inpaint-mask")
    expected = np.zeros((n_mels, frames_count), dtype=bool)
    (f0, _), (f1, _) = cell(0.203, 0.5), cell(0.398, 0.9)
    expected[:, f0 : f1 + 1] = True
    (g0, top), (g1, bottom) = cell(0.601, 0.31), cell(0.803, 0.69)
    expected[bottom : top + 1, g0 : g1 + 1] = True

    generate(page, 3)
    shot("06-inpaint-result")
    import json

    job = json.loads(fetch(served + "/api/jobs"))["jobs"][0]
    assert job["status"] == "done" and job["summary"]["task"] == "inpaint"
    upload_id = page.evaluate("document.getElementById('init-player').src").split("/api/uploads/")[1].split("/")[0]
    before = np.load(io.BytesIO(fetch(f"{served}/api/uploads/{upload_id}/mel.npy")))
    after = np.load(io.BytesIO(fetch(served + job["outputs"][0]["urls"]["mel"])))
    from mka_core.masks import mask_from_input

    sent = mask_from_input(job["summary"]["mask"], frames=128, n_mels=n_mels, num_samples=32000, sample_rate=16000,
                           hop_length=256)[0, 0, :, :frames_count].numpy().astype(bool)
    np.testing.assert_array_equal(sent, expected)  # the mask sent is exactly what was drawn
    np.testing.assert_allclose(after[~expected], before[~expected], atol=1e-5)  # the rest is kept
    assert np.abs(after[expected] - before[expected]).mean() > 0.1

    # A microphone recording (Chromium's fake device) becomes the init audio.
    page.click("#record")
    page.wait_for_timeout(1200)
    page.click("#record")
    wait_for_js(page, "document.getElementById('init-status').textContent.startsWith('recording.wav')", 20)
    assert page.locator("#mask-list li").count() == 0  # a new init audio starts a new mask
    shot("07-recorded-init-audio")

    # The history holds every result of the session, each with its downloads.
    assert results_count(page) == 4
    links = page.locator("#history-list .links a").all_inner_texts()
    assert links.count("sidecar JSON") == 4
    assert sorted(p.name for p in screens.iterdir()) == [
        "01-start.png", "02-text-result.png", "03-image-result.png", "04-video-result.png", "05-inpaint-mask.png",
        "06-inpaint-result.png", "07-recorded-init-audio.png"]


def test_a_bad_upload_shows_the_servers_sentence(page, tmp_path):
    page.select_option("#cond", "clip-image")
    bogus = tmp_path / "notes.png"
    bogus.write_bytes(wav_bytes(0.3))
    page.set_input_files("#input-file-picker", str(bogus))
    page.wait_for_selector("#error:not([hidden])")
    assert page.locator("#error").inner_text() == "The file is audio, not an image; upload a PNG, JPEG, GIF, WebP or BMP image."


def test_the_recorder_takes_mono_16_bit_wav_through_an_audio_worklet(browser, served, tmp_path):
    import soundfile as sf

    context = browser.new_context(viewport={"width": 1280, "height": 1100}, permissions=["microphone"])
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.on("console", lambda message: errors.append(message.text) if "Content Security Policy" in message.text else None)
    try:
        page.goto(served + "/")
        page.wait_for_selector("body[data-ready='1']", timeout=20_000)
        # The deprecated node must not be used: any call to it now fails the recording.
        page.evaluate("() => { AudioContext.prototype.createScriptProcessor = () => { throw new Error('ScriptProcessorNode used'); }; }")
        page.select_option("#task", "sdedit")
        page.click("#record")
        wait_for_js(page, "document.getElementById('record').textContent === 'Stop'", 10)
        page.wait_for_timeout(1500)
        page.click("#record")
        wait_for_js(page, "document.getElementById('init-status').textContent.startsWith('recording.wav')", 20)
        rate = page.evaluate("new AudioContext().sampleRate")
        upload_id = page.evaluate("document.getElementById('init-player').src").split("/api/uploads/")[1].split("/")[0]
        wav = tmp_path / "recording.wav"
        wav.write_bytes(fetch(f"{served}/api/uploads/{upload_id}/file"))
        info = sf.info(str(wav))
        assert (info.format, info.subtype, info.channels, info.samplerate) == ("WAV", "PCM_16", 1, rate)
        assert 1.0 < info.duration < 4.0, info.duration  # about the 1.5 s between the two clicks
        samples, _ = sf.read(str(wav))
        assert np.abs(samples).max() > 0.01  # Chromium's fake microphone beeps: the take is not silence
    finally:
        context.close()
    assert errors == [], errors


def test_a_420_px_window_keeps_every_box_inside_the_window(browser, served, tmp_path):
    context = browser.new_context(viewport={"width": 420, "height": 900})
    page = context.new_page()
    try:
        page.goto(served + "/")
        page.wait_for_selector("body[data-ready='1']", timeout=20_000)
        page.select_option("#task", "inpaint")  # the longest form: init audio, task options
        page.click("#plugins summary")         # and the plugin tables
        page.screenshot(path=str(tmp_path / "narrow-420.png"), full_page=True)
        layout = page.evaluate("""() => {
            const edge = (selector) => document.querySelector(selector).getBoundingClientRect().right;
            const outside = [...document.querySelectorAll('body *')].filter((node) => {
                const box = node.getBoundingClientRect();
                return box.width > 0 && box.right > document.documentElement.clientWidth + 0.5;
            }).map((node) => node.tagName + '#' + node.id);
            return {scroll: document.documentElement.scrollWidth, width: document.documentElement.clientWidth,
                    settings: edge('#settings'), panel: edge('#request'), outside};
        }""")
    finally:
        context.close()
    assert layout["scroll"] <= layout["width"] == 420, layout
    assert layout["settings"] <= layout["panel"], layout  # the settings box stays inside its panel
    assert layout["outside"] == [], layout
