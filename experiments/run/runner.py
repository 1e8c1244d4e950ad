"""Run a grid: enqueue its runs once, drain the queue with workers, export the table.

``run_grid`` is what ``make ablation-<paper>-<table>`` calls. It validates the spec, enqueues
each run (skipping finished ones), then either works the queue in this process (one worker,
with a progress bar per run) or starts ``workers`` worker processes and shows a grid-level
display. Its steps (``prepare``, ``drain``, ``next_round``, ``finish``) take several grids at
once too: a campaign drains all of a paper's grids with one set of workers, so no core waits
for the last run of one grid before the next grid starts. ``work`` is one worker: it takes
waiting trials until none is left. A run that raises is stored as ``failed`` and the worker
goes on; a NaN loss is stored as ``diverged``; Ctrl-C marks the run failed (so the next
``run`` re-enqueues it and it resumes from its checkpoint).
"""

from __future__ import annotations

import os
import sys
import time
import traceback
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import optuna
import pandas as pd
from optuna.trial import TrialState

from experiments.config.spec import DEFAULT_PROFILE, GridSpec, load_spec
from experiments.run import queue, store
from experiments.run.seeds import SeedPolicy, next_seeds
from experiments.run.workers import (
    killed,
    registered,
    share_threads,
    start_worker,
    start_workers,
)

DEFER_WAIT_S = 30.0  # a deferred run alone in its queue: how long to wait before retaking it


def run_records(spec: GridSpec, profile: str, seeds: list[int] | None = None) -> list[dict]:
    """The runs of a grid as the plain dictionaries stored on their trials."""
    axes = ";".join(spec.axis_keys)
    cells = [c[0] for c in spec.cells()]
    return [
        {
            "run_id": r.run_id,
            "grid": spec.name,
            "paper": spec.paper,
            "table": spec.table,
            "cell": r.cell,
            "cell_index": cells.index(r.cell),
            "baseline_cell": spec.baseline_cell,
            "axes": axes,
            "seed": r.seed,
            "profile": profile,
            "config": r.config,
        }
        for r in spec.expand(profile, seeds)
    ]


def _duplicate(study: optuna.Study, trial_number: int, run_id: str) -> bool:
    """Another trial already finished this run, or is running it right now."""
    others = [t for t in queue.trials_by_run(study).get(run_id, []) if t.number != trial_number]
    return queue.run_state(others) in ("done", "diverged", "running")


def _taken_from_tables(study, trial, run: dict, results_dir: Path | None) -> bool:
    """Close the trial from the results tables if another grid finished this run after it was
    enqueued here (a campaign enqueues all its grids before any run finishes, and grids share
    runs: the same model, data, recipe and seed under two grids' names)."""
    found = store.committed_index(results_dir, own_grid=run["grid"]).get(run["run_id"])
    if found is None:
        return False
    queue.finish_taken(study, trial, store.relabel(found[0], run), found[1])
    return True


def _running_in_peer(trial, run_id: str, peers: list[optuna.Study]) -> str | None:
    """The name of a peer study (another grid of the campaign) whose worker is training this
    run now, having started before this trial (ties go to the study named first): then this
    worker should not train it too."""
    mine = (trial.datetime_start, trial.study.study_name)
    for peer in peers:
        for t in queue.trials_by_run(peer).get(run_id, []):
            if t.state == TrialState.RUNNING and queue.is_alive(t):
                if (t.datetime_start, peer.study_name) < mine:
                    return peer.study_name
    return None


def _defer(study: optuna.Study, trial: optuna.Trial, run: dict, peer: str) -> None:
    """Put the run back at the end of the queue: when a worker takes it again, the peer has
    finished it and it is copied from the results tables (or trained, if the peer failed).
    With nothing else waiting, wait a little first rather than spin on the queue."""
    trial.set_user_attr("deferred", peer)
    study.tell(trial, state=TrialState.FAIL)
    alone = not study.get_trials(deepcopy=False, states=(TrialState.WAITING,))
    queue.add_waiting(study, run)
    if alone:
        time.sleep(DEFER_WAIT_S)


