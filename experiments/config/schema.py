"""The config layer on OmegaConf: reading YAML, merging layers, typing ``data`` and ``train``.

A run's configuration is ``{"model": {...}, "data": {...}, "train": {...}}``. ``data`` and
``train`` follow the structured schemas :class:`DataConfig` and :class:`TrainConfig` (OmegaConf
checks keys and converts types from them); ``model`` is a free mapping of a timm name and its
toggles, checked by building the model (see ``spec.check_model``). Configurations are kept as
written (the keys a file sets, typed by the schema), so the result tables name what a grid
chose; the dataclasses fill in the defaults where a run is built and hashed.

Problems raise :class:`SpecError`, which names the file, the line, the key and what is allowed.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import ConfigKeyError, OmegaConfBaseException

from experiments.run.data import DATASETS, DataConfig
from experiments.run.recipe import TrainConfig
from experiments.run.seeds import SeedPolicy

SECTIONS = ("model", "data", "train")
PROFILE_SECTIONS = (*SECTIONS, "seeds")  # a profile also sets the seed schedule
SCHEMAS = {"data": DataConfig, "train": TrainConfig, "seeds": SeedPolicy}
PROFILES = ("smoke", "pilot", "quick", "paper")
DEFAULT_PROFILE = "quick"


@dataclasses.dataclass(frozen=True)
class Limit:
    """What a typed field may hold beyond its type: a test and the words that say it."""

    ok: Callable[[Any], bool]
    allowed: str


def one_of(*values: Any) -> Limit:
    return Limit(lambda v: v in values, "one of " + ", ".join(repr(v) for v in values))


def at_least(low: float, what: str = "a number") -> Limit:
    return Limit(lambda v: v >= low, f"{what} >= {low}")


def above(low: float) -> Limit:
    return Limit(lambda v: v > low, f"a number > {low}")


def in_unit(closed_high: bool = False) -> Limit:
    if closed_high:
        return Limit(lambda v: 0 <= v <= 1, "a number in [0, 1]")
    return Limit(lambda v: 0 <= v < 1, "a number in [0, 1)")


COUNT = at_least(1, "an integer")
# every field of a section whose type admits impossible values; None (where a field may be
# null) always passes. The train options name what this code and Lightning can run.
LIMITS: dict[str, dict[str, Limit]] = {
    "data": {
        "subset": COUNT,
        "val_size": at_least(0, "an integer"),
        "split_seed": at_least(0, "an integer"),
        "img_size": COUNT,
        "channels": one_of(1, 3),
        "batch_size": COUNT,
        "eval_batch_size": COUNT,
        "crop_padding": at_least(0, "an integer"),
        "num_classes": at_least(2, "an integer"),
        "synthetic_train": COUNT,
        "synthetic_test": COUNT,
        "synthetic_size": COUNT,
    },
    "train": {
        "epochs": COUNT,
        "steps": COUNT,
        "budget_scale": above(0),
        "val_every": COUNT,
        "lr": above(0),
        "weight_decay": at_least(0),
        "warmup_epochs": at_least(0),
        "min_lr_ratio": in_unit(closed_high=True),
        "label_smoothing": in_unit(),
        "mixup": at_least(0),
        "cutmix": at_least(0),
        "grad_clip": above(0),
        "ema_decay": Limit(lambda v: 0 < v < 1, "a number in (0, 1)"),
        "drop_path": in_unit(),
        # fp32, or bf16 autocast (on a GPU; on a CPU with native bf16, see `make bench`)
        "precision": one_of("auto", "32-true", "bf16-mixed"),
        "channels_last": one_of("auto", "on", "off"),
        "accelerator": one_of("auto", "cpu", "gpu", "cuda"),
        "precise_bn": at_least(0, "an integer"),
        "collapse_gap": at_least(0),
        "bench_seconds": at_least(0),
        "inject_nan_at_step": at_least(0, "an integer"),
    },
    "seeds": {"batch": COUNT, "cap": at_least(0, "an integer")},
}


class SpecError(ValueError):
    """A spec file is invalid; the message names the file, the line, the key and what is allowed."""

    def __init__(self, path: str | Path, key: str, problem: str):
        self.path, self.key, self.problem = str(path), key, problem
        line = key_line(path, key)
        where = f"{path}:{line}" if line else f"{path}"
        super().__init__(f"{where}: key '{key}': {problem}")


def _node_lines(node, prefix: str, out: dict[str, int]) -> None:
    if isinstance(node, yaml.MappingNode):
        for key_node, value in node.value:
            key = f"{prefix}.{key_node.value}" if prefix else str(key_node.value)
            out.setdefault(key, key_node.start_mark.line + 1)
            _node_lines(value, key, out)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            key = f"{prefix}[{i}]"
            out.setdefault(key, item.start_mark.line + 1)
            _node_lines(item, key, out)


def key_line(path: str | Path, key: str) -> int | None:
    """The line of ``key`` (dotted, as errors name it) in a YAML file, or of its nearest
    parent that is written there (a missing key is reported where it belongs)."""
    try:
        node = yaml.compose(Path(path).read_text(), Loader=yaml.SafeLoader)
    except (OSError, yaml.YAMLError):
        return None
    lines: dict[str, int] = {}
    _node_lines(node, "", lines)
    while key:
        if key in lines:
            return lines[key]
        key = key.rpartition(".")[0]
    return None


# ----------------------------------------------------------------------------- yaml
def load_yaml(path: Path) -> Any:
    """Plain data from a YAML file, read by OmegaConf's safe loader (which reads ``1e-3`` as a
    float and refuses duplicate keys); interpolations are not resolved."""
    try:
        loaded = OmegaConf.load(path)
    except yaml.constructor.ConstructorError as err:
        line = err.problem_mark.line + 1 if err.problem_mark else "?"
        problem = str(err.problem)
        if "duplicate key" in problem:
            key = problem.split("duplicate key", 1)[1].strip()
            raise SpecError(path, key, f"{problem} at line {line}; keys must be unique") from None
        tag = problem.split("tag ")[-1] if "tag" in problem else ""
        raise SpecError(
            path,
            "<file>",
            f"line {line}: the YAML tag {tag} is not allowed; specs are plain data "
            "(mappings, lists, strings, numbers, true/false, null), read with a safe loader",
        ) from None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f"line {mark.line + 1}: " if mark else ""
        raise SpecError(path, "<file>", f"{where}not valid YAML: {err}") from None
    except (OmegaConfBaseException, ValueError, TypeError) as err:  # a scalar file, a date...
        raise SpecError(path, "<file>", f"not a mapping or list of plain data: {err}") from None
    return OmegaConf.to_container(loaded, resolve=False)


# ----------------------------------------------------------------------------- merging
def merge(*layers: dict | None) -> dict:
    """Later layers override earlier ones key by key (mappings merge, lists are replaced).

    Plain dict code, not OmegaConf: a spec merges its layers for every cell and profile, and
    OmegaConf's containers cost about 10 ms a merge."""
    out: dict = {}
    for layer in layers:
        _merge_into(out, layer or {})
    return out


