"""MBConv (inverted residual) block sized to match a modulation block's parameter count.

Why: the paper's Table 6 asks whether the modulation design beats the classic MBConv block
(MobileNetV2 / EfficientNet) at the same parameter budget. This wraps timm's
``InvertedResidual`` (1x1 expand, BN, act, kxk depth-wise, BN, act, 1x1 project, BN, residual)
for the channels-last maps of the EfficientMod backbone and chooses its hidden width so its
parameters match a given target (the hidden width is a multiple of 8, timm's rounding).

Choices (documented, not from the paper, which gives no MBConv details): GELU as in the
modulation block, no squeeze-excitation, the depth-wise kernel of the modulation block it
replaces (the largest of ``kernel_sizes``), no layer scale.
"""

from __future__ import annotations

import torch
from timm.layers import make_divisible
from timm.models._efficientnet_blocks import InvertedResidual
from torch import nn

from modules.layers.bn_folding import fold_into_previous
from modules.layers.map_gelu import MapGELU


def mbconv_params(dim: int, hidden: int, kernel_size: int) -> int:
    """Trainable parameters of a bias-free MBConv with BatchNorm (affine) after each conv."""
    return dim * hidden + 2 * hidden + kernel_size**2 * hidden + 2 * hidden + hidden * dim + 2 * dim


def mbconv_hidden_for_params(dim: int, params: int, kernel_size: int) -> int:
    """The hidden width (multiple of 8, at least 8) whose MBConv is closest to ``params``."""
    per_hidden = 2 * dim + kernel_size**2 + 4
    exact = max((params - 2 * dim) / per_hidden, 1.0)
    low = max(8, int(exact) // 8 * 8)
    candidates = (low, low + 8, make_divisible(exact))
    return min(candidates, key=lambda h: abs(mbconv_params(dim, h, kernel_size) - params))


class MBConvBlock(nn.Module):
    """timm's InvertedResidual on a (B, H, W, C) map, with no layout copies.

    The map is handed to the convs as an NCHW view in channels_last memory format (a permute,
    no copy); BatchNorm and the convs keep that format, so the permute back is a view too.
    """

    def __init__(self, dim: int, hidden: int, kernel_size: int = 7, drop_path: float = 0.0) -> None:
        super().__init__()
        self.hidden = hidden
        self.block = InvertedResidual(
            dim,
            dim,
            dw_kernel_size=kernel_size,
            exp_ratio=hidden / dim,
            act_layer=MapGELU,
            drop_path_rate=drop_path,
        )
        assert self.block.conv_pw.out_channels == hidden, "hidden width must be a multiple of 8"

    @classmethod
    def matched(cls, dim: int, params: int, kernel_size: int = 7, drop_path: float = 0.0):
        """An MBConv block with about ``params`` parameters."""
        return cls(dim, mbconv_hidden_for_params(dim, params, kernel_size), kernel_size, drop_path)

    def fold_batchnorm(self) -> None:
        """Each BatchNorm into the conv before it, for evaluation (``bn_folding``); the
        activation timm runs inside its BatchNorm stays, after the folded conv."""
        for conv, bn in (("conv_pw", "bn1"), ("conv_dw", "bn2"), ("conv_pwl", "bn3")):
            norm = getattr(self.block, bn)
            setattr(self.block, conv, fold_into_previous(getattr(self.block, conv), norm))
            setattr(self.block, bn, nn.Sequential(norm.drop, norm.act))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.block(x.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)
