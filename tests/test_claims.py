"""Confirmatory claim tests: Holm across a paper's claims, TOST, intervals that match the verdict.

Why: a verdict is the one thing a reader takes away; it must follow from the family-wise
correction the report states, and the interval printed beside it must tell the same story.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from experiments.analysis import claims as cl
from experiments.analysis import stats as an


def claims_table(rows: list[tuple[str, str, str, int]], paper: str = "p", margin: float = 0.5):
    """Claims from (claim, cell, versus, expected_sign) tuples, all in grid ``p/g``."""
    return pd.DataFrame(
        {
            "paper": paper,
            "grid": f"{paper}/g",
            "claim": [r[0] for r in rows],
            "cell": [r[1] for r in rows],
            "versus_cell": [r[2] for r in rows],
            "expected_sign": [r[3] for r in rows],
            "margin": margin,
            **{k: "" for k in ["paper_table", "paper_model", "versus_table", "versus_model"]},
            "source": "",
            "note": "",
        }
    )


def results(cells: dict[str, list[float]], paper: str = "p") -> pd.DataFrame:
    return pd.DataFrame(
        [
            {
                "paper": paper,
                "grid": f"{paper}/g",
                "cell": cell,
                "profile": "quick",
                "seed": seed,
                "status": "ok",
                "test_top1": value,
            }  # fmt: skip
            for cell, values in cells.items()
            for seed, value in enumerate(values)
        ]
    )


def test_paired_t_matches_scipy():
    rng = np.random.default_rng(0)
    a, b = rng.normal(80, 1, 7), rng.normal(79.6, 1, 7)
    got = cl.paired_t(a - b, margin=0.5)
    assert got["p"] == pytest.approx(stats.ttest_rel(a, b).pvalue)
    lower = stats.ttest_1samp(a - b, -0.5, alternative="greater").pvalue
    upper = stats.ttest_1samp(a - b, 0.5, alternative="less").pvalue
    assert got["p_tost"] == pytest.approx(max(lower, upper))


def test_holm_levels_match_holm_and_are_consistent():
    p = np.array([0.001, 0.04, 0.012, np.nan, 0.3])
    adjusted, levels = cl.holm_levels(p, m=4)
    np.testing.assert_allclose(adjusted[~np.isnan(p)], an.holm(p)[~np.isnan(p)])
    tested = ~np.isnan(p)
    # p < its Holm level exactly when the adjusted p < alpha
    assert ((p[tested] < levels[tested]) == (adjusted[tested] < 0.05)).all()
    assert levels[0] == pytest.approx(0.05 / 4) and levels[2] == pytest.approx(0.05 / 3)
    assert levels[1] == levels[4] == pytest.approx(0.05 / 2)  # the stopping step's level


def test_family_counts_claims_not_run():
    p = np.array([0.02])
    alone, _ = cl.holm_levels(p, m=1)
    in_family, levels = cl.holm_levels(p, m=3)
    assert alone[0] == pytest.approx(0.02) and in_family[0] == pytest.approx(0.06)
    assert levels[0] == pytest.approx(0.05 / 3)


@pytest.mark.parametrize("seed", range(20))
def test_interval_and_adjusted_p_agree(seed):
    """On random families the interval at Holm's level excludes 0 iff Holm rejects."""
    rng = np.random.default_rng(seed)
    cells = {"x=0": list(rng.normal(80, 1, 5))}
    rows = []
    for k in range(1, 5):
        cells[f"x={k}"] = list(np.array(cells["x=0"]) + rng.normal(rng.normal(0, 1), 0.6, 5))
        rows.append((f"claim {k}", f"x={k}", "x=0", int(rng.choice([1, -1]))))
    verdicts = cl.check_claims(results(cells), claims_table(rows), pd.DataFrame(
        columns=["paper", "table", "model", "value"]))  # fmt: skip
    excludes = (verdicts["delta_low"] > 0) | (verdicts["delta_high"] < 0)
    assert (excludes == (verdicts["p_adjusted"] < 0.05)).all()
    decided = verdicts["verdict"].isin(["agrees", "disagrees"])
    assert (decided == excludes).all()


NO_PAPER = pd.DataFrame(columns=["paper", "table", "model", "value"])


@pytest.mark.parametrize("seed", range(30))
def test_the_interval_shown_gives_the_verdict(seed):
    """A reader re-deriving a verdict from the printed interval gets the printed verdict: it
    excludes 0 for agrees/disagrees, lies inside the margin for equivalent, and holds 0 and
    crosses a margin for an inconclusive directional claim (a directional claim found
    equivalent once printed its wider difference interval, which crossed the margin)."""
    rng = np.random.default_rng(seed)
    n = int(rng.integers(6, 40))
    cells = {"x=0": list(rng.normal(80, 0.5, n))}
    rows = []
    for k in range(1, 6):
        effect = rng.choice([0.0, 0.15, 0.3, 1.0])
        cells[f"x={k}"] = list(np.array(cells["x=0"]) + rng.normal(effect, 0.6, n))
        rows.append((f"claim {k}", f"x={k}", "x=0", int(rng.choice([1, -1]))))
    v = cl.check_claims(results(cells), claims_table(rows), NO_PAPER)
    low, high, m = v["ci_low"], v["ci_high"], v["margin"]
    decided = v["verdict"].isin(["agrees", "disagrees"])
    assert ((low > 0) | (high < 0))[decided].all()
    assert ((-m < low) & (high < m))[v["verdict"] == "equivalent"].all()
    open_ = v["verdict"] == "inconclusive"
    assert ((low <= 0) & (high >= 0) & ((low <= -m) | (high >= m)))[open_].all()
    equivalent = v[v["verdict"] == "equivalent"]
    assert (equivalent["ci_level"] == 1 - 2 * equivalent["level"]).all()


