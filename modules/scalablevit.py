"""ScalableViT (Yang et al., "ScalableViT: Rethinking the Context-oriented Generalization of
Vision Transformer", ECCV 2022), every component a toggle.

A 4-stage hierarchy. Each stage: an overlapping conv patch embedding (7x7 stride 4 for the
stem, 3x3 stride 2 after) with LayerNorm, then pre-norm transformer blocks whose attention
alternates IWSA (interactive window self-attention: attention inside non-overlapping windows
plus the local interaction module LIM, a depth-wise conv on the value map added to the
attention output) and SSA (scalable self-attention: keys/values from a spatially reduced map
whose channels are scaled by rc), and a PEG (depth-wise 3x3 + residual) after the first block.
Final LayerNorm, mean pool and the released MLP head Linear(C, 4096) -> LN -> GELU -> Linear.

Toggles (keywords of ``timm.create_model``; validated on construction, a bad value raises
``ToggleError``; one that has no effect in the resolved configuration and was passed
explicitly raises ``InertToggleError``):

===========  ==========================================================  ===================
toggle       values                                                      ScalableViT-S
===========  ==========================================================  ===================
rn           SSA spatial reduction per stage (int >= 1, or one for all):  8, 4, 2, 1
             keys/values come from an rn x rn depth-wise conv with
             stride rn, i.e. about N / rn^2 tokens. The paper writes its
             spatial scale as the kept fraction (about 1 / rn^2 here);
             this toggle is the official ``sr_ratio`` under the paper's
             name (one name for the concept: there is no ``sr``).
rc           SSA channel scale of q/k per stage (number > 0, or one),    1.25, 1.25, 1.25, 1
             C*rc must be an integer divisible by the heads
rc_mode      where rn = 1: "official" (released code: q/k keep width C,  official
             rc only changes the softmax scale to (head_dim*rc)^-0.5) or
             "decoupled" (q/k are projected to C*rc, scale matches)
pattern      alternate (IWSA, SSA, IWSA, ... as released), alternate_ssa_  alternate
             first, ssa (every block SSA), iwsa (every block IWSA)
window       IWSA window per stage (int >= 2, or one for all)            7
lim          LIM on/off                                                  True
lim_kernel   LIM depth-wise kernel (odd int)                             3
peg          PEG after the first block of each stage on/off              True
head         "mlp" (released: Linear to head_width, LN, GELU, Linear)    mlp
             or "linear"
head_width   hidden width of the MLP head                                4096
===========  ==========================================================  ===================

With rn = 1 and rc = 1 an SSA block is exactly multi-head self-attention (one fused qkv
projection, the same layout as ``timm.layers.Attention``), so ``rn=1, rc=1`` is the plain-MHSA
baseline and ``rn=1, rc=1, pattern="ssa"`` a pyramid ViT with global attention everywhere.
With rc = 1 and rn > 1 SSA is PVT-style spatial-reduction attention (followed by the released
1x1 projection, LN and GELU). The paper's Table 5b "LEM" is not offered: it could not be
defined unambiguously from the paper and the released code has no trace of it.

Parameters at 224 px, 1000 classes (the released code; ``official_models.csv``):
S 32.00 M, B 81.88 M, L 109.29 M. The official README says 32.4 M for S and 104.9 M for L;
these disagree with the released configurations, which are matched here.

Fidelity to the released code (Yangr116/ScalableViT, ``image_classification/models/
scalablevit.py``). Same: block order (IWSA at even index), LIM on the value map (crossing
window borders) added before the projection, PEG once per stage after block 0, SSA reduction
(depth-wise rn x rn conv with stride rn and bias, 1x1 projection to C*rc, LN eps 1e-5, GELU),
k from the C*rc tokens, v projected back to C, softmax scale (head_dim*rc)^-0.5, LayerNorm
eps 1e-6 elsewhere, a single DropPath module for both residuals, dropout placement, weight
init. ``checkpoint_filter_fn`` (``modules.scalablevit_checkpoint``) converts official checkpoints (logits agree to < 1e-4).
Differences, none of which changes the released networks' outputs at 224 px:

- layout: maps stay channels-last (B, H, W, C); convs run on channels_last views (no
  ``.contiguous()`` copies); the SSA 1x1 conv is an ``nn.Linear`` on those tokens; q|k|v
  (MHSA, IWSA) and k|v (SSA with reduction) are one fused projection each (the checkpoint
  filter concatenates the official weights); attention runs in
  ``F.scaled_dot_product_attention``;
- the token grid is taken from the conv output (the released embedding computes H // stride,
  which is wrong for odd maps);
- maps that do not divide by the IWSA window are zero-padded at the bottom/right and the
  padded keys are masked (released: crash); a window larger than the map is clipped to the
  map (one window); maps that do not divide by rn are zero-padded before the reduction conv
  (released: the conv drops the last rows/columns, or fails if the map is smaller than rn);
- the stem is a (2p-1) x (2p-1) conv with stride p = ``patch_size`` and padding p-1 (the
  released 7x7/4/3 for p = 4) and ``strides`` sets the later embeddings' strides (3x3 conv,
  padding 1; released: 2), for the micro variant;
- ``rc_mode="decoupled"``, ``pattern``, ``lim``, ``lim_kernel``, ``peg``, ``head`` and
  ``head_width`` are options the released code does not have (its ``plain_head`` is
  ``head="linear"``); ``num_classes=0`` drops the whole head (released: keeps fc/LN/GELU).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import asdict, dataclass, fields

import torch
from timm.layers import DropPath, Mlp, trunc_normal_
from timm.models import build_model_with_cfg, generate_default_cfgs, register_model
from torch import nn

from modules.backbone import ToggleableBackbone, linear_head
from modules.layers.scalable_attention import IWSA, LN_EPS, PEG, SSA, PatchEmbed
from modules.registry import imagenet_cfg
from modules.scalablevit_checkpoint import checkpoint_filter_fn
from modules.toggles import (
    ToggleError,
    check_bool,
    check_choice,
    check_int,
    explicit_toggles,
    resolve_config,
)

__all__ = [
    "IWSA",
    "PATTERNS",
    "SSA",
    "ScalableViT",
    "ScalableViTConfig",
]

PATTERNS = ("alternate", "alternate_ssa_first", "ssa", "iwsa")
RC_MODES = ("official", "decoupled")
HEADS = ("mlp", "linear")


# --- toggle validation --------------------------------------------------------------------------


def _per_stage_ints(toggle: str, value, n: int, low: int, what: str) -> tuple[int, ...]:
    allowed = f"an integer >= {low} or {n} of them ({what})"
    values = [value] * n if isinstance(value, int) and not isinstance(value, bool) else value
    if not isinstance(values, (list, tuple)) or len(values) != n:
        raise ToggleError(toggle, value, allowed)
    for v in values:
        if isinstance(v, bool) or not isinstance(v, int) or v < low:
            raise ToggleError(toggle, value, allowed)
    return tuple(values)


def _per_stage_numbers(toggle: str, value, n: int, what: str) -> tuple[float, ...]:
    allowed = f"a number > 0 or {n} of them ({what})"
    scalar = isinstance(value, (int, float)) and not isinstance(value, bool)
    values = [value] * n if scalar else value
    if not isinstance(values, (list, tuple)) or len(values) != n:
        raise ToggleError(toggle, value, allowed)
    for v in values:
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not v > 0:
            raise ToggleError(toggle, value, allowed)
    return tuple(float(v) for v in values)


def _rate(toggle: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 1:
        raise ToggleError(toggle, value, "a number in [0, 1)")
    return float(value)


def _plain(value):
    """JSON-friendly: tuples -> lists, integral floats of rc stay floats."""
    return list(value) if isinstance(value, tuple) else value


@dataclass(frozen=True)
class ScalableViTConfig:
    """Every constructor argument that shapes the network; see the module docstring.

    embed_dims / depths / num_heads: per stage. mlp_ratio: MLP width / C. patch_size: stem
    stride p. strides: strides of the later patch embeddings (released: 2 each). qkv_bias:
    bias on the q/k/v projections (released variants: True).
    """

    embed_dims: tuple[int, ...] = (64, 128, 256, 512)
    depths: tuple[int, ...] = (2, 2, 20, 2)
    num_heads: tuple[int, ...] = (2, 4, 8, 16)
    mlp_ratio: float = 4.0
    patch_size: int = 4
    strides: tuple[int, ...] = (2, 2, 2)
    rn: tuple[int, ...] = (8, 4, 2, 1)
    rc: tuple[float, ...] = (1.25, 1.25, 1.25, 1.0)
    rc_mode: str = "official"
    pattern: str = "alternate"
    window: tuple[int, ...] = (7, 7, 7, 7)
    lim: bool = True
    lim_kernel: int = 3
    peg: bool = True
    head: str = "mlp"
    head_width: int = 4096
    qkv_bias: bool = True
    in_chans: int = 3
    num_classes: int = 1000
    drop_rate: float = 0.0
    attn_drop_rate: float = 0.0
    drop_path_rate: float = 0.0

    def __post_init__(self):
        def put(name, value):
            object.__setattr__(self, name, value)

        dims = self.embed_dims
        if isinstance(dims, int) or not isinstance(dims, (list, tuple)) or not dims:
            raise ToggleError("embed_dims", dims, "a non-empty list of integers >= 1")
        n = len(dims)
        put("embed_dims", _per_stage_ints("embed_dims", dims, n, 1, "width per stage"))
        put("depths", _per_stage_ints("depths", self.depths, n, 1, "blocks per stage"))
        put("num_heads", _per_stage_ints("num_heads", self.num_heads, n, 1, "heads per stage"))
        for c, h in zip(self.embed_dims, self.num_heads, strict=True):
            if c % h:
                raise ToggleError("num_heads", self.num_heads, "divisors of the stage widths")
        if isinstance(self.mlp_ratio, bool) or not isinstance(self.mlp_ratio, (int, float)):
            raise ToggleError("mlp_ratio", self.mlp_ratio, "a number > 0")
        if not self.mlp_ratio > 0:
            raise ToggleError("mlp_ratio", self.mlp_ratio, "a number > 0")
        put("mlp_ratio", float(self.mlp_ratio))
        check_int("patch_size", self.patch_size, low=1)
        put("strides", _per_stage_ints("strides", self.strides, n - 1, 1, "between stages"))
        if any(s > 2 for s in self.strides):
            raise ToggleError("strides", self.strides, f"{n - 1} values, each 1 or 2")
        put("rn", _per_stage_ints("rn", self.rn, n, 1, "SSA spatial reduction per stage"))
        put("rc", _per_stage_numbers("rc", self.rc, n, "SSA channel scale per stage"))
        check_choice("rc_mode", self.rc_mode, RC_MODES)
        check_choice("pattern", self.pattern, PATTERNS)
        put("window", _per_stage_ints("window", self.window, n, 2, "IWSA window per stage"))
        check_bool("lim", self.lim)
        check_int("lim_kernel", self.lim_kernel, low=1, odd=True)
        check_bool("peg", self.peg)
        check_choice("head", self.head, HEADS)
        check_int("head_width", self.head_width, low=1)
        check_bool("qkv_bias", self.qkv_bias)
        check_int("in_chans", self.in_chans, low=1)
        check_int("num_classes", self.num_classes, low=0)
        for name in ("drop_rate", "attn_drop_rate", "drop_path_rate"):
            put(name, _rate(name, getattr(self, name)))
        # rc must give whole channels that split over the heads, wherever it shapes a width
        for i in range(n):
            if self.ssa_blocks(i) and self.rc_sets_width(i):
                c, h, rc = self.embed_dims[i], self.num_heads[i], self.rc[i]
                width = c * rc
                if abs(width - round(width)) > 1e-6 or round(width) % h:
                    raise ToggleError(
                        "rc",
                        _plain(self.rc) if len(set(self.rc)) > 1 else self.rc[0],
                        f"scales with C*rc an integer divisible by the heads "
                        f"(stage {i}: C={c}, {h} heads)",
                    )

    # -- which block runs which attention ------------------------------------------------------
    def block_kind(self, index: int) -> str:
        """'iwsa' or 'ssa' for the index-th block of a stage."""
        if self.pattern in ("ssa", "iwsa"):
            return self.pattern
        first, second = ("iwsa", "ssa") if self.pattern == "alternate" else ("ssa", "iwsa")
        return first if index % 2 == 0 else second

    def ssa_blocks(self, stage: int) -> int:
        return sum(self.block_kind(j) == "ssa" for j in range(self.depths[stage]))

    def iwsa_blocks(self, stage: int) -> int:
        return self.depths[stage] - self.ssa_blocks(stage)

    def rc_sets_width(self, stage: int) -> bool:
        """Whether rc shapes the q/k width of the stage's SSA (else only the softmax scale)."""
        return self.rn[stage] > 1 or self.rc_mode == "decoupled"

    def ssa_width(self, stage: int) -> int:
        c = self.embed_dims[stage]
        return round(c * self.rc[stage]) if self.rc_sets_width(stage) else c

    # -- inert toggles ------------------------------------------------------------------------
    def inert(self) -> dict[str, str]:
        """toggle -> the setting that makes it have no effect, for this configuration."""
        n = len(self.embed_dims)
        out = {}
        if not any(self.iwsa_blocks(i) for i in range(n)):
            cause = f"pattern={self.pattern}" if self.pattern == "ssa" else "no IWSA block"
            out.update(window=cause, lim=cause, lim_kernel=cause)
        elif not self.lim:
            out["lim_kernel"] = "lim=false"
        if not any(self.ssa_blocks(i) for i in range(n)):
            cause = f"pattern={self.pattern}" if self.pattern == "iwsa" else "no SSA block"
            out.update(rn=cause, rc=cause, rc_mode=cause)
        elif not any(self.ssa_blocks(i) and self.rn[i] == 1 and self.rc[i] != 1 for i in range(n)):
            out["rc_mode"] = "no SSA stage with rn=1 and rc!=1"
        if self.head == "linear" or self.num_classes == 0:
            out["head_width"] = "head=linear" if self.head == "linear" else "num_classes=0"
        if self.num_classes == 0:
            out["head"] = "num_classes=0"
        return out

    def toggles(self) -> dict:
        """Resolved values; inert toggles (and per-stage entries that do nothing) are None."""
        out = {k: _plain(v) for k, v in asdict(self).items()}
        n = len(self.embed_dims)
        # per-stage entries of stages without the attention they configure build nothing
        out["rn"] = [self.rn[i] if self.ssa_blocks(i) else None for i in range(n)]
        out["rc"] = [self.rc[i] if self.ssa_blocks(i) else None for i in range(n)]
        out["window"] = [self.window[i] if self.iwsa_blocks(i) else None for i in range(n)]
        for name in self.inert():
            out[name] = None
        return out


