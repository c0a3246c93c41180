"""Results that span a grid's cells, merged into its records in memory: the sanity ladder's cross-cell flags and
the per-sample ``worst-case`` record of each (dataset, class, detector, seed, budget)."""

from __future__ import annotations

import dataclasses
from collections import defaultdict
from typing import Any

import numpy as np

from bench.hashing import files_digest, module_closure, stable_hash
from bench.metrics import INCOMPLETE_FLAG, WORST_CASE, auroc, worst_case, worst_case_sources
from bench.sanity import GRID_ONLY_FLAGS, NON_MONOTONE_EPS, grid_flags
from bench.store import Record, RunStore

#: Record fields that identify a worst-case group: one (dataset, class, detector, seed) fit at one budget.
GROUP_FIELDS = ("dataset", "normal_class", "detector", "seed", "norm", "eps")
#: Fields a worst-case record copies from its group's first ok cell.
SHARED_FIELDS = (*GROUP_FIELDS, "class_name", "preset", "fit_key", "clean_auroc", "n_normal", "n_anomaly")
SCORE_ARRAYS = ("clean", "adv", "is_anomaly")
EXAMPLE_ARRAYS = ("examples_clean", "examples_adv")


def merge_grid_flags(records: list[Record], keys: set[str]) -> tuple[list[Record], bool]:
    """``records`` with the cross-cell flags (eps monotonicity, gradient masking) of the grid's cells (``keys``)
    recomputed, so a flag whose cause was recomputed away disappears; and whether any flag changed."""
    extra = grid_flags([r for r in records if r.key in keys])
    changed = False
    out = []
    for record in records:
        if record.key in keys:
            kept = [f for f in record.flags if f not in GRID_ONLY_FLAGS]
            flags = kept + [f for f in extra.get(record.key, []) if f not in kept]
            if flags != record.flags:
                record, changed = dataclasses.replace(record, flags=flags), True
        out.append(record)
    return out, changed


def group_of(record: Record) -> tuple:
    """The worst-case group of a record."""
    return tuple(getattr(record, field) for field in GROUP_FIELDS)


def worst_case_key(sources: list[Record], failed: list[Record]) -> str:
    """A worst-case record's key: a hash of its source cells' keys (of the failed ones, marked so, when none is ok)."""
    return stable_hash(
        [WORST_CASE, *sorted(r.key for r in sources)]
        if sources
        else [WORST_CASE, "failed", *sorted(r.key for r in failed)]
    )


#: The code a worst-case record is computed by: a change to it rebuilds every worst case.
MERGE_CODE = files_digest(module_closure(__name__, "bench"))


def sources_fingerprint(store: RunStore, sources: list[Record]) -> str | None:
    """What a worst-case record was built from, without reading scores: the merge code, and per source its key,
    robust AUROC, attack time and its scores file's inode, size and modification time (a recomputed cell, --force
    included, rewrites its record and its scores file). None when a scores file is missing."""
    parts: list = [MERGE_CODE]
    for record in sources:
        path = store.scores_path(record.key)
        if not path.is_file():
            return None
        stat = path.stat()
        parts.append(
            [record.key, record.robust_auroc, record.attack_seconds, stat.st_ino, stat.st_size, stat.st_mtime_ns]
        )
    return stable_hash(parts)


def merge_worst_case(
    store: RunStore, records: list[Record], keys: set[str], fresh: set[str] | None = None
) -> tuple[list[Record], list[Record], bool]:
    """``records`` with the worst-case record of every group of the grid's cells (``keys``) rebuilt; the grid's
    worst-case records; and whether any changed.

    A worst-case key hashes its source keys, so an added attack or a cell that now succeeds gives a new record,
    which replaces the group's old one (and its scores file). A group none of whose cells is ``fresh`` (computed
    by this run; None: all are), whose old record has the same key and the same ``sources_fingerprint`` (same
    source records and scores files, same merge code) and whose scores file exists keeps its record, with only its
    flags recomputed from its sources' (no scores are read), so a rerun of a finished grid reads no scores and
    writes nothing.
    """
    groups: dict[tuple, list[Record]] = defaultdict(list)
    for record in records:
        if record.key in keys:
            groups[group_of(record)].append(record)
    old = {r.key: r for r in records if r.attack == WORST_CASE and group_of(r) in groups}
    built = []
    for cells in groups.values():
        stale = fresh is None or any(r.key in fresh for r in cells)
        record, arrays = rebuild(store, cells, {} if stale else old)
        if record is not None:
            built.append((record, arrays))
    extra = grid_flags([record for record, _ in built])
    built = [(dataclasses.replace(r, flags=sorted({*r.flags, *extra.get(r.key, [])})), a) for r, a in built]
    for record, arrays in built:
        if arrays is not None:
            store.save_scores(record.key, **arrays)
    new = {record.key: record for record, _ in built}
    changed = new != old or any(arrays is not None for _, arrays in built)
    for key in old.keys() - new.keys():
        store.scores_path(key).unlink(missing_ok=True)
    kept = [r for r in records if r.key not in old]
    return kept + list(new.values()), list(new.values()), changed


