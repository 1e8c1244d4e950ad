"""The queue of runs: an Optuna study per grid and profile, each run enqueued exactly once.

Optuna gives us durable storage (a journal file, or any RDB URL such as PostgreSQL), atomic
hand-out of waiting trials to concurrent workers, and a trial table to export. A grid does not
use a sampler at all: every run is enqueued once with its run id and resolved config as user
attributes (GridSampler hands the same point to several workers).

Liveness is ours: Optuna's heartbeat exists only for RDB storages, so a worker writes a
``heartbeat`` timestamp on its trial every few seconds, and a trial that is RUNNING with a
heartbeat older than the grace period is failed and re-enqueued (its checkpoint, keyed by run
id, lets the retry resume).

Trial states mean one thing each:

=========  ====================================================  ========================
state      meaning                                               the run is
=========  ====================================================  ========================
COMPLETE   trained (or reused from a results table), ``ok``      done
PRUNED     the loss became NaN/inf; the row says ``diverged``    done (diverged)
FAIL       with a ``result``: the run raised; the row says       failed (retried once)
           ``failed`` and the error
FAIL       without a result: the worker died or was stopped      waiting again (resumes)
=========  ====================================================  ========================

Trials that carry no run (an ``ask`` that found the queue empty) or that a worker dropped as
a ``duplicate`` of a run already taken are FAIL too, and are ignored by everything here.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import threading
import time
from pathlib import Path

import optuna
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend, JournalFileOpenLock
from optuna.trial import TrialState

DEFAULT_JOURNAL = "optuna.journal"
HEARTBEAT_S = float(os.environ.get("ABLATE_HEARTBEAT", 10))
GRACE_S = float(os.environ.get("ABLATE_GRACE", 60))
FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)
IGNORED_ATTRS = ("duplicate", "queue_empty", "deferred")

optuna.logging.set_verbosity(optuna.logging.WARNING)


def runs_dir() -> Path:
    """Checkpoints and the default journal live here (``ABLATE_RUNS`` overrides ``runs/``)."""
    return Path(os.environ.get("ABLATE_RUNS", "runs"))


def storage_url(storage: str | None = None) -> str:
    """``--storage``, else ``ABLATE_STORAGE``, else the journal file under ``runs/``."""
    return storage or os.environ.get("ABLATE_STORAGE") or str(runs_dir() / DEFAULT_JOURNAL)


def open_storage(storage: str | None = None):
    url = storage_url(storage)
    if "://" in url:
        return optuna.storages.RDBStorage(url, engine_kwargs={"pool_pre_ping": True})
    path = Path(url)
    path.parent.mkdir(parents=True, exist_ok=True)
    return JournalStorage(JournalFileBackend(str(path), lock_obj=JournalFileOpenLock(str(path))))


def study_name(grid: str, profile: str) -> str:
    return f"{grid}@{profile}"


def open_study(name: str, storage: str | None = None, directions=("maximize",)) -> optuna.Study:
    return optuna.create_study(
        study_name=name,
        storage=open_storage(storage),
        load_if_exists=True,
        directions=list(directions),
    )


@contextlib.contextmanager
def enqueue_lock(storage: str | None):
    """Serialise enqueueing between local processes sharing a journal file."""
    url = storage_url(storage)
    lock_path = Path(url + ".enqueue-lock") if "://" not in url else runs_dir() / "enqueue.lock"
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_path, "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def trials_by_run(study: optuna.Study) -> dict[str, list[optuna.trial.FrozenTrial]]:
    """The trials of each run id, without the ignored ones (duplicates, empty asks)."""
    out: dict[str, list] = {}
    for t in study.get_trials(deepcopy=False):
        rid = t.user_attrs.get("run_id")
        if rid and not any(t.user_attrs.get(a) for a in IGNORED_ATTRS):
            out.setdefault(rid, []).append(t)
    return out


def failed_attempts(trials: list[optuna.trial.FrozenTrial]) -> int:
    """Attempts of a run that raised (FAIL with a stored result)."""
    return sum(1 for t in trials if t.state == TrialState.FAIL and "result" in t.user_attrs)


def run_state(trials: list[optuna.trial.FrozenTrial], grace: float = GRACE_S) -> str:
    """done, diverged, running, waiting, failed, or pending (nothing live: enqueue it)."""
    states = {t.state for t in trials}
    if TrialState.COMPLETE in states:
        return "done"
    if TrialState.PRUNED in states:
        return "diverged"
    if any(t.state == TrialState.RUNNING and is_alive(t, grace) for t in trials):
        return "running"
    if TrialState.WAITING in states:
        return "waiting"
    if failed_attempts(trials):
        return "failed"
    return "pending"


def is_alive(trial: optuna.trial.FrozenTrial, grace: float = GRACE_S) -> bool:
    beat = trial.user_attrs.get(
        "heartbeat", trial.datetime_start.timestamp() if trial.datetime_start else 0
    )
    return time.time() - beat < grace


def retry_stale(study: optuna.Study, grace: float = GRACE_S) -> list[int]:
    """Fail RUNNING trials whose worker stopped beating and put each back in the queue.

    A grid's run goes back with its attributes (``retry_of`` the dead trial); a sweep's trial
    goes back with its sampled params (``retry_of`` the first attempt, whose checkpoint the
    retry resumes). Returns the numbers of the trials failed.
    """
    storage = study._storage
    retried = []
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        if is_alive(t, grace):
            continue
        try:
            if not storage.set_trial_state_values(t._trial_id, TrialState.FAIL):
                continue
        except (RuntimeError, optuna.exceptions.UpdateFinishedTrialError):
            continue  # another worker got there first
        if "run_id" in t.user_attrs:  # a grid's run
            attrs = {k: v for k, v in t.user_attrs.items() if k not in ("heartbeat", "result")}
            attrs["retry_of"] = t.number
            study.add_trial(optuna.create_trial(state=TrialState.WAITING, user_attrs=attrs))
        else:  # a sweep's sampled trial
            root = t.user_attrs.get("retry_of", t.number)
            study.enqueue_trial(t.params, user_attrs={"retry_of": root})
        retried.append(t.number)
    return retried


def take(study: optuna.Study) -> optuna.Trial:
    """The next waiting run for this worker, a retried one first.

    Why: a run put back after its worker died has a checkpoint to resume, while Optuna's
    ``ask`` hands out waiting trials oldest first, which queued the retry behind every run
    not yet started (its progress then waited a whole round, or a session). Each retried
    trial is claimed the way ``ask`` claims one (RUNNING only if still WAITING: two workers
    never take the same trial); with none left to claim, ``ask`` takes the oldest.
    """
    retries = [
        t
        for t in study.get_trials(deepcopy=False, states=(TrialState.WAITING,))
        if "retry_of" in t.user_attrs and "run_id" in t.user_attrs
    ]
    for t in retries:
        try:
            if study._storage.set_trial_state_values(t._trial_id, TrialState.RUNNING):
                return optuna.Trial(study, t._trial_id)
        except (RuntimeError, optuna.exceptions.UpdateFinishedTrialError):
            continue  # another worker claimed it first
    return study.ask()


def add_waiting(study: optuna.Study, run: dict, **extra) -> None:
    study.add_trial(optuna.create_trial(state=TrialState.WAITING, user_attrs={**run, **extra}))


def _reused_outcome(row: dict) -> tuple[TrialState, float | None]:
    """The trial state (and value) of a run done from an existing row: complete when ok."""
    if row.get("status") == "ok":
        return TrialState.COMPLETE, float(row["test_top1"])
    return TrialState.PRUNED, None


def add_finished(study: optuna.Study, run: dict, row: dict, epochs: list[dict]) -> None:
    """Record a run whose row already exists (a results table): done without training."""
    state, value = _reused_outcome(row)
    attrs = {**run, "result": row, "epochs": epochs, "reused": True}
    study.add_trial(optuna.create_trial(state=state, value=value, user_attrs=attrs))


def finish_taken(study: optuna.Study, trial: optuna.Trial, row: dict, epochs: list[dict]) -> None:
    """Close a trial a worker took as done from an existing row, without training (the run
    finished in another grid's queue after this one enqueued it)."""
    for key, value in (("result", row), ("epochs", epochs), ("reused", True)):
        trial.set_user_attr(key, value)
    state, value = _reused_outcome(row)
    study.tell(trial, value, state=state)


def enqueue_runs(
    study: optuna.Study,
    runs: list[dict],
    storage: str | None = None,
    finished: dict[str, tuple[dict, list[dict]]] | None = None,
) -> tuple[int, int]:
    """Enqueue each run once; returns (enqueued, reused).

    A run done, diverged, waiting or running is skipped. A run present in ``finished`` (run
    id -> its row and curves, from the committed results tables, relabelled for this grid) is
    recorded as done without training. A failed run is enqueued again: a new command is a new
    attempt.
    """
    finished = finished or {}
    with enqueue_lock(storage):
        retry_stale(study)
        existing = trials_by_run(study)
        added = reused = 0
        for run in runs:
            state = run_state(existing.get(run["run_id"], []))
            if state in ("done", "diverged", "waiting", "running"):
                continue
            if run["run_id"] in finished:
                row, epochs = finished[run["run_id"]]
                add_finished(study, run, row, epochs)
                reused += 1
                continue
            add_waiting(study, run)
            added += 1
    return added, reused


class Heartbeat:
    """Writes the time on a trial every ``interval`` seconds while a run trains."""

    def __init__(self, study: optuna.Study, trial_id: int, interval: float = HEARTBEAT_S):
        self.storage, self.trial_id, self.interval = study._storage, trial_id, interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, daemon=True)

    def _beat(self) -> None:
        while True:
            with contextlib.suppress(Exception):
                self.storage.set_trial_user_attr(self.trial_id, "heartbeat", time.time())
            if self._stop.wait(self.interval):
                return

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def counts(study: optuna.Study) -> dict[str, int]:
    """Runs of a grid by state (see :func:`run_state`); ``done`` includes diverged runs."""
    out = {"done": 0, "diverged": 0, "failed": 0, "running": 0, "waiting": 0, "pending": 0}
    for trials in trials_by_run(study).values():
        state = run_state(trials)
        out[state] += 1
        if state == "diverged":
            out["done"] += 1
    return out
