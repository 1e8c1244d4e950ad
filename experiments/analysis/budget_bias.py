"""The report's budget section: is each grid's budget long enough, and does its shortfall bias
the claims? The first is read from every run's curve (``experiments.analysis.budget``), the
second from a calibration grid that trains the slowest cells longer.

Why the second: the cells that learn slowest at the quick profile (LocalViT's plain MLP, its
FFN of 1x1 convs, DeiT's blocks) sit behind its largest effects, and a cell still learning when
the budget ends loses to one that learns faster whatever either could reach. The calibration grid
``ablations/calibration/slow_cells.yaml`` trains those claims' cells at the profile's budget and
at twice it, and ``ablations/calibration/settle.yaml`` the FFN claims' cells at four times it,
paired by seed within each budget. An effect that shrinks when every cell trains longer was
partly the budget's; one that holds is the architecture's, at least up to that budget.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd
from scipy import stats

from experiments.analysis.budget import STABLE_PP, grid_budget, last_epoch_gains
from experiments.analysis.markdown import markdown_table
from experiments.analysis.noise import labelled_runs, optimizer_steps
from experiments.analysis.stats import format_interval, t_interval


@dataclass(frozen=True)
class BiasComparison:
    """A paper claim's comparison as the calibration grid spells it: ``cell`` and ``versus``
    are values of its ``arm`` axis; ``claim_grid`` and ``claim`` name the claim."""

    claim_grid: str
    claim: str
    cell: str
    versus: str


SLOW_CELLS_GRID = "calibration/slow_cells"
# the grids whose runs the tables read; they share runs (same run id), each read once
BIAS_GRIDS = (SLOW_CELLS_GRID, "calibration/settle")
ARM, BUDGET, FIRST_BUDGET = "arm", "steps", "profile"
COMPARISONS = (
    BiasComparison("localvit/ffn", "locality FFN beats the linear MLP", "ffn_locality", "ffn_mlp"),
    BiasComparison(
        "localvit/ffn",
        "the depth-wise conv gives the gain (not the 1x1 convs)",
        "ffn_locality",
        "ffn_conv1x1",
    ),
    BiasComparison(
        "localvit/ffn",
        "replacing the linear layers by 1x1 convs changes little",
        "ffn_conv1x1",
        "ffn_mlp",
    ),
    BiasComparison(
        "localvit/layers", "depth-wise conv in every block beats none", "layers_all", "layers_none"
    ),
)


def bias_runs(
    results: pd.DataFrame, grids: tuple[str, ...] = BIAS_GRIDS, profile: str = "quick"
) -> pd.DataFrame:
    """The calibration grids' ok runs, labelled with their ``arm`` and budget, each run once:
    the grids spell shared cells alike, so a run one grid took from another is one run."""
    parts = [labelled_runs(results, g, profile, arm=ARM, budget=BUDGET) for g in grids]
    rows = pd.concat(parts, ignore_index=True)
    return rows.drop_duplicates("run_id") if len(rows) else rows


def effect_by_budget(
    results: pd.DataFrame,
    comparisons: tuple[BiasComparison, ...] = COMPARISONS,
    grids: tuple[str, ...] = BIAS_GRIDS,
    metric: str = "test_top1",
    profile: str = "quick",
) -> pd.DataFrame:
    """Per comparison and budget: the paired difference by seed (mean, 95% interval), and how
    far each budget moves it from the first budget's (Welch's t-test over the two budgets'
    paired differences; the budgets share no runs)."""
    rows = bias_runs(results, grids, profile)
    if rows.empty:
        return pd.DataFrame()
    budgets = list(dict.fromkeys([FIRST_BUDGET, *rows["budget"]]))
    out = []
    for c in comparisons:
        first = None
        for budget in budgets:
            mine = rows[rows["budget"] == budget]
            wide = mine.pivot_table(index="seed", columns="arm", values=metric, aggfunc="first")
            if c.cell not in wide or c.versus not in wide:
                continue
            diff = (wide[c.cell] - wide[c.versus]).dropna()
            if diff.empty:
                continue
            first = diff if first is None else first
            welch = stats.ttest_ind(diff, first, equal_var=False).pvalue if len(diff) > 1 else None
            out.append(
                {
                    "claim": c.claim,
                    "claim grid": c.claim_grid,
                    "comparison": f"{c.cell} vs {c.versus}",
                    "budget": budget,
                    "optimizer steps": int(optimizer_steps(mine)),
                    "seeds": len(diff),
                    "Δ (pp)": diff.mean(),
                    "Δ ± 95% CI": format_interval(diff.mean(), *t_interval(diff), sign=True),
                    "Δ − first budget's Δ": diff.mean() - first.mean(),
                    "p (Welch)": welch if diff is not first else float("nan"),
                }
            )
    return pd.DataFrame(out)


def cell_budgets(
    results: pd.DataFrame,
    epochs: pd.DataFrame,
    grids: tuple[str, ...] = BIAS_GRIDS,
    metric: str = "test_top1",
    profile: str = "quick",
) -> pd.DataFrame:
    """Per arm and budget: mean test top-1 over seeds, what the budget added to it against the
    first budget, and the cell's mean gain in validation top-1 over its last two validations."""
    rows = bias_runs(results, grids, profile)
    if rows.empty:
        return pd.DataFrame()
    gains = last_epoch_gains(epochs, rows).set_index("run_id")["last_gain"]
    out = []
    for arm, arm_rows in rows.groupby("arm", sort=False):
        base = arm_rows[arm_rows["budget"] == FIRST_BUDGET][metric].mean()
        for budget, mine in arm_rows.groupby("budget", sort=False):
            out.append(
                {
                    ARM: arm,
                    "budget": budget,
                    "optimizer steps": int(optimizer_steps(mine)),
                    "seeds": len(mine),
                    "test top-1 (%)": mine[metric].mean(),
                    "gain over the first budget (pp)": mine[metric].mean() - base,
                    "last validation gain (pp)": gains.reindex(mine["run_id"]).mean(),
                }
            )
    return pd.DataFrame(out)


