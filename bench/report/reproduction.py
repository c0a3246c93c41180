"""reproduction.md: our clean / robust AUROC beside the paper's (COBRA's tables), the gap, and every protocol
difference the run's records and config show; "reproduced" only where none is found."""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Mapping, Sequence
from fractions import Fraction
from pathlib import Path
from typing import Any

import pandas as pd

from attacks import ATTACKS
from bench.config import format_eps
from bench.data import DATASETS
from bench.metrics import WORST_CASE
from bench.registry import field_default
from bench.report.markdown import md_escape
from bench.results import CELL
from bench.threat import kind_eps
from detectors.base import DETECTORS, paper_result
from detectors.csi import INDUSTRIAL_TRAIN_PER_EPOCH
from detectors.papers import PAPER_CHANNELS, PAPER_IMAGE_SIZE, PAPER_SETTINGS, PaperResult

#: |ours - paper| in AUROC points within which a row with no protocol difference counts as reproduced.
TOLERANCE = 2.0
PGD = "pgd"
#: Native (size, channels) of the low-res sets: what ``load_split`` keeps when the data options set neither.
NATIVE_SHAPE = {"mnist": (28, 1), "fmnist": (28, 1), "cifar10": (32, 3), "cifar100": (32, 3), "svhn": (32, 3)}
NA = "n/a"


@dataclasses.dataclass(frozen=True)
class Comparison:
    """One (dataset, detector, eps) of the run beside its paper result (AUROCs in percent)."""

    dataset: str
    detector: str
    eps: float
    eps_label: str
    paper: PaperResult
    clean: float | None
    pgd: float | None
    pgd_steps: str
    worst_case: float | None
    classes: list[int]
    seeds: list[int]
    runs: list[str]
    differences: list[str]
    notes: list[str]

    @property
    def robust(self) -> float | None:
        """Our number beside the paper's robust one: the PGD cell, else the worst case."""
        return self.pgd if self.pgd is not None else self.worst_case

    @property
    def clean_gap(self) -> float | None:
        return _gap(self.clean, self.paper.clean)

    @property
    def robust_gap(self) -> float | None:
        return _gap(self.robust, self.paper.robust)

    def verdict(self, tolerance: float = TOLERANCE) -> str:
        """``reproduced`` when no protocol difference is found and both gaps are within ``tolerance`` points."""
        if self.differences:
            count = len(self.differences)
            return f"protocol differs ({count} difference{'s' if count > 1 else ''})"
        gaps = [g for g in (self.clean_gap, self.robust_gap) if g is not None]
        if self.clean is None or any(abs(g) > tolerance for g in gaps):
            return f"not reproduced (gap beyond ±{tolerance:g})"
        return "reproduced"


def _gap(ours: float | None, paper: float | None) -> float | None:
    return None if ours is None or paper is None else ours - paper


def _pct(value: float | None) -> str:
    return NA if value is None else f"{value:.1f}"


def _signed(value: float | None) -> str:
    return NA if value is None else f"{value:+.1f}"


def _same_path(a: Any, b: Any) -> bool:
    if a is None or b is None:
        return False
    if str(a) == str(b):
        return True
    try:
        return Path(str(a)).resolve() == Path(str(b)).resolve()
    except OSError:
        return False


def manifest_for(run: str | None, preset: str | None, manifests: Sequence[dict] | Mapping[str, dict]) -> dict | None:
    """The manifest of the run folder ``run``: keyed by it (a mapping), naming it (``run``/``run_dir``/``path``
    or its config's ``out``), the only one given, else the only one of the record's preset; None when unknown."""
    if isinstance(manifests, Mapping):
        for key, manifest in manifests.items():
            if _same_path(key, run):
                return manifest
        manifests = list(manifests.values())
    manifests = [m for m in manifests if isinstance(m, dict)]
    for manifest in manifests:
        names = [manifest.get(k) for k in ("run", "run_dir", "path", "dir")]
        names.append((manifest.get("config") or {}).get("out"))
        if any(_same_path(name, run) for name in names):
            return manifest
    if len(manifests) == 1:
        return manifests[0]
    same_preset = [m for m in manifests if preset and m.get("preset") == preset]
    return same_preset[0] if len(same_preset) == 1 else None


def _low_res(dataset: str) -> bool:
    return bool(DATASETS.get(dataset).low_res)


def _class_count(dataset: str) -> int | None:
    try:
        return len(DATASETS.get(dataset)(None).classes())
    except Exception:  # a loader that needs its files even to name its classes
        return None


def _config_defaults(detector: str) -> dict[str, Any]:
    """The detector's Config defaults (what a run uses for fields its options table does not set)."""
    return {field.name: field_default(field) for field in dataclasses.fields(DETECTORS.get(detector).Config)}


