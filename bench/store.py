"""The results folder and its record type: manifest.json, records.jsonl (one ``Record`` per cell), per-sample scores.

Every file is written atomically (temporary file + rename) and each record is appended with a single
``write`` on an O_APPEND descriptor, so a run killed at any moment leaves no partial file and loses no
finished cell. Executors whose workers cannot share a file (Slurm) write ``parts/<name>.jsonl``; readers merge
both. A truncated last line (a kill in the middle of a write) is ignored.
"""

from __future__ import annotations

import dataclasses
import io
import json
import os
import tempfile
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

#: Version of the record layout written by this code. 1: the untyped dicts written before ``Record`` (they load:
#: fields they lack take their defaults); 2: adds ``schema`` and ``seed_key``.
SCHEMA_VERSION = 2


@dataclass
class Record:
    """One cell of a run: what was evaluated (dataset, class, detector, seed, attack, budget), its numbers and flags.

    Written by the runner (one per attack cell) and by the worst-case merge (``attack == "worst-case"``); AUROCs are
    fractions. ``key`` hashes everything that determines the numbers, code versions included; ``seed_key`` is the
    key without code versions (it seeds the attack, so a refactor does not move the random starts).
    """

    dataset: str
    normal_class: int
    detector: str
    seed: int
    attack: str
    norm: str
    eps: float
    key: str
    class_name: str = ""
    preset: str = ""
    status: str = "ok"  # ok | failed | not-applicable
    error: str | None = None
    flags: list[str] = field(default_factory=list)
    clean_auroc: float | None = None
    robust_auroc: float | None = None
    n_normal: int | None = None
    n_anomaly: int | None = None
    fit_key: str | None = None
    fit_seconds: float | None = None
    attack_seconds: float | None = None
    score_forwards: int | None = None
    score_backwards: int | None = None
    backbone_passes: int | None = None
    steps: int | None = None
    #: An ensemble's members, or a worst-case record's sources: [{attack, robust_auroc, share[, white_box]}].
    members: list[dict[str, Any]] | None = None
    skipped_members: list[dict[str, str]] | None = None
    #: Keys of the cells a worst-case record was built from.
    sources: list[str] | None = None
    #: What a worst-case record was built from (``bench.merge.sources_fingerprint``): it is reused only while equal.
    sources_fingerprint: str | None = None
    seed_key: str | None = None
    schema: int = SCHEMA_VERSION

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @property
    def finished(self) -> bool:
        """Completed, or cannot apply (a failed cell is retried)."""
        return self.status in FINISHED_STATUSES

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Record:
        """A record from its JSON object; a schema-1 line (no ``schema``) takes defaults for the fields it lacks."""
        values = {name: data[name] for name in RECORD_FIELDS if name in data}
        return cls(**{"schema": 1, **values})


RECORD_FIELDS = tuple(f.name for f in dataclasses.fields(Record))

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


def record_line(record: Record) -> str:
    """A record as one JSON line."""
    return json.dumps(record.to_dict(), sort_keys=True) + "\n"


def append_line(path: Path, line: str) -> None:
    """Append one line with a single write on an O_APPEND descriptor, then fsync."""
    path.parent.mkdir(parents=True, exist_ok=True)
    line = line.encode()
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line)
        os.fsync(fd)
    finally:
        os.close(fd)


def read_jsonl(path: Path) -> list[Record]:
    """Records of one JSONL file, skipping a torn (unterminated or unparsable) line."""
    if not path.is_file():
        return []
    out = []
    for line in path.read_text().splitlines(keepends=True):
        if not line.endswith("\n"):
            continue
        try:
            out.append(Record.from_dict(json.loads(line)))
        except (json.JSONDecodeError, TypeError, KeyError):
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

    def append_record(self, record: Record, part: str | None = None) -> None:
        """Append a finished cell's record (to ``parts/<part>.jsonl`` when workers must not share a file)."""
        append_line(self.root / "parts" / f"{part}.jsonl" if part else self.records_path, record_line(record))

    def records(self) -> list[Record]:
        """All records, the latest per key winning (a retried cell replaces its failed record)."""
        paths = [self.records_path, *sorted((self.root / "parts").glob("*.jsonl"))]
        return latest_per_key(record for path in paths for record in read_jsonl(path))

    def has_parts(self) -> bool:
        """Whether workers left part files not yet folded into records.jsonl."""
        return any((self.root / "parts").glob("*.jsonl"))

    def rewrite(self, records: list[Record]) -> None:
        """Replace records.jsonl with ``records`` (atomically) and remove the parts folded into them."""
        parts = sorted((self.root / "parts").glob("*.jsonl"))
        atomic_write_text(self.records_path, "".join(map(record_line, records)))
        for part in parts:
            part.unlink()

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


def latest_per_key(records: Iterable[Record]) -> list[Record]:
    """One record per key, the latest winning (a retried cell replaces its failed record), in first-seen order of
    the winners' last write."""
    latest: dict[str, Record] = {}
    for record in records:
        latest.pop(record.key, None)
        latest[record.key] = record
    return list(latest.values())


def finished_keys(records: Iterable[Record]) -> set[str]:
    """Keys of the cells that completed or cannot apply (a failed cell is retried)."""
    return {record.key for record in records if record.finished}


def load_records(run_dir: str | Path) -> list[Record]:
    """The records of the run folder ``run_dir``."""
    return RunStore(run_dir).records()