TOGGLES = tuple(f.name for f in fields(ScalableViTConfig))


# --- layers -------------------------------------------------------------------------------------


class Block(nn.Module):
    """Pre-norm block: x + dp(attn(LN(x))), x + dp(MLP(LN(x))); one DropPath as released."""

    def __init__(self, dim: int, attn: nn.Module, mlp_ratio: float, drop: float, drop_path: float):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=LN_EPS)
        self.attn = attn
        self.norm2 = nn.LayerNorm(dim, eps=LN_EPS)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), act_layer=nn.GELU, drop=drop)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.drop_path(self.attn(self.norm1(x)))
        return x + self.drop_path(self.mlp(self.norm2(x)))


class Stage(nn.Module):
    """Patch embedding, dropout, blocks, with the PEG after the first block."""

    def __init__(self, embed: nn.Module, blocks: list[nn.Module], peg: nn.Module | None, drop):
        super().__init__()
        self.embed = embed
        self.pos_drop = nn.Dropout(drop)
        self.blocks = nn.ModuleList(blocks)
        self.peg = peg

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pos_drop(self.embed(x))
        for j, block in enumerate(self.blocks):
            x = block(x)
            if j == 0 and self.peg is not None:
                x = self.peg(x)
        return x


class MlpHead(nn.Module):
    """The released head's first part: Linear(C, width) -> LN -> GELU."""

    def __init__(self, dim: int, width: int):
        super().__init__()
        self.fc = nn.Linear(dim, width)
        self.norm = nn.LayerNorm(width, eps=LN_EPS)
        self.act = nn.GELU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.norm(self.fc(x)))


