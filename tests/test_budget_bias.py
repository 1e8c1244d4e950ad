"""The undertraining-bias tables: a claim's effect at the profile's budget, at twice it and at
four times it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from experiments.analysis import budget_bias as bb
from experiments.config.spec import load_spec

# per arm: test top-1 at the profile's budget and at twice it; the slow cell catches up
TOP1 = {
    "ffn_mlp": (72.0, 80.0),
    "ffn_conv1x1": (77.0, 81.0),
    "ffn_locality": (84.0, 86.0),
    "layers_none": (69.0, 79.0),
    "layers_all": (84.0, 86.5),
}


def _runs(seeds: int = 4, noise: float = 0.3) -> tuple[pd.DataFrame, pd.DataFrame]:
    rng = np.random.default_rng(0)
    rows, curves = [], []
    for budget, steps, col in (("profile", 756, 0), ("double", 1512, 1)):
        for arm, top1 in TOP1.items():
            for seed in range(seeds):
                run_id = f"{arm}-{budget}-{seed}"
                value = top1[col] + rng.normal(0, noise)
                rows.append({"run_id": run_id, "grid": bb.SLOW_CELLS_GRID, "status": "ok",
                             "profile": "quick", "cell": f"arm={arm}, steps={budget}",
                             "seed": seed, "test_top1": value, "train.steps": steps})  # fmt: skip
                # validated every 2 epochs; the last validation gained 1 pp (0.25 at double)
                last = 1.0 if budget == "profile" else 0.25
                # the locality cells fit their training images (train 5 pp over test), the
                # slow cells do not (train = test)
                fits = 5.0 if arm.endswith(("locality", "all")) else 0.0
                for epoch, val in ((7, value - 1 - last), (9, value - last), (11, value)):
                    curves.append({"run_id": run_id, "epoch": epoch, "val_top1": val,
                                   "train_top1": val + fits})  # fmt: skip
    rows.append({**rows[0], "profile": "pilot", "test_top1": 0.0})  # another profile: not read
    rows.append({**rows[1], "status": "failed", "seed": 99})  # not ok: not read
    return pd.DataFrame(rows), pd.DataFrame(curves)


def test_effects_pair_cells_by_seed_within_each_budget_and_compare_the_budgets():
    results, _ = _runs()
    table = bb.effect_by_budget(results)
    assert len(table) == 2 * len(bb.COMPARISONS)
    ok = results[(results["profile"] == "quick") & (results["status"] == "ok")]
    for c in bb.COMPARISONS:
        mine = table[table["claim"] == c.claim].set_index("budget")
        assert mine.index.tolist() == ["profile", "double"]
        assert mine["optimizer steps"].tolist() == [756, 1512]
        diffs = {}
        for budget in ("profile", "double"):
            top1 = ok[ok["cell"].str.endswith(f"steps={budget}")].pivot_table(
                index="seed", columns="cell", values="test_top1"
            )
            a, b = (top1[f"arm={arm}, steps={budget}"] for arm in (c.cell, c.versus))
            diffs[budget] = a - b
            assert mine.loc[budget, "Δ (pp)"] == pytest.approx((a - b).mean())
            assert mine.loc[budget, "seeds"] == 4
        expected = TOP1[c.cell][1] - TOP1[c.versus][1] - (TOP1[c.cell][0] - TOP1[c.versus][0])
        assert mine.loc["double", "Δ − first budget's Δ"] == pytest.approx(expected, abs=1.0)
        welch = stats.ttest_ind(diffs["double"], diffs["profile"], equal_var=False).pvalue
        assert mine.loc["double", "p (Welch)"] == pytest.approx(welch)
        assert np.isnan(mine.loc["profile", "p (Welch)"])
    # the slow cells catch up: the locality FFN's 12 pp over the MLP is 6 pp at twice the budget
    shrunk = table[(table["claim"] == bb.COMPARISONS[0].claim) & (table["budget"] == "double")]
    assert shrunk["Δ − first budget's Δ"].item() == pytest.approx(-6.0, abs=0.6)
    assert shrunk["p (Welch)"].item() < 0.01


def test_cells_show_what_the_longer_budget_added_and_how_much_each_still_gained():
    results, epochs = _runs()
    cells = bb.cell_budgets(results, epochs).set_index(["arm", "budget"])
    assert len(cells) == 2 * len(TOP1)
    for arm, (short, long) in TOP1.items():
        assert cells.loc[(arm, "profile"), "gain over the first budget (pp)"] == 0
        gain = cells.loc[(arm, "double"), "gain over the first budget (pp)"]
        assert gain == pytest.approx(long - short, abs=0.6)
        assert cells.loc[(arm, "profile"), "last validation gain (pp)"] == pytest.approx(1.0)
        assert cells.loc[(arm, "double"), "last validation gain (pp)"] == pytest.approx(0.25)
        # the last epoch's training top-1 (the curves run epochs 7, 9, 11: the 11th's)
        fits = 5.0 if arm.endswith(("locality", "all")) else 0.0
        for budget in ("profile", "double"):
            test = cells.loc[(arm, budget), "test top-1 (%)"]
            assert cells.loc[(arm, budget), "train top-1, last epoch (%)"] == pytest.approx(
                test + fits
            )


def _with_4x(results: pd.DataFrame, seeds: int = 4) -> pd.DataFrame:
    """Adds the 4x budget; at it the MLP catches up a little more, the rest barely move."""
    top1 = {"ffn_mlp": 82.0, "ffn_conv1x1": 81.5, "ffn_locality": 86.5,
            "layers_none": 81.0, "layers_all": 87.0}  # fmt: skip
    rng = np.random.default_rng(1)
    rows = [{"run_id": f"{arm}-quadruple-{seed}", "grid": bb.SLOW_CELLS_GRID, "status": "ok",
             "profile": "quick", "cell": f"arm={arm}, steps=quadruple", "seed": seed,
             "test_top1": top1[arm] + rng.normal(0, 0.3), "train.steps": 3024}
            for arm in TOP1 for seed in range(seeds)]  # fmt: skip
    return pd.concat([results, pd.DataFrame(rows)], ignore_index=True)


def test_a_third_budget_is_compared_with_the_first_and_leaves_the_others_as_they_were():
    results, epochs = _runs()
    table = bb.effect_by_budget(_with_4x(results))
    assert len(table) == 3 * len(bb.COMPARISONS)
    alone = bb.effect_by_budget(results).set_index(["claim", "budget"])
    pd.testing.assert_frame_equal(table.set_index(["claim", "budget"]).loc[alone.index], alone)
    four = table[table["budget"] == "quadruple"].set_index("comparison")
    assert four["optimizer steps"].eq(3024).all() and four["seeds"].eq(4).all()
    assert four.loc["ffn_locality vs ffn_mlp", "Δ − first budget's Δ"] == pytest.approx(
        (86.5 - 82.0) - (84.0 - 72.0), abs=0.6
    )
    cells = bb.cell_budgets(_with_4x(results), epochs).set_index(["arm", "budget"])
    assert len(cells) == 3 * len(TOP1)
    assert cells.loc[("ffn_mlp", "quadruple"), "gain over the first budget (pp)"] == pytest.approx(
        82.0 - 72.0, abs=0.6
    )


def test_the_long_grid_adds_its_budget_to_the_comparisons_whose_arms_it_trained():
    """slow_cells_long trains the locality FFN and the MLP at 8x, from two of three seeds so
    far: that comparison gets an 8x row paired over those seeds, the others none."""
    results, epochs = _runs()
    long = [
        {
            "run_id": f"{arm}-octuple-{seed}",
            "grid": bb.BUDGET_GRIDS[1],
            "status": "ok",
            "profile": "quick",
            "cell": f"arm={arm}, steps=octuple",
            "seed": seed,
            "test_top1": value + slope * seed,
            "train.steps": 6048,
        }
        for arm, value, slope in (("ffn_mlp", 84.0, 1.0), ("ffn_locality", 87.0, 1.5))
        for seed in (0, 1)
    ]
    long.append({**long[0], "run_id": "ffn_mlp-octuple-2", "seed": 2})  # no pair: not paired
    both = pd.concat([results, pd.DataFrame(long)], ignore_index=True)  # fmt: skip
    table = bb.effect_by_budget(both)
    eight = table[table["budget"] == "octuple"]
    assert eight["comparison"].tolist() == ["ffn_locality vs ffn_mlp"]
    assert eight["seeds"].item() == 2 and eight["optimizer steps"].item() == 6048
    assert eight["Δ (pp)"].item() == pytest.approx(3.25)  # differences 3.0 and 3.5
    assert table.groupby("comparison")["budget"].last()["ffn_locality vs ffn_mlp"] == "octuple"
    cells = bb.cell_budgets(both, epochs).set_index(["arm", "budget"])
    assert cells.loc[("ffn_mlp", "octuple"), "seeds"] == 3
    assert ("ffn_conv1x1", "octuple") not in cells.index


def test_a_run_the_long_grids_share_counts_once_and_pairs_the_1x1_convs_at_8x():
    """slow_cells_conv1x1 trains the 1x1 convs at 8x and takes the MLP's 8x runs from
    slow_cells_long (same run ids, a row in each table): the MLP counts three seeds, not six,
    and the 1x1 convs' comparison with it gets its 8x row."""
    results, epochs = _runs()
    rows = []
    for grid, arm, value in (
        (bb.BUDGET_GRIDS[1], "ffn_mlp", 84.0),
        (bb.BUDGET_GRIDS[2], "ffn_mlp", 84.0),  # the same runs, shared
        (bb.BUDGET_GRIDS[2], "ffn_conv1x1", 86.0),
    ):
        rows += [{"run_id": f"{arm}-octuple-{seed}", "grid": grid, "status": "ok",
                  "profile": "quick", "cell": f"arm={arm}, steps=octuple", "seed": seed,
                  "test_top1": value + seed, "train.steps": 6048}
                 for seed in range(3)]  # fmt: skip
    both = pd.concat([results, pd.DataFrame(rows)], ignore_index=True)
    table = bb.effect_by_budget(both).set_index(["comparison", "budget"])
    eight = table.loc[("ffn_conv1x1 vs ffn_mlp", "octuple")]
    assert eight["seeds"] == 3 and eight["Δ (pp)"] == pytest.approx(2.0)
    cells = bb.cell_budgets(both, epochs).set_index(["arm", "budget"])
    assert cells.loc[("ffn_mlp", "octuple"), "seeds"] == 3
    assert cells.loc[("ffn_conv1x1", "octuple"), "seeds"] == 3


