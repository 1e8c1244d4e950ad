"""The report's *Sweeps* section: each sweep's trials, its figure, and the winner its
re-evaluation over seeds names (or that none is named yet)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from experiments.analysis import figures as fg
from experiments.analysis import sweeps as sw
from experiments.analysis.markdown import markdown_table
from experiments.analysis.stats import format_interval, format_p


def sweeps_section(results_dir: Path, figures: bool = True) -> list[str]:
    """Markdown lines for every sweep under ``results/sweeps/``."""
    sweeps = sw.load_sweeps(results_dir / "sweeps")
    lines = ["## Sweeps", ""]
    if not sweeps:
        lines += ["no sweep results yet", ""]
    for name, trials in sweeps.items():
        states = trials["state"].value_counts().to_dict() if "state" in trials else {}
        counts = ", ".join(f"{v} {k.lower()}" for k, v in states.items())
        lines += [f"### {name}", "", f"{len(trials)} trials ({counts}).", ""]
        if len(sw.sweep_objectives(trials)) == 1:
            best = sw.best_trials(trials).rename(
                columns={"number": "trial", "value": sw.sweep_labels(trials)[0]}
            )
            lines += [markdown_table(readable(best)), ""]
        if figures:
            paths = fg.save(fg.plot_sweep(trials, name), results_dir / "figures" / "sweeps", name)
            lines += [f"![{name}]({paths[0].relative_to(results_dir).as_posix()})", ""]
        lines += reeval_lines(trials, sw.load_reeval(results_dir / "sweeps", name))
    return lines


def readable(table: pd.DataFrame) -> pd.DataFrame:
    """A trial table as a reader wants it: trial numbers and seed counts as integers, a
    hyper-parameter to 3 significant digits without its ``params_`` prefix, a metric to 2
    decimals (the seed-to-seed spread is a percentage point)."""
    out = table.copy()
    for col in out:
        values = out[col]
        if col in ("trial", "seeds"):
            out[col] = values.map(lambda v: "" if pd.isna(v) else str(int(v)))
        elif col.startswith("params_") and pd.api.types.is_float_dtype(values):
            out[col] = values.map(lambda v: "" if pd.isna(v) else f"{v:.3g}")
        elif pd.api.types.is_float_dtype(values):
            out[col] = values.map(lambda v: "" if pd.isna(v) else f"{v:.2f}")
    return out.rename(columns=lambda c: c.removeprefix("params_"))


def reeval_lines(trials: pd.DataFrame, reeval: pd.DataFrame | None) -> list[str]:
    """A sweep's winner as its re-evaluation names it (every trial trains on one seed)."""
    if reeval is None:
        return ["Not re-evaluated on more seeds yet: no winner is named.", ""]
    metric, direction = sw.sweep_labels(trials)[0], sw.sweep_directions(trials)[0]
    ranked = sw.reevaluated(reeval, metric, direction)
    if ranked.empty:
        return []
    shown = readable(ranked.drop(columns=["mean", "ci_low", "ci_high", "p vs winner"]))
    shown = (
        shown.astype(object)
        .where(shown.notna(), "")
        .assign(
            **{
                f"{metric}, mean ± 95% CI": [
                    format_interval(r.mean, r.ci_low, r.ci_high) for r in ranked.itertuples()
                ],
                "p vs winner (Welch)": [format_p(p) for p in ranked["p vs winner"]],
            }
        )
    )
    best = ranked.iloc[0]
    close = ranked["p vs winner"].iloc[1:].ge(0.05).sum()
    caveat = (
        f" Its seeds do not tell it from {close} of the others (Welch p ≥ 0.05): more seeds "
        "would be needed to separate them."
        if close
        else ""
    )
    return [
        f"Its {len(ranked)} best distinct trials trained again on more seeds (each trial's own "
        f"seed reused, not retrained; `results/sweeps/{sw.REEVAL_DIR}/`), best mean {metric} "
        f"first: the winner is trial {int(best['trial'])} over {int(best['seeds'])} seeds."
        + caveat,
        "",
        markdown_table(shown),
        "",
    ]
