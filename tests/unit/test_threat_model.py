"""The paper's threat model per dataset kind: eps "auto", and the kind passed from split metadata to detectors."""

from __future__ import annotations

import json

import pytest

from bench.cli import parse, run_config_from_args
from bench.config import AUTO_EPS, config_from_preset, load_preset, parse_eps, resolve_eps
from bench.data import kind_meta, load_split
from bench.grid import build_grid
from detectors import create_detector
from detectors.base import split_options


def grid(argv: list[str]):
    return build_grid(run_config_from_args(parse(argv)))


def test_parse_and_resolve_auto():
    assert parse_eps("auto,8/255") == [AUTO_EPS, 8 / 255]
    assert resolve_eps([AUTO_EPS, 8 / 255], low_res=True) == [4 / 255, 8 / 255]
    assert resolve_eps([AUTO_EPS, 2 / 255], low_res=False) == [2 / 255]  # duplicates dropped


@pytest.mark.parametrize("preset", ["quick", "paper"])
def test_quick_and_paper_presets_default_to_auto(preset):
    assert config_from_preset(preset).eps == [AUTO_EPS]


def test_quick_preset_runs_digits_at_4_and_textures_at_2_over_255_with_the_scar_on_textures():
    groups = grid(["--detectors", "cobra", "--classes", "0"])
    eps = {g.fit.dataset: [job.eps for job in g.evals] for g in groups}
    assert eps == {"digits": [4 / 255], "textures": [2 / 255]}
    kinds = {g.fit.dataset: json.loads(g.fit.detector_config)["low_res"] for g in groups}
    assert kinds == {"digits": True, "textures": False}
    textures = next(g.fit for g in groups if g.fit.dataset == "textures")
    det = textures.build_detector()
    det.setup((3, 32, 32))  # textures at 32 px: industrial by kind, whatever the size
    assert det.shift.num_shifts == 2 and type(det.shift).__name__ == "CutPasteScarShift" and not det.crop
    assert det.train_eps == 2 / 255


def test_explicit_eps_overrides_every_dataset():
    groups = grid(["--detectors", "deepsvdd", "--classes", "0", "--eps", "8/255"])
    assert {job.eps for g in groups for job in g.evals} == {8 / 255}
    assert all("low_res" not in json.loads(g.fit.detector_config) for g in groups)  # deepsvdd takes no kind


def test_split_meta_carries_the_kind_the_grid_uses():
    split = load_split("digits", 0, max_test=20)
    assert split.meta["low_res"] is kind_meta("digits")["low_res"] is True
    assert split_options("cobra", split.meta) == {"low_res": True}
    assert split_options("deepsvdd", split.meta) == {}  # a detector without the field takes no kind
    options = {**load_preset("quick").detector_options("cobra"), **split_options("cobra", split.meta)}
    det = create_detector("cobra", **options)
    assert det.config.low_res is True


def test_bad_eps_names_auto():
    from bench.errors import UsageError

    with pytest.raises(UsageError, match="use auto"):
        parse_eps("fast")


def test_auto_eps_is_an_linf_budget():
    """Under L2, eps auto would be a radius of 4/255 (no attack at all): the run must name its budget."""
    from bench.errors import UsageError

    with pytest.raises(UsageError, match="L-inf"):
        grid(["--norm", "l2", "--datasets", "digits"])
    assert {job.eps for g in grid(["--norm", "l2", "--eps", "0.5", "--datasets", "digits"]) for job in g.evals} == {0.5}
