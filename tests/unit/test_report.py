"""Leaderboard files and plots built from a hand-made results folder (records.jsonl + scores/*.npz)."""

from __future__ import annotations

import csv
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from matplotlib.image import imread
from sklearn.metrics import roc_auc_score

from bench import results, sanity
from bench.cli import main
from bench.metrics import bootstrap_aurocs, percentile_interval
from bench.report import build_report, console_table, write_reports
from bench.report.latex import latex_escape, macro_name, render_leaderboard_tex
from bench.report.model import FLAG_DESCRIPTIONS
from bench.store import Record, RunStore

PGD = ("pgd", "linf", 4 / 255)


def make_record(dataset="digits", cls=0, detector="cobra", seed=0, attack="pgd", eps=4 / 255, clean=0.9, robust=0.5,
                flags=(), status="ok", n=(20, 20)) -> Record:  # fmt: skip
    """One record with every field a single-attack cell fills."""
    key = f"{dataset}-{cls}-{detector}-{seed}-{attack}-{eps:.6f}".replace("/", "_")
    return Record(
        dataset=dataset, normal_class=cls, class_name=f"class {cls}", detector=detector, seed=seed, attack=attack,
        norm="linf", eps=eps, clean_auroc=clean if status == "ok" else None,
        robust_auroc=robust if status == "ok" else None, n_normal=n[0], n_anomaly=n[1], fit_seconds=1.0,
        attack_seconds=2.0, flags=list(flags), key=key, fit_key=key[:-9], status=status,
        error=None if status == "ok" else "boom", score_forwards=10, score_backwards=10, backbone_passes=400,
        preset="quick",
    )  # fmt: skip


def write_run(run_dir: Path, records: list[Record], with_scores: bool = True) -> Path:
    """A results folder holding ``records`` and, for ok cells, seeded per-sample scores and example images."""
    store = RunStore(run_dir)
    store.write_manifest({"run_key": "run_ab12", "preset": "quick", "command": "run_bench.py --preset quick"})
    gen = torch.Generator().manual_seed(0)
    for record in records:
        store.append_record(record)
        if with_scores and record.ok:
            n_normal, n_anomaly = record.n_normal, record.n_anomaly
            labels = np.r_[np.zeros(n_normal, bool), np.ones(n_anomaly, bool)]
            clean = torch.randn(n_normal + n_anomaly, generator=gen).numpy() + 2.0 * labels
            adv = clean + np.where(labels, -1.5, 1.5)
            images = torch.rand(3, 3, 8, 8, generator=gen).numpy()
            adv_images = np.clip(images + (4 / 255) * np.sign(torch.randn(3, 3, 8, 8, generator=gen).numpy()), 0, 1)
            examples = {"examples_clean": images.astype(np.float16), "examples_adv": adv_images.astype(np.float16)}
            store.save_scores(record.key, clean=clean, adv=adv, is_anomaly=labels, **examples)
    return run_dir


def grid_records() -> list[Record]:
    """2 datasets x 2 classes x 3 detectors x 2 seeds x (pgd at two eps + apgd), with one flagged detector."""
    records = []
    values = {"cobra": (0.95, 0.80), "deep_svdd": (0.90, 0.30), "patch%core": (0.99, 0.15)}
    for dataset in ("digits", "textures"):
        for cls in (0, 1):
            for detector, (clean, robust) in values.items():
                for seed in (0, 1):
                    jitter = 0.01 * seed + 0.005 * cls
                    for attack, eps, drop in (("pgd", 2 / 255, 0.0), ("pgd", 4 / 255, 0.1), ("apgd", 4 / 255, 0.12)):
                        flags = ["possible-gradient-masking"] if detector == "patch%core" and attack == "apgd" else []
                        records.append(make_record(dataset, cls, detector, seed, attack, eps, clean + jitter,
                                                   robust - drop + jitter, flags))  # fmt: skip
    return records


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    run = write_run(tmp_path_factory.mktemp("run"), grid_records())
    assert main(["report", "--results", str(run), "--quiet"]) == 0
    return run


