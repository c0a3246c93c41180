"""Report figures: distinct styles for 20 detectors, a legend outside the axes, deterministic PNG bytes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from bench.report.plots import detector_styles, figures, robust_vs_eps_figure, write_plots
from bench.store import Record, RunStore

PNG = b"\x89PNG\r\n\x1a\n"
DETECTORS = [f"det-{i:02d}" for i in range(20)]


def record(detector: str, attack: str, eps: float, robust: float, dataset: str = "digits") -> Record:
    key = f"{dataset}-{detector}-{attack}-{round(eps * 255)}"
    return Record(
        dataset=dataset, normal_class=0, class_name="zero", detector=detector, seed=0, attack=attack, norm="linf",
        eps=eps, key=key, clean_auroc=0.95, robust_auroc=robust, n_normal=20, n_anomaly=20,
    )  # fmt: skip


def grid(detectors: list[str]) -> list[Record]:
    """Per detector: pgd and the worst case at 2/255 and 4/255, AUROC falling with eps at a detector's own rate."""
    return [
        record(d, attack, k / 255, 0.9 - 0.01 * i * k - (0.05 if attack == "worst-case" else 0.0))
        for i, d in enumerate(detectors)
        for attack in ("pgd", "worst-case")
        for k in (2, 4)
    ]


def save_scores(run_dir: Path, records: list[Record]) -> None:
    """Seeded per-sample scores and example images for each record."""
    store = RunStore(run_dir)
    rng = np.random.default_rng(0)
    for r in records:
        labels = np.r_[np.zeros(20, bool), np.ones(20, bool)]
        clean = rng.normal(size=40) + 2.0 * labels
        images = rng.random((3, 1, 8, 8))
        adv = np.clip(images + (4 / 255) * np.sign(rng.normal(size=images.shape)), 0, 1)
        store.save_scores(r.key, clean=clean, adv=clean + np.where(labels, -1.0, 1.0), is_anomaly=labels,
                          examples_clean=images.astype(np.float16), examples_adv=adv.astype(np.float16))  # fmt: skip


def test_twenty_detectors_get_distinct_colour_marker_pairs_and_a_legend_outside() -> None:
    styles = detector_styles(reversed(DETECTORS))
    assert list(styles) == DETECTORS and styles == detector_styles(DETECTORS)
    assert len(set(styles.values())) == 20 and len({colour for colour, _ in styles.values()}) == 20
    fig = robust_vs_eps_figure(grid(DETECTORS), "digits", styles)
    fig.canvas.draw()
    axes = [ax for ax in fig.axes if ax.get_visible()]
    assert [ax.get_title() for ax in axes] == ["digits: worst-case (linf)", "digits: pgd (linf)"]
    drawn = {(line.get_color(), line.get_marker()) for line in axes[0].get_lines() if line.get_marker() != "None"}
    assert drawn == set(styles.values())
    (legend,) = fig.legends
    assert [text.get_text() for text in legend.get_texts()] == DETECTORS
    assert [(h.get_color(), h.get_marker()) for h in legend.legend_handles] == list(styles.values())
    right_edge = max(ax.get_window_extent().x1 for ax in axes)
    assert legend.get_window_extent().x0 >= right_edge


def test_figures_are_deterministic_pngs_from_records_or_a_frame(tmp_path: Path) -> None:
    records = [*grid(["a", "b", "c"]), record("a", "pgd", 4 / 255, 0.5, dataset="shapes")]
    run, empty = tmp_path / "run", tmp_path / "empty"
    save_scores(run, [r for r in records if r.detector in ("a", "b")])
    pngs = figures(records, [run])
    assert sorted(pngs) == [
        "examples_a.png", "examples_b.png", "robust_vs_eps_digits.png", "robust_vs_eps_shapes.png", "scores_a.png",
        "scores_b.png",
    ]  # fmt: skip
    assert all(data.startswith(PNG) for data in pngs.values())
    frame = pd.DataFrame([r.to_dict() for r in records]).assign(run=str(run))
    assert figures(frame, [empty, run]) == pngs  # same bytes from a frame, scores found in a later run folder
    written = write_plots(records, run)
    assert {p.name: p.read_bytes() for p in written} == pngs
    assert sorted(p.name for p in (run / "plots").iterdir()) == sorted(pngs)
