"""Learning curves fitted to the budget grids: ceilings recovered, and the longest budget truly
held out of the fit that predicts it."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from experiments.analysis import budget_bias as bb
from experiments.analysis import budget_extrapolation as be

FIRST = 756
BUDGETS = ("profile", "double", "quadruple", "octuple", "sixteenfold", "thirtytwofold")
# exponential curves in r = steps / 756: the MLP is slow and ends higher
TRUE = {"ffn_locality": (89.0, 8.0, 1.5), "ffn_mlp": (90.0, 20.0, 4.0)}


def _top1(arm: str, ratio: float) -> float:
    c, a, tau = TRUE[arm]
    return c - a * np.exp(-ratio / tau)


def _runs(
    budgets=BUDGETS,
    seeds: int = 3,
    noise: float = 0.2,
    grids=bb.BUDGET_GRIDS[:2],
    arms: dict[str, str] | None = None,
) -> pd.DataFrame:
    """Runs of ``arms`` (arm name -> the TRUE curve it follows; default TRUE's own arms), the
    first three budgets in the first of ``grids``, longer ones in the second."""
    arms = arms or {arm: arm for arm in TRUE}
    rng = np.random.default_rng(1)
    rows = []
    for i, budget in enumerate(budgets):
        grid = grids[0] if i < 3 else grids[1]
        for arm in arms:
            for seed in range(seeds):
                rows.append({"run_id": f"{arm}-{budget}-{seed}", "grid": grid, "status": "ok",
                             "profile": "quick", "cell": f"arm={arm}, steps={budget}",
                             "seed": seed, "train.steps": FIRST * 2**i,
                             "test_top1": _top1(arms[arm], 2**i) + rng.normal(0, noise)})  # fmt: skip
    return pd.DataFrame(rows)


def test_a_fit_recovers_the_ceiling_of_the_curve_that_made_the_points():
    rng = np.random.default_rng(0)
    ratio = np.repeat(2.0 ** np.arange(7), 3)
    top1 = 88.0 - 16.0 * ratio**-0.6 + rng.normal(0, 0.1, ratio.size)
    power_law = be.FAMILIES[0]
    fit = be.fit_curve(power_law, ratio, top1)
    assert fit.ceiling == pytest.approx(88.0, abs=0.5)
    assert fit.params[2] == pytest.approx(0.6, abs=0.1)
    assert fit.residual_sd == pytest.approx(0.1, abs=0.05)
    assert abs(fit.ceiling - 88.0) < 3 * fit.ceiling_se + 0.1
    assert not fit.at_bound
    assert fit.predict(1.0) == pytest.approx(72.0, abs=0.5)
    # fewer points than the curve has parameters plus one: no fit
    assert be.fit_curve(power_law, ratio[:3], top1[:3]) is None


def test_the_longest_budget_is_held_out_of_the_fit_that_predicts_it():
    runs = _runs()
    table = be.extrapolate(runs).set_index("curve")
    assert len(table) == len(be.FAMILIES)
    exponential = table.loc[[c for c in table.index if c.startswith("exponential")][0]]
    # the family that made the points finds both ceilings and the effect at them
    assert exponential["ceiling, first arm (%)"] == pytest.approx(89.0, abs=0.3)
    assert exponential["ceiling, second arm (%)"] == pytest.approx(90.0, abs=0.5)
    assert exponential["Δ at the ceilings (pp)"] == pytest.approx(-1.0, abs=0.6)
    assert exponential["Δ there, predicted without it (pp)"] == pytest.approx(
        _top1("ffn_locality", 32) - _top1("ffn_mlp", 32), abs=0.6
    )
    # measured: the mean paired difference of the seeds at the longest budget
    longest = runs[runs["train.steps"] == FIRST * 32].pivot_table(
        index="seed", columns="cell", values="test_top1"
    )
    paired = (
        longest["arm=ffn_locality, steps=thirtytwofold"]
        - longest["arm=ffn_mlp, steps=thirtytwofold"]
    )
    assert np.allclose(table["Δ there, measured (pp)"], paired.mean())
    assert (table["seeds measured there"] == 3).all()
    # moving the longest budget's runs moves what it measured and the fit on every budget,
    # never the prediction made without it
    moved = runs.copy()
    at_longest = moved["train.steps"] == FIRST * 32
    moved.loc[at_longest & moved["cell"].str.contains("ffn_mlp"), "test_top1"] -= 3.0
    again = be.extrapolate(moved).set_index("curve")
    held_out = "Δ there, predicted without it (pp)"
    assert np.allclose(again[held_out], table[held_out])
    assert np.allclose(again["Δ there, measured (pp)"], table["Δ there, measured (pp)"] + 3.0)
    assert not np.allclose(again["Δ at the ceilings (pp)"], table["Δ at the ceilings (pp)"])


def test_nothing_is_extrapolated_from_fewer_than_four_budgets():
    assert be.extrapolate(_runs(BUDGETS[:3])).empty
    assert be.extrapolation_lines(_runs(BUDGETS[:3])) == []
    lines = be.extrapolation_lines(_runs())
    assert lines[0].startswith("Where would the effects settle?")
    assert lines[2].startswith("- ffn_locality vs ffn_mlp: ")
    assert lines[3] == ""  # one comparison has four budgets: one sentence
    rows = [line for line in lines[4].splitlines() if line.startswith("| ")]
    assert len(rows) == 1 + len(be.FAMILIES)  # the header, then a curve a row


def test_only_the_budgets_both_arms_ran_are_fitted_and_each_comparison_gets_a_sentence():
    """The 1x1 convs ran at four budgets, the MLP and the locality FFN at six: the
    comparisons with the 1x1 convs fit and hold out those four, the MLP's all six, and a pair
    with three shared budgets (the layers arms) is left out."""
    runs = _runs()
    conv = _runs(BUDGETS[:4]).query("cell.str.contains('ffn_mlp')").copy()
    conv["cell"] = conv["cell"].str.replace("ffn_mlp", "ffn_conv1x1")
    conv["run_id"] = conv["run_id"].str.replace("ffn_mlp", "ffn_conv1x1")
    conv["test_top1"] -= 1.0  # the 1x1 convs: the MLP's curve, 1 pp lower
    layers = _runs(BUDGETS[:3]).replace(
        {"ffn_locality": "layers_all", "ffn_mlp": "layers_none"}, regex=True
    )
    runs = pd.concat([runs, conv, layers], ignore_index=True)
    locality_conv = be.extrapolate(runs, bb.COMPARISONS[1])
    assert (locality_conv["longest budget (steps)"] == FIRST * 8).all()
    assert (locality_conv["seeds measured there"] == 3).all()
    assert locality_conv["Δ there, measured (pp)"].iloc[0] == pytest.approx(
        _top1("ffn_locality", 8) - _top1("ffn_mlp", 8) + 1.0, abs=0.5
    )
    assert (be.extrapolate(runs, bb.COMPARISONS[0])["longest budget (steps)"] == FIRST * 32).all()
    assert be.extrapolate(runs, bb.COMPARISONS[3]).empty
    lines = be.extrapolation_lines(runs)
    sentences = [line for line in lines if line.startswith("- ")]
    assert [line.split(":")[0] for line in sentences] == [
        "- ffn_locality vs ffn_mlp", "- ffn_locality vs ffn_conv1x1", "- ffn_conv1x1 vs ffn_mlp"
    ]  # fmt: skip
    table = next(line for line in lines if line.startswith("| "))
    rows = [line for line in table.splitlines() if line.startswith("| ")]
    assert len(rows) == 1 + 3 * len(be.FAMILIES)
    assert "layers_all" not in table


def test_every_study_is_fitted_on_its_own_grids():
    """EfficientMod's hybrid pair ran at 1x-8x in its budget grid and at 16x in the long one:
    it is fitted on all five budgets, read from those two grids only; its other pair (three
    budgets) is left out, and a stray run of the same arm in a LocalViT grid is not read."""
    study = bb.EFFICIENTMOD_STUDY
    hybrid = _runs(BUDGETS[:5], grids=study.grids,
                   arms={"hybrid": "ffn_locality", "conv_deeper": "ffn_mlp"})  # fmt: skip
    blocks = _runs(BUDGETS[:3], grids=study.grids,
                   arms={"modulation": "ffn_locality", "mbconv": "ffn_mlp"})  # fmt: skip
    stray = hybrid[hybrid["train.steps"] == FIRST * 16].assign(
        grid=bb.BUDGET_GRIDS[1], test_top1=0.0, run_id=lambda d: "stray-" + d["run_id"]
    )
    runs = pd.concat([_runs(), hybrid, blocks, stray], ignore_index=True)
    table = be.extrapolate(runs, study.comparisons[0], grids=study.grids)
    assert (table["longest budget (steps)"] == FIRST * 16).all()
    assert table["Δ there, measured (pp)"].iloc[0] == pytest.approx(
        _top1("ffn_locality", 16) - _top1("ffn_mlp", 16), abs=0.5
    )
    assert be.extrapolate(runs, study.comparisons[1], grids=study.grids).empty
    # read from LocalViT's grids, the hybrid pair is only the stray runs: nothing to fit
    assert be.extrapolate(runs, study.comparisons[0]).empty
    sentences = [line for line in be.extrapolation_lines(runs) if line.startswith("- ")]
    assert [line.split(":")[0] for line in sentences] == [
        "- ffn_locality vs ffn_mlp", "- hybrid vs conv_deeper"
    ]  # fmt: skip
    assert f"({FIRST * 16:,} steps)" in sentences[1]


def test_a_longest_budget_of_one_seed_is_counted_in_the_singular():
    runs = _runs()
    one = runs[~runs["cell"].str.endswith("thirtytwofold") | (runs["seed"] == 0)]
    sentence = next(s for s in be.extrapolation_lines(one) if s.startswith("- ffn_locality"))
    assert "where 1 seed measured" in sentence
    sentence = next(s for s in be.extrapolation_lines(runs) if s.startswith("- ffn_locality"))
    assert "where 3 seeds measured" in sentence
