"""Non-overlapping window partition of channels-last maps, with padding and a key mask.

Window attention (Swin, ScalableViT's IWSA) splits an (H, W) map into windows of wh x ww
tokens and attends within each. Partition and reverse are one reshape + permute each (no
Python loops). A map that does not divide by the window is zero-padded at the bottom/right;
``window_key_mask`` then marks the padded tokens so attention never reads them, which makes
the result independent of the padding (the padded queries are cropped away afterwards).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def window_grid(hw: tuple[int, int], window: tuple[int, int]) -> tuple[int, int, int, int]:
    """(padded H, padded W, windows down, windows across) for a map and a window."""
    (h, w), (wh, ww) = hw, window
    nh, nw = math.ceil(h / wh), math.ceil(w / ww)
    return nh * wh, nw * ww, nh, nw


def pad_map(x: torch.Tensor, hp: int, wp: int) -> torch.Tensor:
    """Zero-pad a (B, H, W, C) map at the bottom/right to (B, hp, wp, C) (no-op if equal)."""
    _, h, w, _ = x.shape
    if (h, w) == (hp, wp):
        return x
    return F.pad(x, (0, 0, 0, wp - w, 0, hp - h))


def window_partition(
    x: torch.Tensor, window: tuple[int, int], groups: int, heads: int
) -> torch.Tensor:
    """(B, Hp, Wp, groups*heads*d) -> (groups, B*nWin, heads, wh*ww, d).

    ``groups`` splits the channels first (3 for a fused q|k|v projection), then ``heads``.
    """
    b, hp, wp, c = x.shape
    wh, ww = window
    nh, nw = hp // wh, wp // ww
    d = c // (groups * heads)
    x = x.view(b, nh, wh, nw, ww, groups, heads, d)
    x = x.permute(5, 0, 1, 3, 6, 2, 4, 7)  # groups, B, nh, nw, heads, wh, ww, d
    return x.reshape(groups, b * nh * nw, heads, wh * ww, d)


def window_reverse(
    x: torch.Tensor, batch: int, hw_padded: tuple[int, int], window: tuple[int, int]
):
    """(B*nWin, heads, wh*ww, d) -> (B, Hp, Wp, heads*d)."""
    (hp, wp), (wh, ww) = hw_padded, window
    nh, nw = hp // wh, wp // ww
    heads, d = x.shape[1], x.shape[-1]
    x = x.view(batch, nh, nw, heads, wh, ww, d).permute(0, 1, 4, 2, 5, 3, 6)
    return x.reshape(batch, hp, wp, heads * d)


def window_key_mask(
    hw: tuple[int, int], window: tuple[int, int], batch: int, device: torch.device
) -> torch.Tensor | None:
    """Boolean (B*nWin, 1, 1, wh*ww) mask, True where a key is a real token; None if no padding."""
    h, w = hw
    hp, wp, nh, nw = window_grid(hw, window)
    if (hp, wp) == (h, w):
        return None
    wh, ww = window
    valid = torch.zeros(hp, wp, dtype=torch.bool, device=device)
    valid[:h, :w] = True
    valid = valid.view(nh, wh, nw, ww).permute(0, 2, 1, 3).reshape(1, nh * nw, 1, 1, wh * ww)
    return valid.expand(batch, -1, -1, -1, -1).reshape(batch * nh * nw, 1, 1, wh * ww)