def _pgd_default_steps() -> int | None:
    """The PGD Config's default ``steps`` (what a run uses when its attack options do not set them)."""
    steps = {f.name: field_default(f) for f in dataclasses.fields(ATTACKS.get(PGD).Config)}.get("steps")
    return steps if isinstance(steps, int) else None


def _paper_steps(paper: PaperResult) -> int | None:
    match = re.fullmatch(r"PGD-(\d+)", paper.attack)
    return int(match.group(1)) if match else None


def _paper_eps(paper: PaperResult) -> float:
    return float(Fraction(paper.eps))


def _setting_text(value: Any) -> str:
    if isinstance(value, list | tuple):
        return "[" + ", ".join(map(str, value)) + "]"
    return "all" if value is None else str(value)


def _resolve_setting(key: str, value: Any, low_res: bool) -> Any:
    """A setting whose ``"auto"`` depends on the dataset kind, resolved (train_eps, train_per_epoch)."""
    if key == "train_per_epoch" and value == "auto":
        return "all" if low_res else INDUSTRIAL_TRAIN_PER_EPOCH
    return value


def _same_setting(key: str, ours: Any, paper: Any, low_res: bool) -> bool:
    ours, paper = _resolve_setting(key, ours, low_res), _resolve_setting(key, paper, low_res)
    if key == "train_eps":
        ours, paper = (kind_eps(low_res) if v == "auto" else float(v) for v in (ours, paper))
        return math.isclose(ours, paper, rel_tol=1e-6)
    if isinstance(ours, list | tuple) and isinstance(paper, list | tuple):
        return list(ours) == list(paper)
    if isinstance(ours, int | float) and isinstance(paper, int | float) and not isinstance(ours, bool):
        return math.isclose(ours, paper, rel_tol=1e-9)
    return ours == paper


def config_differences(dataset: str, detector: str, config: dict[str, Any]) -> tuple[list[str], list[str]]:
    """(differences, notes) between a run's RunConfig (as a dict) and the paper's protocol for one cell kind:
    image size, channels, subsampling and the detector's training settings (where the paper's are known)."""
    low_res = _low_res(dataset)
    differences, notes = [], []
    data = (config.get("data_options") or {}).get(dataset) or {}
    native_size, native_channels = NATIVE_SHAPE.get(dataset, (None, None))
    size = data.get("image_size") or native_size
    paper_size = PAPER_IMAGE_SIZE[low_res]
    if size != paper_size:
        shown = f"{size} px" if size else "native size"
        differences.append(f"image size {shown} (paper {paper_size} px)")
    channels = data.get("channels") or native_channels
    if channels is not None and channels != PAPER_CHANNELS:
        plural = "s" if channels != 1 else ""
        differences.append(f"{channels} channel{plural} (paper {PAPER_CHANNELS}: grey images repeated to RGB)")
    if data.get("max_train") is not None:
        differences.append(f"training set (the normal class) subsampled to {data['max_train']} images (paper: all)")
    if data.get("max_test") is not None:
        differences.append(f"test set subsampled to {data['max_test']} images (paper: the full test set)")
    options = (config.get("detector_options") or {}).get(detector) or {}
    settings = {**_config_defaults(detector), **options}
    paper_settings = PAPER_SETTINGS.get(detector)
    if paper_settings is None:
        if "epochs" in options:
            notes.append(
                f"`epochs` {options['epochs']} in this run; the paper's training settings for {detector} are not known"
            )
        return differences, notes
    for key, paper_value in paper_settings.items():
        if key in settings and not _same_setting(key, settings[key], paper_value, low_res):
            differences.append(f"`{key}` {_setting_text(settings[key])} (paper {_setting_text(paper_value)})")
    return differences, notes


def _mean_over_classes(rows: pd.DataFrame, column: str) -> float | None:
    """Mean over seeds of the mean over classes of ``column`` (a fraction), in percent; None without values."""
    rows = rows[rows[column].notna()]
    if rows.empty:
        return None
    per_cell = rows.groupby(["seed", "normal_class"])[column].mean()
    return float(per_cell.groupby(level="seed").mean().mean()) * 100


def _run_configs(rows: pd.DataFrame, manifests: Any) -> dict[str, dict | None]:
    """Run folder (as in the frame's ``run`` column; "" without one) -> its RunConfig dict, None when unknown."""
    runs = [str(r) for r in dict.fromkeys(rows["run"])] if "run" in rows else [""]
    configs = {}
    for run in runs:
        in_run = rows[rows["run"].astype(str) == run] if "run" in rows else rows
        preset = next(iter(in_run["preset"].dropna()), None) if "preset" in in_run else None
        config = (manifest_for(run or None, preset, manifests) or {}).get("config")
        configs[run] = config if isinstance(config, dict) else None
    return configs