def bias_lines(results: pd.DataFrame, epochs: pd.DataFrame, profile: str = "quick") -> list[str]:
    """The report's paragraph and two tables, or nothing before the grid has run."""
    effects = effect_by_budget(results, profile=profile)
    if effects.empty or effects["budget"].nunique() < 2:
        return []
    cells = cell_budgets(results, epochs, profile=profile)

    def shown(df: pd.DataFrame, drop: tuple[str, ...] = ()) -> pd.DataFrame:
        df = df.drop(columns=list(drop))
        for column in df.columns:
            if df[column].dtype.kind == "f":
                digits = 3 if column.startswith("p ") else 2
                df[column] = df[column].map(lambda v, d=digits: "" if pd.isna(v) else f"{v:.{d}f}")
        return df

    return [
        f"Undertraining bias ({' and '.join(f'`ablations/{g}.yaml`' for g in BIAS_GRIDS)}): "
        "the cells of LocalViT's largest effects at the profile's budget and at twice it, its "
        "FFN cells also at four times it, paired by seed within each budget. *Δ − first "
        "budget's Δ* is how far a longer budget moves the effect from the profile's (Welch's "
        "t-test); an effect that shrinks there was partly how fast its cells learn.",
        "",
        markdown_table(shown(effects, drop=("Δ (pp)",))),
        "",
        markdown_table(shown(cells)),
        "",
    ]


def budget_lines(epochs: pd.DataFrame, results: pd.DataFrame, profile: str = "quick") -> list[str]:
    """The report's section: every grid's last validation gain, then the bias tables."""
    table = grid_budget(epochs, results)
    if not len(table):
        return []
    bias = bias_lines(results, epochs, profile)
    caveat = (
        " A small gain is no proof of the contrary: the cosine schedule makes the last gain "
        "small at any budget, so the tables after this one train the slowest cells longer."
    )
    return [
        "## Is the budget long enough?",
        "",
        "Validation top-1 gained between a run's last two validations (*val every* epochs "
        "apart; the last epoch is always validated), mean over seeds per cell; a cell is *still "
        f"learning* when that gain is {STABLE_PP} pp or more. Where cells are still learning, "
        "differences between them partly measure how fast they learn." + (caveat if bias else ""),
        "",
        markdown_table(table),
        "",
        *bias,
    ]
