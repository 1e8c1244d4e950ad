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

import argparse
import copy
import dataclasses
import inspect
import json
import os
import shutil
import subprocess
import sys
import time
import typing
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna
import pandas as pd
from optuna.trial import TrialState

from experiments.run import queue

from experiments.run import store
from experiments.config import spec as specs
from experiments.run.data import DataConfig, data_info
from experiments.run.identity import run_id
from experiments.run.lit import TrainConfig
from experiments.config.spec import SECTIONS, SpecError

TOP_KEYS = {
    "name": "text: the sweep's name (default: the file name)",
    "description": "text: one line",
    "base": "mapping with model, data, train: the configuration every trial starts from",
    "space": "mapping of a dotted key (train.lr) to {type: float|int|categorical, ...}",
    "objectives": "list of {metric, direction}, e.g. {metric: best_val_top1, direction: maximize}",
    "sampler": "tpe, random, qmc, gp or nsga2, or {name: ..., <sampler argument>: value}",
    "pruner": "median, hyperband, successive_halving or none, or {name: ..., <argument>: value}",
    "budget": "mapping with trials (an integer >= 1) and/or timeout_s (seconds > 0)",
    "profile": "smoke, quick or paper: the default compute profile",
    "profiles": "mapping of smoke/quick/paper to overrides of base",
    "seed": "an integer: seeds the sampler and every trial's training",
}
SAMPLERS = {
    "tpe": optuna.samplers.TPESampler,
    "random": optuna.samplers.RandomSampler,
    "qmc": optuna.samplers.QMCSampler,
    "gp": optuna.samplers.GPSampler,
    "nsga2": optuna.samplers.NSGAIISampler,
}
PRUNERS = {
    "median": optuna.pruners.MedianPruner,
    "hyperband": optuna.pruners.HyperbandPruner,
    "successive_halving": optuna.pruners.SuccessiveHalvingPruner,
    "none": optuna.pruners.NopPruner,
}
# metric of train_run's result -> its usual direction
METRICS = {
    "best_val_top1": "maximize",
    "val_top1": "maximize",
    "test_top1": "maximize",
    "test_top5": "maximize",
    "test_loss": "minimize",
    "params": "minimize",
    "macs": "minimize",
    "train_img_s": "maximize",
    "infer_img_s": "maximize",
    "peak_mem_mb": "minimize",
    "wall_s": "minimize",
}
# what the pruner watches after each epoch, for the objectives that training improves
PRUNE_MONITOR = {
    "best_val_top1": "val_top1",
    "val_top1": "val_top1",
    "test_top1": "val_top1",
    "test_top5": "val_top1",
    "test_loss": "val_loss",
}
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


# ----------------------------------------------------------------------------- spec
@dataclass
class Param:
    """One searched key: an Optuna distribution, active only where ``when`` holds.

    ``when: {model.ffn: locality}`` (or a list of values) reads the configuration built so far:
    base, then the parameters above this one. List choices (``kernel_sizes: [[3], [3, 5, 7]]``)
    are stored in Optuna as JSON text and decoded before the model is built.
    """

    key: str
    type: str
    low: Any = None
    high: Any = None
    log: bool = False
    step: Any = None
    choices: list = field(default_factory=list)
    when: dict = field(default_factory=dict)  # dotted key -> allowed values

    @property
    def encoded(self) -> list:
        """Optuna's categorical choices must be scalars: lists travel as JSON text."""
        return [json.dumps(c) if isinstance(c, list) else c for c in self.choices]

    def active(self, config: dict) -> bool:
        return all(_get(config, k) in values for k, values in self.when.items())

    def suggest(self, trial: optuna.Trial) -> Any:
        if self.type == "float":
            return trial.suggest_float(self.key, self.low, self.high, log=self.log, step=self.step)
        if self.type == "int":
            return trial.suggest_int(
                self.key, self.low, self.high, step=self.step or 1, log=self.log
            )
        return self.decode(trial.suggest_categorical(self.key, self.encoded))

    def decode(self, value: Any) -> Any:
        return self.choices[self.encoded.index(value)] if self.type == "categorical" else value

    def corner(self, i: int) -> Any:
        """The i-th validation value: every choice, and both bounds."""
        if self.type == "categorical":
            return self.choices[i % len(self.choices)]
        return (self.low, self.high)[i % 2]


