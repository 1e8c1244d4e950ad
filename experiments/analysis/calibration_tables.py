"""The report's tables of the calibration grids of seed noise (``noise.SPREAD_GRIDS``): each arm
of a protocol choice with its paired difference, its noise and what deciding the grid's claim
would cost under it.

Why apart from the report: the pricing reads the claim's verdict row (margin, Holm level, test),
and the text says how each grid's arms differ; neither is the report's layout.
"""

from __future__ import annotations

import pandas as pd

from experiments.analysis import claims as cl
from experiments.analysis import noise, projection
from experiments.analysis.markdown import markdown_table


def claim_terms(verdicts: pd.DataFrame, grid: str, profile: str = "quick") -> dict | None:
    """The margin, Holm level and test of a grid's (first) claim at a profile, or None."""
    mine = verdicts[(verdicts["grid"] == grid) & (verdicts["profile"] == profile)]
    mine = mine[mine["level"].notna()] if "level" in mine else mine.iloc[0:0]
    if mine.empty:
        return None
    r = mine.iloc[0]
    return {"margin": r["margin"], "level": r["level"], "test": cl.claim_test(r)}


# what each calibration grid of seed noise compares, for the report
SPREAD_TEXT = {
    noise.DATA_GRID.grid: "Fresher training data (`ablations/{grid}.yaml`): the same 756 steps "
    "on the profile's 5,000 training images (about 10 epochs) or on all 59,000 (less than one)",
    noise.STEPS_GRID.grid: "A longer or shorter schedule (`ablations/{grid}.yaml`): the "
    "profile's 756 optimizer steps on its 5,000 training images (about 10 epochs), twice as "
    "many (about 19) or half as many (about 5)",
}


def spread_lines(results: pd.DataFrame, verdicts: pd.DataFrame) -> list[str]:
    """One table per calibration grid of seed noise, each arm priced by its claim's cost."""
    lines: list[str] = []
    for g in noise.SPREAD_GRIDS:
        claim = claim_terms(verdicts, g.claim_grid)
        table = noise.spread(results, g, claim=claim)
        if table.empty:
            continue
        shown = table.copy()
        for column in shown.columns[2:]:
            whole = column in ("seeds to decide", "optimizer steps")
            digits = 3 if column.startswith("p ") else (0 if whole else 2)
            shown[column] = shown[column].map(
                lambda v, d=digits: f"{v:.{d}f}" if pd.notna(v) else f"> {projection.N_MAX}"
            )
        priced = (
            f" *Seeds to decide* is where the interval of the `{g.claim_grid}` claim (margin "
            f"{claim['margin']:g} pp, Holm level {claim['level']:.4f}) would decide it if the "
            "arm's mean and sd of paired differences held, and *hours to decide* is those "
            "seeds' runs, both cells, each at the first arm's median run time times its share "
            "of optimizer steps (the arms ran on different hosts, whose speeds differ by more "
            "than the arms do)."
            if claim
            else ""
        )
        lines += [
            SPREAD_TEXT.get(g.grid, "`ablations/{grid}.yaml`").format(grid=g.grid)
            + "; each arm pairs its two cells by seed. The variance ratio is against the first "
            "arm, with a two-sided F test; *Δ − first arm's Δ* is how far the arm moves the "
            "effect itself, with Welch's t-test." + priced,
            "",
            markdown_table(shown),
            "",
        ]
    return lines