def test_the_dwconv_grid_adds_seeds_to_the_depthwise_convs_share_at_8x_and_only_there():
    """slow_cells_dwconv trains seeds 3-5 of the locality FFN and the 1x1 convs at 8x and
    holds seeds 0-2 as the other long grids' runs: their comparison pairs six seeds at 8x,
    while the comparisons with the MLP, which has three there, still pair three."""
    results, epochs = _runs()
    rows = []
    for grid, arm, value, seeds in (
        (bb.BUDGET_GRIDS[1], "ffn_mlp", 84.0, range(3)),
        (bb.BUDGET_GRIDS[1], "ffn_locality", 88.0, range(3)),
        (bb.BUDGET_GRIDS[2], "ffn_conv1x1", 87.0, range(3)),
        (bb.BUDGET_GRIDS[3], "ffn_locality", 88.0, range(6)),  # seeds 0-2 shared
        (bb.BUDGET_GRIDS[3], "ffn_conv1x1", 87.0, range(6)),
    ):
        rows += [{"run_id": f"{arm}-octuple-{seed}", "grid": grid, "status": "ok",
                  "profile": "quick", "cell": f"arm={arm}, steps=octuple", "seed": seed,
                  "test_top1": value + 0.5 * (arm == "ffn_locality") * seed,
                  "train.steps": 6048}
                 for seed in seeds]  # fmt: skip
    both = pd.concat([results, pd.DataFrame(rows)], ignore_index=True)
    table = bb.effect_by_budget(both).set_index(["comparison", "budget"])
    share = table.loc[("ffn_locality vs ffn_conv1x1", "octuple")]
    assert share["seeds"] == 6 and share["Δ (pp)"] == pytest.approx(1.0 + 0.5 * 2.5)
    assert table.loc[("ffn_locality vs ffn_mlp", "octuple"), "seeds"] == 3
    assert table.loc[("ffn_conv1x1 vs ffn_mlp", "octuple"), "seeds"] == 3
    cells = bb.cell_budgets(both, epochs).set_index(["arm", "budget"])
    assert cells.loc[("ffn_locality", "octuple"), "seeds"] == 6
    assert cells.loc[("ffn_mlp", "octuple"), "seeds"] == 3


