"""Where a claim's seed-to-seed noise comes from, and what reduces it.

Two sources are read here. ``results/noise/summary.csv`` (written by
``experiments.tools.test_set_noise`` from replayed checkpoints) splits the variance of a
paired difference into test-set sampling and the networks themselves. The calibration grid
``ablations/calibration/data.yaml`` trains one claim's pair of cells on the profile's training
images and on every training image at the same steps; the spread of its paired differences
says whether fresher data makes seeds agree; ``ablations/calibration/steps.yaml`` does the same
for a longer and a shorter schedule, and each arm is priced by what deciding the claim would
cost there.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd
from scipy import stats

from experiments.analysis.compute import MACHINE_CORES, core_seconds
from experiments.analysis.projection import seeds_to_decide


@dataclass(frozen=True)
class SpreadGrid:
    """A calibration grid that trains one claim's pair of cells under several arms of one
    protocol choice: its two cells per seed differ in ``pair`` (``first`` is the claim's
    cell), its arms in ``by``; ``claim_grid`` is the grid whose claim the pair is."""

    grid: str
    pair: str
    by: str
    first: str
    claim_grid: str


# fresher data: the profile's 5,000 images against every training image, at the same steps
DATA_GRID = SpreadGrid("calibration/data", "local", "images", "true", "casvit/local")
# the length of the schedule: the profile's 756 optimizer steps against twice and half as many
STEPS_GRID = SpreadGrid("calibration/steps", "local", "steps", "true", "casvit/local")
SPREAD_GRIDS = (DATA_GRID, STEPS_GRID)


def _pp(v: float) -> str:
    return "" if pd.isna(v) else f"{v:.2f}"


def summary_table(noise: pd.DataFrame) -> pd.DataFrame:
    """The test-set noise summary for display, one row per comparison and BN variant."""

    def col(name: str) -> pd.Series:
        return noise[name] if name in noise else pd.Series(float("nan"), index=noise.index)

    return pd.DataFrame(
        {
            "grid": noise["paper"] + "/" + noise["grid"],
            "comparison": noise["cell"] + " vs " + noise["versus"],
            "BN statistics": noise["bn"],
            "seeds": noise["seeds"],
            "Δ test (pp)": noise["delta_test"].map(lambda v: f"{v:+.2f}"),
            "sd of paired Δ, test": col("sd_test").map(_pp),
            "of it, test sampling": col("per_image_sd_test").map(_pp),
            "sd, 20k held out": col("sd_holdout").map(_pp),
            "sd fitted, 64k": col("sd_fit_64k").map(_pp),
            "seeds x, 64k": col("seeds_ratio_64k").map(_pp),
            "compute x, 64k": col("compute_ratio_64k").map(_pp),
        }
    )


def verdict(lo: float, hi: float) -> str:
    """What the range of compute ratios (64k over 10k evaluation images) says."""
    if hi < 0.9:
        return "a larger evaluation set decides them for less compute"
    if lo >= 0.9:
        return (
            "the noise is mostly in the trained networks, and a larger evaluation set does "
            "not pay for itself"
        )
    return "a larger evaluation set pays for itself in some comparisons, not in others"


def sampling_sentence(noise: pd.DataFrame) -> str | None:
    """One sentence over the comparisons measured with held-out images, or None."""
    plain = noise[noise["bn"] == "running averages"]
    if "share_sampling_10k" not in plain:
        return None
    plain = plain.dropna(subset=["share_sampling_10k"])
    if plain.empty:
        return None
    lo, hi = plain["share_sampling_10k"].min(), plain["share_sampling_10k"].max()
    c_lo, c_hi = plain["compute_ratio_64k"].min(), plain["compute_ratio_64k"].max()
    return (
        f"Test sampling is {lo:.0%}-{hi:.0%} of the variance of these paired differences; "
        f"evaluating on 64,000 images instead of 10,000 would take {c_lo:.2f}-{c_hi:.2f}x the "
        f"compute to decide the same claims: {verdict(c_lo, c_hi)}."
    )


def cell_axes(cell: str) -> dict[str, str]:
    """A cell's label ("a=1, b=x") as its axis -> value mapping."""
    return dict(part.split("=", 1) for part in cell.split(", "))


