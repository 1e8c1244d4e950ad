"""Statistics against scipy on known inputs, claim verdicts, figures and the report.

Why: every number in REPORT.md and the notebooks goes through these functions; a wrong
interval or p-value would silently turn an inconclusive claim into a verdict.
"""

from __future__ import annotations

import importlib.util
import math
import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from experiments.analysis import claims as cl
from experiments.analysis import figures as fg
from experiments.analysis import report
from experiments.analysis import stats as an
from experiments.analysis import sweeps as sw

ROOT = Path(__file__).resolve().parents[1]
FIXTURE = ROOT / "tests" / "fixtures" / "results"


@pytest.fixture(scope="module")
def results() -> pd.DataFrame:
    return an.load_results(FIXTURE)


@pytest.fixture(scope="module")
def epochs(results) -> pd.DataFrame:
    return an.load_epochs(FIXTURE, results=results)


def frame(cells: dict[str, list[float]], grid="p/g", baseline=None, profile="quick"):
    """A results table from {cell: [top-1 per seed]}; seeds are list positions."""
    baseline = baseline or next(iter(cells))
    rows = [
        {
            "run_id": f"{cell}-{seed}",
            "paper": grid.split("/")[0],
            "grid": grid,
            "cell": cell,
            "baseline_cell": baseline,
            "profile": profile,
            "seed": seed,
            "status": "ok",
            "error": "",
            "test_top1": value,
        }
        for cell, values in cells.items()
        for seed, value in enumerate(values)
    ]
    return pd.DataFrame(rows)


# ----------------------------------------------------------------------------- statistics


def test_t_interval_matches_scipy():
    x = np.array([85.1, 85.9, 84.7, 86.2, 85.5])
    lo, hi = an.t_interval(x, 0.95)
    expected = stats.t.interval(0.95, len(x) - 1, loc=x.mean(), scale=stats.sem(x))
    assert (lo, hi) == pytest.approx(expected)
    assert an.t_interval(x, 0.99)[0] < lo
    assert all(math.isnan(v) for v in an.t_interval([1.0]))
    assert an.t_interval([2.0, 2.0, 2.0]) == (2.0, 2.0)


def test_bootstrap_interval_is_deterministic_and_brackets_the_mean():
    x = [85.1, 85.9, 84.7, 86.2, 85.5, 85.0]
    lo, hi = an.bootstrap_interval(x)
    assert lo < np.mean(x) < hi
    assert min(x) <= lo and hi <= max(x)
    assert an.bootstrap_interval(x) == (lo, hi)
    assert an.interval(x, "bootstrap") == (lo, hi)
    with pytest.raises(ValueError, match="ci must be"):
        an.interval(x, "normal")


def test_iqm_is_scipy_trim_mean():
    x = [1.0, 2.0, 3.0, 4.0, 100.0, 5.0, 6.0, 7.0]
    assert an.iqm(x) == pytest.approx(stats.trim_mean(x, 0.25))


def test_compare_paired_t_test_matches_scipy():
    a = pd.Series([85.1, 85.9, 84.7, 86.2], index=[0, 1, 2, 3])
    b = pd.Series([84.0, 85.6, 84.9, 85.1, 99.0], index=[0, 1, 2, 3, 4])  # seed 4 has no pair
    out = an.compare(a, b)
    diff = a.to_numpy() - b.loc[[0, 1, 2, 3]].to_numpy()
    assert out["n_pairs"] == 4
    assert out["test"] == "t"
    assert out["delta"] == pytest.approx(diff.mean())
    assert out["p"] == pytest.approx(stats.ttest_rel(a, b.loc[[0, 1, 2, 3]]).pvalue)
    expected = stats.t.interval(0.95, 3, loc=diff.mean(), scale=stats.sem(diff))
    assert (out["delta_low"], out["delta_high"]) == pytest.approx(expected)
    assert out["p_improve"] == pytest.approx(0.75)


def test_compare_switches_to_wilcoxon_from_six_pairs():
    rng = np.random.default_rng(0)
    b = pd.Series(rng.normal(80, 1, 8))
    a = b + rng.normal(0.5, 0.4, 8)
    out = an.compare(a, b)
    assert out["test"] == "wilcoxon"
    assert out["p"] == pytest.approx(stats.wilcoxon(a, b).pvalue)
    assert an.compare(a.iloc[:5], b.iloc[:5])["test"] == "t"