@dataclass
class SweepSpec:
    path: Path
    name: str
    description: str
    base: dict
    space: list[Param]
    objectives: list[tuple[str, str]]  # (metric, direction)
    sampler: tuple[str, dict]
    pruner: tuple[str, dict]
    trials: int | None
    timeout_s: float | None
    profile: str
    seed: int
    profiles: dict
    profile_defaults: dict

    @property
    def metrics(self) -> list[str]:
        return [m for m, _ in self.objectives]

    @property
    def directions(self) -> list[str]:
        return [d for _, d in self.objectives]

    @property
    def monitor(self) -> str | None:
        """The metric the pruner watches each epoch; None when the sweep does not prune."""
        return None if self.pruner[0] == "none" else PRUNE_MONITOR[self.metrics[0]]

    def study_name(self, profile: str) -> str:
        return f"sweep/{self.name}@{profile}"

    def resolved_base(self, profile: str) -> dict:
        base = specs.deep_merge({s: {} for s in SECTIONS}, self.base)
        base = specs.deep_merge(base, self.profile_defaults.get(profile, {}))
        return specs.deep_merge(base, self.profiles.get(profile, {}))

    def sample(self, trial: optuna.Trial, base: dict) -> dict:
        """The trial's configuration: ``base`` with every active parameter suggested."""
        config = copy.deepcopy(base)
        for p in self.space:
            if p.active(config):
                specs.set_dotted(config, p.key, p.suggest(trial))
        return config

    def decode(self, params: dict) -> dict:
        by_key = {p.key: p for p in self.space}
        return {k: by_key[k].decode(v) if k in by_key else v for k, v in params.items()}


def _get(config: dict, key: str) -> Any:
    section, _, name = key.partition(".")
    return config.get(section, {}).get(name)


def _is_number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def _parse_param(path, key: Any, raw: Any, later: list[str]) -> Param:
    where = f"space.{key}"
    if not isinstance(key, str) or "." not in key or key.split(".")[0] not in SECTIONS:
        raise SpecError(path, where, f"keys are dotted, starting with one of {SECTIONS}: train.lr")
    allowed = "{type: float|int, low, high, log, step} or {type: categorical, choices: [...]}"
    if not isinstance(raw, dict) or raw.get("type") not in ("float", "int", "categorical"):
        raise SpecError(path, where, f"got {raw!r}; allowed: {allowed}, each with optional when")
    kind = raw["type"]
    names = {"type", "when"} | (
        {"choices"} if kind == "categorical" else {"low", "high", "log", "step"}
    )
    for k in raw:
        if k not in names:
            raise SpecError(path, f"{where}.{k}", f"unknown for {kind}; allowed: {sorted(names)}")
    when = raw.get("when", {}) or {}
    if not isinstance(when, dict):
        raise SpecError(path, f"{where}.when", "allowed: a mapping of a dotted key to a value")
    for k in when:
        dotted = isinstance(k, str) and "." in k and k.split(".")[0] in SECTIONS
        if not dotted or k in later:  # a condition reads base or a parameter sampled before
            raise SpecError(
                path, f"{where}.when.{k}", "allowed: a dotted key of base or of a parameter above"
            )
    when = {k: v if isinstance(v, list) else [v] for k, v in when.items()}
    if kind == "categorical":
        choices = raw.get("choices")
        scalar = (type(None), bool, int, float, str)
        if not isinstance(choices, list) or not choices:
            raise SpecError(path, f"{where}.choices", "allowed: a non-empty list of values")
        for c in choices:
            if not (
                isinstance(c, scalar)
                or (isinstance(c, list) and all(isinstance(x, scalar) for x in c))
            ):
                raise SpecError(path, f"{where}.choices", f"got {c!r}; allowed: scalars or lists")
        param = Param(key, kind, choices=choices, when=when)
        if len(set(map(str, param.encoded))) != len(choices):
            raise SpecError(path, f"{where}.choices", f"duplicates in {choices}; each value once")
        return param
    low, high, log, step = raw.get("low"), raw.get("high"), raw.get("log", False), raw.get("step")
    number = "an integer" if kind == "int" else "a number"
    check = (
        (lambda x: isinstance(x, int) and not isinstance(x, bool)) if kind == "int" else _is_number
    )
    for k, v in (("low", low), ("high", high)):
        if not check(v):
            raise SpecError(path, f"{where}.{k}", f"got {v!r}; allowed: {number}")
    if low > high:
        raise SpecError(path, where, f"low {low} > high {high}; allowed: low <= high")
    if not isinstance(log, bool):
        raise SpecError(path, f"{where}.log", f"got {log!r}; allowed: true or false")
    if log and low <= 0:
        raise SpecError(path, where, f"log scale with low {low}; allowed: 0 < low <= high")
    if step is not None and (not check(step) or step <= 0):
        raise SpecError(path, f"{where}.step", f"got {step!r}; allowed: {number} > 0")
    if log and step is not None and not (kind == "int" and step == 1):
        raise SpecError(path, f"{where}.step", "a log scale takes no step; allowed: log or step")
    return Param(key, kind, low=low, high=high, log=log, step=step, when=when)


