"""Experiment specs: load a grid YAML, validate every key and value, expand it into runs.

A spec fixes *what* varies (axes over toggles, seeds, the baseline cell); a profile fixes
*how much compute* (dataset, subset, epochs, batch, model size). Defaults for the profiles
live in ``ablations/profiles.yaml``; a spec may override them per profile.

Everything is checked before anything trains. A problem raises :class:`SpecError`, which
names the file, the key and what is allowed; the command line turns it into exit status 2.
Each model cell is built once on the ``meta`` device, so an unknown toggle or an impossible
value (a block index past the depth, heads not dividing the width) is caught here too.
"""

from __future__ import annotations

import copy
import csv
import dataclasses
import itertools
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from experiments.run.data import DATASETS, DataConfig, DataSplitError, check_splits, data_info
from experiments.run.identity import run_id
from experiments.run.lit import TrainConfig

SECTIONS = ("model", "data", "train")
PROFILES = ("smoke", "quick", "paper")
DEFAULT_PROFILE = "quick"
TOP_KEYS = {
    "name": "text: the grid's name, <paper>/<table> (default: from the path)",
    "description": "text: one line shown by `make help`",
    "claim": "text: the paper claim or table the grid tests",
    "base": "mapping with model, data, train: the configuration shared by every cell",
    "axes": "mapping of a dotted key (model.layers) to a list of values, or to a mapping "
    "of preset names to overrides",
    "zip": "true/false: pair the axes' values instead of taking their product",
    "seeds": "a positive integer (0..n-1) or a list of distinct integers",
    "baseline": "mapping of axis name to value: the cell deltas are measured against",
    "profiles": "mapping of smoke/quick/paper to overrides of base",
    "sweep": "name of a sweep in ablations/sweeps/ that tunes each cell first",
    "claims": "a list of the paper's claims this grid tests, each a mapping with "
    "text, cell, versus, expect (better/worse/equivalent) and optionally margin, source, note",
}
CLAIM_KEYS = {
    "text": "the claim in words",
    "cell": "the cell the claim is about, a cell label of this grid ('axis=value, ...')",
    "versus": "the cell it is compared with",
    "expect": "better, worse or equivalent",
    "margin": "equivalence margin in percentage points (default 0.5)",
    "source": "where the paper makes the claim",
    "note": "anything a reader of the verdict should know",
    "paper_table": "the paper's table of the cell's published number (paper_results.csv)",
    "paper_model": "the model row of that number in paper_results.csv",
    "versus_table": "the paper's table of the versus cell's published number",
    "versus_model": "the model row of that number in paper_results.csv",
}
# paper_results.csv, where the claims' paper_table/paper_model references point
PAPER_RESULTS = Path(__file__).resolve().parents[2] / "results" / "reference" / "paper_results.csv"
EXPECTS = {"better": 1, "worse": -1, "equivalent": 0}


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
class _UniqueKeyLoader(yaml.SafeLoader):
    """A safe loader that refuses duplicate keys (plain YAML silently keeps the last)."""


def _construct_mapping(loader, node, deep=False):
    seen = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r}", key_node.start_mark
            )
        seen.add(key)
    return yaml.SafeLoader.construct_mapping(loader, node, deep)


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)
# YAML 1.1 reads 1e-3 as a string; accept it as a float like every other config system.
_UniqueKeyLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    __import__("re").compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"),
)


def load_yaml(path: Path) -> Any:
    try:
        return yaml.load(path.read_text(), Loader=_UniqueKeyLoader)
    except yaml.constructor.ConstructorError as err:
        line = err.problem_mark.line + 1 if err.problem_mark else "?"
        if str(err.problem).startswith("duplicate key"):
            key = str(err.problem).split("'")[1] if "'" in str(err.problem) else "?"
            raise SpecError(
                path, key, f"{err.problem} at line {line}; keys must be unique"
            ) from None
        tag = str(err.problem).split("tag ")[-1] if "tag" in str(err.problem) else ""
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


# ----------------------------------------------------------------------------- types
def _type_name(tp) -> str:
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        return " or ".join(_type_name(a) for a in typing.get_args(tp))
    return {type(None): "null"}.get(tp, getattr(tp, "__name__", str(tp)))