def test_compare_degenerate_inputs():
    same = pd.Series([80.0, 81.0, 82.0])
    out = an.compare(same, same)
    assert out["delta"] == 0 and out["p"] == 1.0
    one = an.compare(pd.Series([1.0]), pd.Series([0.0]))
    assert one["n_pairs"] == 1 and math.isnan(one["p"]) and math.isnan(one["delta_low"])
    none = an.compare(pd.Series([1.0], index=[0]), pd.Series([0.0], index=[1]))
    assert none["n_pairs"] == 0 and math.isnan(none["delta"])


def test_holm_known_example():
    # sorted 0.005, 0.01, 0.03, 0.04 times 4, 3, 2, 1 -> 0.02, 0.03, 0.06, 0.04 -> running max
    assert an.holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert an.holm([0.5, 0.6]) == pytest.approx([1.0, 1.0])
    out = an.holm([0.01, float("nan"), 0.04])
    assert out[0] == pytest.approx(0.02) and math.isnan(out[1]) and out[2] == pytest.approx(0.04)
    assert an.holm([]).size == 0


def test_prob_improvement_hand_example():
    # pairs: 1>0 win, 2=2 tie, 3<5 loss, 4>3 win -> (1 + 0.5 + 0 + 1) / 4
    assert an.prob_improvement([1, 2, 3, 4], [0, 2, 5, 3]) == pytest.approx(0.625)
    # all pairs: a=[1, 3] vs b=[2]: 1<2 loss, 3>2 win -> 0.5; with a tie 2=2 -> 0.5 more
    assert an.prob_improvement([1, 3], [2], paired=False) == pytest.approx(0.5)
    assert an.prob_improvement([2, 3], [2], paired=False) == pytest.approx(0.75)
    with pytest.raises(ValueError):
        an.prob_improvement([1, 2], [1])


def test_pareto_mask():
    macs = [1.0, 2.0, 2.0, 3.0, 4.0]
    top1 = [70.0, 80.0, 75.0, 79.0, 85.0]
    assert an.pareto_mask(macs, top1).tolist() == [True, True, False, False, True]
    throughput = [100.0, 90.0, 50.0]
    assert an.pareto_mask(throughput, [70, 80, 75], x_lower=False).tolist() == [True, True, False]


# ----------------------------------------------------------------------------- loading and tables


def test_load_results_reads_fixture_and_counts_statuses(results):
    assert set(results["grid"]) == {"localvit/layers", "efficientmod/fusion"}
    assert results["run_id"].map(type).eq(str).all()
    counts = an.status_counts(results).set_index("cell")
    assert counts.loc["layers=mid", "failed"] == 1
    assert counts.loc["layers=low+mid", "diverged"] == 1
    assert counts["total"].sum() == len(results) == 24
    assert an.load_results(FIXTURE / "localvit" / "*.csv")["grid"].unique().tolist() == [
        "localvit/layers"
    ]
    assert len(an.load_results(FIXTURE, profile="paper")) == 0
    empty = an.load_results(FIXTURE / "missing")
    assert empty.empty and {"grid", "cell", "status"} <= set(empty.columns)


def test_load_epochs_keeps_ok_runs_only(results, epochs):
    ok = set(results.loc[results["status"] == "ok", "run_id"])
    assert set(epochs["run_id"]) == ok
    assert set(epochs["profile"]) == {"quick"}


def test_summary_table_on_fixture(results):
    summary = an.summary_table(results).set_index("cell")
    assert summary.loc["layers=none", "n"] == 3
    assert summary.loc["layers=mid", "n"] == 2 and summary.loc["layers=mid", "failed"] == 1
    assert math.isnan(summary.loc["layers=none", "delta"])  # the baseline has no delta
    low = results[(results["cell"] == "layers=low")].set_index("seed")["test_top1"]
    none = results[(results["cell"] == "layers=none")].set_index("seed")["test_top1"]
    assert summary.loc["layers=low", "delta"] == pytest.approx((low - none).mean())
    layers = summary[summary["grid"] == "localvit/layers"]
    assert (layers["p_holm"].dropna() >= layers["p"].dropna()).all()
    assert summary.loc["fusion=mul", "paper_value"] == 80.5
    assert summary.loc["fusion=sum", "paper_delta"] == pytest.approx(-1.0)
    table = an.format_summary(summary.reset_index())
    assert "Δ vs baseline (pp)" in table and table["cell"].iloc[0].endswith("(baseline)")
    assert "2 (1 failed)" in set(table["n"])