def execute(study: optuna.Study, trial: optuna.Trial, run: dict, progress: bool) -> str:
    """Train one run for ``trial`` and record its result on the trial; returns the status."""
    from experiments.run.train import train_run

    workdir = queue.runs_dir() / run["grid"] / run["profile"] / run["run_id"]
    cfg = run["config"]
    tuned = {"tuned": run["tuned"]} if "tuned" in run else {}  # keys a sweep set for this cell
    started = time.perf_counter()
    try:
        with queue.Heartbeat(study, trial._trial_id):
            result = train_run(
                cfg["model"],
                cfg["data"],
                cfg["train"],
                seed=run["seed"],
                workdir=workdir,
                progress=progress,
                label=f"[{run['grid']} {run['cell']} seed {run['seed']}] ",
            )
    except (KeyboardInterrupt, SystemExit):  # Lightning turns Ctrl-C into SystemExit
        trial.set_user_attr("interrupted", True)
        study.tell(trial, state=TrialState.FAIL)
        raise
    except Exception as err:  # stored as failed, retried once; the grid goes on
        error = f"{type(err).__name__}: {err}"
        trial.set_user_attr(
            "result", store.make_row(run, {"status": "failed", "error": error, **tuned})
        )
        trial.set_user_attr("traceback", traceback.format_exc()[-4000:])
        study.tell(trial, state=TrialState.FAIL)
        trials = queue.trials_by_run(study).get(run["run_id"], [])
        retry = queue.failed_attempts(trials) < 2
        if retry:
            queue.add_waiting(study, run, retry_of=trial.number)
        print(
            f"run {run['run_id']} ({run['cell']}, seed {run['seed']}) failed: {error}"
            + ("; retrying once" if retry else ""),
            file=sys.stderr,
        )
        return "failed"
    result["run_s"] = time.perf_counter() - started  # the whole run: build, train, test, cost
    epochs = result.pop("epochs")
    trial.set_user_attr("epochs", epochs)
    trial.set_user_attr("result", store.make_row(run, {**result, **tuned}))
    if result["status"] == "ok":
        study.tell(trial, result["test_top1"])
    else:
        study.tell(trial, state=TrialState.PRUNED)
    return result["status"]


def work(
    grid: str,
    profile: str,
    storage: str | None = None,
    progress: bool = True,
    results_dir: Path | None = None,
    max_runs: int | None = None,
    peers: Sequence[str] = (),
) -> int:
    """One worker: take waiting runs until the queue is empty; returns how many it ran.

    ``peers``: the names of the other studies this worker's campaign drains. Grids share runs,
    and a run one of them is training right now is deferred here rather than trained twice.
    """
    study = queue.open_study(queue.study_name(grid, profile), storage)
    peer_studies = [queue.open_study(name, storage) for name in peers]
    done = 0
    while max_runs is None or done < max_runs:
        queue.retry_stale(study)
        if not study.get_trials(deepcopy=False, states=(TrialState.WAITING,)):
            break
        trial = queue.take(study)
        run = {
            k: v
            for k, v in trial.user_attrs.items()
            if k not in ("heartbeat", "retry_of", "result", "traceback")
        }
        run.setdefault("run_id", None)
        if not run["run_id"]:  # another worker took the last waiting run between our look and ask
            trial.set_user_attr("queue_empty", True)
            study.tell(trial, state=TrialState.FAIL)
            break
        if _duplicate(study, trial.number, run["run_id"]):
            trial.set_user_attr("duplicate", True)
            study.tell(trial, state=TrialState.FAIL)
            continue
        peer = _running_in_peer(trial, run["run_id"], peer_studies)
        if peer is not None:
            _defer(study, trial, run, peer)
            continue
        trial.set_user_attr("worker", f"{os.uname().nodename}:{os.getpid()}")
        if not _taken_from_tables(study, trial, run, results_dir):
            share_threads()  # the machine's cores over the workers alive on it now
            execute(study, trial, run, progress)
        store.export(study, grid, profile, results_dir)
        done += 1
    return done


def _grid_line(spec: GridSpec, study: optuna.Study, total: int, started: float, done0: int) -> str:
    c = queue.counts(study)
    # the queue may also hold runs an interrupted earlier invocation enqueued (a seed round)
    total = max(total, sum(c[k] for k in ("done", "failed", "running", "waiting", "pending")))
    finished = c["done"] + c["failed"]
    rate = (finished - done0) / max(1e-9, time.time() - started)
    left = total - finished
    eta = f"{left / rate / 60:.1f} min" if rate > 0 and left else "-"
    diverged = f" ({c['diverged']} diverged)" if c["diverged"] else ""
    return (
        f"[{spec.name}] runs done {c['done']}/{total}{diverged}, failed {c['failed']}, "
        f"running {c['running']}, ETA {eta}"
    )


