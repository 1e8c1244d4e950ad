"""EfficientMod backbone (Ma et al., "Efficient Modulation for Vision Networks", ICLR 2024).

A 4-stage channels-last hierarchy: stem (7x7 conv, stride 4, + LN), stages of modulation
blocks (``modules.layers.modulation``) whose expansion alternates 1 and r, optional plain
pre-norm ViT blocks appended to a stage (the hybrid variants: stages 3-4), a 3x3 stride-2
conv + LN between stages, and a head of LN, mean pool and linear. Structure and parameter
counts follow the official code (ma-xu/EfficientMod); what differs is listed here:

- every toggle of the block (context parts, kernels, fusion, r, broadcast, layer scale) and of
  the backbone (``attention``, ``attention_blocks``, ``block``, strides) is a keyword argument
  of ``timm.create_model``, validated at construction (``ToggleError`` names the toggle);
- ``num_classes``, ``in_chans``, ``drop_rate`` and ``drop_path_rate`` are honoured (the
  official factories ignore their kwargs);
- layouts avoid copies: the map stays (B, H, W, C); convs run on channels_last NCHW views;
  the context is broadcast by a view (``broadcast='reshape'``, same numbers as 'repeat');
- ``block='mbconv'`` replaces every modulation block by an MBConv block with matched
  parameters (paper Table 6), built on timm's ``InvertedResidual``;
- ``stem_stride`` and ``strides`` shrink the downsampling for 28-32 px inputs (micro variant).

Official checkpoints load with ``modules.efficientmod_official.load_official_efficientmod``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

import torch
from timm.layers import Attention, DropPath, LayerNorm, Mlp, trunc_normal_
from timm.models import build_model_with_cfg, generate_default_cfgs, register_model
from torch import nn

from modules.layers.mbconv import MBConvBlock
from modules.layers.modulation import (
    BROADCASTS,
    FUSIONS,
    LN_EPS,
    ModulationBlock,
    ModulationConfig,
    check_kernel_sizes,
    check_layer_scale,
    check_rate,
)
from modules.toggles import ToggleError, check_bool, check_choice, check_int

BLOCKS = ("modulation", "mbconv")
STEM_STRIDES = (1, 2, 4)


def _int_list(toggle: str, value, n: int | None, low: int, what: str) -> tuple[int, ...]:
    allowed = f"{n if n is not None else 'a non-empty list of'} integers >= {low}, {what}"
    if not isinstance(value, (list, tuple)) or not value or (n is not None and len(value) != n):
        raise ToggleError(toggle, value, allowed)
    for v in value:
        if isinstance(v, bool) or not isinstance(v, int) or v < low:
            raise ToggleError(toggle, value, allowed)
    return tuple(value)


@dataclass(frozen=True)
class EfficientModConfig:
    """Every toggle of the backbone; names follow the paper and the official code.

    dims / depths: channels and modulation blocks per stage. attention_blocks: ViT blocks
    appended per stage; attention=False drops them all (the conv variant). att_mlp_ratio: MLP
    ratio of those ViT blocks per stage. num_heads: their heads (head dim max(C/8, 32)).
    expansion: r. alternate: blocks alternate r = 1 and r as the official configs (else all
    r). block: 'modulation' or 'mbconv' (Table 6). stem_stride: 4 officially; strides: the
    downsampling between stages (1 keeps the map size). The remaining fields are those of
    :class:`~modules.layers.modulation.ModulationConfig`.
    """

    dims: tuple[int, ...] = (32, 64, 128, 256)
    depths: tuple[int, ...] = (2, 2, 6, 2)
    attention_blocks: tuple[int, ...] = (0, 0, 1, 2)
    attention: bool = True
    att_mlp_ratio: tuple[float, ...] = (4.0, 4.0, 4.0, 4.0)
    num_heads: int = 8
    expansion: int = 6
    alternate: bool = True
    kernel_sizes: tuple[int, ...] = (7,)
    context_f: bool = True
    context_conv: bool = True
    context_act: bool = True
    context_g: bool = True
    fusion: str = "mul"
    broadcast: str = "reshape"
    layer_scale_init: float | None = 1e-4
    block: str = "modulation"
    stem_stride: int = 4
    strides: tuple[int, ...] = (2, 2, 2)
    in_chans: int = 3
    num_classes: int = 1000
    drop_rate: float = 0.0
    drop_path_rate: float = 0.0

    def __post_init__(self):
        def put(name, value):
            object.__setattr__(self, name, value)

        put("dims", _int_list("dims", self.dims, None, 1, "one width per stage"))
        n = len(self.dims)
        put("depths", _int_list("depths", self.depths, n, 0, "modulation blocks per stage"))
        put(
            "attention_blocks",
            _int_list("attention_blocks", self.attention_blocks, n, 0, "ViT blocks per stage"),
        )
        check_bool("attention", self.attention)
        ratios = self.att_mlp_ratio
        if (
            not isinstance(ratios, (list, tuple))
            or len(ratios) != n
            or any(isinstance(r, bool) or not isinstance(r, (int, float)) or r <= 0 for r in ratios)
        ):
            raise ToggleError("att_mlp_ratio", ratios, f"{n} numbers > 0, one per stage")
        put("att_mlp_ratio", tuple(float(r) for r in ratios))
        check_int("num_heads", self.num_heads, low=1)
        check_int("expansion", self.expansion, low=1)
        check_bool("alternate", self.alternate)
        put("kernel_sizes", check_kernel_sizes(self.kernel_sizes))
        for name in ("context_f", "context_conv", "context_act", "context_g"):
            check_bool(name, getattr(self, name))
        check_choice("fusion", self.fusion, FUSIONS)
        check_choice("broadcast", self.broadcast, BROADCASTS)
        put("layer_scale_init", check_layer_scale(self.layer_scale_init))
        check_choice("block", self.block, BLOCKS)
        check_choice("stem_stride", self.stem_stride, STEM_STRIDES)
        put("strides", _int_list("strides", self.strides, n - 1, 1, "1 or 2 between stages"))
        if any(s > 2 for s in self.strides):
            raise ToggleError("strides", self.strides, f"{n - 1} values, each 1 or 2")
        check_int("in_chans", self.in_chans, low=1)
        check_int("num_classes", self.num_classes, low=0)
        put("drop_rate", check_rate("drop_rate", self.drop_rate))
        put("drop_path_rate", check_rate("drop_path_rate", self.drop_path_rate))

    def stage_attention_blocks(self) -> tuple[int, ...]:
        return self.attention_blocks if self.attention else (0,) * len(self.dims)

    def block_expansion(self, index: int) -> int:
        """r of the index-th modulation block of a stage: 1, r, 1, r, ... as officially."""
        return self.expansion if (not self.alternate or index % 2 == 1) else 1


TOGGLES = tuple(f.name for f in fields(EfficientModConfig))


class ConvNorm(nn.Module):
    """Conv + LN, channels-last in and out: the official stem (7x7/4) and downsampling (3x3/2)."""

    def __init__(self, in_chans: int, dim: int, kernel_size: int, stride: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_chans, dim, kernel_size, stride, padding=kernel_size // 2)
        self.norm = LayerNorm(dim, eps=LN_EPS)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # x is (B, H, W, C); permute gives an NCHW view in channels_last memory (no copy) and
        # the conv returns channels_last, so permuting back is a contiguous view again.
        x = self.conv(x.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)
        return self.norm(x if x.is_contiguous() else x.contiguous())


class AttentionBlock(nn.Module):
    """Plain pre-norm ViT block on a (B, H, W, C) map, as the hybrid EfficientMod stages use.

    8 heads of width max(C/8, 32) (so the attention width may exceed C), no qkv bias, no layer
    scale (as officially); timm's Attention runs ``F.scaled_dot_product_attention``.
    """

    def __init__(self, dim: int, mlp_ratio: float, num_heads: int = 8, drop_path: float = 0.0):
        super().__init__()
        self.norm1 = LayerNorm(dim, eps=LN_EPS)
        head_dim = max(dim // num_heads, 32)
        self.attn = Attention(dim, num_heads=num_heads, attn_head_dim=head_dim, qkv_bias=False)
        self.drop_path1 = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        self.norm2 = LayerNorm(dim, eps=LN_EPS)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), act_layer=nn.GELU)
        self.drop_path2 = DropPath(drop_path) if drop_path > 0 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, h, w, c = x.shape
        x = x.reshape(b, h * w, c)
        x = x + self.drop_path1(self.attn(self.norm1(x)))
        x = x + self.drop_path2(self.mlp(self.norm2(x)))
        return x.reshape(b, h, w, c)


class Stage(nn.Module):
    """Optional downsampling, then modulation (or MBConv) blocks, then ViT blocks."""

    def __init__(self, downsample: nn.Module, blocks: list[nn.Module]) -> None:
        super().__init__()
        self.downsample = downsample
        self.blocks = nn.Sequential(*blocks)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.blocks(self.downsample(x))


def _block_config(cfg: EfficientModConfig, dim: int, index: int, drop_path: float):
    return ModulationConfig(
        dim=dim,
        expansion=cfg.block_expansion(index),
        kernel_sizes=cfg.kernel_sizes,
        context_f=cfg.context_f,
        context_conv=cfg.context_conv,
        context_act=cfg.context_act,
        context_g=cfg.context_g,
        fusion=cfg.fusion,
        broadcast=cfg.broadcast,
        layer_scale_init=cfg.layer_scale_init,
        drop_path=drop_path,
    )


def _make_block(cfg: EfficientModConfig, block_cfg: ModulationConfig) -> nn.Module:
    if cfg.block == "modulation":
        return ModulationBlock(block_cfg)
    with torch.device("meta"):
        target = sum(p.numel() for p in ModulationBlock(block_cfg).parameters())
    return MBConvBlock.matched(
        block_cfg.dim, target, max(cfg.kernel_sizes), drop_path=block_cfg.drop_path
    )


class EfficientMod(nn.Module):
    """The backbone; ``EfficientMod(**toggles)`` or ``EfficientMod(cfg=EfficientModConfig(...))``.

    ``forward_features`` returns the final LN-normed (B, H, W, C) map (``output_fmt='NHWC'``).
    """

    output_fmt = "NHWC"

    def __init__(self, cfg: EfficientModConfig | None = None, **toggles) -> None:
        super().__init__()
        if cfg is None:
            unknown = sorted(set(toggles) - set(TOGGLES))
            if unknown:
                raise TypeError(f"unknown EfficientMod toggles {unknown}; known: {list(TOGGLES)}")
            cfg = EfficientModConfig(**toggles)
        elif toggles:
            raise TypeError("pass either an EfficientModConfig or keyword toggles, not both")
        self.cfg = cfg
        self.num_classes = cfg.num_classes
        self.num_features = self.head_hidden_size = cfg.dims[-1]

        attn_blocks = cfg.stage_attention_blocks()
        total = sum(cfg.depths) + sum(attn_blocks)
        # linear stochastic-depth schedule over all blocks (no tensors: works on meta)
        rates = [cfg.drop_path_rate * i / max(total - 1, 1) for i in range(total)]

        self.stem = ConvNorm(cfg.in_chans, cfg.dims[0], 7, cfg.stem_stride)
        stages, k, prev, stride = [], 0, cfg.dims[0], cfg.stem_stride
        self.feature_info = []
        for i, dim in enumerate(cfg.dims):
            downsample = nn.Identity()
            if i > 0:
                downsample = ConvNorm(prev, dim, 3, cfg.strides[i - 1])
                stride *= cfg.strides[i - 1]
            blocks = []
            for j in range(cfg.depths[i]):
                blocks.append(_make_block(cfg, _block_config(cfg, dim, j, rates[k])))
                k += 1
            for _ in range(attn_blocks[i]):
                blocks.append(
                    AttentionBlock(dim, cfg.att_mlp_ratio[i], cfg.num_heads, drop_path=rates[k])
                )
                k += 1
            stages.append(Stage(downsample, blocks))
            self.feature_info.append(dict(num_chs=dim, reduction=stride, module=f"stages.{i}"))
            prev = dim
        self.stages = nn.Sequential(*stages)
        self.norm = LayerNorm(cfg.dims[-1], eps=LN_EPS)
        self.head_drop = nn.Dropout(cfg.drop_rate)
        self.head = nn.Linear(cfg.dims[-1], cfg.num_classes) if cfg.num_classes else nn.Identity()
        self.apply(self._init_weights)

    @staticmethod
    def _init_weights(m: nn.Module) -> None:
        # As officially: truncated normal on every Linear, zero bias; convs keep torch's init.
        if isinstance(m, nn.Linear):
            trunc_normal_(m.weight, std=0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)

    def toggles(self) -> dict:
        return asdict(self.cfg)

    def get_classifier(self) -> nn.Module:
        return self.head

    def reset_classifier(self, num_classes: int, global_pool: str | None = None) -> None:
        self.num_classes = num_classes
        self.head = nn.Linear(self.num_features, num_classes) if num_classes else nn.Identity()

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        # NCHW image -> channels_last memory (a small copy of the input only), then the
        # permute to (B, H, W, C) in the stem is free.
        x = x.contiguous(memory_format=torch.channels_last).permute(0, 2, 3, 1)
        x = self.stages(self.stem(x))
        return self.norm(x)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = self.head_drop(x.mean(dim=(1, 2)))
        return x if pre_logits else self.head(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


def _cfg(**kwargs) -> dict:
    return {
        "url": "",
        "num_classes": 1000,
        "input_size": (3, 224, 224),
        "pool_size": (7, 7),
        "crop_pct": 0.95,
        "interpolation": "bicubic",
        "mean": (0.485, 0.456, 0.406),
        "std": (0.229, 0.224, 0.225),
        "first_conv": "stem.conv",
        "classifier": "head",
        **kwargs,
    }


default_cfgs = generate_default_cfgs(
    {
        "efficientmod_xxs": _cfg(),
        "efficientmod_xs": _cfg(),
        "efficientmod_s": _cfg(),
        "efficientmod_s_conv": _cfg(),
        "efficientmod_micro": _cfg(input_size=(3, 32, 32), pool_size=(4, 4), crop_pct=1.0),
    }
)


def _create(variant: str, pretrained: bool, defaults: dict, **kwargs) -> EfficientMod:
    return build_model_with_cfg(EfficientMod, variant, pretrained, **{**defaults, **kwargs})


@register_model
def efficientmod_xxs(pretrained: bool = False, **kwargs) -> EfficientMod:
    """EfficientMod-xxs: 4.74M params; attention blocks (0, 0, 1, 2), r = 6."""
    defaults = dict(
        dims=(32, 64, 128, 256),
        depths=(2, 2, 6, 2),
        attention_blocks=(0, 0, 1, 2),
        att_mlp_ratio=(4, 4, 4, 4),
        expansion=6,
    )
    return _create("efficientmod_xxs", pretrained, defaults, **kwargs)


@register_model
def efficientmod_xs(pretrained: bool = False, **kwargs) -> EfficientMod:
    """EfficientMod-xs: 6.63M params; attention blocks (0, 0, 3, 3), r = 4."""
    defaults = dict(
        dims=(32, 64, 144, 288),
        depths=(3, 3, 4, 2),
        attention_blocks=(0, 0, 3, 3),
        att_mlp_ratio=(4, 4, 4, 4),
        expansion=4,
    )
    return _create("efficientmod_xs", pretrained, defaults, **kwargs)


@register_model
def efficientmod_s(pretrained: bool = False, **kwargs) -> EfficientMod:
    """EfficientMod-s: 12.90M params; attention blocks (0, 0, 4, 4), MLP ratio 4 then 5.

    The official factory hard-codes drop_path_rate 0.02; here it is a kwarg (default 0).
    """
    defaults = dict(
        dims=(32, 64, 144, 312),
        depths=(4, 4, 8, 4),
        attention_blocks=(0, 0, 4, 4),
        att_mlp_ratio=(4, 4, 4, 5),
        expansion=6,
    )
    return _create("efficientmod_s", pretrained, defaults, **kwargs)


@register_model
def efficientmod_s_conv(pretrained: bool = False, **kwargs) -> EfficientMod:
    """EfficientMod-s-Conv: 12.87M params; pure conv (paper Table 5 ablates this model)."""
    defaults = dict(
        dims=(40, 80, 160, 344),
        depths=(4, 4, 12, 8),
        attention_blocks=(0, 0, 0, 0),
        expansion=6,
    )
    return _create("efficientmod_s_conv", pretrained, defaults, **kwargs)


MICRO_HYBRID_ATTENTION_BLOCKS = (0, 0, 1, 1)


@register_model
def efficientmod_micro(pretrained: bool = False, **kwargs) -> EfficientMod:
    """EfficientMod for 28-32 px inputs (Fashion-MNIST, CIFAR), for quick CPU ablation grids.

    Same block and toggles as the paper variants; smaller widths and less downsampling:
    stem 7x7 stride 2, then strides (2, 2, 1) between stages, so the maps are
    28 px: 14, 7, 4, 4;  32 px: 16, 8, 4, 4 (the last map is never 1x1).
    dims (32, 48, 96, 128), depths (2, 2, 2, 2), r = 4 alternating, kernel 7.

    Conv-only by default. ``attention=True`` makes it hybrid with one ViT block in each of
    stages 3 and 4 (``attention_blocks=(0, 0, 1, 1)``); passing ``attention_blocks`` alone also
    turns attention on. ``block='mbconv'`` gives the matched-parameter MBConv counterpart.

    Cost with 10 classes (MACs of one image, torch.utils.flop_counter, attention included):

    ========================  =======  ==========  ==========
    variant                   params   MACs 28x1   MACs 32x3
    ========================  =======  ==========  ==========
    conv (default)            0.61M    14.7M       17.5M
    attention=True (hybrid)   1.05M    22.0M       24.7M
    block='mbconv'            0.61M    14.7M       17.3M
    ========================  =======  ==========  ==========

    Training step (AdamW, batch 128, 28x28x1) on 2 CPU cores: about 1100 img/s (conv),
    800 (hybrid), 1000 (mbconv).
    """
    kwargs.setdefault("attention", "attention_blocks" in kwargs)
    defaults = dict(
        dims=(32, 48, 96, 128),
        depths=(2, 2, 2, 2),
        attention_blocks=MICRO_HYBRID_ATTENTION_BLOCKS,
        att_mlp_ratio=(4, 4, 4, 4),
        expansion=4,
        stem_stride=2,
        strides=(2, 2, 1),
    )
    return _create("efficientmod_micro", pretrained, defaults, **kwargs)
