"""Results as pandas frames: ``load`` gives a row per cell of one or several run folders; ``leaderboard``,
``per_class`` and ``members`` a dataset's ranked tables; ``manifests`` the runs' provenance."""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from bench.config import format_eps
from bench.errors import UsageError
from bench.metrics import INCOMPLETE_FLAG, WORST_CASE, bootstrap_aurocs, percentile_interval
from bench.store import RECORD_FIELDS, Record, RunStore, latest_per_key
from detectors import DETECTORS

#: pandas dtype per ``Record`` field annotation (strings: store.py postpones annotations); lists stay objects.
_DTYPES = {"str": "string", "str | None": "string", "int": "int64", "int | None": "Int64", "float": "float64",
           "float | None": "float64"}  # fmt: skip
RECORD_DTYPES = {f.name: _DTYPES.get(str(f.type), "object") for f in dataclasses.fields(Record)}
#: What identifies a cell: of two records of one cell (other settings or code versions) the later counts.
CELL = ["dataset", "normal_class", "detector", "seed", "attack", "norm", "eps"]
#: Bootstrap resamples per cell and the interval's coverage; class c's test set is resampled by a generator seeded
#: ``BOOTSTRAP_SEED + c``, so every detector and column of a class shares the same resamples (paired).
N_RESAMPLES = 1000
LEVEL = 0.95
BOOTSTRAP_SEED = 0
PAPER_COLUMNS = {"paper": "string", "venue": "string", "link": "string", "adv_trained": "boolean"}
PAPER_NUMBERS = ("paper clean", "paper robust")
PASSES = "passes/image"

Attack = tuple[str, str, float]


def frame_of(records: Iterable[Record], run: str | Path = "") -> pd.DataFrame:
    """The results frame (as ``load``) of ``records`` read from the run folder ``run`` ("": none, so no intervals)."""
    return _frame([(record, str(run)) for record in records])


def load(*run_dirs: str | Path) -> pd.DataFrame:
    """A row per record of the run folders, the latest per key winning (a later folder wins).

    Columns: every ``bench.store.Record`` field, typed (strings, ints, nullable ints, floats; lists and dicts as
    objects), ``eps_label`` (``format_eps``: ``4/255``) and ``run`` (the folder, as given, that the record came from).
    """
    tagged = [(record, str(run)) for run in run_dirs for record in RunStore(run).records()]
    runs = {record.key: run for record, run in tagged}  # a later folder wins
    return _frame([(record, runs[record.key]) for record in latest_per_key(record for record, _ in tagged)])


def _frame(rows: list[tuple[Record, str]]) -> pd.DataFrame:
    frame = pd.DataFrame([record.to_dict() for record, _ in rows], columns=list(RECORD_FIELDS)).astype(RECORD_DTYPES)
    frame["eps_label"] = frame["eps"].map(format_eps).astype("string")
    frame["run"] = pd.Series([run for _, run in rows], dtype="string")
    return frame


def manifests(*run_dirs: str | Path) -> list[dict[str, Any]]:
    """Each run folder's manifest.json (empty when missing) with ``run``: the folder as given."""
    return [{**RunStore(run).read_manifest(), "run": str(run)} for run in run_dirs]


def column_order(attack: Attack) -> tuple:
    """Order of robust columns: worst-case first (the headline number), then attacks by name, norm and eps."""
    name, norm, eps = attack
    return name != WORST_CASE, name, norm, eps


def column_labels(attacks: list[Attack]) -> list[str]:
    """Attack names with their budget (datasets may run at different eps), and the norm when the run mixes norms."""
    several_norms = len({norm for _, norm, _ in attacks}) > 1
    return [" ".join([name, *([norm] if several_norms else []), format_eps(eps)]) for name, norm, eps in attacks]


def auroc_columns(table: pd.DataFrame) -> list[str]:
    """The AUROC columns of a ``leaderboard`` or ``per_class`` frame, in order: clean, worst-case, attacks."""
    return [name.removesuffix(" flags") for name in table.columns if name.endswith(" flags")]