def test_a_directional_claim_found_equivalent_shows_its_tost_interval():
    """The committed CAS-ViT local-perception case: +0.24 pp over 48 seeds, sd 0.68, at
    Holm's level 0.05 / 7 the difference interval reaches 0.52 (past the 0.5 margin) while the
    TOST interval the verdict reads ends at 0.49."""
    diffs = np.resize([0.24 - 0.68, 0.24 + 0.68], 48)  # mean 0.24, sd about 0.69
    row = {**cl.paired_t(diffs, 0.5), "margin": 0.5, "expected_sign": 1, "expect": "better",
           "verdict": ""}  # fmt: skip
    rows = [row] + [
        {
            **cl.paired_t(np.array([1.0, 1.1, 0.9, 1.0]) * (k + 2), 0.5),
            "margin": 0.5,
            "expected_sign": 1,
            "expect": "better",
            "verdict": "",
        }  # fmt: skip
        for k in range(6)
    ]
    cl._family_rows(rows, 14, 0.05)
    r = rows[0]
    assert r["level"] == pytest.approx(0.05 / 8) and r["verdict"] == "equivalent"
    assert r["delta_high"] > 0.5 > r["eq_high"]
    assert (r["ci_low"], r["ci_high"]) == (r["eq_low"], r["eq_high"])


def test_four_verdicts():
    base = [80.0, 81.0, 79.5, 80.5, 80.2, 79.8]
    cells = {
        "x=a": base,
        "x=big": [v + 2.0 + d for v, d in zip(base, [0.1, -0.1, 0.2, 0.0, -0.2, 0.1], strict=True)],
        "x=tiny": [v + d for v, d in zip(base, [0.15, -0.05, 0.1, -0.1, 0.2, 0.0], strict=True)],
        "x=noisy": [v + d for v, d in zip(base, [1.5, -2.0, 2.5, -1.0, 0.5, -1.8], strict=True)],
    }
    rows = [
        ("big beats a", "x=big", "x=a", 1),
        ("a beats big", "x=a", "x=big", 1),
        ("tiny beats a", "x=tiny", "x=a", 1),
        ("tiny matches a", "x=tiny", "x=a", 0),
        ("big matches a", "x=big", "x=a", 0),
        ("noisy beats a", "x=noisy", "x=a", 1),
        ("missing", "x=z", "x=a", 1),
    ]
    v = cl.check_claims(results(cells), claims_table(rows), NO_PAPER).set_index("claim")
    assert v.loc["big beats a", "verdict"] == "agrees"
    assert v.loc["a beats big", "verdict"] == "disagrees"
    assert (
        v.loc["tiny beats a", "verdict"] == "equivalent"
    )  # no difference shown, and any is below the margin
    assert v.loc["tiny matches a", "verdict"] == "equivalent"
    assert v.loc["big matches a", "verdict"] == "disagrees"
    assert v.loc["noisy beats a", "verdict"] == "inconclusive"
    # a real effect smaller than the margin still confirms the direction
    small = {
        "x=a": base,
        "x=s": [v + 0.1 + d for v, d in zip(base, [0.01, -0.01] * 3, strict=True)],
    }
    one = claims_table([("s beats a", "x=s", "x=a", 1)])
    assert cl.check_claims(results(small), one, NO_PAPER).loc[0, "verdict"] == "agrees"
    assert v.loc["missing", "verdict"] == "not run"
    assert (v["family_size"].dropna() == 7).all()
    assert v.loc["tiny matches a", "precise"] and not v.loc["noisy beats a", "precise"]
    assert cl.claim_holds("equivalent", 0) == "yes" and cl.claim_holds("equivalent", 1) == "no"
    shown = cl.format_claims(v.reset_index())
    assert {"p (raw)", "p (Holm, paper)", "CI level", "claim holds"} <= set(shown.columns)


def test_holm_across_the_paper_makes_a_borderline_claim_inconclusive():
    """A claim that passes alone fails once the paper's other claims share the error rate."""
    a = [80.0, 81.0, 79.5, 80.5]
    b = [80.9, 81.5, 80.6, 81.1]  # p = 0.011 alone, 0.067 in a family of six
    alone = claims_table([("b beats a", "x=b", "x=a", 1)])
    v1 = cl.check_claims(results({"x=a": a, "x=b": b}), alone, NO_PAPER)
    assert v1.loc[0, "verdict"] == "agrees"
    family = claims_table([("b beats a", "x=b", "x=a", 1)] + [
        (f"other {k}", f"x=o{k}", "x=a", 1) for k in range(5)])  # fmt: skip
    v6 = cl.check_claims(results({"x=a": a, "x=b": b}), family, NO_PAPER).set_index("claim")
    assert v6.loc["b beats a", "verdict"] == "inconclusive"
    assert v6.loc["b beats a", "p_adjusted"] == pytest.approx(6 * v1.loc[0, "p_test"])


