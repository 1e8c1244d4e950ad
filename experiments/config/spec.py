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

import csv
import itertools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from experiments.config.schema import (  # noqa: F401 - SpecError and the names are re-exported
    DEFAULT_PROFILE,
    PROFILES,
    SECTIONS,
    SpecError,
    field_names,
    typed_dotted,
    typed_section,
    with_dotted,
)
from experiments.config.toplevel import COMMON_KEYS, SpecBase, parse_top
from experiments.run.data import DataConfig, DataSplitError, check_splits, data_info
from experiments.run.identity import run_id
from experiments.run.recipe import scaled_budget

TOP_KEYS = {
    **COMMON_KEYS,
    "name": "text: the grid's name, <paper>/<table> (default: from the path)",
    "claim": "text: the paper claim or table the grid tests",
    "base": "mapping with model, data, train: the configuration shared by every cell",
    "axes": "mapping of a dotted key (model.layers) to a list of values, or to a mapping "
    "of preset names to overrides",
    "zip": "true/false: pair the axes' values instead of taking their product",
    "seeds": "a positive integer (0..n-1) or a list of distinct integers",
    "baseline": "mapping of axis name to value (or its label): the cell deltas are measured "
    "against",
    "sweep": "name of a sweep in ablations/sweeps/ that tunes each cell first",
    "claims": "a list of the paper's claims this grid tests, each a mapping with "
    "text, cell, versus, expect (better/worse/equivalent/not_worse) and optionally margin, "
    "source, note",
}
CLAIM_KEYS = {
    "text": "the claim in words",
    "cell": "the cell the claim is about, a cell label of this grid ('axis=value, ...')",
    "versus": "the cell it is compared with",
    "expect": "better, worse, equivalent (no difference beyond ±margin) or not_worse (the cell "
    "is at most margin below versus: 'at least as good', 'keeps the accuracy')",
    "margin": "equivalence / non-inferiority margin in percentage points (default 0.5)",
    "source": "where the paper makes the claim",
    "note": "anything a reader of the verdict should know",
    "paper_table": "the paper's table of the cell's published number (paper_results.csv)",
    "paper_model": "the model row of that number in paper_results.csv",
    "versus_table": "the paper's table of the versus cell's published number",
    "versus_model": "the model row of that number in paper_results.csv",
}
# paper_results.csv, where the claims' paper_table/paper_model references point
PAPER_RESULTS = Path(__file__).resolve().parents[2] / "results" / "reference" / "paper_results.csv"
# expect -> the sign of the effect the claim is about (0: none); not_worse is about cell >= versus
EXPECTS = {"better": 1, "worse": -1, "equivalent": 0, "not_worse": 1}


# ----------------------------------------------------------------------------- model
def _toggle_names(name: str, num_classes: int, in_chans: int) -> list[str]:
    """The keyword arguments a timm model's class takes (for 'allowed: ...' messages)."""
    import inspect

    import timm

    from experiments.run.meta import on_meta

    try:
        with on_meta():
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

    import modules  # noqa: F401
    from experiments.run.meta import on_meta
    from experiments.run.models import create_model
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
        with on_meta():
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


def label(value: Any) -> str:
    """How a value names a cell: ``true``, ``low``, ``[3, 5, 7]``."""
    if isinstance(value, bool):
        return str(value).lower()
    return str(value)


@dataclass
class GridSpec(SpecBase):
    claim: str
    axes: dict  # axis name -> list of (value label, overrides {dotted key: value})
    axis_keys: list  # the dotted config keys that vary
    zip: bool
    seeds: list
    baseline: dict
    sweep: str | None = None
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
            config = with_dotted(base, overrides)
            config["train"] = scaled_budget(config.get("train", {}))
            for seed in seeds if seeds is not None else self.seeds:
                runs.append(Run(self.name, cell, seed, with_dotted(config, {}), labels))
        return runs


