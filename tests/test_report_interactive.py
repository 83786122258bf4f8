"""The interactive HTML report: its data and maps in Python, and its behaviour in a real headless Chromium.

The browser is driven as in ``test_report_browser`` (DevTools protocol over Chromium's pipe, no
dependency): the page opens with no console error, pressing play moves the cursor, clicking a
window seeks the track to it, and switching the target changes the contributions shown. A
screenshot is kept under ``artifacts/`` (gitignored).
"""

from __future__ import annotations

import base64
import json
import re
import shutil
import tempfile
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from midlevel import ModelConfig, TwoStageModel, example_clip, load_audio
from midlevel.cli import build_parser, report_options
from midlevel.config import ConfigError
from midlevel.explain.attribution import (METHODS, SpectrogramNet, attribute_outputs, gradient_x_input,
                                          gradient_x_input_outputs, silence, track_maps, track_spectrogram)
from midlevel.explain.interactive import compand, encode_audio, grey_png
from midlevel.explain.report import write_report
from midlevel.model import BlackBoxModel

from test_report_browser import ROOT, console_errors, ensure_chromium, launch

SR = 22050


def model_of(kind: str = "two_stage", seed: int = 0):
    torch.manual_seed(seed)
    cfg = ModelConfig(kind=kind, name=f"interactive-{kind}", window_seconds=3.0, hop_seconds=1.5,
                      metadata={"notes": ["randomly initialised: mechanics only"]})
    return (TwoStageModel if kind == "two_stage" else BlackBoxModel)(cfg).eval()


@pytest.fixture(scope="module")
def music() -> np.ndarray:
    return load_audio(example_clip(), SR).samples[: 8 * SR]


@pytest.fixture(scope="module")
def report(tmp_path_factory, music) -> Path:
    return write_report(model_of(), music, tmp_path_factory.mktemp("interactive") / "report.html", sample_rate=SR,
                        target="tension")


def page_json(text: str) -> dict:
    found = re.search(r"<script type='application/json' id='report-data'>(.*?)</script>", text, re.S)
    return json.loads(found.group(1))


def read_grey_png(uri: str) -> np.ndarray:
    """Decode ``grey_png``'s output (8-bit grey, one IDAT, filter 1 on every row) without a library."""
    raw = base64.b64decode(uri.split(",", 1)[1])
    width, height = int.from_bytes(raw[16:20], "big"), int.from_bytes(raw[20:24], "big")
    length = int.from_bytes(raw[33:37], "big")
    assert raw[37:41] == b"IDAT"
    rows = np.frombuffer(zlib.decompress(raw[41:41 + length]), dtype=np.uint8).reshape(height, width + 1)
    assert np.all(rows[:, 0] == 1)
    return np.cumsum(rows[:, 1:].astype(np.int64), axis=1).astype(np.uint8)


# -- in Python ------------------------------------------------------------------------------------
def test_one_file_with_the_track_compressed_and_the_data_as_json(report, music):
    text = report.read_text()
    assert not re.search(r"""(src|href)=["'](?!data:)""", text)  # nothing outside the file
    assert "http://" not in text and "https://" not in text
    assert text.count('<audio id="track" controls preload="auto" src="data:audio/ogg;base64,') == 1
    audio = base64.b64decode(re.search(r'src="data:audio/ogg;base64,([^"]+)"', text).group(1))
    path = report.parent / "track.ogg"
    path.write_bytes(audio)
    decoded, rate = sf.read(path, dtype="float32")
    assert rate == SR and decoded.ndim == 1 and abs(len(decoded) / rate - 8.0) < 0.05
    assert len(audio) < 8 * SR * 2 / 5  # far below 16-bit PCM
    data = page_json(text)
    assert data["target"] == "tension" and data["duration"] == pytest.approx(8.0)
    n_windows = len(data["windows"]["starts"])
    assert n_windows == 5 and np.array(data["windows"]["contributions"]).shape == (n_windows, 8, 7)
    # the sum in view: intercept + contributions = prediction, for the track and for every window
    track = np.array(data["intercept"]) + np.array(data["trackContributions"]).sum(1)
    np.testing.assert_allclose(track, data["trackTargets"], atol=5e-4)
    windows = np.array(data["intercept"]) + np.array(data["windows"]["contributions"]).sum(-1)
    np.testing.assert_allclose(windows, data["windows"]["outputs"], atol=5e-4)
    assert data["sumError"] < 1e-5
    # every target and concept has its listenable part: a window of the timeline and its top cells as audio
    assert set(data["parts"]) == {*data["targets"], *data["concepts"]}
    for part in data["parts"].values():
        (start, end), = part["spans"]
        assert end - start == pytest.approx(3.0) and part["audio"].startswith("data:audio/ogg;base64,")


