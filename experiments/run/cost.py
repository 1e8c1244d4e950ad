"""What a variant costs: parameters, multiply-adds, throughput, peak memory, wall time.

MACs come from ``torch.utils.flop_counter`` (one multiply-add = 2 FLOPs there, reported here
as 1 MAC, the convention of the papers' tables and of fvcore). Unlike fvcore it sees
``scaled_dot_product_attention``; its CPU kernel has no formula upstream, so one is registered
here.
"""

from __future__ import annotations

import os
import threading
import time
from contextlib import contextmanager

import lightning as L
import psutil
import torch
import torch.nn as nn
import torch.utils.flop_counter as fc

from modules.layers.small_map_conv import plain_convolutions


def _register_cpu_sdpa() -> None:
    op = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu
    if op in fc.flop_registry:
        return

    @fc.register_flop_formula(op)
    def _flops(query, key, value, *args, out_shape=None, **kwargs) -> int:
        return fc.sdpa_flop_count(query, key, value)


_register_cpu_sdpa()


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def architecture_forward(model: nn.Module):
    """The forward whose multiply-adds a paper counts: the whole network on every token,
    including what ``forward`` leaves out because it cannot reach the logits (LocalViT's last
    block beyond its class token; the official code computes it and the papers' MACs
    include it). timm models are ``forward_head(forward_features(x))``."""
    if hasattr(model, "forward_features") and hasattr(model, "forward_head"):
        return lambda x: model.forward_head(model.forward_features(x))
    return model


def count_macs(model: nn.Module, input_shape: tuple[int, ...]) -> int:
    """Multiply-adds of one forward pass of one image of ``input_shape`` (C, H, W), of the
    whole architecture (``architecture_forward``)."""
    p = next(model.parameters())
    x = torch.zeros(1, *input_shape, device=p.device, dtype=p.dtype)
    was_training = model.training
    model.eval()
    try:
        # plain_convolutions: a conv computed as a matmul still counts as the conv it is
        with fc.FlopCounterMode(display=False) as counter, torch.no_grad(), plain_convolutions():
            architecture_forward(model)(x)
    finally:
        model.train(was_training)
    return counter.get_total_flops() // 2


@torch.inference_mode()
def inference_throughput(
    model: nn.Module, input_shape: tuple[int, ...], batch_size: int = 256, seconds: float = 1.0
) -> float:
    """Images per second of the eval forward pass at ``batch_size`` (after one warm-up)."""
    p = next(model.parameters())
    x = torch.randn(batch_size, *input_shape, device=p.device)
    was_training = model.training
    model.eval()
    sync = torch.cuda.synchronize if p.device.type == "cuda" else (lambda: None)
    autocast = torch.autocast("cuda", dtype=torch.bfloat16, enabled=p.device.type == "cuda")
    with autocast:
        model(x)
        sync()
        n, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds or n < 2:
            model(x)
            n += 1
        sync()
    model.train(was_training)
    return n * batch_size / (time.perf_counter() - start)


class PeakMemory:
    """Peak memory of a run: CUDA max allocated, else the process RSS sampled in a thread."""

    def __init__(self, interval: float = 0.1):
        self.interval, self.peak = interval, 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.cuda = torch.cuda.is_available()

    def __enter__(self) -> PeakMemory:
        if self.cuda:
            torch.cuda.reset_peak_memory_stats()
        else:
            proc = psutil.Process(os.getpid())
            self.peak = proc.memory_info().rss

            def sample() -> None:
                while not self._stop.wait(self.interval):
                    self.peak = max(self.peak, proc.memory_info().rss)

            self._thread = threading.Thread(target=sample, daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        if self.cuda:
            self.peak = torch.cuda.max_memory_allocated()
        else:
            self._stop.set()
            self._thread.join()
            self.peak = max(self.peak, psutil.Process(os.getpid()).memory_info().rss)

    @property
    def mb(self) -> float:
        return self.peak / 2**20


class TrainThroughput(L.Callback):
    """Training images per second of the whole loop, data and augmentation included.

    Time is taken between the starts of consecutive training batches, so validation (which
    runs between epochs) is excluded; the first ``skip`` intervals are not counted
    (allocator and kernel warm-up).
    """

    def __init__(self, skip: int = 2):
        self.skip, self.images, self.seconds = skip, 0, 0.0
        self._last: float | None = None
        self._last_size = 0
        self._seen = 0

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self._last = None

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx: int) -> None:
        if pl_module.device.type == "cuda":
            torch.cuda.synchronize()
        now = time.perf_counter()
        if self._last is not None:
            self._seen += 1
            if self._seen > self.skip:
                self.seconds += now - self._last
                self.images += self._last_size
        self._last, self._last_size = now, len(batch[1])

    @property
    def img_s(self) -> float:
        return self.images / self.seconds if self.seconds else float("nan")


@contextmanager
def wall_clock():
    """Yields a dict whose ``seconds`` is filled in when the block ends."""
    out = {"seconds": 0.0}
    start = time.perf_counter()
    try:
        yield out
    finally:
        out["seconds"] = time.perf_counter() - start


class PhaseClock(L.Callback):
    """Wall seconds a run spends in its training batches, its validation passes and its test
    pass: what is left of the run's time is set-up, data, epoch boundaries and cost counting
    (``bench --only overhead`` splits a run's fixed overhead this way)."""

    PHASES = ("train_batches", "validation", "test")

    def __init__(self):
        self.seconds = dict.fromkeys(self.PHASES, 0.0)
        self._start: float | None = None

    def _begin(self, pl_module) -> None:
        if pl_module.device.type == "cuda":
            torch.cuda.synchronize()
        self._start = time.perf_counter()

    def _end(self, pl_module, phase: str) -> None:
        if pl_module.device.type == "cuda":
            torch.cuda.synchronize()
        if self._start is not None:
            self.seconds[phase] += time.perf_counter() - self._start
        self._start = None

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx: int) -> None:
        self._begin(pl_module)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx: int) -> None:
        self._end(pl_module, "train_batches")

    def on_validation_start(self, trainer, pl_module) -> None:
        self._begin(pl_module)

    def on_validation_end(self, trainer, pl_module) -> None:
        self._end(pl_module, "validation")

    def on_test_start(self, trainer, pl_module) -> None:
        self._begin(pl_module)

    def on_test_end(self, trainer, pl_module) -> None:
        self._end(pl_module, "test")
