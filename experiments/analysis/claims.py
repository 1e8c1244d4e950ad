"""Confirmatory tests of the papers' claims: one family per paper, Holm inside it, four verdicts.

Why this shape: a paper makes a handful of claims, and testing all of them at 5% each would
find a "confirmed" claim by chance about once per paper. So each paper's claims (every
``claims:`` entry of its grid specs) are one confirmatory family, and Holm's step-down
procedure controls the family-wise error at ``alpha``. Every other comparison (the cell tables)
is exploratory.

Per claim, over the seeds both cells ran (paired differences ``cell - versus_cell``, pp):

- a directional claim (``expect: better`` or ``worse``) is tested for a difference by a
  two-sided paired t-test;
- a claim of no difference (``expect: equivalent``) is tested by TOST (two one-sided paired
  t-tests against ``-margin`` and ``+margin``);
- a claim that the cell is at least as good as the other (``expect: not_worse``: "keeps the
  accuracy", "comes close to") is a non-inferiority claim, tested by the one-sided paired t-test
  against ``-margin``. Testing it for equivalence would make a cell that is clearly *better*
  disagree with a claim that it is not worse.

Holm compares the i-th smallest p with ``alpha / (m - i + 1)``, where ``m`` counts every claim
the paper's specs make (a claim not run yet still costs its share, so verdicts cannot get
looser as grids fill in). Each claim's interval is drawn at the level Holm used for it
(``1 - alpha_i`` two-sided, ``1 - 2 alpha_i`` for equivalence), so a verdict read from the
interval and one read from the adjusted p are the same verdict. Verdicts:

- ``agrees`` / ``disagrees``: the difference test rejects, on the claimed / the other side;
- ``equivalent``: the ``1 - 2 alpha_i`` interval lies inside ``±margin`` (for a claim of no
  difference, its TOST rejects; for a directional claim, the difference it claims is smaller
  than the margin);
- ``disagrees`` for a claim of no difference: the interval lies wholly beyond the margin;
- for a non-inferiority claim, drawn at ``1 - 2 alpha_i`` like TOST (its lower end is the
  one-sided bound): ``agrees`` when it lies above ``-margin``, ``disagrees`` when it lies wholly
  below ``-margin``;
- ``inconclusive``: none of these; ``not run``: a cell has no ok run.

``decided`` (a verdict other than inconclusive) and ``precise`` (the interval is narrower than
the margin) drive the seed schedule (``experiments.run.seeds``).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from scipy import stats

from experiments.analysis.stats import (
    _by_seed,
    _num,
    _paper_value,
    format_interval,
    format_p,
    load_claims,
    load_paper_results,
)

ALPHA = 0.05
# expect -> the test a claim gets (see module doc)
TESTS = {"better": "difference", "worse": "difference", "equivalent": "equivalence",
         "not_worse": "non-inferiority"}  # fmt: skip
VERDICTS = ["agrees", "disagrees", "equivalent", "inconclusive", "not run"]
DIRECTIONAL = {1: "+", -1: "−"}


def paired_t(diff: np.ndarray, margin: float) -> dict:
    """Mean, standard error, df, the two-sided p of no difference, the TOST p for ±margin and
    the non-inferiority p (one-sided, H0: delta <= -margin)."""
    n = len(diff)
    mean = float(diff.mean()) if n else math.nan
    if n < 2:
        return {"n_pairs": n, "delta": mean, "se": math.nan, "df": 0, "p": math.nan,
                "p_tost": math.nan, "p_noninf": math.nan}  # fmt: skip
    se = float(diff.std(ddof=1) / math.sqrt(n))
    df = n - 1
    if se == 0:  # every seed gives the same difference: the tests degenerate to certainty
        p = 1.0 if mean == 0 else 0.0
        p_tost = 0.0 if abs(mean) < margin else 1.0
        p_noninf = 0.0 if mean > -margin else 1.0
    else:
        p = float(2 * stats.t.sf(abs(mean) / se, df))
        p_noninf = float(stats.t.sf((mean + margin) / se, df))  # H0: delta <= -margin
        upper = stats.t.cdf((mean - margin) / se, df)  # H0: delta >= +margin
        p_tost = float(max(p_noninf, upper))
    return {"n_pairs": n, "delta": mean, "se": se, "df": df, "p": p, "p_tost": p_tost,
            "p_noninf": p_noninf}  # fmt: skip


def claim_test(r) -> str:
    """difference, equivalence or non-inferiority; rows without ``expect`` read the sign."""
    expect = r.get("expect") if isinstance(r, dict) else getattr(r, "expect", None)
    if isinstance(expect, str) and expect:
        return TESTS[expect]
    sign = r["expected_sign"] if isinstance(r, dict) else r.expected_sign
    return "equivalence" if int(sign) == 0 else "difference"


def holm_levels(pvalues: np.ndarray, m: int, alpha: float = ALPHA) -> tuple[np.ndarray, np.ndarray]:
    """Holm over a family of ``m`` hypotheses of which ``pvalues`` were tested (NaN: not tested).

    Returns the adjusted p-values and, per hypothesis, the level ``alpha_i`` Holm compared it
    with: ``alpha / (m - i + 1)`` at rank i up to the first non-rejection, that step's level
    after it (so p < alpha_i exactly when the adjusted p < alpha).
    """
    p = np.asarray(pvalues, dtype=float)
    adjusted = np.full_like(p, np.nan)
    levels = np.full_like(p, np.nan)
    tested = np.flatnonzero(~np.isnan(p))
    if len(tested) == 0:
        return adjusted, levels
    m = max(int(m), len(tested))
    order = tested[np.argsort(p[tested], kind="stable")]
    running, stopped = 0.0, None
    for rank, idx in enumerate(order):
        factor = m - rank
        running = max(running, min(1.0, factor * p[idx]))
        adjusted[idx] = running
        if stopped is None and p[idx] >= alpha / factor:
            stopped = alpha / factor
        levels[idx] = alpha / factor if stopped is None else stopped
    return adjusted, levels


def _interval(delta: float, se: float, df: int, level: float) -> tuple[float, float]:
    if math.isnan(se) or math.isnan(level):
        return (math.nan, math.nan)
    half = float(stats.t.ppf(1 - level / 2, df) * se) if se > 0 else 0.0
    return (delta - half, delta + half)


def claim_verdict(r: dict) -> str:
    """The verdict of one tested claim, from its intervals at the Holm level (see module doc)."""
    if r["n_pairs"] < 2 or math.isnan(r["level"]):
        return "inconclusive"
    margin, sign = r["margin"], int(r["expected_sign"])
    eq_low, eq_high = r["eq_low"], r["eq_high"]
    test = claim_test(r)
    if test == "non-inferiority":
        if r["p_adjusted"] < r["alpha"]:
            return "agrees"
        return "disagrees" if eq_high < -margin else "inconclusive"
    if test == "equivalence":
        if r["p_adjusted"] < r["alpha"]:
            return "equivalent"
        if eq_low > margin or eq_high < -margin:
            return "disagrees"
        return "inconclusive"
    if r["p_adjusted"] < r["alpha"]:
        return "agrees" if np.sign(r["delta"]) == sign else "disagrees"
    if -margin < eq_low and eq_high < margin:
        return "equivalent"
    return "inconclusive"


def _family_rows(rows: list[dict], m: int, alpha: float) -> None:
    """Holm across one paper's claims, in place: adjusted p, level, intervals, verdict."""
    tested = [r for r in rows if r["verdict"] != "not run"]
    which = {"difference": "p", "equivalence": "p_tost", "non-inferiority": "p_noninf"}
    p = np.array([r[which[claim_test(r)]] for r in tested])
    adjusted, levels = holm_levels(p, m, alpha)
    for r, p_test, p_adj, level in zip(tested, p, adjusted, levels, strict=True):
        r.update(p_test=p_test, p_adjusted=p_adj, level=level, alpha=alpha, family_size=m)
        r["delta_low"], r["delta_high"] = _interval(r["delta"], r["se"], r["df"], level)
        r["eq_low"], r["eq_high"] = _interval(r["delta"], r["se"], r["df"], 2 * level)
        r["verdict"] = claim_verdict(r)
        # the interval the verdict reads: a directional claim found equivalent is read from
        # its TOST interval, and showing the wider difference interval beside that verdict
        # would cross the margin it was found inside
        margin_read = claim_test(r) != "difference" or r["verdict"] == "equivalent"
        shown = (r["eq_low"], r["eq_high"]) if margin_read else None
        low, high = shown or (r["delta_low"], r["delta_high"])
        r["ci_low"], r["ci_high"] = low, high
        r["ci_level"] = 1 - (2 * level if shown else level)
        r["precise"] = bool(high - low < r["margin"])


