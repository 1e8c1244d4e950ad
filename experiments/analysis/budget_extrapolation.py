"""Where would an effect settle with unlimited training? Learning curves fitted to the budget
grids' runs, and how well each curve predicted the longest budget before it was measured.

Why: LocalViT's largest effect shrinks at every doubling of the budget (``budget_bias``), and
EfficientMod's two largest disagreements do too; each doubling costs twice the last. A curve
that extrapolated well would say where the effect settles without the next doubling; whether
one does is itself measured here. For each budget study's comparison whose arms share four
budgets or more, each arm's test top-1 is fitted against optimizer steps by three common
saturating families, on every run (the seeds' scatter is the residual), once on every budget
and once without the longest budget, whose measured effect the second fit then predicts.
Families that fit the same points equally well but settle apart show that the points do not
determine the ceiling.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import optimize, stats

from experiments.analysis.budget_bias import (
    BUDGET_GRIDS,
    COMPARISONS,
    STUDIES,
    BiasComparison,
    BudgetStudy,
    budget_runs,
    shown,
)
from experiments.analysis.markdown import markdown_table
from experiments.analysis.stats import format_interval


@dataclass(frozen=True)
class CurveFamily:
    """A saturating learning curve ``curve(r, ceiling, *shape)`` of the budget ratio ``r``
    (steps over the shortest budget's); ``start`` and ``bounds`` are its shape parameters'."""

    name: str
    formula: str
    curve: Callable[..., np.ndarray]
    start: tuple[float, ...]
    bounds: tuple[tuple[float, ...], tuple[float, ...]]


FAMILIES = (
    CurveFamily(
        "power law",
        "c − a·r^−b",
        lambda r, c, a, b: c - a * r ** (-b),
        (15.0, 0.5),
        ((0.0, 0.01), (100.0, 3.0)),
    ),
    CurveFamily(
        "exponential",
        "c − a·exp(−r/τ)",
        lambda r, c, a, tau: c - a * np.exp(-r / tau),
        (15.0, 4.0),
        ((0.0, 0.01), (100.0, 1000.0)),
    ),
    CurveFamily(
        "shifted power law",
        "c − a·(r + s)^−b",
        lambda r, c, a, b, s: c - a * (r + s) ** (-b),
        (15.0, 0.5, 0.5),
        ((0.0, 0.01, 0.0), (1000.0, 5.0, 50.0)),
    ),
)


@dataclass(frozen=True)
class CurveFit:
    """One family fitted to one arm's runs: the ceiling (the curve's limit) with its standard
    error from the fit's covariance, and whether a parameter ended on a bound (then the ceiling
    is the bound's, not the data's)."""

    family: CurveFamily
    params: np.ndarray
    ceiling_se: float
    residual_sd: float
    at_bound: bool
    dof: int

    @property
    def ceiling(self) -> float:
        return float(self.params[0])

    def predict(self, ratio: float) -> float:
        return float(self.family.curve(np.asarray(ratio, float), *self.params))


def fit_curve(family: CurveFamily, ratio: np.ndarray, top1: np.ndarray) -> CurveFit | None:
    """Least squares of ``family`` through the points; None where it does not converge or has
    fewer points than parameters plus one."""
    ratio, top1 = np.asarray(ratio, float), np.asarray(top1, float)
    n_params = 1 + len(family.start)
    if len(top1) <= n_params or len(np.unique(ratio)) < n_params:
        return None
    low, high = (0.0, *family.bounds[0]), (100.0, *family.bounds[1])
    start = (float(np.clip(top1.max() + 1.0, low[0], high[0])), *family.start)
    try:
        params, cov = optimize.curve_fit(
            family.curve, ratio, top1, p0=start, bounds=(low, high), maxfev=50_000
        )
    except (RuntimeError, ValueError):
        return None
    residual = top1 - family.curve(ratio, *params)
    dof = len(top1) - n_params
    span = np.asarray(high) - np.asarray(low)
    at_bound = bool(
        np.any(
            np.isclose(params, low, atol=1e-6 * span) | np.isclose(params, high, atol=1e-6 * span)
        )
    )
    se = float(np.sqrt(cov[0, 0])) if np.isfinite(cov[0, 0]) else float("nan")
    return CurveFit(family, params, se, float(np.sqrt(residual @ residual / dof)), at_bound, dof)


def _arm_points(rows: pd.DataFrame, arm: str, metric: str) -> tuple[np.ndarray, np.ndarray]:
    mine = rows[rows["arm"] == arm].dropna(subset=[metric, "train.steps"])
    return mine["train.steps"].to_numpy(float), mine[metric].to_numpy(float)


def _difference(a: CurveFit, b: CurveFit) -> tuple[float, float]:
    """The ceilings' difference and its 95% half-width (the arms' fits are independent: paired
    runs are uncorrelated here; Welch-Satterthwaite degrees of freedom)."""
    va, vb = a.ceiling_se**2, b.ceiling_se**2
    dof = (va + vb) ** 2 / (va**2 / a.dof + vb**2 / b.dof) if va + vb > 0 else 1.0
    return a.ceiling - b.ceiling, float(stats.t.ppf(0.975, dof) * np.sqrt(va + vb))


def extrapolate(
    results: pd.DataFrame,
    comparison: BiasComparison = COMPARISONS[0],
    families: tuple[CurveFamily, ...] = FAMILIES,
    metric: str = "test_top1",
    profile: str = "quick",
    grids: tuple[str, ...] = BUDGET_GRIDS,
) -> pd.DataFrame:
    """Per family: each arm's ceiling, the effect at the ceilings, and the fit without the
    longest budget against what that budget measured (paired by seed). Only the budgets at
    which both arms ran count (an arm trained further alone would stretch one fit and not the
    other); empty until there are four of them."""
    rows = budget_runs(results, grids, profile=profile)
    rows = rows[rows["arm"].isin([comparison.cell, comparison.versus])]
    if rows.empty:
        return pd.DataFrame()
    shared = rows.groupby("train.steps")["arm"].nunique()
    rows = rows[rows["train.steps"].isin(shared.index[shared == 2])]
    if rows.empty or rows["train.steps"].nunique() < 4:
        return pd.DataFrame()
    first = rows["train.steps"].min()
    longest = rows["train.steps"].max()
    at_longest = rows[rows["train.steps"] == longest].pivot_table(
        index="seed", columns="arm", values=metric, aggfunc="first"
    )
    measured = (at_longest.get(comparison.cell) - at_longest.get(comparison.versus)).dropna()
    out = []
    for family in families:
        fits, held_out = {}, {}
        for arm in (comparison.cell, comparison.versus):
            steps, top1 = _arm_points(rows, arm, metric)
            fits[arm] = fit_curve(family, steps / first, top1)
            shorter = steps < longest
            held_out[arm] = fit_curve(family, steps[shorter] / first, top1[shorter])
        cell, versus = fits[comparison.cell], fits[comparison.versus]
        if cell is None or versus is None:
            continue
        effect, half = _difference(cell, versus)
        ratio = longest / first
        early = held_out[comparison.cell], held_out[comparison.versus]
        predicted = early[0].predict(ratio) - early[1].predict(ratio) if all(early) else np.nan
        out.append(
            {
                "comparison": f"{comparison.cell} vs {comparison.versus}",
                "curve": f"{family.name}: {family.formula}",
                "ceiling, first arm (%)": cell.ceiling,
                "ceiling, second arm (%)": versus.ceiling,
                "Δ at the ceilings (pp)": effect,
                "Δ half-width (95%)": half,
                "residual sd (pp)": float(
                    np.hypot(cell.residual_sd, versus.residual_sd) / np.sqrt(2)
                ),
                "a parameter on its bound": cell.at_bound or versus.at_bound,
                "longest budget (steps)": int(longest),
                "Δ there, predicted without it (pp)": predicted,
                "Δ there, measured (pp)": measured.mean() if len(measured) else np.nan,
                "seeds measured there": len(measured),
                "Δ at twice it, predicted (pp)": cell.predict(2 * ratio)
                - versus.predict(2 * ratio),
            }
        )
    return pd.DataFrame(out)


def extrapolation_lines(
    results: pd.DataFrame,
    profile: str = "quick",
    studies: tuple[BudgetStudy, ...] = STUDIES,
) -> list[str]:
    """The report's paragraph, a sentence per comparison and one table, for the comparisons
    (of every budget study, each read from its own grids) whose arms both ran at four budgets
    or more; nothing before one has."""
    tables = [
        t
        for study in studies
        for c in study.comparisons
        if not (t := extrapolate(results, c, profile=profile, grids=study.grids)).empty
    ]
    if not tables:
        return []
    sentences = []
    for table in tables:
        effects, half = table["Δ at the ceilings (pp)"], table["Δ half-width (95%)"]
        predicted = table["Δ there, predicted without it (pp)"].dropna()
        seeds = table["seeds measured there"].iloc[0]
        sentences.append(
            f"- {table['comparison'].iloc[0]}: between {effects.min():+.2f} and "
            f"{effects.max():+.2f} pp at the ceilings; without the longest budget "
            f"({table['longest budget (steps)'].iloc[0]:,} steps) the curves predicted "
            f"{', '.join(f'{p:+.2f}' for p in predicted) or 'nothing'} pp there, where "
            f"{seeds} seed{'' if seeds == 1 else 's'} measured "
            f"{table['Δ there, measured (pp)'].iloc[0]:+.2f}; "
            + (
                "the curves agree on where the effect settles."
                if effects.max() - effects.min() <= half.min()
                else "where it settles is not determined by these budgets."
            )
        )
    table = pd.concat(tables, ignore_index=True)
    effects, half = table["Δ at the ceilings (pp)"], table["Δ half-width (95%)"]
    table.insert(
        4,
        "Δ at the ceilings (pp), 95%",
        [format_interval(e, e - h, e + h, sign=True) for e, h in zip(effects, half, strict=True)],
    )
    return [
        "Where would the effects settle? (Exploratory.) For each budget study's comparison "
        "whose arms both ran at four budgets or more: each arm's test top-1 against optimizer steps, "
        f"fitted by {len(FAMILIES)} saturating curves over every run at the budgets both ran "
        "(r: steps over the profile's; the interval is the fits' own, from their "
        "covariance); each curve fitted again without the longest of those budgets predicts "
        "the effect measured there, and where curves that fit alike settle apart, the next "
        "doubling (*Δ at twice it, predicted*) tells them apart.",
        "",
        *sentences,
        "",
        markdown_table(shown(table, drop=("Δ at the ceilings (pp)", "Δ half-width (95%)"))),
        "",
    ]
