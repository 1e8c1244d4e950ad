"""Official ScalableViT checkpoints mapped onto ``modules.scalablevit``.

The official module tree names each stage's parts in parallel lists and keeps q, k, v as
separate projections; ours nests them per stage and fuses them. Logits of converted weights
equal the official model's (``experiments.tools.compare_official_scalablevit``).
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

__all__ = ["checkpoint_filter_fn"]


def checkpoint_filter_fn(state_dict: Mapping[str, torch.Tensor], model: nn.Module) -> dict:
    """Convert an official ScalableViT state dict (or a training checkpoint) to this layout.

    Renames the module tree (``patch_embeds.i`` / ``pos_block.i.proj.0`` / ``stages.i.j`` ->
    ``stages.i.embed`` / ``stages.i.peg.conv`` / ``stages.i.blocks.j``; ``attn.lim_func`` ->
    ``attn.lim``; ``attn.reduction.0|1`` -> ``attn.sr`` / ``attn.pw``; ``attn.norm_act.0`` ->
    ``attn.norm``; the MLP head ``head.0|1|3`` -> ``pre_logits.fc|norm`` / ``head``), reshapes
    the 1x1 conv to a Linear weight and concatenates q|kv (SSA without reduction) and k|v
    (with reduction) into the fused projections. A state dict already in this layout passes.
    """
    for key in ("state_dict_ema", "model_ema", "state_dict", "model"):
        if key in state_dict and isinstance(state_dict[key], Mapping):
            state_dict = state_dict[key]
            break
    sd = {k.removeprefix("module."): v for k, v in state_dict.items()}
    if not any(k.startswith("patch_embeds.") for k in sd):
        return dict(sd)
    out: dict[str, torch.Tensor] = {}
    mlp_head = "head.0.weight" in sd
    for key, value in sd.items():
        parts = key.split(".")
        if parts[0] == "patch_embeds":
            sub = {"proj": "conv", "norm": "norm"}[parts[2]]
            out[f"stages.{parts[1]}.embed.{sub}.{parts[3]}"] = value
        elif parts[0] == "pos_block":
            out[f"stages.{parts[1]}.peg.conv.{parts[-1]}"] = value
        elif parts[0] == "stages":
            i, j, rest = parts[1], parts[2], ".".join(parts[3:])
            prefix = f"stages.{i}.blocks.{j}."
            attn = f"stages.{i}.{j}.attn."
            if not rest.startswith("attn."):
                out[prefix + rest] = value
                continue
            name, leaf = rest.removeprefix("attn.").rsplit(".", 1)
            if name == "lim_func":
                out[prefix + "attn.lim." + leaf] = value
            elif name == "reduction.0":
                out[prefix + "attn.sr." + leaf] = value
            elif name == "reduction.1":
                out[prefix + "attn.pw." + leaf] = value.flatten(1) if value.dim() == 4 else value
            elif name == "norm_act.0":
                out[prefix + "attn.norm." + leaf] = value
            elif name in ("k", "v") and attn + "reduction.0.weight" in sd:
                if name == "k":
                    out[prefix + "attn.kv." + leaf] = torch.cat(
                        [sd[attn + "k." + leaf], sd[attn + "v." + leaf]], 0
                    )
            elif name in ("q", "kv") and attn + "kv." + leaf in sd:
                if name == "q":
                    out[prefix + "attn.qkv." + leaf] = torch.cat(
                        [sd[attn + "q." + leaf], sd[attn + "kv." + leaf]], 0
                    )
            else:  # qkv, proj, q of SSA with reduction
                out[prefix + "attn." + name + "." + leaf] = value
        elif parts[0] == "head" and mlp_head:
            index, leaf = parts[1], parts[2]
            target = {"0": "pre_logits.fc", "1": "pre_logits.norm", "3": "head"}[index]
            out[f"{target}.{leaf}"] = value
        else:  # norm, plain head
            out[key] = value
    return out