# --- the model ----------------------------------------------------------------------------------


class ScalableViT(ToggleableBackbone):
    """The backbone; ``ScalableViT(**toggles)`` or ``ScalableViT(cfg=ScalableViTConfig(...))``.

    ``explicit``: the toggles the caller chose (default: every keyword given; the register
    functions pass it), checked for inertness. ``forward_features`` returns the final
    LN-normed (B, H, W, C) map.
    """

    output_fmt = "NHWC"

    def __init__(
        self,
        cfg: ScalableViTConfig | None = None,
        *,
        explicit: Iterable[str] | None = None,
        **toggles,
    ):
        super().__init__()
        self.cfg = cfg = resolve_config(ScalableViTConfig, cfg, toggles, explicit, TOGGLES)
        self.num_classes = cfg.num_classes
        self.embed_dim = cfg.embed_dims[-1]

        total = sum(cfg.depths)
        rates = [cfg.drop_path_rate * i / max(total - 1, 1) for i in range(total)]
        stages, k, prev, stride = [], 0, cfg.in_chans, cfg.patch_size
        self.feature_info = []
        for i, dim in enumerate(cfg.embed_dims):
            if i == 0:
                p = cfg.patch_size
                embed = PatchEmbed(prev, dim, 2 * p - 1, p, p - 1)
            else:
                embed = PatchEmbed(prev, dim, 3, cfg.strides[i - 1], 1)
                stride *= cfg.strides[i - 1]
            blocks = []
            for j in range(cfg.depths[i]):
                blocks.append(
                    Block(dim, self._attention(i, j), cfg.mlp_ratio, cfg.drop_rate, rates[k])
                )
                k += 1
            stages.append(Stage(embed, blocks, PEG(dim) if cfg.peg else None, cfg.drop_rate))
            self.feature_info.append(dict(num_chs=dim, reduction=stride, module=f"stages.{i}"))
            prev = dim
        self.stages = nn.ModuleList(stages)
        self.norm = nn.LayerNorm(self.embed_dim, eps=LN_EPS)
        use_mlp = cfg.head == "mlp" and cfg.num_classes > 0
        self.pre_logits = MlpHead(self.embed_dim, cfg.head_width) if use_mlp else nn.Identity()
        self.num_features = self.head_hidden_size = cfg.head_width if use_mlp else self.embed_dim
        self.head_drop = nn.Identity()
        self.head = linear_head(self.num_features, cfg.num_classes)
        self.apply(self._init_weights)

    def _attention(self, stage: int, index: int) -> nn.Module:
        cfg = self.cfg
        dim, heads = cfg.embed_dims[stage], cfg.num_heads[stage]
        common = dict(qkv_bias=cfg.qkv_bias, attn_drop=cfg.attn_drop_rate, proj_drop=cfg.drop_rate)
        if cfg.block_kind(index) == "iwsa":
            return IWSA(dim, heads, cfg.window[stage], cfg.lim, cfg.lim_kernel, **common)
        scale = (dim / heads * cfg.rc[stage]) ** -0.5  # released: (head_dim * rc)^-0.5
        return SSA(dim, heads, cfg.rn[stage], cfg.ssa_width(stage), scale, **common)

    @staticmethod
    def _init_weights(m: nn.Module) -> None:
        # As released: truncated normal on Linear, unit LN, He-normal (fan-out) on convs.
        if isinstance(m, nn.Linear):
            if getattr(m, "is_1x1_conv", False):  # SSA's pw stands in for a 1x1 conv
                nn.init.normal_(m.weight, 0, math.sqrt(2.0 / m.out_features))
            else:
                trunc_normal_(m.weight, std=0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.LayerNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Conv2d):
            fan_out = m.kernel_size[0] * m.kernel_size[1] * m.out_channels // m.groups
            nn.init.normal_(m.weight, 0, math.sqrt(2.0 / fan_out))
            if m.bias is not None:
                nn.init.zeros_(m.bias)

    @torch.jit.ignore
    def no_weight_decay(self) -> set[str]:
        return {n for n, _ in self.named_parameters() if ".peg." in n}

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        # NCHW image -> channels_last memory, then (B, H, W, C) views throughout
        x = x.contiguous(memory_format=torch.channels_last).permute(0, 2, 3, 1)
        for stage in self.stages:
            x = stage(x)
        return self.norm(x)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = self.head_drop(self.pre_logits(x.mean(dim=(1, 2))))
        return x if pre_logits else self.head(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


# --- registrations ------------------------------------------------------------------------------


def _cfg(**kwargs) -> dict:
    return imagenet_cfg("stages.0.embed.conv", **{**kwargs})


default_cfgs = generate_default_cfgs(
    {
        "scalablevit_s": _cfg(),
        "scalablevit_b": _cfg(),
        "scalablevit_l": _cfg(),
        "scalablevit_micro": _cfg(
            num_classes=10,
            input_size=(1, 28, 28),
            pool_size=(4, 4),
            crop_pct=1.0,
            mean=(0.5,),
            std=(0.5,),
        ),
    }
)


def _create(variant: str, pretrained: bool, defaults: dict, kwargs: dict) -> ScalableViT:
    explicit = explicit_toggles(kwargs, TOGGLES)
    return build_model_with_cfg(
        ScalableViT,
        variant,
        pretrained,
        pretrained_filter_fn=checkpoint_filter_fn,
        explicit=explicit,
        **{**defaults, **kwargs},
    )


@register_model
def scalablevit_s(pretrained: bool = False, **kwargs) -> ScalableViT:
    """ScalableViT-S (official ``scalable_vit_small``): 32.00 M params (README: 32.4 M)."""
    defaults = dict(
        embed_dims=(64, 128, 256, 512),
        depths=(2, 2, 20, 2),
        num_heads=(2, 4, 8, 16),
        rn=(8, 4, 2, 1),
        rc=(1.25, 1.25, 1.25, 1.0),
    )
    return _create("scalablevit_s", pretrained, defaults, kwargs)


@register_model
def scalablevit_b(pretrained: bool = False, **kwargs) -> ScalableViT:
    """ScalableViT-B (official ``scalable_vit_base``): 81.88 M params (README: 81.9 M)."""
    defaults = dict(
        embed_dims=(96, 192, 384, 768),
        depths=(2, 2, 14, 6),
        num_heads=(3, 6, 12, 24),
        rn=(8, 4, 2, 1),
        rc=(2.0, 1.25, 1.25, 1.0),
    )
    return _create("scalablevit_b", pretrained, defaults, kwargs)


@register_model
def scalablevit_l(pretrained: bool = False, **kwargs) -> ScalableViT:
    """ScalableViT-L (official ``scalable_vit_large``): 109.29 M params as released; the
    official README's 104.9 M does not match the released configuration."""
    defaults = dict(
        embed_dims=(128, 256, 512, 1024),
        depths=(2, 6, 12, 4),
        num_heads=(4, 8, 16, 32),
        rn=(8, 4, 2, 1),
        rc=(0.25, 0.5, 1.0, 1.0),
    )
    return _create("scalablevit_l", pretrained, defaults, kwargs)


MICRO = dict(
    embed_dims=(32, 48, 80, 112),
    depths=(2, 2, 2, 2),
    num_heads=(1, 2, 2, 4),
    patch_size=2,
    strides=(2, 2, 1),
    rn=(4, 2, 2, 1),
    rc=(1.25, 1.25, 1.25, 1.0),
    window=(8, 4, 2, 2),
    head_width=512,
)


@register_model
def scalablevit_micro(pretrained: bool = False, **kwargs) -> ScalableViT:
    """ScalableViT for 28-32 px inputs (Fashion-MNIST 28x28x1 by default, CIFAR 32x32x3).

    Same blocks and toggles as the paper variants; geometry chosen so that every component
    acts at 28 and 32 px: stem stride 2 (3x3 conv), then strides 2, 2, 1 between stages,
    widths 32, 48, 80, 112, depths 2, 2, 2, 2 (one IWSA and one SSA block per stage), heads
    1, 2, 2, 4, MLP ratio 4, rc 1.25, 1.25, 1.25, 1 (as S), MLP head 512 wide (the released
    4096 would dominate the parameters).

    ==========  ==============  ======================  ====================================
    input       stage maps      IWSA windows            SSA rn / keys after reduction
    ==========  ==============  ======================  ====================================
    28x28x1     14, 7, 4, 4     8, 4, 2, 2: 2x2 windows  4, 2, 2, 1: 16, 16, 4, 16 keys
                                each (14 and 7 padded
                                to 16 and 8, masked)
    32x32x3     16, 8, 4, 4     8, 4, 2, 2: 2x2 each,    4, 2, 2, 1: 16, 16, 4, 16 keys
                                no padding
    ==========  ==============  ======================  ====================================

    Maps that do not divide are zero-padded (the window's padded keys masked; the reduction's
    input padded to a multiple of rn) rather than changing strides: 28 = 4 x 7 leaves a 7x7
    map with any stride-2 design. At 16 px (the smoke grids) the maps are 8, 4, 2, 2 and stage
    3's SSA sees a single key; use 28 px or more for experiments.

    Cost with 10 classes (torch.utils.flop_counter, attention included, 1 MAC = 2 FLOPs):
    0.766 M parameters; 18.8 M MACs at 28x28x1, 21.5 M at 32x32x3. A training step (AdamW,
    batch 64, 28x28x1) costs about 1.2x ``efficientmod_micro``'s on the same CPU.
    """
    return _create("scalablevit_micro", pretrained, dict(MICRO), kwargs)