def test_summary_with_iqm_and_bootstrap(results):
    rows = results[results["grid"] == "localvit/layers"]
    stats_ = an.cell_stats(rows, ci="bootstrap", with_iqm=True)
    assert {"iqm", "ci_low", "ci_high"} <= set(stats_.columns)
    full = stats_[stats_["n"] == 3]
    assert ((full["ci_low"] <= full["mean"]) & (full["mean"] <= full["ci_high"])).all()


def test_cell_order_puts_baseline_first():
    df = frame({"b=2": [1, 2], "b=1": [1, 2], "b=3": [1, 2]}, baseline="b=1")
    assert an.cell_order(df, "p/g") == ["b=1", "b=2", "b=3"]


def test_check_claims_on_fixture(results):
    verdicts = cl.check_claims(results)
    by_claim = verdicts.set_index(["grid", "cell", "versus_cell"])["verdict"]
    assert by_claim[("localvit/layers", "layers=low", "layers=high")] == "agrees"
    assert by_claim[("localvit/layers", "layers=all", "layers=none")] == "agrees"
    # raw p 0.011, but EfficientMod makes 11 claims: Holm across them leaves it undecided
    assert by_claim[("efficientmod/fusion", "fusion=mul", "fusion=sum")] == "inconclusive"
    assert by_claim[("localvit/ffn", "ffn=locality, expansion=4", "ffn=mlp, expansion=4")] == (
        "not run"
    )
    assert set(verdicts["verdict"]) == {"agrees", "inconclusive", "not run"}
    fusion = verdicts[verdicts["grid"] == "efficientmod/fusion"].iloc[0]
    assert fusion["p_test"] < 0.05 <= fusion["p_adjusted"] and fusion["family_size"] == 11
    assert (fusion["paper_value"], fusion["paper_versus_value"]) == (80.5, 79.5)
    shown = cl.format_claims(verdicts)
    assert len(shown) == len(verdicts) and "verdict" in shown


def test_check_claims_constructed_cases():
    claims = pd.DataFrame(
        {
            "paper": "p",
            "grid": "p/g",
            "claim": ["b beats a", "a beats b", "c beats a", "d beats a"],
            "cell": ["x=b", "x=a", "x=c", "x=d"],
            "versus_cell": ["x=a", "x=b", "x=a", "x=a"],
            "expected_sign": [1, 1, 1, 1],
            **{k: "" for k in ["paper_table", "paper_model", "versus_table", "versus_model"]},
            "source": "",
            "note": "",
        }
    )
    df = frame(
        {
            "x=a": [80.0, 81.0, 79.5, 80.5],
            "x=b": [81.0, 82.1, 80.4, 81.6],  # about +1 on every seed
            "x=c": [80.5, 80.6, 79.9, 80.4],  # mixed signs
        }
    )
    verdicts = cl.check_claims(df, claims, an.load_paper_results()).set_index("claim")
    assert verdicts.loc["b beats a", "verdict"] == "agrees"
    assert verdicts.loc["a beats b", "verdict"] == "disagrees"
    assert verdicts.loc["c beats a", "verdict"] == "inconclusive"
    assert verdicts.loc["d beats a", "verdict"] == "not run"
    # a diverged cell is not run either: no ok runs to compare
    df.loc[df["cell"] == "x=b", "status"] = "diverged"
    assert cl.check_claims(df, claims).set_index("claim").loc["b beats a", "verdict"] == "not run"


def test_profiles_are_kept_apart():
    quick = frame({"x=a": [80, 81, 82], "x=b": [81, 82, 83]}, profile="quick")
    paper = frame({"x=a": [70, 71, 72], "x=b": [60, 61, 62]}, profile="paper")
    both = pd.concat([quick, paper], ignore_index=True)
    deltas = an.paired_deltas(both).set_index("profile")["delta"]
    assert deltas["quick"] == pytest.approx(1.0) and deltas["paper"] == pytest.approx(-10.0)


