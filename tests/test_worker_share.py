"""The machine's cores are shared among the workers alive on it, whichever command started
them: a worker started by hand beside a grid makes the grid's workers give threads back."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import torch

from experiments.run import workers


def test_live_workers_counts_this_machines_living_registered_processes(tmp_path):
    folder = tmp_path / ".workers"
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        with workers.registered(folder) as mine:
            assert mine.exists() and workers.live_workers(folder) == 1
            (folder / f"{socket.gethostname()}-{other.pid}").touch()
            (folder / f"another-host-{other.pid}").touch()  # its own cores: not counted
            assert workers.live_workers(folder) == 2
            other.kill()
            other.wait()
            # a worker killed before it could clean up: not counted, its file removed
            assert workers.live_workers(folder) == 1
            assert not (folder / f"{socket.gethostname()}-{other.pid}").exists()
        assert not mine.exists()
    finally:
        other.kill()
    assert workers.live_workers(folder) == 1  # nobody registered: this process alone


def test_share_threads_splits_the_cores_and_keeps_the_parents_cap(tmp_path, monkeypatch):
    folder = tmp_path / ".workers"
    folder.mkdir()
    saved = torch.get_num_threads()
    monkeypatch.setattr(os, "cpu_count", lambda: 8)
    monkeypatch.delenv("ABLATE_THREADS", raising=False)
    sleepers = [subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
                for _ in range(3)]  # fmt: skip
    try:
        with workers.registered(folder):
            assert workers.share_threads(folder) == 8 == torch.get_num_threads()
            for p in sleepers:
                (folder / f"{socket.gethostname()}-{p.pid}").touch()
            assert workers.share_threads(folder) == 2 == torch.get_num_threads()
            monkeypatch.setenv("ABLATE_THREADS", "1")  # what the parent gave: never more
            assert workers.share_threads(folder) == 1
    finally:
        for p in sleepers:
            p.kill()
        torch.set_num_threads(saved)