def test_report_lines_wait_for_both_budgets():
    results, epochs = _runs()
    lines = bb.bias_lines(results, epochs)
    text = "\n".join(lines)
    assert "Undertraining bias" in text and text.count("| ffn_mlp") == 2
    for c in bb.COMPARISONS:
        assert c.claim in text
    only_profile = results[results["cell"].str.endswith("steps=profile")]
    assert bb.bias_lines(only_profile, epochs) == []
    assert bb.bias_lines(results.iloc[0:0], epochs) == []


def test_budget_section_warns_that_a_small_last_gain_is_no_proof_only_beside_the_bias_tables():
    results, epochs = _runs()
    text = "\n".join(bb.budget_lines(epochs, results))
    assert text.startswith("## Is the budget long enough?")
    assert "no proof of the contrary" in text and "Undertraining bias" in text
    only_profile = results[results["cell"].str.endswith("steps=profile")]
    text = "\n".join(bb.budget_lines(epochs, only_profile))
    assert "## Is the budget long enough?" in text and "no proof" not in text
    assert bb.budget_lines(epochs.iloc[0:0], results) == []


def test_the_figure_draws_every_comparison_at_every_budget_and_the_report_links_it(tmp_path):
    results, epochs = _runs()
    results = _with_4x(results)
    effects = bb.effect_by_budget(results)
    ax = bb.plot_effect_by_budget(effects).axes[0]
    handles, labels = ax.get_legend_handles_labels()
    assert labels == list(dict.fromkeys(effects["comparison"]))
    lines = dict(zip(labels, (h.lines[0] for h in handles), strict=True))
    xs = np.array([line.get_xdata() for line in lines.values()], dtype=float)
    # each comparison near each budget (within DODGE doublings), none on another's spot
    assert np.abs(np.log2(xs / [756, 1512, 3024])).max() <= bb.DODGE * len(lines)
    assert all(len(set(column)) == len(lines) for column in xs.T)
    assert [t.get_text() for t in ax.get_xticklabels()] == ["756", "1,512", "3,024"]
    assert lines["ffn_locality vs ffn_mlp"].get_ydata()[0] == pytest.approx(12.0, abs=0.6)
    *names, seeds = ax.get_title().splitlines()  # every grid named, on lines that fit
    assert all(g.split("/")[-1] in " ".join(names) for g in bb.BUDGET_GRIDS)
    assert len(names) > 1 and max(map(len, names)) <= bb.TITLE_WIDTH
    assert seeds.startswith("n = ")
    text = "\n".join(bb.budget_lines(epochs, results, results_dir=tmp_path))
    figure = tmp_path / "figures" / "calibration" / "slow_cells_quick_effects.png"
    assert figure.is_file() and "(figures/calibration/slow_cells_quick_effects.png)" in text
    assert "![" not in "\n".join(bb.budget_lines(epochs, results))  # no folder: no figure


