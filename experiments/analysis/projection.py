"""What deciding the open claims would cost: seeds to a verdict and the compute they take.

Why: the seed schedule stops an undecided claim at the profile's cap. Whether to raise the cap
is a budget decision, and it needs a figure: how many seeds each open claim would need, and
what the runs would cost on the campaign's 2-core machine.

The projection keeps the claim's observed mean and sd of paired differences and its present
Holm level, and finds the smallest n at which the interval the verdict reads would decide it:

- a difference claim decides when its two-sided interval excludes 0 (half-width below
  ``|Δ|``) or its ``1 - 2 alpha_i`` interval lies inside ±margin (below ``margin - |Δ|``);
  hardest near ``|Δ| = margin / 2``;
- an equivalence claim, below ``margin - |Δ|`` (or ``|Δ| - margin`` to disagree);
- a not-worse claim, below ``|Δ + margin|`` (its interval clears ``-margin`` on one side).

It is a projection, not a promise: the mean moves as seeds are added, and Holm's level for a
claim rises as other claims are decided (which only lowers the figure).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from scipy import stats

from experiments.analysis.claims import claim_test
from experiments.analysis.compute import MACHINE_CORES, run_seconds

N_MAX = 200  # beyond this a projection says "more than N_MAX"


def decided_at(n: int, delta: float, sd: float, margin: float, level: float, test: str) -> bool:
    """Whether a claim with this mean and sd of paired differences is decided at n seeds."""
    se = sd / math.sqrt(n)
    one_sided = stats.t.ppf(1 - level, n - 1) * se  # half-width of the 1 - 2 alpha_i interval
    if test == "non-inferiority":
        return one_sided < abs(delta + margin)
    if test == "equivalence":
        return one_sided < abs(margin - abs(delta))
    two_sided = stats.t.ppf(1 - level / 2, n - 1) * se
    return two_sided < abs(delta) or one_sided < margin - abs(delta)


def seeds_to_decide(
    delta: float, sd: float, margin: float, level: float, test: str, n_max: int = N_MAX
) -> float:
    """Smallest n whose Holm-level interval would decide the claim; NaN when over ``n_max``."""
    if not all(map(math.isfinite, (delta, sd, level))):
        return math.nan
    for n in range(2, n_max + 1):
        if decided_at(n, delta, sd, margin, level, test):
            return float(n)
    return math.nan


def project_open_claims(verdicts: pd.DataFrame) -> pd.DataFrame:
    """One row per inconclusive claim: its seeds now, sd of paired Δ and projected seeds."""
    rows = []
    for r in verdicts[verdicts["verdict"] == "inconclusive"].itertuples():
        sd = r.se * math.sqrt(r.n_pairs)
        test = claim_test(r)
        rows.append(
            {
                "paper": r.paper,
                "grid": r.grid,
                "profile": r.profile,
                "claim": r.claim,
                "cell": r.cell,
                "versus_cell": r.versus_cell,
                "n": int(r.n_pairs),
                "delta": r.delta,
                "sd": sd,
                "projected_n": seeds_to_decide(r.delta, sd, r.margin, r.level, test),
            }
        )
    return pd.DataFrame(rows)


def _core_seconds_per_run(results: pd.DataFrame) -> pd.Series:
    """Median core-seconds of one ok run, per (grid, profile)."""
    ok = results[results["status"] == "ok"]
    seconds = run_seconds(ok)
    threads = ok["threads"].fillna(1) if "threads" in ok else 1
    core = (seconds * threads).rename("core_s")
    return (
        pd.concat([ok[["grid", "profile"]], core], axis=1)
        .groupby(["grid", "profile"])["core_s"]
        .median()
    )


def cost_to_decide(projected: pd.DataFrame, results: pd.DataFrame) -> pd.DataFrame:
    """Per paper and profile: open claims, how many could be decided within ``N_MAX`` seeds,
    the extra runs (a cell shared by claims runs to the largest n any of them needs) and the
    2-core machine hours those runs take at the grid's median run time."""
    if projected.empty:
        return pd.DataFrame()
    ok = results[results["status"] == "ok"]
    have = ok.groupby(["grid", "profile", "cell"])["seed"].nunique()
    per_run = _core_seconds_per_run(results)
    need: dict[tuple[str, str, str], float] = {}
    for r in projected.itertuples():
        n = r.projected_n if np.isfinite(r.projected_n) else N_MAX
        for cell in (r.cell, r.versus_cell):
            key = (r.grid, r.profile, cell)
            need[key] = max(need.get(key, 0), n)
    extra = pd.Series(
        {k: max(0.0, n - have.get(k, 0)) for k, n in need.items()}, dtype=float
    ).rename("runs")
    extra.index = pd.MultiIndex.from_tuples(extra.index, names=["grid", "profile", "cell"])
    frame = extra.reset_index()
    frame["paper"] = frame["grid"].str.split("/").str[0]
    frame["core_s"] = [
        n * per_run.get((g, p), np.nan)
        for g, p, n in zip(frame["grid"], frame["profile"], frame["runs"], strict=True)
    ]
    rows = []
    for (paper, profile), g in frame.groupby(["paper", "profile"], sort=True):
        mine = projected[(projected["paper"] == paper) & (projected["profile"] == profile)]
        rows.append(
            {
                "profile": profile,
                "paper": paper,
                "open claims": len(mine),
                f"decidable within {N_MAX} seeds": int(np.isfinite(mine["projected_n"]).sum()),
                "median projected seeds": mine["projected_n"].median(),
                "extra runs": int(g["runs"].sum()),
                f"{MACHINE_CORES}-core machine hours": round(
                    g["core_s"].sum() / 3600 / MACHINE_CORES, 1
                ),
            }
        )
    return pd.DataFrame(rows)
