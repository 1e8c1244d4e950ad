"""The efficient modulation block of EfficientMod (Ma et al., ICLR 2024), every part toggleable.

The block computes, on a channels-last map x of shape (B, H, W, C),

    h = LN(x)
    c = g(sum_k act(dwconv_k(f(h))))          context branch, width C
    v = act(value(h))                          value, width r*C (act only when r > 1)
    out = x + drop_path(gamma * proj(v (*) c)) (*) = fusion, c broadcast onto the r*C channels

The paper's Table 5 removes parts of the context branch (f, the depth-wise conv, the GELU, g)
and swaps the multiplication for a sum; appendix L sums several depth-wise kernels. Each of
these is a field of :class:`ModulationConfig`, so any of the 16 context-branch combinations
(including the conv switched off, which the official code cannot express) is one keyword.

Layout: the tensors stay channels-last; the depth-wise conv runs on an NCHW *view* in
channels_last memory format (permute, no ``.contiguous()``), and the C-wide context is
broadcast onto the r*C-wide value by a view (``broadcast='reshape'``) instead of the official
``repeat`` copy. Both broadcasts compute exactly the same numbers.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import torch
from timm.layers import DropPath, LayerNorm, LayerScale
from torch import nn

from modules.layers.small_map_conv import SmallMapConv2d
from modules.toggles import ToggleError, check_bool, check_choice, check_int, check_rate

FUSIONS = ("mul", "sum")
BROADCASTS = ("repeat", "reshape")
NORMS = ("layernorm", "batchnorm")

# The official code uses nn.LayerNorm's default eps (timm's LayerNorm defaults to 1e-6).
LN_EPS = 1e-5


def check_kernel_sizes(value) -> tuple[int, ...]:
    """One odd kernel size or a non-empty list of them (repeats allowed: appendix L has [3, 3])."""
    sizes = (value,) if isinstance(value, int) and not isinstance(value, bool) else value
    allowed = "an odd integer >= 1 or a non-empty list of them, e.g. 7 or [3, 5, 7]"
    if not isinstance(sizes, (list, tuple)) or not sizes:
        raise ToggleError("kernel_sizes", value, allowed)
    for k in sizes:
        if isinstance(k, bool) or not isinstance(k, int) or k < 1 or k % 2 == 0:
            raise ToggleError("kernel_sizes", value, allowed)
    return tuple(sizes)


def check_layer_scale(value) -> float:
    """Layer-scale init value; 0 switches layer scale off (never None: timm drops None)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
        raise ToggleError("layer_scale_init", value, "a number > 0, or 0 for no layer scale")
    return float(value)


@dataclass(frozen=True, kw_only=True)
class ModulationToggles:
    """The toggles of the modulation block that a backbone passes to every block unchanged.

    kernel_sizes: depth-wise kernels of the context branch, summed after the activation
    (appendix L). context_f / context_conv / context_act / context_g: the four parts of the
    context branch. fusion: how context meets value, 'mul' (the paper) or 'sum'. broadcast:
    'repeat' tiles the context r times (official) or 'reshape' views the value as (r, C) (no
    copy; the same numbers). layer_scale_init: gamma init (0: no layer scale). norm: the
    block's pre-norm, 'layernorm' (the paper) or 'batchnorm' (MBConv's; same parameters), so
    the modulation-vs-MBConv comparison can separate the block from its normalisation.
    """

    kernel_sizes: tuple[int, ...] = (7,)
    context_f: bool = True
    context_conv: bool = True
    context_act: bool = True
    context_g: bool = True
    fusion: str = "mul"
    broadcast: str = "reshape"
    layer_scale_init: float = 1e-4
    norm: str = "layernorm"

    def __post_init__(self):
        object.__setattr__(self, "kernel_sizes", check_kernel_sizes(self.kernel_sizes))
        for name in ("context_f", "context_conv", "context_act", "context_g"):
            check_bool(name, getattr(self, name))
        check_choice("fusion", self.fusion, FUSIONS)
        check_choice("broadcast", self.broadcast, BROADCASTS)
        check_choice("norm", self.norm, NORMS)
        object.__setattr__(self, "layer_scale_init", check_layer_scale(self.layer_scale_init))

    @classmethod
    def toggle_names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in fields(ModulationToggles))

    def block_toggles(self) -> dict:
        """These toggles' values, to build a :class:`ModulationConfig` from a larger config."""
        return {name: getattr(self, name) for name in ModulationToggles.toggle_names()}


