"""Local worker processes: ``python -m experiments <command> ...`` children that share the CPU
threads and take one GPU each. Grids and sweeps both start their workers here."""

from __future__ import annotations

import os
import subprocess
import sys


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


def start_worker(i: int, n: int, argv: list[str]) -> subprocess.Popen:
    """Worker ``i`` of ``n``: the child ``python -m experiments *argv`` with its share."""
    return subprocess.Popen([sys.executable, "-m", "experiments", *argv], env=worker_env(i, n))


def start_workers(n: int, argv_of) -> list[subprocess.Popen]:
    """``n`` children ``python -m experiments *argv_of(i)``; CPU threads split, one GPU each."""
    return [start_worker(i, n, argv_of(i)) for i in range(n)]


def killed(proc) -> bool:
    """Whether a worker child ended on a signal (SIGKILL, the OOM killer), not by leaving."""
    return proc.poll() is not None and proc.returncode < 0