def rebuild(
    store: RunStore, cells: list[Record], old: dict[str, Record]
) -> tuple[Record | None, dict[str, np.ndarray] | None]:
    """One group's worst-case record, and its per-sample arrays when they had to be computed (None when a record
    of ``old`` with the same sources and a saved scores file stands, with its flags recomputed)."""
    sources = sorted((r for r in cells if r.ok), key=lambda r: r.attack)
    failed = [r for r in cells if r.status == "failed"]
    key = worst_case_key(sources, failed)
    fingerprint = sources_fingerprint(store, sources) if sources else None
    previous = old.get(key)
    if (
        previous is not None
        and previous.ok
        and fingerprint is not None
        and previous.sources_fingerprint == fingerprint
        and store.scores_path(key).is_file()
    ):
        shares = {m["attack"]: m["share"] for m in previous.members or []}
        suppliers = [r for r in sources if shares.get(r.attack, 0) > 0]
        return dataclasses.replace(previous, flags=inherited_flags(suppliers, failed)), None
    record, arrays = worst_case_record(store, sources, failed, key)
    return (dataclasses.replace(record, sources_fingerprint=fingerprint) if record is not None else None), arrays


def inherited_flags(suppliers: list[Record], failed: list[Record]) -> list[str]:
    """A worst-case record's own flags: those of the attacks that supplied at least one sample (a weaker attack's
    ``not-converged`` says nothing of a worst case it did not reach), less ``non-monotone-eps`` (the grid checks
    the worst-case records themselves), and ``incomplete`` when a cell of the group failed."""
    inherited = {f for r in suppliers for f in r.flags if f != NON_MONOTONE_EPS}
    return sorted(inherited | ({INCOMPLETE_FLAG} if failed else set()))


def worst_case_record(
    store: RunStore, sources: list[Record], failed: list[Record], key: str
) -> tuple[Record | None, dict[str, np.ndarray] | None]:
    """A group's worst-case record and per-sample arrays: per sample, the worst score over its ok cells.

    Normals take their highest adversarial score, anomalies their lowest (AUROC is monotone in each score, so
    this is a valid adversary). ``members`` gives each attack's robust AUROC and the share of samples whose worst
    case it supplied (ties go to the first attack by name); the examples come from the attack with the largest
    share. A group whose attacks all failed, or whose scores are missing, gets a failed record; one whose attacks
    do not apply gets none (None, None).
    """
    first = (sources or failed or [None])[0]
    if first is None:
        return None, None
    record = Record(
        **{field: getattr(first, field) for field in SHARED_FIELDS},
        attack=WORST_CASE,
        key=key,
        sources=sorted(r.key for r in sources),
    )
    if not sources:
        return failed_worst_case(record, "every attack of this cell failed"), None
    missing = [r.attack for r in sources if not store.scores_path(r.key).is_file()]
    if missing:
        return failed_worst_case(record, f"per-sample scores of {', '.join(missing)} are missing"), None
    data = [store.load_scores(r.key, SCORE_ARRAYS) for r in sources]
    labels = data[0]["is_anomaly"].astype(bool)
    if any(not np.array_equal(d["is_anomaly"].astype(bool), labels) for d in data):
        return failed_worst_case(record, "the attacks' test sets differ"), None
    adv = [d["adv"] for d in data]
    counts = np.bincount(worst_case_sources(adv, labels), minlength=len(sources))
    scores = worst_case(adv, labels)
    examples = store.load_scores(sources[int(counts.argmax())].key, EXAMPLE_ARRAYS)
    suppliers = [r for r, n in zip(sources, counts, strict=True) if n > 0]
    members: list[dict[str, Any]] = [
        {"attack": r.attack, "robust_auroc": r.robust_auroc, "share": float(n) / len(labels)}
        for r, n in zip(sources, counts, strict=True)
    ]
    record = dataclasses.replace(
        record, robust_auroc=auroc(scores, labels), flags=inherited_flags(suppliers, failed), members=members
    )
    arrays = {"clean": data[0]["clean"], "adv": scores, "is_anomaly": labels}
    return record, arrays | examples


def failed_worst_case(record: Record, error: str) -> Record:
    """``record`` as a failed worst-case record (no number: better none than an overstated one)."""
    return dataclasses.replace(record, status="failed", error=error, clean_auroc=None, robust_auroc=None, flags=[])
