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

- ``layer_scale_init=0`` switches layer scale off (timm drops None-valued keywords).

Official checkpoints load through timm, ``timm.create_model("efficientmod_xxs",
pretrained=True, pretrained_cfg_overlay=dict(file=path))`` (``checkpoint_filter_fn`` renames
the keys), or with ``load_official_efficientmod(model, path_or_state_dict)``.

Inert toggles: a toggle passed explicitly that does nothing in the resolved configuration
raises ``InertToggleError`` (see ``EfficientModConfig.inert``): ``attention`` when every
entry of ``attention_blocks`` is 0 (``efficientmod_s_conv``), ``attention_blocks``,
``att_mlp_ratio`` and ``num_heads`` with ``attention=False`` (the latter two also with no
attention blocks), ``kernel_sizes`` with ``context_conv=False``, ``alternate`` and
``broadcast`` with ``expansion=1``, ``expansion`` and ``broadcast`` with ``alternate=True`` and
at most one modulation block per stage (every block then has r = 1), and ``context_act``,
``fusion`` and ``broadcast`` with ``block='mbconv'`` (the MBConv block is sized to the
parameter count of the modulation block it replaces, so the context parts with parameters,
the kernels, r and whether layer scale is on still matter there). ``model.toggles()`` is the
run identity: every toggle, inert ones None, one spelling per network.
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, fields, replace
from os import PathLike

import torch
from timm.layers import Attention, DropPath, LayerNorm, Mlp
from timm.models import build_model_with_cfg, generate_default_cfgs, register_model
from torch import nn

from modules.backbone import ToggleableBackbone, linear_head
from modules.layers.mbconv import MBConvBlock
from modules.layers.modulation import (
    LN_EPS,
    ModulationBlock,
    ModulationConfig,
    ModulationToggles,
)
from modules.registry import imagenet_cfg, init_linear
from modules.toggles import (
    ToggleError,
    check_bool,
    check_choice,
    check_int,
    check_int_list,
    check_positive_list,
    check_rate,
    explicit_toggles,
    plain,
    resolve_config,
)

BLOCKS = ("modulation", "mbconv")
STEM_STRIDES = (1, 2, 4)


@dataclass(frozen=True, kw_only=True)
class EfficientModConfig(ModulationToggles):
    """Every toggle of the backbone; names follow the paper and the official code.

    The block toggles (kernel_sizes, context_*, fusion, broadcast, layer_scale_init) are
    inherited from :class:`~modules.layers.modulation.ModulationToggles` and passed to every
    block. dims / depths: channels and modulation blocks per stage. attention_blocks: ViT
    blocks appended per stage; attention=False drops them all (the conv variant).
    att_mlp_ratio: MLP ratio of those ViT blocks per stage. num_heads: their heads (head dim
    max(C/8, 32)). expansion: r. alternate: blocks alternate r = 1 and r as the official
    configs (else all r). block: 'modulation' or 'mbconv' (Table 6). stem_stride: 4
    officially; strides: the downsampling between stages (1 keeps the map size).
    """

    dims: tuple[int, ...] = (32, 64, 128, 256)
    depths: tuple[int, ...] = (2, 2, 6, 2)
    attention_blocks: tuple[int, ...] = (0, 0, 1, 2)
    attention: bool = True
    att_mlp_ratio: tuple[float, ...] = (4.0, 4.0, 4.0, 4.0)
    num_heads: int = 8
    expansion: int = 6
    alternate: bool = True
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

        put("dims", check_int_list("dims", self.dims, None, 1, "one width per stage"))
        n = len(self.dims)
        put("depths", check_int_list("depths", self.depths, n, 0, "modulation blocks per stage"))
        put(
            "attention_blocks",
            check_int_list("attention_blocks", self.attention_blocks, n, 0, "ViT blocks per stage"),
        )
        check_bool("attention", self.attention)
        put(
            "att_mlp_ratio",
            check_positive_list("att_mlp_ratio", self.att_mlp_ratio, n, "one per stage"),
        )
        check_int("num_heads", self.num_heads, low=1)
        check_int("expansion", self.expansion, low=1)
        check_bool("alternate", self.alternate)
        super().__post_init__()
        check_choice("block", self.block, BLOCKS)
        check_choice("stem_stride", self.stem_stride, STEM_STRIDES)
        put(
            "strides",
            check_int_list("strides", self.strides, n - 1, 1, "1 or 2 between stages")
            if n > 1
            else (),
        )
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

    def inert(self) -> dict[str, str]:
        """Toggle -> the setting that makes it do nothing in this configuration."""
        out = {}
        if not any(self.attention_blocks):
            # no ViT block either way: attention=True and attention=False build the same model
            out["attention"] = f"attention_blocks={list(self.attention_blocks)}"
        if not self.attention:
            for name in ("attention_blocks", "att_mlp_ratio", "num_heads"):
                out[name] = "attention=False"
        elif not any(self.attention_blocks):
            for name in ("att_mlp_ratio", "num_heads"):
                out[name] = out["attention"]
        if self.expansion == 1:  # every block has r = 1: no broadcast, nothing to alternate
            out["alternate"] = out["broadcast"] = "expansion=1"
        elif self.alternate and max(self.depths) <= 1:  # only block 0 of a stage: r = 1
            cause = "alternate=True and at most one block per stage (every block has r=1)"
            out["expansion"] = out["broadcast"] = cause
        if self.block == "mbconv":
            # MBConv blocks sized to the parameter count of the modulation block they replace:
            # kernel_sizes (the MBConv kernel and the count), context_f/conv/g, expansion and
            # alternate (the count) and whether layer scale is on (its gamma) still matter.
            for name in ("context_act", "fusion", "broadcast", "norm"):
                out[name] = "block=mbconv"
        elif not self.context_conv:
            out["kernel_sizes"] = "context_conv=False"
        return out

    def toggles(self) -> dict:
        """Every field, inert ones None, in one canonical spelling per network."""
        cfg = self
        if self.block == "mbconv" and self.layer_scale_init > 0:
            # only whether gamma exists sizes the MBConv (its init value is not used)
            cfg = replace(cfg, layer_scale_init=ModulationToggles.layer_scale_init)
        attn = cfg.stage_attention_blocks()
        if not any(attn):  # one spelling of "no attention blocks"
            cfg = replace(cfg, attention=False)
        inert = cfg.inert()
        out = {
            f.name: None if f.name in inert else plain(getattr(cfg, f.name)) for f in fields(cfg)
        }
        if not any(attn):
            out["attention"] = False
        if out["att_mlp_ratio"] is not None:  # a stage without ViT blocks ignores its ratio
            out["att_mlp_ratio"] = [
                r if a else None for r, a in zip(out["att_mlp_ratio"], attn, strict=True)
            ]
        return out


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
        dim=dim, expansion=cfg.block_expansion(index), drop_path=drop_path, **cfg.block_toggles()
    )