def _cells(frame: pd.DataFrame, dataset: str) -> tuple[pd.DataFrame, dict[str, Attack]]:
    """The dataset's records (the later of two of one cell) with their column label in ``column``; the robust
    columns' labels, in order, with their (attack, norm, eps)."""
    rows = frame[frame["dataset"] == dataset].drop_duplicates(CELL, keep="last")
    if rows.empty:
        raise UsageError(f"no records of dataset {dataset!r}")
    keys = [(a, n, float(e)) for a, n, e in zip(rows["attack"], rows["norm"].fillna(""), rows["eps"], strict=True)]
    attacks = sorted(set(keys), key=column_order)
    labels = dict(zip(attacks, column_labels(attacks), strict=True))
    return rows.assign(column=[labels[key] for key in keys]), {label: key for key, label in labels.items()}


def _long(rows: pd.DataFrame) -> pd.DataFrame:
    """A row per AUROC of the records: each fit's clean AUROC (column ``clean``, from its latest record that has one)
    and each cell's robust AUROC; ``good`` where there is a number, ``array`` names its scores."""
    fit = ["detector", "normal_class", "seed"]
    has_clean = (rows["status"] == "ok") & rows["clean_auroc"].notna()
    sources = rows[has_clean].drop_duplicates(fit, keep="last")[[*fit, "clean_auroc", "run", "key"]]
    clean = rows.drop_duplicates(fit, keep="last")[fit].merge(sources, on=fit, how="left")
    clean = clean.assign(column="clean", value=clean["clean_auroc"], array="clean", flags=[[]] * len(clean))
    robust = rows.assign(value=rows["robust_auroc"].where(rows["status"] == "ok"), array="adv")
    long = pd.concat([clean, robust], ignore_index=True)
    return long[[*fit, "column", "value", "flags", "run", "key", "array"]].assign(good=long["value"].notna())


def _resamples(run: Any, key: Any, array: str, normal_class: int) -> np.ndarray | None:
    """Bootstrap AUROCs of one cell from its scores file; None without one (or with a single-group test set)."""
    if pd.isna(run) or not run:
        return None
    path = RunStore(run).scores_path(key)
    if not path.is_file():
        return None
    stat = path.stat()
    return _bootstrap(str(path), stat.st_mtime_ns, stat.st_size, array, int(normal_class))


@functools.lru_cache(maxsize=4096)
def _bootstrap(path: str, mtime_ns: int, size: int, array: str, normal_class: int) -> np.ndarray | None:
    """``_resamples`` of one scores file, cached while the file is unchanged (its time and size are in the key)."""
    with np.load(path) as data:
        if array not in data.files or "is_anomaly" not in data.files:
            return None
        scores, labels = data[array], data["is_anomaly"]
    generator = torch.Generator().manual_seed(BOOTSTRAP_SEED + normal_class)
    try:
        values = bootstrap_aurocs(scores, labels, n_resamples=N_RESAMPLES, generator=generator)
    except ValueError:
        return None
    values.setflags(write=False)
    return values


def _interval(cells: pd.DataFrame) -> tuple[float, float] | None:
    """The bootstrap interval (percent) of the mean over the cells' classes: each class's test set resampled, the
    b-th resamples averaged over classes; None unless every cell has its scores."""
    draws = []
    for run, key, array, normal_class in cells[["run", "key", "array", "normal_class"]].itertuples(index=False):
        values = _resamples(run, key, array, normal_class)
        if values is None:
            return None
        draws.append(values)
    low, high = percentile_interval(np.mean(draws, axis=0), LEVEL)
    return round(100 * low, 10), round(100 * high, 10)


