"""Sweeps with real training and real storage: budget, pruning, kill -9, Pareto, bad spaces."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import optuna
import pandas as pd
import pytest
from conftest import ROOT, TINY_BASE, cli
from scipy import stats

from experiments.__main__ import main
from experiments.config.spec import SpecError
from experiments.config.sweep_spec import load_sweep
from experiments.run import queue
from experiments.run.runner import run_grid
from experiments.sweep.export import export, result_path, summary
from experiments.sweep.study import open_study, optimize

SWEEP = (
    """
description: a tiny test sweep
"""
    + TINY_BASE
    + """space:
  {space}
objectives: {objectives}
sampler: {sampler}
pruner: {pruner}
budget: {{trials: {trials}}}
seed: 0
"""
)
LR = "train.lr: {type: float, low: 1.0e-3, high: 1.0e-2, log: true}"
HOPELESS = "train.lr: {type: categorical, choices: [1.0e-9, 3.0e-3]}"  # 1e-9 stays at chance
ACCURACY = "[{metric: best_val_top1, direction: maximize}]"


def write_sweep(tmp: Path, name: str = "tiny", **kw) -> Path:
    fields = dict(
        space=LR,
        objectives=ACCURACY,
        sampler="random",
        pruner="none",
        trials=3,
        epochs=1,
        n_train=128,
    )
    path = tmp / "ablations" / "sweeps" / f"{name}.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(SWEEP.format(**{**fields, **kw}))
    return path


SPECS = sorted((ROOT / "ablations" / "sweeps").glob("*.yaml"))


@pytest.mark.parametrize(
    "spec",
    [
        pytest.param(p, id=p.stem, marks=[pytest.mark.slow] if i else [])
        for i, p in enumerate(SPECS)
    ],
)
def test_every_sweep_spec_runs_in_smoke_profile(spec, workspace):
    argv = ["sweep", str(spec), "--profile", "smoke", "--trials", "2", "--reevaluate", "0", "0"]
    assert main(argv) == 0
    df = pd.read_csv(workspace / "results" / "sweeps" / f"{spec.stem}.smoke.csv")
    assert len(df) == 2 and df["state"].isin(["COMPLETE", "PRUNED"]).all()


def test_sweep_reaches_its_budget_and_exports(workspace):
    path = write_sweep(workspace)
    assert main(["sweep", str(path), "--reevaluate", "2", "2"]) == 0
    df = pd.read_csv(workspace / "results" / "sweeps" / "tiny.csv")
    assert len(df) == 3 and (df["state"] == "COMPLETE").all()
    assert {"value", "params_train.lr", "user_attrs_macs", "user_attrs_epochs_run"} <= set(df)
    assert (df["user_attrs_directions"] == "maximize").all()
    figures = workspace / "results" / "figures" / "sweeps"
    assert (figures / "tiny.png").exists() and (figures / "tiny_params.svg").exists()
    again = pd.read_csv(workspace / "results" / "sweeps" / "reeval" / "tiny.csv")
    # the two best trials on two seeds: their own seed reused, one more seed trained each
    assert len(again) == 4 and again["run_id"].is_unique
    assert sorted(again["source"]) == ["retrained", "retrained", "trial", "trial"]
    best = df.sort_values("value", ascending=False)["number"].head(2).tolist()
    assert sorted(again["trial"].unique()) == sorted(best)
    assert main(["sweep", str(path), "--reevaluate", "2", "2"]) == 0  # nothing new runs
    assert len(pd.read_csv(workspace / "results" / "sweeps" / "reeval" / "tiny.csv")) == 4
    assert (
        len(optuna.load_study(study_name="sweep/tiny@quick", storage=queue.open_storage()).trials)
        == 3
    )


def test_median_pruner_prunes_a_hopeless_trial(workspace):
    pruner = "{name: median, n_startup_trials: 2, n_warmup_steps: 0}"
    path = write_sweep(workspace, space=HOPELESS, pruner=pruner, epochs=3, n_train=512)
    spec = load_sweep(path)
    study = open_study(spec, spec.study_name("quick"))
    for lr in (3e-3, 3e-3, 1e-9):  # two good trials set the median, then a hopeless one
        study.enqueue_trial({"train.lr": lr})
    study = optimize(spec, "quick")
    pruned = study.get_trials(states=(optuna.trial.TrialState.PRUNED,))
    assert [t.params["train.lr"] for t in pruned] == [1e-9]
    assert pruned[0].user_attrs["epochs_run"] < 3
    assert study.trials[1].user_attrs["duplicate_of"] == 0  # a repeated point is not retrained
    assert "saved by pruning" in summary(study, spec)


@pytest.mark.slow
def test_kill_9_worker_then_restart_reaches_the_budget(workspace):
    path = write_sweep(workspace, trials=2, epochs=6, n_train=2000)  # ~0.5 s an epoch
    env = dict(
        os.environ,
        ABLATE_RUNS=str(workspace / "runs"),
        ABLATE_RESULTS=str(workspace / "results"),
        PYTHONPATH=str(ROOT),
        ABLATE_HEARTBEAT="0.5",
        ABLATE_GRACE="3",
    )
    proc = subprocess.Popen(
        cli("sweep", str(path), "--reevaluate", "0", "0"),
        cwd=workspace,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    storage = queue.open_storage()
    deadline, first, curve = time.time() + 240, None, workspace / "runs" / "sweeps" / "tiny"
    while time.time() < deadline:  # one trial done, the next one two epochs in
        time.sleep(0.1)
        try:
            study = optuna.load_study(study_name="sweep/tiny@quick", storage=storage)
        except KeyError:
            continue
        done = study.get_trials(states=(optuna.trial.TrialState.COMPLETE,))
        running = [p for p in curve.rglob("epochs.jsonl") if len(p.read_text().splitlines()) >= 2]
        if done and any(p.parent.name != str(done[0].number) for p in running):
            first = done[0]
            break
    assert first is not None, "no trial completed with a second one running"
    checkpointed = bool(list(curve.rglob("last.ckpt")))
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    time.sleep(3.5)  # the killed trial's heartbeat goes stale
    out = subprocess.run(
        cli("sweep", str(path), "--reevaluate", "0", "0"),
        cwd=workspace,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    study = optuna.load_study(study_name="sweep/tiny@quick", storage=storage)
    states = [t.state.name for t in study.trials]
    assert states.count("COMPLETE") == 2 and states.count("FAIL") == 1, states
    assert study.trials[first.number].value == first.value  # completed trials are kept
    (retry,) = [t for t in study.trials if "retry_of" in t.user_attrs]
    killed = study.trials[retry.user_attrs["retry_of"]]
    assert killed.state.name == "FAIL" and retry.params == killed.params
    if checkpointed:  # resumed from the dead trial's checkpoint (train.py writes one an epoch)
        assert retry.user_attrs["restart_epoch"] > 0


def test_multi_objective_sweep_returns_a_pareto_set(workspace):
    space = (
        "model.embed_dim: {type: categorical, choices: [16, 32]}\n"
        "  model.depth: {type: int, low: 1, high: 2}"
    )
    objectives = (
        "[{metric: best_val_top1, direction: maximize}, {metric: params, direction: minimize}]"
    )
    path = write_sweep(
        workspace,
        space=space,
        objectives=objectives,
        sampler="{name: nsga2, population_size: 2}",
        trials=4,
    )
    spec = load_sweep(path)
    study = optimize(spec, "quick")
    front = study.best_trials
    assert front

    def dominates(a, b):
        (acc_a, p_a), (acc_b, p_b) = a.values, b.values
        return acc_a >= acc_b and p_a <= p_b and (acc_a > acc_b or p_a < p_b)

    assert not any(dominates(a, b) for a in front for b in front)
    df = export(study, result_path(spec.name, "quick"), figures=False)
    assert {"values_0", "values_1"} <= set(df) and (
        df["user_attrs_directions"] == "maximize;minimize"
    ).all()
    assert "Pareto set" in summary(study, spec)


BAD = {
    "low > high": (dict(space="train.lr: {type: float, low: 0.1, high: 0.01}"), "space.train.lr"),
    "log with low 0": (
        dict(space="train.lr: {type: float, low: 0.0, high: 0.1, log: true}"),
        "space.train.lr",
    ),
    "unknown train key": (
        dict(space="train.speed: {type: int, low: 1, high: 2}"),
        "space.train.speed",
    ),
    "unknown toggle": (
        dict(space="model.colour: {type: categorical, choices: [red, blue]}"),
        "space.model.colour",
    ),
    "bad toggle value": (
        dict(space="model.depth: {type: int, low: 0, high: 2}"),
        "space.model.depth",
    ),
    "unknown sampler": (dict(sampler="annealing"), "sampler"),
    "pruner with two objectives": (
        dict(
            pruner="median",
            objectives="[{metric: best_val_top1}, {metric: macs}]",
        ),
        "pruner",
    ),
}


@pytest.mark.parametrize("case", list(BAD), ids=list(BAD))
def test_bad_space_is_refused_naming_the_key(case, tmp_path, capsys):
    overrides, key = BAD[case]
    path = write_sweep(tmp_path, **overrides)
    with pytest.raises(SpecError) as err:
        load_sweep(path)
    assert err.value.key == key, err.value
    assert main(["sweep", str(path)]) == 2
    message = capsys.readouterr().err
    assert str(path) in message and key in message and "allowed" in message


GRID = """
description: a tiny grid tuned per cell
base:
  model: {name: deit_micro, embed_dim: 32, heads: 2}
  data: {name: synthetic, synthetic_size: 16, synthetic_train: 128, synthetic_test: 64,
         val_size: 64, batch_size: 32, crop_padding: 1}
  train: {epochs: 1, warmup_epochs: 0.0, bench_seconds: 0.02}
