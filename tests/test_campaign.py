"""The campaign driver: first batch for every grid, then one seed round per grid per pass."""

from __future__ import annotations

from types import SimpleNamespace

import pandas as pd
import pytest
from test_seeds import GRID

from experiments.config.spec import SpecError
from experiments.run import campaign, runner, store


def _paper(workspace, names=("a", "b")):
    folder = workspace / "ablations" / "p"
    folder.mkdir(parents=True)
    for name in names:
        (folder / f"{name}.yaml").write_text(GRID.format(n_train=96, epochs=1))
    return workspace / "ablations"


def test_rounds_go_breadth_first_and_stop_when_nothing_is_trained(workspace, monkeypatch):
    """Grid a trains a round in each of two passes, grid b in one (after a round it finds in
    the tables); each batch is one drain over the grids with work, then nothing is open."""
    trains = {"p/a": [1, 1, 0], "p/b": [0, 1, 0]}  # per round: runs enqueued (0: in the tables)
    open_rounds = {"p/a": 2, "p/b": 2}
    drained, planned = [], []

    def fake_prepare(path, profile, storage, seeds, results_dir, claims_only):
        assert claims_only and seeds is None
        job = SimpleNamespace(spec=SimpleNamespace(name=f"p/{path.stem}"), added=4, rounds=0)
        return job

    def fake_next_round(job, storage, results_dir):
        grid = job.spec.name
        if job.rounds >= open_rounds[grid]:
            return False
        job.added = trains[grid][job.rounds]
        job.rounds += 1
        planned.append(grid)
        return True

    def fake_drain(jobs, workers, storage, progress, results_dir):
        assert workers == 2  # asked once, for every drain
        drained.append([j.spec.name for j in jobs])

    monkeypatch.setattr(campaign, "prepare", fake_prepare)
    monkeypatch.setattr(campaign, "next_round", fake_next_round)
    monkeypatch.setattr(campaign, "drain", fake_drain)
    monkeypatch.setattr(campaign, "finish", lambda job, results_dir: None)
    passes = campaign.run_campaign("p", "quick", workers=2, ablations_dir=_paper(workspace))
    assert drained == [["p/a", "p/b"], ["p/a", "p/b"], ["p/a"]]
    assert passes == 2
    # b's first round was all in the tables: walked through, then its second round planned
    assert planned == ["p/a", "p/b", "p/b", "p/a"]


def test_auto_workers_are_measured_once_and_only_when_runs_wait(workspace, monkeypatch):
    """A resumed campaign whose first batch is done measures the layout at the first round."""
    asked = []

    def fake_prepare(path, profile, storage, seeds, results_dir, claims_only):
        return SimpleNamespace(spec=SimpleNamespace(name=f"p/{path.stem}"), added=0, rounds=0)

    def fake_next_round(job, storage, results_dir):
        if job.rounds:
            return False
        job.rounds, job.added = 1, 3
        return True

    workers_seen = []
    monkeypatch.setattr(campaign, "prepare", fake_prepare)
    monkeypatch.setattr(campaign, "next_round", fake_next_round)
    monkeypatch.setattr(
        campaign, "choose_workers", lambda spec, profile, w, pending: asked.append(pending) or 2
    )
    monkeypatch.setattr(campaign, "drain", lambda jobs, w, *a: workers_seen.append(w))
    monkeypatch.setattr(campaign, "finish", lambda job, results_dir: None)
    campaign.run_campaign("p", "quick", workers="auto", ablations_dir=_paper(workspace))
    assert workers_seen == [1, 2]  # nothing waiting: no measurement; then 6 runs waiting
    assert asked == [6]


def test_a_worker_drains_its_studies_in_order(workspace):
    """``worker --study A --study B``: what a campaign's workers run; both grids get done."""
    from experiments.__main__ import main

    folder = _paper(workspace)
    jobs = [
        runner.prepare(folder / "p" / f"{n}.yaml", "quick", seeds=1, claims_only=True)
        for n in ("a", "b")
    ]
    assert [j.added for j in jobs] == [2, 2]  # the claim cells, one seed
    argv = ["worker", "--no-progress"]
    for job in jobs:
        argv += ["--study", job.study_name]
    assert main(argv) == 0
    tables = {n: pd.read_csv(workspace / "results" / "p" / f"{n}.csv") for n in ("a", "b")}
    for table in tables.values():
        assert len(table) == 2 and (table["status"] == "ok").all()
    # the two specs are the same grid under two names: b's runs, enqueued before a trained
    # them, are taken from a's table when the worker reaches them, not trained again
    assert tables["b"]["shared_from"].eq("p/a").all()
    assert tables["b"]["test_top1"].tolist() == tables["a"]["test_top1"].tolist()
    assert tables["b"]["run_id"].tolist() == tables["a"]["run_id"].tolist()