def test_maps_are_embedded_once_at_the_resolution_drawn(report):
    data = page_json(report.read_text())
    layer, spec = data["maps"][0], data["spectrogram"]
    assert layer["method"] == "gradient_x_input" and layer["names"] == data["concepts"]
    assert layer["bands"] == spec["bands"] == 75 and layer["columns"] == spec["columns"]  # 149 bands in pairs
    codes = read_grey_png(layer["png"])
    assert codes.shape == (7 * 75, layer["columns"]) and int(codes.sum(dtype=np.int64)) == layer["checksum"]
    assert read_grey_png(spec["png"]).sum(dtype=np.int64) == spec["checksum"]
    assert spec["t0"] + spec["columns"] * spec["dt"] >= data["duration"] - spec["dt"]  # frames cover the track
    assert len(data["slopes"]) == 8 and len(data["slopes"][0]) == 7


def test_compand_keeps_sign_order_and_small_values():
    values = np.array([[-4.0, -1.0, -0.01, 0.0, 0.01, 1.0, 4.0]])
    codes, scale = compand(values)
    assert scale[0] == 4.0 and codes[0, 3] == 128 and list(codes[0]) == sorted(codes[0])
    unit = (codes.astype(float) - 128) / 127
    np.testing.assert_allclose(np.sign(unit) * unit**2 * scale[:, None], values, atol=4.0 * 2 / 127)
    assert codes[0, 2] < 128 < codes[0, 4]  # 1/400 of the largest value still has a sign


def test_grey_png_round_trips():
    pixels = np.random.default_rng(0).integers(0, 256, size=(7, 13), dtype=np.uint8)
    np.testing.assert_array_equal(read_grey_png("data:image/png;base64," + base64.b64encode(grey_png(pixels)).decode()),
                                  pixels)


def test_compressed_audio_is_mono_and_bounded(tmp_path):
    data, mime = encode_audio(np.sin(np.arange(44100) / 10).astype(np.float32) * 3, 44100)
    path = tmp_path / "x.ogg"
    path.write_bytes(data)
    decoded, rate = sf.read(path, dtype="float32")
    assert mime == "audio/ogg" and rate == 22050 and decoded.ndim == 1
    assert np.abs(decoded).max() < 1.25  # clipped to full scale (a lossy codec overshoots a little)


def test_all_outputs_from_one_forward_pass_equal_captum_per_output(music):
    model = model_of()
    net = SpectrogramNet(model, "concepts")
    spec = model.frontend(torch.from_numpy(np.stack([music[:3 * SR], music[SR:4 * SR]])))
    base = silence(model, spec.shape[-1]).expand_as(spec)
    fast = gradient_x_input_outputs(net, spec, base)
    for d in (0, 4):
        slow = gradient_x_input(net, spec, base, d).detach()[:, 0].numpy()
        np.testing.assert_allclose(fast[:, d], slow, atol=1e-6 * np.abs(slow).max())
    np.testing.assert_array_equal(attribute_outputs(gradient_x_input, net, spec, base, [4]), fast[:, [4]])


