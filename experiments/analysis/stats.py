"""Statistics and paper-style tables over ablation results.

Why this shape: a seed is the unit of evidence. Every comparison pairs runs by seed, reports an
interval rather than a point, and corrects for testing many cells of one grid against the same
baseline (Holm). These cell tables are exploratory; the confirmatory tests of the papers'
claims, with their own family and verdicts, live in ``experiments.analysis.claims``. Inputs
are the runner's tidy tables (``results/<paper>/<table>.csv``, one row per run, read by
``experiments.analysis.tables``, whose loaders this module re-exports); the papers' own numbers
and claims are data under ``results/reference/``, never code.

Only runs with ``status == "ok"`` enter accuracy statistics; diverged and failed runs are
counted beside them so that a variant which often blows up is not silently flattered.
"""

from __future__ import annotations

import inspect
import math
import warnings
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

from experiments.analysis.tables import (  # noqa: F401  re-exported as an.load_results etc.
    ABLATIONS_DIR,
    CLAIM_COLUMNS,
    REFERENCE_DIR,
    ROOT,
    SKIP_DIRS,
    TEXT_COLUMNS,
    load_claims,
    load_epochs,
    load_paper_results,
    load_results,
    reference_dir,
)

GROUP = ["paper", "grid", "profile", "cell"]
"""A cell is only comparable within one grid and one profile (data, epochs, model size)."""

COST = ["params", "macs", "train_img_s", "infer_img_s", "peak_mem_mb", "wall_s"]
STATUSES = ["ok", "diverged", "collapsed", "failed"]
METRIC_LABELS = {
    "test_top1": "test top-1 (%)",
    "test_top5": "test top-5 (%)",
    "test_loss": "test loss",
    "val_top1": "val top-1 (%)",
    "best_val_top1": "best val top-1 (%)",
}


# ----------------------------------------------------------------------------- statistics


def t_interval(x: Iterable[float], confidence: float = 0.95) -> tuple[float, float]:
    """Student-t interval of the mean; NaN below two values, a point when all values agree."""
    x = np.asarray(list(x), dtype=float)
    x = x[~np.isnan(x)]
    if len(x) < 2:
        return (math.nan, math.nan)
    mean, sem = float(x.mean()), float(stats.sem(x))
    if sem == 0:
        return (mean, mean)
    lo, hi = stats.t.interval(confidence, len(x) - 1, loc=mean, scale=sem)
    return (float(lo), float(hi))


def _bootstrap_rng(seed: int) -> dict:
    """scipy >= 1.15 takes `rng`; older releases call it `random_state`."""
    if "rng" in inspect.signature(stats.bootstrap).parameters:
        return {"rng": np.random.default_rng(seed)}
    return {"random_state": np.random.default_rng(seed)}


def bootstrap_interval(
    x: Iterable[float],
    confidence: float = 0.95,
    statistic=np.mean,
    n_resamples: int = 9999,
    seed: int = 0,
) -> tuple[float, float]:
    """Percentile bootstrap interval (BCa is unstable at the 3-5 seeds a grid usually has)."""
    x = np.asarray(list(x), dtype=float)
    x = x[~np.isnan(x)]
    if len(x) < 2:
        return (math.nan, math.nan)
    if np.all(x == x[0]):
        return (float(x[0]), float(x[0]))
    res = stats.bootstrap(
        (x,),
        statistic,
        n_resamples=n_resamples,
        confidence_level=confidence,
        method="percentile",
        **_bootstrap_rng(seed),
    )
    return (float(res.confidence_interval.low), float(res.confidence_interval.high))


def interval(x: Iterable[float], ci: str = "t", confidence: float = 0.95) -> tuple[float, float]:
    """Dispatch: ``ci="t"`` (default) or ``ci="bootstrap"``."""
    if ci == "t":
        return t_interval(x, confidence)
    if ci == "bootstrap":
        return bootstrap_interval(x, confidence)
    raise ValueError(f"ci must be 't' or 'bootstrap', got {ci!r}")


