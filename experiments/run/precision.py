"""The arithmetic a run trains in: the precision ``auto`` resolves to, and the kernels bf16
needs on a CPU.

Why a module of its own: the precision decides a run's numbers, so the run id (``identity``)
and the trainer (``train``) must resolve ``auto`` the same way, and the step timed by
``make bench`` must run the kernels a bf16 training run runs.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

PRECISIONS = ("auto", "32-true", "bf16-mixed")


def on_gpu(accelerator: str = "auto") -> bool:
    """Whether a run with this ``train.accelerator`` trains on a CUDA device here."""
    import torch

    return accelerator in ("auto", "gpu", "cuda") and torch.cuda.is_available()


def resolve_precision(precision: str = "auto", accelerator: str = "auto") -> str:
    """``auto`` is bf16 autocast on a GPU and fp32 on a CPU; the others stand as written."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision {precision!r}; allowed: {', '.join(PRECISIONS)}")
    if precision == "auto":
        return "bf16-mixed" if on_gpu(accelerator) else "32-true"
    return precision


@contextlib.contextmanager
def cpu_bf16_kernels(enabled: bool = True) -> Iterator[None]:
    """Scaled dot-product attention on its math path while bf16 autocast runs on a CPU.

    Why: PyTorch's fused (flash) CPU kernel is slow in bf16, its backward above all: in a
    ``deit_micro`` training step at 1 thread on an AVX-512 BF16 / AMX CPU it took 800 ms of
    1.29 s (fp32: 94 ms), so the step ran at 0.71x the speed of fp32. The math path computes
    the same attention as bf16 matmuls (AMX) and a softmax; the step then runs at 1.37x fp32
    (``results/bench/mfu.csv``, ``speedup_bf16``). A GPU keeps the fused kernels.
    """
    if not enabled:
        yield
        return
    from torch.nn.attention import SDPBackend, sdpa_kernel

    with sdpa_kernel(SDPBackend.MATH):
        yield