def test_reference_files_are_consistent():
    claims = an.load_claims()
    paper = an.load_paper_results()
    assert set(claims["expected_sign"]) <= {1, -1, 0}  # 0: an equivalence claim
    keys = set(zip(paper["paper"], paper["table"], paper["model"], strict=False))
    for c in claims.itertuples():
        for table, model in [(c.paper_table, c.paper_model), (c.versus_table, c.versus_model)]:
            assert bool(table) == bool(model), c.claim
            if table:
                assert (c.paper, table, model) in keys, f"{c.claim}: no row {table}/{model}"
        assert c.grid.startswith(c.paper + "/")
        for cell in (c.cell, c.versus_cell):
            # "key=value" parts joined by ", " with bare keys (the last dotted part of an axis)
            for part in re.split(r", (?=[a-z_]+=)", cell):
                assert re.fullmatch(r"[a-z_]+=\S.*", part), cell
    assert len(paper) > 40 and paper["value"].between(50, 100).all()


def test_planned_grids_union(results):
    grids = an.planned_grids("localvit", results, an.load_claims(), ROOT / "ablations")
    assert "localvit/layers" in grids and "localvit/ffn" in grids
    assert all(g.startswith("localvit/") for g in grids)


def test_sweeps(tmp_path):
    sweeps = sw.load_sweeps(FIXTURE / "sweeps")
    trials = sweeps["localvit_lr"]
    assert sw.sweep_objectives(trials) == ["value"]
    assert sw.sweep_directions(trials) == ["maximize"]
    best = sw.best_trials(trials, k=3)
    assert len(best) == 3 and best["value"].is_monotonic_decreasing
    assert "params_lr" in best
    assert sw.load_sweeps(tmp_path / "none") == {}
    multi = pd.DataFrame({"number": [0], "values_1": [2.0], "values_0": [1.0], "state": "COMPLETE"})
    assert sw.sweep_objectives(multi) == ["values_0", "values_1"]
    assert sw.sweep_labels(multi) == ["values_0", "values_1"]
    multi["user_attrs_objectives"] = "best_val_top1;macs"
    assert sw.sweep_labels(multi) == ["best_val_top1", "macs"]


# ----------------------------------------------------------------------------- figures, report


def _nonempty(paths):
    return all(Path(p).exists() and Path(p).stat().st_size > 1000 for p in paths)


def test_grid_figures_are_written(tmp_path, results, epochs):
    made = fg.grid_figures(results, epochs, "localvit/layers", tmp_path, profile="quick")
    assert set(made) == {"cells", "deltas", "cost", "curves"}
    for paths in made.values():
        assert [p.suffix for p in paths] == [".png", ".svg"] and _nonempty(paths)
        assert paths[0].name.startswith("layers_quick_")
    svg = made["cells"][1].read_text()
    assert "<dc:date>" not in svg and "test top-1 (%)" in svg


def test_other_figures_are_written(tmp_path, results):
    verdicts = cl.check_claims(results)
    trials = sw.load_sweeps(FIXTURE / "sweeps")["localvit_lr"]
    figures = {
        "claims": fg.plot_claims(verdicts),
        "claims_empty": fg.plot_claims(verdicts.assign(verdict="not run")),
        "sweep": fg.plot_sweep(trials, "localvit_lr"),
        "sweep_params": fg.plot_sweep_params(trials, "localvit_lr"),
        "no_ok_runs": fg.plot_cells(results.assign(status="failed"), "localvit/layers"),
        "no_deltas": fg.plot_deltas(results.assign(status="failed"), "localvit/layers"),
        "no_cost": fg.plot_cost(results.drop(columns=["macs", "params"]), "localvit/layers"),
    }
    for name, fig in figures.items():
        assert _nonempty(fg.save(fig, tmp_path, name, formats=("png",))), name


def test_curves_show_every_cell(results, epochs):
    many = pd.concat(
        [epochs[epochs["grid"] == "localvit/layers"].assign(cell=f"c{k}") for k in range(9)]
    )
    fig = fg.plot_curves(many, "localvit/layers")
    labels = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert labels == [f"c{k}" for k in range(9)]


def test_claims_figure_has_a_panel_pair_per_paper(results):
    fig = fg.plot_claims(cl.check_claims(results))
    titles = [ax.get_title(loc="left") for ax in fig.axes]
    assert sum(t.startswith("efficientmod:") for t in titles) == 1
    assert sum(t.startswith("localvit:") for t in titles) == 1
    assert len(fig.axes) == 4  # ours and the paper's, per paper: never one shared x-axis