def _matches(value: Any, tp) -> bool:
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        return any(_matches(value, a) for a in typing.get_args(tp))
    if tp is type(None):
        return value is None
    if tp is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool)
    origin = typing.get_origin(tp) or tp
    return isinstance(value, origin)


def check_section(path, prefix: str, section: dict, cls) -> None:
    """Check keys and value types of a ``data`` or ``train`` mapping against its dataclass."""
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    if not isinstance(section, dict):
        raise SpecError(path, prefix, f"must be a mapping with keys among {names}")
    for key, value in section.items():
        if key not in hints:
            raise SpecError(path, f"{prefix}.{key}", f"unknown key; allowed: {', '.join(names)}")
        if not _matches(value, hints[key]):
            raise SpecError(
                path, f"{prefix}.{key}", f"got {value!r}; allowed: {_type_name(hints[key])}"
            )
    if cls is DataConfig and "name" in section and section["name"] not in DATASETS:
        raise SpecError(
            path,
            f"{prefix}.name",
            f"unknown dataset {section['name']!r}; allowed: {', '.join(DATASETS)}",
        )
    for key in ("epochs", "batch_size", "eval_batch_size", "val_size", "subset"):
        if (
            isinstance(section.get(key), int)
            and section[key] < 1
            and not (key == "val_size" and section[key] == 0)
        ):
            raise SpecError(
                path, f"{prefix}.{key}", f"got {section[key]}; allowed: an integer >= 1"
            )
    for key in ("lr",):
        if key in section and not section[key] > 0:
            raise SpecError(path, f"{prefix}.{key}", f"got {section[key]}; allowed: a number > 0")


# ----------------------------------------------------------------------------- model
def _toggle_names(name: str, num_classes: int, in_chans: int) -> list[str]:
    """The keyword arguments a timm model's class takes (for 'allowed: ...' messages)."""
    import inspect

    import timm
    import torch

    try:
        with torch.device("meta"):
            model = timm.create_model(name, num_classes=num_classes, in_chans=in_chans)
    except Exception:  # noqa: BLE001 - only used to word a message
        return []
    if hasattr(model, "toggles"):  # the project's models list every toggle they take
        return list(model.toggles())
    params = inspect.signature(type(model).__init__).parameters
    return [p for p in params if p not in ("self", "args", "kwargs")]


def check_model(
    path, model: dict, num_classes: int = 10, in_chans: int = 1, img_size: int = 28
) -> None:
    """Build the model on the meta device: unknown names, toggles and values fail here.

    Raises :class:`SpecError` whose key is ``model.<toggle>`` (the caller says where it is set).
    """
    import re

    import timm
    import torch

    import modules  # noqa: F401
    from experiments.run.lit import create_model
    from modules.toggles import InertToggleError, ToggleError

    model = dict(model)
    name = model.pop("name", None)
    if not isinstance(name, str) or not timm.is_model(name):
        ours = sorted(
            n
            for n in timm.list_models()
            if timm.models.model_entrypoint(n).__module__.startswith("modules.")
        )
        raise SpecError(
            path,
            "model.name",
            f"unknown model {name!r}; allowed: a timm model name, e.g. {', '.join(ours)}",
        )
    try:
        with torch.device("meta"):
            create_model(name, num_classes, in_chans, img_size, **model)
    except InertToggleError as err:
        raise SpecError(
            path, f"model.{err.toggle}", f"has no effect with {err.cause}; {err.allowed}"
        ) from None
    except ToggleError as err:
        raise SpecError(
            path, f"model.{err.toggle}", f"got {err.value!r}; allowed: {err.allowed}"
        ) from None
    except TypeError as err:
        match = re.search(
            r"unexpected keyword argument '(\w+)'|unknown \w+ toggles \['(\w+)'", str(err)
        )
        toggle = next((g for g in match.groups() if g), None) if match else None
        if toggle is None:
            raise SpecError(path, "model", f"model {name!r} cannot be built: {err}") from None
        known = _toggle_names(name, num_classes, in_chans)
        raise SpecError(
            path,
            f"model.{toggle}",
            f"unknown toggle of {name!r}; allowed: {', '.join(known) or 'see the model'}",
        ) from None
    except (ValueError, AssertionError, RuntimeError) as err:
        raise SpecError(
            path, "model", f"model {name!r} cannot be built with {model}: {err}"
        ) from None


