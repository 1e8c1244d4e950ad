"""What every model family shares with timm: the default pretrained config and the DeiT-style
initialisation of linear layers (truncated normal, std 0.02, zero bias) that all four
official codes use."""

from __future__ import annotations

from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from timm.layers import trunc_normal_
from torch import nn


def imagenet_cfg(first_conv: str, **kwargs) -> dict:
    """timm's pretrained config of an ImageNet-1k classifier at 224 px; ``kwargs`` override."""
    return {
        "url": "",
        "num_classes": 1000,
        "input_size": (3, 224, 224),
        "pool_size": (7, 7),
        "crop_pct": 0.9,
        "interpolation": "bicubic",
        "mean": IMAGENET_DEFAULT_MEAN,
        "std": IMAGENET_DEFAULT_STD,
        "first_conv": first_conv,
        "classifier": "head",
        **kwargs,
    }


def init_linear(m: nn.Module) -> None:
    """Truncated normal (std 0.02) on a Linear's weight, zero bias; other modules untouched."""
    if isinstance(m, nn.Linear):
        trunc_normal_(m.weight, std=0.02)
        if m.bias is not None:
            nn.init.zeros_(m.bias)