def read_alone(
    diff: np.ndarray, expect: str, expected_sign: int, margin: float, alpha: float = ALPHA
) -> dict:
    """One claim read on its own paired differences, as a family of one (no Holm): the tests,
    verdict and interval a claim gets, for an exploratory reading outside the claims table."""
    row = {"expect": expect, "expected_sign": int(expected_sign), "margin": float(margin),
           "verdict": "not run" if len(diff) == 0 else ""}  # fmt: skip
    row.update(paired_t(np.asarray(diff, dtype=float), margin))
    if row["verdict"] != "not run":
        _family_rows([row], 1, alpha)
    return row


def check_claims(
    df: pd.DataFrame,
    claims: pd.DataFrame | None = None,
    paper_results: pd.DataFrame | None = None,
    metric: str = "test_top1",
    *,
    alpha: float = ALPHA,
) -> pd.DataFrame:
    """One row per claim and profile: paired delta, raw and Holm-adjusted p, interval, verdict.

    The family is a paper's claims under one profile; its size is the number of claims the
    paper's specs make, run or not.
    """
    claims = load_claims() if claims is None else claims
    paper_results = load_paper_results() if paper_results is None else paper_results
    out = []
    profiles = list(dict.fromkeys(df["profile"])) if "profile" in df and len(df) else [""]
    for paper, family in claims.groupby("paper", sort=False):
        for profile in profiles:
            rows = []
            for c in family.itertuples():
                grid_rows = df[(df["grid"] == c.grid) & (df["profile"] == profile)]
                a = _by_seed(grid_rows[grid_rows["cell"] == c.cell], metric)
                b = _by_seed(grid_rows[grid_rows["cell"] == c.versus_cell], metric)
                pairs = pd.concat({"a": a, "b": b}, axis=1, join="inner").dropna()
                margin = float(getattr(c, "margin", 0.5))
                row = {
                    "paper": paper,
                    "grid": c.grid,
                    "profile": profile,
                    "claim": c.claim,
                    "cell": c.cell,
                    "versus_cell": c.versus_cell,
                    "expect": getattr(c, "expect", ""),
                    "expected_sign": int(c.expected_sign),
                    "margin": margin,
                    "verdict": "not run" if pairs.empty else "",
                }
                diff = (pairs["a"] - pairs["b"]).to_numpy(float)
                row.update(paired_t(diff, margin))
                row["p_improve"] = (
                    float(np.mean((diff > 0) + 0.5 * (diff == 0))) if len(diff) else math.nan
                )
                value = _paper_value(paper_results, paper, c.paper_table, c.paper_model)
                versus = _paper_value(paper_results, paper, c.versus_table, c.versus_model)
                row.update(paper_value=value, paper_versus_value=versus,
                           paper_delta=value - versus, source=c.source, note=c.note)  # fmt: skip
                rows.append(row)
            _family_rows(rows, len(family), alpha)
            if any(r["verdict"] != "not run" for r in rows) or profile == profiles[0]:
                out += rows
    return pd.DataFrame(out).reindex(columns=CLAIM_RESULT_COLUMNS)


