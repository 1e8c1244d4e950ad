"""``allocator``: training steps with the C library's default allocator against the same steps
with freed memory kept in the process (``experiments.run.allocator``), for every micro model.

The allocator is set when a process starts, so each arm is a fresh child process (this module
run as a script), alternating default, kept, default, kept, ... per model so that a machine's
drift hits both alike. A child times one-thread training steps on its thread CPU clock (which
counts the time the kernel spends on the thread's page faults) and counts the minor page faults
per step. The numbers a model computes are the same in both arms.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys

import pandas as pd

from experiments.run.allocator import DISABLE
from experiments.tools.efficiency import MICRO_MODELS


def probe(model: str, seconds: float, batch: int = 64) -> dict:
    """In a child: seconds and page faults per training step of ``model`` at one thread."""
    import timm
    import torch

    import modules  # noqa: F401
    from experiments.run.allocator import keep_freed_memory
    from experiments.tools.timing import adamw, seconds_per_call, train_step

    kept = keep_freed_memory()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    net = timm.create_model(model, num_classes=10, in_chans=1).train()
    x, y = torch.randn(batch, 1, 28, 28), torch.randint(0, 10, (batch,))
    opt = adamw(net)
    for _ in range(3):  # the first steps allocate what every later step reuses
        train_step(net, opt, x, y)
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    count = [0]

    def step() -> None:
        train_step(net, opt, x, y)
        count[0] += 1

    step_s = seconds_per_call(step, seconds, x)
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults
    return {"model": model, "kept": kept, "step_s": step_s, "faults_per_step": faults / count[0]}


def bench_allocator(repeats: int = 3, seconds: float = 4.0, models=MICRO_MODELS) -> pd.DataFrame:
    """Default / kept step time per model, one row per repeat (module docstring)."""
    rows = []
    for model in models:
        for repeat in range(repeats):
            arms = {}
            for arm in ("default", "kept"):
                env = dict(os.environ, OMP_NUM_THREADS="1")
                env.pop(DISABLE, None)
                if arm == "default":
                    env[DISABLE] = "default"
                out = subprocess.run(
                    [sys.executable, "-m", "experiments.tools.allocator_bench", model,
                     str(seconds)],
                    env=env, check=True, capture_output=True, text=True,
                )  # fmt: skip
                arms[arm] = json.loads(out.stdout.strip().splitlines()[-1])
            d, k = arms["default"], arms["kept"]
            rows.append({
                "model": model,
                "repeat": repeat,
                "threads": 1,
                "batch": 64,
                "clock": "thread CPU",
                "default_step_s": d["step_s"],
                "kept_step_s": k["step_s"],
                "speedup": d["step_s"] / k["step_s"],
                "default_faults_per_step": d["faults_per_step"],
                "kept_faults_per_step": k["faults_per_step"],
                "kept_taken": k["kept"],
            })  # fmt: skip
        last = pd.DataFrame(rows).query("model == @model")
        print(
            f"{model}: kept / default allocator step speed {last['speedup'].median():.3f}x; "
            f"page faults a step {last['default_faults_per_step'].median():.0f} -> "
            f"{last['kept_faults_per_step'].median():.0f}",
            flush=True,
        )
    return pd.DataFrame(rows)


if __name__ == "__main__":
    print(json.dumps(probe(sys.argv[1], float(sys.argv[2]))))
