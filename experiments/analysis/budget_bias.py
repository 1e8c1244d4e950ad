"""The report's budget section: is each grid's budget long enough, and does its shortfall bias
the claims? The first is read from every run's curve (``experiments.analysis.budget``), the
second from a calibration grid that trains the slowest cells longer.

Why the second: the cells that learn slowest at the quick profile (LocalViT's plain MLP, its
FFN of 1x1 convs, DeiT's blocks) sit behind its largest effects, and a cell still learning when
the budget ends loses to one that learns faster whatever either could reach. The calibration grid
``ablations/calibration/slow_cells.yaml`` trains those claims' cells at the profile's budget, at
twice it and at four times it, paired by seed within each budget; ``slow_cells_long.yaml`` trains
the pair with the largest effect (the locality FFN and the plain MLP) at eight to sixty-four
times it (sixty-four times on seed 0 alone), ``slow_cells_conv1x1.yaml`` the FFN of 1x1 convs
at eight times it, beside that grid's MLP, ``slow_cells_dwconv.yaml`` adds seeds to the
locality FFN and the 1x1 convs at eight times it (the depth-wise conv's own share, which three
seeds left unresolved), and
``slow_cells_layers.yaml`` trains locality in every block and in none at eight times it (and
seeds 0-3 at sixteen times it). ``efficientmod_budget.yaml`` trains EfficientMod's two largest
disagreements (the hybrid and the modulation block, both behind here and ahead in the paper)
at one to eight times it (``efficientmod_budget_long.yaml`` both at sixteen times it), and
``efficientmod_context_budget.yaml`` its two smaller ones (the full context branch
behind the conv alone and behind f+conv) at one and two times it;
``localvit_activation_budget.yaml`` LocalViT's activation disagreement (h-swish behind ReLU6)
and ``casvit_phi_budget.yaml`` CAS-ViT's one (Phi with both operations behind the spatial one)
at one and two times it. Each such set of grids is a ``BudgetStudy``. An effect that shrinks
when every cell trains longer was partly the budget's; one that holds is the architecture's, at
least up to that budget.
"""

from __future__ import annotations

import textwrap
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure
from scipy import stats

from experiments.analysis.budget import STABLE_PP, grid_budget, last_epoch_gains
from experiments.analysis.figures import new_figure, save, styled
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
# the grids whose budgets are read together: the same arms, the same seeds, longer budgets
BUDGET_GRIDS = (
    SLOW_CELLS_GRID,
    "calibration/slow_cells_long",
    "calibration/slow_cells_conv1x1",
    "calibration/slow_cells_dwconv",
    "calibration/slow_cells_layers",
)
ARM, BUDGET, FIRST_BUDGET = "arm", "steps", "profile"
DODGE = 0.06  # the figure's horizontal offset between comparisons, in doublings
TITLE_WIDTH = 60  # characters of grid names a line of the figure's title holds
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


EFFICIENTMOD_COMPARISONS = (
    BiasComparison(
        "efficientmod/hybrid_matched",
        "attention blocks in the last stages help (hybrid beats conv-only at matched parameters)",
        "hybrid",
        "conv_deeper",
    ),
    BiasComparison(
        "efficientmod/mbconv",
        "the modulation block beats MBConv at matched params",
        "modulation",
        "mbconv",
    ),
)


CONTEXT_COMPARISONS = (
    BiasComparison("efficientmod/context", "f+conv+g beats conv alone", "f+conv+g", "conv"),
    BiasComparison("efficientmod/context", "f+conv+g beats f+conv", "f+conv+g", "f+conv"),
)


ACTIVATION_COMPARISONS = (
    BiasComparison("localvit/activation", "h-swish beats ReLU6", "hswish", "relu6"),
)

PHI_COMPARISONS = (
    BiasComparison(
        "casvit/phi", "Spatial and channel together beat spatial alone", "both", "spatial"
    ),
)


@dataclass(frozen=True)
class BudgetStudy:
    """Calibration grids that train some claims' cells at the profile's budget and longer ones
    (the same arms, the same seeds), with the report's words for what they train."""

    grids: tuple[str, ...]
    comparisons: tuple[BiasComparison, ...]
    intro: str