def _dotted_key(path, where: str, key: Any) -> str:
    """A dotted config key (``model.layers``, ``train.lr``) whose data/train field exists."""
    section, _, name = key.partition(".") if isinstance(key, str) else ("", "", "")
    if section not in SECTIONS or not name:
        raise SpecError(
            path,
            where,
            f"axis keys are dotted, starting with one of {SECTIONS} (model.layers), "
            "or map preset names to overrides",
        )
    if section != "model" and name not in field_names(section):
        raise SpecError(path, where, f"unknown key; allowed: {', '.join(field_names(section))}")
    return key


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
                typed = {}
                for k, v in over.items():
                    at = f"{where}.{preset}.{k}"
                    typed[_dotted_key(path, at, k)] = typed_dotted(path, at, k, v)
                    keys.append(k)
                choices.append((label(preset), typed))
            parsed[str(key)] = choices
        else:
            _dotted_key(path, where, key)
            if not isinstance(values, list) or not values:
                raise SpecError(path, where, "empty axis; allowed: a non-empty list of values")
            labels = [label(v) for v in values]
            if len(set(labels)) != len(labels):
                raise SpecError(path, where, f"duplicate values {values}; each value once")
            name = key.split(".", 1)[1]
            if name in parsed:
                raise SpecError(path, where, f"duplicate axis '{name}'")
            parsed[name] = [
                (lab, {key: typed_dotted(path, where, key, v)})
                for lab, v in zip(labels, values, strict=True)
            ]
            keys.append(key)
    return parsed, keys


def _parse_seeds(path, seeds) -> list[int]:
    if isinstance(seeds, int) and not isinstance(seeds, bool):
        if seeds < 1:
            raise SpecError(path, "seeds", f"got {seeds}; allowed: {TOP_KEYS['seeds']}")
        return list(range(seeds))
    if not (
        isinstance(seeds, list)
        and seeds
        and all(isinstance(s, int) and not isinstance(s, bool) for s in seeds)
        and len(set(seeds)) == len(seeds)
    ):
        raise SpecError(path, "seeds", f"got {seeds!r}; allowed: {TOP_KEYS['seeds']}")
    return seeds


def _parse_baseline(path, baseline, axes: dict) -> dict:
    """Axis -> value label; a spec writes the value (``kernel_sizes: [7]``) or its label."""
    if baseline is None:
        return {a: choices[0][0] for a, choices in axes.items()}
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
    return baseline


def load_spec(path: str | Path, build_models: bool = True) -> GridSpec:
    """Load and fully validate one grid spec."""
    path = Path(path)
    default_name = f"{path.parent.name}/{path.stem}"
    raw, common = parse_top(path, TOP_KEYS, ("base", "axes"), "spec file", default_name)
    for key in ("claim", "sweep"):
        if key in raw and not isinstance(raw[key], str):
            raise SpecError(path, key, f"got {raw[key]!r}; allowed: text")
    if not isinstance(raw.get("zip", False), bool):
        raise SpecError(path, "zip", f"got {raw['zip']!r}; allowed: true or false")
    axes, axis_keys = _parse_axes(path, raw["axes"])
    if raw.get("zip") and len({len(v) for v in axes.values()}) > 1:
        raise SpecError(path, "zip", "zipped axes must have the same number of values")
    spec = GridSpec(
        **common,
        claim=raw.get("claim", ""),
        axes=axes,
        axis_keys=axis_keys,
        zip=raw.get("zip", False),
        seeds=_parse_seeds(path, raw.get("seeds", 3)),
        baseline=_parse_baseline(path, raw.get("baseline"), axes),
        sweep=raw.get("sweep"),
    )
    spec.claims = _parse_claims(path, raw.get("claims", []), spec)
    if spec.baseline_cell not in [c[0] for c in spec.cells()]:
        raise SpecError(
            path, "baseline", f"cell {spec.baseline_cell!r} is not in the grid (zipped axes?)"
        )
    _validate_resolved(spec, build_models)
    return spec


def _parse_claims(path, claims, spec: GridSpec) -> list[dict]:
    """Check the ``claims:`` list: known keys, cells of this grid, a known expectation."""
    if not isinstance(claims, list):
        raise SpecError(path, "claims", TOP_KEYS["claims"])
    cells, paper = [c[0] for c in spec.cells()], spec.paper
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
    built = set()  # (model, classes, channels, size) already built: cells often share one
    for profile in PROFILES:
        base = spec.resolved_base(profile)
        for cell, overrides, _ in spec.cells():
            config = with_dotted(base, overrides)
            try:
                try:
                    for section in ("data", "train"):
                        typed_section(path, section, config[section], section)
                    data = DataConfig(**config["data"])
                    info = data_info(data)
                    check_splits(data, info.train_size)
                except DataSplitError as err:
                    raise SpecError(path, f"data.{err.key}", err.problem) from None
                shape = (info.num_classes or 10, info.channels, info.size)
                key = (repr(sorted(config["model"].items())), *shape)
                if build_models and key not in built:
                    check_model(path, config["model"], *shape)
                    built.add(key)
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