def test_a_run_a_peer_grid_is_training_is_deferred_not_trained_twice(workspace):
    """Two workers take the same run from two grids at once: the later one puts it back at
    the end of its queue and, once the peer has finished it, copies the peer's row."""
    from experiments.run import queue

    folder = _paper(workspace)
    a, b = (
        runner.prepare(folder / "p" / f"{n}.yaml", "quick", seeds=1, claims_only=True)
        for n in ("a", "b")
    )
    first = a.study.ask()  # worker 1 has started a's first run (alive: it started just now)
    run_id = first.user_attrs["run_id"]
    # worker 2, on b: the same run is deferred, b's other run trained
    assert runner.work("p/b", "quick", progress=False, max_runs=1, peers=[a.study_name]) == 1
    deferred = [t for t in b.study.get_trials(deepcopy=False) if t.user_attrs.get("deferred")]
    assert [(t.user_attrs["run_id"], t.user_attrs["deferred"]) for t in deferred] == [
        (run_id, a.study_name)
    ]
    assert queue.run_state(queue.trials_by_run(b.study)[run_id]) == "waiting"
    # worker 1 finishes its run; worker 2 then copies it instead of training it
    run = {k: v for k, v in first.user_attrs.items() if k != "heartbeat"}
    runner.execute(a.study, first, run, progress=False)
    store.export(a.study, "p/a", "quick")
    assert runner.work("p/b", "quick", progress=False, peers=[a.study_name]) == 1
    table = pd.read_csv(workspace / "results" / "p" / "b.csv").set_index("run_id")
    assert table.loc[run_id, "shared_from"] == "p/a"
    assert len(table) == 2 and (table["status"] == "ok").all()


def test_an_unknown_paper_names_the_allowed_ones(workspace):
    with pytest.raises(SpecError, match="allowed: p"):
        campaign.run_campaign("nope", ablations_dir=_paper(workspace))


@pytest.mark.slow  # trains 8 tiny runs: make test-full
def test_max_rounds_limits_the_rounds_that_train(workspace, monkeypatch):
    real = runner.grid_verdicts
    monkeypatch.setattr(
        runner,
        "grid_verdicts",
        lambda *a: real(*a).assign(verdict="inconclusive", precise=False),
    )
    path = _paper(workspace, ("a",)) / "p" / "a.yaml"
    runner.run_grid(path, "quick", progress=False, claims_only=True, max_rounds=0)
    seeds = lambda: pd.read_csv(workspace / "results" / "p" / "a.csv").groupby("cell")["seed"]  # noqa: E731
    assert seeds().max().tolist() == [1, 1]  # the spec's 2 seeds, no round
    runner.run_grid(path, "quick", progress=False, claims_only=True, max_rounds=1)
    assert seeds().max().tolist() == [2, 2]  # one round of batch 1, cap 3
    runner.run_grid(path, "quick", progress=False, claims_only=True, max_rounds=1)
    assert seeds().max().tolist() == [2, 2] and seeds().size().tolist() == [3, 3]  # at the cap


def test_the_campaign_ends_with_the_cost_of_its_open_claims():
    verdicts = pd.DataFrame(
        {
            "paper": "p", "grid": "p/g", "profile": "quick",
            "claim": ["a beats o", "b beats o", "c beats o"], "cell": ["x=a", "x=b", "x=c"],
            "versus_cell": "x=o", "expect": "better", "expected_sign": 1, "margin": 0.5,
            "n_pairs": 3, "delta": [0.25, 0.25, 2.0], "se": 0.25, "level": 0.05 / 3,
            "verdict": ["inconclusive", "inconclusive", "agrees"],
        }
    )  # fmt: skip
    results = pd.DataFrame(
        [{"paper": "p", "grid": "p/g", "profile": "quick", "cell": c, "seed": s,
          "status": "ok", "run_s": 100.0, "wall_s": 90.0, "threads": 2}
         for c in ("x=a", "x=b", "x=c", "x=o") for s in range(3)]
    )  # fmt: skip
    message = campaign.open_claims_message("p", verdicts, results)
    assert message.startswith("[p] 2 claim(s) still inconclusive;")
    assert "seeds.cap" in message and "more runs" in message
    assert campaign.open_claims_message("p", verdicts.iloc[[2]], results) is None


