"""The LocalViT feed-forward networks: the locality FFN (1x1 conv, depth-wise conv, 1x1 conv on
the token map, with BatchNorms and optional channel attention), the plain MLP, and their typed
config. Standalone modules: any backbone with a token sequence can place them."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from timm.layers import (
    DropPath,
    Mlp,
    get_act_layer,
    trunc_normal_,
)
from torch import nn

from modules.layers.bn_folding import fold_into_previous
from modules.layers.channel_attention import (
    CHANNEL_ATTENTION,
    GATES,
    create_channel_attention,
)
from modules.layers.small_map_conv import SmallMapConv2d
from modules.layers.tokens import join_prefix, map_to_tokens, split_prefix, tokens_to_map
from modules.toggles import (
    ToggleError,
    check_bool,
    check_choice,
    check_int,
    check_positive,
)

FFN_KINDS = ("mlp", "conv1x1", "locality")
# toggle value -> timm activation name (official: relu6 is act=1, h-swish is act=2..5)
ACTIVATIONS = {
    "relu6": "relu6",
    "hswish": "hard_swish",
    "gelu": "gelu",
    "silu": "silu",
    "relu": "relu",
}
# placement preset -> thirds of the depth (low = paper blocks 1-4 of 12, mid 5-8, high 9-12)
PLACEMENTS = {
    "none": (),
    "low": (0,),
    "mid": (1,),
    "high": (2,),
    "low+mid": (0, 1),
    "mid+high": (1, 2),
    "all": (0, 1, 2),
}


def resolve_layers(layers: Any, depth: int) -> list[int]:
    """Resolve the ``layers`` toggle into sorted 0-based block indices.

    Presets split the depth into thirds at round(depth/3) and round(2*depth/3): depth 12 gives
    0-3 / 4-7 / 8-11 (the paper's blocks 1-4 / 5-8 / 9-12), depth 6 gives 0-1 / 2-3 / 4-5.
    Explicit indices come as a list/tuple of ints or a comma-separated string ("0,1,5").
    """
    allowed = (
        "one of " + ", ".join(repr(p) for p in PLACEMENTS) + f", or block indices in [0, {depth})"
    )
    if isinstance(layers, str) and layers in PLACEMENTS:
        cuts = (0, round(depth / 3), round(2 * depth / 3), depth)
        return [i for third in PLACEMENTS[layers] for i in range(cuts[third], cuts[third + 1])]
    if isinstance(layers, str):
        try:
            layers = [int(s) for s in layers.split(",") if s.strip()]
        except ValueError:
            raise ToggleError("layers", layers, allowed) from None
    if isinstance(layers, int) and not isinstance(layers, bool):
        layers = [layers]
    if not isinstance(layers, Sequence) or not all(
        isinstance(i, int) and not isinstance(i, bool) and 0 <= i < depth for i in layers
    ):
        raise ToggleError("layers", layers, allowed)
    return sorted(set(layers))


@dataclass(frozen=True)
class LocalityFFNConfig:
    """The FFN toggles; defaults are LocalViT-T's. ``conv1x1`` is stored as ``dwconv=False``."""

    ffn: str = "locality"
    dwconv: bool = True
    kernel_size: int = 3
    act: str = "hswish"
    se: str = "se"
    se_reduction: int = 192
    se_gate: str = "auto"
    expansion: float = 4.0

    def __post_init__(self):
        check_choice("ffn", self.ffn, FFN_KINDS)
        check_bool("dwconv", self.dwconv)
        check_int("kernel_size", self.kernel_size, low=1, odd=True)
        check_choice("act", self.act, ACTIVATIONS)
        check_choice("se", self.se, CHANNEL_ATTENTION)
        check_int("se_reduction", self.se_reduction, low=1)
        check_choice("se_gate", self.se_gate, ("auto", *GATES))
        object.__setattr__(self, "expansion", check_positive("expansion", self.expansion))
        if self.ffn == "conv1x1":
            object.__setattr__(self, "dwconv", False)

    def hidden_width(self, dim: int) -> int:
        """Expanded width int(gamma * d), as the official ``int(in_dim * expand_ratio)``."""
        hidden = int(dim * self.expansion)
        if hidden < 1:
            raise ToggleError("expansion", self.expansion, f"a ratio giving >= 1 channel of {dim}")
        if self.ffn != "mlp" and self.se == "se" and hidden // self.se_reduction < 1:
            raise ToggleError(
                "se_reduction", self.se_reduction, f"an integer in [1, {hidden}] (gamma*d)"
            )
        return hidden


class TokenBatchNorm(nn.BatchNorm1d):
    """BatchNorm over the last (channel) dim of (..., C) tokens.

    Statistics are per channel over all other dims, the same as ``BatchNorm2d`` on the
    (B, C, H, W) map of those tokens, and the state dict has the same keys and shapes, so it
    stands in for the BN after the official 1x1 convs. Flattening a contiguous tensor is free.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.reshape(-1, x.shape[-1])).view(x.shape)


class LocalityFFN(nn.Module):
    """LocalViT's locality FFN on (B, 1 + H*W, C) tokens; residual inside, class token untouched.

    ``forward(x, hw)`` takes the map size (H, W) explicitly, so non-square maps work.
    """

    def __init__(self, dim: int, cfg: LocalityFFNConfig | None = None, **toggles: Any):
        super().__init__()
        if cfg is not None and toggles:
            raise TypeError("pass either a LocalityFFNConfig or toggles, not both")
        cfg = cfg or LocalityFFNConfig(**toggles)
        if cfg.ffn == "mlp":
            raise ToggleError("ffn", cfg.ffn, "'conv1x1' or 'locality' (use MlpFFN for 'mlp')")
        self.cfg = cfg
        hidden = cfg.hidden_width(dim)
        act_layer = get_act_layer(ACTIVATIONS[cfg.act])
        self.fc1 = nn.Linear(dim, hidden, bias=False)  # official: 1x1 conv, no bias
        self.bn1 = TokenBatchNorm(hidden)
        self.act1 = act_layer()
        if cfg.dwconv:
            k = cfg.kernel_size
            self.dw = SmallMapConv2d(hidden, hidden, k, padding=k // 2, groups=hidden, bias=False)
            self.bn2 = TokenBatchNorm(hidden)
            self.act2 = act_layer()
        else:
            self.dw = self.bn2 = self.act2 = None
        self.se = create_channel_attention(cfg.se, hidden, cfg.se_reduction, cfg.se_gate)
        self.fc2 = nn.Linear(hidden, dim, bias=False)
        self.bn3 = TokenBatchNorm(dim)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Official init: PyTorch's conv default on the 1x1 convs (``nn.Linear``'s default is
        the same for a 1x1 kernel); the official SE is ``nn.Linear``, initialised by DeiT's
        truncated normal (std 0.02, zero bias)."""
        self.fc1.reset_parameters()
        self.fc2.reset_parameters()
        for name in ("fc1", "fc2"):
            conv = getattr(self.se, name, None)
            if isinstance(conv, nn.Conv2d):
                trunc_normal_(conv.weight, std=0.02)
                nn.init.zeros_(conv.bias)

    def fold_batchnorm(self) -> None:
        """Each BatchNorm into the conv before it, for evaluation (``bn_folding``)."""
        self.fc1, self.bn1 = fold_into_previous(self.fc1, self.bn1), nn.Identity()
        if self.dw is not None:
            self.dw, self.bn2 = fold_into_previous(self.dw, self.bn2), nn.Identity()
        self.fc2, self.bn3 = fold_into_previous(self.fc2, self.bn3), nn.Identity()

    def forward(self, x: torch.Tensor, hw: tuple[int, int]) -> torch.Tensor:
        cls, img = split_prefix(x)
        y = self.act1(self.bn1(self.fc1(img)))
        if self.dw is not None:  # the conv on a channels-last view; BN and act on tokens
            y = self.act2(self.bn2(map_to_tokens(self.dw(tokens_to_map(y, hw)))))
        if not isinstance(self.se, nn.Identity):
            y = map_to_tokens(self.se(tokens_to_map(y, hw)))
        y = self.bn3(self.fc2(y))
        return join_prefix(cls, img + y)


class MlpFFN(nn.Module):
    """DeiT's FFN as in timm's ViT block: x + drop_path(Linear-act-Linear(LayerNorm(x)))."""

    def __init__(
        self,
        dim: int,
        expansion: float = 4.0,
        act: str = "gelu",
        drop: float = 0.0,
        drop_path: float = 0.0,
    ):
        super().__init__()
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        act_layer = get_act_layer(ACTIVATIONS[check_choice("act", act, ACTIVATIONS)])
        self.mlp = Mlp(dim, int(dim * expansion), act_layer=act_layer, drop=drop)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()

    def forward(self, x: torch.Tensor, hw: tuple[int, int] | None = None) -> torch.Tensor:
        return x + self.drop_path(self.mlp(self.norm(x)))