LOCALVIT_STUDY = BudgetStudy(
    BUDGET_GRIDS,
    COMPARISONS,
    f"Undertraining bias (`ablations/{SLOW_CELLS_GRID}.yaml`): the cells of LocalViT's largest "
    "effects at the profile's budget, twice it and four times it, paired by seed within each "
    f"budget; `ablations/{BUDGET_GRIDS[1]}.yaml` trains the locality FFN and the plain MLP at "
    "eight, sixteen and thirty-two times it (and seed 0 at sixty-four times it), "
    f"`ablations/{BUDGET_GRIDS[2]}.yaml` the FFN of 1x1 convs at eight times it, "
    f"`ablations/{BUDGET_GRIDS[3]}.yaml` seeds 3-5 of the locality FFN and the 1x1 convs at eight "
    f"times it, and `ablations/{BUDGET_GRIDS[4]}.yaml` locality in every block and in none at "
    "eight times it (and seeds 0-3 at sixteen times it).",
)
EFFICIENTMOD_STUDY = BudgetStudy(
    ("calibration/efficientmod_budget", "calibration/efficientmod_budget_long"),
    EFFICIENTMOD_COMPARISONS,
    "Undertraining bias in EfficientMod's two largest disagreements "
    "(`ablations/calibration/efficientmod_budget.yaml`): the hybrid against the deeper "
    "conv-only network and the modulation block against MBConv, at the profile's budget and at "
    "two, four and eight times it, paired by seed within each budget; "
    "`ablations/calibration/efficientmod_budget_long.yaml` trains both pairs at sixteen times "
    "it.",
)
CONTEXT_STUDY = BudgetStudy(
    ("calibration/efficientmod_context_budget",),
    CONTEXT_COMPARISONS,
    "Undertraining bias in EfficientMod's two smaller disagreements "
    "(`ablations/calibration/efficientmod_context_budget.yaml`): the full context branch "
    "(f+conv+g) against the depth-wise conv alone and against f+conv, at the profile's budget "
    "and at twice it, paired by seed within each budget.",
)
ACTIVATION_STUDY = BudgetStudy(
    ("calibration/localvit_activation_budget",),
    ACTIVATION_COMPARISONS,
    "Undertraining bias in LocalViT's activation disagreement "
    "(`ablations/calibration/localvit_activation_budget.yaml`): h-swish against ReLU6 in the "
    "locality FFN without channel attention, at the profile's budget and at twice it, paired "
    "by seed within each budget.",
)
PHI_STUDY = BudgetStudy(
    ("calibration/casvit_phi_budget",),
    PHI_COMPARISONS,
    "Undertraining bias in CAS-ViT's one disagreement "
    "(`ablations/calibration/casvit_phi_budget.yaml`): Phi with its spatial and channel "
    "operations against the spatial operation alone, at the profile's budget and at twice it, "
    "paired by seed within each budget.",
)
STUDIES = (LOCALVIT_STUDY, EFFICIENTMOD_STUDY, CONTEXT_STUDY, ACTIVATION_STUDY, PHI_STUDY)


def budget_runs(
    results: pd.DataFrame, grids: tuple[str, ...] = BUDGET_GRIDS, profile: str = "quick"
) -> pd.DataFrame:
    """The ok runs of the budget grids, each labelled with its arm and budget, shortest
    budget first (a grid's rows come in the order its runs finished, not by budget). A run two
    of the grids share (one network on one budget, spelled alike) counts once."""
    parts = [labelled_runs(results, g, profile, arm=ARM, budget=BUDGET) for g in grids]
    rows = pd.concat(parts, ignore_index=True).drop_duplicates("run_id")
    steps = {budget: optimizer_steps(mine) for budget, mine in rows.groupby("budget", sort=False)}
    rank = {budget: i for i, budget in enumerate(sorted(steps, key=steps.get))}
    return rows.sort_values("budget", key=lambda b: b.map(rank), kind="stable")


