"""The static HTML report (``--format png``) in a real headless Chromium: no console errors, images decode,
audio plays. The interactive report's browser tests are in ``test_report_interactive`` and use this driver.

Chromium is driven through the DevTools protocol over ``--remote-debugging-pipe`` (NUL-separated
JSON on file descriptors 3 and 4), so no websocket client or other dependency is needed.
The page screenshot is kept under ``artifacts/`` (gitignored) and its path printed.
"""

from __future__ import annotations

import base64
import fcntl
import json
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from midlevel import ModelConfig, TwoStageModel, example_clip, load_audio
from midlevel.explain.report import write_report

CHROMIUM = Path("/usr/bin/chromium")
ROOT = Path(__file__).resolve().parents[1]
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--remote-debugging-pipe", "--window-size=1100,900"]

# Waits for every image to decode and every <audio> to load its metadata, then plays each one
# muted for a moment: a source that does not play fails here, not only one that does not load.
CHECK_PAGE = """(async () => {
  const images = await Promise.all([...document.images].map(async (im) => {
    try { await im.decode(); return {ok: im.naturalWidth > 0 && im.naturalHeight > 0, width: im.naturalWidth}; }
    catch (e) { return {ok: false, error: String(e)}; }
  }));
  const audios = [];
  for (const a of document.querySelectorAll('audio')) {
    const source = a.querySelector('source');
    const result = {type: source ? source.type : '', canPlay: a.canPlayType(source ? source.type : '')};
    result.loaded = await new Promise((resolve) => {
      if (a.readyState >= 1) return resolve(true);
      a.addEventListener('loadedmetadata', () => resolve(true), {once: true});
      (source || a).addEventListener('error', () => resolve(false), {once: true});
      setTimeout(() => resolve(false), 20000);
      a.load();
    });
    a.muted = true;
    try { await a.play(); await new Promise(r => setTimeout(r, 300)); result.played = a.currentTime > 0; a.pause(); }
    catch (e) { result.played = false; result.playError = String(e); }
    Object.assign(result, {duration: a.duration, error: a.error ? a.error.code : null, src: a.currentSrc.slice(0, 30)});
    audios.push(result);
  }
  return {images, audios, title: document.title};
})()"""


