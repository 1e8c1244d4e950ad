"""Spec validation: bad specs stop before training with one message and exit status 2."""

from __future__ import annotations

import subprocess
import textwrap

import pytest
from conftest import ROOT, cli

from experiments.__main__ import main
from experiments.config.spec import find_specs, load_spec

GOOD = """
description: test
base:
  model: {name: localvit_micro, heads: 3}
  data: {name: synthetic}
  train: {epochs: 1}
axes:
  model.layers: [none, low]
seeds: 2
"""

BAD = {
    "unknown key": (GOOD + "colour: blue\n", "colour", "allowed"),
    "unknown train key": (GOOD.replace("epochs: 1", "epoch: 1"), "base.train.epoch", "epochs"),
    "wrong type": (GOOD.replace("epochs: 1", "epochs: three"), "base.train.epochs", "int"),
    "unknown model": (
        GOOD.replace("localvit_micro", "localvit_huge9"),
        "base.model.name",
        "timm model",
    ),
    "unknown toggle value": (
        GOOD.replace("[none, low]", "[none, lowest]"),
        "axes.model.layers",
        "low",
    ),
    "impossible value": (
        GOOD.replace("[none, low]", "[none, [0, 99]]"),
        "axes.model.layers",
        "block indices",
    ),
    "kernel 2": (
        GOOD.replace("model.layers: [none, low]", "model.kernel_size: [3, 2]"),
        "axes.model.kernel_size",
        "odd",
    ),
    "heads not dividing": (
        GOOD.replace("heads: 3", "heads: 5"),
        "heads",
        "divisor",
    ),
    "unknown toggle": (
        GOOD.replace("heads: 3", "heads: 3, colour: red"),
        "base.model.colour",
        "dwconv",
    ),
    "inert toggle": (
        GOOD.replace("heads: 3", "heads: 3, ffn: locality"),
        "base.model.ffn",
        "no effect with layers",
    ),
    "validation split larger than the data": (
        GOOD.replace("name: synthetic", "name: synthetic, val_size: 100000000"),
        "base.data.val_size",
        "allowed: an integer in [0, 2000)",
    ),
    "unsafe yaml tag": (
        GOOD.replace("description: test", "description: !!python/object/apply:os.getcwd []"),
        "<file>",
        "tag",
    ),
    "empty axis": (GOOD.replace("[none, low]", "[]"), "axes.model.layers", "empty"),
    "duplicate axis": (
        GOOD.replace(
            "  model.layers: [none, low]", "  model.layers: [none, low]\n  model.layers: [all]"
        ),
        "model.layers",
        "duplicate",
    ),
    "bad baseline": (GOOD + "baseline: {layers: mid}\n", "baseline.layers", "allowed"),
    "bad seeds": (GOOD.replace("seeds: 2", "seeds: 0"), "seeds", "positive"),
    "bad dataset": (
        GOOD.replace("name: synthetic", "name: imagenet22k"),
        "base.data.name",
        "fashion_mnist",
    ),
    "unknown precision": (
        GOOD.replace("epochs: 1", "epochs: 1, precision: fp8"),
        "base.train.precision",
        "'32-true', 'bf16-mixed'",
    ),
    "label smoothing of 1 or more": (
        GOOD.replace("epochs: 1", "epochs: 1, label_smoothing: 1.0"),
        "base.train.label_smoothing",
        "[0, 1)",
    ),
    "negative weight decay in an axis": (
        GOOD.replace("model.layers: [none, low]", "train.weight_decay: [0.05, -0.1]"),
        "train.weight_decay",
        ">= 0",
    ),
    "a budget scaled by zero": (
        GOOD.replace("model.layers: [none, low]", "train.budget_scale: [1, 0]"),
        "train.budget_scale",
        "> 0",
    ),
    "three-channel images only as 1 or 3": (
        GOOD.replace("name: synthetic", "name: synthetic, channels: 2"),
        "base.data.channels",
        "one of 1, 3",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_spec_exits_2_with_file_and_key(case, tmp_path, monkeypatch, capsys):
    text, key, allowed = BAD[case]
    path = tmp_path / "bad.yaml"
    path.write_text(textwrap.dedent(text))
    monkeypatch.setenv("ABLATE_RUNS", str(tmp_path / "runs"))
    monkeypatch.setenv("ABLATE_RESULTS", str(tmp_path / "results"))
    assert main(["run", str(path), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert str(path) in err and key in err and allowed in err, err
    assert not (tmp_path / "results").exists()  # nothing written
    assert not (tmp_path / "runs").exists()  # no run started, not even a queue


def test_every_limited_field_exists_and_its_default_passes():
    """A limit names a real field, and the dataclass default is a value the limit allows."""
    import dataclasses

    from experiments.config.schema import LIMITS, SCHEMAS

    for section, limits in LIMITS.items():
        defaults = {f.name: f.default for f in dataclasses.fields(SCHEMAS[section])}
        for name, limit in limits.items():
            assert name in defaults, (section, name)
            value = defaults[name]
            assert value is None or limit.ok(value), (section, name, value)


def test_exit_status_is_2_from_the_shell(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text(GOOD.replace("epochs: 1", "epochs: -1"))
    out = subprocess.run(cli("check", str(path)), capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 2 and "base.train.epochs" in out.stderr


def test_check_says_when_no_shared_profiles_apply(tmp_path):
    """A spec with no profiles.yaml above it gets only its own profile settings; `check`
    says so on its line, and says nothing for a spec that has one."""
    lone = tmp_path / "lone" / "good.yaml"
    shared = tmp_path / "shared" / "good.yaml"
    for path in (lone, shared):
        path.parent.mkdir()
        path.write_text(GOOD)
    (shared.parent / "profiles.yaml").write_text("smoke: {data: {subset: 1000}}\n")
    out = subprocess.run(
        cli("check", str(lone), str(shared)), capture_output=True, text=True, cwd=ROOT
    )
    lines = {line.split()[1]: line for line in out.stdout.splitlines() if line.startswith("ok")}
    assert out.returncode == 0, out.stderr
    assert "no profiles.yaml above it" in lines[str(lone)]
    assert "no profiles.yaml" not in lines[str(shared)]


def test_expansion_ids_are_stable_and_distinct(tmp_path):
    (tmp_path / "pyproject.toml").write_text("")
    (tmp_path / "profiles.yaml").write_text("smoke: {data: {subset: 1000}}\n")
    path = tmp_path / "good.yaml"
    path.write_text(GOOD)
    a, b = load_spec(path).expand("quick"), load_spec(path).expand("quick")
    assert [r.run_id for r in a] == [r.run_id for r in b]
    assert len({r.run_id for r in a}) == 4 == len(a)
    assert {r.run_id for r in load_spec(path).expand("smoke")}.isdisjoint(r.run_id for r in a)


def test_presets_and_zip(tmp_path):
    path = tmp_path / "zip.yaml"
    path.write_text(
        GOOD.replace(
            "  model.layers: [none, low]", "  model.layers: [none, low]\n  model.expansion: [2, 4]"
        )
        + "zip: true\n"
    )
    spec = load_spec(path)
    assert [c[0] for c in spec.cells()] == ["layers=none, expansion=2", "layers=low, expansion=4"]
    path.write_text(
        GOOD.replace(
            "  model.layers: [none, low]",
            "  ctx:\n    a: {model.layers: low, model.expansion: 2}\n    b: {model.layers: all}",
        )
    )
    spec = load_spec(path)
    runs = spec.expand("quick")
    assert [r.cell for r in runs] == ["ctx=a", "ctx=a", "ctx=b", "ctx=b"]
    assert runs[0].config["model"]["expansion"] == 2 and runs[2].config["model"]["layers"] == "all"


def test_every_committed_spec_is_valid():
    specs = find_specs(ROOT / "ablations")
    assert len(specs) >= 10
    for path in specs:
        spec = load_spec(path)
        assert spec.description and spec.claim, path
        if path.parent.name != "calibration":  # learning curves, not effects: one seed
            assert len(spec.seeds) >= 3, path


def test_baseline_is_a_value_or_its_label(tmp_path):
    path = tmp_path / "kernel.yaml"
    grid = GOOD.replace("model.layers: [none, low]", "model.kernel_size: [3, 5]").replace(
        "heads: 3", "heads: 3, layers: all"
    )
    for baseline in ("{kernel_size: 5}", '{kernel_size: "5"}'):
        path.write_text(grid + f"baseline: {baseline}\n")
        assert load_spec(path, build_models=False).baseline_cell == "kernel_size=5"


def test_values_keep_their_types(tmp_path):
    path = tmp_path / "typed.yaml"
    path.write_text(GOOD.replace("epochs: 1", "epochs: 2, lr: 1e-3, warmup_epochs: 1"))
    config = load_spec(path, build_models=False).expand("quick")[0].config
    train = config["train"]
    assert type(train["epochs"]) is int and type(train["lr"]) is float
    assert train["warmup_epochs"] == 1.0 and type(train["warmup_epochs"]) is float
    assert config["model"] == {"name": "localvit_micro", "heads": 3, "layers": "none"}


def test_a_scaled_budget_is_the_budget_written_out(tmp_path):
    """``train.budget_scale`` multiplies the profile's steps (or its epochs where it has none);
    the run is the one with that budget written out: same config in its table, same id."""
    from experiments.run.recipe import TrainConfig, scaled_budget

    assert scaled_budget({"steps": 756, "budget_scale": 2}) == {"steps": 1512}
    assert scaled_budget({"epochs": 3, "budget_scale": 0.5}) == {"epochs": 2}
    assert scaled_budget({"epochs": 1, "budget_scale": 0.1}) == {"epochs": 1}
    assert TrainConfig(steps=100, budget_scale=1.5).steps == 150
    assert TrainConfig(epochs=4, budget_scale=2).epochs == 8
    path = tmp_path / "g.yaml"
    path.write_text(GOOD.replace("model.layers: [none, low]", "train.budget_scale: [1, 2]"))
    written = tmp_path / "w.yaml"
    written.write_text(GOOD.replace("model.layers: [none, low]", "train.epochs: [1, 2]"))
    scaled, plain = load_spec(path).expand("smoke"), load_spec(written).expand("smoke")
    assert [r.run_id for r in scaled] == [r.run_id for r in plain]
    assert [r.config["train"]["epochs"] for r in scaled] == [1, 1, 2, 2]
    assert not any("budget_scale" in r.config["train"] for r in scaled)
    # at a profile that counts steps, the steps are scaled
    (tmp_path / "profiles.yaml").write_text("quick: {train: {steps: 756}}\n")
    quick = load_spec(path).expand("quick", seeds=[0])
    assert [r.config["train"]["steps"] for r in quick] == [756, 1512]