def _pgd_steps(pgd: pd.DataFrame, configs: dict[str, dict | None]) -> list[int]:
    """The PGD step counts of the PGD cells: from the records, else the runs' attack options or the default."""
    if "steps" in pgd and pgd["steps"].notna().all():
        return sorted({int(s) for s in pgd["steps"]})
    known = [c for c in configs.values() if c is not None]
    if not known:
        return []
    default = _pgd_default_steps()
    steps = [((c.get("attack_options") or {}).get(PGD) or {}).get("steps", default) for c in known]
    return sorted({int(s) for s in steps if s is not None})


def _threat_differences(rows: pd.DataFrame, ok: pd.DataFrame, paper: PaperResult, label: str, steps: list[int]):
    """Differences in the evaluated threat model: eps, norm and the attack (PGD steps)."""
    differences = []
    if not math.isclose(float(rows["eps"].iloc[0]), _paper_eps(paper), rel_tol=1e-6):
        differences.append(f"eps {label} (paper {paper.eps})")
    norms = sorted(set(rows["norm"].dropna())) if "norm" in rows else []
    if any(norm != "linf" for norm in norms):
        differences.append(f"norm {', '.join(norms)} (paper L-inf)")
    paper_steps = _paper_steps(paper)
    if (ok["attack"] == PGD).any():
        if paper_steps is not None and steps != [paper_steps]:
            differences.append(f"PGD-{'/'.join(map(str, steps)) or '?'} (paper {paper.attack})")
    else:
        attacks = ", ".join(sorted(set(ok["attack"]) - {WORST_CASE})) or "no attack"
        differences.append(
            f"no PGD cell (paper {paper.attack}): the robust AUROC compared is the worst case over {attacks}"
        )
    return differences


def _compare(
    dataset: str, detector: str, eps: float, rows: pd.DataFrame, paper: PaperResult, manifests: Any
) -> Comparison:
    ok = rows[rows["status"] == "ok"]
    pgd, worst = ok[ok["attack"] == PGD], ok[ok["attack"] == WORST_CASE]
    label = str(rows["eps_label"].iloc[0]) if "eps_label" in rows else format_eps(eps)
    configs = _run_configs(rows, manifests)
    steps = _pgd_steps(pgd, configs) if not pgd.empty else []
    differences = _threat_differences(rows, ok, paper, label, steps)
    notes: list[str] = []
    classes = sorted({int(c) for c in ok["normal_class"]})
    total = _class_count(dataset)
    if total is not None and len(classes) < total:
        shown = ", ".join(map(str, classes)) or "none"
        differences.append(f"{len(classes)} of {total} classes ({shown}) (paper: all {total})")
    failed = int((rows["status"] == "failed").sum())
    if failed:
        differences.append(f"{failed} failed cell(s): the means leave them out")
    if not pgd.empty and sorted({int(c) for c in pgd["normal_class"]}) != classes:
        differences.append(f"PGD covers classes {', '.join(map(str, sorted(set(pgd['normal_class']))))} only")
    per_run = {}
    for run, config in configs.items():
        if config is None:
            per_run[run] = ["run config unknown (no manifest): image size, subsampling and training settings unchecked"]
            continue
        per_run[run], run_notes = config_differences(dataset, detector, config)
        notes += [n for n in run_notes if n not in notes]
    several = len({tuple(d) for d in per_run.values()}) > 1
    for run, run_differences in per_run.items():
        prefix = f"run `{run}`: " if several and run else ""
        differences += [prefix + d for d in run_differences if prefix + d not in differences]
    if "flags" in ok:
        flags = sorted({f for cell in ok["flags"] if isinstance(cell, list | tuple) for f in cell})
        if flags:
            differences.append("sanity flags (the numbers may overstate robustness): " + ", ".join(flags))
    return Comparison(
        dataset=dataset,
        detector=detector,
        eps=eps,
        eps_label=label,
        paper=paper,
        clean=_mean_over_classes(ok, "clean_auroc"),
        pgd=_mean_over_classes(pgd, "robust_auroc"),
        pgd_steps="/".join(map(str, steps)),
        worst_case=_mean_over_classes(worst, "robust_auroc"),
        classes=classes,
        seeds=sorted({int(s) for s in ok["seed"]}),
        runs=[r for r in configs if r],
        differences=differences,
        notes=notes,
    )


def comparisons(frame: pd.DataFrame, manifests: Sequence[dict] | Mapping[str, dict]) -> list[Comparison]:
    """Every (dataset, detector, eps) of ``frame`` whose detector has a paper result on that dataset, sorted."""
    out = []
    if frame.empty:
        return out
    frame = frame.drop_duplicates(CELL, keep="last")  # a cell rerun under a new key (code change, merge) counts once
    for (dataset, detector), group in frame.groupby(["dataset", "detector"], sort=True):
        paper = paper_result(str(detector), str(dataset))
        if paper is None:
            continue
        for eps, rows in group.groupby("eps", sort=True):
            out.append(_compare(str(dataset), str(detector), float(eps), rows, paper, manifests))
    return out


