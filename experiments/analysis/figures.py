"""Seaborn figures for ablation grids: cells with CIs, paired deltas, cost fronts, curves.

Why explicit Agg figures (``Figure`` + ``FigureCanvasAgg``) rather than pyplot: the same code
runs headless in ``make report`` and CI, never switches a notebook's backend, and leaves no
open figures behind; a notebook shows the returned ``Figure`` inline. Every interval drawn is
stated in the figure (95% Student-t over seeds unless a caption says otherwise), matching the
tables of ``experiments.analysis.stats``.
"""

from __future__ import annotations

import math
import textwrap
from collections.abc import Sequence
from pathlib import Path

import matplotlib as mpl
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from experiments.analysis import stats as an
from experiments.analysis import sweeps as sw
from experiments.analysis.claims import claim_test

STYLE = {"style": "whitegrid", "context": "notebook"}
VERDICT_COLORS = {
    "agrees": "#1b9e77",
    "disagrees": "#d95f02",
    "equivalent": "#7570b3",
    "inconclusive": "#7f7f7f",
}
SIDE_COLORS = {1: "#1b9e77", -1: "#d95f02", 0: "#7f7f7f"}  # exploratory: which side of 0
SAVE_RC = {"svg.hashsalt": "ablations", "svg.fonttype": "none"}


def new_figure(width: float, height: float, ncols: int = 1) -> tuple[Figure, list]:
    """A detached Agg figure styled by seaborn (no global rcParams change)."""
    with sns.axes_style(STYLE["style"]), sns.plotting_context(STYLE["context"]):
        fig = Figure(figsize=(width, height), layout="constrained")
        FigureCanvasAgg(fig)
        axes = fig.subplots(1, ncols, squeeze=False)[0]
    return fig, list(axes)


def styled(func):
    """Run a plotting function under the seaborn style, so text sizes apply to every artist."""

    def wrapper(*args, **kwargs):
        with sns.axes_style(STYLE["style"]), sns.plotting_context(STYLE["context"]):
            return func(*args, **kwargs)

    wrapper.__name__, wrapper.__doc__ = func.__name__, func.__doc__
    wrapper.__wrapped__ = func
    return wrapper


def _t95(x) -> tuple[float, float]:
    """Seaborn errorbar callable: the 95% Student-t interval of the mean."""
    lo, hi = an.t_interval(x, 0.95)
    mean = float(np.nanmean(x)) if len(x) else math.nan
    return (mean, mean) if math.isnan(lo) else (lo, hi)


def _grid_rows(results: pd.DataFrame, grid: str, profile: str | None) -> pd.DataFrame:
    rows = results[results["grid"] == grid]
    if profile is not None:
        rows = rows[rows["profile"] == profile]
    if rows["profile"].nunique() > 1:
        raise ValueError(f"{grid} has results of several profiles; pass profile=")
    return rows


def _seeds_text(ok: pd.DataFrame) -> str:
    counts = ok.groupby("cell")["seed"].nunique()
    if counts.empty:
        return "no ok runs"
    lo, hi = int(counts.min()), int(counts.max())
    return f"n = {lo} seeds" if lo == hi else f"n = {lo}-{hi} seeds per cell"


def _title(grid: str, rows: pd.DataFrame, what: str, metric: str) -> str:
    profile = rows["profile"].iloc[0] if len(rows) else ""
    ok = rows[(rows["status"] == "ok") & rows[metric].notna()] if metric in rows else rows
    where = f" · profile {profile}" if profile else ""
    return f"{grid}{where} · {_seeds_text(ok)}\n{what}"


def _empty(ax, text: str) -> None:
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, color="0.4")
    ax.set_xticks([])
    ax.set_yticks([])


def _forest(ax, x, y, err_low, err_high, colors) -> None:
    """Horizontal intervals, one colour each (errorbar takes one colour per call)."""
    for xi, yi, lo, hi, color in zip(x, y, err_low, err_high, colors, strict=False):
        ax.errorbar(
            xi,
            yi,
            xerr=[[lo], [hi]],
            fmt="D",
            color=color,
            elinewidth=2,
            capsize=4,
            markersize=7,
            zorder=3,
        )


def _label(cell: str, baseline: str) -> str:
    return f"{cell} (baseline)" if cell == baseline else cell


