"""Registries, budget parsing, hashing, the results store and the checkpoint cache."""

from __future__ import annotations

import dataclasses
import json
import os

import numpy as np
import pytest
import torch

from bench.config import format_eps, parse_eps
from bench.errors import UsageError
from bench.hashing import class_sources, stable_hash
from bench.registry import Registry
from bench.store import Record, RunStore, read_jsonl


@pytest.fixture
def registry() -> Registry:
    reg: Registry = Registry("thing")
    for name in ("cobra", "cobra-noadv", "csi", "deepsvdd"):
        reg.register(name, f"the {name}")(type(name, (), {}))
    return reg


def test_expand_all_lists_globs_keep_order_without_repeats(registry: Registry) -> None:
    assert registry.expand("all") == ["cobra", "cobra-noadv", "csi", "deepsvdd"]
    assert registry.expand("deepsvdd,cobra") == ["deepsvdd", "cobra"]
    assert registry.expand("cobra*") == ["cobra", "cobra-noadv"]
    assert registry.expand("cobra*,cobra,csi") == ["cobra", "cobra-noadv", "csi"]
    assert registry.expand(["csi"]) == ["csi"]


@pytest.mark.parametrize("spec", ["nope", "zz*", "", " , "])
def test_expand_unknown_names_list_the_choices(registry: Registry, spec: str) -> None:
    with pytest.raises(UsageError, match="cobra, cobra-noadv, csi, deepsvdd"):
        registry.expand(spec)


def test_register_twice_is_an_error(registry: Registry) -> None:
    with pytest.raises(ValueError, match="twice"):
        registry.register("csi")(object)


@pytest.mark.parametrize(
    ("text", "expected"),
    [("8/255", [8 / 255]), ("0.03", [0.03]), ("2/255,4/255", [2 / 255, 4 / 255]), ("0", [0.0]), (" 1 ", [1.0])],
)
def test_parse_eps(text: str, expected: list[float]) -> None:
    assert parse_eps(text) == pytest.approx(expected, abs=0)


@pytest.mark.parametrize("text", ["-1", "abc", "1/0", "nan", "inf", "", "4/255,,x"])
def test_parse_eps_rejects(text: str) -> None:
    with pytest.raises(UsageError):
        parse_eps(text)


def test_format_eps() -> None:
    assert format_eps(4 / 255) == "4/255"
    assert format_eps(0.03) == "0.03"
    assert format_eps(0.0) == "0"


def test_stable_hash_depends_on_every_field() -> None:
    base = {"a": 1, "b": [1, 2], "c": {"d": 0.5}}
    assert stable_hash(base) == stable_hash({"c": {"d": 0.5}, "b": [1, 2], "a": 1})
    assert stable_hash(base) != stable_hash({**base, "a": 2})
    assert stable_hash(base) != stable_hash({**base, "c": {"d": 0.5000001}})


def record(key: str, status: str = "ok", **fields) -> Record:
    """A minimal record of one cell."""
    return Record("digits", 0, "deepsvdd", 0, "pgd", "linf", 4 / 255, key, status=status, **fields)


def test_store_appends_and_latest_record_wins(tmp_path) -> None:
    store = RunStore(tmp_path)
    store.append_record(record("a", "failed"))
    store.append_record(record("b"))
    store.append_record(record("a", robust_auroc=0.5))
    assert {r.key: r.status for r in store.records()} == {"a": "ok", "b": "ok"}
    assert {r.key for r in store.records() if r.finished} == {"a", "b"}


def test_store_ignores_a_torn_last_line(tmp_path) -> None:
    store = RunStore(tmp_path)
    store.append_record(record("a"))
    with open(store.records_path, "a") as fh:
        fh.write('{"key": "b", "sta')
    assert [r.key for r in store.records()] == ["a"]


def test_store_parts_are_merged_and_folded_by_a_rewrite(tmp_path) -> None:
    store = RunStore(tmp_path)
    store.append_record(record("a"))
    store.append_record(record("b"), part="job1")
    assert {r.key for r in store.records()} == {"a", "b"} and store.has_parts()
    store.rewrite(store.records())
    assert not store.has_parts()
    assert {r.key for r in read_jsonl(store.records_path)} == {"a", "b"}