def drain(jobs: list[GridJob], workers: int, storage, progress, results_dir) -> None:
    """Work the grids' queues until every run in them is finished: in this process, or with
    ``workers`` processes that each take the grids in order (a worker whose grid has no run
    left waiting takes the next grid's, so no core idles at a grid's last run).

    A worker leaves when nothing waits, and a run whose worker has just died does not wait
    yet: it counts as running until its heartbeat is ``queue.GRACE_S`` old. So when the
    workers are gone, the runs still marked running are waited for, and those whose worker
    died go back in the queue and are drained again; the drain (a campaign's seed round with
    it) never ends with a killed run missing.
    """
    while True:
        _drain_once(jobs, workers, storage, progress, results_dir)
        if not _requeue_orphans(jobs):
            return


def _queue_state(jobs: list[GridJob]) -> tuple[int, int]:
    """(waiting, running) runs of ``jobs``; a dead worker's run, once stale, is put back first."""
    waiting = running = 0
    for job in jobs:
        queue.retry_stale(job.study, grace=queue.GRACE_S)
        states = (TrialState.WAITING, TrialState.RUNNING)
        for t in job.study.get_trials(deepcopy=False, states=states):
            waiting += t.state == TrialState.WAITING
            running += t.state == TrialState.RUNNING
    return waiting, running


def _requeue_orphans(jobs: list[GridJob]) -> bool:
    """Wait until no run of ``jobs`` is running; True if runs whose worker died were put back
    in the queue (they wait there), False if every run is finished."""
    told = False
    while True:
        waiting, running = _queue_state(jobs)
        if waiting or not running:
            return bool(waiting)
        if not told:
            print(
                f"{running} run(s) marked running after the workers left: waiting for them to "
                f"finish, or to go {queue.GRACE_S:.0f} s without a heartbeat and be retried",
                flush=True,
            )
            told = True
        time.sleep(min(queue.HEARTBEAT_S, queue.GRACE_S / 4))


# killed workers a drain replaces, per worker it started (a worker killed over and over, by the
# OOM killer say, is not restarted without end; the drain's own retry still finishes its runs)
REPLACEMENTS = 2


def _drain_once(jobs: list[GridJob], workers: int, storage, progress, results_dir) -> None:
    """One drain of the queues; the workers leave when nothing waits (``drain``). A worker
    killed by a signal while runs wait (its own run among them once its heartbeat is stale)
    is replaced, so the round keeps every core."""
    started = {j.study_name: (time.time(), queue.counts(j.study)["done"]) for j in jobs}

    def line(job: GridJob) -> str:
        return _grid_line(job.spec, job.study, job.total, *started[job.study_name])

    if workers <= 1:
        with registered():  # this process is the worker
            for job in jobs:
                grid, profile = job.spec.name, job.profile
                while work(grid, profile, storage, progress, results_dir, max_runs=1):
                    print(line(job), flush=True)
        return
    argv = ["worker", *(a for j in jobs for a in ("--study", j.study_name)), "--no-progress"]
    argv += ["--storage", storage] if storage else []
    argv += ["--results", str(results_dir)] if results_dir else []
    procs = start_workers(workers, lambda _i: argv)
    last: dict[str, str] = {}
    replaced = 0
    while any(p.poll() is None for p in procs):
        time.sleep(5)
        for i, proc in enumerate(procs):  # a killed worker's core would idle to the round's end
            if killed(proc) and replaced < REPLACEMENTS * workers and _queue_state(jobs)[0] > 0:
                print(
                    f"worker {proc.pid} was killed (signal {-proc.returncode}); "
                    "starting another in its place",
                    flush=True,
                )
                procs[i] = start_worker(i, workers, argv)
                replaced += 1
        for job in jobs:
            text = line(job)
            state = text.split(", ETA")[0]
            if last.get(job.study_name, state) != state:  # a line when a run of it finishes
                print(text, flush=True)
            last[job.study_name] = state


def claim_cells(spec: GridSpec) -> set[str]:
    """The cells the grid's claims compare."""
    return {c for claim in spec.claims for c in (claim["cell"], claim["versus"])}


def claim_cells_first(spec: GridSpec, runs: list[dict]) -> list[dict]:
    """Runs of the cells the grid's claims compare first (seed by seed), the others after."""
    claimed = claim_cells(spec)
    return sorted(runs, key=lambda r: (r["cell"] not in claimed, r["seed"]))


