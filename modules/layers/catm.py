"""CAS-ViT's convolutional additive token mixer (CATM) and the mixers it is compared with.

CATM (Zhang et al., "CAS-ViT: Convolutional Additive Self-attention Vision Transformers"):
one bias-free 1x1 conv gives q, k, v; Phi(q) and Phi(k) (a spatial then a channel operation,
each a sigmoid gate multiplied into its input) are fused, ``Phi(q) + Phi(k)``, through a
depth-wise 3x3 conv, multiplied with v, and projected by another depth-wise 3x3 conv. There
are no heads, no softmax and no token-by-token matrix, so the cost is linear in the tokens.

Layout (numerically the official computation, fewer kernels): q and k stay side by side as the
first 2C channels of the qkv output, and the two Phi's (separate weights, as officially) run as
*one* grouped operation over those 2C channels: a depth-wise conv and a BatchNorm over 2C
channels are the same per-channel computations as two over C; the 1x1 conv to the spatial
score map is a grouped conv (groups 2: C -> 1 each) and the channel operation's C -> C conv is
a grouped conv (groups 2). The official tensors of ``oper_q`` and ``oper_k`` are therefore
concatenated along dim 0 (``checkpoint_filter_fn`` of ``modules.casvit``). With shared weights
(``phi_shared``) q and k are stacked on the batch dim instead, so the one Phi sees both: its
BatchNorm statistics are taken over q and k together.

The models run channels-last. Channel slices, the spatial mean and the spatial operation's
score and gate are then taken on the (B, H, W, C) view (``split_channels``, ``spatial_mean``),
so that gradients come back channels-last as well: an NCHW gradient (a channel slice's
zero-filled one, a mean's expanded one) turns every later sum of gradients into a
mixed-layout kernel, several times slower on CPU. Measured A/B against the NCHW-gradient
version, same weights, one thread, idle machine: +9.5% training steps/s on casvit_xs at 224 px,
+7% on casvit_micro.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from modules.layers.bn_folding import fold_into_previous
from modules.layers.small_map_conv import SmallMapConv2d
from modules.toggles import check_bool, check_choice, check_int

__all__ = [
    "FUSIONS",
    "GATES",
    "MIXERS",
    "PHI_ON",
    "PHI_ORDERS",
    "PROJECTIONS",
    "AttentionMixer",
    "CATM",
    "CATMConfig",
    "Conv1x1",
    "Phi",
    "PoolMixer",
    "auto_heads",
    "channels_last_map",
    "create_mixer",
    "spatial_mean",
    "split_channels",
]

MIXERS = ("catm", "identity", "pool", "attention")
PHI_ORDERS = ("spatial_first", "channel_first")
PHI_ON = ("qk", "q", "k")
FUSIONS = ("sum", "product", "concat")
PROJECTIONS = ("dw3x3", "1x1")
GATES = ("sigmoid", "softmax")


@dataclass(frozen=True)
class CATMConfig:
    """The mixer toggles; defaults are the released CATM.

    spatial / channel: Phi's spatial operation (depth-wise 3x3, BN, ReLU, 1x1 to one map,
    gate) and channel operation (mean pool, bias-free 1x1 C -> C, sigmoid). phi_order: which
    runs first. phi_on: Phi on q and k, on q only or on k only (the other passes as it is).
    phi_shared: one Phi for q and k. fusion: Phi(q) + Phi(k), Phi(q) * Phi(k), or a bias-free
    1x1 conv of their concatenation. fusion_dwconv: the depth-wise 3x3 after fusion. proj: the
    output projection, depth-wise 3x3 (released) or 1x1. gate: the spatial operation's
    normalisation, sigmoid per position (released) or a softmax over the positions scaled by
    their count (weights average 1, as additive attention normalises over tokens).
    heads: heads of the ``attention`` mixer, 0 = auto (the most heads of width >= 32).
    """

    mixer: str = "catm"
    spatial: bool = True
    channel: bool = True
    phi_order: str = "spatial_first"
    phi_on: str = "qk"
    phi_shared: bool = False
    fusion: str = "sum"
    fusion_dwconv: bool = True
    proj: str = "dw3x3"
    gate: str = "sigmoid"
    heads: int = 0

    def __post_init__(self):
        check_choice("mixer", self.mixer, MIXERS)
        check_bool("spatial", self.spatial)
        check_bool("channel", self.channel)
        check_choice("phi_order", self.phi_order, PHI_ORDERS)
        check_choice("phi_on", self.phi_on, PHI_ON)
        check_bool("phi_shared", self.phi_shared)
        check_choice("fusion", self.fusion, FUSIONS)
        check_bool("fusion_dwconv", self.fusion_dwconv)
        check_choice("proj", self.proj, PROJECTIONS)
        check_choice("gate", self.gate, GATES)
        check_int("heads", self.heads, low=0)

    def inert(self) -> dict[str, str]:
        """toggle -> the setting that makes it do nothing (see ``modules.toggles.refuse_inert``)."""
        inert: dict[str, str] = {}
        if self.mixer != "attention":
            inert["heads"] = f"mixer={self.mixer}"
        if self.mixer != "catm":
            cause = f"mixer={self.mixer}"
            for name in ("spatial", "channel", "phi_order", "phi_on", "phi_shared"):
                inert[name] = cause
            for name in ("fusion", "fusion_dwconv", "proj", "gate"):
                inert[name] = cause
            return inert
        if not (self.spatial or self.channel):
            cause = "spatial=false, channel=false (Phi is the identity)"
            for name in ("phi_order", "phi_on", "phi_shared", "gate"):
                inert[name] = cause
            return inert
        if not (self.spatial and self.channel):
            inert["phi_order"] = "spatial=false" if not self.spatial else "channel=false"
        if not self.spatial:
            inert["gate"] = "spatial=false"
        if self.phi_on != "qk":
            inert["phi_shared"] = f"phi_on={self.phi_on}"
        return inert


def channels_last_map(x: torch.Tensor) -> bool:
    """True for a (B, C, H, W) map whose memory is channels-last and not also NCHW."""
    return x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous()


def spatial_mean(x: torch.Tensor) -> torch.Tensor:
    """The mean over H, W of a (B, C, H, W) map: (B, C).

    On a channels-last map it is taken over the (B, H, W, C) view, so its gradient comes back
    channels-last; the NCHW mean's gradient comes back NCHW and turns every sum of gradients
    after it into a mixed-layout one (several times slower on CPU).
    """
    if channels_last_map(x):
        return x.permute(0, 2, 3, 1).mean(dim=(1, 2))
    return x.mean(dim=(2, 3))


def split_channels(x: torch.Tensor, parts: int) -> tuple[torch.Tensor, ...]:
    """``parts`` equal channel slices of a (B, C, H, W) map, keeping its memory layout.

    On a channels-last map the slices are taken on the (B, H, W, C) view (their gradient is
    then channels-last too; a channel slice's gradient is a zero-filled NCHW tensor).
    """
    if channels_last_map(x):
        c = x.shape[1]
        nhwc = x.permute(0, 2, 3, 1).unflatten(-1, (parts, c // parts)).unbind(3)
        return tuple(t.permute(0, 3, 1, 2) for t in nhwc)
    return x.chunk(parts, dim=1)


def pointwise(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None):
    """A 1x1 conv of a (B, C, H, W) map with a (O, C) or (O, C, 1, 1) weight.

    On a channels-last map it is one matrix product on the free (B, H, W, C) view (CPU
    convolutions take a much slower path for 1x1 kernels); the result is a channels-last
    (B, O, H, W) view. Other layouts use the convolution.
    """
    if channels_last_map(x):
        w = weight.view(weight.shape[0], -1)
        return F.linear(x.permute(0, 2, 3, 1), w, bias).permute(0, 3, 1, 2)
    return F.conv2d(x, weight.view(*weight.shape[:2], 1, 1), bias)


class Conv1x1(nn.Conv2d):
    """``nn.Conv2d`` with a 1x1 kernel (same parameters and state dict) run by ``pointwise``."""

    def __init__(self, in_chans: int, out_chans: int, bias: bool = True) -> None:
        super().__init__(in_chans, out_chans, 1, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return pointwise(x, self.weight, self.bias)


def auto_heads(dim: int, min_head_dim: int = 32) -> int:
    """The most heads dividing ``dim`` whose width is at least ``min_head_dim`` (at least 1)."""
    return max([h for h in range(1, dim + 1) if dim % h == 0 and dim // h >= min_head_dim] or [1])


class SpatialOperation(nn.Module):
    """x * gate(1x1(ReLU(BN(dw3x3(x))))) for ``groups`` independent C-channel groups.

    Input (B, groups*C, H, W); the score conv maps each group's C channels to one map.
    """

    def __init__(self, dim: int, groups: int = 1, gate: str = "sigmoid") -> None:
        super().__init__()
        width = dim * groups
        self.groups, self.gate = groups, gate
        self.dw = SmallMapConv2d(width, width, 3, 1, 1, groups=width)
        self.norm = nn.BatchNorm2d(width)
        self.act = nn.ReLU(inplace=True)
        self.score = nn.Conv2d(width, groups, 1, groups=groups, bias=False)

    def fold_batchnorm(self) -> None:
        self.dw, self.norm = fold_into_previous(self.dw, self.norm), nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.act(self.norm(self.dw(x)))
        if channels_last_map(x) and channels_last_map(y):
            return self._forward_nhwc(x, y)
        if self.groups == 1:
            s = pointwise(y, self.score.weight)  # (B, 1, H, W)
        else:
            s = self.score(y)  # grouped 1x1 conv: (B, G, H, W)
        s = self._gate(s.flatten(2), dim=-1).view_as(s)
        if self.groups == 1:
            return x * s
        b, _, h, w = x.shape
        return (x.view(b, self.groups, -1, h, w) * s.unsqueeze(2)).view(x.shape)

    def _gate(self, s: torch.Tensor, dim: int) -> torch.Tensor:
        """Sigmoid per position, or a softmax over the positions (``dim``) times their count."""
        if self.gate == "sigmoid":
            return torch.sigmoid(s)
        return torch.softmax(s, dim=dim) * s.shape[dim]  # the weights average 1

    def _forward_nhwc(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """The same computation on the free (B, H, W, C) views of channels-last maps.

        Score, gate and product all stay in that layout, so the gradients that flow back
        through them are channels-last too. With NCHW ops the gate's gradient comes back
        NCHW and the convolutions and sums before it fall onto slow mixed-layout paths.
        The grouped score conv is one product with the block-diagonal (G, G*C) weight.
        """
        b, c, h, w = x.shape
        g = self.groups
        weight = self.score.weight.view(g, c // g)
        if g > 1:
            weight = torch.block_diag(*weight.unbind(0))
        s = F.linear(y.permute(0, 2, 3, 1), weight)  # (B, H, W, G)
        s = self._gate(s.view(b, h * w, g), dim=1).view(b, h, w, g, 1)
        out = x.permute(0, 2, 3, 1).view(b, h, w, g, c // g) * s
        return out.view(b, h, w, c).permute(0, 3, 1, 2)


class ChannelOperation(nn.Module):
    """x * sigmoid(W mean_hw(x)) with a bias-free C -> C map per group (no bottleneck)."""

    def __init__(self, dim: int, groups: int = 1) -> None:
        super().__init__()
        width = dim * groups
        self.groups = groups
        self.fc = nn.Conv2d(width, width, 1, groups=groups, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c = x.shape[:2]
        g = self.groups
        pooled = spatial_mean(x).view(b, g, c // g).transpose(0, 1)  # (G, B, C)
        # the grouped 1x1 conv on the pooled vectors: one (B, C) @ (C, C) product per group
        a = torch.bmm(pooled, self.fc.weight.view(g, c // g, c // g).transpose(1, 2))
        return x * torch.sigmoid(a).transpose(0, 1).reshape(b, c, 1, 1)


class Phi(nn.Module):
    """Spatial and/or channel operation, in either order, on (B, groups*C, H, W)."""

    def __init__(self, dim: int, groups: int, cfg: CATMConfig) -> None:
        super().__init__()
        self.spatial = SpatialOperation(dim, groups, cfg.gate) if cfg.spatial else None
        self.channel = ChannelOperation(dim, groups) if cfg.channel else None
        ops = [self.spatial, self.channel]
        if cfg.phi_order == "channel_first":
            ops.reverse()
        self._order = [op for op in ops if op is not None]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for op in self._order:
            x = op(x)
        return x


class CATM(nn.Module):
    """The convolutional additive token mixer on a (B, C, H, W) map (see the module doc)."""

    def __init__(self, dim: int, cfg: CATMConfig | None = None, **toggles) -> None:
        super().__init__()
        cfg = cfg or CATMConfig(**toggles)
        self.cfg, self.dim = cfg, dim
        self.qkv = Conv1x1(dim, 3 * dim, bias=False)
        has_phi = cfg.spatial or cfg.channel
        # both q and k with their own weights: one grouped Phi over their 2C channels
        self.grouped = has_phi and cfg.phi_on == "qk" and not cfg.phi_shared
        self.phi = Phi(dim, 2 if self.grouped else 1, cfg) if has_phi else None
        self.fuse = Conv1x1(2 * dim, dim, bias=False) if cfg.fusion == "concat" else None
        self.dwc = SmallMapConv2d(dim, dim, 3, 1, 1, groups=dim) if cfg.fusion_dwconv else None
        if cfg.proj == "dw3x3":
            self.proj = SmallMapConv2d(dim, dim, 3, 1, 1, groups=dim)
        else:
            self.proj = Conv1x1(dim, dim)

    def _phi_qk(self, qk: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Phi applied to q and/or k of the (B, 2C, H, W) q|k map; returns (q, k)."""
        if self.phi is None:
            return split_channels(qk, 2)
        if self.grouped:
            return split_channels(self.phi(qk), 2)
        q, k = split_channels(qk, 2)
        if self.cfg.phi_on == "qk":  # shared weights: q and k stacked on the batch dim
            return self.phi(torch.cat([q, k], dim=0)).chunk(2, dim=0)
        if self.cfg.phi_on == "q":
            return self.phi(q), k
        return q, self.phi(k)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c = self.dim
        # the one qkv conv as two products (q and k together, v), so both come out contiguous;
        # bias-free as released, but a BatchNorm folded into it for evaluation gives it one
        weight, bias = self.qkv.weight, self.qkv.bias
        q, k = self._phi_qk(pointwise(x, weight[: 2 * c], None if bias is None else bias[: 2 * c]))
        v = pointwise(x, weight[2 * c :], None if bias is None else bias[2 * c :])
        fusion = self.cfg.fusion
        if fusion == "concat":
            y = self.fuse(torch.cat([q, k], dim=1))
        else:
            y = q + k if fusion == "sum" else q * k
        if self.dwc is not None:
            y = self.dwc(y)
        return self.proj(y * v)


class PoolMixer(nn.Module):
    """PoolFormer's token mixer: avg_pool3x3(x) - x (padding not counted). No parameters."""

    def __init__(self, pool_size: int = 3) -> None:
        super().__init__()
        self.pool_size = pool_size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        k = self.pool_size
        return F.avg_pool2d(x, k, 1, k // 2, count_include_pad=False) - x


class AttentionMixer(nn.Module):
    """Multi-head self-attention over the H*W positions of a (B, C, H, W) map.

    Bias-free 1x1 qkv (as CATM's), ``F.scaled_dot_product_attention``, 1x1 projection with
    bias; no position encoding (the local perception branch supplies position cues).
    """

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.qkv = Conv1x1(dim, 3 * dim, bias=False)
        self.proj = Conv1x1(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        qkv = self.qkv(x).view(b, 3, self.heads, c // self.heads, h * w).transpose(-1, -2)
        y = F.scaled_dot_product_attention(qkv[:, 0], qkv[:, 1], qkv[:, 2])  # (B, h, N, d)
        return self.proj(y.transpose(-1, -2).reshape(b, c, h, w))


def create_mixer(dim: int, cfg: CATMConfig) -> nn.Module:
    if cfg.mixer == "catm":
        return CATM(dim, cfg)
    if cfg.mixer == "pool":
        return PoolMixer()
    if cfg.mixer == "attention":
        return AttentionMixer(dim, cfg.heads or auto_heads(dim))
    return nn.Identity()