axes:
  model.depth: [1, 2]
seeds: 1
sweep: tiny
"""


def test_grid_tunes_each_cell_then_compares(workspace):
    write_sweep(workspace, trials=2)
    grid = workspace / "ablations" / "test" / "tuned.yaml"
    grid.parent.mkdir(parents=True)
    grid.write_text(GRID)
    table = pd.read_csv(run_grid(grid, progress=False))
    assert (
        len(table) == 2 and (table["status"] == "ok").all() and (table["tuned"] == "train.lr").all()
    )
    storage = queue.open_storage()
    for _, row in table.iterrows():
        cell = optuna.load_study(
            study_name=f"sweep/tiny/test/tuned/{row['cell']}@quick", storage=storage
        )
        assert len(cell.trials) == 2 and row["train.lr"] == cell.best_params["train.lr"]
    assert (workspace / "results" / "sweeps" / "tuned" / "test" / "tuned.csv").exists()


def test_the_winner_is_the_best_mean_over_seeds_not_the_luckiest_trial():
    """Trial 7 ranked first on its own seed (82) but averages lower than trial 3; the report
    names trial 3, and names no winner for a sweep not re-evaluated."""
    from experiments.analysis import sweeps as sw
    from experiments.analysis.sweep_report import reeval_lines

    reeval = pd.DataFrame(
        {"trial": [7, 7, 7, 3, 3, 3], "seed": [0, 1, 2] * 2, "params_train.lr": [1e-2] * 3 + [2e-3] * 3,
         "best_val_top1": [82.0, 76.0, 77.0, 80.0, 80.5, 79.5], "macs": [5.0] * 6}
    )  # fmt: skip
    ranked = sw.reevaluated(reeval, "best_val_top1", "maximize")
    assert ranked["trial"].tolist() == [3, 7]
    assert ranked.loc[0, "mean"] == pytest.approx(80.0) and ranked.loc[0, "seeds"] == 3
    assert ranked.loc[0, "params_train.lr"] == 2e-3
    assert ranked.loc[0, "ci_low"] < 80.0 < ranked.loc[0, "ci_high"]
    assert sw.reevaluated(reeval, "best_val_top1", "minimize")["trial"].tolist() == [7, 3]
    trials = pd.DataFrame(
        {"number": [3, 7], "value": [80.0, 82.0], "user_attrs_objectives": "best_val_top1",
         "user_attrs_directions": "maximize"}
    )  # fmt: skip
    text = "\n".join(reeval_lines(trials, reeval))
    assert "the winner is trial 3 over 3 seeds" in text and "80.00 ±" in text
    p = ranked.loc[1, "p vs winner"]
    assert p == pytest.approx(
        stats.ttest_ind([82.0, 76.0, 77.0], [80.0, 80.5, 79.5], equal_var=False).pvalue
    )
    assert p > 0.05 and "do not tell it from 1 of the others" in text
    assert pd.isna(ranked.loc[0, "p vs winner"])
    assert "no winner is named" in "\n".join(reeval_lines(trials, None))


def test_sweep_tables_read_as_numbers_a_reader_uses():
    """Trial numbers read as integers (a NaN in the column made them floats: "10.0"), a
    learning rate to 3 significant digits, a metric to 2 decimals, no ``params_`` prefix."""
    from experiments.analysis.sweep_report import readable

    table = pd.DataFrame(
        {"trial": [10.0, 2.0], "best_val_top1": [80.84999918937683, float("nan")],
         "params_train.lr": [0.0014449445100074014, 0.0003633], "params_model.act": ["gelu", "relu"],
         "seeds": [3.0, 3.0]}
    )  # fmt: skip
    out = readable(table)
    assert list(out.columns) == ["trial", "best_val_top1", "train.lr", "model.act", "seeds"]
    assert out["trial"].tolist() == ["10", "2"] and out["seeds"].tolist() == ["3", "3"]
    assert out["best_val_top1"].tolist() == ["80.85", ""]
    assert out["train.lr"].tolist() == ["0.00144", "0.000363"]
    assert out["model.act"].tolist() == ["gelu", "relu"]


def test_a_repeated_configuration_is_listed_once_in_the_pareto_set(workspace):
    """NSGA-II repeats parents; a repeat reuses its result, so it is the same front point."""
    from optuna.distributions import CategoricalDistribution

    objectives = (
        "[{metric: best_val_top1, direction: maximize}, {metric: params, direction: minimize}]"
    )
    space = "model.embed_dim: {type: categorical, choices: [16, 32]}"
    spec = load_sweep(write_sweep(workspace, space=space, objectives=objectives))
    study = optuna.create_study(directions=["maximize", "minimize"])
    dist = {"model.embed_dim": CategoricalDistribution([16, 32])}
    for values, dim, attrs in (
        ([80.0, 100.0], 16, {}),
        ([80.0, 100.0], 16, {"duplicate_of": 0}),
        ([85.0, 300.0], 32, {}),
    ):
        study.add_trial(
            optuna.trial.create_trial(
                values=values, params={"model.embed_dim": dim}, distributions=dist,
                user_attrs=attrs,
            )
        )  # fmt: skip
    text = summary(study, spec)
    assert "Pareto set (2 configurations)" in text
    assert [line.split(":")[0].strip() for line in text.splitlines() if "  trial " in line] == [
        "trial 0",
        "trial 2",
    ]
    assert "1 trial(s) repeated an earlier configuration" in text