class DevTools:
    """A minimal DevTools-protocol client over Chromium's debugging pipe."""

    def __init__(self, proc: subprocess.Popen, write_fd: int, read_fd: int) -> None:
        self.proc, self.write_fd, self.read_fd = proc, write_fd, read_fd
        self.buffer, self.next_id, self.events = b"", 0, []

    def _read_message(self, deadline: float) -> dict:
        while b"\0" not in self.buffer:
            if time.monotonic() > deadline:
                raise TimeoutError("Chromium did not answer in time")
            chunk = os.read(self.read_fd, 1 << 16)
            if not chunk:
                raise RuntimeError(f"Chromium closed the pipe (exit code {self.proc.poll()})")
            self.buffer += chunk
        raw, self.buffer = self.buffer.split(b"\0", 1)
        return json.loads(raw)

    def send(self, method: str, params: dict | None = None, session: str | None = None, timeout: float = 60) -> dict:
        self.next_id += 1
        message = {"id": self.next_id, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        os.write(self.write_fd, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while True:
            reply = self._read_message(deadline)
            if reply.get("id") == self.next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply["result"]
            self.events.append(reply)

    def close(self) -> None:
        """Ask Chromium to quit (it may close the pipe before answering), kill it if it does not."""
        try:
            self.send("Browser.close", timeout=10)
        except (RuntimeError, TimeoutError, OSError):
            pass
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        os.close(self.write_fd)
        os.close(self.read_fd)

    def wait_for(self, method: str, timeout: float = 60) -> dict:
        deadline = time.monotonic() + timeout
        for event in self.events:
            if event.get("method") == method:
                return event
        while True:
            event = self._read_message(deadline)
            self.events.append(event)
            if event.get("method") == method:
                return event


def _above_4(fd: int) -> int:
    """``fd`` itself, or a copy numbered 10 or more (the original closed) when it is one of 0-4."""
    if fd > 4:
        return fd
    copy = fcntl.fcntl(fd, fcntl.F_DUPFD, 10)
    os.close(fd)
    return copy


def launch(profile: Path, extra: list[str] | None = None) -> DevTools:
    """Start Chromium with our pipe ends as its fds 3 (commands in) and 4 (replies out); ``extra``: more flags."""
    to_chrome_r, to_chrome_w = os.pipe()
    from_chrome_r, from_chrome_w = os.pipe()
    # the script below moves two of them onto 3 and 4 and closes the originals: keep every original above 4
    to_chrome_r, to_chrome_w, from_chrome_r, from_chrome_w = (_above_4(fd) for fd in
                                                              (to_chrome_r, to_chrome_w, from_chrome_r, from_chrome_w))
    script = f'exec 3<&{to_chrome_r} 4>&{from_chrome_w} {to_chrome_r}<&- {from_chrome_w}>&-; exec "$@"'
    proc = subprocess.Popen(["bash", "-c", script, "chromium", str(CHROMIUM), *FLAGS, *(extra or []),
                             f"--user-data-dir={profile}"],
                            pass_fds=(to_chrome_r, from_chrome_w), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    os.close(to_chrome_r)
    os.close(from_chrome_w)
    return DevTools(proc, to_chrome_w, from_chrome_r)


def console_errors(events: list[dict]) -> list[str]:
    """Console errors, uncaught exceptions and browser log errors (failed loads, decoding...)."""
    errors = []
    for event in events:
        method, params = event.get("method"), event.get("params", {})
        if method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
            errors.append(" ".join(str(a.get("value", a.get("description"))) for a in params.get("args", [])))
        elif method == "Runtime.exceptionThrown":
            errors.append(params["exceptionDetails"].get("text", "exception"))
        elif method == "Log.entryAdded" and params["entry"].get("level") == "error":
            errors.append(params["entry"].get("text", ""))
    return errors


def ensure_chromium() -> None:
    if not CHROMIUM.exists():  # the test set-up installs it; do it here when run on its own
        subprocess.run(["bash", str(ROOT / "scripts" / "install-browser.sh")], check=False)
    assert CHROMIUM.exists(), "Chromium is missing: run scripts/install-browser.sh (as root)"


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    model = TwoStageModel(ModelConfig(name="browser-test", window_seconds=3.0, hop_seconds=1.5,
                                      metadata={"notes": ["randomly initialised: mechanics only"]})).eval()
    clip = load_audio(example_clip())
    audio = clip.samples[: 4 * clip.sample_rate]
    return write_report(model, audio, tmp_path_factory.mktemp("report") / "report.html", sample_rate=clip.sample_rate,
                        method="gradient_x_input", segment_seconds=1.0, n_segments=1, format="png")


def test_report_loads_cleanly_in_headless_chromium(report):
    ensure_chromium()
    profile = Path(tempfile.mkdtemp(prefix="chromium-profile-"))
    browser = launch(profile)
    try:
        target = browser.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = browser.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        for domain in ("Runtime", "Log", "Page"):
            browser.send(f"{domain}.enable", session=session)
        browser.send("Page.navigate", {"url": report.resolve().as_uri()}, session=session)
        browser.wait_for("Page.loadEventFired")
        checks = browser.send("Runtime.evaluate", {"expression": CHECK_PAGE, "awaitPromise": True, "userGesture": True,
                                                   "returnByValue": True}, session=session, timeout=120)
        assert "exceptionDetails" not in checks, checks
        page = checks["result"]["value"]
        shot = browser.send("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True},
                            session=session)
    finally:
        browser.close()
        shutil.rmtree(profile, ignore_errors=True)

    artifacts = ROOT / "artifacts"
    artifacts.mkdir(exist_ok=True)
    screenshot = artifacts / "report_screenshot.png"
    screenshot.write_bytes(base64.b64decode(shot["data"]))
    print(f"report screenshot: {screenshot}")

    assert console_errors(browser.events) == []
    assert "browser-test" in page["title"]
    # contribution bars, timeline, target map over the spectrogram, concept maps
    assert len(page["images"]) == 4 and all(im["ok"] for im in page["images"]), page["images"]
    assert len(page["audios"]) == 7, page["audios"]  # the excerpt + part and rest of three splits
    for audio in page["audios"]:
        assert audio["canPlay"] in ("maybe", "probably") and audio["loaded"] and audio["error"] is None, audio
        assert audio["played"], audio
        assert np.isclose(audio["duration"], 4.0, atol=0.01), audio
    assert screenshot.stat().st_size > 10_000