@styled
def plot_cells(
    results: pd.DataFrame, grid: str, *, metric: str = "test_top1", profile: str | None = None
) -> Figure:
    """Mean of ``metric`` per cell with its 95% t-interval; every seed drawn as a dot."""
    rows = _grid_rows(results, grid, profile)
    ok = rows[(rows["status"] == "ok") & rows[metric].notna()].copy()
    baseline = an.baseline_of(rows, grid)
    order = [_label(c, baseline) for c in an.cell_order(rows, grid)]
    ok["label"] = [_label(c, baseline) for c in ok["cell"]]
    fig, (ax,) = new_figure(7.5, 1.6 + 0.5 * max(len(order), 1))
    label = an.METRIC_LABELS.get(metric, metric)
    if ok.empty:
        _empty(ax, "no ok runs")
    else:
        sns.stripplot(
            data=ok,
            x=metric,
            y="label",
            order=order,
            ax=ax,
            color="0.55",
            size=5,
            jitter=False,
            alpha=0.8,
            label="seed",
        )
        sns.pointplot(
            data=ok,
            x=metric,
            y="label",
            order=order,
            ax=ax,
            errorbar=_t95,
            linestyle="none",
            color="C0",
            markers="D",
            capsize=0.25,
            err_kws={"linewidth": 2},
            label="mean ± 95% CI",
        )
        base = ok.loc[ok["cell"] == baseline, metric]
        if len(base):
            ax.axvline(base.mean(), color="0.3", linestyle=":", linewidth=1, label="baseline mean")
        handles, labels = ax.get_legend_handles_labels()
        unique = dict(zip(labels, handles, strict=False))
        if ax.get_legend() is not None:
            ax.get_legend().remove()
        fig.legend(
            unique.values(), unique.keys(), loc="outside lower center", ncols=3, fontsize="small"
        )
    ax.set_xlabel(label)
    ax.set_ylabel("")
    ax.set_title(_title(grid, rows, f"{label}: mean ± 95% t-CI, dots = seeds", metric))
    return fig


@styled
def plot_deltas(
    results: pd.DataFrame, grid: str, *, metric: str = "test_top1", profile: str | None = None
) -> Figure:
    """Forest plot: paired (by seed) difference of each cell to the baseline, 95% t-CI."""
    rows = _grid_rows(results, grid, profile)
    deltas = an.paired_deltas(rows, metric)
    deltas = deltas[deltas["n_pairs"] > 0].iloc[::-1]
    baseline = an.baseline_of(rows, grid)
    fig, (ax,) = new_figure(7.5, 1.6 + 0.5 * max(len(deltas), 1))
    label = an.METRIC_LABELS.get(metric, metric).replace(" (%)", "")
    if deltas.empty:
        _empty(ax, "no seed-paired runs against the baseline")
    else:
        y = np.arange(len(deltas))
        lo = (deltas["delta"] - deltas["delta_low"]).fillna(0).to_numpy()
        hi = (deltas["delta_high"] - deltas["delta"]).fillna(0).to_numpy()
        colors = [
            SIDE_COLORS[int(low > 0) - int(high < 0)] if not math.isnan(low) else "0.5"
            for low, high in zip(deltas["delta_low"], deltas["delta_high"], strict=False)
        ]
        _forest(ax, deltas["delta"].to_numpy(float), y, lo, hi, colors)
        ax.axvline(0, color="0.2", linewidth=1)
        ax.set_yticks(y, deltas["cell"])
        for yi, r in zip(y, deltas.itertuples(), strict=False):
            p = an.format_p(r.p_holm)
            p = ("p" + p if p.startswith("<") else f"p={p}") if p else "p n/a"
            text = f"{p} (Holm over the grid), n={r.n_pairs}"
            ax.annotate(
                text,
                (1.0, yi),
                xycoords=("axes fraction", "data"),
                xytext=(6, 0),
                textcoords="offset points",
                va="center",
                fontsize="small",
                color="0.3",
            )
        ax.margins(y=0.15)
    ax.set_xlabel(f"Δ {label} vs {baseline} (pp), paired by seed")
    ax.set_ylabel("")
    what = (
        "exploratory: Δ to the baseline, mean ± 95% t-CI (unadjusted; "
        "green > 0, orange < 0, grey: CI spans 0)"
    )
    ax.set_title(_title(grid, rows, what, metric))
    return fig


