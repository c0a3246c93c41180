"""Open leaderboard.html in headless Chromium: ranked rows, sorting by clicking headers, flag badges and their
legend, decoded embedded plots, no network request; a screenshot of the whole page is saved.

Chromium is driven over the DevTools protocol on a pipe (``--remote-debugging-pipe``: fd 3 carries commands in,
fd 4 carries replies out, each JSON message ended by a NUL byte), so no port is opened and no extra package
(selenium) is needed. Clicks are real mouse events at the header's on-screen position. The screenshot goes to
``tmp_path`` and, when ``ROBUST_AD_BENCH_SCREENSHOT`` names a path, there too.
"""

from __future__ import annotations

import base64
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

import numpy as np
import pandas as pd
import pytest

from bench.report.html_page import render_html
from bench.report.model import FLAG_DESCRIPTIONS
from bench.report.plots import figures
from bench.store import Record, RunStore

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

    def screenshot(self) -> bytes:
        """A PNG of the whole page (beyond the window)."""
        size = self.send("Page.getLayoutMetrics", session=self.session)["cssContentSize"]
        clip = {"x": 0, "y": 0, "width": size["width"], "height": size["height"], "scale": 1}
        params = {"format": "png", "clip": clip, "captureBeyondViewport": True}
        return base64.b64decode(self.send("Page.captureScreenshot", params, self.session)["data"])

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


WC, PGD = "worst-case 4/255", "pgd 4/255"
#: Per detector (rank order): clean, worst-case and pgd AUROC (%); rank, clean and name orders all differ.
AUROC = {"beta": (50.0, 90.0, 91.0), "gamma": (40.0, 60.0, 62.0), "alpha": (99.0, 30.0, 35.0), "delta": (None,) * 3}
FLAG = "zero-gradients:0.42"


def frame_row(rank: int, detector: str, values: tuple[float | None, ...], **keys: object) -> dict[str, object]:
    """One row as ``bench.results.leaderboard`` gives it: AUROC columns with ``ci`` and ``flags`` companions."""
    paper = {"paper": f"{detector.title()} <robust> AD", "venue": "X 2024", "link": "https://example.org/paper"}
    row = {"rank": rank, "detector": detector, **keys, **paper, "adv_trained": detector == "beta"}
    for column, value in zip(("clean", WC, PGD), values, strict=True):
        row[column] = np.nan if value is None else value
        row[f"{column} ci"] = None if value is None else (value - 2.0, value + 3.0)
        row[f"{column} flags"] = [FLAG] if (detector, column) == ("gamma", WC) else []
    row |= {"passes/image": np.nan, "paper clean": 93.1 if detector == "gamma" else np.nan, "paper robust": np.nan}
    return row


def frames() -> tuple[pd.DataFrame, pd.DataFrame]:
    """The leaderboard and the per-class frame (two classes) of dataset ``digits``."""
    ranked = list(enumerate(AUROC.items(), start=1))
    board = pd.DataFrame([frame_row(i, d, v) for i, (d, v) in ranked])
    classes = [frame_row(i, d, v, normal_class=c, **{"class": f"digit {c}"}) for c in (0, 1) for i, (d, v) in ranked]
    return board, pd.DataFrame(classes)


def save_scores(store: RunStore, key: str, rng: np.random.Generator) -> None:
    """Seeded per-sample scores (an attack pushing normals up and anomalies down) and three example images."""
    labels = np.r_[np.zeros(30, bool), np.ones(30, bool)]
    scores = rng.normal(size=60) + 2.0 * labels
    images = rng.random((3, 3, 16, 16))
    adv = np.clip(images + (4 / 255) * np.sign(rng.normal(size=images.shape)), 0, 1)
    store.save_scores(key, clean=scores, adv=scores + np.where(labels, -1.0, 1.0), is_anomaly=labels,
                      examples_clean=images.astype(np.float16), examples_adv=adv.astype(np.float16))  # fmt: skip


def run_figures(run_dir: Path) -> dict[str, bytes]:
    """Figures from records matching the table (as fractions), with scores and examples for two cells."""
    store, rng = RunStore(run_dir), np.random.default_rng(0)
    records = []
    for detector, (clean, wc, pgd) in AUROC.items():
        for attack, robust in (("worst-case", wc), ("pgd", pgd)):
            if clean is None:
                continue
            key = f"{detector}-{attack}"
            records.append(Record(
                dataset="digits", normal_class=0, detector=detector, seed=0, attack=attack, norm="linf", eps=4 / 255,
                key=key, clean_auroc=clean / 100, robust_auroc=robust / 100,
            ))  # fmt: skip
            if detector in ("alpha", "gamma") and attack == "pgd":
                save_scores(store, key, rng)
    return figures(records, [run_dir])