# ----------------------------------------------------------------------------- spec
@dataclass
class Run:
    """One training run of a grid: a cell, a seed and the fully resolved configuration."""

    grid: str
    cell: str
    seed: int
    config: dict  # {"model": {...}, "data": {...}, "train": {...}}
    axes_values: dict  # axis name -> value label

    @property
    def run_id(self) -> str:
        return run_id(self.config, self.seed)


def deep_merge(base: dict, over: dict) -> dict:
    out = copy.deepcopy(base)
    for k, v in over.items():
        out[k] = (
            deep_merge(out[k], v)
            if isinstance(v, dict) and isinstance(out.get(k), dict)
            else copy.deepcopy(v)
        )
    return out


def set_dotted(config: dict, key: str, value: Any) -> None:
    section, name = key.split(".", 1)
    config.setdefault(section, {})[name] = copy.deepcopy(value)


def label(value: Any) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    return str(value)


@dataclass
class GridSpec:
    path: Path
    name: str
    description: str
    claim: str
    base: dict
    axes: dict  # axis name -> list of (value label, overrides {dotted key: value})
    axis_keys: list  # the dotted config keys that vary
    zip: bool
    seeds: list
    baseline: dict
    profiles: dict
    sweep: str | None = None
    profile_defaults: dict = field(default_factory=dict)
    claims: list = field(default_factory=list)

    @property
    def paper(self) -> str:
        return self.name.split("/")[0]

    @property
    def table(self) -> str:
        return self.name.split("/")[-1]

    @property
    def baseline_cell(self) -> str:
        return ", ".join(f"{a}={label(self.baseline[a])}" for a in self.axes)

    def resolved_base(self, profile: str) -> dict:
        base = deep_merge({s: {} for s in SECTIONS}, self.base)
        base = deep_merge(base, self.profile_defaults.get(profile, {}))
        return deep_merge(base, self.profiles.get(profile, {}))

    def cells(self) -> list[tuple[str, dict, dict]]:
        """(cell label, overrides, axis -> label) for every cell, in axis order."""
        names = list(self.axes)
        choices = [self.axes[a] for a in names]
        combos = zip(*choices, strict=True) if self.zip else itertools.product(*choices)
        out = []
        for combo in combos:
            overrides, labels = {}, {}
            for axis, (lab, over) in zip(names, combo, strict=True):
                overrides.update(over)
                labels[axis] = lab
            out.append((", ".join(f"{a}={labels[a]}" for a in names), overrides, labels))
        return out

    def expand(self, profile: str = DEFAULT_PROFILE, seeds: list[int] | None = None) -> list[Run]:
        base = self.resolved_base(profile)
        runs = []
        for cell, overrides, labels in self.cells():
            config = copy.deepcopy(base)
            for key, value in overrides.items():
                set_dotted(config, key, value)
            for seed in seeds if seeds is not None else self.seeds:
                runs.append(Run(self.name, cell, seed, copy.deepcopy(config), labels))
        return runs


def _parse_axes(path, axes) -> tuple[dict, list]:
    if not isinstance(axes, dict) or not axes:
        raise SpecError(path, "axes", "must be a non-empty mapping of dotted keys to values")
    parsed, keys = {}, []
    for key, values in axes.items():
        where = f"axes.{key}"
        if isinstance(values, dict):  # named presets: {name: {dotted key: value}}
            if not values:
                raise SpecError(path, where, "empty axis; allowed: at least one preset")
            choices = []
            for preset, over in values.items():
                if not isinstance(over, dict):
                    raise SpecError(
                        path,
                        f"{where}.{preset}",
                        "a preset must be a mapping of dotted keys to values",
                    )
                for k in over:
                    if not isinstance(k, str) or k.split(".")[0] not in SECTIONS or "." not in k:
                        raise SpecError(
                            path, f"{where}.{preset}.{k}", f"allowed: a dotted key in {SECTIONS}"
                        )
                    keys.append(k)
                choices.append((label(preset), dict(over)))
            parsed[str(key)] = choices
        else:
            if not isinstance(key, str) or "." not in key or key.split(".")[0] not in SECTIONS:
                raise SpecError(
                    path,
                    where,
                    f"axis keys are dotted, starting with one of {SECTIONS} (model.layers), or map preset names to overrides",
                )
            if not isinstance(values, list) or not values:
                raise SpecError(path, where, "empty axis; allowed: a non-empty list of values")
            labels = [label(v) for v in values]
            if len(set(labels)) != len(labels):
                raise SpecError(path, where, f"duplicate values {values}; each value once")
            name = key.split(".", 1)[1]
            if name in parsed:
                raise SpecError(path, where, f"duplicate axis '{name}'")
            parsed[name] = [(lab, {key: v}) for lab, v in zip(labels, values, strict=True)]
            keys.append(key)
    return parsed, keys