def _parse_factory(path, key: str, raw: Any, table: dict, default: str) -> tuple[str, dict]:
    """``tpe`` or ``{name: tpe, n_startup_trials: 4}``: Optuna's class and its arguments."""
    raw = default if raw is None else raw
    kwargs = dict(raw) if isinstance(raw, dict) else {}
    name = kwargs.pop("name", None) if isinstance(raw, dict) else raw
    if name not in table:
        raise SpecError(path, key, f"got {name!r}; allowed: {', '.join(table)}")
    cls = table[name]
    known = [p for p in inspect.signature(cls).parameters if p not in ("seed", "constraints_func")]
    for k in kwargs:
        if k not in known:
            raise SpecError(path, f"{key}.{k}", f"unknown for {name}; allowed: {', '.join(known)}")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            cls(**kwargs)
    except (TypeError, ValueError) as err:
        raise SpecError(path, key, f"{name} refuses {kwargs}: {err}") from None
    return name, kwargs


def _parse_objectives(path, raw: Any) -> list[tuple[str, str]]:
    raw = raw if raw is not None else [{"metric": "best_val_top1"}]
    if not isinstance(raw, list) or not raw:
        raise SpecError(path, "objectives", TOP_KEYS["objectives"])
    out = []
    for i, item in enumerate(raw):
        item = {"metric": item} if isinstance(item, str) else item
        where = f"objectives[{i}]"
        if not isinstance(item, dict) or set(item) - {"metric", "direction"}:
            raise SpecError(path, where, f"got {item!r}; allowed: {{metric, direction}}")
        metric = item.get("metric")
        if metric not in METRICS:
            raise SpecError(
                path, f"{where}.metric", f"got {metric!r}; allowed: {', '.join(METRICS)}"
            )
        direction = item.get("direction", METRICS[metric])
        if direction not in ("maximize", "minimize"):
            raise SpecError(
                path, f"{where}.direction", f"got {direction!r}; allowed: maximize, minimize"
            )
        out.append((metric, direction))
    if len({m for m, _ in out}) != len(out):
        raise SpecError(path, "objectives", "a metric appears twice; each metric once")
    return out


