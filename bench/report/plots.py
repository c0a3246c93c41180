"""Report figures as PNG bytes (robust AUROC vs eps, clean vs adversarial score histograms, example images) and
plots/*.png written from them; drawn on matplotlib's Agg canvas directly (no pyplot state, no display needed).
"""

from __future__ import annotations

import io
import math
import re
from collections import defaultdict
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib import colormaps
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import to_hex
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from bench import results
from bench.config import format_eps
from bench.metrics import WORST_CASE
from bench.store import RECORD_FIELDS, Record, RunStore, atomic_write_bytes

MAX_EXAMPLES = 4
#: tab20's dark shades first, then its light ones: the first ten detectors get clearly different hues.
COLOURS = tuple(to_hex(colormaps["tab20"](i)) for i in (*range(0, 20, 2), *range(1, 20, 2)))
#: 11 markers (coprime with 20 colours): (colour, marker) pairs stay distinct for 220 detectors.
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*", "<", ">", "h")
PANELS_PER_ROW = 3


def safe_name(text: str) -> str:
    """A file-name-safe version of a name."""
    return re.sub(r"[^A-Za-z0-9.-]+", "_", str(text)).strip("_") or "x"


def detector_styles(detectors: Iterable[str]) -> dict[str, tuple[str, str]]:
    """(colour, marker) per detector, by its position among the sorted names: distinct pairs, the same in every
    plot of a report."""
    names = sorted(set(detectors))
    return {name: (COLOURS[i % len(COLOURS)], MARKERS[i % len(MARKERS)]) for i, name in enumerate(names)}


def _plain(value: Any) -> Any:
    """A frame cell as a record field: NaN / NA -> None, numpy scalars -> Python ones."""
    if pd.api.types.is_scalar(value) and pd.isna(value):
        return None
    return value.item() if isinstance(value, np.generic) else value


def as_records(data: pd.DataFrame | Iterable[Record]) -> list[Record]:
    """Records from a results frame (``bench.results.load``: its record-field columns) or from records, one per cell:
    of two records of one cell (rerun under a new key after a code change, or merged runs) the later counts, as in
    the leaderboards."""
    if isinstance(data, pd.DataFrame):
        fields = [name for name in RECORD_FIELDS if name in data.columns]
        rows = data[fields].to_dict("records")
        data = [Record.from_dict({name: _plain(value) for name, value in row.items()}) for row in rows]
    latest = {tuple(getattr(r, name) for name in results.CELL): r for r in data}
    return list(latest.values())


def _figure(rows: int, cols: int, size: tuple[float, float]) -> tuple[Figure, np.ndarray]:
    """A Figure on an Agg canvas and its [rows, cols] array of axes."""
    fig = Figure(figsize=size)
    FigureCanvasAgg(fig)
    return fig, fig.subplots(rows, cols, squeeze=False)