def md_tables(md: str) -> list[list[list[str]]]:
    """Every Markdown table in ``md``: its rows (header first, no separator), each a list of stripped cells."""
    tables: list[list[list[str]]] = []
    for block in md.split("\n\n"):
        lines = [line for line in block.splitlines() if line.startswith("| ")]
        if lines:
            tables.append([[cell.strip() for cell in line[2:-2].split(" | ")] for line in lines])
    return tables


def md_rows(md: str) -> list[list[str]]:
    """The rows of every Markdown table in ``md``."""
    return [row for table in md_tables(md) for row in table]


def bootstrap_auroc_ci(scores: np.ndarray, labels: np.ndarray, generator: torch.Generator) -> tuple[float, float]:
    """One cell's 95% percentile interval, as bench.results computes it."""
    return percentile_interval(bootstrap_aurocs(scores, labels, generator=generator))


def test_bootstrap_ci_is_seeded_and_brackets_the_auroc() -> None:
    gen = torch.Generator().manual_seed(3)
    labels = np.r_[np.zeros(60, bool), np.ones(40, bool)]
    scores = torch.randn(100, generator=gen).numpy() + labels
    first = bootstrap_auroc_ci(scores, labels, generator=torch.Generator().manual_seed(1))
    again = bootstrap_auroc_ci(scores, labels, generator=torch.Generator().manual_seed(1))
    other = bootstrap_auroc_ci(scores, labels, generator=torch.Generator().manual_seed(2))
    point = roc_auc_score(labels, scores)
    assert first == again != other
    assert first[0] < point < first[1] and 0.05 < first[1] - first[0] < 0.4
    narrow = bootstrap_auroc_ci(np.tile(scores, 10), np.tile(labels, 10), generator=torch.Generator().manual_seed(1))
    assert narrow[1] - narrow[0] < (first[1] - first[0]) / 2


def test_best_and_second_are_decided_on_unrounded_values(tmp_path: Path) -> None:
    records = [make_record(detector="a", robust=0.8121), make_record(detector="b", robust=0.8124),
               make_record(detector="c", robust=0.5)]  # fmt: skip
    write_reports(write_run(tmp_path, records, with_scores=False))
    rows = md_tables((tmp_path / "leaderboard.md").read_text())[0]
    assert rows[1:] == [["1", "b", "90.0", "**81.2**", "10.0"], ["2", "a", "90.0", "81.2", "10.0"],
                        ["3", "c", "90.0", "50.0", "10.0"]]  # fmt: skip
    tex = (tmp_path / "leaderboard.tex").read_text()
    assert r"1 & b & 90.0 & \textbf{81.2}" in tex
    assert r"2 & a & 90.0 & \underline{81.2}" in tex
    assert r"3 & c & 90.0 & 50.0" in tex


def test_reports_are_byte_stable_and_intervals_shown(tmp_path: Path) -> None:
    records = [make_record(detector=d, cls=c, robust=r) for d, r in (("a", 0.6), ("b", 0.4)) for c in (0, 1)]
    run = write_run(tmp_path, records)
    first = {p: p.read_bytes() for p in write_reports(run)}
    results._bootstrap.cache_clear()
    again = {p: p.read_bytes() for p in write_reports(run)}
    assert first == again and len(first) >= 9
    md = (run / "leaderboard.md").read_text()
    assert "95% bootstrap interval" in md
    row = md_rows(md)[1]  # the records' numbers with the intervals of the (unrelated, seeded) saved scores
    assert re.fullmatch(r"90\.0 ± \d+\.\d", row[2]) and re.fullmatch(r"\*\*60\.0 ± \d+\.\d\*\*", row[3]), row
    rows = list(csv.DictReader((run / "leaderboard.csv").read_text().splitlines()))
    assert float(rows[0]["pgd 4/255 ci low"]) < float(rows[0]["pgd 4/255 ci high"])
    report = build_report(results.load(run), results.manifests(run))
    assert r"{\scriptsize$\pm$" not in (run / "leaderboard.tex").read_text()
    assert r"{\scriptsize$\pm$" in render_leaderboard_tex(report, intervals=True)
    macros = (run / "leaderboard_macros.tex").read_text()
    assert r"\newcommand{\aDigitsPgdFourOverTwoFiveFiveRobustLow}" in macros


