"""Resuming a run where it was written: the compute that wrote a checkpoint goes into it.

Why: a CPU run's numbers depend, bit for bit, on the thread count (a reduction split over more
threads adds in another order) and on the kind of CPU (its kernels). A run killed under one
worker layout and resumed under another used to train its first epochs one way and the rest
the other: a hybrid that neither layout reproduces, whose row named only the second (a CAS-ViT
quick run started at 2 threads and finished at 1 came out 0.15 pp off the run it stands for).
So a checkpoint records the threads, CPU and device that wrote it; a resume takes its thread
count back for the rest of the run, and a checkpoint from another CPU or device is set aside
and the run starts over.

The code that computes a run decides its last bits as well: a layer computed another way (a
matmul for a conv, a class-token-only last block) rounds otherwise, so a run killed under one
version and resumed under the next would be a hybrid too. The checkpoint therefore also keeps
a fingerprint of that code (``code_fingerprint``: the models and the training step, data and
recipe, as parsed, so comments, docstrings and formatting do not count), and a checkpoint
written by other code, or before fingerprints were kept, is set aside the same way.
"""

from __future__ import annotations

import ast
import contextlib
import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch

_ROOT = Path(__file__).resolve().parents[2]
# the source that decides a run's numbers besides its config: every model file, and the
# training step, data pipeline, recipe, precision and model building of ``experiments.run``
NUMERIC_SOURCES = (
    "modules",
    "experiments/run/data.py",
    "experiments/run/datamodule.py",
    "experiments/run/lit.py",
    "experiments/run/models.py",
    "experiments/run/precision.py",
    "experiments/run/recipe.py",
    "experiments/run/train.py",
)


def _code_of(source: str) -> str:
    """The parsed program without its docstrings: what runs, not how it is written."""
    tree = ast.parse(source)
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if (
            isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
            and body
            and isinstance(body[0], ast.Expr)
            and isinstance(body[0].value, ast.Constant)
            and isinstance(body[0].value.value, str)
        ):
            node.body = body[1:] or [ast.Pass()]
    return ast.dump(tree, annotate_fields=False)


def code_fingerprint(root: Path = _ROOT, sources: tuple[str, ...] = NUMERIC_SOURCES) -> str:
    """A hash of the code that computes a run (``NUMERIC_SOURCES`` under ``root``)."""
    digest = hashlib.sha256()
    for entry in sources:
        path = root / entry
        files = sorted(path.rglob("*.py")) if path.is_dir() else [path] if path.exists() else []
        for file in files:
            digest.update(str(file.relative_to(root)).encode())
            digest.update(_code_of(file.read_text()).encode())
    return digest.hexdigest()[:16]


# taken when the process imports its training code, so it names the code the process runs
# even if the files change while it trains
CODE = code_fingerprint()


def compute_signature() -> dict:
    """What besides config and seed decides a run's last bits here: threads, CPU, device and
    the code this process runs."""
    from experiments.run.store import cpu_model

    return {
        "threads": torch.get_num_threads(),
        "cpu_model": cpu_model(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "device": torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu",
        "code": CODE,
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
    count. A checkpoint from before CPU signatures were kept is resumed on any CPU; one from
    before code fingerprints were kept is not resumed (no one can say which code wrote it)."""
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
    if written.get("code") != here["code"]:
        reason = (
            f"its checkpoint was written by other code ({written['code']}, this is {here['code']})"
            if "code" in written
            else "its checkpoint predates code fingerprints"
        )
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