def test_schema_1_records_load_with_defaults(tmp_path) -> None:
    """A records.jsonl line written before the typed Record (no schema, fewer fields, an unknown one) loads."""
    old = {
        "dataset": "digits",
        "normal_class": 1,
        "detector": "ae",
        "seed": 0,
        "attack": "fgsm",
        "norm": "linf",
        "eps": 0.0078,
        "key": "k",
        "status": "ok",
        "flags": ["not-converged"],
        "robust_auroc": 0.4,
        "extra": 1,
    }
    (tmp_path / "records.jsonl").write_text(json.dumps(old) + "\n")
    (loaded,) = RunStore(tmp_path).records()
    assert (loaded.schema, loaded.robust_auroc, loaded.flags, loaded.members) == (1, 0.4, ["not-converged"], None)
    assert Record.from_dict(loaded.to_dict()) == loaded


def test_store_scores_round_trip_and_leave_no_temporary_files(tmp_path) -> None:
    store = RunStore(tmp_path)
    store.save_scores("k", clean=np.arange(3.0), is_anomaly=np.array([True, False, True]))
    store.write_manifest({"run_key": "x"})
    loaded = store.load_scores("k")
    np.testing.assert_array_equal(loaded["clean"], np.arange(3.0))
    assert json.loads((tmp_path / "manifest.json").read_text()) == {"run_key": "x"}
    leftovers = [p for p in tmp_path.rglob("*") if p.name.endswith(".tmp")]
    assert leftovers == []


def test_fit_key_changes_when_any_config_field_changes() -> None:
    from test_detector_conformance import project_detectors

    from bench.cache import fit_key
    from bench.data import load_split
    from detectors import create_detector

    split = load_split("digits", 0, max_test=50)
    for name in project_detectors():
        detector = create_detector(name)
        key = fit_key(detector, split, seed=0)
        assert key != fit_key(detector, split, seed=1)
        for field in dataclasses.fields(detector.config):
            value = getattr(detector.config, field.name)
            changed = changed_value(value)
            if changed is None:
                continue
            other = create_detector(name, **{field.name: changed})
            assert fit_key(other, split, seed=0) != key, f"{name}.{field.name} does not change the cache key"


def changed_value(value):
    """A different value of the same type (None when there is no obvious one)."""
    if isinstance(value, bool):
        return not value
    if isinstance(value, int | float):
        return value + 1
    if isinstance(value, str):
        return value + "x"
    if isinstance(value, tuple | list):
        return type(value)([*value, value[-1]]) if value else None
    return None


def test_checkpoint_cache_round_trip(tmp_path) -> None:
    from bench.cache import CheckpointCache
    from bench.data import load_split
    from detectors import DETECTORS, create_detector

    if "deepsvdd" not in DETECTORS:
        pytest.skip("deepsvdd not registered")
    split = load_split("digits", 0, max_test=50)
    detector = create_detector("deepsvdd", epochs=1).fit(split.train, generator=torch.Generator().manual_seed(0))
    cache = CheckpointCache(tmp_path)
    cache.save("k", detector, fit_seconds=1.5)
    restored = create_detector("deepsvdd", epochs=1)
    assert cache.load("k", restored) == 1.5
    torch.testing.assert_close(restored.score_batched(split.test), detector.score_batched(split.test), rtol=0, atol=0)
    assert not [p for p in os.listdir(tmp_path) if p.endswith(".tmp")]


def test_code_version_covers_the_base_classes_a_detector_inherits_from() -> None:
    from detectors import DETECTORS

    names = {
        name: {p.name for p in class_sources(DETECTORS.get(name), "detectors")}
        for name in ("at-deepsvdd", "apae", "cobra")
    }
    assert {"at_deepsvdd.py", "deepsvdd.py"} <= names["at-deepsvdd"]
    assert {"apae.py", "ae.py"} <= names["apae"]
    cobra_modules = {"cobra.py", "csi.py", "augment.py", "contrastive.py", "adversarial.py", "nets.py", "base.py"}
    assert cobra_modules <= names["cobra"]  # found from the imports
    assert "augment.py" not in names["apae"]  # a module the detector does not use is not part of its version
