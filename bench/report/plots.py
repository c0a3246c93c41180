"""plots/*.png: robust AUROC vs eps, clean vs adversarial score histograms, example images.

Figures are drawn on matplotlib's Agg canvas directly (no pyplot state, no display needed).
"""

from __future__ import annotations

import re
from collections import defaultdict
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from bench.config import format_eps
from bench.metrics import WORST_CASE, aggregate_clean, aggregate_robust
from bench.store import Record, RunStore

MAX_EXAMPLES = 4


def safe_name(text: str) -> str:
    """A file-name-safe version of a name."""
    return re.sub(r"[^A-Za-z0-9.-]+", "_", str(text)).strip("_") or "x"


def _figure(rows: int, cols: int, size: tuple[float, float]) -> tuple[Figure, np.ndarray]:
    """A Figure on an Agg canvas and its [rows, cols] array of axes."""
    fig = Figure(figsize=size)
    FigureCanvasAgg(fig)
    return fig, fig.subplots(rows, cols, squeeze=False)


def _save(fig: Figure, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    return path


def plot_robust_vs_eps(records: list[Record], dataset: str, path: Path) -> Path:
    """Robust AUROC (%) against eps, one panel per (attack, norm) (worst-case first), one line per detector; eps 0 =
    clean AUROC."""
    records = [r for r in records if r.dataset == dataset]
    robust, clean = aggregate_robust(records), aggregate_clean(records)
    panels = sorted({(a, n) for (_, _, (a, n, _)) in robust}, key=lambda panel: (panel[0] != WORST_CASE, panel))
    fig, axes = _figure(1, max(len(panels), 1), (4.5 * max(len(panels), 1), 3.4))
    for ax, (attack, norm) in zip(axes[0], panels, strict=False):
        for detector in sorted({d for (_, d, _) in robust}):
            points = {eps: s for (_, d, (a, n, eps)), s in robust.items() if (d, a, n) == (detector, attack, norm)}
            if not points:
                continue
            if 0.0 not in points and (dataset, detector) in clean:
                points[0.0] = clean[dataset, detector]
            eps = sorted(points)
            means = np.array([100 * points[e].mean for e in eps])
            stds = np.array([100 * (points[e].std or 0.0) for e in eps])
            (line,) = ax.plot([e * 255 for e in eps], means, marker="o", label=detector)
            if stds.any():
                ax.fill_between([e * 255 for e in eps], means - stds, means + stds, alpha=0.2, color=line.get_color())
        ax.set(title=f"{dataset}: {attack} ({norm})", xlabel="eps (×1/255)", ylabel="AUROC (%)", ylim=(-2, 102))
        ax.axhline(50, color="grey", linestyle=":", linewidth=1)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    return _save(fig, path)


def _representative_cells(records: list[Record], store: RunStore) -> dict[str, list[Record]]:
    """Per detector, one ok record with saved scores per (dataset, attack, norm): first class and seed, largest eps."""
    chosen: dict[tuple, Record] = {}
    order = sorted(
        (r for r in records if r.ok and store.scores_path(r.key).is_file()),
        key=lambda r: (r.normal_class, r.seed, -float(r.eps)),
    )
    for record in order:
        chosen.setdefault((record.detector, record.dataset, record.attack, record.norm), record)
    by_detector: dict[str, list[Record]] = defaultdict(list)
    for (detector, *_), record in sorted(chosen.items(), key=lambda item: tuple(map(str, item[0]))):
        by_detector[detector].append(record)
    return by_detector


def _cell_title(record: Record) -> str:
    name = record.class_name or record.normal_class
    return f"{record.dataset}/{name} {record.attack} eps={format_eps(float(record.eps))} seed={record.seed}"


def plot_score_histograms(detector: str, cells: list[Record], store: RunStore, path: Path) -> Path:
    """Clean vs adversarial score histograms of normals and anomalies, one panel per representative cell."""
    fig, axes = _figure(len(cells), 1, (6, 2.6 * len(cells)))
    for ax, record in zip(axes[:, 0], cells, strict=True):
        data = store.load_scores(record.key)
        anomaly = data["is_anomaly"].astype(bool)
        scores = np.concatenate([data["clean"], data["adv"]]).astype(np.float64)
        bins = np.histogram_bin_edges(scores[np.isfinite(scores)], bins=30)
        for group, mask, color in (("normal", ~anomaly, "tab:blue"), ("anomaly", anomaly, "tab:red")):
            clean_counts, _ = np.histogram(data["clean"][mask], bins=bins)
            adv_counts, _ = np.histogram(data["adv"][mask], bins=bins)
            ax.stairs(clean_counts, bins, fill=True, color=color, alpha=0.35, label=f"{group} clean")
            ax.stairs(adv_counts, bins, color=color, linewidth=1.8, label=f"{group} adv")
        ax.set(title=f"{detector}: {_cell_title(record)}", xlabel="anomaly score", ylabel="count")
        ax.legend(fontsize=7)
    fig.subplots_adjust(hspace=0.6)
    return _save(fig, path)


def _to_display(images: np.ndarray) -> np.ndarray:
    """[n, C, H, W] -> [n, H, W, C] (C = 3) or [n, H, W] (C = 1) float in [0, 1]."""
    images = np.clip(images.astype(np.float32), 0, 1)
    return images[:, 0] if images.shape[1] == 1 else images.transpose(0, 2, 3, 1)


def plot_examples(detector: str, cells: list[Record], store: RunStore, path: Path) -> Path | None:
    """For the first representative cell with examples: rows clean, adversarial and amplified difference."""
    for record in cells:
        data = store.load_scores(record.key)
        if len(data.get("examples_clean", ())) and len(data.get("examples_adv", ())):
            break
    else:
        return None
    clean = data["examples_clean"][:MAX_EXAMPLES].astype(np.float32)
    adv = data["examples_adv"][:MAX_EXAMPLES].astype(np.float32)
    delta = adv - clean
    gain = 0.5 / max(float(np.abs(delta).max()), 1e-8)
    rows = [("clean", clean), ("adversarial", adv), (f"difference ×{gain:.0f}", 0.5 + gain * delta)]
    n = len(clean)
    fig, axes = _figure(3, n, (1.8 * n, 5.6))
    for r, (label, images) in enumerate(rows):
        for c, image in enumerate(_to_display(images)):
            ax = axes[r, c]
            ax.imshow(image, cmap="gray" if image.ndim == 2 else None, vmin=0, vmax=1, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if c == 0:
                ax.set_ylabel(label, fontsize=8)
    fig.suptitle(f"{detector}: {_cell_title(record)}", fontsize=9)
    return _save(fig, path)


def write_plots(records: list[Record], run_dir: Path) -> list[Path]:
    """Every plot of a run into ``run_dir/plots``; score plots only for cells whose scores file exists."""
    out_dir, store = run_dir / "plots", RunStore(run_dir)
    written = []
    for dataset in dict.fromkeys(r.dataset for r in records):
        if any(r.dataset == dataset and r.robust_auroc is not None for r in records):
            written.append(plot_robust_vs_eps(records, dataset, out_dir / f"robust_vs_eps_{safe_name(dataset)}.png"))
    for detector, cells in _representative_cells(records, store).items():
        written.append(plot_score_histograms(detector, cells, store, out_dir / f"scores_{safe_name(detector)}.png"))
        example = plot_examples(detector, cells, store, out_dir / f"examples_{safe_name(detector)}.png")
        if example is not None:
            written.append(example)
    return written
