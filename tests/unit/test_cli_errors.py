"""Every bad input a new user tries exits 2 with one line on stderr and no traceback, through ``bench.cli.main``.

The subprocess tests in tests/integration/test_cli.py try some of these at the real entry point; this suite tries
each one in-process (an exception escaping ``main`` fails the test, as a traceback would).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.cli import main

PRESETS = {
    "malformed": "[run\ndatasets = [",
    "seeds-zero": '[run]\nseeds = "zero"\n',
    "unknown-key": "[run]\nepochs = 3\n",
    "unknown-table": "[trainers]\nx = 1\n",
    "option-not-a-table": "[detectors]\ndeepsvdd = 3\n",
    "unknown-option": '[run]\ndatasets = ["digits"]\ndetectors = ["deepsvdd"]\n[detectors.deepsvdd]\nepoch = 3\n',
    "bad-eps": '[run]\neps = ["abc"]\n',
    "bad-norm": '[run]\nnorm = "l3"\n',
    "wrong-type": '[run]\ndatasets = ["digits"]\ndetectors = ["deepsvdd"]\n[detectors.deepsvdd]\nepochs = "three"\n',
}

CASES = {
    "unknown detector": (["--detectors", "nope"], "unknown detector 'nope'; choose from:"),
    "unknown attack": (["--attacks", "nope"], "unknown attack 'nope'; choose from:"),
    "worst-case is not an attack": (["--attacks", "pgd,worst-case"], "unknown attack 'worst-case'"),
    "negative eps": (["--eps", "-1"], "invalid eps '-1'"),
    "eps not a number": (["--eps", "abc"], "invalid eps 'abc'"),
    "auto eps under l2": (["--norm", "l2"], "with --norm l2 give --eps"),
    "class out of range": (["--classes", "42", "--datasets", "digits"], "digits has no class '42'"),
    "unknown dataset": (["--datasets", "nope"], "unknown dataset 'nope'; choose from:"),
    "unknown norm": (["--norm", "l3"], "unknown norm 'l3'; choose from: linf, l2"),
    "unknown preset": (["--preset", "nope"], "unknown preset 'nope'; choose from:"),
    "unknown flag": (["--bogus-flag"], "unrecognized arguments: --bogus-flag"),
    "missing weights": (["--detectors", "zarnd"], "zarnd needs weights_path"),
    "seeds not integers": (["--seeds", "a"], "invalid seeds 'a'"),
    "no seeds": (["--seeds", ""], "no seeds or classes given"),
    "no classes": (["--classes", ","], "no seeds or classes given"),
    "unknown executor": (["--executor", "nope"], "unknown executor 'nope'; choose from:"),
    "unknown device": (["--devices", "gpu0"], "unknown device 'gpu0'"),
    "zero threads": (["--threads", "0"], "invalid threads 0"),
    "slurm flag without slurm": (["--slurm-time", "60"], "need --executor slurm"),
    "bad slurm time": (["--executor", "slurm", "--slurm-time", "1h"], "invalid --slurm-time '1h'"),
    "malformed preset": (["--preset", "{malformed}"], "{malformed}: not valid TOML"),
    "seeds a string": (["--preset", "{seeds-zero}"], "[run] seeds must be a list of integers, e.g. [0, 1], got 'zero'"),
    "unknown run key": (["--preset", "{unknown-key}"], "unknown key [run] epochs; keys: datasets"),
    "unknown preset table": (["--preset", "{unknown-table}"], "unknown table [trainers]"),
    "options not a table": (["--preset", "{option-not-a-table}"], "[detectors] deepsvdd must be a table of options"),
    "unknown option": (["--preset", "{unknown-option}"], "[detectors.deepsvdd]: deepsvdd has no option epoch"),
    "option of the wrong type": (["--preset", "{wrong-type}"], "deepsvdd option epochs must be a number, got 'three'"),
    "preset eps not a budget": (["--preset", "{bad-eps}"], "{bad-eps}: [run] eps: invalid eps 'abc'"),
    "preset norm unknown": (["--preset", "{bad-norm}"], "{bad-norm}: [run] norm: unknown norm 'l3'"),
    "out is a file": (["--out", "{file}"], "is a file; give a results folder"),
    "report without results": (["report", "--results", "{missing}"], "results folder"),
    "report without --results": (["report"], "the following arguments are required: --results"),
    "check without baseline": (["check", "--baseline", "{missing}.json", "--results", "{missing}"], "does not exist"),
    "negative tolerance": (["check", "--baseline", "b", "--results", "r", "--abs-tol", "-1"], "it must be >= 0"),
    "plan with a bad flag": (["plan", "--eps", "x"], "invalid eps 'x'"),
}


def fill(args: list[str], tmp_path: Path) -> list[str]:
    """``args`` with {placeholders} replaced by files in ``tmp_path``."""
    paths = {name: tmp_path / f"{name}.toml" for name in PRESETS}
    for name, text in PRESETS.items():
        paths[name].write_text(text)
    (tmp_path / "file").write_text("not a folder")
    names = {**{k: str(v) for k, v in paths.items()}, "file": str(tmp_path / "file"), "missing": str(tmp_path / "no")}
    return [arg.format(**names) for arg in args]


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_input_exits_2_with_one_line(case: str, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    args, needle = CASES[case]
    args = fill(args, tmp_path)
    needle = fill([needle], tmp_path)[0]
    out = [] if args[0] in ("report", "check") or "--out" in args else ["--out", str(tmp_path / "run")]
    assert main([*args, *out]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and needle in lines[0], lines
    assert not (tmp_path / "run").exists(), "a run refused for bad input leaves no results folder behind"


@pytest.mark.parametrize("command", ["run", "plan", "list", "report", "check"])
def test_each_subcommand_has_help(command: str, capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main([command, "--help"])
    assert exit_info.value.code == 0 and "usage: run_bench.py " + command in capsys.readouterr().out
