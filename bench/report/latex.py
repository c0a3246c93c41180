"""Paper-ready LaTeX, tables rendered by pandas' Styler: leaderboard.tex (per dataset a ranked booktabs table, best
per column in bold, second underlined), leaderboard_macros.tex (one macro per number) and leaderboard_perclass.tex
(rows classes, columns detectors in leaderboard order, cells clean/robust, like COBRA's MVTec table).

The tables need ``\\usepackage{booktabs}`` in the including document.
"""

from __future__ import annotations

from collections import defaultdict

import pandas as pd

from bench.report.model import (
    COLUMNS_NOTE,
    FLAG_DESCRIPTIONS,
    RANKING_NOTE,
    Report,
    flagged,
    flags_of,
    half_width,
    header,
    marks,
    number,
    yes,
)
from bench.results import LEVEL, PAPER_NUMBERS, PASSES, auroc_columns

_LATEX_SPECIALS = {
    "\\": r"\textbackslash{}",
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
}
_DIGIT_WORDS = ("Zero", "One", "Two", "Three", "Four", "Five", "Six", "Seven", "Eight", "Nine")
_SYMBOL_WORDS = {"/": "Over", ".": "Point", "+": "Plus"}


def latex_escape(text: str) -> str:
    """Escape LaTeX's special characters in plain text (names of detectors, datasets, attacks, run keys)."""
    return "".join(_LATEX_SPECIALS.get(ch, ch) for ch in str(text))


def macro_words(text: str) -> str:
    """``"pgd 4/255"`` -> ``"PgdFourOverTwoFiveFive"``: letters only, each word capitalised, digits spelled out."""
    out, start = [], True
    for ch in str(text):
        if ch.isascii() and ch.isalpha():
            out.append(ch.upper() if start else ch)
            start = False
        elif ch.isdigit() and ch.isascii():
            out.append(_DIGIT_WORDS[int(ch)])
            start = True
        else:
            out.append(_SYMBOL_WORDS.get(ch, ""))
            start = True
    return "".join(out)


def macro_name(*parts: str) -> str:
    """A valid LaTeX control word from name parts, starting lower-case: ``("cobra", "digits", "pgd")`` ->
    ``cobraDigitsPgd``."""
    name = "".join(macro_words(p) for p in parts) or "X"
    return name[0].lower() + name[1:]


MISSING = "--"
#: Styler props of a best / second cell.
MARK_PROPS = {1: "textbf: --rwrap;", 2: "underline: --rwrap;"}


def tabular(table: pd.DataFrame, styles: pd.DataFrame, column_format: str) -> list[str]:
    """Lines of a booktabs tabular of a table of LaTeX texts; ``styles``: each cell's Styler props."""
    styler = table.style.hide(axis="index").apply(lambda _: styles, axis=None)
    return styler.to_latex(hrules=True, column_format=column_format).splitlines()


def _number(row: pd.Series, column: str, intervals: bool) -> str:
    """A cell: the number, ``± std`` over seeds, the bootstrap interval when ``intervals``, a dagger when flagged."""
    if pd.isna(row[column]):
        return MISSING
    text = number(row[column])
    has_std = pd.notna(row.get(f"{column} std", None))
    spread = half_width(row, column) if intervals or has_std else None
    if spread is not None:
        text += rf"\,{{\scriptsize$\pm${spread:.1f}}}"
    return text + (r"$^{\dagger}$" if flagged(row, column) else "")


def _runs(report: Report) -> str:
    keys = [rf"\texttt{{{latex_escape(k)}}}" for k in report.run_keys if k]
    if not keys:
        return ""
    presets = ", ".join(rf"\texttt{{{latex_escape(p)}}}" for p in report.presets)
    return (" Run " if len(keys) == 1 else " Runs ") + ", ".join(keys) + (f" (preset {presets})." if presets else ".")


