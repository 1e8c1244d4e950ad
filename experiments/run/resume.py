"""Resuming a run where it was written: the compute that wrote a checkpoint goes into it.

Why: a CPU run's numbers depend, bit for bit, on the thread count (a reduction split over more
threads adds in another order) and on the kind of CPU (its kernels). A run killed under one
worker layout and resumed under another used to train its first epochs one way and the rest
the other: a hybrid that neither layout reproduces, whose row named only the second (a CAS-ViT
quick run started at 2 threads and finished at 1 came out 0.15 pp off the run it stands for).
So a checkpoint records the threads, CPU and device that wrote it; a resume takes its thread
count back for the rest of the run, and a checkpoint from another CPU or device is set aside
and the run starts over.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch


def compute_signature() -> dict:
    """What besides config and seed decides a run's last bits here: threads, CPU, device."""
    from experiments.run.store import cpu_model

    return {
        "threads": torch.get_num_threads(),
        "cpu_model": cpu_model(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "device": torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu",
    }


@dataclass(frozen=True)
class ResumePlan:
    """``resume`` the checkpoint (at ``threads``) or start over (``reason`` says why)."""

    resume: bool
    epochs_done: int = 0
    threads: int | None = None
    reason: str = ""


def plan_resume(path: Path, here: dict | None = None) -> ResumePlan:
    """Whether the checkpoint at ``path`` can be resumed by this process, and at what thread
    count. A checkpoint from before signatures were kept is resumed as it is."""
    if not path.exists():
        return ResumePlan(resume=False)
    ckpt = torch.load(path, map_location="cpu", weights_only=False)
    epochs_done = int(ckpt.get("epoch", -1)) + 1
    written = ckpt.get("compute") or {}
    here = here or compute_signature()
    for key in ("cpu_model", "cpu_capability", "device"):
        if key in written and written[key] != here[key]:
            reason = f"its checkpoint was written on {key} {written[key]!r}, this is {here[key]!r}"
            return ResumePlan(resume=False, reason=reason)
    return ResumePlan(resume=True, epochs_done=epochs_done, threads=written.get("threads"))


@contextlib.contextmanager
def run_threads(threads: int | None) -> Iterator[None]:
    """Train at ``threads`` (the checkpoint's), then give the worker its own count back."""
    before = torch.get_num_threads()
    if threads:
        torch.set_num_threads(int(threads))
    try:
        yield
    finally:
        torch.set_num_threads(before)