def _pareto_line(ax, x: np.ndarray, y: np.ndarray, x_lower: bool) -> None:
    mask = an.pareto_mask(x, y, x_lower=x_lower)
    if mask.sum() >= 1:
        order = np.argsort(x[mask])
        ax.plot(
            x[mask][order],
            y[mask][order],
            color="C3",
            linestyle="--",
            linewidth=1.2,
            drawstyle="steps-post" if x_lower else "steps-pre",
            label="Pareto front",
            zorder=1,
        )
        ax.scatter(x[mask], y[mask], s=140, facecolors="none", edgecolors="C3", zorder=2)


@styled
def plot_cost(
    results: pd.DataFrame, grid: str, *, metric: str = "test_top1", profile: str | None = None
) -> Figure:
    """Accuracy against MACs and against parameters, with the Pareto front.

    Speed is not drawn: a grid run's throughput depends on what else the machine ran at the
    time; measured speed comes from ``make bench`` (``results/bench/``), in isolation.
    """
    rows = _grid_rows(results, grid, profile)
    stats = an.cell_stats(rows, metric)
    stats = stats[stats["n"] > 0]
    fig, axes = new_figure(12, 5.0, ncols=2)
    label = an.METRIC_LABELS.get(metric, metric)
    panels = [
        ("macs", 1e-6, "MACs per image (MMACs)", True, "lower cost is better"),
        ("params", 1e-6, "parameters (M)", True, "fewer parameters is better"),
    ]
    palette = dict(
        zip(stats["cell"], sns.color_palette("colorblind", max(len(stats), 1)), strict=False)
    )
    for ax, (column, scale, xlabel, lower, hint) in zip(axes, panels, strict=False):
        data = stats[stats[column].notna()] if column in stats else stats.iloc[:0]
        if data.empty:
            _empty(ax, f"no {xlabel} recorded")
            ax.set_xlabel(xlabel)
            continue
        x = data[column].to_numpy(float) * scale
        y = data["mean"].to_numpy(float)
        err = np.vstack(
            [(data["mean"] - data["ci_low"]).fillna(0), (data["ci_high"] - data["mean"]).fillna(0)]
        )
        _pareto_line(ax, x, y, lower)
        for xi, yi, e0, e1, cell in zip(x, y, err[0], err[1], data["cell"], strict=False):
            ax.errorbar(
                xi,
                yi,
                yerr=[[e0], [e1]],
                fmt="o",
                color=palette[cell],
                capsize=3,
                label=cell,
                markersize=7,
                zorder=3,
            )
        ax.ticklabel_format(axis="x", style="plain", useOffset=False)
        ax.set_xlabel(f"{xlabel} — {hint}")
        ax.set_ylabel(f"{label}, mean ± 95% t-CI")
    handles, labels = axes[0].get_legend_handles_labels()
    if handles:
        unique = dict(zip(labels, handles, strict=False))
        fig.legend(
            unique.values(),
            unique.keys(),
            loc="outside right center",
            fontsize="small",
            title="cell",
        )
    fig.suptitle(_title(grid, rows, f"{label} against cost (Pareto front dashed)", metric))
    return fig


@styled
def plot_curves(
    epochs: pd.DataFrame,
    grid: str,
    *,
    cells: Sequence[str] | None = None,
    results: pd.DataFrame | None = None,
    y: str = "val_top1",
    profile: str | None = None,
) -> Figure:
    """``y`` per epoch of chosen cells: mean over seeds with a 95% t-interval band."""
    rows = epochs[epochs["grid"] == grid]
    if profile is not None and "profile" in rows:
        rows = rows[rows["profile"] == profile]
    if cells is None:  # every cell, in the grid's order
        cells = (
            an.cell_order(results, grid)
            if results is not None and (results["grid"] == grid).any()
            else list(dict.fromkeys(rows["cell"]))
        )
    # epochs without the metric (a profile that validates every k-th epoch) are not points
    rows = rows[rows["cell"].isin(cells) & rows[y].notna()]
    fig, (ax,) = new_figure(10, 5)
    label = an.METRIC_LABELS.get(y, y)
    n = rows.groupby("cell")["seed"].nunique()
    seeds = (
        "no runs"
        if n.empty
        else (
            f"n = {n.min()} seeds"
            if n.min() == n.max()
            else f"n = {n.min()}-{n.max()} seeds per cell"
        )
    )
    if rows.empty:
        _empty(ax, "no per-epoch curves recorded")
    else:
        sns.lineplot(
            data=rows,
            x="epoch",
            y=y,
            hue="cell",
            hue_order=list(cells),
            errorbar=_t95,
            marker="o",
            ax=ax,
            palette=sns.color_palette("colorblind" if len(cells) <= 10 else "husl", len(cells)),
        )
        ax.legend(title="cell", fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1))
        ax.xaxis.get_major_locator().set_params(integer=True)
    where = f" · profile {profile}" if profile else ""
    ax.set_title(f"{grid}{where} · {seeds}\n{label} per epoch: mean over seeds, 95% t-CI band")
    ax.set_xlabel("epoch")
    ax.set_ylabel(label)
    return fig


