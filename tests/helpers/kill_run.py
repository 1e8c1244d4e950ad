"""Train one tiny run in this process and SIGKILL it at a chosen moment (for resume tests).

    python tests/helpers/kill_run.py WORKDIR [MOMENT]

MOMENT is ``step:N`` (after training step N, mid-epoch), ``epoch:N`` (at the start of epoch N,
after the previous epoch's checkpoint), ``test:N`` (after test batch N) or nothing (run to the
end). The result is printed as one JSON line. ``KILL_RUN_BUDGET=steps`` trains on a budget
in optimizer steps (the quick profile's kind: the last epoch partial) instead of epochs;
``KILL_RUN_THREADS`` sets this process's thread count (default 1).
"""

from __future__ import annotations

import json
import os
import signal
import sys

import lightning as L
import torch

from experiments.run.train import train_run

MODEL = {"name": "deit_micro", "embed_dim": 32, "depth": 2, "heads": 2, "drop_path_rate": 0.1}
DATA = {
    "name": "synthetic",
    "synthetic_train": 512,
    "synthetic_test": 128,
    "synthetic_size": 28,
    "val_size": 64,
    "batch_size": 32,
    "crop_padding": 2,
}
TRAIN = {"epochs": 3, "warmup_epochs": 0.2, "mixup": 0.2, "bench_seconds": 0.0}
# 16 batches an epoch: 2 full epochs and 12 batches of a third, validated every 2nd epoch
TRAIN_STEPS = {"steps": 44, "val_every": 2, "warmup_epochs": 0.2, "mixup": 0.2,
               "bench_seconds": 0.0}  # fmt: skip


class KillAt(L.Callback):
    def __init__(self, moment: str):
        self.kind, n = moment.split(":")
        self.n = int(n)

    def _kill(self) -> None:
        sys.stdout.flush()
        os.kill(os.getpid(), signal.SIGKILL)

    def on_train_batch_end(self, trainer, *args) -> None:
        if self.kind == "step" and trainer.global_step == self.n:
            self._kill()

    def on_train_epoch_start(self, trainer, *args) -> None:
        if self.kind == "epoch" and trainer.current_epoch == self.n:
            self._kill()

    def on_test_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, *args) -> None:
        if self.kind == "test" and batch_idx == self.n:
            self._kill()


class StepThreads(L.Callback):
    """The thread counts the training steps of this process ran at."""

    def __init__(self):
        self.seen: set[int] = set()

    def on_train_batch_end(self, *args) -> None:
        self.seen.add(torch.get_num_threads())


def main() -> None:
    torch.set_num_threads(int(os.environ.get("KILL_RUN_THREADS", 1)))
    workdir = sys.argv[1]
    threads = StepThreads()
    callbacks = [threads] + ([KillAt(sys.argv[2])] if len(sys.argv) > 2 else [])
    result = train_run(
        MODEL,
        DATA,
        TRAIN_STEPS if os.environ.get("KILL_RUN_BUDGET") == "steps" else TRAIN,
        seed=3,
        workdir=workdir,
        progress=False,
        callbacks=callbacks,
        measure_cost=False,
    )
    result["step_threads"] = sorted(threads.seen)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
