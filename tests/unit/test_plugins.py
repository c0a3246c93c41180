"""Plugins: a .py file or module registering a detector, ``--plugins`` through the CLI, entry points of an installed
distribution (a dist-info folder on sys.path, as pip leaves it), each entry's origin, and what workers import."""

from __future__ import annotations

import copy
import os
import subprocess
import sys
from pathlib import Path

import pytest

from attacks import ATTACKS
from bench import plugins
from bench.cli import main
from bench.config import RunConfig
from bench.data import DATASETS
from bench.errors import UsageError
from bench.executors.base import registry_modules
from bench.grid import build_grid
from bench.hashing import class_sources
from bench.plugins import DETECTOR_GROUP, file_module_name, load_entry_points, load_plugins
from detectors import DETECTORS, create_detector

ROOT = Path(__file__).resolve().parents[2]
DETECTOR = '''"""A detector from outside the project."""
import torch
from detectors import Detector, register_detector


@register_detector("{name}")
class MeanDistance(Detector):
    """Squared distance to the mean normal image."""

    def build(self, input_shape):
        self.register_buffer("mean", torch.zeros(input_shape))

    def fit(self, train, *, device="cpu", generator=None, progress=None):
        self.setup(tuple(train.shape[1:]))
        self.mean.copy_(train.mean(0))
        return self.to(device).eval()

    def score(self, x):
        return (x - self.mean).flatten(1).pow(2).sum(1)
'''


@pytest.fixture(autouse=True)
def isolated_plugins(monkeypatch: pytest.MonkeyPatch) -> None:
    """What a test registers and loads is forgotten after it (workers of later grids would load its plugins)."""
    for table in (DETECTORS, ATTACKS, DATASETS):
        for attr, value in list(vars(table).items()):
            if isinstance(value, dict):
                monkeypatch.setattr(table, attr, dict(value))
    for attr in ("_LOADED", "_FILE_MODULES", "_ENTRY_POINTS"):
        monkeypatch.setattr(plugins, attr, copy.copy(getattr(plugins, attr)))


def write_plugin(path: Path, name: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(DETECTOR.format(name=name))
    return path


def make_distribution(root: Path, dist: str, entry_points: str, detector: str | None = None) -> None:
    """An installed distribution as pip leaves it: package ``<dist>_pkg`` and ``<dist>-0.3.dist-info``."""
    package = root / f"{dist}_pkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    if detector:
        write_plugin(package / "mydet.py", detector)
    info = root / f"{dist}-0.3.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.3\n")
    (info / "entry_points.txt").write_text(entry_points)


def test_a_plugin_file_registers_its_detector_once_under_a_stable_name(tmp_path: Path) -> None:
    path = write_plugin(tmp_path / "my det.py", "plugin-file-toy")
    assert load_plugins([str(path)]) == [file_module_name(path)]
    assert load_plugins([str(path)]) == [file_module_name(path)]  # once per process: no second registration
    assert create_detector("plugin-file-toy").name == "plugin-file-toy"
    assert DETECTORS.origin("plugin-file-toy") == f"plugin {path}"
    assert DETECTORS.origin("deepsvdd") == "detectors/deepsvdd.py" and ATTACKS.origin("pgd") == "attacks/pgd.py"
    assert file_module_name(path).isidentifier()


def test_a_plugin_detectors_key_follows_its_own_file(tmp_path: Path) -> None:
    """Editing a plugin's file must recompute its cells: its code version hashes that file too."""
    path = write_plugin(tmp_path / "keyed.py", "plugin-keyed-toy")
    load_plugins([str(path)])
    cls = DETECTORS.get("plugin-keyed-toy")
    assert path in class_sources(cls, "detectors") and Path(sys.modules["detectors.base"].__file__) in class_sources(
        cls, "detectors"
    )