def test_sweep_figures_orientation_pruned_and_categories():
    trials = pd.DataFrame(
        {
            "number": range(6),
            "values_0": [76.0, 77.0, 75.5, 76.5, 77.2, float("nan")],
            "values_1": [12e6, 15e6, 9e6, 11e6, 17e6, float("nan")],
            "params_model.flag": [True, False, True, False, True, False],
            "params_model.expansion": [4, 6, 4, 2, 6, 4],
            "user_attrs_last_report": [float("nan")] * 5 + [0.70],
            "state": ["COMPLETE"] * 5 + ["PRUNED"],
            "user_attrs_directions": "maximize;minimize",
            "user_attrs_objectives": "best_val_top1;macs",
        }
    )
    front = fg.plot_sweep(trials, "s")
    ax = front.axes[0]
    assert ax.get_xlabel().startswith("macs") and ax.get_ylabel().startswith("best_val_top1")
    params = fg.plot_sweep_params(trials, "s")
    flag_ax, expansion_ax = params.axes
    assert [t.get_text() for t in flag_ax.get_xticklabels()] == ["False", "True"]
    ticks = expansion_ax.get_xticks()
    assert np.allclose(ticks, np.round(ticks))  # integer ticks for an integer parameter
    single = trials.rename(columns={"values_0": "value"}).drop(columns="values_1")
    single["user_attrs_directions"], single["user_attrs_objectives"] = "maximize", "val"
    fig = fg.plot_sweep(single, "s1")
    assert any("pruned" in t.get_text() for t in fig.axes[0].get_legend().get_texts())


def test_figures_refuse_mixed_profiles(results):
    mixed = pd.concat([results, results.assign(profile="paper")], ignore_index=True)
    with pytest.raises(ValueError, match="several profiles"):
        fg.plot_cells(mixed, "localvit/layers")
    assert fg.plot_cells(mixed, "localvit/layers", profile="paper") is not None


def test_report_without_notebooks(tmp_path):
    results_dir = tmp_path / "results"
    shutil.copytree(FIXTURE, results_dir)
    assert report.main(["--results", str(results_dir), "--no-notebooks"]) == 0
    text = (results_dir / "REPORT.md").read_text()
    assert "## Did each paper's claim hold here?" in text
    assert "### localvit/layers · profile quick" in text
    assert "### efficientmod/context\n\nnot run yet" in text
    assert "agrees" in text and "not run" in text and "## Sweeps" in text
    links = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", text)
    assert links and all((results_dir / link).stat().st_size > 0 for link in links)
    assert str(tmp_path) not in text and str(ROOT) not in text
    before = {p: p.read_bytes() for p in results_dir.rglob("*") if p.is_file()}
    report.main(["--results", str(results_dir), "--no-notebooks"])
    after = {p: p.read_bytes() for p in results_dir.rglob("*") if p.is_file()}
    assert before == after, "rebuilding from unchanged tables must change nothing"


def test_report_keeps_the_repositorys_own_claims_apart(tmp_path):
    """Calibration claims (bf16 vs fp32) are not a paper's: their own table, their own family."""
    results_dir = tmp_path / "results"
    shutil.copytree(FIXTURE, results_dir)
    (results_dir / "calibration").mkdir(exist_ok=True)
    shutil.copy(ROOT / "results" / "calibration" / "precision.csv", results_dir / "calibration")
    report.main(["--results", str(results_dir), "--no-notebooks", "--no-figures"])
    text = (results_dir / "REPORT.md").read_text()
    papers, own = text.split("## Did each paper's claim hold here?")[1].split(
        "## Did the repository's own choices hold?"
    )
    claim = "bf16 autocast keeps the accuracy of fp32 (LocalViT)"
    assert claim not in papers and claim in own.split("\n## ")[0]
    assert "p (Holm, family)" in own


def test_report_names_cells_that_share_runs(tmp_path):
    results_dir = tmp_path / "results"
    shutil.copytree(FIXTURE, results_dir)
    table = results_dir / "localvit" / "layers.csv"
    df = pd.read_csv(table)
    df["shared_from"] = ""
    df.loc[df["cell"] == "layers=all", "shared_from"] = "localvit/ffn"
    df.to_csv(table, index=False)
    report.main(["--results", str(results_dir), "--no-notebooks", "--no-figures"])
    text = (results_dir / "REPORT.md").read_text()
    assert "- cell layers=all: 3 run(s) shared with localvit/ffn" in text