def grid_verdicts(
    spec: GridSpec,
    profile: str,
    results_dir: Path | None,
    planned: dict[str, list[int]] | None = None,
) -> pd.DataFrame:
    """The confirmatory verdicts of this grid's claims (Holm across the paper's claims).

    ``planned`` (cell -> seeds): read this grid's rows of those seeds only, the look the seed
    schedule is at. Why: a round that was interrupted leaves some of its seeds in the table;
    a resumed campaign that read them would look at an n the schedule never stops at, so its
    verdict, and whether the round is finished, would depend on when it was killed. Replaying
    the schedule over the planned seeds makes a resumed campaign stop where an uninterrupted
    one would, and finish the round it was in. The paper's other grids are read at their last
    complete looks (``experiments.analysis.looks``), so a round of theirs in progress does not
    move this grid's Holm levels either.
    """
    from experiments.analysis import claims as cl
    from experiments.analysis import looks
    from experiments.analysis import stats as an

    results = an.load_results(store.results_root(results_dir), profile=profile)
    ablations = spec.path.resolve().parents[1]
    claims = an.load_claims(ablations)
    family = claims[claims["paper"] == spec.paper]
    fixed = {spec.name: planned} if planned is not None else None
    results = looks.at_last_looks(results, family, ablations, fixed=fixed)
    verdicts = cl.check_claims(results, family)
    return verdicts[(verdicts["grid"] == spec.name) & (verdicts["profile"] == profile)]


def _seeds_per_cell(runs: list[dict]) -> dict[str, list[int]]:
    out: dict[str, set] = {}
    for r in runs:
        out.setdefault(r["cell"], set()).add(r["seed"])
    return {cell: sorted(s) for cell, s in out.items()}


def _enqueue(study, runs, storage, results_dir) -> tuple[int, int]:
    index = store.committed_index(results_dir, own_grid=runs[0]["grid"] if runs else None)
    finished = {
        r["run_id"]: (store.relabel(index[r["run_id"]][0], r), index[r["run_id"]][1])
        for r in runs
        if r["run_id"] in index
    }
    return queue.enqueue_runs(study, runs, storage, finished)


def choose_workers(spec: GridSpec, profile: str, workers: int | str, pending: int) -> int:
    """``workers`` as asked, or the measured best layout for ``"auto"`` (said out loud)."""
    if workers != "auto":
        return int(workers)
    if pending <= 1:
        return 1
    from experiments.run.layout import choose

    best, layouts = choose(spec, profile, pending)
    figures = ", ".join(f"{x.workers}x{x.threads}: {x.img_s:.0f} img/s" for x in layouts)
    print(
        f"[{spec.name}] layout (workers x threads, measured): {figures}; "
        f"picked {best.workers} worker(s) x {best.threads} thread(s)",
        flush=True,
    )
    return best.workers


@dataclass
class GridJob:
    """One grid of a run or a campaign: its runs so far, its queue and its seed policy."""

    spec: GridSpec
    profile: str
    runs: list[dict]
    study: optuna.Study
    policy: SeedPolicy
    adaptive: bool  # seed rounds follow the first batch
    added: int  # runs the last enqueue put in the queue
    tuned: dict | None = None
    rounds: int = 0  # seed rounds planned so far

    @property
    def study_name(self) -> str:
        return queue.study_name(self.spec.name, self.profile)

    @property
    def total(self) -> int:
        return len({r["run_id"] for r in self.runs})


def prepare(
    path: str | Path,
    profile: str = DEFAULT_PROFILE,
    storage: str | None = None,
    seeds: int | None = None,
    results_dir: Path | None = None,
    claims_only: bool = False,
) -> GridJob:
    """Validate a spec and enqueue its first batch (claim cells first); says what it did."""
    spec = load_spec(path)
    seed_list = list(range(seeds)) if seeds else None
    runs = claim_cells_first(spec, run_records(spec, profile, seed_list))
    if claims_only:
        claimed = claim_cells(spec)
        runs = [r for r in runs if r["cell"] in claimed]
    tuned = None
    if spec.sweep:  # tune each cell's nuisance hyper-parameters first, then compare at the best
        from experiments.sweep.tune import apply_tuned, tune_cells

        tuned = tune_cells(spec, profile, storage, results_dir)
        runs = apply_tuned(runs, tuned)
    study = queue.open_study(queue.study_name(spec.name, profile), storage)
    if not study.metric_names:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            study.set_metric_names(["test_top1"])
    # the cells as the spec words them now: a worker's export orders and indexes rows by it
    store.record_cell_order(study, [c[0] for c in spec.cells()])
    added, reused = _enqueue(study, runs, storage, results_dir)
    policy = spec.seed_policy(profile)
    adaptive = policy.adaptive and bool(spec.claims) and seed_list is None
    job = GridJob(spec, profile, runs, study, policy, adaptive, added, tuned)
    shared = len(runs) - job.total
    print(
        f"[{spec.name}] profile {profile}: {job.total} runs ({len(spec.cells())} cells x "
        f"{len(seed_list or spec.seeds)} seeds{f', {shared} shared between cells' if shared else ''}), "
        f"{added} enqueued, {reused} taken from the results tables, "
        f"{job.total - added - reused} already done or queued{unshared_profile(spec, profile)}",
        flush=True,
    )
    return job