def test_latex_escapes_names(run_dir: Path) -> None:
    assert latex_escape("a_b & 5% #1 $x$ {y} ~^\\") == (
        r"a\_b \& 5\% \#1 \$x\$ \{y\} \textasciitilde{}\textasciicircum{}\textbackslash{}"
    )
    for name in ("leaderboard.tex", "leaderboard_perclass.tex"):
        body = "\n".join(line for line in (run_dir / name).read_text().splitlines() if not line.startswith("%"))
        assert r"deep\_svdd" in body and r"patch\%core" in body
        assert re.search(r"(?<!\\)[_%&]", body.replace(" & ", " ")) is None


def test_leaderboard_tex_structure(run_dir: Path) -> None:
    tex = (run_dir / "leaderboard.tex").read_text()
    assert tex.count(r"\toprule") == tex.count(r"\bottomrule") == tex.count(r"\begin{tabular}") == 2
    assert r"\label{tab:leaderboard-digits}" in tex and r"\label{tab:leaderboard-textures}" in tex
    assert "Rank & Detector & Venue & Adv.\\ trained & Clean & apgd 4/255 & pgd 2/255 & pgd 4/255 \\\\" in tex
    assert r"1 & cobra & ICLR 2025 & yes & \underline{95.7\,{\scriptsize$\pm$0.7}}" in tex
    assert r"\texttt{run\_ab12}" in tex and r"$^{\dagger}$" in tex
    perclass = (run_dir / "leaderboard_perclass.tex").read_text()
    assert perclass.count(r"\begin{tabular}") == 6  # 2 datasets x 3 attack columns
    assert "Class & cobra & deep\\_svdd & patch\\%core" in perclass  # detectors in leaderboard order
    assert "class 0 & " in perclass and "\\midrule\nMean & " in perclass


def test_macros_are_valid_unique_and_complete(run_dir: Path) -> None:
    lines = (run_dir / "leaderboard_macros.tex").read_text().splitlines()[1:]
    parsed = [
        re.fullmatch(r"\\newcommand\{\\([A-Za-z]+)\}\{(\d+\.\d)(\$\^\{\\dagger\}\$)?\} % .+", line) for line in lines
    ]
    assert all(parsed), [line for line, m in zip(lines, parsed, strict=True) if not m]
    names = [m.group(1) for m in parsed]
    assert len(names) == len(set(names))
    # per dataset: 3 detectors x 4 columns x (mean + std) + 3 pass counts
    assert len(names) == 2 * (3 * 4 * 2 + 3)
    macros = {m.group(1): m.group(2) for m in parsed}
    assert macros["cobraDigitsPgdFourOverTwoFiveFiveRobust"] == "70.8"
    assert macros["deepSvddTexturesClean"] == "90.8"
    assert macro_name("patch%core", "digits", "Clean") == "patchCoreDigitsClean"


def test_macro_names_stay_unique_when_names_collide(tmp_path: Path) -> None:
    records = [make_record(detector="deep-svdd"), make_record(detector="deep_svdd", robust=0.4)]
    write_reports(write_run(tmp_path, records, with_scores=False))
    names = re.findall(r"\\newcommand\{\\(\w+)\}", (tmp_path / "leaderboard_macros.tex").read_text())
    assert len(names) == len(set(names)) == 6 and all(n.isalpha() for n in names)