def _merge_into(target: dict, layer: dict) -> None:
    for key, value in layer.items():
        if isinstance(value, dict) and isinstance(target.get(key), dict):
            _merge_into(target[key], value)
        else:
            target[key] = copy.deepcopy(value)


def with_dotted(config: dict, dotted: dict[str, Any]) -> dict:
    """``config`` with ``{"model.layers": "low", ...}`` set (values replace, they do not merge)."""
    out = copy.deepcopy(config)
    for key, value in dotted.items():
        *parents, leaf = key.split(".")
        node = out
        for part in parents:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ValueError(f"cannot set {key!r}: {part!r} is not a mapping")
        node[leaf] = copy.deepcopy(value)
    return out


def get_dotted(config: dict, key: str) -> Any:
    return OmegaConf.select(OmegaConf.create(config), key, default=None)


def resolved(*layers: dict | None) -> dict:
    """The three sections of a configuration from base and its overrides, in order."""
    return merge({s: {} for s in SECTIONS}, *layers)


# ----------------------------------------------------------------------------- types
@functools.cache
def _schema(section: str) -> DictConfig:
    return OmegaConf.structured(SCHEMAS[section])


@functools.lru_cache(maxsize=4096)
def _typed_by_schema(section: str, values_json: str) -> dict:
    """OmegaConf's typed merge of one section, once per distinct mapping (it costs about 10 ms
    and a spec checks the same data and train mappings for every cell and profile)."""
    values = json.loads(values_json)
    return OmegaConf.to_container(OmegaConf.merge(_schema(section), values), resolve=True)


def field_names(section: str) -> list[str]:
    return [f.name for f in dataclasses.fields(SCHEMAS[section])]