def test_papers_are_separate_families():
    a, b = [80.0, 81.0, 79.5, 80.5], [80.9, 81.6, 80.7, 81.2]
    both = pd.concat([results({"x=a": a, "x=b": b}, "p"), results({"x=a": a, "x=b": b}, "q")])
    claims = pd.concat([
        claims_table([("b beats a", "x=b", "x=a", 1)], "p"),
        claims_table([("b beats a", "x=b", "x=a", 1)], "q"),
    ])  # fmt: skip
    v = cl.check_claims(both, claims, NO_PAPER)
    assert (v["family_size"] == 1).all() and (v["verdict"] == "agrees").all()


def test_not_worse_is_a_one_sided_test_against_the_margin():
    """'At least as good' is non-inferiority: a clearly better cell agrees (TOST would say
    disagrees), a cell clearly worse by more than the margin disagrees, a borderline one is
    inconclusive; the p is the one-sided test's and the interval's lower end is its bound."""
    base = [80.0, 81.0, 79.5, 80.5, 80.2, 79.8]
    jitter = [0.1, -0.1, 0.2, 0.0, -0.2, 0.1]
    cells = {"x=a": base} | {
        f"x={name}": [v + shift + d for v, d in zip(base, jitter, strict=True)]
        for name, shift in {"better": 2.0, "same": 0.0, "worse": -2.0, "edge": -0.5}.items()
    }
    rows = [(f"{name} not worse", f"x={name}", "x=a", 1) for name in
            ("better", "same", "worse", "edge")]  # fmt: skip
    table = claims_table(rows).assign(expect="not_worse")
    v = cl.check_claims(results(cells), table, NO_PAPER).set_index("claim")
    assert v.loc["better not worse", "verdict"] == "agrees"
    assert v.loc["same not worse", "verdict"] == "agrees"
    assert v.loc["worse not worse", "verdict"] == "disagrees"
    assert v.loc["edge not worse", "verdict"] == "inconclusive"
    diff = np.array(cells["x=same"]) - np.array(base)
    one_sided = stats.ttest_1samp(diff, -0.5, alternative="greater").pvalue
    assert v.loc["same not worse", "p_test"] == pytest.approx(one_sided)
    # the interval is drawn at 1 - 2 alpha_i, so its lower end is the one-sided bound
    r = v.loc["same not worse"]
    bound = r["delta"] - stats.t.ppf(1 - r["level"], r["df"]) * r["se"]
    assert r["ci_low"] == pytest.approx(bound)
    assert r["ci_level"] == pytest.approx(1 - 2 * r["level"])
    # the same data read as a claim of no difference: the better cell disagrees
    as_equivalence = cl.check_claims(results(cells), claims_table(rows).assign(
        expected_sign=0), NO_PAPER).set_index("claim")  # fmt: skip
    assert as_equivalence.loc["better not worse", "verdict"] == "disagrees"
    shown = cl.format_claims(v.reset_index()).set_index("claim")
    assert shown.loc["better not worse", "expected"] == "≥ −0.5"
    assert shown.loc["better not worse", "claim holds"] == "yes"


def test_the_committed_report_prints_intervals_that_give_its_verdicts():
    """Re-read from the committed ``results/REPORT.md`` alone, as a reader would: every claim's
    printed interval (Δ ± half width, rounded to 0.01) gives its printed verdict."""
    import re
    from pathlib import Path

    report = Path(__file__).resolve().parents[1] / "results" / "REPORT.md"
    text = report.read_text().split("## Did the repository's own choices hold?")[0]
    rows = 0
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        found = re.fullmatch(r"([+-]?[\d.]+) ± ([\d.]+)", cells[5]) if len(cells) > 12 else None
        if not found:
            continue
        rows += 1
        delta, half = float(found[1]), float(found[2])
        low, high, expected, verdict = delta - half, delta + half, cells[4], cells[12]
        margin = float(re.findall(r"[\d.]+", expected)[0]) if expected[0] in "≈≥" else 0.5
        tol = 0.011  # two printed figures rounded to 0.01
        if verdict in ("agrees", "disagrees") and expected in ("+", "−"):
            assert low > -tol or high < tol, line
        elif verdict == "equivalent":
            assert -margin - tol < low and high < margin + tol, line
        elif verdict == "inconclusive" and expected in ("+", "−"):
            assert low < tol and high > -tol and (low < -margin + tol or high > margin - tol), line
        elif expected.startswith("≥") and verdict == "agrees":
            assert low > -margin - tol, line
    assert rows >= 44  # every paper claim at both profiles
