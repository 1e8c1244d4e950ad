"""Local worker processes: ``python -m experiments <command> ...`` children that share the CPU
threads and take one GPU each. Grids and sweeps both start their workers here.

The share is the machine's, not one command's: every worker process registers itself under
``runs/.workers/`` while it lives, and before each run takes the cores divided by the workers
alive on its machine (never more than its parent gave it). Without that, a worker started by
hand beside a running grid took every core while the grid's workers kept theirs, and each run
slowed to a tenth of its speed; now the others give threads back at their next run.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path


def worker_env(i: int, n: int) -> dict:
    """The environment of local worker ``i`` of ``n``: a share of the CPU threads, one GPU."""
    import torch

    gpus = torch.cuda.device_count()
    threads = max(1, (os.cpu_count() or 1) // n)
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), ABLATE_THREADS=str(threads))
    if gpus:
        env["CUDA_VISIBLE_DEVICES"] = str(i % gpus)
    return env


def set_worker_threads() -> None:
    """In a worker child: use the thread share its parent gave it (``worker_env``)."""
    if os.environ.get("ABLATE_THREADS"):
        import torch

        torch.set_num_threads(int(os.environ["ABLATE_THREADS"]))


def registry() -> Path:
    """Where live workers leave one file each: ``<runs>/.workers/<host>-<pid>``."""
    return Path(os.environ.get("ABLATE_RUNS", "runs")) / ".workers"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        return True
    return True


@contextlib.contextmanager
def registered(folder: Path | None = None) -> Iterator[Path]:
    """This process counted among its machine's workers while inside."""
    folder = folder or registry()
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{socket.gethostname()}-{os.getpid()}"
    path.touch()
    try:
        yield path
    finally:
        path.unlink(missing_ok=True)


def live_workers(folder: Path | None = None) -> int:
    """Workers alive on this machine (at least 1); files of dead ones are removed. Workers on
    other machines that share the folder are not counted: they have their own cores."""
    folder = folder or registry()
    host = socket.gethostname()
    alive = 0
    for path in folder.glob(f"{host}-*"):
        pid = path.name.rpartition("-")[2]
        if pid.isdigit() and _alive(int(pid)):
            alive += 1
        else:  # a worker killed before it could clean up
            path.unlink(missing_ok=True)
    return max(alive, 1)


def share_threads(folder: Path | None = None) -> int:
    """Set and return the threads of this worker's next run: the machine's cores over the
    workers alive on it, capped by the share its parent gave it (``ABLATE_THREADS``)."""
    import torch

    threads = max(1, (os.cpu_count() or 1) // live_workers(folder))
    if os.environ.get("ABLATE_THREADS"):
        threads = min(threads, int(os.environ["ABLATE_THREADS"]))
    if threads != torch.get_num_threads():
        torch.set_num_threads(threads)
    return threads


def start_worker(i: int, n: int, argv: list[str]) -> subprocess.Popen:
    """Worker ``i`` of ``n``: the child ``python -m experiments *argv`` with its share."""
    return subprocess.Popen([sys.executable, "-m", "experiments", *argv], env=worker_env(i, n))


def start_workers(n: int, argv_of) -> list[subprocess.Popen]:
    """``n`` children ``python -m experiments *argv_of(i)``; CPU threads split, one GPU each."""
    return [start_worker(i, n, argv_of(i)) for i in range(n)]


def killed(proc) -> bool:
    """Whether a worker child ended on a signal (SIGKILL, the OOM killer), not by leaving."""
    return proc.poll() is not None and proc.returncode < 0