def test_budgets_come_shortest_first_whatever_order_the_runs_finished_in():
    """The long grid's 16x runs may finish before its last 8x run: the tables and the figure
    still read the budgets by their steps."""
    results, epochs = _runs()
    long = [
        {"run_id": f"{arm}-{budget}-{seed}", "grid": bb.BUDGET_GRIDS[1], "status": "ok",
         "profile": "quick", "cell": f"arm={arm}, steps={budget}", "seed": seed,
         "test_top1": value, "train.steps": steps}
        for budget, steps in (("sixteenfold", 12096), ("octuple", 6048))
        for arm, value in (("ffn_mlp", 85.0), ("ffn_locality", 88.0))
        for seed in range(2)
    ]  # fmt: skip
    both = pd.concat([pd.DataFrame(long), results], ignore_index=True)
    table = bb.effect_by_budget(both)
    mine = table[table["comparison"] == "ffn_locality vs ffn_mlp"]
    assert mine["budget"].tolist() == ["profile", "double", "octuple", "sixteenfold"]
    assert mine["optimizer steps"].is_monotonic_increasing
    cells = bb.cell_budgets(both, epochs)
    assert cells[cells["arm"] == "ffn_mlp"]["budget"].tolist()[-2:] == ["octuple", "sixteenfold"]


