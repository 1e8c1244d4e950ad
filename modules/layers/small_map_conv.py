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
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class SmallMapConv2d(nn.Conv2d):
    """``nn.Conv2d`` with explicit zero padding on CPU maps smaller than the kernel."""

    def _conv_forward(
        self, input: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None
    ) -> torch.Tensor:
        if not self._pads_explicitly(input):
            return super()._conv_forward(input, weight, bias)
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