def _summary(items: list[Comparison], tolerance: float) -> str:
    table = pd.DataFrame(
        [
            {
                "dataset": md_escape(c.dataset),
                "detector": md_escape(c.detector),
                "eps": c.eps_label,
                "ours clean": _pct(c.clean),
                "paper clean": _pct(c.paper.clean),
                "gap clean": _signed(c.clean_gap),
                "ours PGD": _pct(c.pgd) + (f" (PGD-{c.pgd_steps})" if c.pgd is not None and c.pgd_steps else ""),
                "ours worst-case": _pct(c.worst_case),
                "paper robust": _pct(c.paper.robust),
                "gap robust": _signed(c.robust_gap),
                "verdict": c.verdict(tolerance),
            }
            for c in items
        ]
    ).fillna(NA)
    return table.to_markdown(index=False, disable_numparse=True)


def _section(item: Comparison, tolerance: float) -> list[str]:
    paper = item.paper
    citation = DETECTORS.get(item.detector).citation
    cited = f' "{citation.title}" ({citation.venue} {citation.year}), <{citation.link}>' if citation else ""
    robust_from = "PGD" if item.pgd is not None else "worst case"
    lines = [
        f"## {md_escape(item.dataset)} · {md_escape(item.detector)} · eps {item.eps_label}",
        "",
        f"- Paper: clean {_pct(paper.clean)}, robust {_pct(paper.robust)} ({paper.attack} at {paper.eps}); "
        f"{paper.source}.{cited}",
        f"- Ours: clean {_pct(item.clean)}, PGD {_pct(item.pgd)}"
        + (f" (PGD-{item.pgd_steps})" if item.pgd is not None and item.pgd_steps else "")
        + f", worst case {_pct(item.worst_case)}; classes {', '.join(map(str, item.classes)) or 'none'}; "
        f"seeds {', '.join(map(str, item.seeds)) or 'none'}"
        + (f"; runs {', '.join(f'`{r}`' for r in item.runs)}" if item.runs else ""),
        f"- Gap (ours - paper): clean {_signed(item.clean_gap)}, robust {_signed(item.robust_gap)} ({robust_from})",
    ]
    if item.differences:
        lines += ["- Protocol differences:", *(f"  - {d}" for d in item.differences)]
    else:
        lines.append("- Protocol differences: none found")
    if item.notes:
        lines += ["- Notes:", *(f"  - {n}" for n in item.notes)]
    lines += [f"- Verdict: **{item.verdict(tolerance)}**", ""]
    return lines


def _provenance(manifests: Sequence[dict] | Mapping[str, dict]) -> list[str]:
    items = list(manifests.items()) if isinstance(manifests, Mapping) else [(None, m) for m in manifests]
    lines = []
    for key, manifest in items:
        if not isinstance(manifest, dict):
            continue
        where = key or manifest.get("run") or (manifest.get("config") or {}).get("out") or "?"
        parts = [f"preset {manifest.get('preset', '?')}"]
        if manifest.get("command"):
            parts.append(f"`{manifest['command']}`")
        if manifest.get("git_sha"):
            dirty = " (uncommitted changes)" if manifest.get("git_dirty") else ""
            parts.append(f"git {str(manifest['git_sha'])[:12]}{dirty}")
        lines.append(f"- `{where}`: " + ", ".join(parts))
    return lines


def render_reproduction(
    frame: pd.DataFrame, manifests: Sequence[dict] | Mapping[str, dict], *, tolerance: float = TOLERANCE
) -> str:
    """The reproduction report (Markdown) of a results frame (``bench.results.load``) and its runs' manifests
    (a list, or a mapping run folder -> manifest)."""
    items = comparisons(frame, manifests)
    lines = [
        "# Reproduction report",
        "",
        "Our AUROC (%) beside the paper's (COBRA's tables: clean / PGD-1000, normals and anomalies both attacked), "
        "each the mean over the classes covered (then over seeds). Gap = ours - paper in AUROC points; the robust "
        "gap uses our PGD cell, else the worst case. A row is 'reproduced' only when no protocol difference is "
        f"found and both gaps are within ±{tolerance:g} points.",
        "",
    ]
    provenance = _provenance(manifests)
    if provenance:
        lines += ["Runs:", "", *provenance, ""]
    if not items:
        lines.append(
            "No result of these runs has a paper counterpart (no detector with a paper result on its dataset)."
        )
        return "\n".join(lines) + "\n"
    lines += ["## Summary", "", _summary(items, tolerance), ""]
    for item in items:
        lines += _section(item, tolerance)
    return "\n".join(lines).rstrip("\n") + "\n"