def paired_by_budget(
    results: pd.DataFrame,
    comparisons: tuple[BiasComparison, ...] = COMPARISONS,
    grids: tuple[str, ...] = BUDGET_GRIDS,
    metric: str = "test_top1",
    profile: str = "quick",
) -> Iterator[tuple[BiasComparison, str, int, pd.Series]]:
    """Per comparison and budget, shortest budget first: the budget, its optimizer steps and
    the paired differences ``cell - versus`` by seed. A budget at which a comparison's arms
    did not both run is left out of that comparison."""
    rows = budget_runs(results, grids, profile)
    if rows.empty:
        return
    budgets = list(dict.fromkeys([FIRST_BUDGET, *rows["budget"]]))
    for c in comparisons:
        for budget in budgets:
            mine = rows[rows["budget"] == budget]
            wide = mine.pivot_table(index="seed", columns="arm", values=metric, aggfunc="first")
            if c.cell not in wide or c.versus not in wide:
                continue
            diff = (wide[c.cell] - wide[c.versus]).dropna()
            if not diff.empty:
                yield c, budget, int(optimizer_steps(mine)), diff


def effect_by_budget(
    results: pd.DataFrame,
    comparisons: tuple[BiasComparison, ...] = COMPARISONS,
    grids: tuple[str, ...] = BUDGET_GRIDS,
    metric: str = "test_top1",
    profile: str = "quick",
) -> pd.DataFrame:
    """Per comparison and budget: the paired difference by seed (mean, 95% interval), and how
    far each budget moves it from the first budget's (Welch's t-test over the two budgets'
    paired differences; the budgets share no runs)."""
    out, first = [], {}
    for c, budget, steps, diff in paired_by_budget(results, comparisons, grids, metric, profile):
        base = first.setdefault(c, diff)
        welch = stats.ttest_ind(diff, base, equal_var=False).pvalue if len(diff) > 1 else None
        low, high = t_interval(diff)
        out.append(
            {
                "claim": c.claim,
                "claim grid": c.claim_grid,
                "comparison": f"{c.cell} vs {c.versus}",
                "budget": budget,
                "optimizer steps": steps,
                "seeds": len(diff),
                "Δ (pp)": diff.mean(),
                "CI low": low,
                "CI high": high,
                "Δ ± 95% CI": format_interval(diff.mean(), low, high, sign=True),
                "Δ − first budget's Δ": diff.mean() - base.mean(),
                "p (Welch)": welch if diff is not base else float("nan"),
            }
        )
    return pd.DataFrame(out)


@styled
def plot_effect_by_budget(effects: pd.DataFrame, grids: tuple[str, ...] = BUDGET_GRIDS) -> Figure:
    """Each comparison's Δ with its 95% t-interval against optimizer steps (log2 axis): where
    a line flattens, the effect no longer depends on the budget. The comparisons are set a
    little apart at each budget (DODGE of a doubling between neighbours), so their intervals
    do not hide each other; the ticks stay on the budgets. A budget run on one seed so far is a
    hollow point: it has no interval, and a missing bar must not read as a narrow one."""
    fig, (ax,) = new_figure(8, 4.5)
    count = effects["comparison"].nunique()
    palette = sns.color_palette("colorblind", count)
    for i, (color, (comparison, rows)) in enumerate(
        zip(palette, effects.groupby("comparison", sort=False), strict=True)
    ):
        x = rows["optimizer steps"] * 2 ** (DODGE * (i - (count - 1) / 2))
        y = rows["Δ (pp)"]
        err = [y - rows["CI low"], rows["CI high"] - y]
        ax.errorbar(x, y, yerr=err, marker="o", capsize=4, color=color, label=comparison)
        alone = (rows["seeds"] == 1).to_numpy()  # one seed: a point without an interval
        if alone.any():
            ax.plot(x[alone], y[alone], "o", color=color, markerfacecolor="white", zorder=3)
    steps = sorted(effects["optimizer steps"].unique())
    ax.set_xscale("log", base=2)
    ax.set_xticks(steps, [f"{s:,}" for s in steps])
    ax.minorticks_off()
    ax.axhline(0, color="black", linewidth=0.8)
    seeds = effects["seeds"]
    n = f"n = {seeds.min()}" if seeds.min() == seeds.max() else f"n = {seeds.min()}-{seeds.max()}"
    names = ", ".join([grids[0], *(g.split("/")[-1] for g in grids[1:])])
    ax.set_title(
        "\n".join(
            [
                *textwrap.wrap(names, TITLE_WIDTH),
                f"{n} seeds a cell · paired by seed: mean and 95% t-interval",
                *(["hollow: one seed, no interval"] if (seeds == 1).any() else []),
            ]
        )
    )
    ax.set_xlabel("optimizer steps (log scale)")
    ax.set_ylabel("Δ test top-1 (pp)")
    ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1))
    return fig


