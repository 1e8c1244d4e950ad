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
"""

from __future__ import annotations

from timm.layers import EcaModule, SEModule
from torch import nn

CHANNEL_ATTENTION = ("none", "se", "eca")
GATES = ("hard_sigmoid", "sigmoid")
DEFAULT_GATE = {"se": "hard_sigmoid", "eca": "sigmoid"}


def create_channel_attention(
    kind: str, channels: int, reduction: int = 4, gate: str | None = None
) -> nn.Module:
    """Build channel attention ``kind`` for ``channels``; ``gate=None`` is LocalViT's default."""
    if kind == "none":
        return nn.Identity()
    if kind not in DEFAULT_GATE:
        raise ValueError(f"unknown channel attention {kind!r}; allowed: {CHANNEL_ATTENTION}")
    gate = gate or DEFAULT_GATE[kind]
    if kind == "se":
        squeeze = channels // reduction
        if squeeze < 1:
            raise ValueError(f"SE reduction {reduction} leaves no channel of {channels}")
        return SEModule(channels, rd_channels=squeeze, act_layer=nn.ReLU, gate_layer=gate)
    return EcaModule(channels, gate_layer=gate)
