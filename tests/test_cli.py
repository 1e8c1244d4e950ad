"""The single-run command line end to end, and the packaging files agreeing."""

from __future__ import annotations

import json
import re
import subprocess
import tomllib

import pytest
import yaml
from conftest import ROOT, cli

from experiments.__main__ import main


def test_train_cli_one_epoch_on_fashion_mnist_subset(tiny_fashion_mnist, workspace):
    out = subprocess.run(
        cli(
            "train",
            "--model",
            "localvit_micro",
            "--set",
            "depth=2",
            "embed_dim=48",
            "heads=2",
            "se_reduction=48",
            "train.bench_seconds=0.05",
            "data.val_size=100",
            "--data-root",
            str(tiny_fashion_mnist),
            "--subset",
            "300",
            "--epochs",
            "1",
            "--seed",
            "1",
            "--no-progress",
        ),
        capture_output=True,
        text=True,
        cwd=workspace,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    row = json.loads(out.stdout.strip().splitlines()[-1])
    assert row["status"] == "ok" and row["seed"] == 1 and row["model.depth"] == 2
    assert 0 <= row["test_top1"] <= 100 and row["epochs_run"] == 1 and row["params"] > 0


def test_train_cli_help_documents_options(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    out = capsys.readouterr().out
    for option in ("--model", "--set", "--data", "--epochs", "--seed", "--subset", "--out"):
        assert option in out


def test_bad_toggle_exits_2(workspace, capsys):
    argv = ["train", "--model", "localvit_micro", "--set", "kernel_size=2", "--data", "synthetic"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "kernel_size" in err and len(err.strip().splitlines()) == 1


def _names(requirements: list[str]) -> set[str]:
    return {re.split(r"[<>=!~ \[]", r.strip(), maxsplit=1)[0].lower() for r in requirements}


def test_environment_yml_matches_pyproject():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    declared = {
        r.replace(" ", "")
        for r in project["dependencies"] + project["optional-dependencies"]["dev"]
    }
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    listed = {r.replace(" ", "") for r in pip if not r.startswith("-e")}
    assert listed == declared, (
        f"only in environment.yml: {listed - declared}; only in pyproject: {declared - listed}"
    )
