"""Do the claims' verdicts hold when their cells train longer? Each claim a budget study
retrained, read again on its paired runs at the longest budget both its cells ran on two
seeds or more (one seed gives no interval to read a claim by).

Why: the claims table is read at the profile's budget, where some cells are still learning
(``budget_bias``); a verdict that changes when every cell trains eight or sixteen times as long
measured how fast the cells learn, one that holds measured the architecture. The reading at
the longest budget is exploratory: a claim alone (a family of one, no Holm), on the few seeds
the calibration grids ran, with the claim's own test and margin
(``experiments.analysis.claims.read_alone``).
"""

from __future__ import annotations

import pandas as pd
from scipy import stats

from experiments.analysis.budget_bias import STUDIES, BudgetStudy, paired_by_budget
from experiments.analysis.claims import ALPHA, claim_holds, expected_label, read_alone
from experiments.analysis.markdown import markdown_table
from experiments.analysis.stats import format_interval, format_p, load_claims

MIN_PAIRS = 2  # paired seeds a budget needs to be read: one gives no interval


def _claim_row(claims: pd.DataFrame, grid: str, claim: str) -> pd.Series:
    mine = claims[(claims["grid"] == grid) & (claims["claim"] == claim)]
    if len(mine) != 1:
        raise ValueError(f"budget study names claim {claim!r} of {grid}, which no spec makes")
    return mine.iloc[0]


def _table_verdict(verdicts: pd.DataFrame | None, grid: str, claim: str, profile: str) -> str:
    if verdicts is None or verdicts.empty:
        return ""
    mine = verdicts[
        (verdicts["grid"] == grid) & (verdicts["claim"] == claim) & (verdicts["profile"] == profile)
    ]
    return str(mine["verdict"].iloc[0]) if len(mine) else ""


def longest_budget_readings(
    results: pd.DataFrame,
    verdicts: pd.DataFrame | None = None,
    claims: pd.DataFrame | None = None,
    studies: tuple[BudgetStudy, ...] = STUDIES,
    profile: str = "quick",
    alpha: float = ALPHA,
) -> pd.DataFrame:
    """One row per comparison that ran at two budgets or more (on ``MIN_PAIRS`` paired seeds
    each; a budget with fewer is left out): the claims table's verdict (at ``profile``, Holm
    across the paper), and the claim read alone at the shortest and at the longest budget of
    its study, on the calibration grids' paired runs, with Welch's test of whether the longer
    budget moved the effect (the two budgets share no runs)."""
    claims = load_claims() if claims is None else claims
    out = []
    for study in studies:
        by_comparison: dict = {}
        for c, budget, steps, diff in paired_by_budget(
            results, study.comparisons, study.grids, profile=profile
        ):
            if len(diff) >= MIN_PAIRS:
                by_comparison.setdefault(c, []).append((budget, steps, diff))
        for c, budgets in by_comparison.items():
            if len(budgets) < 2:
                continue
            claim = _claim_row(claims, c.claim_grid, c.claim)
            row = {
                "claim": c.claim,
                "claim grid": c.claim_grid,
                "comparison": f"{c.cell} vs {c.versus}",
                "expected": expected_label(claim),
                "claims table": _table_verdict(verdicts, c.claim_grid, c.claim, profile),
            }
            for label, (_budget, steps, diff) in (
                ("shortest", budgets[0]),
                ("longest", budgets[-1]),
            ):
                read = read_alone(
                    diff.to_numpy(), claim["expect"], claim["expected_sign"], claim["margin"], alpha
                )
                row.update(
                    {
                        f"{label}: steps": steps,
                        f"{label}: seeds": read["n_pairs"],
                        f"{label}: Δ": read["delta"],
                        f"{label}: CI low": read["ci_low"],
                        f"{label}: CI high": read["ci_high"],
                        f"{label}: CI level": read["ci_level"],
                        f"{label}: reads": read["verdict"],
                    }
                )
            first, last = budgets[0][2], budgets[-1][2]
            moved = stats.ttest_ind(last, first, equal_var=False).pvalue
            row["p (Welch), Δ moved"] = moved
            row["claim holds there"] = claim_holds(row["longest: reads"], claim["expected_sign"])
            out.append(row)
    return pd.DataFrame(out)


def _shown(readings: pd.DataFrame) -> pd.DataFrame:
    """The readings as text: each budget's steps and seeds, Δ with the interval its reading
    uses (and that interval's level), and what the claim reads there."""
    rows = []
    for r in readings.to_dict("records"):
        row = {k: r[k] for k in ("claim", "comparison", "expected", "claims table")}
        for label, name in (("shortest", "shortest budget"), ("longest", "longest budget")):
            interval = format_interval(
                r[f"{label}: Δ"], r[f"{label}: CI low"], r[f"{label}: CI high"], sign=True
            )
            row[f"{name}: steps, seeds"] = f"{r[f'{label}: steps']:,}, {r[f'{label}: seeds']}"
            row[f"{name}: Δ (pp) [CI level]"] = f"{interval} [{100 * r[f'{label}: CI level']:.0f}%]"
            row[f"{name}: reads"] = r[f"{label}: reads"]
        moved = r["p (Welch), Δ moved"]
        row["p (Welch), Δ moved"] = "" if pd.isna(moved) else format_p(moved)
        row["claim holds at the longest"] = r["claim holds there"]
        rows.append(row)
    return pd.DataFrame(rows)


def longest_budget_lines(
    results: pd.DataFrame,
    verdicts: pd.DataFrame | None = None,
    claims: pd.DataFrame | None = None,
    profile: str = "quick",
    studies: tuple[BudgetStudy, ...] = STUDIES,
) -> list[str]:
    """The report's paragraph and table, or nothing before a study has two budgets."""
    readings = longest_budget_readings(results, verdicts, claims, studies, profile)
    if readings.empty:
        return []
    changed = readings[readings["shortest: reads"] != readings["longest: reads"]]
    moves = "; ".join(
        f"{r['comparison']} ({r['claim grid']}): {r['shortest: reads']} → {r['longest: reads']}"
        f" (Welch p {format_p(r['p (Welch), Δ moved'])})"
        for r in changed.to_dict("records")
    )
    return [
        "Do the verdicts hold when the cells train longer? (Exploratory.) Each claim a budget "
        "study retrained, read on its own (no Holm) with the claim's test and margin, on the "
        "study's paired runs at its shortest budget (the profile's) and at the longest budget "
        f"both cells ran on {MIN_PAIRS} seeds or more; the interval is the one the reading uses "
        "(95% for a difference, 90% for a margin: TOST and non-inferiority). *Claims table* is "
        "the confirmatory verdict at the profile, Holm across the paper, on all its seeds; "
        "*p (Welch), Δ moved* tests whether the longer budget moved the effect at all. A "
        "reading that changes where the effect did not move is an effect near the margin, read "
        "on either side of it by noise; one that changes where it moved was the budget's. "
        f"Of {len(readings)} claims, {len(changed)} read differently at the longest budget"
        + (f": {moves}." if len(changed) else "."),
        "",
        markdown_table(_shown(readings)),
        "",
    ]
