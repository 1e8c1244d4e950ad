"""The cost of deciding open claims, and the error the seed schedule's repeated looks add.

Why: whether to raise the seed cap is decided from these figures, so the projected n must be
the n at which the verdict machinery really decides, and the simulated error rate must be the
level when there is one look and grow with more looks.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from experiments.analysis import claims as cl
from experiments.analysis import projection as pj
from experiments.analysis.report import carried_looks
from experiments.analysis.stopping_error import false_decision_rate, schedule_looks

NO_PAPER = pd.DataFrame(columns=["paper", "table", "model", "value"])


def _verdict_at(n: int, delta: float, sd: float, expect: str, family: int = 8) -> str:
    """The verdict check_claims gives a claim whose n paired differences have exactly this
    mean and sd, in a family of ``family`` claims of which only it has run (Holm level
    alpha / family)."""
    z = np.random.default_rng(n).standard_normal(n)
    diff = delta + sd * (z - z.mean()) / z.std(ddof=1)
    results = pd.DataFrame(
        [{"paper": "p", "grid": "p/g", "cell": cell, "profile": "quick", "seed": s,
          "status": "ok", "test_top1": 80.0 + (d if cell == "x=a" else 0.0)}
         for cell in ("x=a", "x=o") for s, d in enumerate(diff)]
    )  # fmt: skip
    claims = pd.DataFrame(
        {"paper": "p", "grid": "p/g", "claim": [f"c{k}" for k in range(family)],
         "cell": ["x=a"] + [f"x=none{k}" for k in range(1, family)], "versus_cell": "x=o",
         "expect": expect, "expected_sign": 0 if expect == "equivalent" else 1,
         "margin": 0.5, "paper_table": "", "paper_model": "", "versus_table": "",
         "versus_model": "", "source": "", "note": ""}
    )  # fmt: skip
    return cl.check_claims(results, claims, NO_PAPER).set_index("claim").loc["c0", "verdict"]


@pytest.mark.parametrize(
    "delta, sd, expect",
    [(0.25, 0.45, "better"), (-0.2, 0.5, "better"), (0.05, 0.5, "better"),
     (-0.12, 0.4, "equivalent"), (-0.2, 0.46, "not_worse"), (0.9, 0.6, "better")],
)  # fmt: skip
def test_projected_seeds_are_where_the_verdict_turns(delta, sd, expect):
    n = pj.seeds_to_decide(delta, sd, 0.5, 0.05 / 8, cl.TESTS[expect])
    assert np.isfinite(n) and n >= 3
    n = int(n)
    assert _verdict_at(n, delta, sd, expect) != "inconclusive"
    assert _verdict_at(n - 1, delta, sd, expect) == "inconclusive"


def test_a_claim_on_the_margin_cannot_be_projected():
    # a not-worse claim whose mean sits exactly on -margin never clears it
    assert math.isnan(pj.seeds_to_decide(-0.5, 0.5, 0.5, 0.005, "non-inferiority"))
    assert math.isnan(pj.seeds_to_decide(0.1, float("nan"), 0.5, 0.005, "difference"))


def test_cost_counts_a_shared_cell_once():
    verdicts = pd.DataFrame(
        {
            "paper": "p", "grid": "p/g", "profile": "quick",
            "claim": ["a beats o", "b beats o"], "cell": ["x=a", "x=b"],
            "versus_cell": ["x=o", "x=o"], "expect": "better", "expected_sign": 1,
            "margin": 0.5, "n_pairs": 3, "delta": [0.25, 0.25], "se": [0.25, 0.25],
            "level": 0.05 / 2, "verdict": "inconclusive",
        }
    )  # fmt: skip
    projected = pj.project_open_claims(verdicts)
    n = int(projected["projected_n"].iloc[0])
    assert (projected["projected_n"] == n).all() and n > 3
    results = pd.DataFrame(
        [{"paper": "p", "grid": "p/g", "profile": "quick", "cell": c, "seed": s,
          "status": "ok", "run_s": 100.0, "wall_s": 90.0, "threads": 2}
         for c in ("x=a", "x=b", "x=o") for s in range(3)]
    )  # fmt: skip
    cost = pj.cost_to_decide(projected, results).iloc[0]
    assert cost["open claims"] == 2
    assert cost["extra runs"] == 3 * (n - 3)  # x=o once, not twice
    hours = 3 * (n - 3) * 100.0 * 2 / 3600 / 2
    assert cost["2-core machine hours"] == pytest.approx(hours, abs=0.05)


def test_one_look_keeps_the_level_and_more_looks_inflate_it():
    level = 0.05
    once = false_decision_rate(level, cap=0, reps=40_000)
    assert once == pytest.approx(level, abs=0.006)
    quick = false_decision_rate(level, cap=12, reps=40_000)
    longer = false_decision_rate(level, cap=30, reps=40_000)
    assert quick > 1.5 * level and longer >= quick


def test_the_simulated_looks_are_the_schedules():
    assert schedule_looks(3, 3, 12) == [3, 6, 9, 12]
    assert schedule_looks(3, 6, 24) == [3, 9, 15, 21, 24]
    assert schedule_looks(3, 3, 0) == [3]
    now = schedule_looks(3, 6, 48)
    assert now == [3, 9, 15, 21, 27, 33, 39, 45, 48]
    # a claim open at 24 under the old cap was looked at there too, then under the new schedule
    assert carried_looks([(3, 6, 24)], now) == [3, 9, 15, 21, 24, 27, 33, 39, 45, 48]
    assert carried_looks([(3, 3, 12), (3, 6, 24)], now)[:8] == [3, 6, 9, 12, 15, 21, 24, 27]
    explicit = false_decision_rate(0.05, looks=[3, 6, 9, 12], reps=5_000)
    assert explicit == false_decision_rate(0.05, batch=3, cap=12, reps=5_000)


def _two_grid_campaign(se_b: float = 0.25) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Two claims against one baseline that two grids share (same run ids), and a clear one."""
    verdicts = pd.DataFrame(
        {
            "paper": "p", "grid": ["p/g", "p/h", "p/h"], "profile": "quick",
            "claim": ["a beats o", "b beats o", "c beats o"], "cell": ["x=a", "y=b", "y=c"],
            "versus_cell": ["x=o", "y=o", "y=o"], "expect": "better", "expected_sign": 1,
            "margin": 0.5, "n_pairs": 6, "delta": [0.25, 0.25, 5.0],
            "se": [0.25, se_b, 0.1], "level": 0.05 / 3, "verdict": "inconclusive",
        }
    )  # fmt: skip
    results = pd.DataFrame(
        [{"paper": "p", "grid": g, "profile": "quick", "cell": c, "seed": s,
          "run_id": f"{'o' if c.endswith('=o') else c}{s}", "status": "ok",
          "run_s": 300.0, "wall_s": 290.0, "threads": 1}
         for g, cells in (("p/g", ("x=a", "x=o")), ("p/h", ("y=b", "y=c", "y=o")))
         for c in cells for s in range(6)]
    )  # fmt: skip
    return verdicts, results


