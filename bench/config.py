"""Run configuration: presets (bench/presets/*.toml), budget parsing and CLI overrides."""

from __future__ import annotations

import dataclasses
import math
import tomllib
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

from bench.errors import UsageError

PRESET_DIR = Path(__file__).parent / "presets"
NORMS = ("linf", "l2")
#: The eps that stands for the paper's threat model per dataset kind (see ``KIND_EPS``).
AUTO_EPS = "auto"
#: The paper's L-inf budget per dataset kind: 4/255 on low-resolution sets, 2/255 on high-resolution and
#: industrial ones (MVTec, VisA, textures); keyed by the dataset's ``low_res`` flag.
KIND_EPS = {True: 4 / 255, False: 2 / 255}


def list_presets() -> list[str]:
    """Names of the presets shipped in bench/presets."""
    return sorted(p.stem for p in PRESET_DIR.glob("*.toml"))


def load_preset(name: str) -> dict[str, Any]:
    """The parsed TOML of preset ``name`` (a shipped preset, or a path to a .toml file of the same form).

    An unknown name raises UsageError listing the presets.
    """
    path = Path(name) if name.endswith(".toml") else PRESET_DIR / f"{name}.toml"
    if not path.is_file():
        raise UsageError(f"unknown preset {name!r}; choose from: {', '.join(list_presets())} or a .toml file")
    with path.open("rb") as fh:
        return tomllib.load(fh)


def parse_eps(text: str | float | list) -> list[float | str]:
    """Parse budgets such as ``"8/255"``, ``"0.03"``, ``"2/255,4/255"`` or ``"auto"`` (non-negative, finite).

    ``"auto"`` stays the string ``AUTO_EPS``: each dataset resolves it to its kind's budget (``resolve_eps``).
    """
    items = text if isinstance(text, list) else [text] if isinstance(text, int | float) else str(text).split(",")
    values: list[float | str] = []
    for item in items:
        raw = str(item).strip()
        if raw == AUTO_EPS:
            values.append(AUTO_EPS)
            continue
        try:
            value = float(Fraction(raw)) if "/" in raw else float(raw)
        except (ValueError, ZeroDivisionError):
            raise UsageError(f"invalid eps {raw!r}: use auto, a number or a fraction such as 8/255") from None
        if not math.isfinite(value) or value < 0:
            raise UsageError(f"invalid eps {raw!r}: the budget must be a finite number >= 0")
        values.append(value)
    if not values:
        raise UsageError("no eps given: use auto, a number or a fraction such as 8/255")
    return values


def kind_eps(low_res: bool) -> float:
    """The paper's budget for a dataset of this kind (``KIND_EPS``)."""
    return KIND_EPS[bool(low_res)]


def resolve_eps(eps: list[float | str], low_res: bool, norm: str = "linf") -> list[float]:
    """The budgets a dataset of this kind runs at: ``"auto"`` becomes ``kind_eps``; duplicates are dropped.

    ``"auto"`` is the paper's L-inf threat model; under L2 it raises UsageError (an L2 radius of 4/255 would be
    no attack at all), so L2 runs name their budget.
    """
    if AUTO_EPS in eps and norm != "linf":
        raise UsageError(f"eps {AUTO_EPS!r} is the paper's L-inf budget; with --norm {norm} give --eps, e.g. 0.5")
    values = [kind_eps(low_res) if value == AUTO_EPS else float(value) for value in eps]
    return list(dict.fromkeys(values))


def format_eps(eps: float) -> str:
    """``4/255`` style when eps is a multiple of 1/255, else a short decimal."""
    k = eps * 255
    if abs(k - round(k)) < 1e-6 and eps > 0:
        return f"{round(k)}/255"
    return f"{eps:g}"


def parse_ints(text: str | list | None, what: str) -> list[int] | None:
    """Parse ``"0,1,2"`` into ints; None stays None."""
    if text is None:
        return None
    items = text if isinstance(text, list) else str(text).split(",")
    try:
        return [int(str(i).strip()) for i in items if str(i).strip()]
    except ValueError:
        raise UsageError(f"invalid {what} {text!r}: use comma-separated integers such as 0,1,2") from None


def parse_norm(norm: str) -> str:
    """Validate the threat model's norm."""
    if norm not in NORMS:
        raise UsageError(f"unknown norm {norm!r}; choose from: {', '.join(NORMS)}")
    return norm


@dataclass
class RunConfig:
    """Everything that defines a benchmark run; built from a preset plus CLI overrides."""

    preset: str = "quick"
    datasets: list[str] = field(default_factory=lambda: ["digits"])
    classes: dict[str, list] = field(default_factory=dict)
    detectors: list[str] = field(default_factory=lambda: ["deepsvdd"])
    attacks: list[str] = field(default_factory=lambda: ["pgd"])
    eps: list[float | str] = field(default_factory=lambda: [AUTO_EPS])
    norm: str = "linf"
    seeds: list[int] = field(default_factory=lambda: [0])
    data_root: str | None = None
    out: str = "results/runs/latest"
    executor: str = "local"
    devices: list[str] | None = None
    force: bool = False
    quiet: bool = False
    data_options: dict[str, dict] = field(default_factory=dict)
    detector_options: dict[str, dict] = field(default_factory=dict)
    attack_options: dict[str, dict] = field(default_factory=dict)
    executor_options: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable view (for the manifest)."""
        return dataclasses.asdict(self)


def config_from_preset(name: str) -> RunConfig:
    """A RunConfig holding preset ``name``'s defaults."""
    preset = load_preset(name)
    run = preset.get("run", {})
    cfg = RunConfig(preset=name)
    for key in ("datasets", "detectors", "attacks", "seeds", "norm"):
        if key in run:
            setattr(cfg, key, run[key])
    if "eps" in run:
        cfg.eps = parse_eps(run["eps"])
    cfg.classes = dict(run.get("classes", {}))
    cfg.data_options = preset.get("data", {})
    cfg.detector_options = preset.get("detectors", {})
    cfg.attack_options = preset.get("attacks", {})
    return cfg