def unshared_profile(spec: GridSpec, profile: str) -> str:
    """A warning for the run line when no ``profiles.yaml`` above the spec defines ``profile``.

    Why: a spec copied out of ``ablations/`` finds no shared profiles, so ``--profile pilot``
    trains on the data and recipe defaults (every epoch the whole training split, not the
    pilot's 6,000 images) with nothing to show it; the line says so before anything trains.
    """
    if profile in spec.profile_defaults:
        return ""
    return (
        f"; no profiles.yaml above {spec.path} defines '{profile}': only the spec's own "
        "profile settings and the defaults apply"
    )


def next_round(job: GridJob, storage: str | None, results_dir: Path | None) -> bool:
    """Plan and enqueue the grid's next seed round from its current verdicts (its table is
    exported first); False when no claim is left open. ``job.added`` says what it enqueued
    (0 when every run of the round was in the results tables already)."""
    if not job.adaptive:
        return False
    spec = job.spec
    store.export(job.study, spec.name, job.profile, results_dir, job.runs)
    planned = _seeds_per_cell(job.runs)
    plan = next_seeds(grid_verdicts(spec, job.profile, results_dir, planned), planned, job.policy)
    if not plan:
        return False
    job.rounds += 1
    seeds = sorted({s for v in plan.values() for s in v})
    extra = [
        r for r in run_records(spec, job.profile, seeds) if r["seed"] in plan.get(r["cell"], ())
    ]
    if job.tuned is not None:
        from experiments.sweep.tune import apply_tuned

        extra = apply_tuned(extra, job.tuned)
    job.runs += extra
    job.added, reused = _enqueue(job.study, extra, storage, results_dir)
    print(
        f"[{spec.name}] seed round {job.rounds}: claims still open; "
        + "; ".join(f"{cell}: +{len(s)} seeds" for cell, s in plan.items())
        + f" (cap {job.policy.cap}); {job.added} enqueued, {reused} taken from the results tables",
        flush=True,
    )
    return True


def finish(job: GridJob, results_dir: Path | None) -> Path | None:
    """Export the grid's table (and print its summary); returns the table's path."""
    table = store.export(job.study, job.spec.name, job.profile, results_dir, job.runs)
    if table is not None:
        from experiments.analysis.summary import print_summary

        print_summary(table)
    return table


def run_grid(
    path: str | Path,
    profile: str = DEFAULT_PROFILE,
    workers: int | str = 1,
    storage: str | None = None,
    seeds: int | None = None,
    progress: bool = True,
    results_dir: Path | None = None,
    claims_only: bool = False,
    max_rounds: int | None = None,
) -> Path | None:
    """Validate, enqueue, work and export one grid; returns the path of its results table.

    ``claims_only``: train only the cells the grid's claims compare (a claims campaign); the
    exploratory cells wait for a later run of the grid.

    ``max_rounds``: stop after this many seed rounds that train something new (rounds whose
    runs are all in the tables already are walked through, not counted).

    ``workers="auto"`` measures the layouts of workers x threads on this machine and takes the
    fastest (``experiments.run.layout``).

    Claim cells run first. Under a profile whose ``seeds.cap`` is set (and no ``seeds``
    override), rounds of extra seeds follow for the claims still open (``experiments.run.seeds``).
    """
    job = prepare(path, profile, storage, seeds, results_dir, claims_only)
    workers = choose_workers(job.spec, profile, workers, pending=job.added)
    try:
        drain([job], workers, storage, progress, results_dir)
        trained_rounds = 0
        while max_rounds is None or trained_rounds < max_rounds:
            if not next_round(job, storage, results_dir):
                break
            trained_rounds += job.added > 0
            drain([job], workers, storage, progress, results_dir)
    except KeyboardInterrupt:
        print(
            f"\n[{job.spec.name}] interrupted; rerun the same command to continue.", file=sys.stderr
        )
        raise
    return finish(job, results_dir)