def _make_block(cfg: EfficientModConfig, block_cfg: ModulationConfig) -> nn.Module:
    if cfg.block == "modulation":
        return ModulationBlock(block_cfg)
    with torch.device("meta"):
        target = sum(p.numel() for p in ModulationBlock(block_cfg).parameters())
    return MBConvBlock.matched(
        block_cfg.dim, target, max(cfg.kernel_sizes), drop_path=block_cfg.drop_path
    )


class EfficientMod(ToggleableBackbone):
    """The backbone; ``EfficientMod(**toggles)`` or ``EfficientMod(cfg=EfficientModConfig(...))``.

    ``forward_features`` returns the final LN-normed (B, H, W, C) map (``output_fmt='NHWC'``).
    """

    output_fmt = "NHWC"

    def __init__(
        self,
        cfg: EfficientModConfig | None = None,
        *,
        explicit: Iterable[str] | None = None,
        **toggles,
    ) -> None:
        """``explicit``: the toggles the caller chose (default: every keyword given); one
        that is inert in the resolved configuration raises ``InertToggleError``."""
        super().__init__()
        self.cfg = cfg = resolve_config(EfficientModConfig, cfg, toggles, explicit, TOGGLES)
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
        self.head = linear_head(self.num_features, cfg.num_classes)
        self.apply(init_linear)  # as officially; convs keep torch's init

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


# ---------------------------------------------------------------------------------------------
# Official checkpoints (ma-xu/EfficientMod). Only key names differ: the official module tree is
# ``patch_embed``, ``layers.i.blocks.j`` with ``mlp.fc1``/``mlp.context_layer``/``gamma_1``, and
# ``layers.i.downsample`` at the *end* of stage i; every tensor keeps its shape. Build the model
# with the checkpoint's toggles (``efficientmod_xxs`` for ``efficientMod_xxs``), then
# ``timm.create_model("efficientmod_xxs", pretrained=True,
# pretrained_cfg_overlay=dict(file="efficientMod_xxs.pth"))``.

# Modulation-block parameter names: official suffix -> ours.
_MODULATION = {
    "norm.": "norm.",
    "gamma_1": "layer_scale.gamma",
    "mlp.fc1.": "mixer.value.",
    "mlp.fc2.": "mixer.proj.",
    "mlp.context_layer.f.": "mixer.context.f.",
    "mlp.context_layer.g.": "mixer.context.g.",
    "mlp.context_layer.context_list.": "mixer.context.convs.",
}
_BLOCK = re.compile(r"^layers\.(\d+)\.blocks\.(\d+)\.(.+)$")
_DOWNSAMPLE = re.compile(r"^layers\.(\d+)\.downsample\.(proj|norm)\.(.+)$")


