"""Token sequence <-> 2-D feature map reshapes for ViTs that mix convolutions into blocks.

A ViT keeps tokens as (B, N, C) with N = H * W image tokens, often preceded by prefix tokens
(the class token). Convolutions need (B, C, H, W). A contiguous (B, N, C) tensor *is* an
(B, H, W, C) tensor in memory, so the NCHW map is returned as a permuted view in
``torch.channels_last`` layout: no copy, and depth-wise convolutions on CPU run several times
faster on that layout than on a contiguous NCHW copy. ``map_to_tokens`` undoes it, again
without a copy when the map is channels-last (as conv and batch-norm outputs on such a view
are). Maps need not be square: (H, W) is always passed explicitly, never guessed from N.
"""

from __future__ import annotations

import torch


def tokens_to_map(x: torch.Tensor, hw: tuple[int, int]) -> torch.Tensor:
    """(B, N, C) image tokens -> (B, C, H, W) channels-last view (copies only if x is strided)."""
    b, n, c = x.shape
    h, w = hw
    if n != h * w:
        raise ValueError(f"{n} tokens do not form a {h}x{w} map")
    return x.reshape(b, h, w, c).permute(0, 3, 1, 2)


def map_to_tokens(x: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) map -> (B, H*W, C) tokens; a view when x is channels-last."""
    b, c, h, w = x.shape
    return x.permute(0, 2, 3, 1).reshape(b, h * w, c)


def split_prefix(x: torch.Tensor, num_prefix: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """Split (B, P + N, C) into prefix tokens (B, P, C) (the class token) and image tokens."""
    return x[:, :num_prefix], x[:, num_prefix:]


def join_prefix(prefix: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Re-attach prefix tokens in front of the image tokens."""
    return torch.cat([prefix, x], dim=1)
