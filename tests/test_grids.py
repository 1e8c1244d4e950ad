"""Grids with real processes and real storage: every spec runs, crashes resume, no duplicates."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import pandas as pd
import pytest
from conftest import ROOT, TINY_BASE, cli

from experiments.config.spec import find_specs
from experiments.run import queue
from experiments.run.runner import run_grid

SPECS = find_specs(ROOT / "ablations")

TINY = (
    """
description: a tiny test grid
"""
    + TINY_BASE
    + """axes:
  {axis}
seeds: {seeds}
"""
)


def write_grid(
    tmp: Path,
    axis: str = "model.depth: [1, 2]",
    seeds: int = 2,
    epochs: int = 1,
    n_train: int = 200,
    name: str = "tiny",
) -> Path:
    path = tmp / "ablations" / "test" / f"{name}.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(TINY.format(axis=axis, seeds=seeds, epochs=epochs, n_train=n_train))
    return path


def table(workspace: Path, grid: str, profile: str = "quick") -> pd.DataFrame:
    suffix = "" if profile == "quick" else f".{profile}"
    return pd.read_csv(workspace / "results" / f"{grid}{suffix}.csv")


def _one_per_paper(specs: list) -> list:
    """Every spec; the smallest grid of each paper runs by default, the others under
    ``-m slow`` (``make test-full``), as does the calibration grid (its models are the
    papers' own, smoke-tested there)."""
    from experiments.config.spec import load_spec

    size = {p: len(load_spec(p, build_models=False).cells()) for p in specs}
    smallest = {}
    for p in specs:
        if p.parent.name not in smallest or size[p] < size[smallest[p.parent.name]]:
            smallest[p.parent.name] = p
    return [
        pytest.param(
            p,
            marks=[]
            if smallest[p.parent.name] == p and p.parent.name != "calibration"
            else [pytest.mark.slow],
            id=f"{p.parent.name}/{p.stem}",
        )
        for p in specs
    ]


@pytest.mark.parametrize("spec", _one_per_paper(SPECS))
def test_every_spec_runs_in_smoke_profile(spec, workspace):
    path = run_grid(spec, profile="smoke", seeds=1, progress=False)
    df = pd.read_csv(path)
    from experiments.config.spec import load_spec

    cells = load_spec(spec).cells()
    assert len(df) == len(cells) and df["run_id"].is_unique
    # finished, every run: a BatchNorm cell whose evaluation collapses after a few smoke steps
    # on 256 synthetic images is flagged "collapsed" by design (the calibration grid has two
    # on some CPUs); failed or diverged runs are not accepted
    assert df["status"].isin(["ok", "collapsed"]).all(), df[["cell", "status", "error"]]
    assert (df["status"] == "ok").mean() >= 0.5
    assert df["test_top1"].between(0, 100).all() and (df["params"] > 0).all()


def test_rerun_skips_finished_runs(workspace):
    spec = write_grid(workspace)
    run_grid(spec, profile="quick", progress=False)
    first = table(workspace, "test/tiny")
    study = queue.open_study("test/tiny@quick")
    n_trials = len(study.trials)
    run_grid(spec, profile="quick", progress=False)
    assert len(queue.open_study("test/tiny@quick").trials) == n_trials  # nothing new ran
    again = table(workspace, "test/tiny")
    assert list(again["run_id"]) == list(first["run_id"]) and len(again) == 4
    assert (again["status"] == "ok").all()
    epochs = pd.read_csv(workspace / "results" / "test" / "tiny.epochs.csv")
    assert set(epochs["run_id"]) == set(again["run_id"]) and {"val_top1", "lr"} <= set(epochs)


def test_nan_gives_diverged_and_grid_completes(workspace):
    spec = write_grid(workspace, axis="train.inject_nan_at_step: [null, 2]", seeds=1, epochs=2)
    run_grid(spec, profile="quick", progress=False)
    df = table(workspace, "test/tiny").set_index("train.inject_nan_at_step", drop=False)
    assert sorted(df["status"]) == ["diverged", "ok"]
    assert df.loc[df["status"] == "diverged", "diverged_epoch"].iloc[0] == 0


def test_failed_run_is_stored_retried_once_and_grid_goes_on(workspace):
    # an image folder without a root raises when the run loads its data; the other cell runs
    spec = write_grid(workspace, axis="data.name: [imagefolder, synthetic]", seeds=1)
    run_grid(spec, profile="quick", progress=False)
    df = table(workspace, "test/tiny")
    assert list(df["status"]) == ["failed", "ok"]
    assert "DatasetNotFound" in df.loc[df["status"] == "failed", "error"].iloc[0]
    study = queue.open_study("test/tiny@quick")
    failed_id = df.loc[df["status"] == "failed", "run_id"].iloc[0]
    attempts = queue.trials_by_run(study)[failed_id]
    assert queue.failed_attempts(attempts) == 2  # tried, retried once, then reported
    assert queue.counts(study)["failed"] == 1 and queue.counts(study)["done"] == 1


def test_fresh_clone_trains_nothing(workspace):
    """With the results tables but no runs/ (a fresh clone), a finished grid trains nothing."""
    spec = write_grid(workspace)
    run_grid(spec, profile="quick", progress=False)
    first = table(workspace, "test/tiny")
    shutil.rmtree(workspace / "runs")
    started = time.perf_counter()
    run_grid(spec, profile="quick", progress=False)
    assert time.perf_counter() - started < 30
    study = queue.open_study("test/tiny@quick")
    assert all(t.user_attrs.get("reused") for t in study.trials)  # nothing was trained
    again = table(workspace, "test/tiny")
    pd.testing.assert_frame_equal(again, first)


def test_a_run_is_shared_between_grids(workspace):
    """Two grids that need the same configuration train it once; the second names the first."""
    run_grid(write_grid(workspace, axis="model.depth: [1, 2]", seeds=1), "quick", progress=False)
    other = write_grid(workspace, axis="model.depth: [2, 3]", seeds=1, name="other")
    run_grid(other, "quick", progress=False)
    a, b = table(workspace, "test/tiny"), table(workspace, "test/other")
    shared = b[b["model.depth"] == 2].iloc[0]
    twin = a[a["model.depth"] == 2].iloc[0]
    assert shared["run_id"] == twin["run_id"] and shared["shared_from"] == "test/tiny"
    assert shared["test_top1"] == twin["test_top1"] and shared["cell"] == "depth=2"
    assert pd.isna(b[b["model.depth"] == 3].iloc[0]["shared_from"])
    trained = [t for t in queue.open_study("test/other@quick").trials if "result" in t.user_attrs]
    assert sum(not t.user_attrs.get("reused") for t in trained) == 1


def test_a_run_two_grids_trained_keeps_its_own_row_in_each(workspace):
    """A run trained once per grid (before grids shared runs) stays its grid's own training
    when the grid reruns: same date and no shared_from, so the compute table counts both."""
    run_grid(write_grid(workspace, axis="model.depth: [1, 2]", seeds=1), "quick", progress=False)
    # named to sort after test/tiny: the first table that trained the run is tiny's
    other = write_grid(workspace, axis="model.depth: [2, 3]", seeds=1, name="wide")
    run_grid(other, "quick", progress=False)
    path = workspace / "results" / "test" / "wide.csv"
    own = pd.read_csv(path, dtype={"shared_from": str})
    twin = own["model.depth"] == 2
    own.loc[twin, "shared_from"] = None  # as if this grid had trained the run itself, earlier
    own.loc[twin, "date"] = "2026-01-01T00:00:00+00:00"
    own.to_csv(path, index=False)
    shutil.rmtree(workspace / "runs")  # a fresh clone: only the tables remember
    run_grid(other, "quick", progress=False)
    again = table(workspace, "test/wide")
    row = again[again["model.depth"] == 2].iloc[0]
    assert pd.isna(row["shared_from"]) and row["date"] == "2026-01-01T00:00:00+00:00"


def test_export_never_drops_committed_rows(workspace):
    spec = write_grid(workspace, seeds=2)
    run_grid(spec, profile="quick", progress=False)
    shutil.rmtree(workspace / "runs")
    run_grid(spec, profile="quick", seeds=1, progress=False)  # a smaller grid than the table
    assert len(table(workspace, "test/tiny")) == 4


def _env(workspace: Path, **extra) -> dict:
    return dict(
        os.environ,
        ABLATE_RUNS=str(workspace / "runs"),
        ABLATE_RESULTS=str(workspace / "results"),
        PYTHONPATH=str(ROOT),
        **extra,
    )


@pytest.mark.slow
def test_kill_9_then_rerun_resumes_from_checkpoint(workspace):
    spec = write_grid(workspace, axis="model.depth: [2]", seeds=2, epochs=6, n_train=1500)
    env = _env(workspace, ABLATE_HEARTBEAT="0.5", ABLATE_GRACE="3")
    proc = subprocess.Popen(
        cli("run", str(spec), "--no-progress"),
        cwd=workspace,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.time() + 240
    partial = None  # a run with a checkpoint that has not finished all its epochs
    while time.time() < deadline and partial is None and proc.poll() is None:
        for curve in (workspace / "runs").rglob("epochs.jsonl"):
            done = len(curve.read_text().splitlines())
            if 1 <= done < 5 and (curve.parent / "last.ckpt").exists():
                partial = curve.parent
        time.sleep(0.05)
    assert partial is not None, "no run was caught between two checkpoints"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    time.sleep(3.5)  # the killed trial's heartbeat goes stale
    out = subprocess.run(
        cli("run", str(spec), "--no-progress"),
        cwd=workspace,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    df = table(workspace, "test/tiny")
    assert len(df) == 2 and df["run_id"].is_unique and (df["status"] == "ok").all()
    assert df["restart_epoch"].max() > 0  # the killed run resumed from its checkpoint
    assert (df["epochs_run"] == 6).all()


@pytest.mark.slow
def test_two_workers_never_run_a_run_twice(workspace):
    spec = write_grid(workspace, axis="model.depth: [1, 2, 3]", seeds=2)
    out = subprocess.run(
        cli("run", str(spec), "--workers", "2", "--no-progress"),
        cwd=workspace,
        env=_env(workspace),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    df = table(workspace, "test/tiny")
    assert len(df) == 6 and df["run_id"].is_unique and (df["status"] == "ok").all()
    study = queue.open_study("test/tiny@quick")
    executed = [t.user_attrs["run_id"] for t in study.trials if "result" in t.user_attrs]
    assert sorted(executed) == sorted(df["run_id"])  # each run trained exactly once
    workers = {t.user_attrs.get("worker") for t in study.trials if "result" in t.user_attrs}
    assert len(workers) == 2


def _pg_bin() -> Path | None:
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
    if found:
        return found[-1].parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


@pytest.mark.slow
@pytest.mark.postgres
@pytest.mark.skipif(_pg_bin() is None, reason="PostgreSQL server binaries not installed")
def test_postgresql_storage(workspace):
    pg = _pg_bin()
    data = Path(tempfile.mkdtemp(prefix="ablate-pg-"))  # outside pytest's private tmp tree
    user_cmd: list[str] = []
    if os.geteuid() == 0:  # initdb refuses to run as root
        shutil.chown(data, "postgres", "postgres")
        user_cmd = ["runuser", "-u", "postgres", "--"]
    port = 55432 + os.getpid() % 1000
    subprocess.run(
        [*user_cmd, str(pg / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres"],
        check=True,
        capture_output=True,
    )
    subprocess.run(
        [
            *user_cmd,
            str(pg / "pg_ctl"),
            "-D",
            str(data),
            "-w",
            "-l",
            str(data / "log"),
            "start",
            "-o",
            f"-p {port} -k {data} -c listen_addresses=127.0.0.1",
        ],
        check=True,
        capture_output=True,
    )
    try:
        url = f"postgresql+psycopg2://postgres@127.0.0.1:{port}/postgres"
        spec = write_grid(workspace, axis="model.depth: [1, 2]", seeds=1)
        out = subprocess.run(
            cli("run", str(spec), "--workers", "2", "--storage", url, "--no-progress"),
            cwd=workspace,
            env=_env(workspace),
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert out.returncode == 0, out.stderr[-2000:]
        df = table(workspace, "test/tiny")
        assert len(df) == 2 and (df["status"] == "ok").all()
        study = queue.open_study("test/tiny@quick", url)
        assert sum(t.state.name == "COMPLETE" for t in study.trials) == 2
        assert not (workspace / "runs" / queue.DEFAULT_JOURNAL).exists()
    finally:
        subprocess.run(
            [*user_cmd, str(pg / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"],
            capture_output=True,
        )
        shutil.rmtree(data, ignore_errors=True)


def test_results_flag_is_an_argument_not_the_environment(workspace, monkeypatch):
    from experiments.__main__ import main

    spec = write_grid(workspace, axis="model.depth: [1]", seeds=1)
    monkeypatch.delenv("ABLATE_RESULTS")
    chosen = workspace / "chosen"
    assert main(["run", str(spec), "--results", str(chosen), "--no-progress"]) == 0
    assert (chosen / "test" / "tiny.csv").is_file()
    assert "ABLATE_RESULTS" not in os.environ
    assert not (workspace / "results").exists()


def test_a_renamed_preset_relabels_finished_runs(workspace):
    """Runs finished under an older wording of the spec are exported under the current one."""
    axis = "arm:\n    shallow: {model.depth: 1}\n    deep: {model.depth: 2}"
    spec = write_grid(workspace, axis=axis, seeds=1)
    run_grid(spec, profile="quick", progress=False)
    first = table(workspace, "test/tiny")
    assert sorted(first["cell"]) == ["arm=deep", "arm=shallow"]
    renamed = "arm:\n    deep: {model.depth: 2}\n    one_block: {model.depth: 1}"
    write_grid(workspace, axis=renamed, seeds=1)
    study = queue.open_study("test/tiny@quick")
    n_trials = len(study.trials)
    run_grid(spec, profile="quick", progress=False)
    assert len(queue.open_study("test/tiny@quick").trials) == n_trials  # nothing retrained
    again = table(workspace, "test/tiny").set_index("run_id")
    assert again.loc[first["run_id"], "cell"].tolist() == [
        {"arm=shallow": "arm=one_block", "arm=deep": "arm=deep"}[c] for c in first["cell"]
    ]
    assert dict(zip(again["cell"], again["cell_index"], strict=True)) == {
        "arm=deep": 0,
        "arm=one_block": 1,
    }
    epochs = pd.read_csv(workspace / "results" / "test" / "tiny.epochs.csv")
    assert set(epochs["cell"]) == {"arm=deep", "arm=one_block"}


def test_a_workers_export_writes_the_cell_index_the_spec_gives_now(workspace):
    """A worker exports the grid's table after each run, knowing only the study: the cell
    order the last enqueue recorded orders it, not the indexes stored on older trials."""
    from experiments.run import store
    from experiments.run.runner import prepare

    spec = write_grid(workspace, axis="model.depth: [1, 2]", seeds=1)
    run_grid(spec, profile="quick", progress=False)
    write_grid(workspace, axis="model.depth: [2, 1]", seeds=1)  # the same runs, reordered
    job = prepare(spec, profile="quick")
    assert job.added == 0
    store.export(job.study, "test/tiny", "quick")  # as runner.work does, without the records
    df = table(workspace, "test/tiny")
    assert df["cell"].tolist() == ["depth=2", "depth=1"]
    assert df["cell_index"].tolist() == [0, 1]


def test_progress_line_counts_runs_an_earlier_round_left_in_the_queue(monkeypatch):
    """A campaign restarted mid seed round drains the round's runs with the first batch: the
    line must not read 30/18 with a negative ETA."""
    import time
    from types import SimpleNamespace

    from experiments.run import runner

    counts = {"done": 30, "diverged": 0, "failed": 0, "running": 2, "waiting": 4, "pending": 0}
    monkeypatch.setattr(runner.queue, "counts", lambda study: counts)
    line = runner._grid_line(SimpleNamespace(name="g"), None, 18, time.time() - 60, 20)
    assert "runs done 30/36," in line
    assert float(line.split("ETA ")[1].split(" ")[0]) > 0


def test_a_retried_run_is_taken_before_runs_not_yet_started(tmp_path):
    """A run put back after its worker died has a checkpoint to resume: the next worker takes
    it first (Optuna's ``ask`` alone would hand out the older, unstarted runs first), and two
    workers sharing the journal never both take it."""
    import optuna
    from optuna.trial import TrialState

    url = str(tmp_path / "journal")
    first = queue.open_study("g@quick", url)
    for run_id in ("a", "b"):
        queue.add_waiting(first, {"run_id": run_id})
    queue.add_waiting(first, {"run_id": "c"}, retry_of=0)
    second = queue.open_study("g@quick", url)  # another worker's handle on the same queue
    taken = [queue.take(first), queue.take(second), queue.take(first)]
    assert [t.user_attrs["run_id"] for t in taken] == ["c", "a", "b"]
    assert all(t.state == TrialState.RUNNING for t in first.get_trials(deepcopy=False))
    assert isinstance(taken[0], optuna.Trial)
    first.tell(taken[0], 1.0)  # a claimed retry reports like any asked trial
    assert first.trials[taken[0].number].state == TrialState.COMPLETE


def test_the_run_line_warns_when_no_shared_profile_applies(tmp_path):
    """A spec outside the project finds no profiles.yaml: its --profile then means nothing
    beyond the spec's own settings, and the run line says so; a shared one silences it."""
    from experiments.config.spec import load_spec
    from experiments.run.runner import unshared_profile

    lone = load_spec(write_grid(tmp_path), build_models=False)
    assert "no profiles.yaml above" in unshared_profile(lone, "pilot")
    (tmp_path / "ablations" / "profiles.yaml").write_text("pilot:\n  train: {epochs: 1}\n")
    shared = load_spec(write_grid(tmp_path), build_models=False)
    assert unshared_profile(shared, "pilot") == ""
    assert "'quick'" in unshared_profile(shared, "quick")
    assert unshared_profile(load_spec(SPECS[0], build_models=False), "pilot") == ""
