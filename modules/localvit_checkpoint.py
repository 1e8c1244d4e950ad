"""Official LocalViT checkpoints (and timm DeiT weights) mapped onto ``modules.localvit``.

The official FFN is an ``nn.Sequential`` whose layer indices depend on its toggles, so its
layers are named here by what their tensors are, not by their index. Logits of converted
weights equal the official model's (``experiments.tools.compare_official_localvit``).
"""

from __future__ import annotations

import argparse
import re
from collections import defaultdict
from collections.abc import Mapping
from os import PathLike

import torch
from timm.layers import resample_abs_pos_embed
from torch import nn

__all__ = ["checkpoint_filter_fn", "convert_official_localvit", "load_official_localvit"]


# (c, 1, k, k) weight is the depth-wise conv, ``running_mean`` marks the BN after the preceding
# conv, ``fc.0``/``fc.2`` are the SE linears (-> timm ``SEModule`` 1x1 convs), ``conv.weight``
# is ECA. The timm DeiT names ``blocks.{i}.norm2`` and ``blocks.{i}.mlp`` map to
# ``blocks.{i}.ffn.norm`` and ``blocks.{i}.ffn.mlp``, so timm DeiT weights load into
# ``deit_*_ablate`` too.

_FFN_LAYER = re.compile(r"^blocks\.(\d+)\.conv\.conv\.(\d+)\.(.+)$")
_RENAMES = [
    (re.compile(r"^blocks\.(\d+)\.norm2\."), r"blocks.\1.ffn.norm."),
    (re.compile(r"^blocks\.(\d+)\.mlp\."), r"blocks.\1.ffn.mlp."),
]
_BN_AFTER = {"fc1": "bn1", "dw": "bn2", "fc2": "bn3"}


def _convert_ffn(block: int, layers: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """Name the official Sequential's layers of one block by what their tensors are."""
    prefix, out, last = f"blocks.{block}.ffn.", {}, None
    for parts in layers:
        weight = parts.get("weight")
        if "running_mean" in parts:
            if last not in _BN_AFTER:
                raise ValueError(f"block {block}: a BatchNorm follows no conv")
            out.update({f"{prefix}{_BN_AFTER[last]}.{k}": v for k, v in parts.items()})
            last = _BN_AFTER[last]
        elif "fc.0.weight" in parts:  # official SELayer: Linear, ReLU, Linear, h_sigmoid
            for src, dst in (("fc.0", "se.fc1"), ("fc.2", "se.fc2")):
                out[f"{prefix}{dst}.weight"] = parts[f"{src}.weight"][:, :, None, None]
                out[f"{prefix}{dst}.bias"] = parts[f"{src}.bias"]
        elif "conv.weight" in parts:  # official ECALayer: Conv1d(1, 1, k)
            out[f"{prefix}se.conv.weight"] = parts["conv.weight"]
        elif weight is not None and weight.ndim == 4 and weight.shape[1] == 1:
            if last != "bn1":
                raise ValueError(
                    f"block {block}: depth-wise conv before the first 1x1 conv (official "
                    "dp_first) is not supported"
                )
            out[f"{prefix}dw.weight"] = weight
            last = "dw"
        elif weight is not None and weight.ndim == 4 and weight.shape[-2:] == (1, 1):
            if last in ("fc2", "bn3"):
                raise ValueError(f"block {block}: more than two 1x1 convs")
            last = "fc1" if last is None else "fc2"
            out[f"{prefix}{last}.weight"] = weight.flatten(1)
        else:
            raise ValueError(f"block {block}: unrecognised FFN layer with {sorted(parts)}")
    return out


def convert_official_localvit(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Official LocalViT (or timm DeiT) key names and shapes -> this model's keys and shapes.

    A state dict already in this model's layout passes unchanged."""
    out: dict[str, torch.Tensor] = {}
    ffn_layers: dict[int, dict[int, dict[str, torch.Tensor]]] = defaultdict(
        lambda: defaultdict(dict)
    )
    for key, value in state_dict.items():
        key = key.removeprefix("module.")
        match = _FFN_LAYER.match(key)
        if match:
            ffn_layers[int(match[1])][int(match[2])][match[3]] = value
            continue
        for pattern, repl in _RENAMES:
            key = pattern.sub(repl, key)
        out[key] = value
    for block, layers in ffn_layers.items():
        out.update(_convert_ffn(block, [layers[j] for j in sorted(layers)]))
    return out


def checkpoint_filter_fn(state_dict: Mapping[str, torch.Tensor], model: nn.Module) -> dict:
    """timm's ``pretrained_filter_fn``: an official LocalViT (or timm DeiT) state dict -> this
    model's; a position embedding for another grid is resampled."""
    state = convert_official_localvit(state_dict)
    pos_embed = state.get("pos_embed")
    if pos_embed is not None and pos_embed.shape != model.pos_embed.shape:
        state["pos_embed"] = resample_abs_pos_embed(
            pos_embed, list(model.patch_embed.grid_size), num_prefix_tokens=1
        )
    return state


def load_official_localvit(
    model: nn.Module,
    path_or_state_dict: str | PathLike | Mapping[str, torch.Tensor],
    strict: bool = True,
) -> nn.Module:
    """Load an official checkpoint (a file from ``main.py``, or its state dict) into ``model``.

    The same as ``timm.create_model(name, pretrained=True, pretrained_cfg_overlay=dict(file=
    path))`` except that the ``model`` entry of a file is used even when it has ``model_ema``
    (what the official ``--eval --resume`` evaluates; timm prefers the EMA weights).
    """
    state = path_or_state_dict
    if not isinstance(state, Mapping):
        with torch.serialization.safe_globals([argparse.Namespace]):
            state = torch.load(state, map_location="cpu", weights_only=True)
    for entry in ("model", "state_dict", "model_ema"):
        if isinstance(state.get(entry), Mapping):
            state = state[entry]
            break
    model.load_state_dict(checkpoint_filter_fn(state, model), strict=strict)
    return model
