"""Compile the generated LaTeX (leaderboard, macros, per-class table) with pdflatex and read the PDF back."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from matplotlib.image import imread

from bench import results
from bench.report.latex import render_leaderboard_tex, render_macros, render_perclass_tex
from bench.report.model import build_report
from bench.store import Record, RunStore

pytestmark = pytest.mark.skipif(
    not all(shutil.which(tool) for tool in ("pdflatex", "pdftotext", "pdftoppm")),
    reason="needs pdflatex (texlive-latex-base, texlive-latex-recommended) and poppler-utils",
)

DOCUMENT = r"""\documentclass{article}
\usepackage[T1]{fontenc}
\usepackage{lmodern}
\usepackage{booktabs}
\usepackage[margin=1cm,landscape]{geometry}
\begin{document}
\input{leaderboard_macros.tex}
\input{leaderboard.tex}
\input{leaderboard_perclass.tex}
\input{leaderboard_intervals.tex}
Macro check: \aBOneZeroZeroDigitsPgdFourOverTwoFiveFiveRobust{} and \deepSvddDigitsClean{}.
\end{document}
"""


def records(seeds: tuple[int, ...] = (0, 1)) -> list[Record]:
    """Two detectors with LaTeX-hostile names, two classes, two seeds, one flagged cell."""
    out = []
    for detector, clean, robust in (("deep_svdd", 0.9, 0.3124), ("a&b 100%", 0.95, 0.8126)):
        for cls in (0, 1):
            for seed in seeds:
                out.append(Record(
                    dataset="digits", normal_class=cls, class_name=f"c_{cls}", detector=detector, seed=seed,
                    attack="pgd", norm="linf", eps=4 / 255, clean_auroc=clean, robust_auroc=robust + 0.01 * seed,
                    flags=["zero-gradients"] if "svdd" in detector else [], key=f"{detector}{cls}{seed}",
                    n_normal=10, n_anomaly=10,
                ))  # fmt: skip
    return out


def test_generated_latex_compiles_and_shows_the_numbers(tmp_path: Path) -> None:
    report = build_report(results.frame_of(records()), [{"run_key": "smoke_1a2b", "preset": "smoke", "run": "x"}])
    (tmp_path / "leaderboard.tex").write_text(render_leaderboard_tex(report))
    (tmp_path / "leaderboard_macros.tex").write_text(render_macros(report))
    (tmp_path / "leaderboard_perclass.tex").write_text(render_perclass_tex(report))
    one_seed = RunStore(tmp_path / "run")
    labels = np.r_[np.zeros(10, bool), np.ones(10, bool)]
    for record in records(seeds=(0,)):
        one_seed.save_scores(record.key, clean=labels + np.linspace(-1, 1, 20), adv=labels - np.linspace(-1, 1, 20),
                             is_anomaly=labels)  # fmt: skip
    with_scores = build_report(results.frame_of(records(seeds=(0,)), one_seed.root), [{"run_key": "ci_run"}])
    (tmp_path / "leaderboard_intervals.tex").write_text(render_leaderboard_tex(with_scores, intervals=True))
    (tmp_path / "doc.tex").write_text(DOCUMENT)
    run = subprocess.run(
        ["pdflatex", "-interaction=nonstopmode", "-halt-on-error", "doc.tex"],
        cwd=tmp_path, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert run.returncode == 0, run.stdout[-3000:]
    text = subprocess.run(["pdftotext", "-layout", "doc.pdf", "-"], cwd=tmp_path, capture_output=True, text=True)
    words = text.stdout
    legend = "zero-gradients: many inputs had all-zero"
    for expected in (
        "deep_svdd",
        "a&b 100%",
        "smoke_1a2b",
        "81.8",
        "31.7",
        "±0.7",
        "Macro check: 81.8 and 90.0",
        legend,
    ):
        assert expected in words, expected
    assert "c_0" in words and "Mean" in words and re.search(r"95\.0/\s*81\.8\s+90\.0/31\.7", words)
    assert "ci_run" in words and re.search(r"81\.3 ±\d+\.\d", words) and "half-width of the 95%" in words, words
    subprocess.run(["pdftoppm", "-png", "-r", "60", "-f", "1", "-l", "1", "doc.pdf", "page"], cwd=tmp_path, check=True)
    page = imread(next(tmp_path.glob("page*.png")))
    assert page.shape[0] > 200 and np.var(page[..., :3]) > 1e-3