def labelled_runs(results: pd.DataFrame, grid: str, profile: str, **columns: str) -> pd.DataFrame:
    """A calibration grid's ok runs at a profile, each named column holding the value of the
    axis it names (``pair="local"``: the run's ``local`` value)."""
    rows = results[
        (results["grid"] == grid) & (results["status"] == "ok") & (results["profile"] == profile)
    ]
    axes = rows["cell"].map(cell_axes)
    return rows.assign(
        **{col: axes.map(lambda a, k=axis: a.get(k)) for col, axis in columns.items()}
    )


def optimizer_steps(rows: pd.DataFrame) -> float:
    """The budget of an arm's runs: ``train.steps`` where the table has it, else the epochs
    they ran (a grid that counts epochs trains every arm on the same data)."""
    if "train.steps" in rows and rows["train.steps"].notna().all():
        return float(rows["train.steps"].median())
    return float(rows["epochs_run"].median())


def spread(
    results: pd.DataFrame,
    g: SpreadGrid = DATA_GRID,
    metric: str = "test_top1",
    profile: str = "quick",
    claim: dict | None = None,
) -> pd.DataFrame:
    """Per arm of a calibration grid: the paired difference of its two cells by seed, its sd,
    the variance ratio against the first arm (two-sided F test), and how far the arm moves the
    difference itself from the first arm's (Welch's t-test): a budget that changes a claim's
    effect measures learning speed as well as the architecture.

    With ``claim`` (its ``margin``, Holm ``level`` and ``test``, as the claims table has them)
    each arm also gets what deciding that claim would cost there: the seeds at which the
    claim's interval would decide it with the arm's mean and sd (``projection``), and the
    2-core machine hours of those seeds' runs. That is the figure a protocol choice is judged
    by: a longer or bigger run pays when it cuts the seeds by more than it adds to each run.
    A run is priced at the first arm's median run time times the arm's optimizer steps over
    the first arm's: the arms' own times were recorded on whatever host ran them, and hosts
    differ by more than the arms do."""
    rows = labelled_runs(results, g.grid, profile, pair=g.pair, by=g.by)
    if rows.empty:
        return pd.DataFrame()
    out, diffs = [], []
    for arm, arm_rows in rows.groupby("by", sort=False):
        wide = arm_rows.pivot_table(index="seed", columns="pair", values=metric, aggfunc="first")
        if wide.shape[1] != 2:
            continue
        first = g.first if g.first in wide else wide.columns[0]
        other = next(c for c in wide.columns if c != first)
        wide = wide.dropna()
        diff = wide[first] - wide[other]
        diffs.append(diff)
        row = {
            g.by: arm,
            "seeds": len(diff),
            f"{g.pair}={first}": wide[first].mean(),
            f"{g.pair}={other}": wide[other].mean(),
            "Δ (pp)": diff.mean(),
            "sd of paired Δ": diff.std(ddof=1),
            "sd of each cell": (wide[first].std(ddof=1) + wide[other].std(ddof=1)) / 2,
        }
        if claim is not None:
            row["_core_min"] = float(core_seconds(arm_rows).median()) / 60
            row["optimizer steps"] = optimizer_steps(arm_rows)
            row["seeds to decide"] = seeds_to_decide(
                row["Δ (pp)"], row["sd of paired Δ"], claim["margin"], claim["level"],
                claim["test"],
            )  # fmt: skip
        out.append(row)
    table = pd.DataFrame(out)
    if claim is not None and len(table):
        first_arm = table.iloc[0]
        run_min = first_arm["_core_min"] * table["optimizer steps"] / first_arm["optimizer steps"]
        hours = table["seeds to decide"] * 2 * run_min / 60 / MACHINE_CORES
        table = table.drop(columns="_core_min").assign(
            **{"core-min a run": run_min, f"{MACHINE_CORES}-core hours to decide": hours}
        )
    if len(table) > 1:
        ref = table.iloc[0]
        ratio = (table["sd of paired Δ"] / ref["sd of paired Δ"]) ** 2
        p = [
            2 * min(stats.f.cdf(r, n - 1, ref["seeds"] - 1), stats.f.sf(r, n - 1, ref["seeds"] - 1))
            for r, n in zip(ratio, table["seeds"], strict=True)
        ]
        # does the arm move the claim itself? its Δ against the first arm's (Welch)
        welch = [stats.ttest_ind(d, diffs[0], equal_var=False).pvalue for d in diffs]
        table = table.assign(
            **{
                "variance ratio": ratio,
                "p (F, two-sided)": p,
                "Δ − first arm's Δ": table["Δ (pp)"] - ref["Δ (pp)"],
                "p (Welch)": welch,
            }
        )
    return table
