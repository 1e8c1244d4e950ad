"""Sweep tables as the notebooks and the report read them: objectives, directions, the best.

An exported study (``results/sweeps/<name>.csv``, Optuna's trials dataframe) names its
objectives ``value`` or ``values_0, values_1, ...``; the metric names and directions travel in
``user_attrs_objectives`` / ``user_attrs_directions`` on every row.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from scipy import stats

from experiments.analysis.stats import t_interval

REEVAL_DIR = "reeval"  # results/sweeps/reeval/<name>.csv: the top trials trained on more seeds


def load_sweeps(directory: str | Path) -> dict[str, pd.DataFrame]:
    """Optuna trials dataframes by sweep name (``results/sweeps/<name>.csv``); {} when none.
    The re-evaluation tables (``results/sweeps/reeval/``) are not trials: :func:`load_reeval`."""
    directory = Path(directory)
    if not directory.is_dir():
        return {}
    return {p.stem: pd.read_csv(p) for p in sorted(directory.glob("*.csv"))}


def sweep_objectives(trials: pd.DataFrame) -> list[str]:
    """``["value"]`` for a single-objective study, ``["values_0", "values_1", ...]`` otherwise."""
    multi = sorted(
        (c for c in trials.columns if c.startswith("values_")), key=lambda c: int(c.split("_")[1])
    )
    return multi or (["value"] if "value" in trials else [])


def _per_objective(trials: pd.DataFrame, columns: list[str]) -> list[str] | None:
    """One name per objective from the first of ``columns`` holding a "a;b" (or "a,b") list."""
    n = len(sweep_objectives(trials))
    for column in columns:
        if column in trials and trials[column].notna().any():
            found = str(trials[column].dropna().iloc[0]).replace(",", ";").split(";")
            found = [d.strip() for d in found if d.strip()]
            if len(found) == n:
                return found
    return None


def sweep_directions(trials: pd.DataFrame, default: str = "maximize") -> list[str]:
    """Directions from a ``user_attrs_directions`` column ("maximize;minimize") if present."""
    found = _per_objective(trials, ["user_attrs_directions", "user_attrs_direction"])
    return found or [default] * len(sweep_objectives(trials))


def sweep_labels(trials: pd.DataFrame) -> list[str]:
    """Metric names for the objectives (``user_attrs_objectives``), else the column names."""
    return _per_objective(trials, ["user_attrs_objectives"]) or sweep_objectives(trials)


def best_trials(trials: pd.DataFrame, k: int = 5, direction: str | None = None) -> pd.DataFrame:
    """The k best complete trials of a single-objective sweep, params included."""
    objectives = sweep_objectives(trials)
    if not objectives:
        return trials.iloc[:0]
    done = trials[trials.get("state", "COMPLETE") == "COMPLETE"]
    direction = direction or sweep_directions(trials)[0]
    done = done.sort_values(objectives[0], ascending=direction == "minimize")
    keep = ["number"] + objectives + [c for c in trials.columns if c.startswith("params_")]
    return done[[c for c in keep if c in done]].head(k).reset_index(drop=True)


def load_reeval(directory: str | Path, name: str) -> pd.DataFrame | None:
    """A sweep's re-evaluation table (its top trials on more seeds), or None before one ran."""
    path = Path(directory) / REEVAL_DIR / f"{name}.csv"
    return pd.read_csv(path) if path.exists() else None


def reevaluated(table: pd.DataFrame, metric: str, direction: str = "maximize") -> pd.DataFrame:
    """Per re-evaluated trial, best first: its params, the seeds it has, the mean and 95%
    t-interval of ``metric`` over them, and Welch's p against the first. The first row is the
    sweep's winner: a winner is named by the mean over seeds, not by the single-seed trial
    value that ranked it; ``p vs winner`` says whether the seeds tell it from the others."""
    params = [c for c in table.columns if c.startswith("params_")]
    rows, values = [], {}
    for trial, runs in table.groupby("trial", sort=False):
        mine = values[int(trial)] = pd.to_numeric(runs[metric], errors="coerce").dropna()
        low, high = t_interval(mine)
        rows.append({"trial": int(trial), **runs.iloc[0][params].to_dict(), "seeds": len(mine),
                     "mean": mine.mean(), "ci_low": low, "ci_high": high})  # fmt: skip
    out = pd.DataFrame(rows)
    if out.empty:
        return out
    out = out.sort_values("mean", ascending=direction == "minimize", kind="stable")
    best = values[int(out["trial"].iloc[0])]
    out["p vs winner"] = [
        float("nan")
        if i == 0 or min(len(best), len(values[t])) < 2
        else stats.ttest_ind(values[t], best, equal_var=False).pvalue
        for i, t in enumerate(out["trial"])
    ]
    return out.reset_index(drop=True)