def _table(rows: pd.DataFrame, columns: list[str], keys: list[str], intervals: bool = True) -> pd.DataFrame:
    """Per ``keys`` group (index) and AUROC column: the mean (percent) over classes per seed then over seeds, the
    std over seeds (several seeds) or the bootstrap interval (one seed; when ``intervals``), and the flags."""
    long = _long(rows)
    good = long[long["good"]]
    cell = [*keys, "column"]
    index = rows.groupby(keys).size().index
    per_seed = good.groupby([*cell, "seed"])["value"].mean()
    by_cell = per_seed.groupby(level=cell)
    several_seeds = rows["seed"].nunique() > 1

    def wide(values: pd.Series) -> pd.DataFrame:
        table = values.unstack("column") if len(values) else pd.DataFrame(index=index)
        return table.reindex(index=index, columns=columns).astype("float64")

    means = wide(by_cell.mean() * 100)
    union = good.groupby(cell)["flags"].agg(lambda lists: sorted({flag for flags in lists for flag in flags}))
    failed = (~long["good"]).groupby([long[name] for name in cell]).any()
    incomplete = pd.concat([failed, _short(rows, good, keys, cell)], axis=1).fillna(False).astype(bool).any(axis=1)
    out = {name: means[name] for name in columns}
    out[PASSES] = _passes(rows, keys).reindex(index)
    if several_seeds:
        stds = wide(by_cell.std(ddof=1) * 100)
        out |= {f"{name} std": stds[name] for name in columns}
    else:
        sources = good.groupby(cell)[["run", "key", "array", "normal_class"]]
        ci = sources.apply(_interval) if intervals else pd.Series(dtype=object)
        out |= {f"{name} ci": _per_cell(ci, index, name, None) for name in columns}
    for name in columns:
        flags = _per_cell(union, index, name, [])
        extra = _per_cell(incomplete, index, name, False)
        out[f"{name} flags"] = [
            sorted({*f, *([INCOMPLETE_FLAG] if x else [])}) if pd.notna(m) else []
            for f, x, m in zip(flags, extra, means[name], strict=True)
        ]
    return pd.DataFrame(out, index=index)


def _short(rows: pd.DataFrame, good: pd.DataFrame, keys: list[str], cell: list[str]) -> pd.Series:
    """Per (keys..., column): whether its mean covers fewer (class, seed) fits than its scope holds (the dataset, or
    the class of a per-class row): an attack run on some classes only, or a merge of runs that cover different ones."""
    pairs = ["normal_class", "seed"]
    scope = [k for k in keys if k != "detector"]
    covered = good.drop_duplicates([*cell, *pairs]).groupby(cell).size()
    fits = rows.drop_duplicates(list(dict.fromkeys([*scope, *pairs])))
    if not scope:
        return covered < len(fits)
    expected = fits.groupby(scope).size()
    where = [keys.index(name) for name in scope]
    wanted = [expected[key[where[0]] if len(where) == 1 else tuple(key[i] for i in where)] for key in covered.index]
    return covered < pd.Series(wanted, index=covered.index)


def _per_cell(values: pd.Series, index: pd.Index, column: str, default: Any) -> list[Any]:
    """Values of a (keys..., column)-indexed Series for one column, in ``index`` order (``default`` if missing)."""
    lookup = values.to_dict()
    return [lookup.get((*(key if isinstance(key, tuple) else (key,)), column), default) for key in index]


def _passes(rows: pd.DataFrame, keys: list[str]) -> pd.Series:
    """Mean backbone passes per attacked image per group, over ok records that report them."""
    images = rows["n_normal"].fillna(0) + rows["n_anomaly"].fillna(0)
    usable = (rows["status"] == "ok") & rows["backbone_passes"].notna() & (images > 0)
    ratio = (rows["backbone_passes"].astype("float64") / images.astype("float64"))[usable]
    return ratio.groupby([rows.loc[usable, name] for name in keys]).mean()


