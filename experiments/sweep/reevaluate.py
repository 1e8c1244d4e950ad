"""Name a sweep's winner only after its top trials have been trained again on more seeds.

Why: every trial of a sweep trains with one seed, and the best of N single-seed trials is
partly the luckiest (a 3-seed sd of 0.5-0.7 pp is the size of the differences a learning-rate
sweep ranks). So the ``top`` trials (the best distinct configurations of a single objective,
or the Pareto set of several, best first objective first) are trained with ``seeds`` seeds
each (the trial's own seed is reused, never retrained), and the winner is the one with the
best mean over seeds of the first objective. Rows go to ``results/sweeps/reeval/<name>.csv``;
a run already in that table is never trained again, so a rerun only fills what is missing.
"""

from __future__ import annotations

import math

import optuna
import pandas as pd
from optuna.trial import FixedTrial, TrialState

from experiments.analysis.sweeps import reevaluated
from experiments.config.sweep_spec import SweepSpec
from experiments.run import store
from experiments.run.identity import run_id


def top_trials(study: optuna.Study, sweep: SweepSpec, k: int) -> list[optuna.trial.FrozenTrial]:
    """The best ``k`` complete trials with distinct configurations, best first."""
    done = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    done = [t for t in done if "duplicate_of" not in t.user_attrs]
    sign = 1 if sweep.directions[0] == "maximize" else -1
    if len(sweep.metrics) > 1:
        front = {t.number for t in study.best_trials}
        done = [t for t in done if t.number in front]
    ranked = sorted(done, key=lambda t: (-sign * t.values[0], t.number))
    out, seen = [], set()
    for t in ranked:
        key = tuple(sorted((k_, str(v)) for k_, v in t.params.items()))
        if key not in seen:
            seen.add(key)
            out.append(t)
    return out[:k]


def reevaluate(
    sweep: SweepSpec,
    study: optuna.Study,
    base: dict,
    path,
    top: int = 3,
    seeds: int = 3,
    progress: bool = False,
) -> pd.DataFrame:
    """Train the top trials on ``seeds`` seeds (reusing what exists); returns the table."""
    from experiments.run.train import train_run

    table = store.read_table(path) if path.exists() else pd.DataFrame()
    have = set(table["run_id"]) if "run_id" in table else set()
    rows = table.to_dict("records")
    for rank, trial in enumerate(top_trials(study, sweep, top)):
        config = sweep.sample(FixedTrial(trial.params), base)
        for seed in range(sweep.seed, sweep.seed + seeds):
            rid = run_id(config, seed)
            if rid in have:
                continue
            row = {"run_id": rid, "trial": trial.number, "rank": rank, "seed": seed,
                   **{f"params_{k}": v for k, v in trial.params.items()}}  # fmt: skip
            if seed == sweep.seed:  # the trial itself: its result, not a retrain
                row.update({m: v for m, v in zip(sweep.metrics, trial.values, strict=True)})
                row["source"] = "trial"
            else:
                result = train_run(config["model"], config["data"], config["train"],
                                   seed=seed, progress=progress)  # fmt: skip
                row.update({m: result.get(m) for m in sweep.metrics})
                row["status"], row["source"] = result["status"], "retrained"
            rows.append(row)
            have.add(rid)
            store.atomic_write_csv(pd.DataFrame(rows), path)
    return pd.DataFrame(rows)


def winner(table: pd.DataFrame, sweep: SweepSpec) -> pd.DataFrame:
    """Per re-evaluated trial: mean and 95% t-interval of the first objective; best first."""
    return reevaluated(table, sweep.metrics[0], sweep.directions[0])


def winner_text(table: pd.DataFrame, sweep: SweepSpec) -> str:
    ranked = winner(table, sweep)
    if ranked.empty:
        return "re-evaluation: no complete trial to re-evaluate"
    lines = [f"re-evaluated over seeds ({sweep.metrics[0]}, mean ± 95% t-CI):"]
    for r in ranked.itertuples():
        half = (r.ci_high - r.ci_low) / 2 if not math.isnan(r.ci_low) else math.nan
        lines.append(f"  trial {r.trial}: {r.mean:.3f} ± {half:.3f} over {r.seeds} seeds")
    lines.append(f"winner: trial {int(ranked.iloc[0]['trial'])}")
    return "\n".join(lines)