def load_profile_defaults(spec_path: Path) -> dict:
    """``profiles.yaml`` next to the paper folders (ablations/profiles.yaml), if present."""
    for parent in spec_path.resolve().parents:
        candidate = parent / "profiles.yaml"
        if candidate.is_file():
            data = load_yaml(candidate) or {}
            for prof, over in data.items():
                if prof not in PROFILES:
                    raise SpecError(
                        candidate, prof, f"unknown profile; allowed: {', '.join(PROFILES)}"
                    )
                _check_sections(candidate, prof, over)
            return data
        if (parent / "pyproject.toml").exists():
            break
    return {}


def _check_sections(path, prefix: str, over: dict) -> None:
    if not isinstance(over, dict):
        raise SpecError(path, prefix, f"must be a mapping with keys among {SECTIONS}")
    for key, value in over.items():
        if key not in SECTIONS:
            raise SpecError(path, f"{prefix}.{key}", f"unknown key; allowed: {', '.join(SECTIONS)}")
        if key == "data":
            check_section(path, f"{prefix}.data", value, DataConfig)
        elif key == "train":
            check_section(path, f"{prefix}.train", value, TrainConfig)
        elif not isinstance(value, dict):
            raise SpecError(path, f"{prefix}.model", "must be a mapping: name and toggles")


def load_mapping(
    path: str | Path, keys: dict[str, str], required: tuple[str, ...], what: str
) -> dict:
    """Read a spec file whose top level is a mapping: known keys only, required keys present.

    Shared by grid specs and sweep specs; ``keys`` maps each allowed key to its description.
    """
    path = Path(path)
    if not path.is_file():
        raise SpecError(path, "<file>", f"no such {what}")
    raw = load_yaml(path)
    if not isinstance(raw, dict):
        raise SpecError(path, "<file>", f"a {what} is a mapping with keys " + ", ".join(keys))
    for key in raw:
        if key not in keys:
            allowed = "; ".join(f"{k} ({v})" for k, v in keys.items())
            raise SpecError(path, str(key), f"unknown key; allowed: {allowed}")
    for key in required:
        if key not in raw:
            raise SpecError(path, key, f"missing; {keys[key]}")
    return raw