def test_each_study_reads_its_own_grid_and_the_section_shows_both():
    """EfficientMod's budget grid gets its own paragraph, tables and figure; its runs never
    enter LocalViT's tables, nor LocalViT's runs its."""
    results, epochs = _runs()
    study = bb.EFFICIENTMOD_STUDY
    top1 = {"hybrid": (80.0, 83.0), "conv_deeper": (82.0, 83.5),
            "modulation": (82.0, 85.0), "mbconv": (86.0, 87.0)}  # fmt: skip
    slope = {"hybrid": 0.1, "conv_deeper": 0.05, "modulation": 0.07, "mbconv": 0.02}
    rows = [{"run_id": f"em-{arm}-{budget}-{seed}", "grid": study.grids[0], "status": "ok",
             "profile": "quick", "cell": f"arm={arm}, steps={budget}", "seed": seed,
             "test_top1": top1[arm][col] + slope[arm] * seed * (1 + col),
             "train.steps": steps}
            for col, (budget, steps) in enumerate((("profile", 756), ("double", 1512)))
            for arm in top1 for seed in range(3)]  # fmt: skip
    both = pd.concat([results, pd.DataFrame(rows)], ignore_index=True)
    mine = bb.effect_by_budget(both, study.comparisons, study.grids).set_index(
        ["comparison", "budget"]
    )
    assert sorted(mine.index.get_level_values(0).unique()) == [
        "hybrid vs conv_deeper", "modulation vs mbconv"
    ]  # fmt: skip
    assert mine.loc[("hybrid vs conv_deeper", "profile"), "Δ (pp)"] == pytest.approx(-1.95)
    assert mine.loc[("modulation vs mbconv", "double"), "Δ − first budget's Δ"] == pytest.approx(
        2.05
    )
    # LocalViT's tables are the same with or without EfficientMod's runs
    pd.testing.assert_frame_equal(bb.effect_by_budget(both), bb.effect_by_budget(results))
    text = "\n".join(bb.budget_lines(epochs, both))
    assert bb.LOCALVIT_STUDY.intro in text and study.intro in text
    for c in study.comparisons:
        assert c.claim in text
    assert study.intro not in "\n".join(bb.budget_lines(epochs, results))