MANIFESTS = [
    {"run_key": "91eedd81", "preset": "smoke", "command": "python run_bench.py --preset smoke --out /tmp/a",
     "git_sha": "66eff4300bc40bc53e52297acaedeb2dd47614fa", "git_dirty": True, "packages": {"torch": "2.14.1"},
     "devices": ["cpu: Intel(R) Xeon(R) Processor, 2 cores"], "executor": {"name": "local", "threads": 1},
     "started": "2026-12-01T11:38:34+00:00", "finished": "2026-12-01T11:39:04+00:00"},
    {"run_key": "0c0ffee0", "command": "python run_bench.py --preset quick", "git_sha": "f9819cf", "git_dirty": False},
]  # fmt: skip
ORDER = 'Array.from(document.querySelectorAll("table.sortable")[0].tBodies[0].rows).map(r => r.cells[1].textContent)'
HEADER_CENTRE = """(() => {{
  const th = Array.from(document.querySelectorAll("table.sortable")[0].tHead.rows[0].cells)
    .find(h => h.textContent.trim() === {label!r});
  const r = th.getBoundingClientRect();
  return [r.left + r.width / 2, r.top + r.height / 2];
}})()"""
IMAGES = "Array.from(document.images).map(i => [i.alt, i.complete && i.naturalWidth > 0 && i.naturalHeight > 0])"


def test_page_ranks_sorts_badges_embeds_plots_and_screenshots(tmp_path: Path) -> None:
    board, classes = frames()
    pngs = run_figures(tmp_path / "run")
    page = tmp_path / "leaderboard.html"
    page.write_text(render_html({"digits": board}, {"digits": classes}, MANIFESTS, pngs))
    browser = PipeBrowser(page.as_uri(), tmp_path / "profile")
    try:
        browser.wait_for('document.readyState === "complete" && document.querySelectorAll("table.sortable").length')
        best = board.loc[board[WC].idxmax(), "detector"]
        assert browser.evaluate(ORDER) == ["beta", "gamma", "alpha", "delta"] and browser.evaluate(ORDER)[0] == best
        assert browser.evaluate('document.querySelector("th[aria-sort]").textContent') == "Rank"

        def click_header(label: str) -> list[str]:
            browser.click(*browser.evaluate(HEADER_CENTRE.format(label=label)))
            return browser.evaluate(ORDER)

        assert click_header(WC) == ["beta", "gamma", "alpha", "delta"]  # descending first; no value last
        assert click_header(WC) == ["alpha", "gamma", "beta", "delta"]  # second click: ascending, no value still last
        assert click_header("Clean") == ["alpha", "beta", "gamma", "delta"]
        assert click_header("Detector") == ["alpha", "beta", "delta", "gamma"]
        assert click_header("Rank") == ["beta", "gamma", "alpha", "delta"]  # rank: ascending first
        badge = browser.evaluate(
            '(b => [b.textContent, b.title, b.closest("td").className])(document.querySelector("table span.flag"))'
        )
        assert badge == ["zero-gradients", f"{FLAG}: {FLAG_DESCRIPTIONS['zero-gradients']}", "second flagged"]
        legend = browser.evaluate('document.querySelector("#flags dl.legend").textContent')
        assert legend == f"zero-gradients{FLAG_DESCRIPTIONS['zero-gradients']}"
        assert browser.evaluate('document.querySelectorAll("details table.sortable tbody tr").length') == 8
        images = browser.evaluate(IMAGES)
        assert sorted(alt for alt, _ in images) == sorted(pngs) and all(ok for _, ok in images)
        assert browser.evaluate('performance.getEntriesByType("resource").length') == 0  # nothing fetched
        provenance = browser.evaluate('document.querySelector("#provenance").innerText')
        assert "Run 91eedd81" in provenance and "Run 0c0ffee0" in provenance and "(dirty" in provenance
        browser.evaluate('document.querySelectorAll("details:has(table.sortable)").forEach(d => { d.open = true; })')
        shot = browser.screenshot()
    finally:
        browser.close()
    assert shot.startswith(b"\x89PNG\r\n\x1a\n") and len(shot) > 10_000
    (tmp_path / "leaderboard.png").write_bytes(shot)
    if target := os.environ.get("ROBUST_AD_BENCH_SCREENSHOT"):
        Path(target).parent.mkdir(parents=True, exist_ok=True)
        Path(target).write_bytes(shot)