@dataclass(frozen=True, kw_only=True)
class ModulationConfig(ModulationToggles):
    """Toggles of one modulation block, named as in the paper (keyword-only).

    dim: channels C. expansion: r, the value width is r*C (the official stages alternate
    r = 1 and r). drop_path: stochastic depth. The rest: :class:`ModulationToggles`.
    """

    dim: int
    expansion: int = 1
    drop_path: float = 0.0

    def __post_init__(self):
        check_int("dim", self.dim, low=1)
        check_int("expansion", self.expansion, low=1)
        super().__post_init__()
        object.__setattr__(self, "drop_path", check_rate("drop_path", self.drop_path))


class ContextBranch(nn.Module):
    """c = g(sum_k act(dwconv_k(f(h)))) on a channels-last map; each part may be switched off.

    With the conv off the activation (if on) is applied to f(h) directly, so 'act' keeps its
    meaning of "the non-linearity of the context branch".
    """

    def __init__(self, cfg: ModulationConfig):
        super().__init__()
        dim = cfg.dim
        self.f = nn.Linear(dim, dim) if cfg.context_f else nn.Identity()
        convs = [SmallMapConv2d(dim, dim, k, padding=k // 2, groups=dim) for k in cfg.kernel_sizes]
        self.convs = nn.ModuleList(convs if cfg.context_conv else [])
        self.act = nn.GELU() if cfg.context_act else nn.Identity()
        self.g = nn.Linear(dim, dim) if cfg.context_g else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.f(x)
        if len(self.convs):
            # (B, H, W, C) contiguous == NCHW in channels_last memory: a view, not a copy; the
            # conv keeps that memory format, so the permute back is a view too.
            xc = x.permute(0, 3, 1, 2)
            out = None
            for conv in self.convs:
                y = self.act(conv(xc))
                out = y if out is None else out + y
            x = out.permute(0, 2, 3, 1)
        else:
            x = self.act(x)
        return self.g(x)


class Modulation(nn.Module):
    """The token mixer: proj(act(value(h)) (*) context(h)), fusion and broadcast as toggled."""

    def __init__(self, cfg: ModulationConfig):
        super().__init__()
        dim, r = cfg.dim, cfg.expansion
        self.expansion, self.fusion, self.broadcast = r, cfg.fusion, cfg.broadcast
        self.context = ContextBranch(cfg)
        self.value = nn.Linear(dim, r * dim)
        # Official: the value passes a GELU only when it is expanded (r > 1).
        self.act = nn.GELU() if r > 1 else nn.Identity()
        self.proj = nn.Linear(r * dim, dim)

    def fuse(self, v: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        """v (..., r*C) fused with c (..., C); channel i*C + j of v meets channel j of c."""
        op = torch.mul if self.fusion == "mul" else torch.add
        r = self.expansion
        if r == 1:
            return op(v, c)
        if self.broadcast == "repeat":
            return op(v, c.repeat(*([1] * (c.dim() - 1)), r))
        return op(v.unflatten(-1, (r, c.shape[-1])), c.unsqueeze(-2)).flatten(-2)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        c = self.context(h)
        v = self.act(self.value(h))
        return self.proj(self.fuse(v, c))


class BatchNormHWC(nn.BatchNorm2d):
    """BatchNorm2d on a (B, H, W, C) map: an NCHW view in channels_last memory, no copy."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)


class ModulationBlock(nn.Module):
    """Residual block x + drop_path(gamma * Modulation(LN(x))) on (B, H, W, C) maps."""

    def __init__(self, cfg: ModulationConfig | None = None, **toggles):
        super().__init__()
        if cfg is None:
            cfg = ModulationConfig(**toggles)
        elif toggles:
            raise TypeError("pass either a ModulationConfig or keyword toggles, not both")
        self.cfg = cfg
        self.norm = (
            LayerNorm(cfg.dim, eps=LN_EPS) if cfg.norm == "layernorm" else BatchNormHWC(cfg.dim)
        )
        self.mixer = Modulation(cfg)
        init = cfg.layer_scale_init
        self.layer_scale = LayerScale(cfg.dim, init) if init > 0 else nn.Identity()
        self.drop_path = DropPath(cfg.drop_path) if cfg.drop_path > 0 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.drop_path(self.layer_scale(self.mixer(self.norm(x))))