def _parse_budget(path, raw: Any) -> tuple[int | None, float | None]:
    if not isinstance(raw, dict) or not raw or set(raw) - {"trials", "timeout_s"}:
        raise SpecError(path, "budget", f"got {raw!r}; allowed: {TOP_KEYS['budget']}")
    trials, timeout = raw.get("trials"), raw.get("timeout_s")
    if trials is not None and not (
        isinstance(trials, int) and not isinstance(trials, bool) and trials >= 1
    ):
        raise SpecError(path, "budget.trials", f"got {trials!r}; allowed: an integer >= 1")
    if timeout is not None and not (_is_number(timeout) and timeout > 0):
        raise SpecError(path, "budget.timeout_s", f"got {timeout!r}; allowed: seconds > 0")
    return trials, timeout


def load_sweep(path: str | Path, build_models: bool = True) -> SweepSpec:
    """Load and fully validate one sweep spec."""
    path = Path(path)
    raw = specs.load_mapping(path, TOP_KEYS, ("base", "space", "budget"), "sweep spec")
    for key in ("name", "description"):
        if key in raw and not isinstance(raw[key], str):
            raise SpecError(path, key, f"got {raw[key]!r}; allowed: text")
    specs._check_sections(path, "base", raw["base"])
    if "name" not in raw["base"].get("model", {}):
        raise SpecError(path, "base.model.name", "missing; allowed: a timm model name")
    profiles = raw.get("profiles") or {}
    if not isinstance(profiles, dict):
        raise SpecError(path, "profiles", TOP_KEYS["profiles"])
    for prof, over in profiles.items():
        if prof not in specs.PROFILES:
            raise SpecError(path, f"profiles.{prof}", f"allowed: {', '.join(specs.PROFILES)}")
        specs._check_sections(path, f"profiles.{prof}", over or {})
    profile = raw.get("profile", specs.DEFAULT_PROFILE)
    if profile not in specs.PROFILES:
        raise SpecError(path, "profile", f"got {profile!r}; allowed: {', '.join(specs.PROFILES)}")
    seed = raw.get("seed", 0)
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise SpecError(path, "seed", f"got {seed!r}; allowed: an integer")

    space = raw["space"]
    if not isinstance(space, dict) or not space:
        raise SpecError(path, "space", f"must be a non-empty {TOP_KEYS['space']}")
    params: list[Param] = []
    keys = list(space)
    for i, (key, dist) in enumerate(space.items()):
        params.append(_parse_param(path, key, dist, keys[i:]))
    objectives = _parse_objectives(path, raw.get("objectives"))
    sampler = _parse_factory(path, "sampler", raw.get("sampler"), SAMPLERS, "tpe")
    pruner = _parse_factory(path, "pruner", raw.get("pruner"), PRUNERS, "none")
    if pruner[0] != "none" and len(objectives) > 1:
        raise SpecError(
            path, "pruner", f"pruning needs one objective, got {len(objectives)}; allowed: none"
        )
    if pruner[0] != "none" and objectives[0][0] not in PRUNE_MONITOR:
        raise SpecError(
            path,
            "pruner",
            f"{objectives[0][0]} does not improve with epochs; allowed: none, or an objective "
            f"among {', '.join(PRUNE_MONITOR)}",
        )
    trials, timeout = _parse_budget(path, raw["budget"])
    sweep = SweepSpec(
        path=path,
        name=raw.get("name", path.stem),
        description=raw.get("description", ""),
        base=raw["base"],
        space=params,
        objectives=objectives,
        sampler=sampler,
        pruner=pruner,
        trials=trials,
        timeout_s=timeout,
        profile=profile,
        seed=seed,
        profiles=profiles,
        profile_defaults=specs.load_profile_defaults(path),
    )
    for prof in specs.PROFILES:
        check_space(sweep, sweep.resolved_base(prof), build_models, f"profile {prof}")
    return sweep


