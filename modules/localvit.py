"""LocalViT (Li et al. 2021): a DeiT whose FFN gets a depth-wise convolution, every part a toggle.

The paper's claim is that locality, a depth-wise conv between the two FFN projections applied
to the image tokens as a 2-D map, is what a ViT lacks. The ablations vary the FFN kind, the
depth-wise conv and its kernel, the activation, the channel attention, the expansion ratio
gamma, the blocks that get the locality FFN and the number of heads. Each is a keyword of
``timm.create_model``::

    timm.create_model("localvit_tiny", dwconv=False, layers="low")

Toggles (names as in the paper; checked on construction, a bad value raises ``ToggleError``):

=============  ======================================================  =====================
toggle         values                                                  LocalViT-T default
=============  ======================================================  =====================
ffn            mlp, conv1x1, locality                                  locality
dwconv         True / False (depth-wise conv in the locality FFN)      True
kernel_size    odd int >= 1 (depth-wise kernel)                        3
act            relu6, hswish, gelu, silu, relu (timm's factory)        hswish
se             none, se, eca (after the depth-wise conv)               se
se_reduction   int >= 1, relative to the expanded width gamma*d        192 (768 -> 4)
se_gate        auto (SE: hard sigmoid, ECA: sigmoid), hard_sigmoid,    auto
               sigmoid
expansion      gamma > 0, hidden width int(gamma * d)                  4
layers         none, low, mid, high, low+mid, mid+high, all, or a      all
               list of 0-based block indices
heads          int dividing the width                                  4 (DeiT-T: 3)
=============  ======================================================  =====================

How the FFN kinds relate. ``locality`` is the official ``LocalityFeedForward``.
``conv1x1`` is that FFN without its depth-wise conv, i.e. exactly ``ffn="locality",
dwconv=False`` (the official ``wo_dp_conv``): the config normalises ``conv1x1`` to
``dwconv=False``, so both spellings give the same model and the same resolved config, and
``kernel_size`` is then unused. ``mlp`` is the DeiT FFN; ``dwconv``, ``kernel_size``, ``se``
and ``se_reduction`` do not apply to it. ``layers`` picks the blocks that get the FFN kind
above with ``act``; the other blocks stay plain DeiT blocks (GELU MLP, same ``expansion``).

Inert toggles are refused: a toggle passed explicitly to ``timm.create_model`` that does
nothing in the resolved configuration raises ``InertToggleError`` (``LocalViTConfig.inert``):

* ``layers`` selecting no block: ``ffn``, ``dwconv``, ``kernel_size``, ``act``, ``se``,
  ``se_reduction``, ``se_gate`` (``expansion`` still sizes the DeiT MLPs);
* ``ffn="mlp"``: ``dwconv``, ``kernel_size``, ``se``, ``se_reduction``, ``se_gate``; with
  ``act="gelu"`` too (DeiT), ``layers`` (every block is a DeiT block either way);
* ``ffn="conv1x1"``: ``dwconv`` and ``kernel_size``; ``dwconv=False``: ``kernel_size``;
* ``se="none"``: ``se_reduction``, ``se_gate``; ``se="eca"``: ``se_reduction``.

``model.toggles()`` is the run identity: every constructor argument, inert ones None, one
spelling per network (``layers`` as the list of blocks whose FFN is not DeiT's GELU MLP,
``conv1x1`` for ``locality`` without ``dwconv``, ``se_gate`` resolved).

Fidelity to the official code (ofsoundof/LocalViT, ``models/localvit.py``):

* followed exactly: the locality FFN sees the image tokens only (the class token is split off
  and re-attached unchanged, so attention alone updates it); there is no LayerNorm before it
  and no drop-path on it; its residual is added inside the module; 1x1 conv -> BN -> act ->
  depth-wise conv -> BN -> act -> channel attention -> 1x1 conv -> BN, all convs without bias;
  SE with a ReLU squeeze and a hard-sigmoid gate, reduction relative to gamma*d; DeiT backbone
  with qkv bias, LayerNorm eps 1e-6 and class-token head; the official initialisation (timm
  truncated normal on linear layers, including the SE ones, PyTorch defaults on the convs).
  Parameter counts match the released models exactly.
* layout, numerically the same: the 1x1 convs are ``nn.Linear`` on the (B, N, C) tokens and
  every BN normalises the channel dim of the flattened tokens (``TokenBatchNorm``), which is
  the same computation as ``BatchNorm2d`` on the (B, C, H, W) map (statistics per channel
  over batch and positions). Only the depth-wise conv (and the channel attention) sees a
  map, a channels-last view of the tokens, so nothing is copied; on CPU this is measurably
  faster than BN or pooling on the map view.
  ``checkpoint_filter_fn`` (``modules.localvit_checkpoint``) maps the official checkpoints
  onto this layout, so ``timm.create_model("localvit_tiny", pretrained=True,
  pretrained_cfg_overlay=dict(file="localvit_t.pth"))`` loads them (or
  ``load_official_localvit(model, path)`` from the same module).
* options the official code does not have: ``kernel_size``, the gelu/silu/relu activations,
  ``layers`` (it existed briefly upstream and could not run), non-square maps (upstream
  guesses a square from the token count), ``conv1x1`` as a name, ``se_gate`` (upstream ties
  the gate to the kind: ``hs+eca`` sigmoid, ``hs+ecah`` hard sigmoid, SE hard sigmoid),
  ``global_pool`` (below). The official ``dp_first
  (depth-wise conv before the first 1x1 conv) is not offered; no paper table uses it.
* a consequence of the official structure, kept: the head reads the class token, and the
  locality FFN never updates it, so the FFN of the *last* block cannot affect the output and
  its parameters get no gradient (they are still counted in the official parameter totals).
  ``forward`` therefore skips it (the official model computes it and back-propagates zeros
  through it); ``unreached_parameters()`` names its parameters, which training gives zero
  gradients as the full computation would, and its BatchNorm statistics stay at their initial
  values (they never reach an output). More generally the head needs the last block's class
  token alone, so ``forward`` computes that block for the class token's query only (every
  token's keys and values, one token's projection and MLP: ``class_token_attention``), which
  changes the logits by float rounding only (about 1e-7; a DeiT-micro training step 1.17x).
  ``forward_features`` still computes every token, as the official model does.
  ``global_pool="avg"`` (timm's keyword; default ``"token"`` as in DeiT) classifies from the
  mean image token instead, which puts that FFN and every token back to work.
* ``drop_rate`` keeps DeiT's (timm 0.3) meaning: dropout after the position embedding, the
  attention projection and in the MLP.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterable
from dataclasses import dataclass, fields, replace
from typing import Any

import torch
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from timm.layers import (
    Attention,
    DropPath,
    PatchEmbed,
    trunc_normal_,
)
from timm.layers.helpers import to_2tuple
from timm.models import build_model_with_cfg, generate_default_cfgs, register_model
from torch import nn

from modules.backbone import ToggleableBackbone, linear_head
from modules.layers.channel_attention import (
    DEFAULT_GATE,
)
from modules.layers.class_token_attention import class_token_attention
from modules.layers.locality_ffn import (
    ACTIVATIONS,
    FFN_KINDS,
    PLACEMENTS,
    LocalityFFN,
    LocalityFFNConfig,
    MlpFFN,
    TokenBatchNorm,
    resolve_layers,
)
from modules.localvit_checkpoint import checkpoint_filter_fn
from modules.registry import imagenet_cfg, init_linear
from modules.toggles import (
    ToggleError,
    check_bool,
    check_choice,
    check_int,
    check_rate,
    explicit_toggles,
    plain,
    resolve_config,
)

__all__ = [
    "ACTIVATIONS",
    "FFN_KINDS",
    "PLACEMENTS",
    "LocalityFFN",
    "LocalityFFNConfig",
    "LocalViT",
    "LocalViTBlock",
    "LocalViTConfig",
    "MlpFFN",
    "TokenBatchNorm",
    "resolve_layers",
]


class LocalViTBlock(nn.Module):
    """Pre-norm attention (timm ``Attention``, fused SDPA) with drop-path, then the given FFN."""

    def __init__(
        self,
        dim: int,
        heads: int,
        ffn: nn.Module,
        qkv_bias: bool = True,
        attn_drop: float = 0.0,
        proj_drop: float = 0.0,
        drop_path: float = 0.0,
    ):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = Attention(
            dim, num_heads=heads, qkv_bias=qkv_bias, attn_drop=attn_drop, proj_drop=proj_drop
        )
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        self.ffn = ffn

    def forward(self, x: torch.Tensor, hw: tuple[int, int]) -> torch.Tensor:
        return self.ffn(x + self.drop_path(self.attn(self.norm1(x))), hw)

    def class_token(self, x: torch.Tensor) -> torch.Tensor:
        """The block's output at the class token alone, (B, 1, C): its attention for that
        query, then DeiT's MLP (per token); the locality FFN passes the class token through."""
        x = x[:, :1] + self.drop_path(class_token_attention(self.attn, self.norm1(x)))
        return x if isinstance(self.ffn, LocalityFFN) else self.ffn(x, None)


