"""Run settings, resolved in one place: presets (bench/presets/*.toml, validated as read), budgets, the run key."""

from __future__ import annotations

import dataclasses
import math
import tomllib
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

from bench.errors import UsageError
from bench.hashing import stable_hash
from bench.threat import AUTO_EPS, kind_eps, parse_norm

PRESET_DIR = Path(__file__).parent / "presets"
#: The tables a preset may have: ``[run]`` (the grid) and option tables per dataset, detector and attack.
PRESET_TABLES = ("run", "data", "detectors", "attacks")


def list_presets() -> list[str]:
    """Names of the presets shipped in bench/presets."""
    return sorted(p.stem for p in PRESET_DIR.glob("*.toml"))


@dataclass(frozen=True)
class Preset:
    """A parsed, validated preset: the ``[run]`` grid and the option tables of datasets, detectors and attacks."""

    name: str
    path: Path
    run: dict[str, Any]
    data: dict[str, dict[str, Any]]
    detectors: dict[str, dict[str, Any]]
    attacks: dict[str, dict[str, Any]]

    def detector_options(self, name: str) -> dict[str, Any]:
        """The ``[detectors.<name>]`` table (Config fields of that detector)."""
        return dict(self.detectors.get(name, {}))

    def attack_options(self, name: str) -> dict[str, Any]:
        """The ``[attacks.<name>]`` table (Config fields of that attack, budget aside)."""
        return dict(self.attacks.get(name, {}))

    def data_options(self, dataset: str) -> dict[str, Any]:
        """The ``[data.<dataset>]`` table (loader options)."""
        return dict(self.data.get(dataset, {}))


#: ``[run]`` keys: what each must hold (checked by ``RUN_CHECKS``).
RUN_KEYS = {
    "datasets": "a name or a list of names",
    "detectors": "a name or a list of names",
    "attacks": "a name or a list of names",
    "eps": 'a budget or a list of budgets, e.g. ["auto"] or ["8/255"]',
    "norm": "linf or l2",
    "seeds": "a list of integers, e.g. [0, 1]",
    "classes": 'a table of dataset = list of classes (indices or names) or "all"',
}


def is_names(value: Any) -> bool:
    return isinstance(value, str) or (isinstance(value, list) and all(isinstance(v, str) for v in value))


def is_classes(value: Any) -> bool:
    def one(v: Any) -> bool:
        return v == "all" or (isinstance(v, list) and all(isinstance(c, int | str) for c in v))

    return isinstance(value, dict) and all(one(v) for v in value.values())


RUN_CHECKS = {
    "datasets": is_names,
    "detectors": is_names,
    "attacks": is_names,
    "eps": lambda v: isinstance(v, str | int | float | list),
    "norm": lambda v: isinstance(v, str),
    "seeds": lambda v: isinstance(v, list) and all(isinstance(s, int) and not isinstance(s, bool) for s in v),
    "classes": is_classes,
}


def preset_path(name: str) -> Path:
    """The file of preset ``name`` (a shipped preset, or a path to a .toml file)."""
    path = Path(name) if name.endswith(".toml") else PRESET_DIR / f"{name}.toml"
    if not path.is_file():
        raise UsageError(f"unknown preset {name!r}; choose from: {', '.join(list_presets())} or a .toml file")
    return path


def load_preset(name: str) -> Preset:
    """Read and validate preset ``name``: a malformed file, an unknown table or key, or a value of the wrong type
    raises UsageError naming the file, the key and what was expected."""
    path = preset_path(name)
    try:
        with path.open("rb") as fh:
            raw = tomllib.load(fh)
    except tomllib.TOMLDecodeError as error:
        raise UsageError(f"preset {path}: not valid TOML ({error})") from None
    unknown = sorted(set(raw) - set(PRESET_TABLES))
    if unknown:
        raise UsageError(f"preset {path}: unknown table [{unknown[0]}]; tables: {', '.join(PRESET_TABLES)}")
    run = raw.get("run", {})
    if not isinstance(run, dict):
        raise UsageError(f"preset {path}: run must be a table [run]")
    for key, value in run.items():
        if key not in RUN_KEYS:
            raise UsageError(f"preset {path}: unknown key [run] {key}; keys: {', '.join(RUN_KEYS)}")
        if not RUN_CHECKS[key](value):
            raise UsageError(f"preset {path}: [run] {key} must be {RUN_KEYS[key]}, got {value!r}")
    for key, parse in (("eps", parse_eps), ("norm", parse_norm)):  # values checked by the parsers the CLI uses
        if key in run:
            try:
                parse(run[key])
            except UsageError as error:
                raise UsageError(f"preset {path}: [run] {key}: {error}") from None
    tables = {}
    for table in PRESET_TABLES[1:]:
        entries = raw.get(table, {})
        names = entries if isinstance(entries, dict) else {table: entries}
        bad = next((name for name, options in names.items() if not isinstance(options, dict)), None)
        if bad is not None:
            raise UsageError(f"preset {path}: [{table}] {bad} must be a table of options: [{table}.<name>]")
        tables[table] = entries
    return Preset(name=name, path=path, run=run, **tables)


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


@dataclass
class RunConfig:
    """Everything that defines a benchmark run; built from a preset plus CLI overrides (``config_from_preset`` fills
    the option tables; a RunConfig built directly has the tables it is given, whatever its ``preset`` name)."""

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
    #: The preset's option tables per dataset, detector and attack: what the grid resolves each cell from.
    data_options: dict[str, dict] = field(default_factory=dict)
    detector_options: dict[str, dict] = field(default_factory=dict)
    attack_options: dict[str, dict] = field(default_factory=dict)
    executor_options: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable view (for the manifest)."""
        return dataclasses.asdict(self)


def config_from_preset(name: str) -> RunConfig:
    """A RunConfig holding preset ``name``'s grid and option tables (the only place a preset is read)."""
    preset = load_preset(name)
    run = preset.run
    cfg = RunConfig(preset=name)
    for key in ("datasets", "detectors", "attacks", "seeds", "norm"):
        if key in run:
            setattr(cfg, key, run[key])
    if "eps" in run:
        cfg.eps = parse_eps(run["eps"])
    cfg.classes = dict(run.get("classes", {}))
    cfg.data_options = preset.data
    cfg.detector_options = preset.detectors
    cfg.attack_options = preset.attacks
    return cfg


#: RunConfig fields that define what a grid covers (its run key).
GRID_FIELDS = ("preset", "datasets", "classes", "detectors", "attacks", "eps", "norm", "seeds", "data_root")


def run_key(cfg: RunConfig) -> str:
    """Short hash of what the grid covers (so the same command resumes into the same folder)."""
    return stable_hash({f: getattr(cfg, f) for f in GRID_FIELDS}, 8)
