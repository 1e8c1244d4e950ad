"""The queue of runs: an Optuna study per grid and profile, each run enqueued exactly once.

Optuna gives us durable storage (a journal file, or any RDB URL such as PostgreSQL), atomic
hand-out of waiting trials to concurrent workers, and a trial table to export. A grid does not
use a sampler at all: every run is enqueued once with its run id and resolved config as user
attributes (GridSampler hands the same point to several workers).

Liveness is ours: Optuna's heartbeat exists only for RDB storages, so a worker writes a
``heartbeat`` timestamp on its trial every few seconds, and a trial that is RUNNING with a
heartbeat older than the grace period is failed and re-enqueued (its checkpoint, keyed by run
id, lets the retry resume).
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
    out: dict[str, list] = {}
    for t in study.get_trials(deepcopy=False):
        rid = t.user_attrs.get("run_id")
        if rid:
            out.setdefault(rid, []).append(t)
    return out


def is_alive(trial: optuna.trial.FrozenTrial, grace: float = GRACE_S) -> bool:
    beat = trial.user_attrs.get(
        "heartbeat", trial.datetime_start.timestamp() if trial.datetime_start else 0
    )
    return time.time() - beat < grace


def fail_stale(study: optuna.Study, grace: float = GRACE_S) -> list[str]:
    """Fail RUNNING trials whose worker stopped beating, and enqueue them again."""
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
        attrs = {k: v for k, v in t.user_attrs.items() if k not in ("heartbeat", "result")}
        attrs["retry_of"] = t.number
        study.add_trial(optuna.create_trial(state=TrialState.WAITING, user_attrs=attrs))
        retried.append(attrs.get("run_id"))
    return retried


def enqueue_runs(study: optuna.Study, runs: list[dict], storage: str | None = None) -> int:
    """Enqueue each run once: skip runs finished, waiting or running; retry failed ones."""
    with enqueue_lock(storage):
        fail_stale(study)
        existing = trials_by_run(study)
        added = 0
        for run in runs:
            states = {t.state for t in existing.get(run["run_id"], [])}
            if states & {*FINISHED, TrialState.WAITING, TrialState.RUNNING}:
                continue
            study.add_trial(optuna.create_trial(state=TrialState.WAITING, user_attrs=run))
            added += 1
    return added


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
    """Runs of a grid by state: done, failed, running, waiting (latest trial per run id)."""
    out = {"done": 0, "failed": 0, "running": 0, "waiting": 0}
    for trials in trials_by_run(study).values():
        states = {t.state for t in trials}
        if states & set(FINISHED):
            out["done"] += 1
        elif TrialState.RUNNING in states:
            out["running"] += 1
        elif TrialState.WAITING in states:
            out["waiting"] += 1
        else:
            out["failed"] += 1
    return out