def test_maps_in_columns_sum_the_frames_and_tiles_attribute_each_frame_once(music):
    model = model_of()
    full = track_maps(model, music, METHODS["gradient_x_input"], sample_rate=SR)
    cols = track_maps(model, music, METHODS["gradient_x_input"], sample_rate=SR, frame_step=4)
    n = full.maps.shape[-1]
    assert cols.maps.shape[-1] == -(-n // 4)
    summed = np.add.reduceat(full.maps, np.arange(0, n, 4), axis=-1)
    np.testing.assert_allclose(cols.maps, summed, atol=1e-5 * np.abs(summed).max())
    np.testing.assert_allclose(cols.frame_times[0], 1.5 * 704 / SR)
    np.testing.assert_allclose(cols.spectrogram[:, 1], track_spectrogram(model, music)[:, 4:8].mean(1), atol=1e-5)
    tiles = track_maps(model, music, METHODS["gradient_x_input"], sample_rate=SR, hop_seconds=3.0)
    np.testing.assert_allclose(tiles.outputs, model.outputs_per_window(music, 3 * SR, 3 * SR).mean(0), atol=1e-5)


def test_black_box_report_explains_its_targets(tmp_path, music):
    path = write_report(model_of("black_box"), music[:4 * SR], tmp_path / "b.html", sample_rate=SR,
                        wav_dir=tmp_path / "wav", target="energy")
    data = page_json(path.read_text())
    assert data["concepts"] == [] and data["maps"][0]["names"] == data["targets"] and "slopes" not in data
    assert set(data["parts"]) == set(data["targets"])
    assert sorted(p.name for p in (tmp_path / "wav").iterdir()) == sorted(
        f"array_energy_{kind}_{end}.wav" for kind in ("time", "time-frequency") for end in ("part", "rest"))
    part, rest = (sf.read(tmp_path / "wav" / f"array_energy_time-frequency_{end}.wav")[0] for end in ("part", "rest"))
    (start, end), = data["parts"]["energy"]["spans"]
    window = music[int(round(start * SR)):int(round(end * SR))]
    assert np.max(np.abs(part + rest - window)) <= 1e-4  # the part and the rest are the window


def test_format_option_picks_the_report_and_each_format_its_method():
    args = build_parser().parse_args(["explain", "x.wav", "--report", "r.html", "--format", "png"])
    assert report_options(args)["format"] == "png" and report_options(args)["method"] is None
    assert report_options(build_parser().parse_args(["explain", "--report", "r.html"]))["format"] == "html"


# -- in Chromium ------------------------------------------------------------------------------------
class Page:
    """One headless Chromium tab on the report, with helpers to evaluate and click."""

    def __init__(self, url: str) -> None:
        ensure_chromium()
        self.profile = Path(tempfile.mkdtemp(prefix="chromium-profile-"))
        self.browser = launch(self.profile, extra=["--autoplay-policy=no-user-gesture-required"])
        target = self.browser.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        self.session = self.browser.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        for domain in ("Runtime", "Log", "Page", "Network"):
            self.browser.send(f"{domain}.enable", session=self.session)
        self.browser.send("Page.navigate", {"url": url}, session=self.session)
        self.browser.wait_for("Page.loadEventFired")

    def js(self, expression: str, timeout: float = 60):
        reply = self.browser.send("Runtime.evaluate", {"expression": expression, "awaitPromise": True,
                                                       "userGesture": True, "returnByValue": True},
                                  session=self.session, timeout=timeout)
        assert "exceptionDetails" not in reply, reply["exceptionDetails"]
        return reply["result"].get("value")

    def click(self, x: float, y: float) -> None:
        """A real mouse click (pressed and released) at viewport coordinates."""
        for kind in ("mousePressed", "mouseReleased"):
            self.browser.send("Input.dispatchMouseEvent", {"type": kind, "x": x, "y": y, "button": "left",
                                                           "clickCount": 1}, session=self.session)

    def click_element(self, selector: str, fraction_x: float = 0.5) -> None:
        box = self.js(f"""(() => {{ const e = document.querySelector({json.dumps(selector)});
            e.scrollIntoView({{block: "center"}}); const r = e.getBoundingClientRect();
            return [r.left, r.top, r.width, r.height]; }})()""")
        self.click(box[0] + fraction_x * box[2], box[1] + box[3] / 2)

    def wait(self, condition: str, timeout: float = 10.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = self.js(condition)
            if value:
                return value
            time.sleep(0.05)
        state = self.js("""(() => { const t = document.getElementById('track'), p = document.getElementById('part');
            return {track: [t.currentTime, t.paused, t.readyState], part: [p.currentTime, p.paused, p.readyState,
                    p.error && p.error.message], now: document.getElementById('now').textContent,
                    active: document.activeElement && document.activeElement.outerHTML.slice(0, 80)}; })()""")
        raise AssertionError(f"not true after {timeout} s: {condition}; page: {state}")

    def close(self) -> None:
        self.browser.close()
        shutil.rmtree(self.profile, ignore_errors=True)


@pytest.fixture(scope="module")
def page(report):
    page = Page(report.resolve().as_uri())
    page.js("window.midlevelReport.ready")
    page.js("document.getElementById('track').muted = true")
    page.wait("document.getElementById('track').readyState >= 1")
    yield page
    page.js("window.scrollTo(0, 0)")
    shot = page.browser.send("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True},
                             session=page.session)
    page.close()
    artifacts = ROOT / "artifacts"
    artifacts.mkdir(exist_ok=True)
    (artifacts / "report_interactive_screenshot.png").write_bytes(base64.b64decode(shot["data"]))


CURSOR = "parseFloat(document.querySelector('.cursor').style.left)"
STATE = "window.midlevelReport.state"


def test_page_opens_with_no_console_error_and_nothing_fetched(page):
    assert page.js("document.getElementById('track').duration") == pytest.approx(8.0, abs=0.05)
    assert page.js("document.getElementById('track').error") is None
    assert page.js("document.querySelectorAll('canvas').length") == 5
    fetched = [e["params"]["request"]["url"][:40] for e in page.browser.events
               if e.get("method") == "Network.requestWillBeSent"]
    assert all(url.startswith(("file:", "data:")) for url in fetched), fetched
    assert console_errors(page.browser.events) == []


def test_pressing_play_moves_the_cursor(page):
    page.js("window.midlevelReport.seek(0, false)")
    assert page.js(CURSOR) == 0
    page.click_element("#track", fraction_x=0.04)  # the native player's play button
    page.wait("document.getElementById('track').currentTime > 0.4")
    assert page.js(CURSOR) > 0
    page.js("document.getElementById('track').pause()")
    assert page.js(CURSOR) == pytest.approx(100 * page.js("document.getElementById('track').currentTime") / 8.0,
                                            abs=0.5)
    assert console_errors(page.browser.events) == []


def test_clicking_a_window_seeks_the_track_to_it(page):
    data = page.js("window.midlevelReport.data.windows")
    w = 3
    centre = (data["starts"][w] + data["length"] / 2) / page.js("window.midlevelReport.data.xmax")
    page.click_element("#contrib", fraction_x=centre)
    page.wait(f"{STATE}.window === {w}")
    now = page.js("document.getElementById('track').currentTime")
    assert data["starts"][w] <= now < data["starts"][w] + 1.0  # seeked to its start, maybe playing on
    assert page.js("parseFloat(document.querySelector('.mark').style.left)") == pytest.approx(100 * data["starts"][w] / 8)
    page.click_element("#map", fraction_x=0.25)  # the map seeks to the time under the click
    page.wait("Math.abs(document.getElementById('track').currentTime - 2.0) < 0.6")
    page.js("document.getElementById('track').pause()")
    assert console_errors(page.browser.events) == []


def test_switching_the_target_changes_the_contributions_shown(page):
    data = page.js("window.midlevelReport.data")
    before = page.js("[document.getElementById('contrib').toDataURL(), document.getElementById('sum').innerText,"
                     " document.getElementById('map').toDataURL()]")
    assert "tension" in before[1]
    t = data["targets"].index("valence")
    page.click_element(f"#targets button[data-t='{t}']")
    page.wait(f"{STATE}.target === {t}")
    after = page.js("[document.getElementById('contrib').toDataURL(), document.getElementById('sum').innerText,"
                    " document.getElementById('map').toDataURL()]")
    assert after[0] != before[0] and after[2] != before[2]  # the bars over time and the target's map
    text = after[1]
    assert "valence" in text and "tension" not in text
    for k in range(len(data["concepts"])):  # the track's equation lists the new target's terms
        value = data["trackContributions"][t][k]
        assert f"{'−' if value < 0 else '+'}{abs(value):.3f}" in text
    assert f"{data['trackTargets'][t]:.3f}" in text
    page.click_element(".term[data-k='2']")  # a concept: its map, and its bars drawn solid
    page.wait(f"{STATE}.concept === 2 && {STATE}.mapOf === 'concept'")
    assert page.js("document.getElementById('map-title').textContent").startswith(f"Where {data['concepts'][2]}")
    assert console_errors(page.browser.events) == []


def test_listen_buttons_play_the_window_and_the_part(page):
    data = page.js("window.midlevelReport.data")
    name = data["concepts"][1]
    (start, end), = data["parts"][name]["spans"]
    page.click_element(f"button.when[data-name='{name}']")
    page.wait(f"!document.getElementById('track').paused && {STATE}.spans !== null")
    now = page.js("document.getElementById('track').currentTime")
    assert start - 0.01 <= now <= end
    page.js("document.getElementById('part').muted = true")
    page.click_element(f"button.what[data-name='{name}']")
    page.wait("document.getElementById('part').currentTime > 0.1")
    assert page.js("document.getElementById('track').paused")
    assert page.js("document.getElementById('part').src").startswith("data:audio/ogg;base64,")
    page.js("document.getElementById('part').pause()")
    assert console_errors(page.browser.events) == []


def test_a_black_box_page_with_two_methods_switches_between_them(tmp_path, music):
    path = write_report(model_of("black_box"), music[:5 * SR], tmp_path / "b.html", sample_rate=SR, posthoc=["saliency"])
    page = Page(path.resolve().as_uri())
    try:
        page.js("window.midlevelReport.ready")
        assert page.js("[...document.querySelectorAll('#method option')].map((o) => o.textContent)") == [
            "gradient x input", "saliency"]
        before = page.js("document.getElementById('map').toDataURL()")
        page.js("const s = document.getElementById('method'); s.value = '1'; s.dispatchEvent(new Event('change'))")
        assert page.js(f"{STATE}.method") == 1 and page.js("document.getElementById('map').toDataURL()") != before
        assert page.js("document.getElementById('concepts-section').hidden")
        assert "black box" in page.js("document.getElementById('sum').innerText")
        assert console_errors(page.browser.events) == []
    finally:
        page.close()


def test_refusals_come_before_any_work(tmp_path):
    model = model_of()
    with pytest.raises(ConfigError, match="unknown method 'shap'"):
        write_report(model, np.zeros(SR, np.float32), tmp_path / "r.html", sample_rate=SR, posthoc=["shap"])
    with pytest.raises(ConfigError, match="listen: 'joy' is neither"):
        write_report(model, np.zeros(SR, np.float32), tmp_path / "r.html", sample_rate=SR, listen="joy")
    with pytest.raises(ConfigError, match="format: 'pdf'"):
        write_report(model, np.zeros(SR, np.float32), tmp_path / "r.html", sample_rate=SR, format="pdf")
    assert not (tmp_path / "r.html").exists()
