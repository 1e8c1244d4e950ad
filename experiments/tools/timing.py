"""One training-step timer for every speed figure (``make bench``, the official comparisons).

A step is forward, cross-entropy, backward and an optimizer step. Models are timed interleaved
(A, B, A, B, ...) after one untimed round, so drift of the machine hits every model alike and
the first, allocating steps of a model are not counted.

With one CPU thread the clock is that thread's CPU time, not wall time: on a shared machine
other processes' load then does not count (it still shares caches and memory bandwidth), so
figures taken beside a running grid stay comparable. With several threads, or on a GPU, it is
wall time.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

import torch
import torch.nn.functional as F

from experiments.run.precision import cpu_bf16_kernels
from experiments.run.recipe import fused_adamw_ok

T = TypeVar("T")


def adamw(model: torch.nn.Module) -> torch.optim.Optimizer:
    """AdamW as the training runs build it: fused where the device has it."""
    return torch.optim.AdamW(model.parameters(), lr=1e-5, fused=fused_adamw_ok(model))


def train_step(model: torch.nn.Module, opt: torch.optim.Optimizer, x, y) -> None:
    loss = F.cross_entropy(model(x), y)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()


def clock(x: torch.Tensor | None = None) -> Callable[[], float]:
    """The timer for work on ``x``'s device at this process's thread count (module docstring)."""
    on_cpu = x is None or x.device.type == "cpu"
    return time.thread_time if on_cpu and torch.get_num_threads() == 1 else time.perf_counter


def clock_name(x: torch.Tensor | None = None) -> str:
    """How :func:`clock` measures, for the tables: "thread CPU" or "wall"."""
    return "thread CPU" if clock(x) is time.thread_time else "wall"


def seconds_per_call(
    fn: Callable[[], object], seconds: float, x: torch.Tensor | None = None
) -> float:
    """Mean seconds per call of ``fn``, called until ``seconds`` have passed on ``clock(x)``
    (at least once; warm-up is the caller's)."""
    now = clock(x)
    sync = torch.cuda.synchronize if x is not None and x.is_cuda else (lambda: None)
    sync()
    count, start = 0, now()
    while count == 0 or now() - start < seconds:
        fn()
        count += 1
    sync()  # a GPU runs behind the Python loop: count the steps it has queued
    return (now() - start) / count


def step_img_s(model: torch.nn.Module, opt: torch.optim.Optimizer, x, y, steps: int) -> float:
    """Images per second over ``steps`` training steps of ``model`` (no warm-up)."""
    now = clock(x)
    start = now()
    for _ in range(steps):
        train_step(model, opt, x, y)
    if x.is_cuda:
        torch.cuda.synchronize()
    return steps * len(x) / (now() - start)


def step_seconds(model, x, y, seconds: float, bf16: bool = False) -> float:
    """Mean seconds per training step over ``seconds``, after two untimed warm-up steps."""
    opt = adamw(model)
    # the kernels a bf16 training run uses on a CPU (``experiments.run.precision``)
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16), cpu_bf16_kernels(bf16):
        for _ in range(2):
            train_step(model, opt, x, y)
        return seconds_per_call(lambda: train_step(model, opt, x, y), seconds, x)


def interleaved(
    models: dict[str, torch.nn.Module],
    x,
    y,
    repeats: int,
    steps: int,
    warmup_steps: int | None = None,
    optimizer: Callable[[torch.nn.Module], torch.optim.Optimizer] = adamw,
) -> dict[str, list[float]]:
    """img/s of each model per repeat, interleaved, after an untimed round of
    ``warmup_steps`` (default: ``steps``; two steps are not enough on CPU)."""
    opts = {k: optimizer(m) for k, m in models.items()}
    for k, m in models.items():
        m.train()
        step_img_s(m, opts[k], x, y, warmup_steps or steps)
    speed: dict[str, list[float]] = {k: [] for k in models}
    for _ in range(repeats):
        for k, m in models.items():
            speed[k].append(step_img_s(m, opts[k], x, y, steps))
    return speed


def bracketed(measure: Callable[[], T], reference: Callable[[], float]) -> tuple[T, float]:
    """``measure()`` with ``reference()`` (a matmul peak, a bare step) timed just before and
    just after it, their mean: a shared host's speed drifts over a bench (the same CPU's
    one-thread peak read 159 and 98 GFLOP/s an hour apart), so a reference timed once, at the
    start, would mis-scale what is measured later."""
    before = reference()
    value = measure()
    return value, (before + reference()) / 2
