"""A Conv2d that stays fast on CPU when its map is smaller than its kernel.

oneDNN, behind ``nn.Conv2d`` on CPU, is slow in the backward pass when most of a kernel lies
in the implicit zero padding: the late stages of the micro models (a 7x7 depth-wise kernel on
a 4x4 map in EfficientMod; a 3x3 kernel on LocalViT-T's 2x2 map at 32 px). Padding the input
explicitly and convolving without padding is the same convolution, and there it is faster.
Measured per training step of one depth-wise conv (forward and backward, batch 64, one
thread, channels_last): k7 on 4x4 1.6-1.9x, on 5x5 1.6x, on 6x6 1.4x; k3 on 2x2 4.3x, on 1x1
4.4x; but 0.5x on 7x7 with k7 and 0.2-0.5x on 3x3 and 4x4 with k3, hence the rule: explicit
padding only where the map is smaller than the kernel, and only on CPU (cuDNN pads for free).

Outputs and input gradients are bit for bit those of ``nn.Conv2d``; the weight and bias
gradients differ in rounding only (about 1e-6 relative: their sums run in another order), the
kind of difference a different CPU generation also makes. Parameters and state dict are
``nn.Conv2d``'s, so official checkpoints load unchanged.

A depth-wise conv with a large kernel (at least 5x5) on a map smaller than it takes a third
path: on such a map every output pixel sees the whole map, so the conv is, per channel, a
dense (HW x HW) matrix gathered from the kernel's taps, and the layer runs as one batched
matmul. It does (HW)^2 multiply-adds per channel and image where the conv does HW k^2 (the
taps in the padding count too), and its weight gradient is a matmul plus a scatter instead
of oneDNN's slow depth-wise weight-gradient kernel. Per training step of one layer (forward
and backward, batch 64, one thread, channels_last, AVX2), against explicit padding: k7 on 4x4
4.1-5.1x, on 5x5 2.9x, on 6x6 2.3x, k5 on 3x3 1.7x; but k3 on 2x2 0.7x, hence the rule
(and on a 7x7 map a k7 matrix does the conv's own count of multiply-adds, for nothing).
Outputs agree with ``nn.Conv2d`` to rounding (about 1e-7), gradients to about 1e-6 relative.
``plain_convolutions()`` turns both fast paths off, for counting the layer's FLOPs and MACs
as the convolution they are (a conv's count includes its padding taps).
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import nn

DENSE_MIN_TAPS = 25  # kernels of at least 5x5 take the dense path on maps smaller than them
_PLAIN = contextvars.ContextVar("plain_convolutions", default=False)


@contextlib.contextmanager
def plain_convolutions() -> Iterator[None]:
    """Every ``SmallMapConv2d`` runs as ``nn.Conv2d`` inside: FLOP and MAC counts then count
    the convolution, not the matmul that computes it."""
    token = _PLAIN.set(True)
    try:
        yield
    finally:
        _PLAIN.reset(token)


def dense_index(h: int, w: int, k: int, p: int, device=None) -> torch.Tensor:
    """(HW out, HW in) indices into a flattened k x k kernel, ``k * k`` where an input pixel is
    outside the kernel's reach of an output pixel (that slot holds a zero).

    Output pixel (i, j) takes input pixel (a, b) through tap (a - i + p, b - j + p).
    """
    i = torch.arange(h, device=device).view(h, 1, 1, 1)
    j = torch.arange(w, device=device).view(1, w, 1, 1)
    a = torch.arange(h, device=device).view(1, 1, h, 1)
    b = torch.arange(w, device=device).view(1, 1, 1, w)
    di, dj = a - i + p, b - j + p  # (h, 1, h, 1) and (1, w, 1, w)
    inside = (di >= 0) & (di < k) & (dj >= 0) & (dj < k)
    return torch.where(inside, di * k + dj, k * k).reshape(h * w, h * w)


class SmallMapConv2d(nn.Conv2d):
    """``nn.Conv2d`` with explicit zero padding, or as a dense matmul, on CPU maps smaller
    than the kernel (module docstring)."""

    dense_min_taps = DENSE_MIN_TAPS  # an instance may raise it (the bench's explicit arm)

    def _conv_forward(
        self, input: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None
    ) -> torch.Tensor:
        if _PLAIN.get() or not self._pads_explicitly(input):
            return super()._conv_forward(input, weight, bias)
        if self._is_dense(input):
            return self._dense_forward(input, weight, bias)
        ph, pw = self.padding
        padded = F.pad(input, (pw, pw, ph, ph))  # keeps channels_last memory
        return F.conv2d(padded, weight, bias, self.stride, 0, self.dilation, self.groups)

    def _pads_explicitly(self, input: torch.Tensor) -> bool:
        if input.device.type != "cpu" or self.padding_mode != "zeros":
            return False
        if isinstance(self.padding, str) or not any(self.padding):
            return False
        (h, w), (kh, kw) = input.shape[-2:], self.kernel_size
        return h < kh or w < kw

    def _is_dense(self, input: torch.Tensor) -> bool:
        (h, w), (kh, kw) = input.shape[-2:], self.kernel_size
        depthwise = self.groups == self.in_channels == self.out_channels
        centred = self.padding == (kh // 2, kw // 2) and kh == kw and kh % 2 == 1
        plain = self.stride == (1, 1) and self.dilation == (1, 1)
        small = h < kh and w < kw and kh * kw >= self.dense_min_taps
        return depthwise and centred and plain and small

    def _dense_forward(
        self, input: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None
    ) -> torch.Tensor:
        b, c, h, w = input.shape
        k = self.kernel_size[0]
        key = (h, w, input.device)
        cache = self.__dict__.setdefault("_dense_indices", {})
        if key not in cache:  # (HW in, HW out): the gathered matrix comes out contiguous
            cache[key] = dense_index(h, w, k, k // 2, input.device).t().contiguous()
        taps = torch.cat([weight.reshape(c, k * k), weight.new_zeros(c, 1)], dim=1)
        matrix = taps[:, cache[key]]  # (C, HW in, HW out)
        # contiguous operands: batched GEMM; strided ones send bmm into a per-channel loop
        x = input.permute(1, 0, 2, 3).reshape(c, b, h * w).contiguous()  # (C, B, HW in)
        y = torch.bmm(x, matrix)  # (C, B, HW out)
        if y.requires_grad:  # its gradient comes back channels_last: contiguous for the GEMMs
            y.register_hook(torch.Tensor.contiguous)
        if bias is not None:
            y = y + bias.view(c, 1, 1)
        # back to the input's memory layout: channels_last in, channels_last out
        memory = (
            torch.channels_last
            if input.is_contiguous(memory_format=torch.channels_last) and c > 1
            else torch.contiguous_format
        )
        return y.view(c, b, h, w).permute(1, 0, 2, 3).contiguous(memory_format=memory)
