"""Sweep specs (``ablations/sweeps/<name>.yaml``): base, search space, objectives, sampler,
pruner and budget, all checked before anything trains (each point of the space is built on the
meta device, so an unknown toggle fails here with a :class:`SpecError`, exit 2)."""

from __future__ import annotations

import inspect
import json
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna

from experiments.config import spec as specs
from experiments.config.schema import (
    DEFAULT_PROFILE,
    PROFILES,
    SECTIONS,
    SpecError,
    field_names,
    get_dotted,
    typed_section,
    with_dotted,
)
from experiments.config.toplevel import COMMON_KEYS, SpecBase, parse_top
from experiments.run.data import DataConfig, data_info

TOP_KEYS = {
    **COMMON_KEYS,
    "name": "text: the sweep's name (default: the file name)",
    "base": "mapping with model, data, train: the configuration every trial starts from",
    "space": "mapping of a dotted key (train.lr) to {type: float|int|categorical, ...}",
    "objectives": "list of {metric, direction}, e.g. {metric: best_val_top1, direction: maximize}",
    "sampler": "tpe, random, qmc, gp or nsga2, or {name: ..., <sampler argument>: value}",
    "pruner": "median, hyperband, successive_halving or none, or {name: ..., <argument>: value}",
    "budget": "mapping with trials (an integer >= 1) and/or timeout_s (seconds > 0)",
    "profile": "smoke, pilot, quick or paper: the default compute profile",
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
        return all(get_dotted(config, k) in values for k, values in self.when.items())

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
class SweepSpec(SpecBase):
    space: list[Param]
    objectives: list[tuple[str, str]]  # (metric, direction)
    sampler: tuple[str, dict]
    pruner: tuple[str, dict]
    trials: int | None
    timeout_s: float | None
    profile: str
    seed: int

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

    def sample(self, trial: optuna.Trial, base: dict) -> dict:
        """The trial's configuration: ``base`` with every active parameter suggested."""
        config = base
        for p in self.space:
            if p.active(config):
                config = with_dotted(config, {p.key: p.suggest(trial)})
        return with_dotted(config, {})

    def decode(self, params: dict) -> dict:
        by_key = {p.key: p for p in self.space}
        return {k: by_key[k].decode(v) if k in by_key else v for k, v in params.items()}


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
    raw, common = parse_top(path, TOP_KEYS, ("base", "space", "budget"), "sweep spec", path.stem)
    profile = raw.get("profile", DEFAULT_PROFILE)
    if profile not in PROFILES:
        raise SpecError(path, "profile", f"got {profile!r}; allowed: {', '.join(PROFILES)}")
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
        **common,
        space=params,
        objectives=objectives,
        sampler=sampler,
        pruner=pruner,
        trials=trials,
        timeout_s=timeout,
        profile=profile,
        seed=seed,
    )
    for prof in PROFILES:
        check_space(sweep, sweep.resolved_base(prof), build_models, f"profile {prof}")
    return sweep


def check_space(sweep: SweepSpec, base: dict, build_models: bool = True, where: str = "") -> None:
    """Check points of the space on ``base``: every choice and both bounds of every parameter.

    Data and train values are type-checked; the model is built on the meta device.
    """
    path, keys = sweep.path, {p.key for p in sweep.space}
    for p in sweep.space:
        section, name = p.key.split(".", 1)
        if section != "model" and name not in field_names(section):
            allowed = ", ".join(field_names(section))
            raise SpecError(path, f"space.{p.key}", f"unknown key; allowed: {allowed}")
    n = max([2] + [len(p.choices) for p in sweep.space])
    active: set[str] = set()
    for i in range(n):
        config, point = base, {}
        for p in sweep.space:
            if p.active(config):
                config = with_dotted(config, {p.key: p.corner(i)})
                point[p.key] = p.corner(i)
                active.add(p.key)
        try:
            for section in ("data", "train"):
                typed_section(path, section, config[section], section)
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