FFN_TOGGLES = tuple(f.name for f in fields(LocalityFFNConfig))


@dataclass(frozen=True, kw_only=True)
class LocalViTConfig:
    """Every argument of :class:`LocalViT`, validated on construction (LocalViT-T defaults).

    The FFN toggles (``ffn`` ... ``expansion``) are those of :class:`LocalityFFNConfig`,
    which ``ffn_config`` builds; ``img_size`` is stored as (H, W).
    """

    img_size: Any = 224
    patch_size: int = 16
    in_chans: int = 3
    num_classes: int = 1000
    embed_dim: int = 192
    depth: int = 12
    heads: int = 4
    layers: Any = "all"
    ffn: str = "locality"
    dwconv: bool = True
    kernel_size: int = 3
    act: str = "hswish"
    se: str = "se"
    se_reduction: int = 192
    se_gate: str = "auto"
    expansion: float = 4.0
    qkv_bias: bool = True
    drop_rate: float = 0.0
    attn_drop_rate: float = 0.0
    drop_path_rate: float = 0.0
    global_pool: str = "token"

    def __post_init__(self):
        ffn = self.ffn_config  # validates the FFN toggles (conv1x1 -> dwconv=False)
        object.__setattr__(self, "dwconv", ffn.dwconv)
        object.__setattr__(self, "expansion", ffn.expansion)
        check_int("embed_dim", self.embed_dim, low=1)
        check_int("depth", self.depth, low=1)
        check_int("heads", self.heads, low=1)
        if self.embed_dim % self.heads:
            divisors = [h for h in range(1, self.embed_dim + 1) if self.embed_dim % h == 0]
            raise ToggleError(
                "heads",
                self.heads,
                f"a divisor of the width {self.embed_dim}: " + ", ".join(map(str, divisors)),
            )
        check_int("patch_size", self.patch_size, low=1)
        resolve_layers(self.layers, self.depth)
        ffn.hidden_width(self.embed_dim)
        check_int("in_chans", self.in_chans, low=1)
        check_int("num_classes", self.num_classes, low=0)
        check_bool("qkv_bias", self.qkv_bias)
        check_choice("global_pool", self.global_pool, GLOBAL_POOLS)
        for name in ("drop_rate", "attn_drop_rate", "drop_path_rate"):
            object.__setattr__(self, name, check_rate(name, getattr(self, name)))
        img_size = to_2tuple(self.img_size)
        if not all(
            isinstance(s, int) and not isinstance(s, bool) and s >= self.patch_size
            for s in img_size
        ):
            raise ToggleError(
                "img_size", self.img_size, f"integers >= patch_size ({self.patch_size})"
            )
        object.__setattr__(self, "img_size", tuple(img_size))

    @property
    def ffn_config(self) -> LocalityFFNConfig:
        return LocalityFFNConfig(**{name: getattr(self, name) for name in FFN_TOGGLES})

    @property
    def layer_indices(self) -> list[int]:
        return resolve_layers(self.layers, self.depth)

    def inert(self) -> dict[str, str]:
        """Toggle -> the setting that makes it do nothing in this configuration.

        The blocks not in ``layers`` are DeiT blocks whatever the FFN toggles say; ``ffn="mlp"``
        gives the selected blocks DeiT's MLP with activation ``act``, so with ``act="gelu"`` too
        every block is a DeiT block and ``layers`` does nothing.
        """
        out = {}
        if self.ffn == "mlp" and self.act == "gelu":
            out["layers"] = "ffn=mlp and act=gelu (every block is then a DeiT block)"
        if not self.layer_indices:
            cause = f"layers={self.layers!r}" if isinstance(self.layers, str) else "layers=[]"
            return {**out, **dict.fromkeys(FFN_TOGGLES[:-1], cause)}  # expansion: DeiT's MLPs
        if self.ffn == "mlp":
            return {
                **out,
                **dict.fromkeys(
                    ("dwconv", "kernel_size", "se", "se_reduction", "se_gate"), "ffn=mlp"
                ),
            }
        if self.ffn == "conv1x1":
            out["dwconv"] = out["kernel_size"] = "ffn=conv1x1"
        elif not self.dwconv:
            out["kernel_size"] = "dwconv=False"
        if self.se == "none":
            out["se_reduction"] = out["se_gate"] = "se=none"
        elif self.se == "eca":
            out["se_reduction"] = "se=eca (ECA has no reduction)"
        return out

    def toggles(self) -> dict:
        """Every field, inert ones None, in one spelling per network.

        ``layers`` is the sorted list of blocks whose FFN is not DeiT's GELU MLP (so DeiT is
        ``layers=[]`` with the FFN toggles None, however spelled); ``ffn="locality",
        dwconv=False`` reads as ``ffn="conv1x1"``; ``se_gate="auto"`` as the gate it picks.
        """
        cfg = self
        if cfg.ffn == "locality" and not cfg.dwconv:
            cfg = replace(cfg, ffn="conv1x1")
        if cfg.ffn == "mlp" and cfg.act == "gelu":
            cfg = replace(cfg, layers=[])
        if cfg.se_gate == "auto" and cfg.se in DEFAULT_GATE:
            cfg = replace(cfg, se_gate=DEFAULT_GATE[cfg.se])
        inert = cfg.inert()
        inert.pop("layers", None)
        out = {
            f.name: None if f.name in inert else plain(getattr(cfg, f.name)) for f in fields(cfg)
        }
        out["layers"] = cfg.layer_indices
        return out


