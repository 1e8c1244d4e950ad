"""The exact GELU for channels-last maps, handed over as their NHWC view.

Why: on CPU, PyTorch computes the exact (erf) GELU of a contiguous float tensor, forward and
backward, with oneDNN, and that of any other layout with its own kernel, which runs 1.5-1.8x
slower (one thread, AVX2, (64, 64, 14, 14) and (64, 128, 7, 7) maps: forward 1.7-1.8x,
backward 1.5-1.6x; no other activation in these models shows the gap). A (B, C, H, W) map in
channels-last memory is the contiguous (B, H, W, C) tensor seen through a permute, so the GELU
of that view takes the fast path. The values and gradients are those of the contiguous
(NCHW) computation bit for bit, which the official models run; the output is channels-last
again (a view, no copy). Any other input is passed through ``nn.GELU`` unchanged.
"""

from __future__ import annotations

import torch
from torch import nn

from modules.layers.catm import channels_last_map


class MapGELU(nn.GELU):
    """``nn.GELU()`` (exact) that computes a channels-last map on its contiguous NHWC view."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if channels_last_map(x):  # False for anything but a 4-D map
            return super().forward(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
        return super().forward(x)