def convert_official_state_dict(state_dict: Mapping[str, torch.Tensor]) -> dict:
    """Rename official EfficientMod keys to this repository's; raises on unknown keys.

    A state dict already in this repository's layout passes unchanged."""
    state_dict = {k.removeprefix("module."): v for k, v in state_dict.items()}
    if not any(k.startswith(("patch_embed.", "layers.")) for k in state_dict):
        return dict(state_dict)
    out, unknown = {}, []
    for key, value in state_dict.items():
        new = None
        if key.startswith("patch_embed."):
            new = "stem." + key.removeprefix("patch_embed.").replace("proj.", "conv.", 1)
        elif m := _DOWNSAMPLE.match(key):
            stage, part, rest = int(m[1]), m[2], m[3]
            new = f"stages.{stage + 1}.downsample.{'conv' if part == 'proj' else 'norm'}.{rest}"
        elif m := _BLOCK.match(key):
            prefix = f"layers.{m[1]}.blocks.{m[2]}."
            ours = f"stages.{m[1]}.blocks.{m[2]}."
            if any(k.startswith(prefix + "norm1.") for k in state_dict):  # an attention block
                new = ours + m[3]  # norm1 / attn.qkv / attn.proj / norm2 / mlp.fc1 / mlp.fc2
            else:
                for old, rep in _MODULATION.items():
                    if m[3].startswith(old):
                        new = ours + rep + m[3].removeprefix(old)
                        break
        elif key.split(".")[0] in ("norm", "head"):
            new = key
        if new is None:
            unknown.append(key)
        else:
            out[new] = value
    if unknown:
        raise KeyError(f"keys not from an official EfficientMod checkpoint: {unknown[:10]}")
    return out


def checkpoint_filter_fn(state_dict: Mapping[str, torch.Tensor], model: EfficientMod) -> dict:
    """timm's ``pretrained_filter_fn``: an official state dict -> this model's, shapes checked
    first so a model built with other toggles fails with the list of mismatching tensors."""
    if model.cfg.block != "modulation":
        raise ValueError(
            "official checkpoints hold modulation blocks; build with block='modulation'"
        )
    state_dict = convert_official_state_dict(state_dict)
    own = model.state_dict()
    bad = [
        f"{k}: checkpoint {tuple(v.shape)} vs model {tuple(own[k].shape)}"
        for k, v in state_dict.items()
        if k in own and own[k].shape != v.shape and not k.startswith("head.")
    ]
    if bad:
        raise ValueError("shape mismatch (model built with other toggles?): " + "; ".join(bad[:10]))
    return state_dict


def load_official_efficientmod(
    model: EfficientMod,
    path_or_state_dict: str | PathLike | Mapping,
    *,
    use_ema: bool = False,
    strict: bool = True,
):
    """Load an official checkpoint (file path or state dict) into ``model`` in place.

    Accepts a raw state dict or a timm training checkpoint (``state_dict`` /
    ``state_dict_ema``; ``timm.create_model(..., pretrained=True)`` prefers the EMA weights when
    a file has them) and strips DDP's ``module.`` prefix.
    """
    if isinstance(path_or_state_dict, Mapping):
        checkpoint = path_or_state_dict
    else:
        # timm checkpoints also pickle the argparse Namespace of the training run.
        with torch.serialization.safe_globals([argparse.Namespace]):
            checkpoint = torch.load(path_or_state_dict, map_location="cpu", weights_only=True)
    keys = ("state_dict_ema", "model_ema") if use_ema else ()
    for key in (*keys, "state_dict", "model"):
        if isinstance(checkpoint.get(key), Mapping):
            checkpoint = checkpoint[key]
            break
    return model.load_state_dict(checkpoint_filter_fn(checkpoint, model), strict=strict)


def _cfg(**kwargs) -> dict:
    return imagenet_cfg("stem.conv", **{"crop_pct": 0.95, **kwargs})


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
    explicit = explicit_toggles(kwargs, TOGGLES)
    if variant == "efficientmod_micro":
        kwargs.setdefault("attention", "attention_blocks" in kwargs)
    if pretrained and not _has_weights(kwargs):
        raise RuntimeError(
            f"{variant}: no weights are hosted; load an official checkpoint with "
            "pretrained_cfg_overlay=dict(file=<official .pth>)"
        )
    with torch.serialization.safe_globals([argparse.Namespace]):  # official files pickle args
        return build_model_with_cfg(
            EfficientMod,
            variant,
            pretrained,
            pretrained_filter_fn=checkpoint_filter_fn,
            explicit=explicit,
            **{**defaults, **kwargs},
        )


def _has_weights(kwargs: dict) -> bool:
    overlay = kwargs.get("pretrained_cfg_overlay") or {}
    cfg = kwargs.get("pretrained_cfg") or {}
    cfg = cfg if isinstance(cfg, dict) else getattr(cfg, "__dict__", {})
    return any(overlay.get(k) or cfg.get(k) for k in ("file", "url", "hf_hub_id", "state_dict"))


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
