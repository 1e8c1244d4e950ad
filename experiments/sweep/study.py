"""Optuna sweeps: tune nuisance hyper-parameters per variant, prune, trade accuracy against cost.

A sweep spec (``ablations/sweeps/<name>.yaml``) has a base configuration (model, data, train, as
in a grid), a search space over dotted keys, one or more objectives, a sampler, a pruner and a
budget. Everything is checked before anything trains: each point of the space is built on the
meta device, so an unknown toggle fails here with a :class:`SpecError` (exit 2).

Running: one study ``sweep/<name>@<profile>`` in the grids' storage (a journal file under
``runs/`` or any URL), opened with ``load_if_exists``, so workers in other processes or on other
machines join by running the same command. ``MaxTrialsCallback`` counts COMPLETE and PRUNED
trials; a second callback also counts trials running in other live workers, so N workers stop
at the budget, not up to N-1 past it (only a near-simultaneous start can still add one). Liveness is the grids' (``queue.Heartbeat``): a RUNNING trial with a stale
heartbeat is failed and its params enqueued again; the retry resumes the dead trial's checkpoint.
Every trial trains with the sweep's seed, so trials differ by their parameters only.

Pruning: optuna_integration's ``PyTorchLightningPruningCallback`` (it imports ``lightning.pytorch``)
reports ``val_top1`` (``val_loss`` for a loss objective) after each epoch. One process per trial:
DDP inside a pruned trial needs an RDB storage (the callback refuses others).

Tune, then compare: a grid naming ``sweep: <name>`` calls :func:`tune_cells` first, which tunes
the sweep's space in every cell with an equal budget; the grid then runs each cell at its best
point (Google's tuning playbook: compare variants at their best nuisance setting).
"""

from __future__ import annotations

import os
import shutil
import warnings
from pathlib import Path

import optuna
from optuna.trial import TrialState

from experiments.config.spec import SpecError
from experiments.config.sweep_spec import PRUNERS, SAMPLERS, SweepSpec
from experiments.run import queue
from experiments.run.identity import run_id
from experiments.run.recipe import TrainConfig

TRIAL_ATTRS = (
    "status",
    "best_val_top1",
    "val_top1",
    "test_top1",
    "params",
    "macs",
    "train_img_s",
    "infer_img_s",
    "epochs_run",
    "restart_epoch",
    "wall_s",
)


class TrialFailed(Exception):
    """A trial raised; it is stored as FAIL with its error and the sweep goes on."""


# ----------------------------------------------------------------------------- running
def make_sampler(sweep: SweepSpec, seed: int) -> optuna.samplers.BaseSampler:
    name, kwargs = sweep.sampler
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return SAMPLERS[name](seed=seed, **kwargs)


def make_pruner(sweep: SweepSpec) -> optuna.pruners.BasePruner:
    name, kwargs = sweep.pruner
    return PRUNERS[name](**kwargs)


def open_study(sweep: SweepSpec, name: str, storage: str | None = None) -> optuna.Study:
    """Create or join the study; its directions must match the spec's objectives."""
    study = optuna.create_study(
        study_name=name,
        storage=queue.open_storage(storage),
        load_if_exists=True,
        directions=sweep.directions,
    )
    have = [d.name.lower() for d in study.directions]
    if have != sweep.directions:
        raise SpecError(
            sweep.path,
            "objectives",
            f"study {name!r} in this storage was created with directions {have}; keep the "
            "objectives, rename the sweep or use another --storage",
        )
    attrs = {"directions": ";".join(sweep.directions), "objectives": ";".join(sweep.metrics)}
    for k, v in attrs.items():
        if study.user_attrs.get(k) != v:
            study.set_user_attr(k, v)
    return study


def finished(study: optuna.Study) -> int:
    return len(study.get_trials(deepcopy=False, states=queue.FINISHED))


