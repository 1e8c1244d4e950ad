"""ScalableViT's attention modules on (B, H, W, C) maps: scalable self-attention (SSA, with the
spatial scale rn and channel scale rc), interactive window attention (IWSA) with its local
interactive module (LIM), the positional encoding generator (PEG) and the patch embedding."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from modules.layers.small_map_conv import SmallMapConv2d
from modules.layers.windows import (
    pad_map,
    window_grid,
    window_key_mask,
    window_partition,
    window_reverse,
)

LN_EPS = 1e-6  # the released models' norm_layer
SSA_LN_EPS = 1e-5  # the released SSA builds its LayerNorm with the default eps


def _nchw(x: torch.Tensor) -> torch.Tensor:
    """(B, H, W, C) -> (B, C, H, W) view (channels_last memory when x is contiguous)."""
    return x.permute(0, 3, 1, 2)


def _nhwc(x: torch.Tensor) -> torch.Tensor:
    return x.permute(0, 2, 3, 1)


class PatchEmbed(nn.Module):
    """Overlapping conv + LayerNorm, (B, H, W, C_in) -> (B, H', W', C); H' from the conv."""

    def __init__(self, in_chans: int, dim: int, kernel_size: int, stride: int, padding: int):
        super().__init__()
        self.conv = nn.Conv2d(in_chans, dim, kernel_size, stride, padding)
        self.norm = nn.LayerNorm(dim, eps=LN_EPS)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(_nhwc(self.conv(_nchw(x))))


class PEG(nn.Module):
    """Positional encoding generator: x + depth-wise 3x3 conv(x), on a (B, H, W, C) map."""

    def __init__(self, dim: int):
        super().__init__()
        self.conv = SmallMapConv2d(dim, dim, 3, 1, 1, groups=dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + _nhwc(self.conv(_nchw(x)))


class IWSA(nn.Module):
    """Window attention (no shift, no relative bias) + LIM on the value map, (B, H, W, C)."""

    def __init__(
        self,
        dim: int,
        num_heads: int,
        window: int,
        lim: bool = True,
        lim_kernel: int = 3,
        qkv_bias: bool = True,
        attn_drop: float = 0.0,
        proj_drop: float = 0.0,
    ):
        super().__init__()
        self.num_heads, self.window, self.attn_drop = num_heads, window, attn_drop
        self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias)
        self.lim = (
            SmallMapConv2d(dim, dim, lim_kernel, 1, lim_kernel // 2, groups=dim) if lim else None
        )
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, h, w, c = x.shape
        win = (min(self.window, h), min(self.window, w))  # a window never exceeds the map
        hp, wp, _, _ = window_grid((h, w), win)
        qkv = self.qkv(x)  # (B, H, W, 3C)
        # unbind, not parts[0..2]: the backward of three selects is three zero-filled copies of
        # the whole q|k|v tensor summed; unbind's is one stack
        q, k, v = window_partition(pad_map(qkv, hp, wp), win, 3, self.num_heads).unbind(0)
        mask = window_key_mask((h, w), win, b, x.device)
        y = F.scaled_dot_product_attention(
            q,
            k,
            v,
            attn_mask=mask,
            dropout_p=self.attn_drop if self.training else 0.0,
        )
        y = window_reverse(y, b, (hp, wp), win)
        if (hp, wp) != (h, w):
            y = y[:, :h, :w]
        if self.lim is not None:
            y = y + _nhwc(self.lim(_nchw(qkv[..., 2 * c :])))
        return self.proj_drop(self.proj(y))


class SSA(nn.Module):
    """Scalable self-attention on a (B, H, W, C) map.

    rn > 1: q = Linear(C, C*rc)(x); t = GELU(LN(Linear(C, C*rc)(dwconv_rn,stride rn(x))));
    k|v = Linear(C*rc, C*rc + C)(t). rn = 1: q|k|v = Linear(C, 2*Cq + C)(x) with Cq = C*rc
    under rc_mode="decoupled", else C. ``scale`` is the softmax scale (released:
    (C/heads * rc)^-0.5, whatever the actual q/k width).
    """

    def __init__(
        self,
        dim: int,
        num_heads: int,
        rn: int,
        qk_width: int,
        scale: float,
        qkv_bias: bool = True,
        attn_drop: float = 0.0,
        proj_drop: float = 0.0,
    ):
        super().__init__()
        self.num_heads, self.rn, self.qk_width = num_heads, rn, qk_width
        self.scale, self.attn_drop = scale, attn_drop
        if rn > 1:
            self.q = nn.Linear(dim, qk_width, bias=qkv_bias)
            self.sr = nn.Conv2d(dim, dim, rn, rn, groups=dim)
            self.pw = nn.Linear(dim, qk_width)  # the released 1x1 conv, on tokens
            self.pw.is_1x1_conv = True
            self.norm = nn.LayerNorm(qk_width, eps=SSA_LN_EPS)
            self.act = nn.GELU()
            self.kv = nn.Linear(qk_width, qk_width + dim, bias=qkv_bias)
        else:
            self.qkv = nn.Linear(dim, 2 * qk_width + dim, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop)

    def _heads(self, t: torch.Tensor) -> torch.Tensor:
        b, n, c = t.shape
        return t.view(b, n, self.num_heads, c // self.num_heads).transpose(1, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, h, w, c = x.shape
        cq = self.qk_width
        if self.rn > 1:
            q = self.q(x).reshape(b, h * w, cq)
            r = self.rn
            xm = _nchw(x)
            if h % r or w % r:  # zero-pad to a multiple of rn (released: drops the rest)
                xm = F.pad(xm, (0, -w % r, 0, -h % r))
            t = _nhwc(self.sr(xm))
            t = self.act(self.norm(self.pw(t.reshape(b, -1, c))))
            k, v = self.kv(t).split((cq, c), dim=-1)
        else:
            q, k, v = self.qkv(x).reshape(b, h * w, -1).split((cq, cq, c), dim=-1)
        y = F.scaled_dot_product_attention(
            self._heads(q),
            self._heads(k),
            self._heads(v),
            dropout_p=self.attn_drop if self.training else 0.0,
            scale=self.scale,
        )
        y = y.transpose(1, 2).reshape(b, h, w, c)
        return self.proj_drop(self.proj(y))
