"""The compute each paper's runs took, per profile: what a campaign costs, from the run tables.

A run shared between grids (same resolved configuration and seed) is one run, counted under
the paper of the grid that trained it (a calibration grid that takes campaign runs from their
tables does not take their hours). The hours are
those of every training: a grid that takes a run from another grid's table copies its row
(same finish time) and adds nothing, while a run that was trained again (campaigns before
workers looked up the tables) adds its second training, counted under *repeat trainings*.
Run time is the run's own ``run_s`` (set-up, training, validation and test) where the table
has it, else ``wall_s`` (fit and test). Core-hours multiply by the run's threads; the machine
figure divides core-hours by the cores of a 2-core machine, the budget the campaign is planned
against, and is set beside the campaign's target (``TARGET_MACHINE_HOURS`` a paper).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

MACHINE_CORES = 2
# the campaign's target: every claim of a paper decided in this much time of the 2-core machine
TARGET_MACHINE_HOURS = 1.5
TARGET = f"x the {TARGET_MACHINE_HOURS * 60:.0f}-min target"
COLUMNS = ["profile", "paper", "runs", "repeat trainings", "run hours", "median min/run",
           "core-hours", f"{MACHINE_CORES}-core machine hours", TARGET]  # fmt: skip


def run_seconds(runs: pd.DataFrame) -> pd.Series:
    """Each run's own time: ``run_s`` (set-up, training, evaluation) where the table has it,
    else ``wall_s`` (fit and test); a run killed and resumed adds the time it trained before
    the checkpoint it resumed from (``before_restart_s``; rows from before that column was
    kept count their last attempt only)."""
    seconds = runs["run_s"] if "run_s" in runs else pd.Series(np.nan, index=runs.index)
    before = runs["before_restart_s"] if "before_restart_s" in runs else 0.0
    return seconds.fillna(runs["wall_s"]) + pd.Series(before, index=runs.index).fillna(0.0)


def core_seconds(runs: pd.DataFrame) -> pd.Series:
    """Each run's core-seconds: its own time times its threads (1 where not recorded), the
    unit projections price runs in."""
    threads = runs["threads"].fillna(1) if "threads" in runs else 1
    return run_seconds(runs) * threads


def campaign_compute(results: pd.DataFrame) -> pd.DataFrame:
    """One row per (profile, paper): distinct finished runs and the time they took."""
    if results.empty:
        return pd.DataFrame(columns=COLUMNS)
    ok = results[results["status"] == "ok"]
    if "shared_from" in ok:  # the row of the grid that trained a run first: its paper pays
        copied = ok["shared_from"].fillna("").astype(str) != ""
        ok = ok.assign(_copied=copied).sort_values("_copied", kind="stable")
    one_training = ["run_id", "date"] if "date" in ok else ["run_id"]
    runs = ok.drop_duplicates(one_training).copy()  # a copied row keeps its training's date
    runs["_s"] = run_seconds(runs)
    threads = runs["threads"] if "threads" in runs else pd.Series(np.nan, index=runs.index)
    runs["_core_s"] = runs["_s"] * threads
    rows = []
    for (profile, paper), g in runs.groupby(["profile", "paper"], sort=True):
        known = g["_core_s"].notna().all()
        core_h = g["_core_s"].sum() / 3600 if known else np.nan
        rows.append(
            {
                "profile": profile,
                "paper": paper,
                "runs": g["run_id"].nunique(),
                "repeat trainings": len(g) - g["run_id"].nunique(),
                "run hours": round(g["_s"].sum() / 3600, 2),
                "median min/run": round(g["_s"].median() / 60, 1),
                "core-hours": round(core_h, 2),
                f"{MACHINE_CORES}-core machine hours": round(core_h / MACHINE_CORES, 2),
                TARGET: round(core_h / MACHINE_CORES / TARGET_MACHINE_HOURS, 1),
            }
        )
    return pd.DataFrame(rows, columns=COLUMNS)