def _papers(detectors: list[str], dataset: str) -> pd.DataFrame:
    """Per detector: its paper's title, venue and year, link, whether it is adversarially trained, and the clean /
    robust AUROC (%) its paper reports on ``dataset`` (NA / NaN when unknown: plugins, toys, other datasets)."""
    rows = []
    for name in detectors:
        cls = DETECTORS.get(name) if name in DETECTORS else None
        citation, result = (cls.citation, cls.paper_results.get(dataset)) if cls else (None, None)
        rows.append({
            "paper": citation.title if citation else None,
            "venue": f"{citation.venue} {citation.year}" if citation else None,
            "link": citation.link if citation else None,
            "adv_trained": cls.adversarially_trained if cls else None,
            "paper clean": result.clean if result else np.nan,
            "paper robust": result.robust if result and result.robust is not None else np.nan,
        })  # fmt: skip
    columns = {**PAPER_COLUMNS, **dict.fromkeys(PAPER_NUMBERS, "float64")}
    return pd.DataFrame(rows, columns=list(columns)).astype(columns)


def _ranked(table: pd.DataFrame, attacks: dict[str, Attack], within: list[str]) -> pd.DataFrame:
    """``table`` (keys as columns) sorted within each ``within`` group by worst-case robust AUROC (the largest eps
    first; without a worst-case column, each row's lowest robust AUROC), then clean, then name; ``rank`` first
    (1-based; rows whose sort numbers are equal share the first one's rank)."""
    worst = sorted((c for c, a in attacks.items() if a[0] == WORST_CASE), key=lambda c: -attacks[c][2])
    keys = [*worst, "clean"] if worst else ["lowest robust", "clean"]
    table = table.assign(**{"lowest robust": table[list(attacks)].min(axis=1)}) if not worst else table
    by = [*within, *keys, "detector"]
    ascending = [True] * len(within) + [False] * len(keys) + [True]
    table = table.sort_values(by, ascending=ascending, na_position="last", kind="mergesort").reset_index(drop=True)
    numbers = table[keys].fillna(-np.inf)
    first = (numbers != numbers.shift()).any(axis=1)
    if within:
        first |= (table[within] != table[within].shift()).any(axis=1)
    position = table.groupby(within).cumcount() + 1 if within else pd.Series(np.arange(1, len(table) + 1))
    rank = position.where(first).ffill().astype("int64")
    return table.drop(columns=["lowest robust"], errors="ignore").assign(rank=rank)


def _board(frame: pd.DataFrame, dataset: str, keys: list[str], intervals: bool = True) -> pd.DataFrame:
    rows, attacks = _cells(frame, dataset)
    columns = ["clean", *attacks]
    table = _table(rows, columns, keys, intervals).reset_index()
    papers = _papers(list(table["detector"]), dataset).set_axis(table.index)
    table = pd.concat([table, papers], axis=1)
    within = [k for k in keys if k != "detector"]
    if within:
        names = rows.groupby("normal_class")["class_name"].agg(lambda s: next((n for n in s if n), ""))
        table["class"] = [names.get(c) or str(c) for c in table["normal_class"]]
        within = ["normal_class"]
    table = _ranked(table, attacks, within)
    front = ["rank", "detector", *(["normal_class", "class"] if within else []), *PAPER_COLUMNS, *columns, PASSES,
             *PAPER_NUMBERS]  # fmt: skip
    return table[[*front, *(c for c in table.columns if c not in front)]]


