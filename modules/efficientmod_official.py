"""Load checkpoints of the official EfficientMod code (ma-xu/EfficientMod) into ``EfficientMod``.

Why: the released ImageNet weights are the natural starting point for fine-tuning ablations,
and loading them is the strongest check that this re-implementation is the same network.
Only key names differ (the official module tree is ``patch_embed``, ``layers.i.blocks.j``
with ``mlp.fc1``/``mlp.context_layer``/``gamma_1``, and ``layers.i.downsample`` at the *end*
of stage i); every tensor keeps its shape. Build the model with the same toggles as the
checkpoint (``timm.create_model("efficientmod_xxs")`` for ``efficientMod_xxs``).
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Mapping
from os import PathLike

import torch
from torch import nn

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


def _unwrap(checkpoint: Mapping, use_ema: bool) -> Mapping:
    keys = ("state_dict_ema", "model_ema") if use_ema else ()
    for key in (*keys, "state_dict", "model"):
        if key in checkpoint and isinstance(checkpoint[key], Mapping):
            return checkpoint[key]
    return checkpoint


def _is_attention_block(state_dict: Mapping, prefix: str) -> bool:
    return any(k.startswith(prefix + "norm1.") for k in state_dict)


def convert_official_state_dict(state_dict: Mapping[str, torch.Tensor]) -> dict:
    """Rename official EfficientMod keys to this repository's; raises on unknown keys."""
    state_dict = {k.removeprefix("module."): v for k, v in state_dict.items()}
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
            if _is_attention_block(state_dict, prefix):
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


def load_official_efficientmod(
    model: nn.Module,
    path_or_state_dict: str | PathLike | Mapping,
    *,
    use_ema: bool = False,
    strict: bool = True,
):
    """Load an official checkpoint (file path or state dict) into ``model`` in place.

    Accepts a raw state dict or a timm training checkpoint (``state_dict`` /
    ``state_dict_ema``) and strips DDP's ``module.`` prefix. Shapes are checked first so a
    model built with other toggles fails with the list of mismatching tensors.
    """
    if isinstance(path_or_state_dict, Mapping):
        checkpoint = path_or_state_dict
    else:
        # timm checkpoints also pickle the argparse Namespace of the training run.
        with torch.serialization.safe_globals([argparse.Namespace]):
            checkpoint = torch.load(path_or_state_dict, map_location="cpu", weights_only=True)
    state_dict = convert_official_state_dict(_unwrap(checkpoint, use_ema))
    if getattr(getattr(model, "cfg", None), "block", "modulation") != "modulation":
        raise ValueError(
            "official checkpoints hold modulation blocks; build with block='modulation'"
        )
    own = model.state_dict()
    bad = [
        f"{k}: checkpoint {tuple(v.shape)} vs model {tuple(own[k].shape)}"
        for k, v in state_dict.items()
        if k in own and own[k].shape != v.shape
    ]
    if bad:
        raise ValueError("shape mismatch (model built with other toggles?): " + "; ".join(bad[:10]))
    return model.load_state_dict(state_dict, strict=strict)
