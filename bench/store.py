"""The results folder: manifest.json, records.jsonl (one line per finished cell), per-sample scores.

Every file is written atomically (temporary file + rename) and each record is appended with a single
``write`` on an O_APPEND descriptor, so a run killed at any moment leaves no partial file and loses no
finished cell. Executors whose workers cannot share a file (Slurm) write ``parts/<name>.jsonl``; readers merge
both. A truncated last line (a kill in the middle of a write) is ignored.
"""

from __future__ import annotations

import io
import json
import os
import tempfile
from collections.abc import Collection
from pathlib import Path
from typing import Any

import numpy as np

RECORD_FIELDS = (
    "dataset", "normal_class", "class_name", "detector", "seed", "attack", "norm", "eps", "clean_auroc",
    "robust_auroc", "n_normal", "n_anomaly", "fit_seconds", "attack_seconds", "flags", "key", "fit_key",
    "status", "error", "score_forwards", "score_backwards", "backbone_passes", "preset",
)  # fmt: skip


#: ``not-applicable``: the attack needs something the detector does not expose (e.g. a feature bank).
FINISHED_STATUSES = ("ok", "not-applicable")


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so readers see the old file or the whole new one, never a part."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    """Text flavour of ``atomic_write_bytes``."""
    atomic_write_bytes(path, text.encode())


def append_line(path: Path, record: dict[str, Any]) -> None:
    """Append one JSON line with a single write on an O_APPEND descriptor, then fsync."""
    path.parent.mkdir(parents=True, exist_ok=True)
    line = (json.dumps(record, sort_keys=True) + "\n").encode()
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line)
        os.fsync(fd)
    finally:
        os.close(fd)


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """Records of one JSONL file, skipping a torn (unterminated or unparsable) line."""
    if not path.is_file():
        return []
    out = []
    for line in path.read_text().splitlines(keepends=True):
        if not line.endswith("\n"):
            continue
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return out


class RunStore:
    """One run's results folder."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    @property
    def records_path(self) -> Path:
        return self.root / "records.jsonl"

    def write_manifest(self, manifest: dict[str, Any]) -> None:
        atomic_write_text(self.root / "manifest.json", json.dumps(manifest, indent=2, sort_keys=True, default=str))

    def read_manifest(self) -> dict[str, Any]:
        path = self.root / "manifest.json"
        return json.loads(path.read_text()) if path.is_file() else {}

    def append_record(self, record: dict[str, Any], part: str | None = None) -> None:
        """Append a finished cell's record (to ``parts/<part>.jsonl`` when workers must not share a file)."""
        append_line(self.root / "parts" / f"{part}.jsonl" if part else self.records_path, record)

    def records(self) -> list[dict[str, Any]]:
        """All records, the latest per key winning (a retried cell replaces its failed record)."""
        paths = [self.records_path, *sorted((self.root / "parts").glob("*.jsonl"))]
        latest: dict[str, dict[str, Any]] = {}
        for path in paths:
            for record in read_jsonl(path):
                latest.pop(record["key"], None)
                latest[record["key"]] = record
        return list(latest.values())

    def finished_keys(self) -> set[str]:
        """Keys of cells that completed or cannot apply (failed cells are retried)."""
        return {r["key"] for r in self.records() if r.get("status", "ok") in FINISHED_STATUSES}

    def rewrite(self, records: list[dict[str, Any]]) -> None:
        """Replace records.jsonl with ``records`` (atomically) and remove the parts folded into them."""
        parts = sorted((self.root / "parts").glob("*.jsonl"))
        atomic_write_text(self.records_path, "".join(json.dumps(r, sort_keys=True) + "\n" for r in records))
        for part in parts:
            part.unlink()

    def consolidate(self) -> None:
        """Fold parts/*.jsonl into records.jsonl (atomically) and remove the parts."""
        if any((self.root / "parts").glob("*.jsonl")):
            self.rewrite(self.records())

    def scores_path(self, key: str) -> Path:
        return self.root / "scores" / f"{key}.npz"

    def save_scores(self, key: str, **arrays: np.ndarray) -> None:
        """Per-sample arrays of a cell (clean, adv, is_anomaly, examples), written atomically."""
        buffer = io.BytesIO()
        np.savez_compressed(buffer, **arrays)
        atomic_write_bytes(self.scores_path(key), buffer.getvalue())

    def load_scores(self, key: str, names: Collection[str] | None = None) -> dict[str, np.ndarray]:
        """A cell's per-sample arrays; only those among ``names`` when given (the others are not decompressed)."""
        with np.load(self.scores_path(key)) as data:
            return {name: data[name] for name in data.files if names is None or name in names}


def load_records(run_dir: str | Path) -> list[dict[str, Any]]:
    """The records of the run folder ``run_dir``."""
    return RunStore(run_dir).records()