def test_markdown_table_without_tabulate(monkeypatch):
    def missing(*args, **kwargs):
        raise ImportError("tabulate")

    monkeypatch.setattr(pd.DataFrame, "to_markdown", missing)
    text = report.markdown_table(pd.DataFrame({"cell": ["a|b"], "n": [3]}))
    assert text.splitlines()[:2] == ["| cell | n |", "|---|---|"] and "a\\|b" in text


def test_fixture_is_what_its_script_writes(tmp_path):
    spec = importlib.util.spec_from_file_location(
        "make_fixture", FIXTURE.parent / "make_fixture.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.main(tmp_path)
    for path in tmp_path.rglob("*.csv"):
        committed = FIXTURE / path.relative_to(tmp_path)
        assert path.read_text() == committed.read_text(), committed


def test_budget_gains_per_cell():
    from experiments.analysis import budget

    curve = lambda run, cell, vals: [  # noqa: E731
        {"run_id": run, "grid": "p/g", "cell": cell, "seed": 0, "epoch": e, "val_top1": v}
        for e, v in enumerate(vals)
    ]
    epochs = pd.DataFrame(curve("a", "x=a", [50, 70, 71]) + curve("b", "x=b", [50, 60, 61.2]))
    # run b is shared: its curve is stored once, its row sits in two grids
    results = pd.DataFrame(
        [
            {
                "run_id": "a",
                "grid": "p/g",
                "cell": "x=a",
                "profile": "quick",
                "seed": 0,
                "status": "ok",
            },
            {
                "run_id": "b",
                "grid": "p/g",
                "cell": "x=b",
                "profile": "quick",
                "seed": 0,
                "status": "ok",
            },
            {
                "run_id": "b",
                "grid": "p/h",
                "cell": "y=b",
                "profile": "quick",
                "seed": 0,
                "status": "ok",
            },
        ]
    )
    cells = budget.cell_gains(epochs, results).set_index(["grid", "cell"])
    assert cells.loc[("p/g", "x=a"), "last_gain"] == pytest.approx(1.0)
    assert cells.loc[("p/h", "y=b"), "last_gain"] == pytest.approx(1.2)
    assert not cells["stable"].any()
    table = budget.grid_budget(epochs, results).set_index("grid")
    assert table.loc["p/g", "still learning"] == 2 and table.loc["p/g", "largest (pp)"] == 1.2


def test_budget_gain_spans_the_last_validation_interval():
    """A run validated every 2nd epoch: its gain is between the last two validations (the
    epochs without validation are skipped, not read as a drop)."""
    from experiments.analysis import budget

    vals = [None, 60.0, None, 70.0, None, 70.3]
    epochs = pd.DataFrame([{"run_id": "a", "epoch": e, "val_top1": v} for e, v in enumerate(vals)])
    results = pd.DataFrame(
        [
            {
                "run_id": "a",
                "grid": "p/g",
                "cell": "x=a",
                "profile": "quick",
                "seed": 0,
                "status": "ok",
            }
        ]
    )
    gains = budget.last_epoch_gains(epochs, results)
    assert gains.loc[0, "last_gain"] == pytest.approx(0.3)
    assert gains.loc[0, "every"] == 2 and gains.loc[0, "epochs"] == 6
    table = budget.grid_budget(epochs, results)
    assert table.loc[0, "still learning"] == 0 and table.loc[0, "val every"] == 2


def test_curves_skip_epochs_without_validation(epochs):
    """A profile validating every 2nd epoch: the curve joins the validated epochs only."""
    rows = epochs[epochs["grid"] == "localvit/layers"].copy()
    rows.loc[rows["epoch"] % 2 == 0, "val_top1"] = float("nan")
    fig = fg.plot_curves(rows, "localvit/layers")
    xs = {x for line in fig.axes[0].get_lines() for x in line.get_xdata()}
    assert xs and all(int(x) % 2 == 1 for x in xs)


def test_report_names_the_sweep_a_grid_was_tuned_by(tmp_path):
    from experiments.analysis.report import tuned_by

    (tmp_path / "p").mkdir()
    (tmp_path / "p" / "tuned.yaml").write_text("sweep: p_lr\naxes: {model.depth: [1, 2]}\n")
    (tmp_path / "p" / "plain.yaml").write_text("axes: {model.depth: [1, 2]}\n")
    assert tuned_by("p/tuned", tmp_path) == "p_lr"
    assert tuned_by("p/plain", tmp_path) is None and tuned_by("p/missing", tmp_path) is None


def test_claims_figure_keeps_profiles_apart(results):
    """Two profiles of one paper are two families: two panel rows, titled by profile."""
    both = pd.concat([results, results.assign(profile="pilot")], ignore_index=True)
    fig = fg.plot_claims(cl.check_claims(both))
    titles = [ax.get_title(loc="left") for ax in fig.axes if ax.get_title(loc="left")]
    assert sum(t.startswith("localvit · pilot:") for t in titles) == 1
    assert sum(t.startswith("localvit · quick:") for t in titles) == 1
    assert len(fig.axes) == 8


def test_report_says_where_the_seed_noise_comes_from(tmp_path, recwarn):
    """The noise study's summary becomes a report section; it is not read as a grid's table."""
    results_dir = tmp_path / "results"
    shutil.copytree(FIXTURE, results_dir)
    (results_dir / "noise").mkdir()
    common = {"paper": "casvit", "seeds": 30, "delta_test": 0.1, "sd_test": 0.7,
              "per_image_sd_test": 0.24, "sd_holdout": 0.6, "sd_fit_64k": 0.65}  # fmt: skip
    rows = [
        {**common, "grid": "local", "cell": "local=true", "versus": "local=false",
         "bn": "running averages", "share_sampling_10k": 0.11, "seeds_ratio_64k": 0.91,
         "compute_ratio_64k": 1.16},
        {**common, "grid": "phi", "cell": "phi=spatial", "versus": "phi=channel",
         "bn": "running averages", "share_sampling_10k": 0.26, "seeds_ratio_64k": 0.78,
         "compute_ratio_64k": 0.99},
        {**common, "grid": "phi", "cell": "phi=spatial", "versus": "phi=channel",
         "bn": "precise, 78 batches"},
    ]  # fmt: skip
    pd.DataFrame(rows).to_csv(results_dir / "noise" / "summary.csv", index=False)
    report.main(["--results", str(results_dir), "--no-notebooks", "--no-figures"])
    text = (results_dir / "REPORT.md").read_text()
    section = text.split("## Where does the seed noise come from?")[1].split("\n## ")[0]
    assert "Test sampling is 11%-26% of the variance" in section
    assert "0.99-1.16x the compute" in section and "does not pay for itself" in section
    assert section.count("| casvit/") == 3 and "precise, 78 batches" in section
    assert not [w for w in recwarn if "noise" in str(w.message)]  # not a table, not tried


def test_data_spread_pairs_each_arm_by_seed_and_compares_variances():
    from experiments.analysis import noise

    rng = np.random.default_rng(0)
    rows = []
    for arm, sd in (("profile", 0.8), ("every_image", 0.3)):
        for seed in range(30):
            base = 85 + rng.normal(0, 0.5)
            for local, shift in (("true", 0.2 + rng.normal(0, sd)), ("false", 0.0)):
                rows.append({"grid": "calibration/data", "status": "ok", "profile": "quick",
                             "cell": f"local={local}, images={arm}", "seed": seed,
                             "test_top1": base + shift})  # fmt: skip
    rows.append({**rows[0], "seed": 99})  # no partner: not paired
    rows.append({**rows[1], "profile": "pilot"})  # another profile: not read
    table = noise.spread(pd.DataFrame(rows))
    assert table["images"].tolist() == ["profile", "every_image"]
    assert table["seeds"].tolist() == [30, 30]
    first = pd.DataFrame(rows[:60:2]).test_top1.to_numpy() - pd.DataFrame(rows[1:60:2]).test_top1
    assert table["sd of paired Δ"].iloc[0] == pytest.approx(np.std(first, ddof=1))
    assert table["variance ratio"].iloc[0] == 1 and table["variance ratio"].iloc[1] < 0.5
    assert table["p (F, two-sided)"].iloc[1] < 0.01


def test_spread_prices_each_arm_by_the_seeds_and_run_time_its_claim_would_need():
    from experiments.analysis import noise, projection

    z = np.random.default_rng(1).normal(size=12)
    z = (z - z.mean()) / z.std(ddof=1)  # paired differences of mean 0.3 and sd exactly `sd`
    rows = []
    # the double arm's own times (a slower host) are not what it is priced at: its steps are
    for arm, sd, steps, run_s in (("profile", 0.8, 756, 200.0), ("double", 0.4, 1512, 900.0)):
        for seed in range(12):
            for local, shift in (("true", 0.3 + sd * z[seed]), ("false", 0.0)):
                rows.append({"grid": "calibration/steps", "status": "ok", "profile": "quick",
                             "cell": f"local={local}, steps={arm}", "seed": seed,
                             "test_top1": 85 + shift, "run_s": run_s, "wall_s": run_s,
                             "threads": 2, "train.steps": steps})  # fmt: skip
    claim = {"margin": 0.5, "level": 0.007, "test": "difference"}
    table = noise.spread(pd.DataFrame(rows), noise.STEPS_GRID, claim=claim)
    assert table["steps"].tolist() == ["profile", "double"]
    assert table["optimizer steps"].tolist() == [756, 1512]
    assert table["core-min a run"].tolist() == pytest.approx([400 / 60, 800 / 60])
    for r in table.to_dict("records"):
        n = projection.seeds_to_decide(r["Δ (pp)"], r["sd of paired Δ"], 0.5, 0.007, "difference")
        assert r["seeds to decide"] == n
        # n seeds of two cells, each run that many core-minutes, on a 2-core machine
        assert r["2-core hours to decide"] == pytest.approx(n * 2 * r["core-min a run"] / 60 / 2)
    assert table["sd of paired Δ"].tolist() == pytest.approx([0.8, 0.4])
    # the same mean difference in both arms: the budget does not move the claim
    assert table["Δ − first arm's Δ"].tolist() == pytest.approx([0, 0], abs=1e-9)
    assert table["p (Welch)"].tolist() == pytest.approx([1, 1])
    # a quarter of the variance at twice the run time: decided for less compute
    assert table["variance ratio"].iloc[1] == pytest.approx(0.25)
    assert table["2-core hours to decide"].iloc[1] < table["2-core hours to decide"].iloc[0]
    # no claim given: no prices
    assert "seeds to decide" not in noise.spread(pd.DataFrame(rows), noise.STEPS_GRID)
    # a budget that moves the claim's effect by 1 pp is seen to
    moved = pd.DataFrame(rows)
    moved.loc[moved["cell"] == "local=true, steps=double", "test_top1"] += 1.0
    shifted = noise.spread(moved, noise.STEPS_GRID)
    assert shifted["Δ − first arm's Δ"].iloc[1] == pytest.approx(1.0)
    assert shifted["p (Welch)"].iloc[1] < 0.01


def test_report_sets_the_steps_calibration_beside_the_data_one(tmp_path):
    """Each calibration grid of seed noise gets its own table in the noise section, its arms
    named by the axis it varies; a grid not run adds nothing."""
    results_dir = tmp_path / "results"
    shutil.copytree(FIXTURE, results_dir)
    template = pd.read_csv(next((results_dir / "localvit").glob("*.csv"))).iloc[0].to_dict()
    rows = []
    for arm in ("profile", "double"):
        for seed in range(4):
            for local in ("true", "false"):
                rows.append({**template, "grid": "calibration/steps", "paper": "calibration",
                             "table": "steps", "cell": f"local={local}, steps={arm}",
                             "seed": seed, "profile": "quick", "status": "ok",
                             "test_top1": 85 + 0.1 * seed + (local == "true") * 0.3 * (seed % 2)})  # fmt: skip
    (results_dir / "calibration").mkdir()
    pd.DataFrame(rows).to_csv(results_dir / "calibration" / "steps.csv", index=False)
    report.main(["--results", str(results_dir), "--no-notebooks", "--no-figures"])
    text = (results_dir / "REPORT.md").read_text()
    section = text.split("## Where does the seed noise come from?")[1].split("\n## ")[0]
    assert "A longer or shorter schedule (`ablations/calibration/steps.yaml`)" in section
    assert "| steps " in section and "| double " in section and "| profile " in section
    assert "Fresher training data" not in section


def test_report_sets_the_protocol_floor_beside_the_target(tmp_path):
    """The compute section ends with the present protocol's floor per paper against the
    campaign's target, one row per paper of a profile with a seed schedule."""
    results_dir = tmp_path / "results"
    shutil.copytree(FIXTURE, results_dir)
    report.main(["--results", str(results_dir), "--no-notebooks", "--no-figures"])
    text = (results_dir / "REPORT.md").read_text()
    section = text.split("### What would the 90-minute target take?")[1].split("\n## ")[0]
    rows = [line for line in section.splitlines() if line.startswith("| quick ")]
    assert [r.split("|")[2].strip() for r in rows] == ["efficientmod", "localvit"]
    assert "runs x cheaper" in section and "hours at margin 1 pp" in section
