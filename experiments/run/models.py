"""Building a registered model for a dataset's geometry (timm's registry; no Lightning)."""

from __future__ import annotations

import timm

import modules  # noqa: F401  (registers the project's models with timm)


def takes_img_size(name: str) -> bool:
    """Whether a model is built for one input size (position embeddings): timm's
    ``fixed_input_size`` in its pretrained config. Only those are given ``img_size``."""
    cfg = timm.models.get_pretrained_cfg(name)
    return bool(cfg is not None and getattr(cfg, "fixed_input_size", False))


def create_model(name: str, num_classes: int, in_chans: int, input_size: int, **toggles):
    """``timm.create_model`` with the data's geometry; the model's own errors propagate."""
    kwargs = dict(num_classes=num_classes, in_chans=in_chans, **toggles)
    if "img_size" not in toggles and takes_img_size(name):
        kwargs["img_size"] = input_size
    return timm.create_model(name, **kwargs)
