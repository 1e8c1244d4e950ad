"""The fault drill: a grid whose workers are killed with SIGKILL at random moments finishes in
the same command (started again only where the kills left it no worker), loses no run, trains
none twice into the table, and ends with the same numbers, bit for bit, as a grid that was
never interrupted (same threads per run)."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import time
from pathlib import Path

import pandas as pd
import psutil
import pytest
from conftest import ROOT, cli
from test_grids import write_grid

METRICS = ["test_top1", "test_top5", "test_loss", "val_top1", "best_val_top1", "epochs_run"]


def _env(workspace: Path) -> dict:
    return dict(
        os.environ,
        ABLATE_RUNS=str(workspace / "runs"),
        ABLATE_RESULTS=str(workspace / "results"),
        ABLATE_HEARTBEAT="0.5",
        ABLATE_GRACE="3",
        PYTHONPATH=str(ROOT),
    )


def _workers(parent: int) -> list[int]:
    """Live worker processes of a ``run`` (a killed one stays a zombie until reaped)."""
    try:
        children = psutil.Process(parent).children()
    except psutil.NoSuchProcess:
        return []
    return [c.pid for c in children if c.status() != psutil.STATUS_ZOMBIE]


def _checkpointed(workspace: Path) -> bool:
    return any((workspace / "runs").rglob("last.ckpt"))


def _grid(workspace: Path) -> Path:
    return write_grid(workspace, axis="model.depth: [1, 2, 3]", seeds=3, epochs=5, n_train=2400)


def _start(workspace: Path, spec: Path) -> subprocess.Popen:
    return subprocess.Popen(
        cli("run", str(spec), "--workers", "2", "--no-progress"),
        cwd=workspace,
        env=_env(workspace),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


@pytest.mark.slow
def test_fault_drill(tmp_path):
    rng = random.Random(int(os.environ.get("DRILL_SEED", time.time())))
    reference, drilled = tmp_path / "reference", tmp_path / "drilled"
    for ws in (reference, drilled):
        ws.mkdir()
    begun = time.time()
    _start(reference, _grid(reference)).wait(timeout=900)
    duration = time.time() - begun  # kill moments fall inside an uninterrupted grid's time

    spec = _grid(drilled)
    proc, kills, started = _start(drilled, spec), 0, time.time()
    # the first kill waits for a checkpoint, so at least one run resumes mid-way; the other
    # two fall anywhere (mid-epoch, between epochs, in the test pass, while a row is written)
    moments = sorted(rng.uniform(0.15, 0.8) * duration for _ in range(2))
    for moment in [None, *moments]:
        if moment is None:
            while not _checkpointed(drilled) and proc.poll() is None:
                time.sleep(0.1)
            time.sleep(rng.uniform(0.0, 1.0))
        else:
            time.sleep(max(0.0, started + moment - time.time()))
        if proc.poll() is not None:  # the grid ended before this moment: start it again
            proc = _start(drilled, spec)
        deadline = time.time() + 60
        while (
            not (workers := _workers(proc.pid)) and proc.poll() is None and time.time() < deadline
        ):
            time.sleep(0.2)
        if workers:
            os.kill(rng.choice(workers), signal.SIGKILL)
            kills += 1
    # no rerun: the grid waits for its killed workers' runs to go stale and trains them again
    proc.wait(timeout=900)

    ref = pd.read_csv(reference / "results" / "test" / "tiny.csv").set_index("run_id")
    got = pd.read_csv(drilled / "results" / "test" / "tiny.csv").set_index("run_id")
    print(
        f"drill: {kills} workers killed; runs resumed from a checkpoint: "
        f"{int((got['restart_epoch'] > 0).sum())}; rows {len(got)} of {len(ref)}"
    )
    assert kills == 3
    assert got.index.is_unique and len(got) == len(ref) == 9  # none lost, none twice
    assert (got["status"] == "ok").all()
    pd.testing.assert_frame_equal(got.loc[ref.index, METRICS], ref[METRICS])
