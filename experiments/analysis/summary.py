"""The table printed at the end of a grid: per cell n, mean top-1 with 95% CI, delta, cost."""

from __future__ import annotations

from pathlib import Path

from experiments.analysis import stats as analysis


def summary_text(table: Path) -> str:
    df = analysis.load_results(table)
    formatted = analysis.format_summary(analysis.summary_table(df))
    return formatted.to_markdown(index=False)


def print_summary(table: Path) -> None:
    print(f"\n{table}\n{summary_text(table)}\n", flush=True)
