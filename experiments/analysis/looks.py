"""The rows a claim reads: each adaptive grid's claim cells at its last complete look.

Why: a seed schedule (``experiments.run.seeds``) looks at a claim only at the n its rounds stop
at. A round that was interrupted, or is still running, leaves some of its seeds in the table;
a verdict read over every row would be taken at an n the schedule never looks at, and would
change with the moment the tables were read (a claim can read *disagrees* halfway through a
round and *inconclusive* at its end). Replaying the schedule over the rows that exist gives,
for every grid, the seeds of the last round that finished; claims read those, and the rows
beyond them wait for their round to finish.

The replay is joint over a paper's grids under one profile, because a verdict is Holm-adjusted
across the paper's claims: each step reads every grid at its present look, plans each grid's
next round from those verdicts (``next_seeds``), and moves a grid on when every run of its next
round is in the table; it stops when no grid moves. Cells no claim compares, grids without a
seed schedule, and profiles without one are read whole.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from experiments.analysis import claims as cl
from experiments.config.spec import GridSpec, find_specs, load_spec
from experiments.run.seeds import SeedPolicy, next_seeds

Plan = dict[str, list[int]]  # cell -> seeds
NO_PAPER = pd.DataFrame(columns=["paper", "table", "model", "value"])  # verdicts do not read it


def schedules(ablations: Path, papers: list[str] | None = None) -> dict[str, GridSpec]:
    """grid -> its spec (first seeds, seed policy) for every grid spec under ``ablations``."""
    out = {}
    for folder in sorted(p for p in Path(ablations).iterdir() if p.is_dir()):
        if papers is not None and folder.name not in papers:
            continue
        for path in find_specs(folder):
            spec = load_spec(path, build_models=False)
            out[spec.name] = spec
    return out


def _seeds(rows: pd.DataFrame) -> pd.Series:
    return pd.to_numeric(rows["seed"], errors="coerce").fillna(-1).astype(int)


def _present(rows: pd.DataFrame) -> set[tuple[str, int]]:
    return set(zip(rows["cell"], _seeds(rows), strict=True))


def _restrict(results: pd.DataFrame, profile: str, looks: dict[str, Plan]) -> pd.DataFrame:
    """``results`` with each looked-at grid's claim cells limited to its planned seeds."""
    if not looks or results.empty:
        return results
    keep = pd.Series(True, index=results.index)
    at_profile = results["profile"] == profile
    for grid, plan in looks.items():
        rows = at_profile & (results["grid"] == grid) & results["cell"].isin(plan)
        pairs = [(cell, seed) for cell, seeds in plan.items() for seed in seeds]
        index = pd.MultiIndex.from_arrays([results.loc[rows, "cell"], _seeds(results.loc[rows])])
        keep.loc[rows] = index.isin(pairs)
    return results[keep]


def last_complete_looks(
    results: pd.DataFrame,
    claims: pd.DataFrame,
    specs: dict[str, GridSpec],
    profile: str,
    metric: str = "test_top1",
    fixed: dict[str, Plan] | None = None,
) -> dict[str, Plan]:
    """grid -> (claim cell -> seeds) at the last complete look of each adaptive grid.

    ``fixed``: grids whose look is given (a running campaign's own grid, at its planned seeds);
    they are read there and never moved."""
    rows = results[results["profile"] == profile]
    fixed = fixed or {}
    looks: dict[str, Plan] = dict(fixed)
    policies: dict[str, SeedPolicy] = {}
    for grid, family in claims.groupby("grid", sort=False):
        if grid not in specs or grid in fixed:
            continue
        policy = specs[grid].seed_policy(profile)
        if not policy.adaptive:
            continue
        cells = set(family["cell"]) | set(family["versus_cell"])
        looks[grid] = {cell: sorted(specs[grid].seeds) for cell in sorted(cells)}
        policies[grid] = policy
    present = {grid: _present(rows[rows["grid"] == grid]) for grid in policies}
    moved = True
    while moved:
        moved = False
        view = _restrict(rows, profile, looks)
        if view.empty:
            break
        verdicts = cl.check_claims(view, claims, NO_PAPER, metric)
        for grid, plan in list(looks.items()):
            if grid in fixed:
                continue
            mine = verdicts[(verdicts["grid"] == grid) & (verdicts["profile"] == profile)]
            extra = next_seeds(mine, plan, policies[grid])
            if not extra:
                continue
            needed = {(c, s) for c, seeds in extra.items() for s in seeds}
            if needed <= present[grid]:  # extra only adds seeds to the grid's claim cells
                looks[grid] = {c: sorted({*seeds, *extra.get(c, [])}) for c, seeds in plan.items()}
                moved = True
    return looks


def at_last_looks(
    results: pd.DataFrame,
    claims: pd.DataFrame,
    ablations: Path,
    metric: str = "test_top1",
    fixed: dict[str, Plan] | None = None,
) -> pd.DataFrame:
    """``results`` with every adaptive grid's claim cells at their last complete look (each
    profile of the table replayed on its own, ``fixed`` grids at the looks given); the rows a
    claim reads."""
    if results.empty or claims.empty:
        return results
    specs = schedules(ablations, sorted(set(claims["paper"])))
    out = results
    for profile in dict.fromkeys(results["profile"]):
        for _, family in claims.groupby("paper", sort=False):
            looks = last_complete_looks(out, family, specs, profile, metric, fixed)
            out = _restrict(out, profile, looks)
    return out


def beyond_last_looks(results: pd.DataFrame, at_looks: pd.DataFrame) -> pd.DataFrame:
    """The rows claims do not read yet: rounds still running or interrupted, rounds an earlier
    schedule ran past the present one's last complete look, seeds fixed by hand past it."""
    return results.loc[results.index.difference(at_looks.index)]
