"""Each retrained claim read again at the longest budget its cells ran: the verdict there, and
whether the budget moved the effect."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from experiments.analysis import budget_bias as bb
from experiments.analysis import claims as cl
from experiments.analysis import longest_budget as lb
from experiments.analysis.stats import load_claims

GRID = "calibration/toy_budget"
# per arm: test top-1 at 1x, 2x and 8x. "slow" catches "fast" up by 8x; "twin" is "fast" plus a
# constant 0.2 pp everywhere
TOP1 = {"fast": (85.0, 86.0, 87.0), "slow": (81.0, 84.0, 87.0), "twin": (85.2, 86.2, 87.2)}
BUDGETS = (("profile", 756), ("double", 1512), ("octuple", 6048))
STUDY = bb.BudgetStudy(
    (GRID,),
    (
        bb.BiasComparison("toy/speed", "fast beats slow", "fast", "slow"),
        bb.BiasComparison("toy/speed", "twin matches fast", "twin", "fast"),
    ),
    "a toy study",
)
CLAIMS = pd.DataFrame(
    [
        {"paper": "toy", "grid": "toy/speed", "claim": "fast beats slow", "cell": "x",
         "versus_cell": "y", "expect": "better", "expected_sign": 1, "margin": 0.5},
        {"paper": "toy", "grid": "toy/speed", "claim": "twin matches fast", "cell": "x",
         "versus_cell": "y", "expect": "equivalent", "expected_sign": 0, "margin": 0.5},
    ]
)  # fmt: skip


def _runs(seeds: int = 6, noise: float = 0.15, budgets=BUDGETS) -> pd.DataFrame:
    rng = np.random.default_rng(1)
    rows = []
    for col, (budget, steps) in enumerate(budgets):
        for seed in range(seeds):
            shared = rng.normal(0, noise)  # what a seed does to every arm alike
            for arm, top1 in TOP1.items():
                rows.append({"run_id": f"{arm}-{budget}-{seed}", "grid": GRID, "status": "ok",
                             "profile": "quick", "cell": f"arm={arm}, steps={budget}",
                             "seed": seed, "train.steps": steps,
                             "test_top1": top1[col] + shared + rng.normal(0, noise)})  # fmt: skip
    return pd.DataFrame(rows)


def _diff(results: pd.DataFrame, cell: str, versus: str, budget: str) -> np.ndarray:
    wide = results[results["cell"].str.endswith(f"steps={budget}")].pivot_table(
        index="seed", columns="cell", values="test_top1"
    )
    return (wide[f"arm={cell}, steps={budget}"] - wide[f"arm={versus}, steps={budget}"]).to_numpy()


def test_each_claim_is_read_alone_at_the_shortest_and_the_longest_budget():
    results = _runs()
    verdicts = pd.DataFrame(
        [{"grid": "toy/speed", "claim": "fast beats slow", "profile": "quick",
          "verdict": "agrees"}]
    )  # fmt: skip
    table = lb.longest_budget_readings(results, verdicts, CLAIMS, studies=(STUDY,)).set_index(
        "comparison"
    )
    assert table.index.tolist() == ["fast vs slow", "twin vs fast"]
    speed = table.loc["fast vs slow"]
    # the claims table's own verdict is shown as it is, and only where it exists
    assert speed["claims table"] == "agrees"
    assert table.loc["twin vs fast", "claims table"] == ""
    assert (speed["shortest: steps"], speed["longest: steps"]) == (756, 6048)
    for label, budget in (("shortest", "profile"), ("longest", "octuple")):
        diff = _diff(results, "fast", "slow", budget)
        alone = cl.read_alone(diff, "better", 1, 0.5)
        assert speed[f"{label}: Δ"] == pytest.approx(diff.mean())
        assert speed[f"{label}: seeds"] == 6
        assert speed[f"{label}: reads"] == alone["verdict"]
        assert speed[f"{label}: CI low"] == pytest.approx(alone["ci_low"])
    # 4 pp ahead at 1x, level at 8x: the claim agreed on the budget, not on the architecture
    assert (speed["shortest: reads"], speed["longest: reads"]) == ("agrees", "equivalent")
    assert speed["p (Welch), Δ moved"] < 0.001
    assert speed["claim holds there"] == "no"
    # a constant 0.2 pp: equivalent at every budget, and the budget did not move it
    twin = table.loc["twin vs fast"]
    assert (twin["shortest: reads"], twin["longest: reads"]) == ("equivalent", "equivalent")
    assert twin["p (Welch), Δ moved"] > 0.05
    assert twin["claim holds there"] == "yes"


def test_a_reading_alone_is_the_claims_tables_verdict_for_a_family_of_one():
    rng = np.random.default_rng(3)
    for expect, sign, shift in (("better", 1, 0.8), ("equivalent", 0, 0.1), ("not_worse", 1, -0.2)):
        a = 80 + rng.normal(0, 0.3, 8)
        b = a - shift + rng.normal(0, 0.3, 8)
        df = pd.DataFrame(
            [{"paper": "toy", "grid": "toy/g", "profile": "quick", "cell": c, "seed": s,
              "status": "ok", "test_top1": v}
             for c, values in (("x", a), ("y", b)) for s, v in enumerate(values)]
        )  # fmt: skip
        claims = CLAIMS.iloc[:1].assign(
            grid="toy/g", cell="x", versus_cell="y", expect=expect, expected_sign=sign,
            paper_table="", paper_model="", versus_table="", versus_model="", source="", note="",
        )  # fmt: skip
        table = cl.check_claims(df, claims, pd.DataFrame(columns=["paper", "table", "model"]))
        alone = cl.read_alone(a - b, expect, sign, 0.5)
        assert alone["verdict"] == table["verdict"].item()
        assert alone["ci_low"] == pytest.approx(table["ci_low"].item())
        assert alone["ci_level"] == pytest.approx(table["ci_level"].item())


def test_a_comparison_needs_two_budgets_and_the_lines_say_which_readings_changed():
    one_budget = _runs(budgets=BUDGETS[:1])
    assert lb.longest_budget_readings(one_budget, None, CLAIMS, studies=(STUDY,)).empty
    assert lb.longest_budget_lines(one_budget, None, CLAIMS, studies=(STUDY,)) == []
    lines = lb.longest_budget_lines(_runs(), None, CLAIMS, studies=(STUDY,))
    assert "Of 2 claims, 1 read differently" in lines[0]
    assert "fast vs slow (toy/speed): agrees → equivalent (Welch p <0.001)" in lines[0]
    header = lines[2].splitlines()[0]
    for column in ("longest budget: reads", "p (Welch), Δ moved", "claim holds at the longest"):
        assert column in header


def test_every_study_names_a_claim_its_claim_grid_makes():
    claims = load_claims()
    for study in bb.STUDIES:
        for c in study.comparisons:
            row = lb._claim_row(claims, c.claim_grid, c.claim)
            assert row["grid"] == c.claim_grid
    with pytest.raises(ValueError, match="no spec makes"):
        lb._claim_row(claims, "localvit/ffn", "a claim nobody made")


def test_a_budget_with_one_paired_seed_is_not_read():
    # seed 0 alone at 16x (as a longer budget starts): the readings stay at 8x, the longest
    # budget with an interval, and the 16x run changes nothing
    results = _runs()
    first_seed = _runs(seeds=1, budgets=(("sixteenfold", 12096),))
    first_seed["test_top1"] += np.where(first_seed["cell"].str.contains("slow"), -5.0, 0.0)
    with_one = pd.concat([results, first_seed], ignore_index=True)
    table = lb.longest_budget_readings(with_one, None, CLAIMS, studies=(STUDY,))
    alone = lb.longest_budget_readings(results, None, CLAIMS, studies=(STUDY,))
    assert (table["longest: steps"] == 6048).all()
    assert table["longest: seeds"].tolist() == [6, 6]
    pd.testing.assert_frame_equal(table, alone)
    # with a second seed there, 16x is read
    second = _runs(seeds=2, budgets=(("sixteenfold", 12096),))
    table = lb.longest_budget_readings(
        pd.concat([results, second], ignore_index=True), None, CLAIMS, studies=(STUDY,)
    )
    assert (table["longest: steps"] == 12096).all()
    assert table["longest: seeds"].tolist() == [2, 2]