class Objective:
    """Train one sampled configuration; the value(s) are the spec's objective metrics."""

    def __init__(self, sweep: SweepSpec, base: dict, workdir: Path, progress: bool = False):
        self.sweep, self.base, self.workdir, self.progress = sweep, base, workdir, progress

    @staticmethod
    def twin(trial: optuna.Trial) -> optuna.trial.FrozenTrial | None:
        """A COMPLETE trial of the same configuration (samplers such as NSGA-II repeat points)."""
        key = trial.user_attrs["config_id"]
        for t in trial.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
            if t.params == trial.params and t.user_attrs.get("config_id", key) == key:
                return t
        return None

    def __call__(self, trial: optuna.Trial) -> float | list[float]:
        from experiments.run.data import DatasetNotFound
        from experiments.run.train import train_run

        sweep = self.sweep
        config = sweep.sample(trial, self.base)
        trial.set_user_attr("config_id", run_id(config, sweep.seed))
        twin = self.twin(trial)
        if twin is not None:  # same config, same seed: same result, so it is not trained again
            for key in ("duplicate_of", *TRIAL_ATTRS):
                value = twin.number if key == "duplicate_of" else twin.user_attrs.get(key)
                trial.set_user_attr(key, 0 if key == "epochs_run" else value)
            return twin.values[0] if len(twin.values) == 1 else twin.values
        root = trial.user_attrs.get("retry_of", trial.number)
        workdir = self.workdir / str(root)
        if "retry_of" not in trial.user_attrs:  # a stale checkpoint of another storage's trial
            shutil.rmtree(workdir, ignore_errors=True)
        trial.set_user_attr("worker", f"{os.uname().nodename}:{os.getpid()}")
        trial.set_user_attr("epochs_planned", config["train"].get("epochs", TrainConfig.epochs))
        callbacks = []
        if sweep.monitor:
            from optuna_integration import PyTorchLightningPruningCallback

            callbacks.append(PyTorchLightningPruningCallback(trial, monitor=sweep.monitor))
        try:
            with queue.Heartbeat(trial.study, trial._trial_id):
                result = train_run(
                    config["model"],
                    config["data"],
                    config["train"],
                    seed=sweep.seed,
                    workdir=workdir,
                    progress=self.progress,
                    callbacks=callbacks,
                )
        except optuna.TrialPruned:
            reported = trial.storage.get_trial(trial._trial_id).intermediate_values
            trial.set_user_attr("epochs_run", len(reported))
            trial.set_user_attr("status", "pruned")
            (workdir / "last.ckpt").unlink(missing_ok=True)
            raise
        except (KeyboardInterrupt, SystemExit):  # Lightning turns Ctrl-C into SystemExit
            trial.study.enqueue_trial(trial.params, user_attrs={"retry_of": root})
            raise KeyboardInterrupt from None
        except DatasetNotFound:
            raise
        except Exception as err:
            trial.set_user_attr("status", "failed")
            trial.set_user_attr("error", f"{type(err).__name__}: {err}"[:2000])
            raise TrialFailed(f"trial {trial.number}: {type(err).__name__}: {err}") from err
        (workdir / "last.ckpt").unlink(missing_ok=True)  # finished: never resumed again
        for key in TRIAL_ATTRS:
            if result.get(key) is not None:
                trial.set_user_attr(key, result[key])
        if result["status"] != "ok":  # diverged: a bad point, not a broken sweep
            raise optuna.TrialPruned(result["error"])
        values = [result.get(m) for m in sweep.metrics]
        if any(v is None for v in values):
            raise TrialFailed(f"trial {trial.number}: no value for {sweep.metrics} (val_size 0?)")
        return values[0] if len(values) == 1 else values


def running_elsewhere(study: optuna.Study) -> int:
    """Trials RUNNING in live workers (a dead worker's trial is not counted)."""
    return sum(
        queue.is_alive(t) for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
    )


def _stop_when_filled(budget: int):
    """MaxTrialsCallback counting trials still running elsewhere: N workers stop at the budget."""

    def stop(study: optuna.Study, _trial: optuna.trial.FrozenTrial) -> None:
        if finished(study) + running_elsewhere(study) >= budget:
            study.stop()

    return stop


def _trial_line(label: str, budget: int | None):
    def report(study: optuna.Study, t: optuna.trial.FrozenTrial) -> None:
        names = study.user_attrs.get("objectives", "").split(";")
        shown = ", ".join(f"{n}={v:.4g}" for n, v in zip(names, t.values or [], strict=False))
        if t.state == TrialState.PRUNED:  # Optuna's value is then the last report (a fraction)
            shown = f"after {t.user_attrs.get('epochs_run', '?')} epoch(s)"
        params = ", ".join(
            f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in t.params.items()
        )
        total = f"{finished(study)}/{budget}" if budget else str(finished(study))
        print(
            f"[{label}] trial {t.number} {t.state.name.lower()} {shown} ({params}) · {total} finished",
            flush=True,
        )

    return report


def optimize(
    sweep: SweepSpec,
    profile: str,
    storage: str | None = None,
    trials: int | None = None,
    timeout_s: float | None = None,
    worker: int = 0,
    base: dict | None = None,
    name: str | None = None,
    workdir: Path | None = None,
    progress: bool = False,
) -> optuna.Study:
    """One worker: run trials of the study until it holds the budget (or time runs out)."""
    name = name or sweep.study_name(profile)
    study = open_study(sweep, name, storage)
    budget = trials or sweep.trials
    queue.retry_stale(study)
    left = None if budget is None else budget - finished(study) - running_elsewhere(study)
    if left is not None and left <= 0:
        return study
    # a different seed per worker and per restart: workers and resumed runs do not repeat points
    study.sampler = make_sampler(sweep, sweep.seed + 10_007 * worker + len(study.trials))
    study.pruner = make_pruner(sweep)
    callbacks = [lambda s, _t: queue.retry_stale(s), _trial_line(name, budget)]
    if budget is not None:
        callbacks += [
            optuna.study.MaxTrialsCallback(budget, states=queue.FINISHED),
            _stop_when_filled(budget),
        ]
    workdir = workdir or queue.runs_dir() / "sweeps" / sweep.name / profile
    study.optimize(
        Objective(sweep, base or sweep.resolved_base(profile), workdir, progress),
        n_trials=left,
        timeout=timeout_s or sweep.timeout_s,
        callbacks=callbacks,
        catch=(TrialFailed,),
    )
    return study