def iqm(x: Iterable[float]) -> float:
    """Interquartile mean: robust to one runaway seed, less noisy than the median."""
    x = np.asarray(list(x), dtype=float)
    x = x[~np.isnan(x)]
    return float(stats.trim_mean(x, 0.25)) if len(x) else math.nan


def prob_improvement(a: Iterable[float], b: Iterable[float], *, paired: bool = True) -> float:
    """P(A > B): share of seed pairs where A beats B, ties count 1/2.

    ``paired=True`` compares a_i with b_i (same seed); ``paired=False`` compares every a with
    every b (the Mann-Whitney form used by rliable).
    """
    a, b = np.asarray(list(a), dtype=float), np.asarray(list(b), dtype=float)
    if paired:
        if len(a) != len(b):
            raise ValueError("paired P(improve) needs equally long a and b")
        wins = (a > b) + 0.5 * (a == b)
    else:
        wins = (a[:, None] > b[None, :]) + 0.5 * (a[:, None] == b[None, :])
    return float(np.mean(wins)) if wins.size else math.nan


def holm(pvalues: Iterable[float]) -> np.ndarray:
    """Holm step-down adjusted p-values (family-wise error); NaN entries stay NaN."""
    p = np.asarray(list(pvalues), dtype=float)
    out = np.full_like(p, np.nan)
    finite = ~np.isnan(p)
    q = p[finite]
    m = len(q)
    if m == 0:
        return out
    order = np.argsort(q, kind="stable")
    adjusted = np.minimum(np.maximum.accumulate((m - np.arange(m)) * q[order]), 1.0)
    result = np.empty(m)
    result[order] = adjusted
    out[finite] = result
    return out


def compare(
    a: pd.Series,
    b: pd.Series,
    *,
    ci: str = "t",
    confidence: float = 0.95,
    wilcoxon_min_n: int = 6,
) -> dict:
    """Paired comparison of A and B, both indexed by seed: delta = A - B over shared seeds.

    The interval is on the mean paired difference; the p-value is a paired t-test, or the
    Wilcoxon signed-rank test once there are ``wilcoxon_min_n`` pairs (enough for the rank
    test to reach p < 0.05 without assuming normal differences).
    """
    pairs = pd.concat({"a": a, "b": b}, axis=1, join="inner").dropna()
    n = len(pairs)
    diff = (pairs["a"] - pairs["b"]).to_numpy(float)
    lo, hi = interval(diff, ci, confidence)
    p, test = math.nan, ""
    if n >= 2 and np.any(diff != 0):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            if n >= wilcoxon_min_n:
                p, test = float(stats.wilcoxon(pairs["a"], pairs["b"]).pvalue), "wilcoxon"
            else:
                p, test = float(stats.ttest_rel(pairs["a"], pairs["b"]).pvalue), "t"
    elif n >= 2:
        p, test = 1.0, "t"
    return {
        "n_pairs": n,
        "delta": float(diff.mean()) if n else math.nan,
        "delta_low": lo,
        "delta_high": hi,
        "p": p,
        "test": test,
        "p_improve": prob_improvement(pairs["a"], pairs["b"]) if n else math.nan,
    }


# ----------------------------------------------------------------------------- tables


def _ok(df: pd.DataFrame, metric: str) -> pd.DataFrame:
    return df[(df["status"] == "ok") & df[metric].notna()] if metric in df else df.iloc[:0]


def _by_seed(df: pd.DataFrame, metric: str) -> pd.Series:
    """One value per seed (a re-run of the same seed is averaged, not double counted)."""
    ok = _ok(df, metric)
    return ok.groupby("seed")[metric].mean() if len(ok) else pd.Series(dtype=float)


