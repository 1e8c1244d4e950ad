"""Building a model on the ``meta`` device, fast: for validation and identity, not training.

A spec is validated and every run's identity resolved by building its model on ``meta`` (no
memory, no values). On ``meta`` a few in-place init ops have no native kernel and are
decomposed in Python each call (``clamp_`` about 5 ms, ``normal_`` about 2 ms): timm's
``trunc_normal_`` made a LocalViT-micro build take 0.5 s. Those ops only write values, which
``meta`` tensors do not have, and never change a shape, so they are skipped here.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch.overrides import TorchFunctionMode

# in-place value writers of weight init: no shape change, nothing to check on ``meta``
_VALUE_ONLY = frozenset(
    {torch.Tensor.clamp_, torch.Tensor.normal_, torch.Tensor.erfinv_, torch.Tensor.uniform_}
)


class _SkipValueInit(TorchFunctionMode):
    def __torch_function__(self, func, types, args=(), kwargs=None):
        if func in _VALUE_ONLY and args and isinstance(args[0], torch.Tensor) and args[0].is_meta:
            return args[0]
        return func(*args, **(kwargs or {}))


@contextlib.contextmanager
def on_meta() -> Iterator[None]:
    """``with on_meta(): model = build(...)``: parameters on ``meta``, value init skipped."""
    with torch.device("meta"), _SkipValueInit():
        yield
