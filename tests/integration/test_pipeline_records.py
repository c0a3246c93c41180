"""The pipeline reshape left every number alone: a small grid's records equal those the old pipeline wrote.

tests/data/pipeline_reference.json holds the records of the grid below as written by the pipeline before it was
reshaped (commit 8bfaeb8), with each cell's seed key (its key without code versions) in place of its key, and a
worst-case record's sources as their seed keys. Numbers, flags, pass counts and members must match exactly; the
keys match once code versions are left out.
"""

from __future__ import annotations

import json
from pathlib import Path

from bench.cli import main
from bench.store import load_records

REFERENCE = Path(__file__).resolve().parents[1] / "data" / "pipeline_reference.json"
ARGS = ["--preset", "smoke", "--classes", "0", "--detectors", "deepsvdd,at-deepsvdd"]
ARGS += ["--attacks", "fgsm,pgd-in,autoattack", "--eps", "2/255,4/255", "--quiet"]
#: Fields that legitimately differ between runs (timings), carry code versions (keys) or are new in schema 2.
LEFT_OUT = ("key", "fit_key", "fit_seconds", "attack_seconds", "sources", "seed_key", "schema", "sources_fingerprint")


def comparable(records: list) -> list[dict]:
    """Records as the reference stores them: seed keys for keys, timings and code-version keys left out."""
    seed_keys = {r.key: r.seed_key for r in records if r.seed_key is not None}
    out = []
    for record in records:
        data = {k: v for k, v in record.to_dict().items() if k not in LEFT_OUT and v is not None}
        if record.sources is not None:
            data["source_seed_keys"] = sorted(seed_keys[key] for key in record.sources)
        else:
            data["seed_key"] = record.seed_key
        out.append(data)
    return sorted(out, key=lambda r: (r["detector"], r["attack"], r["eps"]))


def test_records_match_the_pipeline_before_the_reshape(tmp_path: Path) -> None:
    assert main([*ARGS, "--out", str(tmp_path / "run")]) == 0
    reference = [{k: v for k, v in r.items() if v is not None} for r in json.loads(REFERENCE.read_text())]
    assert comparable(load_records(tmp_path / "run")) == reference