def test_a_drain_retries_the_run_of_a_worker_that_died_before_it_ended(workspace, monkeypatch):
    """A worker died mid-run just now (its heartbeat is fresh): the other worker finds nothing
    waiting and leaves, and the drain then waits for the heartbeat to go stale and trains the
    run again, so the round ends with every run in the table (a campaign killed one worker
    of two and used to plan its next round on a missing run)."""
    from experiments.run import queue

    monkeypatch.setattr(queue, "GRACE_S", 1.0)
    folder = _paper(workspace, names=("a",))
    job = runner.prepare(folder / "p" / "a.yaml", "quick", seeds=1, claims_only=True)
    assert job.added == 2
    dead = job.study.ask()  # taken by a worker that was then killed
    runner.drain([job], 1, None, False, None)
    table = pd.read_csv(workspace / "results" / "p" / "a.csv")
    assert len(table) == 2 and table["run_id"].is_unique and (table["status"] == "ok").all()
    assert dead.user_attrs["run_id"] in set(table["run_id"])
    assert queue.counts(job.study)["running"] == 0


def test_a_queue_older_than_the_tables_keeps_a_grids_own_trainings(workspace):
    """The queue of grid b recorded its runs as copies of a's rows; the committed table says
    b trained them itself (its own timing). Exporting b's queue keeps b's rows and curves,
    with their cell labels, instead of overwriting them with a's (this happened to 24 rows of
    five ScalableViT tables when a campaign resumed on a journal older than the tables)."""
    from experiments.__main__ import main

    folder = _paper(workspace)
    jobs = [
        runner.prepare(folder / "p" / f"{n}.yaml", "quick", seeds=1, claims_only=True)
        for n in ("a", "b")
    ]
    assert main(["worker", "--no-progress", "--study", jobs[0].study_name,
                 "--study", jobs[1].study_name]) == 0  # fmt: skip
    path = workspace / "results" / "p" / "b.csv"
    curves = path.with_name("b.epochs.csv")
    table = store.read_table(path)
    assert table["shared_from"].eq("p/a").all()  # the queue's rows: copies of a's
    # the committed table: b trained both runs itself, at other speeds, with its own curves
    table["shared_from"], table["wall_s"] = "", [111.0, 222.0]
    store.atomic_write_csv(table, path)
    ep = pd.read_csv(curves, dtype={"run_id": str})
    ep["train_loss"] = 9.0
    store.atomic_write_csv(ep, curves)

    store.export(jobs[1].study, "p/b", "quick")
    after = store.read_table(path)
    assert after["shared_from"].fillna("").eq("").all()
    assert after["wall_s"].tolist() == [111.0, 222.0]
    assert after["cell"].tolist() == table["cell"].tolist()
    after_ep = pd.read_csv(curves, dtype={"run_id": str})
    assert len(after_ep) == len(ep) and after_ep["train_loss"].eq(9.0).all()


def test_a_drain_replaces_a_worker_killed_while_runs_wait(workspace, monkeypatch):
    """One worker of two is killed by SIGKILL while runs wait: the drain starts another in its
    place at once (it used to leave that core idle until the round's last run ended, and start
    a fresh set of workers only then). The replacement drains the queue, and it is the only
    worker the drain starts after the first two."""
    from experiments.__main__ import main

    folder = _paper(workspace, names=("a",))
    job = runner.prepare(folder / "p" / "a.yaml", "quick", seeds=1, claims_only=True)
    assert job.added == 2

    class Killed:  # SIGKILLed before it took a run
        pid, returncode = 101, -9

        def poll(self):
            return self.returncode

    class Slow:  # still starting up on the first looks, then leaves without a run
        pid, returncode, looks = 102, None, 0

        def poll(self):
            self.looks += 1
            self.returncode = None if self.looks < 3 else 0
            return self.returncode

    class Inline:  # a worker that drains the queue in this process
        pid, returncode = 103, None

        def __init__(self, argv):
            self.argv = argv

        def poll(self):
            if self.returncode is None:
                self.returncode = main(self.argv)
            return self.returncode

    started, replaced = [], []
    monkeypatch.setattr(runner.time, "sleep", lambda s: None)

    def start_workers(n, argv_of):  # the first set loses a worker; a later set would drain
        started.append(n)
        return [Slow(), Killed()] if len(started) == 1 else [Inline(argv_of(0)), Slow()]

    monkeypatch.setattr(runner, "start_workers", start_workers)
    monkeypatch.setattr(runner, "start_worker", lambda i, n, argv: replaced.append(i) or Inline(argv))  # fmt: skip
    runner.drain([job], 2, None, False, None)
    assert started == [2] and replaced == [1]
    table = pd.read_csv(workspace / "results" / "p" / "a.csv")
    assert len(table) == 2 and (table["status"] == "ok").all()