def _caption(report: Report, dataset: str, board: pd.DataFrame, intervals: bool, papers: bool) -> str:
    n_seeds = report.n_seeds(dataset)
    seeds = f"mean $\\pm$ std over {n_seeds} seeds" if n_seeds > 1 else "one seed"
    if n_seeds == 1 and intervals:
        seeds += f", $\\pm$ half-width of the {100 * LEVEL:.0f}\\% bootstrap interval"
    text = (
        f"{latex_escape(dataset)}: clean and robust AUROC (\\%), averaged over normal classes ({seeds}). "
        f"{RANKING_NOTE}. {latex_escape(COLUMNS_NOTE)}. Best per column in bold, second underlined."
    )
    if papers:
        text += " Paper clean / robust: what the detector's paper reports."
    if flags_of([board]):
        text += " $^{\\dagger}$Flagged by the sanity ladder (legend below the table)."
    return text + _runs(report)


def _board_table(board: pd.DataFrame, intervals: bool) -> tuple[pd.DataFrame, pd.DataFrame, str]:
    """(texts, Styler props, column format) of one leaderboard."""
    table = pd.DataFrame({"Rank": board["rank"].astype(str), "Detector": board["detector"].map(latex_escape)})
    styles = pd.DataFrame("", index=board.index, columns=["Rank", "Detector"])
    column_format = "rl"
    if board["paper"].notna().any():
        table["Venue"] = board["venue"].fillna("").map(latex_escape)
        table["Adv.\\ trained"] = board["adv_trained"].map(yes)
        styles["Venue"] = styles["Adv.\\ trained"] = ""
        column_format += "lc"
    for column in auroc_columns(board):
        name = latex_escape(header(column))
        table[name] = [_number(row, column, intervals) for _, row in board.iterrows()]
        styles[name] = marks(board[column]).map(lambda mark: MARK_PROPS.get(mark, ""))
        column_format += "r"
    for column in PAPER_NUMBERS:
        if board[column].notna().any():
            table[header(column)] = board[column].map(lambda v: MISSING if pd.isna(v) else number(v))
            styles[header(column)] = ""
            column_format += "r"
    return table, styles, column_format


def render_leaderboard_tex(report: Report, *, intervals: bool = False) -> str:
    """leaderboard.tex: per dataset one booktabs table, ranked; ``intervals`` adds each cell's bootstrap interval
    (one seed; several seeds always show ± std)."""
    lines = [f"% Generated by robust-ad-bench from {_origin(report)}; needs \\usepackage{{booktabs}}."]
    for dataset, board in report.boards.items():
        table, styles, column_format = _board_table(board, intervals)
        papers = any(board[c].notna().any() for c in PAPER_NUMBERS)
        lines += [
            r"\begin{table}[t]",
            r"\centering",
            rf"\caption{{{_caption(report, dataset, board, intervals, papers)}}}",
            rf"\label{{tab:leaderboard-{macro_name(dataset)}}}",
            r"\small",
            *tabular(table, styles, column_format),
            *_legend(flags_of([board])),
            r"\end{table}",
            "",
        ]
    return "\n".join(lines)


def _origin(report: Report) -> str:
    keys = [k for k in report.run_keys if k]
    return ("run " if len(keys) == 1 else "runs ") + ", ".join(keys) if keys else "run (unknown)"


def _legend(flags: list[str]) -> list[str]:
    """One line per flag under the table: ``$^\\dagger$`` flag: what it means."""
    if not flags:
        return []
    lines = [r"\par\smallskip\footnotesize"]
    for flag in flags:
        text = rf"$^{{\dagger}}$\texttt{{{latex_escape(flag)}}}"
        if flag in FLAG_DESCRIPTIONS:
            text += ": " + latex_escape(FLAG_DESCRIPTIONS[flag])
        lines.append(text + r"\par")
    return lines


def _macro_entries(dataset: str, board: pd.DataFrame) -> list[tuple[list[str], str, str]]:
    """(name parts, value, comment) of every number of one leaderboard, detectors by name."""
    entries = []
    rows = board.sort_values("detector", kind="mergesort")
    for _, row in rows.iterrows():
        detector = str(row["detector"])
        for column in auroc_columns(board):
            if pd.isna(row[column]):
                continue
            parts = [detector, dataset, *(["Clean"] if column == "clean" else [column, "Robust"])]
            where = f"{detector} / {dataset} / {header(column)}"
            dagger = r"$^{\dagger}$" if flagged(row, column) else ""
            entries.append((parts, number(row[column]) + dagger, where + (" (flagged)" if dagger else "")))
            std, ci = row.get(f"{column} std"), row.get(f"{column} ci")
            if std is not None and pd.notna(std):
                entries.append(([*parts, "Std"], number(std), f"{where} (std over seeds)"))
            if isinstance(ci, tuple):
                entries.append(([*parts, "Low"], number(ci[0]), f"{where} (bootstrap interval, low)"))
                entries.append(([*parts, "High"], number(ci[1]), f"{where} (bootstrap interval, high)"))
    for detector, passes in rows.loc[rows[PASSES].notna(), ["detector", PASSES]].itertuples(index=False):
        entries.append(([str(detector), dataset, "Passes"], number(passes), f"{detector} / {dataset}"))
    return entries


