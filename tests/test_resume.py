"""A run killed with SIGKILL at any moment and run again ends bit-identical to one that was
never interrupted (same thread count): data order, augmentation, dropout and the curves."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from experiments.run.resume import code_fingerprint, plan_resume

SCRIPT = Path(__file__).resolve().parent / "helpers" / "kill_run.py"
METRICS = ("test_top1", "test_top5", "test_loss", "val_top1", "best_val_top1", "epochs_run")


def _run(
    workdir: Path, moment: str | None = None, budget: str = "epochs", threads: int = 1
) -> dict | None:
    cmd = [sys.executable, str(SCRIPT), str(workdir)] + ([moment] if moment else [])
    env = dict(os.environ, KILL_RUN_BUDGET=budget, KILL_RUN_THREADS=str(threads))
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    if moment:
        assert proc.returncode == -9, proc.stderr[-2000:]  # it was killed, as planned
        return None
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> dict:
    return _run(tmp_path_factory.mktemp("whole") / "run")


# 16 steps per epoch: step 21 is mid-epoch 2; epoch:2 is between epochs 1 and 2; test:0 is
# inside the test pass after the last checkpoint.
@pytest.mark.parametrize(
    "moment",
    [
        "step:21",
        pytest.param("epoch:2", marks=pytest.mark.slow),
        pytest.param("test:0", marks=pytest.mark.slow),
    ],
)
def test_killed_run_resumes_bit_identical(uninterrupted, tmp_path, moment):
    workdir = tmp_path / "run"
    _run(workdir, moment)
    resumed = _run(workdir)
    assert resumed["restart_epoch"] >= 1  # it did resume from a checkpoint
    # the time trained before the restart is kept for the compute table
    assert uninterrupted["before_restart_s"] == 0 < resumed["before_restart_s"]
    for key in METRICS:
        assert resumed[key] == uninterrupted[key], key
    assert resumed["epochs"] == uninterrupted["epochs"]  # curves, loss for loss


@pytest.fixture(scope="module")
def uninterrupted_steps(tmp_path_factory) -> dict:
    return _run(tmp_path_factory.mktemp("whole_steps") / "run", budget="steps")


# a budget in steps, as the quick profile's: killed after an epoch's checkpoint (at the start of
# epoch 1), mid-epoch, and in the partial last epoch. Lightning's own ``max_steps`` resumed
# such a checkpoint by ending its epoch again and training one batch more.
@pytest.mark.parametrize(
    "moment", ["epoch:1", "step:20", pytest.param("step:43", marks=pytest.mark.slow)]
)
def test_killed_run_on_a_step_budget_resumes_bit_identical(uninterrupted_steps, tmp_path, moment):
    workdir = tmp_path / "run"
    _run(workdir, moment, budget="steps")
    resumed = _run(workdir, budget="steps")
    assert resumed["restart_epoch"] >= 1
    assert [e["epoch"] for e in resumed["epochs"]] == [0, 1, 2]
    for key in METRICS:
        assert resumed[key] == uninterrupted_steps[key], key
    assert resumed["epochs"] == uninterrupted_steps["epochs"]


def test_a_run_resumed_at_other_threads_trains_at_its_own(uninterrupted_steps, tmp_path):
    """Killed at one thread, resumed by a worker of two: the rest of the run trains at one
    thread again, so it is the uninterrupted one-thread run, and its row says one thread (a
    CAS-ViT quick run started at 2 threads and finished at 1 came out 0.15 pp off)."""
    workdir = tmp_path / "run"
    _run(workdir, "epoch:1", budget="steps")
    resumed = _run(workdir, budget="steps", threads=2)
    assert resumed["restart_epoch"] == 1
    assert resumed["step_threads"] == [1] and resumed["threads"] == 1
    for key in METRICS:
        assert resumed[key] == uninterrupted_steps[key], key
    assert resumed["epochs"] == uninterrupted_steps["epochs"]


def test_a_checkpoint_from_another_cpu_is_set_aside(uninterrupted_steps, tmp_path):
    """A checkpoint written on another kind of CPU is not resumed (the result would be half one
    CPU's, half the other's): the run starts over and is this CPU's run throughout."""
    import torch

    workdir = tmp_path / "run"
    _run(workdir, "epoch:1", budget="steps")
    path = workdir / "last.ckpt"
    ckpt = torch.load(path, map_location="cpu", weights_only=False)
    assert ckpt["compute"]["threads"] == 1
    ckpt["compute"]["cpu_capability"] = "another CPU"
    torch.save(ckpt, path)
    again = _run(workdir, budget="steps")
    assert again["restart_epoch"] == 0
    for key in METRICS:
        assert again[key] == uninterrupted_steps[key], key
    assert again["epochs"] == uninterrupted_steps["epochs"]


def test_a_checkpoint_from_other_code_is_set_aside(uninterrupted_steps, tmp_path):
    """A checkpoint written by other code (or before code fingerprints were kept) is not
    resumed: a layer computed another way rounds otherwise, and the run would be half one
    version's computation and half the other's. The run starts over."""
    import torch

    workdir = tmp_path / "run"
    _run(workdir, "epoch:1", budget="steps")
    path = workdir / "last.ckpt"
    ckpt = torch.load(path, map_location="cpu", weights_only=False)
    assert ckpt["compute"]["code"] == code_fingerprint()
    for other in ("0123456789abcdef", None):
        if other is None:
            del ckpt["compute"]["code"]
        else:
            ckpt["compute"]["code"] = other
        torch.save(ckpt, path)
        assert not plan_resume(path).resume
    again = _run(workdir, budget="steps")
    assert again["restart_epoch"] == 0
    for key in METRICS:
        assert again[key] == uninterrupted_steps[key], key


def test_the_code_fingerprint_ignores_comments_docstrings_and_layout(tmp_path):
    """Only what runs counts: editing a comment, a docstring or the formatting of a model file
    keeps in-flight runs resumable; changing an expression does not."""
    pkg = tmp_path / "modules"
    pkg.mkdir()
    model = pkg / "model.py"

    def fingerprint(source: str) -> str:
        model.write_text(source)
        return code_fingerprint(tmp_path, ("modules",))

    base = fingerprint('"""A model."""\ndef f(x):\n    """Why."""\n    return x * 2\n')
    assert base == fingerprint(
        '"""A model, better told."""\n\n\ndef f(x):  # doubles\n    """Why, at length."""\n'
        "    return (x * 2)\n"
    )
    assert base != fingerprint('"""A model."""\ndef f(x):\n    """Why."""\n    return x + x\n')
    (pkg / "layer.py").write_text("y = 1\n")
    assert base != fingerprint('"""A model."""\ndef f(x):\n    """Why."""\n    return x * 2\n')