CLAIM_RESULT_COLUMNS = [
    "paper", "grid", "profile", "claim", "cell", "versus_cell", "expect", "expected_sign",
    "margin", "n_pairs", "delta", "se", "df", "p", "p_tost", "p_noninf", "p_test", "p_adjusted", "family_size",
    "alpha", "level", "delta_low", "delta_high", "eq_low", "eq_high", "ci_low", "ci_high",
    "ci_level", "precise", "p_improve", "verdict", "paper_value", "paper_versus_value",
    "paper_delta", "source", "note",
]  # fmt: skip


def claim_holds(verdict: str, expected_sign: int) -> str:
    """Whether the verdict supports the claim: ``yes``, ``no`` or ``open``."""
    if verdict in ("inconclusive", "not run"):
        return "open"
    if verdict == "agrees" or (verdict == "equivalent" and int(expected_sign) == 0):
        return "yes"
    return "no"


def expected_label(r) -> str:
    """+ / − for a direction, ≈ ±margin for no difference, ≥ −margin for not worse."""
    test = claim_test(r)
    if test == "non-inferiority":
        return f"≥ −{r.margin:g}"
    if test == "equivalence":
        return f"≈ ±{r.margin:g}"
    return DIRECTIONAL[int(r.expected_sign)]


def format_claims(verdicts: pd.DataFrame) -> pd.DataFrame:
    """Strings for display: claim, our delta with its Holm-level interval, raw and adjusted p."""
    rows = []
    for r in verdicts.itertuples():
        ran = r.verdict != "not run"
        paper = ""
        if not math.isnan(r.paper_delta):
            paper = f"{r.paper_delta:+.1f} ({r.paper_value:.1f} vs {r.paper_versus_value:.1f})"
        level = f"{100 * r.ci_level:.1f}%" if ran and not math.isnan(r.ci_level) else ""
        rows.append(
            {
                "grid": r.grid,
                "profile": r.profile,
                "claim": r.claim,
                "comparison": f"{r.cell} vs {r.versus_cell}",
                "expected": expected_label(r),
                "ours: Δ (pp) [adjusted CI]": format_interval(
                    r.delta, r.ci_low, r.ci_high, sign=True
                )
                if ran
                else "",
                "CI level": level,
                "n": str(int(r.n_pairs)) if ran else "",
                "p (raw)": format_p(r.p_test) if ran else "",
                "p (Holm, paper)": format_p(r.p_adjusted) if ran else "",
                "P(improve)": _num(r.p_improve, 2) if ran else "",
                "paper: Δ (pp)": paper,
                "verdict": r.verdict,
                "claim holds": claim_holds(r.verdict, r.expected_sign),
            }
        )
    return pd.DataFrame(rows)
