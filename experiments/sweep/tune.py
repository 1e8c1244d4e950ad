"""Tune, then compare: a grid naming ``sweep: <name>`` tunes the sweep's space in every cell with
an equal budget, then runs each cell at its best point (Google's tuning playbook)."""

from __future__ import annotations

import copy
from pathlib import Path

import pandas as pd
from optuna.trial import TrialState

from experiments.config import spec as specs
from experiments.config.schema import with_dotted
from experiments.config.spec import SpecError
from experiments.config.sweep_spec import check_space, load_sweep
from experiments.run import queue, store
from experiments.run.store import profile_stem
from experiments.sweep.export import trials_table
from experiments.sweep.study import optimize


# ----------------------------------------------------------------------------- grids
def find_sweep(grid: specs.GridSpec) -> Path:
    """``sweeps/<name>.yaml`` in the nearest folder above the grid spec that has one."""
    for parent in grid.path.resolve().parents:
        candidate = parent / "sweeps" / f"{grid.sweep}.yaml"
        if candidate.is_file():
            return candidate
    raise SpecError(grid.path, "sweep", f"no sweeps/{grid.sweep}.yaml above the grid spec")


def tune_cells(
    grid: specs.GridSpec,
    profile: str,
    storage: str | None = None,
    results_dir: Path | str | None = None,
) -> dict[str, dict]:
    """Tune the grid's sweep space in every cell (equal budget); ``{cell: {key: best value}}``.

    The cell's configuration replaces the sweep's base; the sweep gives the space, objective,
    sampler, pruner, budget and seed. Studies are ``sweep/<sweep>/<grid>/<cell>@<profile>``.
    """
    sweep = load_sweep(find_sweep(grid), build_models=False)
    if len(sweep.objectives) != 1:
        raise SpecError(grid.path, "sweep", f"{sweep.name} has several objectives; allowed: one")
    clash = sorted({p.key for p in sweep.space} & set(grid.axis_keys))
    if clash:
        raise SpecError(grid.path, "sweep", f"{sweep.name} tunes {clash}, which the grid varies")
    if sweep.trials is None:
        raise SpecError(sweep.path, "budget.trials", "tuning a grid needs a trial budget per cell")
    configs = {}
    for i, (cell, overrides, _) in enumerate(grid.cells()):
        config = with_dotted(grid.resolved_base(profile), overrides)
        check_space(sweep, config, where=f"grid {grid.name}, cell {cell!r}")  # before training
        configs[cell] = (i, config)
    best, tables = {}, []
    for cell, (i, config) in configs.items():
        study = optimize(
            sweep,
            profile,
            storage,
            base=config,
            name=f"sweep/{sweep.name}/{grid.name}/{cell}@{profile}",
            workdir=queue.runs_dir() / "sweeps" / sweep.name / grid.name / profile / str(i),
        )
        if not study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
            raise RuntimeError(f"tuning {grid.name} cell {cell!r}: no trial completed")
        best[cell] = sweep.decode(study.best_params)
        tables.append(trials_table(study).assign(cell=cell))
        print(f"[{grid.name}] tuned {cell}: {best[cell]} ({study.best_value:.4g})", flush=True)
    stem = profile_stem(grid.name, profile)
    store.atomic_write_csv(
        pd.concat(tables), store.results_root(results_dir) / "sweeps" / "tuned" / f"{stem}.csv"
    )
    return best


def apply_tuned(runs: list[dict], tuned: dict[str, dict]) -> list[dict]:
    """Each run at its cell's best point: new config, new run id, a ``tuned`` column."""
    out = []
    for run in runs:
        run = copy.deepcopy(run)
        run["config"] = with_dotted(run["config"], tuned.get(run["cell"], {}))
        run["run_id"] = specs.run_id(run["config"], run["seed"])
        run["tuned"] = ";".join(sorted(tuned.get(run["cell"], {})))
        out.append(run)
    return out
