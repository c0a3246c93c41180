"""A detector with shattered gradients is flagged by `--attacks autoattack` alone, in every leaderboard format."""

from __future__ import annotations

import json

import pytest
import torch

from bench.cli import main
from detectors.base import DETECTORS
from detectors.deepsvdd import DeepSVDD

SHATTERED = "deepsvdd-shattered"


class ShatteredDeepSVDD(DeepSVDD):
    """DeepSVDD on x + 0.6/255 sin(3000 x): scores nearly unchanged, input gradients dominated by noise."""

    def score(self, x: torch.Tensor) -> torch.Tensor:
        return super().score(x + 0.6 / 255 * torch.sin(3000 * x))


@pytest.fixture
def shattered_detector():
    DETECTORS.register(SHATTERED, ShatteredDeepSVDD.__doc__)(ShatteredDeepSVDD)
    yield SHATTERED
    del DETECTORS._entries[SHATTERED]


def test_shattered_gradients_are_flagged_in_every_format(shattered_detector, tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.setenv("ROBUST_AD_BENCH_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "run"
    args = ["--detectors", f"deepsvdd,{SHATTERED}", "--attacks", "autoattack", "--datasets", "digits"]
    args += ["--classes", "3", "--eps", "8/255", "--executor", "serial", "--out", str(out)]
    assert main(args) == 0
    console = capsys.readouterr().out
    records = {
        (r["detector"], r["attack"]): r for r in map(json.loads, (out / "records.jsonl").read_text().splitlines())
    }
    shattered, plain = records[SHATTERED, "autoattack"], records["deepsvdd", "autoattack"]
    alarms = {"possible-gradient-masking", "gradient-mismatch"}
    assert alarms <= set(shattered["flags"]), shattered["flags"]
    assert not alarms & set(plain["flags"]), plain["flags"]
    square = next(m for m in shattered["members"] if m["attack"] == "square")
    assert square["robust_auroc"] < min(m["robust_auroc"] for m in shattered["members"] if m["white_box"]) - 0.01
    for name in ("leaderboard.csv", "leaderboard.md", "leaderboard.tex", "leaderboard.html"):
        text = (out / name).read_text()
        assert "gradient-mismatch" in text and "possible-gradient-masking" in text, name
    assert "gradient-mismatch" in console and "possible-gradient-masking" in console
