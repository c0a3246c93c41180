"""Open leaderboard.html in headless Chromium and sort a table by clicking its headers.

Chromium is driven over the DevTools protocol on a pipe (``--remote-debugging-pipe``: fd 3 carries commands in,
fd 4 carries replies out, each JSON message ended by a NUL byte), so no port is opened and no extra package
(selenium) is needed. Clicks are real mouse events at the header's on-screen position.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import select
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from bench.report.html_page import render_html
from bench.report.model import build_leaderboard
from bench.store import Record

BROWSER = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
pytestmark = pytest.mark.skipif(BROWSER is None, reason="needs chromium (apt-get install chromium)")
FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
    "--disable-sync", "--no-first-run", "--disable-extensions", "--remote-debugging-pipe", "--window-size=1200,900",
]  # fmt: skip


class PipeBrowser:
    """A headless Chromium and a minimal DevTools-protocol client over its debugging pipe."""

    def __init__(self, url: str, profile: Path) -> None:
        to_browser_r, self._to_browser = os.pipe()
        self._from_browser, from_browser_w = os.pipe()

        def wire_fds() -> None:  # runs in the child: the pipe ends become fds 3 and 4
            high_r = fcntl.fcntl(to_browser_r, fcntl.F_DUPFD, 100)
            high_w = fcntl.fcntl(from_browser_w, fcntl.F_DUPFD, 100)
            os.dup2(high_r, 3)
            os.dup2(high_w, 4)

        self.proc = subprocess.Popen(
            [BROWSER, *FLAGS, f"--user-data-dir={profile}", url],
            preexec_fn=wire_fds, pass_fds=(3, 4), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        os.close(to_browser_r)
        os.close(from_browser_w)
        self._buffer = b""
        self._next_id = 0
        self.session = self._attach_to_page()

    def _read_message(self, deadline: float) -> dict[str, Any]:
        while b"\0" not in self._buffer:
            ready, _, _ = select.select([self._from_browser], [], [], max(deadline - time.monotonic(), 0))
            if not ready:
                raise TimeoutError("no reply from chromium")
            chunk = os.read(self._from_browser, 1 << 16)
            if not chunk:
                raise RuntimeError("chromium closed its debugging pipe")
            self._buffer += chunk
        message, self._buffer = self._buffer.split(b"\0", 1)
        return json.loads(message)

    def send(self, method: str, params: dict | None = None, session: str | None = None, timeout: float = 30) -> dict:
        """Send one command and return its result (events received meanwhile are dropped)."""
        self._next_id += 1
        message = {"id": self._next_id, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        os.write(self._to_browser, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while True:
            reply = self._read_message(deadline)
            if reply.get("id") == self._next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply["result"]

    def _attach_to_page(self) -> str:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            pages = [t for t in self.send("Target.getTargets")["targetInfos"] if t["type"] == "page"]
            if pages:
                return self.send("Target.attachToTarget", {"targetId": pages[0]["targetId"], "flatten": True})[
                    "sessionId"
                ]
            time.sleep(0.1)
        raise TimeoutError("chromium opened no page")

    def evaluate(self, expression: str) -> Any:
        """The JSON value of a JavaScript expression in the page."""
        result = self.send("Runtime.evaluate", {"expression": expression, "returnByValue": True}, self.session)
        return result["result"].get("value")

    def wait_for(self, expression: str, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while not self.evaluate(expression):
            if time.monotonic() > deadline:
                raise TimeoutError(f"page never satisfied {expression}")
            time.sleep(0.1)

    def click(self, x: float, y: float) -> None:
        """A left mouse click at page coordinates (x, y)."""
        for kind in ("mousePressed", "mouseReleased"):
            params = {"type": kind, "x": x, "y": y, "button": "left", "clickCount": 1}
            self.send("Input.dispatchMouseEvent", params, self.session)

    def close(self) -> None:
        with contextlib.suppress(RuntimeError, TimeoutError, OSError):
            self.send("Browser.close", timeout=5)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        os.close(self._to_browser)
        os.close(self._from_browser)


def records() -> list[Record]:
    """Three detectors whose clean, robust and alphabetical orders all differ, and one whose cell failed."""
    values = {"alpha": (0.99, 0.30), "beta": (0.50, 0.90), "gamma": (0.70, 0.60), "delta": (None, None)}
    out = []
    for detector, (clean, robust) in values.items():
        out.append(Record(
            dataset="digits", normal_class=0, class_name="0", detector=detector, seed=0, attack="pgd", norm="linf",
            eps=4 / 255, clean_auroc=clean, robust_auroc=robust,
            flags=["zero-gradients"] if detector == "gamma" else [], key=detector,
            status="ok" if robust is not None else "failed",
        ))  # fmt: skip
    return out


HEADER_CENTRE = """(() => {{
  const th = Array.from(document.querySelectorAll("table.sortable th")).find(h => h.textContent.trim() === {label!r});
  const r = th.getBoundingClientRect();
  return [r.left + r.width / 2, r.top + r.height / 2];
}})()"""
ROW_ORDER = 'Array.from(document.querySelectorAll("table.sortable tbody tr")).map(r => r.cells[0].textContent)'


def test_clicking_headers_sorts_the_table(tmp_path: Path) -> None:
    page = tmp_path / "leaderboard.html"
    page.write_text(render_html(build_leaderboard(records(), {"run_key": "k"})))
    browser = PipeBrowser(page.as_uri(), tmp_path / "profile")
    try:
        browser.wait_for('document.readyState === "complete" && document.querySelectorAll("table.sortable").length')
        assert browser.evaluate(ROW_ORDER) == ["alpha", "beta", "delta", "gamma"]

        def click_header(label: str) -> list[str]:
            browser.click(*browser.evaluate(HEADER_CENTRE.format(label=label)))
            return browser.evaluate(ROW_ORDER)

        assert click_header("pgd 4/255") == ["beta", "gamma", "alpha", "delta"]  # descending; no value last
        assert click_header("pgd 4/255") == ["delta", "alpha", "gamma", "beta"]  # second click: ascending
        assert click_header("Clean") == ["alpha", "gamma", "beta", "delta"]
        assert click_header("Detector") == ["alpha", "beta", "delta", "gamma"]
        assert browser.evaluate('document.querySelector("th[aria-sort]").textContent') == "Detector"
        tooltip = browser.evaluate('document.querySelector("td.flagged").title')
        assert tooltip.startswith("zero-gradients:")
    finally:
        browser.close()