def test_markdown_and_csv(run_dir: Path) -> None:
    md = (run_dir / "leaderboard.md").read_text()
    assert "## digits" in md and "## textures" in md and "run `run_ab12`" in md and "## Runs" in md
    rows = md_rows(md)
    assert rows[0][:6] == ["Rank", "Detector", "Paper", "Venue", "Adv. trained", "Clean"]
    assert rows[1][:2] == ["1", "cobra"] and rows[1][4:7] == ["yes", "95.7 ± 0.7", "**68.8 ± 0.7**"]
    assert (
        rows[1][2]
        == "[Mitigating Spurious Negative Pairs for Robust Industrial Anomaly Detection](https://arxiv.org/abs/2501.15434)"
    )
    assert "patch%core, apgd 4/255: possible-gradient-masking" in md and "†" in md
    rows = list(csv.DictReader((run_dir / "leaderboard.csv").read_text().splitlines()))
    assert [(r["dataset"], r["rank"], r["detector"]) for r in rows[:3]] == [
        ("digits", "1", "cobra"), ("digits", "2", "deep_svdd"), ("digits", "3", "patch%core")
    ]  # fmt: skip
    assert rows[0]["pgd 4/255"] == "70.8" and rows[0]["pgd 4/255 std"] == "0.7" and rows[0]["clean"] == "95.7"
    assert rows[0]["passes/image"] == "10.0" and rows[0]["venue"] == "ICLR 2025" and rows[1]["venue"] == ""
    assert "textures apgd 4/255†: possible-gradient-masking" in rows[5]["flags"] and rows[0]["flags"] == ""
    runs = list(csv.DictReader((run_dir / "leaderboard_runs.csv").read_text().splitlines()))
    assert [(r["run"], r["run_key"], r["command"]) for r in runs] == [
        (str(run_dir), "run_ab12", "run_bench.py --preset quick")
    ]  # fmt: skip


def test_html_is_written_self_contained(run_dir: Path) -> None:
    html = (run_dir / "leaderboard.html").read_text()
    assert re.search(r"<(link|iframe)\b|\bsrc=\"https?:", html) is None
    assert all(d in html for d in ("cobra", "deep_svdd", "patch%core"))