TOGGLES = tuple(f.name for f in fields(LocalViTConfig))
GLOBAL_POOLS = ("token", "avg")


class LocalViT(ToggleableBackbone):
    """DeiT backbone in which the blocks chosen by ``layers`` get the FFN chosen by ``ffn``.

    With ``ffn="mlp"`` it is DeiT (the ``deit_*_ablate`` models). ``layer_indices`` lists the
    0-based blocks that got the configured FFN; the others are plain DeiT blocks.
    """

    def __init__(
        self,
        cfg: LocalViTConfig | None = None,
        *,
        explicit: Iterable[str] | None = None,
        **toggles: Any,
    ):
        """``LocalViT(**toggles)`` (the fields of :class:`LocalViTConfig`, keywords only) or
        ``LocalViT(cfg)``. ``explicit``: the toggles the caller chose (default: every keyword
        given); one that is inert in the resolved configuration raises ``InertToggleError``."""
        super().__init__()
        self.cfg = cfg = resolve_config(LocalViTConfig, cfg, toggles, explicit, TOGGLES)
        ffn_cfg = cfg.ffn_config
        img_size, patch_size, in_chans = cfg.img_size, cfg.patch_size, cfg.in_chans
        num_classes, embed_dim, depth, heads = cfg.num_classes, cfg.embed_dim, cfg.depth, cfg.heads
        act, expansion, qkv_bias = cfg.act, cfg.expansion, cfg.qkv_bias
        drop_rate, attn_drop_rate = cfg.drop_rate, cfg.attn_drop_rate
        drop_path_rate = cfg.drop_path_rate
        self.global_pool = cfg.global_pool

        self.num_classes = num_classes
        self.num_features = self.embed_dim = embed_dim
        self.num_prefix_tokens = 1
        self.layer_indices = self.cfg.layer_indices

        self.patch_embed = PatchEmbed(img_size, patch_size, in_chans, embed_dim, output_fmt="NHWC")
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, self.patch_embed.num_patches + 1, embed_dim))
        self.pos_drop = nn.Dropout(drop_rate)

        dpr = [drop_path_rate * i / max(depth - 1, 1) for i in range(depth)]  # linear decay rule
        selected = set(self.layer_indices)
        blocks = []
        for i in range(depth):
            if i in selected and ffn_cfg.ffn != "mlp":
                block_ffn = LocalityFFN(embed_dim, ffn_cfg)  # official: no drop path here
            else:
                block_act = act if i in selected else "gelu"
                block_ffn = MlpFFN(embed_dim, expansion, block_act, drop_rate, dpr[i])
            blocks.append(
                LocalViTBlock(
                    embed_dim, heads, block_ffn, qkv_bias, attn_drop_rate, drop_rate, dpr[i]
                )
            )
        self.blocks = nn.ModuleList(blocks)
        self.norm = nn.LayerNorm(embed_dim, eps=1e-6)
        self.head = linear_head(embed_dim, num_classes)
        self._init_weights()

    def _init_weights(self) -> None:
        trunc_normal_(self.pos_embed, std=0.02)
        trunc_normal_(self.cls_token, std=0.02)
        for m in self.modules():
            init_linear(m)
            if isinstance(m, nn.LayerNorm):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        for m in self.modules():
            if isinstance(m, LocalityFFN):
                m.reset_parameters()

    @torch.jit.ignore
    def no_weight_decay(self) -> set[str]:
        return {"pos_embed", "cls_token"}

    def reset_classifier(self, num_classes: int, global_pool: str | None = None) -> None:
        if global_pool is not None:
            self.global_pool = check_choice("global_pool", global_pool, GLOBAL_POOLS)
        super().reset_classifier(num_classes)

    def embed(self, x: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int]]:
        """Image -> (B, 1 + H*W, C) tokens with the class token and positions, and (H, W)."""
        x = self.patch_embed(x)  # (B, H, W, C)
        b, h, w, c = x.shape
        x = torch.cat([self.cls_token.expand(b, -1, -1), x.reshape(b, h * w, c)], dim=1)
        return self.pos_drop(x + self.pos_embed), (h, w)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x, hw = self.embed(x)
        for block in self.blocks:
            x = block(x, hw)
        return self.norm(x)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = x[:, 0] if self.global_pool == "token" else x[:, self.num_prefix_tokens :].mean(1)
        return x if pre_logits else self.head(x)

    def last_ffn_reaches_head(self) -> bool:
        """False when the head reads the class token and the last block's FFN is a locality
        (or 1x1-conv) FFN, which leaves the class token as it is: that FFN cannot change the
        logits."""
        return self.global_pool != "token" or not isinstance(self.blocks[-1].ffn, LocalityFFN)

    def unreached_parameters(self) -> list[nn.Parameter]:
        """The parameters :meth:`forward` does not compute with because they cannot reach the
        logits (the last block's FFN, see :meth:`last_ffn_reaches_head`); their gradient in the
        full computation is exactly zero."""
        return [] if self.last_ffn_reaches_head() else list(self.blocks[-1].ffn.parameters())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits. Under the class-token head the last block is computed for the class token
        alone (``LocalViTBlock.class_token``; its locality FFN, which cannot reach the logits,
        not at all): the logits of the full computation up to float rounding, every other
        parameter's gradient likewise. ``forward_features`` still computes every token, as the
        official model does."""
        if self.global_pool != "token":
            return self.forward_head(self.forward_features(x))
        x, hw = self.embed(x)
        for block in self.blocks[:-1]:
            x = block(x, hw)
        return self.forward_head(self.norm(self.blocks[-1].class_token(x)))


# ---------------------------------------------------------------------------------------------
# Official checkpoints (ofsoundof/LocalViT). The official models subclass timm 0.3.2's
# ``VisionTransformer``, so their state dicts use its names (``cls_token``, ``pos_embed``,
# ``patch_embed.proj``, ``blocks.{i}.norm1``, ``blocks.{i}.attn.qkv``/``.proj``, ``norm``,
# ``head``), which this model keeps. Only the FFN differs: upstream it is
# ``blocks.{i}.conv.conv.{j}``, an ``nn.Sequential`` whose indices shift with the variant::
#
#     1x1 conv, BN, act, [dw conv, BN, act], [SE: fc.0, fc.2 | ECA: conv], 1x1 conv, BN
#
# Here it is ``blocks.{i}.ffn`` with named parts (``fc1 bn1 dw bn2 se fc2 bn3``). The converter
# reads each block's layers in order and recognises them by their tensors, so it needs no
# variant name: a (o, i, 1, 1) weight is a 1x1 conv (-> ``nn.Linear`` weight (o, i)), a
# ---------------------------------------------------------------------------------------------
# timm registrations. Every toggle above overrides these defaults as a keyword argument.


def _cfg(**kwargs) -> dict:
    return imagenet_cfg(
        "patch_embed.proj", **{"fixed_input_size": True, "crop_pct": 0.875, **kwargs}
    )


# Small inputs (Fashion-MNIST 28x28x1, CIFAR 32x32x3): patch 4 gives a 7x7 or 8x8 map.
_MICRO_CFG = dict(input_size=(1, 28, 28), num_classes=10, crop_pct=1.0, mean=(0.5,), std=(0.5,))

default_cfgs = generate_default_cfgs(
    {
        "localvit_tiny": _cfg(),
        "localvit_tiny_se4": _cfg(),
        "localvit_small": _cfg(),
        "deit_tiny_ablate": _cfg(),
        "deit_small_ablate": _cfg(),
        "deit_micro": _cfg(**_MICRO_CFG),
        "localvit_micro": _cfg(**_MICRO_CFG),
    }
)


def _has_weights(kwargs: dict) -> bool:
    overlay = kwargs.get("pretrained_cfg_overlay") or {}
    cfg = kwargs.get("pretrained_cfg") or {}
    cfg = cfg if isinstance(cfg, dict) else getattr(cfg, "__dict__", {})
    return any(overlay.get(k) or cfg.get(k) for k in ("file", "url", "hf_hub_id", "state_dict"))


def _create(variant: str, pretrained: bool, defaults: dict, kwargs: dict) -> LocalViT:
    explicit = explicit_toggles(kwargs, TOGGLES)
    if pretrained and not _has_weights(kwargs):
        raise RuntimeError(
            f"{variant}: no weights are hosted; load a released official checkpoint with "
            "pretrained_cfg_overlay=dict(file=<official .pth>)"
        )
    with torch.serialization.safe_globals([argparse.Namespace]):  # official files pickle args
        model = build_model_with_cfg(
            LocalViT,
            variant,
            pretrained,
            pretrained_filter_fn=checkpoint_filter_fn,
            explicit=explicit,
            **{**defaults, **kwargs},
        )
    # the cfg describes this model's input (in_chans / img_size may be overridden)
    in_chans, img_size = model.cfg.in_chans, model.cfg.img_size
    cfg = dict(model.pretrained_cfg)
    if cfg["input_size"] != (in_chans, *img_size):
        rgb = in_chans == 3
        cfg.update(
            input_size=(in_chans, *img_size),
            mean=IMAGENET_DEFAULT_MEAN if rgb else (0.5,) * in_chans,
            std=IMAGENET_DEFAULT_STD if rgb else (0.5,) * in_chans,
            crop_pct=0.875 if min(img_size) >= 64 else 1.0,
        )
    cfg["num_classes"] = model.num_classes
    model.pretrained_cfg = model.default_cfg = cfg
    return model


_DEIT = dict(ffn="mlp", act="gelu", se="none", expansion=4.0, patch_size=16, depth=12)
_LOCAL = dict(ffn="locality", act="hswish", se="se", expansion=4.0, patch_size=16, depth=12)
_MICRO = dict(embed_dim=96, depth=6, patch_size=4)


@register_model
def localvit_tiny(pretrained: bool = False, **kwargs) -> LocalViT:
    """LocalViT-T (official ``localvit_tiny_mlp4_act3_r192``): d 192, 4 heads, SE to 4 ch."""
    return _create(
        "localvit_tiny",
        pretrained,
        {**_LOCAL, "embed_dim": 192, "heads": 4, "se_reduction": 192},
        kwargs,
    )


@register_model
def localvit_tiny_se4(pretrained: bool = False, **kwargs) -> LocalViT:
    """LocalViT-T-SE4 (official ``localvit_tiny_mlp4_act3_r4``): SE squeezes 768 by 4."""
    return _create(
        "localvit_tiny_se4",
        pretrained,
        {**_LOCAL, "embed_dim": 192, "heads": 4, "se_reduction": 4},
        kwargs,
    )


@register_model
def localvit_small(pretrained: bool = False, **kwargs) -> LocalViT:
    """LocalViT-S (official ``localvit_small_mlp4_act3_r384``): d 384, 8 heads, SE to 4 ch."""
    return _create(
        "localvit_small",
        pretrained,
        {**_LOCAL, "embed_dim": 384, "heads": 8, "se_reduction": 384},
        kwargs,
    )


@register_model
def deit_tiny_ablate(pretrained: bool = False, **kwargs) -> LocalViT:
    """DeiT-T (as timm ``deit_tiny_patch16_224``) built by this class, so every toggle works."""
    return _create("deit_tiny_ablate", pretrained, {**_DEIT, "embed_dim": 192, "heads": 3}, kwargs)


@register_model
def deit_small_ablate(pretrained: bool = False, **kwargs) -> LocalViT:
    """DeiT-S (as timm ``deit_small_patch16_224``) built by this class."""
    return _create("deit_small_ablate", pretrained, {**_DEIT, "embed_dim": 384, "heads": 6}, kwargs)


@register_model
def deit_micro(pretrained: bool = False, **kwargs) -> LocalViT:
    """DeiT for 28-32 px inputs: width 96, depth 6, patch 4, 3 heads (head dim 32, as DeiT-T's
    ratio of heads to width suggests), 28x28x1 in, 10 classes.

    Size at 28 px, 1 channel, 10 classes: 0.679 M parameters, 36.1 M MACs (32 px, 3 channels:
    0.683 M, 48.3 M MACs). MACs by ``torch.utils.flop_counter`` with ``TIMM_FUSED_ATTN=0``, so
    the attention matmuls count (as in ``official_models.csv``); norms and activations do not.
    """
    return _create("deit_micro", pretrained, {**_DEIT, **_MICRO, "heads": 3}, kwargs)


@register_model
def localvit_micro(pretrained: bool = False, **kwargs) -> LocalViT:
    """LocalViT for 28-32 px inputs: ``deit_micro`` with the locality FFN in every block.

    3 heads (head dim 32), the same as ``deit_micro``, so the two differ in the FFN alone, the
    component under study, and the attention costs the same (the paper's 4-vs-3 heads of
    LocalViT-T vs DeiT-T is ``heads=4``). SE reduction 96 keeps LocalViT's squeeze of
    gamma*d = 384 to 4 channels.

    Size at 28 px, 1 channel, 10 classes: 0.727 M parameters, 36.7 M MACs (32 px, 3 channels:
    0.731 M, 49.2 M MACs; counted as for ``deit_micro``).
    """
    return _create(
        "localvit_micro", pretrained, {**_LOCAL, **_MICRO, "heads": 3, "se_reduction": 96}, kwargs
    )