@styled
def plot_claims(verdicts: pd.DataFrame) -> Figure:
    """Each paper's claims in its own panel row: ours (left) and the paper's Δ (right).

    Our Δ is signed so that right of zero means the claim's direction (claims of no difference
    keep their sign and show the margin as a band, not-worse claims the allowed loss); its interval is the Holm-adjusted one the
    verdict used. Every panel has its own x-scale, so a 0.5 pp effect is as readable as a 20 pp
    one, and the paper's ImageNet Δ never shares an axis with ours.
    """
    ran = verdicts[verdicts["verdict"] != "not run"]
    if "profile" not in ran:
        ran = ran.assign(profile="")
    # one panel row per paper and profile: each profile is its own family (and budget)
    panels = list(dict.fromkeys(zip(ran["paper"], ran["profile"].fillna(""), strict=True)))
    several = len({prof for _, prof in panels}) > 1
    if not panels:
        fig, (ax,) = new_figure(10, 2.5)
        _empty(ax, "no claim has results yet")
        ax.set_title("paper claims: not run yet")
        return fig

    def panel(paper: str, prof: str) -> pd.DataFrame:
        return ran[(ran["paper"] == paper) & (ran["profile"].fillna("") == prof)]

    heights = [max(1, len(panel(*key))) + 1.2 for key in panels]
    fig = Figure(figsize=(12, 0.5 * sum(heights) + 1.0), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(len(panels), 2, squeeze=False, width_ratios=[3, 1],
                        gridspec_kw={"height_ratios": heights})  # fmt: skip
    for (ax, ax_paper), (paper, prof) in zip(axes, panels, strict=True):
        rows = panel(paper, prof).iloc[::-1]
        sign = rows["expected_sign"].astype(float).replace(0.0, 1.0).to_numpy()
        delta = rows["delta"].to_numpy(float) * sign
        lo = np.where(sign > 0, rows["ci_low"], -rows["ci_high"]).astype(float)
        hi = np.where(sign > 0, rows["ci_high"], -rows["ci_low"]).astype(float)
        yv = np.arange(len(rows))
        colors = [VERDICT_COLORS.get(v, "0.5") for v in rows["verdict"]]
        _forest(ax, delta, yv, np.nan_to_num(delta - lo), np.nan_to_num(hi - delta), colors)
        for yi, r in zip(yv, rows.itertuples(), strict=True):
            band = {"equivalence": r.margin, "non-inferiority": 0.0}.get(claim_test(r))
            if band is None and r.verdict == "equivalent":  # a directional claim read by TOST
                band = r.margin
            if band is not None:  # the margin: ±margin, or the loss a not-worse claim allows
                ax.fill_betweenx([yi - 0.3, yi + 0.3], -r.margin, band, color="0.85", zorder=1)
        ax.axvline(0, color="0.2", linewidth=1)
        labels = [
            "\n".join(textwrap.wrap(f"{r.grid.split('/')[-1]}: {r.claim}", 60))
            for r in rows.itertuples()
        ]
        ax.set_yticks(yv, labels, fontsize="small")
        ax.set_ylim(-0.7, len(rows) - 0.3)
        ax.set_xlabel("ours: Δ top-1 in the claimed direction (pp), Holm-adjusted CI")
        family = int(rows["family_size"].max())
        name = f"{paper} · {prof}" if several and prof else paper
        ax.set_title(f"{name}: {len(rows)} of {family} claims run, Holm across all {family}",
                     loc="left")  # fmt: skip
        paper_delta = rows["paper_delta"].to_numpy(float) * sign
        shown = np.isfinite(paper_delta)
        if shown.any():
            ax_paper.scatter(paper_delta[shown], yv[shown], marker="x", color="0.2", s=45)
            ax_paper.axvline(0, color="0.2", linewidth=1)
            span = np.append(paper_delta[shown], 0.0)
            pad = 0.15 * max(span.max() - span.min(), 1.0)
            ax_paper.set_xlim(span.min() - pad, span.max() + pad)
        else:
            _empty(ax_paper, "no published Δ")
        ax_paper.set_ylim(ax.get_ylim())
        ax_paper.set_yticks(yv, [""] * len(yv))
        ax_paper.set_xlabel("paper Δ, ImageNet")
    for verdict, color in VERDICT_COLORS.items():
        axes[0][0].scatter([], [], c=color, marker="D", label=verdict)
    axes[0][0].legend(loc="best", fontsize="small", title="verdict", title_fontsize="small")
    fig.suptitle(
        "Did each paper claim hold here? (grey band: the margin of a no-difference claim, "
        "or the loss a not-worse claim allows)"
    )
    return fig


def _pruned(trials: pd.DataFrame) -> pd.DataFrame:
    """Pruned trials with the last validation top-1 they reported, in percent."""
    if "state" not in trials:
        return trials.iloc[:0].assign(last=[])
    rows = trials[trials["state"] == "PRUNED"]
    last = pd.to_numeric(rows.get("user_attrs_last_report"), errors="coerce")
    return rows.assign(last=100 * last if last is not None else math.nan)


def _integer_ticks(axis) -> None:
    axis.set_major_locator(mpl.ticker.MaxNLocator(integer=True))


@styled
def plot_sweep(trials: pd.DataFrame, name: str, direction: str | None = None) -> Figure:
    """Objective per trial with the best so far (one objective), or the front (two).

    Two objectives are drawn like the grids' cost plots: the cost (the minimised objective) on
    x, accuracy on y. Pruned trials are shown at the last value they reported.
    """
    objectives = sw.sweep_objectives(trials)
    directions = sw.sweep_directions(trials) if direction is None else [direction] * 2
    labels = sw.sweep_labels(trials)
    done = trials[trials.get("state", "COMPLETE") == "COMPLETE"]
    pruned = _pruned(trials)
    fig, (ax,) = new_figure(8, 5)
    if not objectives or done.empty:
        _empty(ax, "no complete trials")
    elif len(objectives) == 1:
        col = objectives[0]
        done = done.sort_values("number")
        best = done[col].cummax() if directions[0] == "maximize" else done[col].cummin()
        ax.scatter(done["number"], done[col], color="C0", s=40, label="complete trial")
        if pruned["last"].notna().any():
            ax.scatter(pruned["number"], pruned["last"], marker="x", color="0.45", s=40,
                       label="pruned (last val top-1 reported)")  # fmt: skip
        ax.plot(done["number"], best, color="C3", drawstyle="steps-post", label="best so far")
        ax.set_xlabel("trial number")
        ax.set_ylabel(f"{labels[0]} ({directions[0]})")
        _integer_ticks(ax.xaxis)
        ax.legend(fontsize="small")
    else:
        ix, iy = (1, 0) if directions[:2] == ["maximize", "minimize"] else (0, 1)
        x = done[objectives[ix]].to_numpy(float)
        y = done[objectives[iy]].to_numpy(float)
        sx = 1 if directions[ix] == "minimize" else -1
        sy = 1 if directions[iy] == "maximize" else -1
        mask = an.pareto_mask(sx * x, sy * y)
        ax.scatter(x, y, color="C0", s=40, label="complete trial")
        ax.scatter(x[mask], y[mask], s=140, facecolors="none", edgecolors="C3", label="Pareto")
        ax.set_xlabel(f"{labels[ix]} ({directions[ix]})")
        ax.set_ylabel(f"{labels[iy]} ({directions[iy]})")
        ax.legend(fontsize="small")
    states = trials["state"].value_counts().to_dict() if "state" in trials else {}
    counts = ", ".join(f"{v} {k.lower()}" for k, v in states.items())
    ax.set_title(f"sweep {name} · {len(trials)} trials ({counts})")
    return fig


def save(fig: Figure, directory: str | Path, stem: str, formats=("png", "svg")) -> list[Path]:
    """Write ``<directory>/<stem>.{png,svg}``; SVG without a date and with stable ids (diffable)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    with mpl.rc_context(SAVE_RC):
        for fmt in formats:
            path = directory / f"{stem}.{fmt}"
            metadata = {"Date": None} if fmt == "svg" else {"Software": None}
            fig.savefig(path, format=fmt, dpi=120, metadata=metadata)
            paths.append(path)
    return paths


def grid_figures(
    results: pd.DataFrame,
    epochs: pd.DataFrame | None,
    grid: str,
    out_dir: str | Path,
    *,
    profile: str | None = None,
    metric: str = "test_top1",
) -> dict[str, list[Path]]:
    """All figures of one grid under ``out_dir`` as ``<table>_<profile>_<kind>.{png,svg}``."""
    rows = _grid_rows(results, grid, profile)
    profile = profile or (rows["profile"].iloc[0] if len(rows) else "")
    table = grid.split("/", 1)[-1].replace("/", "_")
    stem = f"{table}_{profile}" if profile else table
    made = {
        "cells": plot_cells(rows, grid, metric=metric),
        "deltas": plot_deltas(rows, grid, metric=metric),
        "cost": plot_cost(rows, grid, metric=metric),
    }
    if epochs is not None and (epochs["grid"] == grid).any():
        made["curves"] = plot_curves(epochs, grid, results=rows, profile=profile or None)
    return {kind: save(fig, out_dir, f"{stem}_{kind}") for kind, fig in made.items()}


def _categorical(values: pd.Series) -> bool:
    """Booleans, strings and lists are categories; only true numbers get a continuous axis."""
    if values.dtype == bool or values.dropna().map(type).eq(bool).all():
        return True
    return pd.to_numeric(values, errors="coerce").isna().any()


@styled
def plot_sweep_params(trials: pd.DataFrame, name: str) -> Figure:
    """The accuracy objective (y, as in the grid plots) against each searched parameter (x).

    Booleans and other categories get a categorical axis; numbers a continuous one (log for
    wide positive ranges); pruned trials appear at the last value they reported.
    """
    objectives = sw.sweep_objectives(trials)
    directions = sw.sweep_directions(trials)
    labels = sw.sweep_labels(trials)
    params = [c for c in trials.columns if c.startswith("params_")]
    done = trials[trials.get("state", "COMPLETE") == "COMPLETE"]
    pruned = _pruned(trials)
    fig, axes = new_figure(4.2 * max(len(params), 1), 4.2, ncols=max(len(params), 1))
    if not objectives or not params or done.empty:
        _empty(axes[0], "no complete trials with parameters")
        return fig
    k = directions.index("maximize") if "maximize" in directions else 0
    y = done[objectives[k]]
    for ax, column in zip(axes, params, strict=False):
        if _categorical(trials[column]):
            order = sorted(trials[column].dropna().astype(str).unique())
            sns.stripplot(x=done[column].astype(str), y=y, ax=ax, color="C0", order=order)
            if pruned["last"].notna().any():
                sns.stripplot(x=pruned[column].astype(str), y=pruned["last"], ax=ax,
                              color="0.45", marker="X", order=order)  # fmt: skip
        else:
            x = pd.to_numeric(done[column])
            ax.scatter(x, y, color="C0", s=40)
            if pruned["last"].notna().any():
                ax.scatter(pd.to_numeric(pruned[column]), pruned["last"], marker="x",
                           color="0.45", s=40)  # fmt: skip
            every = pd.to_numeric(trials[column])
            if (every > 0).all() and every.max() / every.min() > 10:
                ax.set_xscale("log")
            elif (every.dropna() % 1 == 0).all():
                _integer_ticks(ax.xaxis)
        ax.set_xlabel(column.removeprefix("params_"))
        ax.set_ylabel(f"{labels[k]} ({directions[k]})")
    n_pruned = int(pruned["last"].notna().sum())
    extra = f", {n_pruned} pruned shown as grey x at their last report" if n_pruned else ""
    fig.suptitle(f"sweep {name}: objective per parameter ({len(done)} complete trials{extra})")
    return fig
