"""A cell's key follows every attacks/ source file its numbers depend on (hierarchy, helpers, ensemble members)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

#: For each attack: the files its key must follow, and one attacks/ file it does not use.
DEPENDS = {
    "autoattack": (
        ["autoattack.py", "apgd.py", "feature.py", "component.py", "square.py", "base.py", "common.py", "registry.py"],
        "knn.py",
    ),
    "fgsm": (["fgsm.py", "pgd.py", "base.py", "common.py", "registry.py"], "apgd.py"),
    "knn": (["knn.py", "feature.py", "apgd.py", "base.py", "common.py", "registry.py"], "square.py"),
}

SCRIPT = """
import json, sys
from pathlib import Path
from bench.config import config_from_preset
from bench.grid import build_grid
from bench.hashing import files_digest

def key(attack):
    cfg = config_from_preset("smoke")
    cfg.datasets, cfg.classes, cfg.detectors, cfg.attacks = ["digits"], {"digits": [0]}, ["deepsvdd"], [attack]
    files_digest.cache_clear()
    return build_grid(cfg)[0].evals[0].key

out = {}
for attack, files in json.loads(sys.argv[1]).items():
    out[attack] = {"": key(attack)}
    for name in files:
        path = Path("attacks") / name
        text = path.read_text()
        path.write_text(text + "\\n# edited\\n")
        try:
            out[attack][name] = key(attack)
        finally:
            path.write_text(text)
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def keys(tmp_path_factory) -> dict[str, dict[str, str]]:
    """Each cell's key in a copy of the tree, before and after appending a comment to each file in turn."""
    copy = tmp_path_factory.mktemp("tree")
    for package in ("attacks", "bench", "detectors"):
        shutil.copytree(ROOT / package, copy / package, ignore=shutil.ignore_patterns("__pycache__"))
    files = {attack: [*deps, unused] for attack, (deps, unused) in DEPENDS.items()}
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT, json.dumps(files)], cwd=copy, capture_output=True, text=True, check=True
    )
    return json.loads(out.stdout)


@pytest.mark.parametrize("attack", sorted(DEPENDS))
def test_key_changes_with_each_file_the_attack_uses(keys, attack) -> None:
    deps, unused = DEPENDS[attack]
    base = keys[attack][""]
    changed = {name for name in deps if keys[attack][name] != base}
    assert changed == set(deps)
    assert keys[attack][unused] == base, f"{attack}'s key must not follow {unused}, which it does not use"
