"""Retraining committed runs: a run retrained on the machine and thread count of its row is
bit-identical to it, and ``--resumed`` retrains exactly the runs that were killed and resumed.

Why: a result must not depend on where a run was killed; retraining a resumed run without a
break is the check a reader can run on the committed tables.
"""

from __future__ import annotations

import pandas as pd
from conftest import TINY_BASE

from experiments.run import reproduce, store
from experiments.run.runner import run_grid

GRID = TINY_BASE + "axes:\n  model.depth: [1, 2]\nseeds: 1\n"


def test_resumed_picks_the_ok_runs_that_restarted():
    table = pd.DataFrame(
        {
            "run_id": list("abcd"),
            "status": ["ok", "ok", "failed", "ok"],
            "restart_epoch": [0, 3, 2, None],
        }
    )
    assert reproduce.resumed(table)["run_id"].tolist() == ["b"]
    assert reproduce.resumed(table.drop(columns="restart_epoch")).empty


def test_a_resumed_run_retrained_without_a_break_is_bit_identical(workspace):
    """Two runs trained here; one row is marked resumed. ``--resumed`` retrains that run alone,
    at its row's thread count, and finds it bit-identical; a row whose number was altered is
    found out."""
    import torch

    spec = workspace / "ablations" / "p" / "g.yaml"
    spec.parent.mkdir(parents=True)
    spec.write_text(GRID.format(n_train=96, epochs=1))
    table_path = run_grid(spec, "smoke", progress=False)
    table = store.read_table(table_path)
    assert len(table) == 2 and (table["status"] == "ok").all()
    threads = int(table["threads"].iloc[0])
    table.loc[1, "restart_epoch"] = 1
    store.atomic_write_csv(table, table_path)

    before = torch.get_num_threads()
    try:
        torch.set_num_threads(threads + 1)  # the row's count is set for the retraining
        out = reproduce.reproduce(str(spec), runs=5, profile="smoke", only_resumed=True)
    finally:
        torch.set_num_threads(before)
    assert out["run_id"].tolist() == [table.loc[1, "run_id"]]
    assert out["bit_identical"].all() and out["same_machine_and_threads"].all()
    written = workspace / "results" / "reproduce" / "p-g.resumed.csv"
    assert pd.read_csv(written)["bit_identical"].all()

    again = reproduce.reproduce(str(spec), runs=None, profile="smoke", only_resumed=True)
    assert again.empty  # checked already: nothing retrained, the check kept
    assert pd.read_csv(written, dtype={"run_id": str})["run_id"].tolist() == out["run_id"].tolist()

    table.loc[1, "test_top1"] += 0.01  # a changed row is checked again
    store.atomic_write_csv(table, table_path)
    out = reproduce.reproduce(str(spec), runs=5, profile="smoke", only_resumed=True)
    assert not out["bit_identical"].any()
    assert not pd.read_csv(written)["bit_identical"].any() and len(pd.read_csv(written)) == 1


def test_a_row_names_the_threads_its_run_trained_at():
    """A resumed run trains at its checkpoint's thread count, which may not be the worker's:
    the row records the run's."""
    run = {"run_id": "r", "config": {"model": {"name": "m"}}}
    assert store.make_row(run, {"status": "ok", "threads": 7})["threads"] == 7
    assert store.make_row(run, {"status": "ok"})["threads"] == store.provenance()["threads"]