def load_spec(path: str | Path, build_models: bool = True) -> GridSpec:
    """Load and fully validate one grid spec."""
    path = Path(path)
    raw = load_mapping(path, TOP_KEYS, ("base", "axes"), "spec file")
    default_name = f"{path.parent.name}/{path.stem}"
    name = raw.get("name", default_name)
    for key in ("name", "description", "claim", "sweep"):
        if key in raw and not isinstance(raw[key], str):
            raise SpecError(path, key, f"got {raw[key]!r}; allowed: text")
    if not isinstance(raw.get("zip", False), bool):
        raise SpecError(path, "zip", f"got {raw['zip']!r}; allowed: true or false")

    _check_sections(path, "base", raw["base"])
    if "name" not in raw["base"].get("model", {}):
        raise SpecError(path, "base.model.name", "missing; allowed: a timm model name")
    profiles = raw.get("profiles", {}) or {}
    if not isinstance(profiles, dict):
        raise SpecError(path, "profiles", TOP_KEYS["profiles"])
    for prof, over in profiles.items():
        if prof not in PROFILES:
            raise SpecError(
                path, f"profiles.{prof}", f"unknown profile; allowed: {', '.join(PROFILES)}"
            )
        _check_sections(path, f"profiles.{prof}", over or {})

    axes, axis_keys = _parse_axes(path, raw["axes"])
    for key in axis_keys:
        section = key.split(".")[0]
        if section in ("data", "train"):
            cls = DataConfig if section == "data" else TrainConfig
            check_section(path, f"axes.{key}", {}, cls)
            field_name = key.split(".", 1)[1]
            if field_name not in typing.get_type_hints(cls):
                raise SpecError(
                    path,
                    f"axes.{key}",
                    f"unknown key; allowed: {', '.join(f.name for f in dataclasses.fields(cls))}",
                )
    if raw.get("zip") and len({len(v) for v in axes.values()}) > 1:
        raise SpecError(path, "zip", "zipped axes must have the same number of values")

    seeds = raw.get("seeds", 3)
    if isinstance(seeds, int) and not isinstance(seeds, bool):
        if seeds < 1:
            raise SpecError(path, "seeds", f"got {seeds}; allowed: {TOP_KEYS['seeds']}")
        seeds = list(range(seeds))
    elif not (
        isinstance(seeds, list)
        and seeds
        and all(isinstance(s, int) and not isinstance(s, bool) for s in seeds)
        and len(set(seeds)) == len(seeds)
    ):
        raise SpecError(path, "seeds", f"got {seeds!r}; allowed: {TOP_KEYS['seeds']}")

    baseline = raw.get("baseline")
    if baseline is None:
        baseline = {a: choices[0][0] for a, choices in axes.items()}
    if not isinstance(baseline, dict):
        raise SpecError(path, "baseline", TOP_KEYS["baseline"])
    baseline = {str(k): label(v) for k, v in baseline.items()}
    for axis in baseline:
        if axis not in axes:
            raise SpecError(path, f"baseline.{axis}", f"not an axis; allowed: {', '.join(axes)}")
    for axis, choices in axes.items():
        allowed = [c[0] for c in choices]
        if axis not in baseline:
            raise SpecError(path, f"baseline.{axis}", f"missing; allowed: one of {allowed}")
        if baseline[axis] not in allowed:
            raise SpecError(
                path, f"baseline.{axis}", f"got {baseline[axis]!r}; allowed: one of {allowed}"
            )

    claims = _parse_claims(
        path, raw.get("claims", []), axes, raw.get("zip", False), name.split("/")[0]
    )
    spec = GridSpec(
        path=path,
        claims=claims,
        name=name,
        description=raw.get("description", ""),
        claim=raw.get("claim", ""),
        base=raw["base"],
        axes=axes,
        axis_keys=axis_keys,
        zip=raw.get("zip", False),
        seeds=seeds,
        baseline=baseline,
        profiles=profiles,
        sweep=raw.get("sweep"),
        profile_defaults=load_profile_defaults(path),
    )
    if spec.baseline_cell not in [c[0] for c in spec.cells()]:
        raise SpecError(
            path, "baseline", f"cell {spec.baseline_cell!r} is not in the grid (zipped axes?)"
        )
    _validate_resolved(spec, build_models)
    return spec