def cell_order(df: pd.DataFrame, grid: str) -> list[str]:
    """Cells of a grid: baseline first, then in the order the runner wrote them."""
    rows = df[df["grid"] == grid]
    cells = list(dict.fromkeys(rows["cell"]))
    baseline = baseline_of(df, grid)
    return ([baseline] if baseline in cells else []) + [c for c in cells if c != baseline]


def baseline_of(df: pd.DataFrame, grid: str) -> str:
    """The grid's baseline cell label (the runner writes it on every row)."""
    values = df.loc[df["grid"] == grid, "baseline_cell"]
    values = values[values != ""]
    return str(values.iloc[0]) if len(values) else ""


def _sort(table: pd.DataFrame, df: pd.DataFrame) -> pd.DataFrame:
    rank = {(g, c): i for g in df["grid"].unique() for i, c in enumerate(cell_order(df, g))}
    keys = [rank.get((g, c), len(rank)) for g, c in zip(table["grid"], table["cell"], strict=False)]
    table = table.assign(_rank=keys).sort_values(["paper", "grid", "profile", "_rank"])
    return table.drop(columns="_rank").reset_index(drop=True)


def status_counts(df: pd.DataFrame) -> pd.DataFrame:
    """Runs per cell and status (ok, diverged, failed, total)."""
    counts = pd.crosstab([df[k] for k in GROUP], df["status"]) if len(df) else pd.DataFrame()
    counts = counts.reindex(columns=STATUSES, fill_value=0)
    counts["total"] = counts.sum(axis=1)
    counts = counts.reset_index()
    for key in GROUP:
        if key not in counts:
            counts[key] = pd.Series(dtype=str)
    return _sort(counts[GROUP + STATUSES + ["total"]], df)


def cell_stats(
    df: pd.DataFrame,
    metric: str = "test_top1",
    *,
    ci: str = "t",
    confidence: float = 0.95,
    with_iqm: bool = False,
) -> pd.DataFrame:
    """Per cell: n ok runs, mean, std, CI (and IQM), median cost, diverged/failed counts."""
    rows = []
    for key, group in df.groupby(GROUP, sort=False):
        x = _ok(group, metric)[metric].to_numpy(float)
        lo, hi = interval(x, ci, confidence)
        row = dict(zip(GROUP, key, strict=False))
        row.update(
            baseline_cell=group["baseline_cell"].iloc[0],
            n=len(x),
            mean=float(x.mean()) if len(x) else math.nan,
            std=float(x.std(ddof=1)) if len(x) > 1 else math.nan,
            ci_low=lo,
            ci_high=hi,
            diverged=int((group["status"] == "diverged").sum()),
            collapsed=int((group["status"] == "collapsed").sum()),
            failed=int((group["status"] == "failed").sum()),
        )
        if with_iqm:
            row["iqm"] = iqm(x)
        ok = group[group["status"] == "ok"]
        for column in COST:
            row[column] = float(ok[column].median()) if column in ok and len(ok) else math.nan
        rows.append(row)
    columns = GROUP + ["baseline_cell", "n", "mean", "std", "ci_low", "ci_high"]
    columns += ["diverged", "collapsed", "failed"] + (["iqm"] if with_iqm else []) + COST
    return _sort(pd.DataFrame(rows, columns=columns), df)


def paired_deltas(
    df: pd.DataFrame,
    metric: str = "test_top1",
    *,
    ci: str = "t",
    confidence: float = 0.95,
    wilcoxon_min_n: int = 6,
) -> pd.DataFrame:
    """Every non-baseline cell against its grid's baseline, paired by seed, Holm per grid."""
    rows = []
    for (paper, grid, profile), rows_g in df.groupby(GROUP[:3], sort=False):
        baseline = baseline_of(rows_g, grid)
        base = _by_seed(rows_g[rows_g["cell"] == baseline], metric)
        for cell in cell_order(rows_g, grid):
            if cell == baseline:
                continue
            cmp = compare(
                _by_seed(rows_g[rows_g["cell"] == cell], metric),
                base,
                ci=ci,
                confidence=confidence,
                wilcoxon_min_n=wilcoxon_min_n,
            )
            rows.append({"paper": paper, "grid": grid, "profile": profile, "cell": cell, **cmp})
    columns = GROUP + ["n_pairs", "delta", "delta_low", "delta_high", "p", "test", "p_improve"]
    out = pd.DataFrame(rows, columns=columns)
    out["p_holm"] = out.groupby(["grid", "profile"])["p"].transform(lambda p: holm(p))
    return out


