"""leaderboard.html from hand-made frames (the ``bench.results`` columns): self-contained, escaped, marked, stable."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd

from bench.report.html_page import render_html

WC = "worst-case 4/255"
PNG = b"\x89PNG\r\n\x1a\nfake"


def board(**keys: list[object]) -> pd.DataFrame:
    """Three detectors in rank order; one flagged, one without a clean AUROC, one with a link that is not http(s)."""
    return pd.DataFrame({
        "rank": [1, 2, 3], "detector": ["cobra", "<b>ad</b>", "knn"], **keys,
        "paper": pd.array(["COBRA", "A & B", "K"], dtype="string"),
        "venue": pd.array(["ICLR 2024", None, None], dtype="string"),
        "link": pd.array(["https://x.org/cobra", None, "javascript:alert(1)"], dtype="string"),
        "adv_trained": pd.array([True, None, False], dtype="boolean"),
        "clean": [93.0, np.nan, 80.0], WC: [88.25, 40.0, 40.0], "passes/image": [np.nan] * 3,
        "paper clean": [93.1, np.nan, np.nan], "paper robust": [89.6, np.nan, np.nan],
        "clean std": [0.5, np.nan, 0.25], f"{WC} std": [1.0, 2.0, 3.0],
        "clean flags": [[], [], []], f"{WC} flags": [[], ["zero-gradients:0.42", "odd<flag>"], []],
    })  # fmt: skip


def page() -> str:
    manifest = {"run_key": "k1", "run": "runs/a", "command": "run_bench.py --out '<x>'", "git_sha": "abc",
                "git_dirty": False, "packages": {"torch": "2.14.1"}, "config": {"eps": [4]}}  # fmt: skip
    figures = {"robust_vs_eps_digits.png": PNG, "scores_cobra.png": PNG, "odd.png": PNG}
    per_class = board(normal_class=[0, 0, 0], **{"class": ["zero"] * 3})
    members = pd.DataFrame({
        "detector": ["cobra"] * 2, "column": [WC] * 2, "member": ["pgd", "apgd-<c>"], "robust": [88.25, np.nan],
        "robust std": [0.5, np.nan], "share": [100.0, np.nan], "share std": [np.nan] * 2, "skipped": ["", "no `x`"],
    })  # fmt: skip
    manifests = [manifest, {"run": "runs/b"}]
    return render_html({"digits": board()}, {"digits": per_class}, manifests, figures, members={"digits": members})


def test_page_is_self_contained_escaped_marked_and_byte_stable() -> None:
    html = page()
    assert html == page()
    assert re.search(r"<(link|iframe|object|embed)\b|@import|url\(", html) is None
    assert set(re.findall(r'\bsrc="([^,"]*),', html)) == {"data:image/png;base64"} and html.count("<img ") == 3
    assert set(re.findall(r'href="([^"]*)"', html)) == {"#flags", "#plots", "#provenance", "https://x.org/cobra"}
    assert "<b>" not in html and "&lt;b&gt;ad&lt;/b&gt;" in html and "A &amp; B" in html and "odd&lt;flag&gt;" in html
    assert (
        "--out &#x27;&lt;x&gt;&#x27;" in html and "abc (clean)" in html and "runs/b" in html and "torch: 2.14.1" in html
    )
    rows = re.findall(r"<tr>(.*?)</tr>", html.split("<tbody>", 2)[1])
    assert rows[0].startswith('<td data-value="1.0">1</td><td class="text">cobra</td><td class="text paper"><a href=')
    assert '<td class="best" data-value="88.25">88.2<span class="spread"> ± 1.0</span></td>' in rows[0]
    assert '<td data-value="93.1">93.1</td><td data-value="89.6">89.6</td>' in rows[0]  # paper numbers: unmarked
    assert '<td class="second flagged" data-value="40.0">40.0' in rows[1] and '<td data-value="">—</td>' in rows[1]
    assert '<td class="text paper">K</td>' in rows[2]  # a javascript: link is no link
    assert "Paper robust</th>" in html and "Passes/image</th>" not in html and "std</th>" not in html
    assert html.count('class="flag"') == 2 * 2 + 2  # two badges in each table, two in the legend
    assert '<details class="per-class"><summary>digits: per class (3 rows)</summary>' in html
    assert "± = std over seeds" in html and "bootstrap interval" not in html
    assert '<td data-value="88.25">88.2 ± 0.5</td><td data-value="100.0">100.0</td><td class="text"></td>' in html
    assert '<td class="text">apgd-&lt;c&gt;</td><td data-value="">—</td>' in html and "skipped: no `x`</td>" in html
