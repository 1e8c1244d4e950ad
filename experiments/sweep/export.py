"""A sweep's outputs: its trials table, the figures and the printed summary."""

from __future__ import annotations

from pathlib import Path

import optuna
import pandas as pd
from optuna.trial import TrialState

from experiments.config.sweep_spec import SweepSpec
from experiments.run import queue, store
from experiments.run.store import profile_stem


# ----------------------------------------------------------------------------- outputs
def trials_table(study: optuna.Study) -> pd.DataFrame:
    """Optuna's trials dataframe with user attrs; directions on every row for the notebooks.

    A PRUNED trial's value in Optuna is its last report (``val_top1`` as a fraction, not the
    objective's percent), so it moves to ``user_attrs_last_report`` and ``value`` stays empty.
    """
    df = study.trials_dataframe(
        attrs=(
            "number",
            "value",
            "datetime_start",
            "datetime_complete",
            "duration",
            "params",
            "user_attrs",
            "state",
        )
    )
    df = df.drop(columns=[c for c in ("user_attrs_heartbeat",) if c in df])
    pruned = df["state"] == "PRUNED" if "state" in df else []
    if "value" in df and any(pruned):
        df.loc[pruned, "user_attrs_last_report"] = df.loc[pruned, "value"]
        df.loc[pruned, "value"] = float("nan")
    for key in ("directions", "objectives"):
        df[f"user_attrs_{key}"] = study.user_attrs.get(key)
    return df


def result_path(sweep_name: str, profile: str, results_dir: Path | None = None) -> Path:
    """``results/sweeps/<name>.csv`` for the default profile; other profiles get a suffix."""
    stem = profile_stem(sweep_name, profile)
    return store.results_root(results_dir) / "sweeps" / f"{stem}.csv"


def export(study: optuna.Study, path: Path, figures: bool = True) -> pd.DataFrame:
    """Write the trials table atomically and its figures under ``results/figures/sweeps``."""
    df = trials_table(study)
    store.atomic_write_csv(df, path)
    if figures and not df.empty:
        from experiments.analysis import figures as fg

        out = path.parent.parent / "figures" / "sweeps"
        fg.save(fg.plot_sweep(df, path.stem), out, path.stem)
        fg.save(fg.plot_sweep_params(df, path.stem), out, f"{path.stem}_params")
    return df


def summary(study: optuna.Study, sweep: SweepSpec) -> str:
    """Best value(s) and params (the Pareto set with several objectives), pruning and epochs."""
    trials = study.get_trials(deepcopy=False)
    states = {s.name.lower(): sum(t.state == s for t in trials) for s in TrialState}
    lines = [
        f"sweep {study.study_name}: {len(trials)} trials ("
        + ", ".join(f"{v} {k}" for k, v in states.items() if v)
        + ")"
    ]

    def show(t: optuna.trial.FrozenTrial) -> str:
        values = ", ".join(f"{m}={v:.4g}" for m, v in zip(sweep.metrics, t.values, strict=True))
        return f"  trial {t.number}: {values}  {sweep.decode(t.params)}"

    if states["complete"]:
        best = study.best_trials if len(sweep.metrics) > 1 else [study.best_trial]
        # a repeat of a configuration is the same point, listed once
        best = [t for t in best if "duplicate_of" not in t.user_attrs] or best
        head = "best" if len(sweep.metrics) == 1 else f"Pareto set ({len(best)} configurations)"
        lines.append(f"{head} ({', '.join(f'{m} {d}' for m, d in sweep.objectives)}):")
        lines += [show(t) for t in sorted(best, key=lambda t: t.number)]
    done = [t for t in trials if t.state in queue.FINISHED and "duplicate_of" not in t.user_attrs]
    run = sum(t.user_attrs.get("epochs_run", 0) for t in done)
    planned = sum(t.user_attrs.get("epochs_planned", 0) for t in done)
    saved = f", {100 * (1 - run / planned):.0f}% saved by pruning" if planned else ""
    lines.append(f"epochs trained: {run} of {planned} without pruning{saved}")
    twins = sum("duplicate_of" in t.user_attrs for t in trials)
    if twins:
        lines.append(f"{twins} trial(s) repeated an earlier configuration and reused its result")
    return "\n".join(lines)
