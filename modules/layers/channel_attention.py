"""Channel attention (none / squeeze-excitation / ECA) on a (B, C, H, W) map, by name.

LocalViT puts channel attention after the depth-wise conv of its FFN, on the expanded width.
Two details differ from the SE most libraries default to, and both are kept here:

* the squeeze width is ``channels // reduction`` with the reduction relative to the *expanded*
  width and no rounding to a multiple of 8 (LocalViT-T: 768 // 192 = 4 channels; "SE4":
  768 // 4 = 192), so ``rd_channels`` is passed to timm's ``SEModule`` explicitly;
* the SE gate is a hard sigmoid, relu6(x + 3) / 6 (``nn.Hardsigmoid``), not a sigmoid.

ECA follows the official ``hs+eca`` variant: a bias-free 1-D conv across channels whose kernel
grows with log2(channels), with a sigmoid gate (the official ``hs+ecah`` variant is
``gate="hard_sigmoid"``). timm's ``EcaModule`` computes the same kernel size, except that it
never goes below 3 (the official one gives 1 for fewer than 8 channels).

The modules are timm's (same parameters and names); only the forward is rerouted: on a
channels-last map (a view of ViT tokens) the pooling ``mean((2, 3))`` and the reduction in the
backward of the gating multiply are 2-3x slower on CPU than the same ops on the underlying
(B, H*W, C) rows, which are used instead.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from timm.layers import EcaModule, SEModule
from torch import nn

CHANNEL_ATTENTION = ("none", "se", "eca")
GATES = ("hard_sigmoid", "sigmoid")
DEFAULT_GATE = {"se": "hard_sigmoid", "eca": "sigmoid"}


def _as_rows(x: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) -> (B, H*W, C): a view for channels-last maps, where pooling and gating
    run fastest; NCHW maps are (B, C, H*W) views read transposed."""
    b, c, h, w = x.shape
    if x.is_contiguous(memory_format=torch.channels_last):
        return x.permute(0, 2, 3, 1).reshape(b, h * w, c)
    return x.reshape(b, c, h * w).transpose(1, 2)


def _pooled(rows: torch.Tensor) -> torch.Tensor:
    """Mean over the H*W rows, as sum / N: the same bits as ``mean(1)``, but the backward is a
    broadcast view of the small (B, C) gradient, not a full (B, H*W, C) division (LocalViT-T
    training step at 224 px: 1.03x)."""
    return rows.sum(1) / rows.shape[1]


def _gated(x: torch.Tensor, rows: torch.Tensor, gate: torch.Tensor) -> torch.Tensor:
    """x * gate per (sample, channel), computed on the (B, H*W, C) rows, returned as x's map."""
    b, c, h, w = x.shape
    out = rows * gate[:, None, :]
    if x.is_contiguous(memory_format=torch.channels_last):
        return out.reshape(b, h, w, c).permute(0, 3, 1, 2)
    return out.transpose(1, 2).reshape(b, c, h, w)


class SqueezeExcite(SEModule):
    """timm's ``SEModule`` (1x1-conv squeeze/excite) computed on the rows view."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows = _as_rows(x)
        s = F.linear(_pooled(rows), self.fc1.weight.flatten(1), self.fc1.bias)
        s = self.act(self.bn(s[:, :, None, None])).flatten(1)
        s = F.linear(s, self.fc2.weight.flatten(1), self.fc2.bias)
        return _gated(x, rows, self.gate(s))


class EfficientChannelAttention(EcaModule):
    """timm's ``EcaModule`` (1-D conv across channels) computed on the rows view."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows = _as_rows(x)
        s = self.conv(_pooled(rows)[:, None])  # (B, 1, C)
        if self.conv2 is not None:
            s = self.conv2(self.act(s))
        return _gated(x, rows, self.gate(s)[:, 0])


def create_channel_attention(
    kind: str, channels: int, reduction: int = 4, gate: str = "auto"
) -> nn.Module:
    """Build channel attention ``kind`` for ``channels``; ``gate="auto"`` is LocalViT's default
    (SE: hard sigmoid, ECA: sigmoid). ECA has no reduction: ``reduction`` is unused there."""
    if kind == "none":
        return nn.Identity()
    if kind not in DEFAULT_GATE:
        raise ValueError(f"unknown channel attention {kind!r}; allowed: {CHANNEL_ATTENTION}")
    gate = DEFAULT_GATE[kind] if gate == "auto" else gate
    if kind == "se":
        squeeze = channels // reduction
        if squeeze < 1:
            raise ValueError(f"SE reduction {reduction} leaves no channel of {channels}")
        return SqueezeExcite(channels, rd_channels=squeeze, act_layer=nn.ReLU, gate_layer=gate)
    return EfficientChannelAttention(channels, gate_layer=gate)