def check_space(sweep: SweepSpec, base: dict, build_models: bool = True, where: str = "") -> None:
    """Check points of the space on ``base``: every choice and both bounds of every parameter.

    Data and train values are type-checked; the model is built on the meta device.
    """
    path, keys = sweep.path, {p.key for p in sweep.space}
    for p in sweep.space:
        section, name = p.key.split(".", 1)
        if section != "model":
            cls = DataConfig if section == "data" else TrainConfig
            if name not in typing.get_type_hints(cls):
                allowed = ", ".join(f.name for f in dataclasses.fields(cls))
                raise SpecError(path, f"space.{p.key}", f"unknown key; allowed: {allowed}")
    n = max([2] + [len(p.choices) for p in sweep.space])
    active: set[str] = set()
    for i in range(n):
        config = copy.deepcopy(base)
        point = {}
        for p in sweep.space:
            if p.active(config):
                specs.set_dotted(config, p.key, p.corner(i))
                point[p.key] = p.corner(i)
                active.add(p.key)
        try:
            specs.check_section(path, "data", config["data"], DataConfig)
            specs.check_section(path, "train", config["train"], TrainConfig)
            if build_models:
                info = data_info(DataConfig(**config["data"]))
                specs.check_model(
                    path, config["model"], info.num_classes or 10, info.channels, info.size
                )
        except SpecError as err:
            key = f"space.{err.key}" if err.key in keys else f"base.{err.key}"
            raise SpecError(path, key, f"{err.problem} (at {point}, {where})") from None
    for p in sweep.space:
        if p.key not in active:
            raise SpecError(path, f"space.{p.key}.when", f"never holds ({where}); check its values")


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


def retry_stale(study: optuna.Study, grace: float = queue.GRACE_S) -> list[int]:
    """Fail RUNNING trials whose worker stopped beating, and enqueue their params again."""
    retried = []
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        if queue.is_alive(t, grace):
            continue
        try:
            if not study._storage.set_trial_state_values(t._trial_id, TrialState.FAIL):
                continue
        except (RuntimeError, optuna.exceptions.UpdateFinishedTrialError):
            continue  # another worker got there first
        root = t.user_attrs.get("retry_of", t.number)
        study.enqueue_trial(t.params, user_attrs={"retry_of": root})
        retried.append(t.number)
    return retried


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
    retry_stale(study)
    left = None if budget is None else budget - finished(study) - running_elsewhere(study)
    if left is not None and left <= 0:
        return study
    # a different seed per worker and per restart: workers and resumed runs do not repeat points
    study.sampler = make_sampler(sweep, sweep.seed + 10_007 * worker + len(study.trials))
    study.pruner = make_pruner(sweep)
    callbacks = [lambda s, _t: retry_stale(s), _trial_line(name, budget)]
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


def start_workers(
    sweep: SweepSpec, profile: str, n: int, argv: list[str]
) -> list[subprocess.Popen]:
    """``n`` worker processes of this sweep; CPU threads split, one GPU each if there are GPUs."""
    from experiments.run.runner import worker_env

    procs = []
    for i in range(n):
        env = worker_env(i, n)
        cmd = [sys.executable, "-m", "experiments", "sweep", *argv, "--worker", str(i)]
        procs.append(subprocess.Popen(cmd, env=env))
    return procs


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
    """``results/sweeps/<name>.csv`` for the quick profile; other profiles get a suffix."""
    stem = sweep_name if profile == "quick" else f"{sweep_name}.{profile}"
    return Path(results_dir or store.results_root()) / "sweeps" / f"{stem}.csv"


def export(study: optuna.Study, path: Path, figures: bool = True) -> pd.DataFrame:
    """Write the trials table atomically and its figures under ``results/figures/sweeps``."""
    df = trials_table(study)
    store.atomic_write_csv(df, path)
    if figures and not df.empty:
        from experiments.analysis.stats import figures as fg

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
        head = "best" if len(sweep.metrics) == 1 else f"Pareto set ({len(best)} trials)"
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