def test_the_target_floor_runs_each_cell_once_at_the_seeds_its_claims_need():
    verdicts, results = _two_grid_campaign()
    n = pj.seeds_to_decide(0.25, 0.25 * math.sqrt(6), 0.5, 0.05 / 3, "difference")
    assert n > 3
    row = pj.target_cost(verdicts, results, target_hours=1.5).iloc[0]
    # x=o and y=o are one configuration: 4 cells, not 5; the clear claim's cell needs only 3
    assert row["claims"] == 3 and row["claim cells"] == 4
    assert row["runs"] == 3 * n + 3
    hours = (3 * n + 3) * 300.0 / 3600 / 2
    assert row["2-core machine hours"] == pytest.approx(hours, abs=0.005)
    assert row["hours at 3 seeds a cell"] == pytest.approx(4 * 3 * 300.0 / 3600 / 2, abs=0.005)
    assert row["runs x cheaper"] == pytest.approx(hours / 1.5, abs=0.05)
    # every margin widened to 1 pp: the two close claims need fewer seeds
    wide = max(3, pj.seeds_to_decide(0.25, 0.25 * math.sqrt(6), 1.0, 0.05 / 3, "difference"))
    assert wide < n
    assert row["hours at margin 1 pp"] == pytest.approx((3 * wide + 3) * 300 / 7200, abs=0.006)


def test_the_target_sd_factor_is_the_largest_that_meets_it():
    verdicts, results = _two_grid_campaign()
    target = 1.0  # hours: above the noise-free floor (0.5 h), below today's
    factor = pj.target_cost(verdicts, results, target_hours=target)["sd x"].iloc[0]
    assert 0 < factor < 1
    identity = pj.cell_identity(results)

    def hours(scale: float) -> float:
        needs = pj._claim_needs(verdicts, scale, 3, identity)
        return needs["seeds"].sum() * 300.0 / 3600 / 2

    assert hours(factor - 0.01) <= target < hours(factor + 0.02)
    # a target below the noise-free floor: no sd reaches it
    out = pj.target_cost(verdicts, results, target_hours=0.4)["sd x"].iloc[0]
    assert math.isnan(out)
    # a target above today's cost: nothing has to fall
    assert pj.target_cost(verdicts, results, target_hours=100)["sd x"].iloc[0] == 1.0