def test_plots_are_nontrivial_pngs(run_dir: Path) -> None:
    names = sorted(p.name for p in (run_dir / "plots").glob("*.png"))
    expected = {f"{kind}_{det}.png" for kind in ("scores", "examples") for det in ("cobra", "deep_svdd", "patch_core")}
    assert set(names) == expected | {"robust_vs_eps_digits.png", "robust_vs_eps_textures.png"}
    for name in names:
        pixels = imread(run_dir / "plots" / name)
        assert (run_dir / "plots" / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert pixels.shape[0] > 100 and pixels.shape[1] > 100
        assert pixels[..., :3].var() > 1e-3, name


def test_report_command_regenerates_from_records_and_rejects_bad_paths(tmp_path: Path, capsys) -> None:
    run = write_run(tmp_path / "run", [make_record(detector="a"), make_record(detector="b")], with_scores=False)
    assert main(["report", "--results", str(run), "--quiet"]) == 0
    (run / "leaderboard.md").unlink()
    assert main(["report", "--results", str(run), "--quiet"]) == 0
    assert (run / "leaderboard.md").is_file() and (run / "plots" / "robust_vs_eps_digits.png").is_file()
    capsys.readouterr()
    assert main(["report", "--results", str(tmp_path / "nope")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "does not exist" in err
    (tmp_path / "empty").mkdir()
    assert main(["report", "--results", str(tmp_path / "empty")]) == 2
    assert "has no records" in capsys.readouterr().err
    assert main(["report", "--bogus"]) == 2 and capsys.readouterr().err.count("\n") == 1
    (tmp_path / "file").write_text("")
    assert main(["report", "--results", str(run), "--out", str(tmp_path / "file")]) == 2
    assert "is a file" in capsys.readouterr().err


def test_report_command_writes_the_reproduction_report(tmp_path: Path) -> None:
    run = write_run(tmp_path / "run", [make_record("fmnist", detector="cobra", clean=0.92, robust=0.85)], False)
    assert main(["report", "--results", str(run), "--out", str(tmp_path / "out"), "--reproduction", "--quiet"]) == 0
    text = (tmp_path / "out" / "reproduction.md").read_text()
    assert "cobra" in text and "93.1" in text and "89.6" in text
    rows = md_tables((tmp_path / "out" / "leaderboard.md").read_text())[0]
    assert rows[0][-2:] == ["Paper clean", "Paper robust"] and rows[1][-2:] == ["93.1", "89.6"]


def test_flags_with_details_are_grouped_in_legends(tmp_path: Path) -> None:
    records = [make_record(cls=0, flags=["zero-gradients:0.42"]), make_record(cls=1, flags=["zero-gradients:0.13"]),
               make_record(detector="b", cls=0, robust=0.1), make_record(detector="b", cls=1, robust=0.1)]  # fmt: skip
    write_reports(write_run(tmp_path, records, with_scores=False))
    md = (tmp_path / "leaderboard.md").read_text()
    assert "- zero-gradients: many inputs had all-zero" in md
    assert "cobra, pgd 4/255: zero-gradients:0.13, zero-gradients:0.42" in md
    assert build_report(results.frame_of(records)).flags == ["zero-gradients"]


def test_console_table_lists_every_detector_ranked() -> None:
    from rich.console import Console

    console = Console(width=200, record=True)
    console.print(console_table(build_report(results.frame_of(grid_records()))))
    text = console.export_text()
    assert all(d in text for d in ("cobra", "deep_svdd", "patch%core")) and "68.8 ± 0.7" in text
    assert text.index("cobra") < text.index("deep_svdd") < text.index("patch%core") and "Rank" in text
    report = build_report(results.frame_of(grid_records()))
    assert report.flags == ["possible-gradient-masking"] and report.n_seeds() == 2


def test_every_sanity_flag_has_a_legend_entry() -> None:
    flags = {value for name, value in vars(sanity).items() if name.isupper() and isinstance(value, str)}
    assert flags and flags <= set(FLAG_DESCRIPTIONS)


def ensemble_records() -> list[Record]:
    """digits at 4/255 and textures at 2/255: pgd, autoattack (members, one skipped) and their worst case."""
    records = []
    for dataset, eps in (("digits", 4 / 255), ("textures", 2 / 255)):
        for detector, offset in (("a", 0.0), ("b", 0.1), ("c", 0.2)):
            pgd = make_record(dataset, detector=detector, attack="pgd", eps=eps, robust=0.5 + offset)
            auto = make_record(dataset, detector=detector, attack="autoattack", eps=eps, robust=0.4 + offset)
            auto.members = [
                {"attack": "apgd", "robust_auroc": 0.45 + offset, "share": 0.75, "white_box": True},
                {"attack": "square", "robust_auroc": 0.6 + offset, "share": 0.25, "white_box": False},
            ]
            auto.skipped_members = [{"attack": "apgd-<component>", "reason": "no `score_components`"}]
            worst = make_record(dataset, detector=detector, attack="worst-case", eps=eps, robust=0.35 + offset)
            worst.members = [{"attack": "autoattack", "robust_auroc": 0.4 + offset, "share": 0.9},
                                {"attack": "pgd", "robust_auroc": 0.5 + offset, "share": 0.1}]  # fmt: skip
            records += [pgd, auto, worst]
    return records


def test_worst_case_column_follows_clean_with_each_datasets_eps_in_every_format(tmp_path: Path) -> None:
    from rich.console import Console

    write_reports(write_run(tmp_path, ensemble_records(), with_scores=False))
    rows = md_rows((tmp_path / "leaderboard.md").read_text())
    assert ["Rank", "Detector", "Clean", "worst-case 4/255", "autoattack 4/255", "pgd 4/255", "Passes/image"] in rows
    assert ["Rank", "Detector", "Clean", "worst-case 2/255", "autoattack 2/255", "pgd 2/255", "Passes/image"] in rows
    assert ["1", "c", "90.0", "**55.0**", "**60.0**", "**70.0**", "10.0"] in rows
    header = next(csv.reader((tmp_path / "leaderboard.csv").read_text().splitlines()))
    assert header[7:10] == ["clean", "clean ci low", "clean ci high"]
    assert [h for h in header if " ci " not in h][7:10] == ["clean", "worst-case 4/255", "autoattack 4/255"]
    tex = (tmp_path / "leaderboard.tex").read_text()
    assert "Rank & Detector & Clean & worst-case 4/255 & autoattack 4/255 & pgd 4/255 \\\\" in tex
    assert "Rank & Detector & Clean & worst-case 2/255 & autoattack 2/255 & pgd 2/255 \\\\" in tex
    assert r"2 & b & 90.0 & \underline{45.0} & \underline{50.0}" in tex
    console = Console(width=250, record=True)
    console.print(console_table(build_report(results.frame_of(ensemble_records()))))
    text = console.export_text()
    assert text.index("worst-case") < text.index("autoattack") < text.index("pgd 4/255")


def test_members_of_ensemble_and_worst_case_cells_in_markdown_and_csv(tmp_path: Path) -> None:
    write_reports(write_run(tmp_path, ensemble_records(), with_scores=False))
    md = (tmp_path / "leaderboard.md").read_text()
    assert "### digits: members" in md and "### textures: members" in md
    rows = md_rows(md)
    assert ["a", "worst-case 4/255", "autoattack", "40.0", "90.0", ""] in rows
    assert ["b", "autoattack 4/255", "apgd", "55.0", "75.0", ""] in rows
    assert ["c", "autoattack 2/255", "apgd-\\<component>", "—", "—", "skipped: no \\`score\\_components\\`"] in rows
    members = list(csv.DictReader((tmp_path / "leaderboard_members.csv").read_text().splitlines()))
    assert len(members) == 2 * 3 * (2 + 3)  # datasets x detectors x (worst-case + autoattack members)
    assert members[0] == {"dataset": "digits", "detector": "c", "column": "worst-case 4/255", "member": "autoattack",
                          "robust_auroc": "60.0", "share": "90.0", "skipped": ""}  # fmt: skip
    assert {"member": "apgd-<component>", "robust_auroc": "", "skipped": "no `score_components`"}.items() <= members[
        -1
    ].items()


def test_a_planted_flag_shows_its_mark_and_legend_line_in_every_format(tmp_path: Path) -> None:
    from rich.console import Console

    records = [make_record(detector="a", flags=["gradient-mismatch"]), make_record(detector="b", robust=0.4)]
    write_reports(write_run(tmp_path, records, with_scores=False))
    legend = FLAG_DESCRIPTIONS["gradient-mismatch"]
    rows = list(csv.DictReader((tmp_path / "leaderboard.csv").read_text().splitlines()))
    assert rows[0]["flags"] == "digits pgd 4/255†: gradient-mismatch" and rows[1]["flags"] == ""
    assert float(rows[0]["pgd 4/255"]) == 50.0
    assert list(csv.reader((tmp_path / "leaderboard_flags.csv").read_text().splitlines())) == [
        ["flag", "description"], ["gradient-mismatch", legend],
    ]  # fmt: skip
    md = (tmp_path / "leaderboard.md").read_text()
    assert ["1", "a", "90.0", "**50.0**†", "10.0"] in md_rows(md) and f"- gradient-mismatch: {legend}" in md
    tex = (tmp_path / "leaderboard.tex").read_text()
    assert r"1 & a & 90.0 & \textbf{50.0$^{\dagger}$}" in tex
    assert r"$^{\dagger}$\texttt{gradient-mismatch}: autograd's directional derivative disagrees" in tex
    html = (tmp_path / "leaderboard.html").read_text()
    assert "gradient-mismatch" in html
    console = Console(width=300, record=True)
    console.print(console_table(build_report(results.frame_of(records))))
    text = console.export_text()
    assert "50.0†" in text and f"gradient-mismatch: {legend}" in text


def test_the_plus_minus_of_an_interval_is_its_larger_side_and_a_std_wins() -> None:
    import pandas as pd

    from bench.report.model import half_width, spread_text

    row = pd.Series({"pgd": 90.0, "pgd ci": (85.0, 93.0)})
    assert half_width(row, "pgd") == 5.0 and spread_text(row, "pgd") == " ± 5.0"
    assert spread_text(row, "pgd", intervals=False) == ""
    seeds = pd.Series({"pgd": 90.0, "pgd std": 0.7, "pgd ci": None})
    assert spread_text(seeds, "pgd", intervals=False) == " ± 0.7"


def test_a_mean_over_fewer_classes_than_the_dataset_holds_is_flagged_incomplete() -> None:
    records = [make_record(cls=0), make_record(cls=1), make_record(detector="b", cls=0)]
    board = results.leaderboard(results.frame_of(records), "digits").set_index("detector")
    column = next(c for c in board.columns if c.startswith("pgd") and not c.endswith((" ci", " std", " flags")))
    assert board.loc["b", f"{column} flags"] == ["incomplete"] and board.loc["cobra", f"{column} flags"] == []
    assert board.loc["b", "clean flags"] == ["incomplete"]  # its clean mean covers class 0 only, too