def cell_budgets(
    results: pd.DataFrame,
    epochs: pd.DataFrame,
    grids: tuple[str, ...] = BUDGET_GRIDS,
    metric: str = "test_top1",
    profile: str = "quick",
) -> pd.DataFrame:
    """Per arm and budget: mean test top-1 over seeds, what the budget added to it against the
    first budget, the cell's mean gain in validation top-1 over its last two validations, and
    its training top-1 over the last epoch's (augmented) batches: near the test top-1 the cell
    still underfits its training images, well above it the cell has fitted them."""
    rows = budget_runs(results, grids, profile)
    if rows.empty:
        return pd.DataFrame()
    gains = last_epoch_gains(epochs, rows).set_index("run_id")["last_gain"]
    train = last_train_top1(epochs)
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
                    "train top-1, last epoch (%)": train.reindex(mine["run_id"]).mean(),
                    "gain over the first budget (pp)": mine[metric].mean() - base,
                    "last validation gain (pp)": gains.reindex(mine["run_id"]).mean(),
                }
            )
    return pd.DataFrame(out)


def last_train_top1(epochs: pd.DataFrame) -> pd.Series:
    """Per run: training top-1 of its last epoch (NaN where the curves do not record it)."""
    if "train_top1" not in epochs:
        return pd.Series(dtype=float)
    curves = epochs.drop_duplicates(["run_id", "epoch"]).sort_values("epoch")
    return curves.groupby("run_id")["train_top1"].last()


def shown(df: pd.DataFrame, drop: tuple[str, ...] = ()) -> pd.DataFrame:
    """``df`` without the ``drop`` columns, its float columns as text for the report: p-values
    to 3 decimals, the rest to 2, blank where missing."""
    df = df.drop(columns=list(drop))
    for column in df.columns:
        if df[column].dtype.kind == "f":
            digits = 3 if column.startswith("p ") else 2
            df[column] = df[column].map(lambda v, d=digits: "" if pd.isna(v) else f"{v:.{d}f}")
    return df


def bias_lines(
    results: pd.DataFrame,
    epochs: pd.DataFrame,
    profile: str = "quick",
    results_dir: Path | None = None,
    study: BudgetStudy = LOCALVIT_STUDY,
) -> list[str]:
    """A study's paragraph and two tables, or nothing before two of its budgets have run; with
    ``results_dir``, the figure of the effects against the budget too."""
    effects = effect_by_budget(results, study.comparisons, study.grids, profile=profile)
    if effects.empty or effects["budget"].nunique() < 2:
        return []
    cells = cell_budgets(results, epochs, study.grids, profile=profile)
    figure = []
    if results_dir is not None:
        paper, table = study.grids[0].split("/")  # where the grid's other figures go
        folder = results_dir / "figures" / paper
        plot = plot_effect_by_budget(effects, study.grids)
        path = save(plot, folder, f"{table}_{profile}_effects")
        figure = [f"![effects by budget]({path[0].relative_to(results_dir).as_posix()})", ""]

    return [
        study.intro + " *Δ − first budget's Δ* is how far a longer budget moves the effect "
        "from the profile's (Welch's t-test); an effect that shrinks there was partly how fast "
        "its cells learn. A cell's *train top-1, last epoch* (over that epoch's augmented "
        "batches) near its test top-1 says it still underfits its training images; well above "
        "it, that it has fitted them.",
        "",
        markdown_table(shown(effects, drop=("Δ (pp)", "CI low", "CI high"))),
        "",
        *figure,
        markdown_table(shown(cells)),
        "",
    ]


def budget_lines(
    epochs: pd.DataFrame,
    results: pd.DataFrame,
    profile: str = "quick",
    results_dir: Path | None = None,
) -> list[str]:
    """The report's section: every grid's last validation gain, then the bias tables (and,
    with ``results_dir``, their figure)."""
    table = grid_budget(epochs, results)
    if not len(table):
        return []
    bias = [
        line
        for study in STUDIES
        for line in bias_lines(results, epochs, profile, results_dir, study)
    ]
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