def _paper_value(paper_results: pd.DataFrame, paper: str, table: str, model: str) -> float:
    if not table or not model:
        return math.nan
    hit = paper_results[
        (paper_results["paper"] == paper)
        & (paper_results["table"] == table)
        & (paper_results["model"] == model)
    ]
    return float(hit["value"].iloc[0]) if len(hit) else math.nan


def paper_cell_values(claims: pd.DataFrame, paper_results: pd.DataFrame) -> pd.DataFrame:
    """(grid, cell) -> the paper's published number, through the row references in claims."""
    rows = []
    for c in claims.itertuples():
        for cell, table, model in [
            (c.cell, c.paper_table, c.paper_model),
            (c.versus_cell, c.versus_table, c.versus_model),
        ]:
            value = _paper_value(paper_results, c.paper, table, model)
            if not math.isnan(value):
                rows.append({"grid": c.grid, "cell": cell, "paper_value": value})
    out = pd.DataFrame(rows, columns=["grid", "cell", "paper_value"])
    return out.drop_duplicates(["grid", "cell"]).reset_index(drop=True)


def summary_table(
    df: pd.DataFrame,
    metric: str = "test_top1",
    *,
    ci: str = "t",
    confidence: float = 0.95,
    with_iqm: bool = False,
    claims: pd.DataFrame | None = None,
    paper_results: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Numeric paper-style table: cell stats, paired delta to baseline, cost, paper number."""
    cells = cell_stats(df, metric, ci=ci, confidence=confidence, with_iqm=with_iqm)
    deltas = paired_deltas(df, metric, ci=ci, confidence=confidence)
    out = cells.merge(deltas, on=GROUP, how="left")
    claims = load_claims() if claims is None else claims
    paper_results = load_paper_results() if paper_results is None else paper_results
    out = out.merge(paper_cell_values(claims, paper_results), on=["grid", "cell"], how="left")
    base = out.loc[out["cell"] == out["baseline_cell"], ["grid", "profile", "paper_value"]]
    base = base.rename(columns={"paper_value": "paper_baseline"})
    out = out.merge(base, on=["grid", "profile"], how="left")
    out["paper_delta"] = out["paper_value"] - out["paper_baseline"]
    out.loc[out["cell"] == out["baseline_cell"], "paper_delta"] = math.nan
    return _sort(out.drop(columns="paper_baseline"), df)


def grid_overview(df: pd.DataFrame) -> pd.DataFrame:
    """One line per grid and profile: cells, seeds, and how many runs ended in each status."""
    if not len(df):
        return pd.DataFrame(columns=["paper", "grid", "profile", "cells", "seeds"] + STATUSES)
    rows = []
    for (paper, grid, profile), g in df.groupby(GROUP[:3]):
        counts = g["status"].value_counts()
        rows.append(
            {
                "paper": paper,
                "grid": grid,
                "profile": profile,
                "cells": g["cell"].nunique(),
                "seeds": g.loc[g["status"] == "ok", "seed"].nunique(),
                **{s: int(counts.get(s, 0)) for s in STATUSES},
            }
        )
    return pd.DataFrame(rows)


def planned_grids(
    paper: str,
    df: pd.DataFrame | None = None,
    claims: pd.DataFrame | None = None,
    ablations_dir: str | Path | None = None,
) -> list[str]:
    """Grids of a paper: its ablation YAMLs, the grids its claims name, and any with results."""
    names: list[str] = []
    if ablations_dir is not None:
        names += [f"{paper}/{p.stem}" for p in sorted(Path(ablations_dir, paper).glob("*.yaml"))]
    if claims is not None:
        names += list(claims.loc[claims["paper"] == paper, "grid"])
    if df is not None and len(df):
        names += sorted(df.loc[df["paper"] == paper, "grid"].unique())
    return list(dict.fromkeys(names))


# ----------------------------------------------------------------------------- formatting


def _num(x: float, digits: int = 2, sign: bool = False) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return ""
    return f"{x:+.{digits}f}" if sign else f"{x:.{digits}f}"


def format_interval(
    mean: float, low: float, high: float, digits: int = 2, sign: bool = False
) -> str:
    """``mean ± half-width`` for a symmetric interval, ``mean [low, high]`` otherwise."""
    if isinstance(mean, float) and math.isnan(mean):
        return ""
    text = _num(mean, digits, sign)
    if math.isnan(low) or math.isnan(high):
        return text
    up, down = high - mean, mean - low
    if abs(up - down) <= 1e-9 * max(1.0, abs(mean)):
        return f"{text} ± {up:.{digits}f}"
    return f"{text} [{_num(low, digits, sign)}, {_num(high, digits, sign)}]"


def format_p(p: float) -> str:
    if p is None or math.isnan(p):
        return ""
    return "<0.001" if p < 0.001 else f"{p:.3f}"


def format_summary(summary: pd.DataFrame, metric: str = "test_top1") -> pd.DataFrame:
    """Strings for display: one row per cell, the paper-style columns of ``summary_table``."""
    label = METRIC_LABELS.get(metric, metric)
    rows = []
    for r in summary.itertuples():
        is_base = r.cell == r.baseline_cell
        lost = ", ".join(
            f"{int(v)} {k}"
            for k, v in [
                ("diverged", r.diverged),
                ("collapsed", r.collapsed),
                ("failed", r.failed),
            ]
            if v
        )
        rows.append(
            {
                "cell": r.cell + (" (baseline)" if is_base else ""),
                "n": str(r.n) + (f" ({lost})" if lost else ""),
                f"{label} ± 95% CI": format_interval(r.mean, r.ci_low, r.ci_high),
                "Δ vs baseline (pp)": "—"
                if is_base
                else format_interval(r.delta, r.delta_low, r.delta_high, sign=True),
                "p (Holm, grid; exploratory)": "" if is_base else format_p(r.p_holm),
                "P(improve)": "" if is_base else _num(r.p_improve, 2),
                "paper top-1 (%)": _num(r.paper_value, 1),
                "paper Δ (pp)": _num(r.paper_delta, 1, sign=True),
                "params (M)": _num(r.params / 1e6, 2),
                "MMACs": _num(r.macs / 1e6, 1),
            }
        )
    out = pd.DataFrame(rows)
    if len(out):
        empty = [c for c in out.columns if (out[c] == "").all() and c.startswith("paper")]
        out = out.drop(columns=empty)
    return out


# ----------------------------------------------------------------------------- Pareto and sweeps


def pareto_mask(x: Iterable[float], y: Iterable[float], *, x_lower: bool = True) -> np.ndarray:
    """Points no other point beats on both cost x and accuracy y (higher y is better)."""
    x, y = np.asarray(list(x), dtype=float), np.asarray(list(y), dtype=float)
    if not x_lower:
        x = -x
    mask = np.zeros(len(x), dtype=bool)
    for i in range(len(x)):
        if np.isnan(x[i]) or np.isnan(y[i]):
            continue
        dominated = (x <= x[i]) & (y >= y[i]) & ((x < x[i]) | (y > y[i]))
        mask[i] = not dominated.any()
    return mask