def _field_type(section: str, name: str) -> str:
    types = {f.name: f.type for f in dataclasses.fields(SCHEMAS[section])}
    text = str(types.get(name, "?"))
    return text.replace(" | None", " or null").replace(" | ", " or ")


def typed_section(path, prefix: str, values: Any, section: str) -> dict:
    """``values`` of a ``data`` or ``train`` mapping checked and converted by its schema; the
    keys written, nothing filled in. ``prefix`` is where the mapping sits in the file."""
    names = field_names(section)
    if not isinstance(values, dict):
        raise SpecError(path, prefix, f"must be a mapping with keys among {names}")
    try:
        key = json.dumps(values, sort_keys=True)
    except (TypeError, ValueError):  # not JSON-able: OmegaConf will say what is wrong
        key = None
    try:
        if key is None:
            typed = OmegaConf.to_container(OmegaConf.merge(_schema(section), values), resolve=True)
        else:
            typed = copy.deepcopy(_typed_by_schema(section, key))
    except ConfigKeyError as err:
        raise SpecError(
            path, f"{prefix}.{err.full_key}", f"unknown key; allowed: {', '.join(names)}"
        ) from None
    except OmegaConfBaseException as err:
        key = str(err.full_key or "").split(".")[0].split("[")[0]
        raise SpecError(
            path,
            f"{prefix}.{key}",
            f"got {values.get(key)!r}; allowed: {_field_type(section, key)}",
        ) from None
    out = {k: typed[k] for k in values}
    if section == "data" and "name" in out and out["name"] not in DATASETS:
        raise SpecError(
            path,
            f"{prefix}.name",
            f"unknown dataset {out['name']!r}; allowed: {', '.join(DATASETS)}",
        )
    for key, value in out.items():
        limit = LIMITS.get(section, {}).get(key)
        if limit is not None and value is not None and not limit.ok(value):
            raise SpecError(path, f"{prefix}.{key}", f"got {value!r}; allowed: {limit.allowed}")
    return out


def typed_layer(path, prefix: str, layer: Any, sections: tuple[str, ...] = SECTIONS) -> dict:
    """A layer of sections (base, a profile's overrides): known sections, typed data/train."""
    if layer is None:
        return {}
    if not isinstance(layer, dict):
        raise SpecError(path, prefix, f"must be a mapping with keys among {sections}")
    out = {}
    for key, value in layer.items():
        if key not in sections:
            raise SpecError(path, f"{prefix}.{key}", f"unknown key; allowed: {', '.join(sections)}")
        if key == "model":
            if not isinstance(value, dict):
                raise SpecError(path, f"{prefix}.model", "must be a mapping: name and toggles")
            out[key] = dict(value)
        else:
            out[key] = typed_section(path, f"{prefix}.{key}", value, key)
    return out


def typed_dotted(path, where: str, key: str, value: Any) -> Any:
    """One value for a dotted key (an axis value, a searched value), typed by its section."""
    section, _, name = key.partition(".")
    if section == "model":
        return value
    return typed_section(path, where, {name: value}, section)[name]


# ----------------------------------------------------------------------------- command line
def parse_sets(items: list[str]) -> dict[str, dict]:
    """``["dwconv=false", "train.lr=1e-3"]`` -> ``{"model": {...}, "data": {}, "train": {...}}``.

    Values are read by OmegaConf's dotlist parser (``3``, ``true``, ``[3,5]``, ``1e-3``,
    ``low``); a bare key is a model toggle, ``data.KEY`` and ``train.KEY`` are typed by their
    schema. Raises ``ValueError`` naming the item.
    """
    dotlist = []
    for item in items:
        key, eq, text = item.partition("=")
        if not eq or not key:
            raise ValueError(f"--set expects key=value, got {item!r}")
        section = key.split(".")[0]
        if "." in key and section not in SECTIONS:
            raise ValueError(
                f"--set {key}: section must be one of {SECTIONS} (or none for a toggle)"
            )
        dotlist.append(item if section in SECTIONS and "." in key else f"model.{item}")
    try:
        parsed = OmegaConf.to_container(OmegaConf.from_dotlist(dotlist), resolve=True)
    except OmegaConfBaseException as err:
        raise ValueError(f"--set: {err}") from None
    out = {s: dict(parsed.get(s) or {}) for s in SECTIONS}
    for section in ("data", "train"):
        try:
            out[section] = typed_section("--set", section, out[section], section)
        except SpecError as err:
            raise ValueError(f"--set {err.key}: {err.problem}") from None
    return out
