"""Is a profile's budget long enough? How much each cell still gained at the end of its budget.

Why: when a cell is still learning at the end of its budget, a difference between two cells
measures how fast they learn, not how good they are; an effect below the undertraining gap is
not evidence for a claim. The profile is calibrated when every cell's mean gain in validation
top-1 between its last two validations is below ``STABLE_PP`` (0.5 pp; a profile that
validates every k-th epoch is held to the gain over k epochs, stricter than over one); this
module measures that gain from the curves the runs already record, so every grid's report says
whether it holds.
"""

from __future__ import annotations

import pandas as pd

STABLE_PP = 0.5


def last_epoch_gains(epochs: pd.DataFrame, results: pd.DataFrame) -> pd.DataFrame:
    """One row per ok run of ``results``: val top-1 gained since its previous validation (pp),
    the epochs run and the epochs between those two validations (``every``).

    A run shared between grids has its curve once (under the grid that trained it); it is
    counted in every grid whose table holds it.
    """
    curves = epochs.drop_duplicates(["run_id", "epoch"]).sort_values("epoch")
    gains = {}
    for run_id, curve in curves.groupby("run_id", sort=False):
        vals = curve[curve["val_top1"].notna()]
        if len(vals) >= 2:
            gains[run_id] = (
                int(curve["epoch"].iloc[-1]) + 1,
                int(vals["epoch"].iloc[-1] - vals["epoch"].iloc[-2]),
                float(vals["val_top1"].iloc[-1] - vals["val_top1"].iloc[-2]),
            )
    ok = results[(results["status"] == "ok") & results["run_id"].isin(gains)]
    out = ok[["run_id", "grid", "cell", "profile", "seed"]].copy()
    out["epochs"] = [gains[r][0] for r in out["run_id"]]
    out["every"] = [gains[r][1] for r in out["run_id"]]
    out["last_gain"] = [gains[r][2] for r in out["run_id"]]
    return out.reset_index(drop=True)


def cell_gains(epochs: pd.DataFrame, results: pd.DataFrame) -> pd.DataFrame:
    """Per grid, profile and cell: mean last gain over seeds and whether it is stable."""
    gains = last_epoch_gains(epochs, results)
    out = (
        gains.groupby(["grid", "profile", "cell"], sort=False)
        .agg(
            n=("run_id", "size"),
            epochs=("epochs", "max"),
            every=("every", "max"),
            last_gain=("last_gain", "mean"),
        )
        .reset_index()
    )
    out["stable"] = out["last_gain"] < STABLE_PP
    return out


def grid_budget(epochs: pd.DataFrame, results: pd.DataFrame) -> pd.DataFrame:
    """Per grid and profile: how many cells are still learning, the median and largest gain
    since the previous validation (``val every`` epochs before the last)."""
    cells = cell_gains(epochs, results)
    rows = []
    for (grid, profile), g in cells.groupby(["grid", "profile"], sort=False):
        worst = g.loc[g["last_gain"].idxmax()]
        rows.append(
            {
                "grid": grid,
                "profile": profile,
                "epochs": int(g["epochs"].max()),
                "val every": int(g["every"].max()),
                "cells": len(g),
                "still learning": int((~g["stable"]).sum()),
                "median last gain (pp)": round(float(g["last_gain"].median()), 2),
                "largest (pp)": round(float(worst["last_gain"]), 2),
                "cell with the largest": worst["cell"],
            }
        )
    return pd.DataFrame(rows)
