"""Freed memory stays in the process (``experiments.run.allocator``), and the switch turns it off."""

import json
import os
import subprocess
import sys

import pytest
from conftest import ROOT

from experiments.run.allocator import DISABLE, keep_freed_memory

# A step's pattern in small: 24 blocks of 4 MiB, every page written, all freed together (as a
# backward pass frees activations); prints the minor page faults a step once warm. glibc's own
# thresholds move with what a process has freed before (the same script faulted 0 or 24,500
# pages a step from one run to the next), so the child first pins them at glibc's static
# defaults, under which every block is a fresh mmap, and then lets ``keep_freed_memory`` act.
CHURN = """
import ctypes, json, resource, torch
from experiments.run.allocator import M_MMAP_THRESHOLD, M_TRIM_THRESHOLD, keep_freed_memory
mallopt = ctypes.CDLL(None).mallopt
mallopt(M_MMAP_THRESHOLD, 128 * 1024)
mallopt(M_TRIM_THRESHOLD, 128 * 1024)
kept = keep_freed_memory()
def step():
    blocks = [torch.ones(2**20) for _ in range(24)]
    del blocks
for _ in range(3):
    step()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(10):
    step()
faults = (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 10
print(json.dumps({"kept": kept, "faults": faults}))
"""


def _churn(**env) -> dict:
    run_env = {k: v for k, v in os.environ.items() if k != DISABLE} | env
    out = subprocess.run(
        [sys.executable, "-c", CHURN], env=run_env, cwd=ROOT, check=True, capture_output=True,
        text=True,
    )  # fmt: skip
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_kept_memory_is_not_faulted_in_again_each_step():
    kept = _churn()
    if not kept["kept"]:
        pytest.skip("not glibc: the allocator is left as it is")
    assert kept["faults"] < 100  # of 24,576 pages written a step
    default = _churn(**{DISABLE: "default"})
    assert default["kept"] is False
    assert default["faults"] > 20_000


def test_the_switch_leaves_the_allocator_alone(monkeypatch):
    monkeypatch.setenv(DISABLE, "default")
    assert keep_freed_memory() is False