def _parse_claims(path, claims, axes: dict, zipped: bool, paper: str) -> list[dict]:
    """Check the ``claims:`` list: known keys, cells of this grid, a known expectation."""
    if not isinstance(claims, list):
        raise SpecError(path, "claims", TOP_KEYS["claims"])
    names = list(axes)
    choices = [[c[0] for c in axes[a]] for a in names]
    combos = zip(*choices, strict=True) if zipped else itertools.product(*choices)
    cells = [", ".join(f"{a}={v}" for a, v in zip(names, combo, strict=True)) for combo in combos]
    out = []
    for i, claim in enumerate(claims):
        where = f"claims[{i}]"
        if not isinstance(claim, dict):
            raise SpecError(path, where, TOP_KEYS["claims"])
        for key in claim:
            if key not in CLAIM_KEYS:
                allowed = "; ".join(f"{k} ({v})" for k, v in CLAIM_KEYS.items())
                raise SpecError(path, f"{where}.{key}", f"unknown key; allowed: {allowed}")
        for key in ("text", "cell", "versus", "expect"):
            if key not in claim:
                raise SpecError(path, f"{where}.{key}", f"missing; {CLAIM_KEYS[key]}")
        for key in ("cell", "versus"):
            if claim[key] not in cells:
                raise SpecError(
                    path, f"{where}.{key}", f"got {claim[key]!r}; allowed: one of {cells}"
                )
        if claim["expect"] not in EXPECTS:
            raise SpecError(
                path, f"{where}.expect", f"got {claim['expect']!r}; allowed: {', '.join(EXPECTS)}"
            )
        margin = claim.get("margin", 0.5)
        if isinstance(margin, bool) or not isinstance(margin, (int, float)) or margin <= 0:
            raise SpecError(path, f"{where}.margin", f"got {margin!r}; allowed: a number > 0")
        for side in ("paper", "versus"):
            table, model = claim.get(f"{side}_table"), claim.get(f"{side}_model")
            if (table is None) != (model is None):
                missing = f"{side}_model" if model is None else f"{side}_table"
                raise SpecError(path, f"{where}.{missing}", f"missing; {CLAIM_KEYS[missing]}")
            if table is not None and (str(table), str(model)) not in _paper_rows(paper):
                raise SpecError(
                    path,
                    f"{where}.{side}_model",
                    f"no row {paper}/{table}/{model} in {PAPER_RESULTS.name}",
                )
        out.append({**claim, "margin": float(margin)})
    return out


def _paper_rows(paper: str) -> set[tuple[str, str]]:
    """(table, model) of the paper's published numbers; empty when the file is absent."""
    if not PAPER_RESULTS.is_file():
        return set()
    with PAPER_RESULTS.open() as f:
        return {(r["table"], r["model"]) for r in csv.DictReader(f) if r["paper"] == paper}


def _validate_resolved(spec: GridSpec, build_models: bool) -> None:
    """Check every cell of every profile: data and train values, and the model itself."""
    path = spec.path
    for profile in PROFILES:
        base = spec.resolved_base(profile)
        for cell, overrides, _ in spec.cells():
            config = copy.deepcopy(base)
            for key, value in overrides.items():
                set_dotted(config, key, value)
            try:
                check_section(path, "data", config["data"], DataConfig)
                check_section(path, "train", config["train"], TrainConfig)
            except SpecError as err:
                where = _where(spec, profile, overrides, err.key)
                raise SpecError(
                    path, where, f"{err.problem} (cell {cell!r}, profile {profile})"
                ) from None
            data = DataConfig(**config["data"])
            info = data_info(data)
            try:
                check_splits(data, info.train_size)
            except DataSplitError as err:
                raise SpecError(
                    path,
                    _where(spec, profile, overrides, f"data.{err.key}"),
                    f"{err.problem} (cell {cell!r}, profile {profile})",
                ) from None
            if not build_models:
                continue
            try:
                check_model(path, config["model"], info.num_classes or 10, info.channels, info.size)
            except SpecError as err:
                raise SpecError(
                    path,
                    _where(spec, profile, overrides, err.key),
                    f"{err.problem} (cell {cell!r}, profile {profile})",
                ) from None


def _where(spec: GridSpec, profile: str, overrides: dict, key: str) -> str:
    """Where a model key is set: an axis, the spec's profile, the shared profiles, or base."""
    if key in overrides:
        return f"axes.{key}"
    for axis, choices in spec.axes.items():  # presets
        for preset, over in choices:
            if key in over:
                return f"axes.{axis}.{preset}.{key}"
    section, _, name = key.partition(".")
    if name in (spec.profiles.get(profile) or {}).get(section, {}):
        return f"profiles.{profile}.{key}"
    if name in spec.profile_defaults.get(profile, {}).get(section, {}):
        return f"profiles.yaml {profile}.{key}"
    return f"base.{key}"


def find_specs(target: str | Path) -> list[Path]:
    """A spec file, or every grid spec under a folder (sweeps/ and profiles.yaml excluded)."""
    target = Path(target)
    if target.is_file():
        return [target]
    return sorted(
        p for p in target.rglob("*.yaml") if "sweeps" not in p.parts and p.name != "profiles.yaml"
    )
