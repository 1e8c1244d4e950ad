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
from experiments.analysis.compute import MACHINE_CORES, core_seconds

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
    core = core_seconds(ok).rename("core_s")
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


def cell_identity(results: pd.DataFrame) -> dict[tuple[str, str, str], str]:
    """(grid, profile, cell) -> the run id of the cell's lowest seed: two grids' cells that
    train the same configuration (and so share their runs) get the same identity."""
    ok = results[results["status"] == "ok"].sort_values("seed", kind="stable")
    first = ok.drop_duplicates(["grid", "profile", "cell"])
    return {
        (g, p, c): rid
        for g, p, c, rid in zip(
            first["grid"], first["profile"], first["cell"], first["run_id"], strict=True
        )
    }


def _claim_needs(
    verdicts: pd.DataFrame,
    sd_scale: float,
    first_look: int,
    identity: dict,
    margin: float | None = None,
) -> pd.DataFrame:
    """Per claim cell: the seeds the claims comparing it would need at ``sd_scale`` times their
    observed sd, at their own margins or at ``margin`` (a cell shared by claims, or by grids,
    runs to the largest n any needs)."""
    need: dict[str, float] = {}
    where: dict[str, tuple[str, str, str]] = {}
    for r in verdicts.itertuples():
        sd = r.se * math.sqrt(r.n_pairs) * sd_scale
        m = r.margin if margin is None else margin
        n = seeds_to_decide(r.delta, sd, m, r.level, claim_test(r))
        n = max(float(first_look), n if np.isfinite(n) else float(N_MAX))
        for cell in (r.cell, r.versus_cell):
            key = identity.get((r.grid, r.profile, cell), f"{r.grid}|{r.profile}|{cell}")
            need[key] = max(need.get(key, 0.0), n)
            where.setdefault(key, (r.paper, r.grid, r.profile))
    return pd.DataFrame(
        [(*where[k], n) for k, n in need.items()], columns=["paper", "grid", "profile", "seeds"]
    )


def target_cost(
    verdicts: pd.DataFrame,
    results: pd.DataFrame,
    target_hours: float,
    first_look: int = 3,
    wider_margin: float = 1.0,
) -> pd.DataFrame:
    """What deciding every claim of a paper takes with the seeds each claim needs known in
    advance, and what would bring that within ``target_hours`` of the 2-core machine.

    Why: the compute a campaign took includes the rounds a stopping rule spends finding out how
    many seeds a claim needs, so it overstates the protocol's own cost; this is its floor. Each
    claim keeps its observed mean, sd of paired differences and final Holm level, and needs at
    least ``first_look`` seeds; *hours at first_look seeds a cell* is the floor no reduction of
    noise goes below. *runs x cheaper* is the factor the run time would have to fall by at
    these seeds; *sd x* is the factor all sds would have to fall by (fewer seeds) at today's
    run time, NaN where even the floor misses the target (bisection: seeds are whole and have
    a floor, so it is not the square root of the first). *hours at margin wider_margin pp* is
    the floor with every claim's margin widened to ``wider_margin``: the price of resolving
    effects of half a point."""
    tested = verdicts[verdicts["n_pairs"].fillna(0) >= 2]
    tested = tested[tested["level"].notna() & tested["se"].notna()]
    if tested.empty:
        return pd.DataFrame()
    per_run = _core_seconds_per_run(results)

    def machine_hours(frame: pd.DataFrame) -> pd.Series:
        core_s = [
            n * per_run.get((g, p), np.nan)
            for g, p, n in zip(frame["grid"], frame["profile"], frame["seeds"], strict=True)
        ]
        hours = frame.assign(core_s=core_s).groupby(["paper", "profile"])["core_s"].sum()
        return hours / 3600 / MACHINE_CORES

    identity = cell_identity(results)
    floor = _claim_needs(tested, 1.0, first_look, identity)
    noise_free = machine_hours(floor.assign(seeds=float(first_look)))
    wider = machine_hours(_claim_needs(tested, 1.0, first_look, identity, wider_margin))
    hours = machine_hours(floor)
    rows = []
    for (paper, profile), h in hours.items():
        mine = tested[(tested["paper"] == paper) & (tested["profile"] == profile)]
        cells = floor[(floor["paper"] == paper) & (floor["profile"] == profile)]
        lo, hi = 0.0, 1.0  # sd scale that meets the target: bisect between none and today's
        if h <= target_hours:
            lo = 1.0
        elif noise_free[(paper, profile)] > target_hours:
            lo = math.nan  # out of reach: the first look alone costs more than the target
        else:
            for _ in range(30):
                mid = (lo + hi) / 2
                scaled = machine_hours(_claim_needs(mine, mid, first_look, identity)).iloc[0]
                lo, hi = (mid, hi) if scaled <= target_hours else (lo, mid)
        rows.append(
            {
                "profile": profile,
                "paper": paper,
                "claims": len(mine),
                "claim cells": len(cells),
                "seeds a cell (median)": cells["seeds"].median(),
                "runs": int(cells["seeds"].sum()),
                f"{MACHINE_CORES}-core machine hours": round(h, 2),
                f"hours at {first_look} seeds a cell": round(noise_free[(paper, profile)], 2),
                f"hours at margin {wider_margin:g} pp": round(wider[(paper, profile)], 2),
                "runs x cheaper": round(h / target_hours, 1),
                "sd x": round(lo, 2),
            }
        )
    return pd.DataFrame(rows)