def test_a_plugin_module_is_imported_by_name(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_plugin(tmp_path / "plugmod_pkg" / "detectors.py", "plugin-module-toy")
    (tmp_path / "plugmod_pkg" / "__init__.py").write_text("")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert load_plugins(["plugmod_pkg.detectors"]) == ["plugmod_pkg.detectors"]
    assert DETECTORS.origin("plugin-module-toy") == "plugin plugmod_pkg.detectors"


def test_list_with_plugins_shows_them_with_their_origin(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    first, second = (write_plugin(tmp_path / f"{name}.py", name) for name in ("plugin-a", "plugin-b"))
    third = write_plugin(tmp_path / "plugin-c.py", "plugin-c")
    assert main(["list", "--plugins", f"{first},{second}", "--plugins", str(third)]) == 0
    lines = capsys.readouterr().out.splitlines()
    for path in (first, second, third):
        [line] = [line for line in lines if line.split()[:1] == [path.stem]]
        assert f"plugin {path}" in line and "Squared distance to the mean normal image." in line
    assert any(line.split()[:2] == ["deepsvdd", "detectors/deepsvdd.py"] for line in lines)


@pytest.mark.parametrize(
    ("source", "needle"),
    [
        ("import no_such_module_for_plugins\n", "ModuleNotFoundError: No module named 'no_such_module_for_plugins'"),
        ("def broken(:\n", "SyntaxError: "),
        ("raise RuntimeError('bad\\nsecond line')\n", "RuntimeError: bad"),
    ],
)
def test_a_broken_plugin_file_exits_2_with_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture, source: str, needle: str
) -> None:
    path = tmp_path / "broken.py"
    path.write_text(source)
    assert main(["list", "--plugins", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith(f"error: plugin {path} failed to import: ") and needle in err
    assert file_module_name(path) not in sys.modules


@pytest.mark.parametrize("spec", ["no_such_plugin_module", "missing/plugin.py"])
def test_a_missing_plugin_exits_2_with_one_line(spec: str, capsys: pytest.CaptureFixture) -> None:
    assert main(["plan", "--plugins", spec, "--detectors", "deepsvdd"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and f"plugin {spec} failed to import" in err


def test_entry_points_of_an_installed_distribution_register_with_its_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    make_distribution(tmp_path, "epdist", f"[{DETECTOR_GROUP}]\nep-toy = epdist_pkg.mydet:MeanDistance\n", "ep-toy")
    monkeypatch.syspath_prepend(str(tmp_path))
    load_entry_points(DETECTOR_GROUP)
    load_entry_points(DETECTOR_GROUP)  # once per process
    assert create_detector("ep-toy").name == "ep-toy"
    assert DETECTORS.origin("ep-toy") == "epdist 0.3 (entry point)"
    assert main(["list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert any(line.split()[:1] == ["ep-toy"] and "epdist 0.3 (entry point)" in line for line in lines)


def test_a_broken_entry_point_names_it_and_its_distribution(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    make_distribution(tmp_path, "brokendist", f"[{DETECTOR_GROUP}]\nbad = brokendist_pkg.nope:Detector\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(UsageError) as error:
        load_entry_points(DETECTOR_GROUP)
    assert str(error.value) == (
        "plugin bad = brokendist_pkg.nope:Detector (entry point of brokendist 0.3) failed to import: "
        "ModuleNotFoundError: No module named 'brokendist_pkg.nope'"
    )


def test_a_plain_import_of_detectors_sees_installed_entry_points(tmp_path: Path) -> None:
    make_distribution(tmp_path, "subdist", f"[{DETECTOR_GROUP}]\nsub-toy = subdist_pkg.mydet\n", "sub-toy")
    code = "import detectors; detectors.create_detector('sub-toy'); print(detectors.DETECTORS.origin('sub-toy'))"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), str(ROOT)])}
    result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "subdist 0.3 (entry point)"


def test_workers_load_plugin_files_by_path(tmp_path: Path) -> None:
    path = write_plugin(tmp_path / "worker_det.py", "plugin-worker-toy")
    load_plugins([str(path)])
    cfg = RunConfig(datasets=["digits"], classes={"digits": [0]}, detectors=["plugin-worker-toy"], attacks=["pgd"])
    modules = registry_modules(build_grid(cfg))
    assert str(path) in modules and file_module_name(path) not in modules
    assert {"attacks.pgd", "bench.data.digits"} <= set(modules)


def test_a_plugin_cannot_take_over_a_one_sided_attack_name() -> None:
    with pytest.raises(ValueError, match="clashes with the one-sided names"):
        ATTACKS.register("pgd-in")(type("Shadow", (), {}))