def png_bytes(fig: Figure) -> bytes:
    """The figure as PNG bytes; no software or time metadata, so equal figures give equal bytes."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight", metadata={"Software": None})
    return buffer.getvalue()


def robust_vs_eps_figure(records: list[Record], dataset: str, styles: dict[str, tuple[str, str]]) -> Figure:
    """Robust AUROC (%) against eps, one panel per (attack, norm) (worst-case first), one line per detector (eps 0 =
    clean AUROC; a band of ± std over seeds); one legend beside the panels. The numbers are the leaderboard's
    (``bench.results.leaderboard``)."""
    frame = results.frame_of(records)
    board = results.leaderboard(frame, dataset, intervals=False).set_index("detector")
    columns = results.attack_columns(frame, dataset)
    panels = sorted({(a, n) for a, n, _ in columns.values()}, key=lambda panel: (panel[0] != WORST_CASE, panel))
    detectors = sorted(d for d in board.index if board.loc[d, list(columns)].notna().any())
    cols = min(len(panels), PANELS_PER_ROW)
    rows = math.ceil(len(panels) / cols)
    fig, axes = _figure(rows, cols, (4.2 * cols, 3.3 * rows))
    for ax, (attack, norm) in zip(axes.flat, panels, strict=False):
        ticks: set[float] = set()
        for detector in detectors:
            row = board.loc[detector]
            points = {eps: label for label, (a, n, eps) in columns.items() if (a, n) == (attack, norm)}
            points = {eps: (row[label], row.get(f"{label} std", np.nan)) for eps, label in points.items()}
            points = {eps: value for eps, value in points.items() if pd.notna(value[0])}
            if not points:
                continue
            if 0.0 not in points and pd.notna(row["clean"]):
                points[0.0] = (row["clean"], row.get("clean std", np.nan))
            eps = sorted(points)
            ticks.update(eps)
            x = [e * 255 for e in eps]
            means = np.array([points[e][0] for e in eps])
            stds = np.nan_to_num(np.array([points[e][1] for e in eps], dtype=float))
            colour, marker = styles[detector]
            ax.plot(x, means, color=colour, marker=marker, markersize=5, linewidth=1.4)
            if stds.any():
                ax.fill_between(x, means - stds, means + stds, alpha=0.15, color=colour, linewidth=0)
        ax.set_xticks([e * 255 for e in sorted(ticks)], [format_eps(e) if e else "0" for e in sorted(ticks)])
        ax.set(title=f"{dataset}: {attack} ({norm})", xlabel="eps", ylabel="AUROC (%)", ylim=(-2, 102))
        ax.axhline(50, color="grey", linestyle=":", linewidth=1)
        ax.grid(alpha=0.3)
    for ax in axes.flat[len(panels) :]:
        ax.set_visible(False)
    handles = [
        Line2D([], [], color=styles[d][0], marker=styles[d][1], markersize=5, linewidth=1.4, label=d) for d in detectors
    ]
    fig.legend(
        handles=handles, loc="upper left", bbox_to_anchor=(1.0, 0.98), ncols=1 if len(handles) <= 12 else 2,
        fontsize=8, title="detector", frameon=False,
    )  # fmt: skip
    fig.tight_layout()
    return fig


def _representative_cells(records: list[Record], stores: list[RunStore]) -> dict[str, list[tuple[Record, RunStore]]]:
    """Per detector, one ok record with saved scores per (dataset, attack, norm): first class and seed, largest eps;
    each with the first store (of ``stores``) holding its scores file."""
    chosen: dict[tuple, tuple[Record, RunStore]] = {}
    for record in sorted((r for r in records if r.ok), key=lambda r: (r.normal_class, r.seed, -float(r.eps))):
        store = next((s for s in stores if s.scores_path(record.key).is_file()), None)
        if store is not None:
            chosen.setdefault((record.detector, record.dataset, record.attack, record.norm), (record, store))
    by_detector: dict[str, list[tuple[Record, RunStore]]] = defaultdict(list)
    for (detector, *_), cell in sorted(chosen.items(), key=lambda item: tuple(map(str, item[0]))):
        by_detector[detector].append(cell)
    return by_detector


def _cell_title(record: Record) -> str:
    name = record.class_name or record.normal_class
    return f"{record.dataset}/{name} {record.attack} eps={format_eps(float(record.eps))} seed={record.seed}"


def score_histograms_figure(detector: str, cells: list[tuple[Record, RunStore]]) -> Figure:
    """Clean vs adversarial score histograms of normals and anomalies, one panel per representative cell."""
    fig, axes = _figure(len(cells), 1, (6, 2.6 * len(cells)))
    for ax, (record, store) in zip(axes[:, 0], cells, strict=True):
        data = store.load_scores(record.key, ("clean", "adv", "is_anomaly"))
        anomaly = data["is_anomaly"].astype(bool)
        scores = np.concatenate([data["clean"], data["adv"]]).astype(np.float64)
        bins = np.histogram_bin_edges(scores[np.isfinite(scores)], bins=30)
        for group, mask, colour in (("normal", ~anomaly, "tab:blue"), ("anomaly", anomaly, "tab:red")):
            clean_counts, _ = np.histogram(data["clean"][mask], bins=bins)
            adv_counts, _ = np.histogram(data["adv"][mask], bins=bins)
            ax.stairs(clean_counts, bins, fill=True, color=colour, alpha=0.35, label=f"{group} clean")
            ax.stairs(adv_counts, bins, color=colour, linewidth=1.8, label=f"{group} adv")
        ax.set(title=f"{detector}: {_cell_title(record)}", xlabel="anomaly score", ylabel="count")
    axes[0, 0].legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    fig.subplots_adjust(hspace=0.6)
    return fig


def _to_display(images: np.ndarray) -> np.ndarray:
    """[n, C, H, W] -> [n, H, W, C] (C = 3) or [n, H, W] (C = 1) float in [0, 1]."""
    images = np.clip(images.astype(np.float32), 0, 1)
    return images[:, 0] if images.shape[1] == 1 else images.transpose(0, 2, 3, 1)


def examples_figure(detector: str, cells: list[tuple[Record, RunStore]]) -> Figure | None:
    """For the first representative cell with examples: rows clean, adversarial and amplified difference."""
    for record, store in cells:
        data = store.load_scores(record.key, ("examples_clean", "examples_adv"))
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
    return fig


def figures(data: pd.DataFrame | Iterable[Record], run_dirs: Sequence[str | Path]) -> dict[str, bytes]:
    """Every figure of a report as PNG bytes by file name: ``robust_vs_eps_<dataset>.png`` per dataset with a
    robust AUROC, ``scores_<detector>.png`` and ``examples_<detector>.png`` per detector with saved scores.

    Args:
        data: the records, or a results frame (``bench.results.load``).
        run_dirs: the run folders holding the score files; a later one wins where two hold a cell's file.
    """
    records = as_records(data)
    styles = detector_styles(r.detector for r in records)
    out = {}
    for dataset in dict.fromkeys(r.dataset for r in records):
        if any(r.dataset == dataset and r.robust_auroc is not None for r in records):
            out[f"robust_vs_eps_{safe_name(dataset)}.png"] = png_bytes(robust_vs_eps_figure(records, dataset, styles))
    stores = [RunStore(run_dir) for run_dir in reversed(run_dirs)]
    for detector, cells in _representative_cells(records, stores).items():
        out[f"scores_{safe_name(detector)}.png"] = png_bytes(score_histograms_figure(detector, cells))
        example = examples_figure(detector, cells)
        if example is not None:
            out[f"examples_{safe_name(detector)}.png"] = png_bytes(example)
    return out


def save_figures(pngs: dict[str, bytes], out_dir: str | Path) -> list[Path]:
    """``figures``' PNGs as ``out_dir/plots/<name>`` (written atomically); returns the paths."""
    paths = [Path(out_dir) / "plots" / name for name in pngs]
    for path, data in zip(paths, pngs.values(), strict=True):
        atomic_write_bytes(path, data)
    return paths


def write_plots(
    data: pd.DataFrame | Iterable[Record], run_dir: str | Path, run_dirs: Sequence[str | Path] | None = None
) -> list[Path]:
    """Every plot into ``run_dir/plots``, score plots from the score files in ``run_dirs`` (default: ``run_dir``)."""
    return save_figures(figures(data, run_dirs or [run_dir]), run_dir)