def leaderboard(frame: pd.DataFrame, dataset: str, *, intervals: bool = True) -> pd.DataFrame:
    """One dataset's leaderboard, a row per detector, ranked like RobustBench.

    Columns: ``rank``, ``detector``, ``paper`` / ``venue`` / ``link`` / ``adv_trained`` (``detectors.papers``; NA for
    detectors that declare none), ``clean``, the robust columns (``worst-case <eps>`` ..., then ``<attack> <eps>``
    ..., the norm too when the dataset mixes norms), ``passes/image`` (backbone passes per attacked image),
    ``paper clean`` / ``paper robust`` (NaN when unknown); then per AUROC column ``<col> ci`` (one seed: the 95%
    bootstrap interval ``(low, high)``, None without score files) or ``<col> std`` (several seeds: the std over
    seeds), then ``<col> flags`` (sorted; ``incomplete`` when some of its cells failed). AUROCs are in percent: the
    mean over classes per seed, then over seeds.

    The interval of a mean over classes resamples each class's test set (normals and anomalies separately,
    ``N_RESAMPLES`` times, class c with a generator seeded ``BOOTSTRAP_SEED + c``), averages the b-th resamples'
    AUROCs over classes and takes their percentiles. Rows are sorted by worst-case robust AUROC (the largest eps
    first; without a worst-case column, by each row's lowest robust AUROC), then clean, then name. Without
    ``intervals`` no scores file is read (the ``ci`` columns are None).
    """
    return _board(frame, dataset, ["detector"], intervals)


def attack_columns(frame: pd.DataFrame, dataset: str) -> dict[str, Attack]:
    """The robust columns of ``dataset``'s leaderboard and the (attack, norm, eps) each one holds."""
    return _cells(frame, dataset)[1]


def per_class(frame: pd.DataFrame, dataset: str) -> pd.DataFrame:
    """The leaderboard per normal class: rows (detector, class) sorted by class index, then ranked within each
    class like ``leaderboard`` (``rank`` per class), with ``normal_class`` and ``class`` (its name) columns."""
    return _board(frame, dataset, ["detector", "normal_class"])


def members(frame: pd.DataFrame, dataset: str) -> pd.DataFrame:
    """The members of a dataset's ensemble and worst-case cells, a row per (detector, column, member).

    Columns: ``detector``, ``column``, ``member``, ``robust`` (its own robust AUROC) and ``share`` (of samples whose
    worst case it supplied), percent, mean over classes per seed then over seeds, each with a ``std`` over seeds
    (NaN with one), and ``skipped`` (the first reason seen; "" when it ran). Rows: column by column, detectors in
    leaderboard order, members in first-seen order.
    """
    rows, attacks = _cells(frame, dataset)
    ok = rows[(rows["status"] == "ok") & rows["robust_auroc"].notna()]
    cell = ["detector", "column"]
    ran = ok[[*cell, "seed", "members"]].explode("members").dropna(subset=["members"])
    ran = ran.assign(
        member=[m["attack"] for m in ran["members"]],
        robust=[m.get("robust_auroc") for m in ran["members"]],
        share=[m.get("share") for m in ran["members"]],
    ).astype({"robust": "float64", "share": "float64"})
    skipped = ok[[*cell, "skipped_members"]].explode("skipped_members").dropna(subset=["skipped_members"])
    skipped = skipped.assign(
        member=[m["attack"] for m in skipped["skipped_members"]],
        skipped=[str(m.get("reason") or "") for m in skipped["skipped_members"]],
    ).drop_duplicates([*cell, "member"])
    per_seed = ran.groupby([*cell, "member", "seed"], sort=False)[["robust", "share"]].mean()
    by_member = per_seed.groupby(level=[*cell, "member"], sort=False)
    stats = pd.concat([by_member.mean(), by_member.std(ddof=1).add_suffix(" std")], axis=1) * 100
    names = pd.concat([ran[[*cell, "member"]], skipped[[*cell, "member"]]]).drop_duplicates()
    table = names.merge(stats.reset_index(), on=[*cell, "member"], how="left")
    table = table.merge(skipped[[*cell, "member", "skipped"]], on=[*cell, "member"], how="left")
    order = list(_ranked(_table(rows, ["clean", *attacks], ["detector"], False).reset_index(), attacks, [])["detector"])
    table = table.assign(_c=table["column"].map(list(attacks).index), _d=table["detector"].map(order.index))
    table = table.sort_values(["_c", "_d"], kind="mergesort").reset_index(drop=True)
    columns = [*cell, "member", "robust", "robust std", "share", "share std", "skipped"]
    return table.assign(skipped=table["skipped"].astype("string").fillna(""))[columns]