def render_macros(report: Report) -> str:
    """leaderboard_macros.tex: ``\\newcommand{\\cobraDigitsPgdRobust}{81.2}`` per number; names are unique."""
    seen: dict[str, int] = defaultdict(int)
    lines = [f"% AUROC (%) macros generated by robust-ad-bench from {_origin(report)}."]
    for dataset, board in report.boards.items():
        for parts, value, where in _macro_entries(dataset, board):
            name = macro_name(*parts)
            seen[name] += 1
            if seen[name] > 1:
                name += "Variant" + macro_words(str(seen[name]))
            lines.append(rf"\newcommand{{\{name}}}{{{value}}} % {where}")
    return "\n".join(lines) + "\n"


def _per_class_table(report: Report, dataset: str, column: str) -> list[str]:
    """One (dataset, robust column) table: a row per class and a Mean row, a column per detector (leaderboard
    order), cells clean/robust; per row the best robust AUROC in bold."""
    board, classes = report.boards[dataset], report.per_class[dataset]
    detectors = list(board["detector"])
    names = classes.drop_duplicates("normal_class").sort_values("normal_class").set_index("normal_class")["class"]
    clean, robust, flags = (
        pd.concat([
            classes.pivot(index="normal_class", columns="detector", values=name).reindex(names.index),
            board.set_index("detector")[[name]].T.set_axis(["Mean"]),
        ])[detectors]
        for name in ("clean", column, f"{column} flags")
    )  # fmt: skip
    dagger = r"$^{\dagger}$"
    texts = pd.DataFrame(
        [[f"{number(c)}/{number(r)}" + (dagger if isinstance(f, list) and f else "") if pd.notna(c) and pd.notna(r)
          else MISSING for c, r, f in zip(cs, rs, fs, strict=True)]
         for cs, rs, fs in zip(clean.to_numpy(), robust.to_numpy(), flags.to_numpy(), strict=True)],
        columns=[latex_escape(d) for d in detectors],
    )  # fmt: skip
    best = robust.eq(robust.max(axis=1), axis=0) & (robust.notna().sum(axis=1) > 1).to_numpy()[:, None]
    styles = pd.DataFrame(best.to_numpy(), columns=texts.columns).replace({True: MARK_PROPS[1], False: ""})
    texts.insert(0, "Class", [latex_escape(n) for n in [*names, "Mean"]])
    styles.insert(0, "Class", "")
    body = "\n".join(tabular(texts, styles, "l" + "c" * len(detectors))).replace("\nMean & ", "\n\\midrule\nMean & ")
    run = _runs(report)
    return [
        r"\begin{table}[t]",
        r"\centering",
        rf"\caption{{{latex_escape(dataset)}: clean / robust AUROC (\%) per normal class under "
        rf"{latex_escape(column)} (mean over seeds; best robust per class in bold; $^{{\dagger}}$ flagged by the "
        rf"sanity ladder, see the leaderboard's legend).{run}}}",
        rf"\label{{tab:perclass-{macro_name(dataset, column)}}}",
        r"\small",
        *body.splitlines(),
        r"\end{table}",
        "",
    ]


def render_perclass_tex(report: Report) -> str:
    """leaderboard_perclass.tex: one table per (dataset, robust column)."""
    lines = [f"% Per-class AUROC generated by robust-ad-bench from {_origin(report)}."]
    for dataset, board in report.boards.items():
        for column in auroc_columns(board)[1:]:
            lines.extend(_per_class_table(report, dataset, column))
    return "\n".join(lines)