def test_the_context_study_reads_arms_spelled_as_the_context_grid_spells_them():
    """Arm names with '+' (the context grid's cells) parse as arms; each comparison pairs its own
    two arms by seed, and the context runs never enter another study's tables."""
    results, epochs = _runs()
    study = bb.CONTEXT_STUDY
    top1 = {"f+conv+g": (81.7, 84.0), "conv": (82.2, 84.1), "f+conv": (82.2, 84.3)}
    slope = {"f+conv+g": 0.1, "conv": 0.05, "f+conv": 0.08}
    rows = [{"run_id": f"ctx-{arm}-{budget}-{seed}", "grid": study.grids[0], "status": "ok",
             "profile": "quick", "cell": f"arm={arm}, steps={budget}", "seed": seed,
             "test_top1": top1[arm][col] + slope[arm] * seed, "train.steps": steps}
            for col, (budget, steps) in enumerate((("profile", 756), ("double", 1512)))
            for arm in top1 for seed in range(3)]  # fmt: skip
    both = pd.concat([results, pd.DataFrame(rows)], ignore_index=True)
    mine = bb.effect_by_budget(both, study.comparisons, study.grids).set_index(
        ["comparison", "budget"]
    )
    assert mine.loc[("f+conv+g vs conv", "profile"), "Δ (pp)"] == pytest.approx(-0.45)
    assert mine.loc[("f+conv+g vs f+conv", "double"), "Δ (pp)"] == pytest.approx(-0.28)
    moved = mine.loc[("f+conv+g vs conv", "double"), "Δ − first budget's Δ"]
    assert moved == pytest.approx(0.4)
    assert set(mine["seeds"]) == {3}
    # LocalViT's tables are the same with or without the context study's runs
    pd.testing.assert_frame_equal(bb.effect_by_budget(both), bb.effect_by_budget(results))
    text = "\n".join(bb.budget_lines(epochs, both))
    assert study.intro in text and "f+conv+g vs f+conv" in text


@pytest.mark.parametrize("study", bb.STUDIES, ids=lambda s: s.grids[0])
def test_each_studys_profile_arms_are_the_claim_grids_cells_so_their_runs_are_reused(study):
    """A study's profile budget trains nothing new: each compared arm resolves, at the quick
    profile, to the very configuration (run id) of the cell its claim names in the claim's grid,
    so the runner takes those runs from the claim grid's table and the profile's Δ is the claims
    table's on the same seeds."""
    study_spec = load_spec(Path("ablations") / f"{study.grids[0]}.yaml", build_models=False)
    arm_ids = {
        run.axes_values[bb.ARM]: run.run_id
        for run in study_spec.expand("quick", seeds=[0])
        if run.axes_values[bb.BUDGET] == bb.FIRST_BUDGET
    }
    for c in study.comparisons:
        claim_spec = load_spec(Path("ablations") / f"{c.claim_grid}.yaml", build_models=False)
        (claim,) = [k for k in claim_spec.claims if k["text"] == c.claim]
        cell_ids = {run.cell: run.run_id for run in claim_spec.expand("quick", seeds=[0])}
        assert arm_ids[c.cell] == cell_ids[claim["cell"]], c.claim
        assert arm_ids[c.versus] == cell_ids[claim["versus"]], c.claim


def test_a_budget_of_one_seed_is_drawn_hollow_and_the_title_says_why():
    results, _ = _runs()
    results = _with_4x(results)
    effects = bb.effect_by_budget(results)
    ax = bb.plot_effect_by_budget(effects).axes[0]
    assert not any(line.get_markerfacecolor() == "white" for line in ax.lines)
    assert "hollow" not in ax.get_title()
    one = _with_4x(_runs()[0])
    one = one[~one["cell"].str.endswith("quadruple") | (one["seed"] == 0)]
    effects = bb.effect_by_budget(one)
    ax = bb.plot_effect_by_budget(effects).axes[0]
    hollow = [line for line in ax.lines if line.get_markerfacecolor() == "white"]
    alone = effects[effects["seeds"] == 1]
    assert len(alone) and len(hollow) == effects.loc[alone.index, "comparison"].nunique()
    assert sorted(float(v) for h in hollow for v in h.get_ydata()) == pytest.approx(
        sorted(alone["Δ (pp)"])
    )
    assert "hollow: one seed" in ax.get_title()
