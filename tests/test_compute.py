"""campaign_compute: distinct runs, their hours and core-hours, per profile and paper."""

from __future__ import annotations

import math

import pandas as pd

from experiments.analysis.compute import campaign_compute


def _run(
    run_id,
    paper="localvit",
    profile="quick",
    run_s=3600.0,
    threads=1,
    status="ok",
    date="2026-12-03T07:00:00",
):
    return {"run_id": run_id, "paper": paper, "profile": profile, "status": status,
            "run_s": run_s, "wall_s": 3540.0, "threads": threads, "date": date}  # fmt: skip


def test_a_shared_run_counts_once_and_threads_multiply():
    rows = [_run("a"), _run("a"), _run("b", threads=2), _run("c", status="failed")]
    row = campaign_compute(pd.DataFrame(rows)).iloc[0]
    assert row["runs"] == 2 and row["run hours"] == 2.0 and row["repeat trainings"] == 0
    assert row["core-hours"] == 3.0 and row["2-core machine hours"] == 1.5
    assert row["median min/run"] == 60.0
    assert row["x the 90-min target"] == 1.0  # 1.5 machine hours


def test_missing_run_time_falls_back_and_missing_threads_leave_core_hours_blank():
    rows = [_run("a", run_s=float("nan"), threads=float("nan")), _run("b", paper="casvit")]
    table = campaign_compute(pd.DataFrame(rows)).set_index("paper")
    assert table.loc["localvit", "run hours"] == round(3540 / 3600, 2)
    assert math.isnan(table.loc["localvit", "core-hours"])
    assert table.loc["casvit", "core-hours"] == 1.0


def test_a_run_trained_twice_counts_once_and_its_hours_twice():
    """The same run id with another finish time is a second training: time spent, no new run."""
    rows = [_run("a"), _run("a", date="2026-12-03T09:00:00"), _run("b")]
    row = campaign_compute(pd.DataFrame(rows)).iloc[0]
    assert row["runs"] == 2 and row["repeat trainings"] == 1 and row["run hours"] == 3.0


def test_a_shared_run_counts_under_the_paper_that_trained_it():
    """Calibration tables load first; their copies of a campaign's runs must not take its hours."""
    copy = {**_run("a", paper="calibration"), "shared_from": "casvit/local"}
    own = {**_run("a", paper="casvit"), "shared_from": float("nan")}
    table = campaign_compute(pd.DataFrame([copy, own, _run("b", paper="calibration")]))
    table = table.set_index("paper")
    assert table.loc["casvit", "runs"] == 1 and table.loc["calibration", "runs"] == 1
    assert table.loc["casvit", "run hours"] == 1.0


def test_a_resumed_run_counts_the_time_it_trained_before_its_restart():
    """Its row's own times start at the restart; ``before_restart_s`` holds the rest, and a
    table from before that column counts the last attempt only."""
    resumed = {**_run("a"), "before_restart_s": 1800.0}
    old = {**_run("b"), "before_restart_s": float("nan")}
    row = campaign_compute(pd.DataFrame([resumed, old])).iloc[0]
    assert row["run hours"] == 2.5
