"""The identity of a run: the hash of its fully resolved configuration and seed.

Two runs that would train the same network on the same data with the same recipe and seed
are one run, however their grids spell them: the model part is what the built model reports
(``type(model).__name__`` and ``model.toggles()``, every default filled in and every inert
toggle ``None``), and the data and train parts are their dataclasses with every default
filled in. Keys that cannot change a number (where data lives, how long throughput is timed,
the evaluation batch, BatchNorm folded for evaluation) are left out. ``NUMERICS_VERSION`` is bumped by a change of the code
that changes the numbers of an unchanged configuration, so old results are not reused then.
A change of rounding only (a kernel that sums in another order, as
``modules.layers.small_map_conv`` does for some weight gradients) is not such a change: a
different CPU generation changes the last bits of every run in the same way, and the runs in
the tables were trained on several.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
from typing import Any

NUMERICS_VERSION = 1
NOT_IDENTITY = {
    "data": ("root", "download", "eval_batch_size"),
    # fold_bn: folding a BatchNorm changes the rounding of evaluation only
    "train": ("bench_seconds", "collapse_gap", "fold_bn"),
}
# Knobs added after results were committed: at these values they reproduce the numbers of
# the code before them, so they are left out of the hash there and old run ids stay valid.
NEUTRAL = {"train": {"steps": None, "precise_bn": 0, "val_every": 1, "budget_scale": 1.0}}
# Model toggles added later, per architecture: the values (the default, or None where inert)
# at which the network is the one built before the toggle existed.
NEUTRAL_TOGGLES = {"EfficientMod": {"norm": ("layernorm", None)}}
# The precision a run trains in decides its numbers, not how its config spells it: ``auto`` is
# fp32 on a CPU and bf16 on a GPU (``precision.resolve_precision``), so the hash takes the
# resolved precision. fp32 is hashed as "auto", the spelling every fp32 run in the tables was
# hashed with, so their ids stay valid and an explicit "32-true" on a CPU is the same run.
FP32_HASHED_AS = "auto"


def _plain(value: Any) -> Any:
    """JSON-stable values: tuples become lists, floats that are integers stay floats."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in sorted(value.items())}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


@functools.lru_cache(maxsize=512)
def _resolved_model(model_json: str, num_classes: int, in_chans: int, img_size: int) -> str:
    from experiments.run.meta import on_meta
    from experiments.run.models import create_model

    model = json.loads(model_json)
    name = model.pop("name")
    with on_meta():
        net = create_model(name, num_classes, in_chans, img_size, **model)
    if hasattr(net, "toggles"):
        arch = type(net).__name__
        neutral = NEUTRAL_TOGGLES.get(arch, {})
        toggles = {
            k: v for k, v in net.toggles().items() if k not in neutral or v not in neutral[k]
        }
        out = {"arch": arch, **toggles}
    else:  # a timm model without toggles(): its name and the toggles as written
        out = {"arch": name, **model, "num_classes": num_classes, "in_chans": in_chans}
    return json.dumps(_plain(out), sort_keys=True, default=str)


def resolve_model(model: dict, num_classes: int, in_chans: int, img_size: int) -> dict:
    """The model part of the identity: what the built model says it is."""
    key = json.dumps(_plain(model), sort_keys=True, default=str)
    return json.loads(_resolved_model(key, num_classes, in_chans, img_size))


def _typed(obj) -> dict:
    """A config dataclass as a dict, ints in float fields as floats (``lr: 1`` == ``lr: 1.0``)."""
    import typing

    hints = typing.get_type_hints(type(obj))
    out = {}
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        tp = hints[f.name]
        takes_float = tp is float or float in typing.get_args(tp)
        takes_int = tp is int or int in typing.get_args(tp)
        if takes_float and not takes_int and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        out[f.name] = value
    return out


def resolve(config: dict) -> dict:
    """``{"model", "data", "train"}`` as written -> the same with every default resolved."""
    from experiments.run.data import DataConfig, data_info, resolve_val_size
    from experiments.run.precision import resolve_precision
    from experiments.run.recipe import TrainConfig

    data = DataConfig(**config.get("data", {}))
    train = TrainConfig(**config.get("train", {}))
    precision = resolve_precision(train.precision, train.accelerator)
    train.precision = FP32_HASHED_AS if precision == "32-true" else precision
    info = data_info(data)
    data_d = _typed(data)
    data_d["val_size"] = resolve_val_size(data, info.train_size)
    model = dict(config["model"])
    if train.drop_path and "drop_path_rate" not in model:  # as ClassificationModule does
        model["drop_path_rate"] = train.drop_path
    resolved = {
        "model": resolve_model(model, info.num_classes or 10, info.channels, info.size),
        "data": {k: v for k, v in data_d.items() if k not in NOT_IDENTITY["data"]},
        "train": {
            k: v
            for k, v in _typed(train).items()
            if k not in NOT_IDENTITY["train"]
            and not (k in NEUTRAL["train"] and v == NEUTRAL["train"][k])
        },
    }
    return _plain(resolved)


def run_id(config: dict, seed: int) -> str:
    """A stable 12-hex id of the resolved configuration, the seed and the numerics version."""
    text = json.dumps(
        {"config": resolve(config), "seed": seed, "numerics": NUMERICS_VERSION},
        sort_keys=True,
        default=str,
    )
    return hashlib.sha1(text.encode()).hexdigest()[:12]