# ----------------------------------------------------------------------------- grids
def find_sweep(grid: specs.GridSpec) -> Path:
    """``sweeps/<name>.yaml`` in the nearest folder above the grid spec that has one."""
    for parent in grid.path.resolve().parents:
        candidate = parent / "sweeps" / f"{grid.sweep}.yaml"
        if candidate.is_file():
            return candidate
    raise SpecError(grid.path, "sweep", f"no sweeps/{grid.sweep}.yaml above the grid spec")


def tune_cells(grid: specs.GridSpec, profile: str, storage: str | None = None) -> dict[str, dict]:
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
        config = grid.resolved_base(profile)
        for key, value in overrides.items():
            specs.set_dotted(config, key, value)
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
    stem = grid.name if profile == "quick" else f"{grid.name}.{profile}"
    store.atomic_write_csv(
        pd.concat(tables), store.results_root() / "sweeps" / "tuned" / f"{stem}.csv"
    )
    return best


def apply_tuned(runs: list[dict], tuned: dict[str, dict]) -> list[dict]:
    """Each run at its cell's best point: new config, new run id, a ``tuned`` column."""
    out = []
    for run in runs:
        run = copy.deepcopy(run)
        for key, value in tuned.get(run["cell"], {}).items():
            specs.set_dotted(run["config"], key, value)
        run["run_id"] = specs.run_id(run["config"], run["seed"])
        run["tuned"] = ";".join(sorted(tuned.get(run["cell"], {})))
        out.append(run)
    return out


# ----------------------------------------------------------------------------- CLI
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m experiments sweep",
        description="Run an Optuna sweep spec: tune, prune, trade accuracy against cost.",
    )
    parser.add_argument("spec", help="a sweep spec, e.g. ablations/sweeps/localvit_lr_wd.yaml")
    parser.add_argument("--profile", choices=specs.PROFILES, help="default: the spec's profile")
    parser.add_argument("--storage", help="Optuna storage URL or journal file (as for grids)")
    parser.add_argument("--workers", type=int, default=int(os.environ.get("WORKERS") or 1))
    parser.add_argument("--trials", type=int, help="total trial budget (overrides the spec's)")
    parser.add_argument("--timeout", type=float, help="seconds per worker (overrides the spec's)")
    parser.add_argument("--results", help="results folder (default results/)")
    parser.add_argument("--progress", action="store_true", help="show each trial's progress bar")
    parser.add_argument("--check", action="store_true", help="validate the spec and stop")
    parser.add_argument("--worker", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.results:
        os.environ["ABLATE_RESULTS"] = args.results
    sweep = load_sweep(args.spec)
    profile = args.profile or sweep.profile
    if args.check:
        print(
            f"ok  {args.spec}  ({len(sweep.space)} parameters, {len(sweep.metrics)} objective(s))"
        )
        return 0
    if args.worker is not None:  # a child of --workers N
        if os.environ.get("ABLATE_THREADS"):
            import torch

            torch.set_num_threads(int(os.environ["ABLATE_THREADS"]))
        optimize(sweep, profile, args.storage, args.trials, args.timeout, args.worker)
        return 0
    started = time.time()
    if args.workers <= 1:
        study = optimize(
            sweep, profile, args.storage, args.trials, args.timeout, 0, progress=args.progress
        )
    else:
        child = [args.spec, "--profile", profile]
        for flag, value in (
            ("--storage", args.storage),
            ("--trials", args.trials),
            ("--timeout", args.timeout),
        ):
            if value is not None:
                child += [flag, str(value)]
        procs = start_workers(sweep, profile, args.workers, child)
        try:
            for p in procs:
                p.wait()
        except KeyboardInterrupt:
            print(
                f"\n[{sweep.name}] interrupted; rerun the same command to continue.",
                file=sys.stderr,
            )
            raise
        study = open_study(sweep, sweep.study_name(profile), args.storage)
    path = result_path(sweep.name, profile)
    export(study, path)
    print(summary(study, sweep))
    print(f"table: {path} ({time.time() - started:.0f} s)")
    return 0
