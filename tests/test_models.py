"""Every model registered by ``modules``: timm conformance, forward, gradients, run identity.

The list is timm's, filtered to entry points defined in ``modules.*``, so a new model file is
covered as soon as ``modules/__init__.py`` imports it. Micro variants (28-32 px inputs) run
for real, forward and backward; paper-size variants are built and run on the meta device
(shapes only), which keeps the whole file to seconds on CPU.
"""

from __future__ import annotations

import json

import pytest
import timm
import torch

import modules  # noqa: F401  (registers the models)
from modules.localvit import LocalityFFN, LocalViT

MODELS = sorted(
    name
    for name in timm.list_models()
    if timm.models.model_entrypoint(name).__module__.startswith("modules.")
)
MICRO = [name for name in MODELS if name.endswith("_micro")]
PAPER = [name for name in MODELS if name not in MICRO]
SMALL_INPUT = (3, 32, 32)  # CIFAR-sized, another size and channel count than the defaults


def test_models_are_found():
    assert {"localvit_micro", "deit_micro", "efficientmod_micro", "localvit_tiny"} <= set(MODELS)


def _build(name: str, input_size: tuple[int, int, int] | None = None, **kwargs):
    """The model at ``input_size`` (its cfg's by default): ``img_size`` only where fixed."""
    cfg = timm.models.get_pretrained_cfg(name)
    if input_size is not None:
        kwargs["in_chans"] = input_size[0]
        if cfg.fixed_input_size:
            kwargs["img_size"] = input_size[1:]
    return timm.create_model(name, **kwargs)


def _dead_parameters(model: torch.nn.Module) -> tuple[str, ...]:
    """Prefixes of parameters that legitimately get no gradient.

    LocalViT (as the official code): the locality FFN never updates the class token, so with
    the class-token head the last block's FFN cannot reach the output.
    """
    if (
        isinstance(model, LocalViT)
        and model.global_pool == "token"
        and isinstance(model.blocks[-1].ffn, LocalityFFN)
    ):
        return (f"blocks.{len(model.blocks) - 1}.ffn.",)
    return ()


@pytest.mark.parametrize("name", MODELS)
def test_timm_conformance_and_identity(name):
    cfg = timm.models.get_pretrained_cfg(name)
    assert cfg is not None and len(cfg.input_size) == 3
    with torch.device("meta"):
        model = timm.create_model(name)
    assert model.pretrained_cfg["architecture"] == name
    toggles = model.toggles()
    assert isinstance(toggles, dict) and toggles
    assert json.loads(json.dumps(toggles)) == toggles  # plain JSON types, lists not tuples
    with torch.device("meta"):
        again = timm.create_model(name)
    assert again.toggles() == toggles  # the same network, the same run identity


@pytest.mark.parametrize("name", PAPER)
def test_paper_size_forward_on_meta(name):
    cfg = timm.models.get_pretrained_cfg(name)
    with torch.device("meta"):
        model = timm.create_model(name, num_classes=7)
        out = model(torch.randn(2, *cfg.input_size))
    assert out.shape == (2, 7)


@pytest.mark.parametrize("input_size", [None, SMALL_INPUT], ids=["default", "small"])
@pytest.mark.parametrize("name", MICRO)
def test_micro_forward_backward(name, input_size):
    torch.manual_seed(0)
    model = _build(name, input_size, num_classes=5).train()
    size = input_size or timm.models.get_pretrained_cfg(name).input_size
    out = model(torch.randn(2, *size))
    assert out.shape == (2, 5)
    assert torch.isfinite(out).all()
    torch.nn.functional.cross_entropy(out, torch.tensor([0, 3])).backward()
    dead = _dead_parameters(model)
    for pname, p in model.named_parameters():
        if pname.startswith(dead) and dead:
            assert p.grad is None or not p.grad.any(), f"{pname} should not reach the output"
            continue
        assert p.grad is not None, f"{pname} got no gradient"
        assert torch.isfinite(p.grad).all(), f"{pname} has a non-finite gradient"
        assert p.grad.abs().sum() > 0, f"{pname} got a zero gradient"


BACKBONES = {  # class path -> (a toggle set in which its last toggle is inert, the cause)
    "modules.localvit.LocalViT": ({"ffn": "mlp", "act": "gelu", "layers": "all"}, "ffn=mlp"),
    "modules.efficientmod.EfficientMod": ({"expansion": 1, "broadcast": "reshape"}, "expansion=1"),
    "modules.scalablevit.ScalableViT": ({"lim": False, "lim_kernel": 5}, "lim=false"),
    "modules.casvit.CASViT": ({"mixer": "pool", "heads": 4}, "mixer=pool"),
}


@pytest.mark.parametrize("path", sorted(BACKBONES))
def test_every_backbone_resolves_its_toggles_the_same_way(path):
    """Built directly, each backbone refuses an unknown toggle (naming the model), a config
    and toggles together, and an explicitly set inert toggle; its register function counts
    only the toggles its caller passed (a variant's defaults are never refused)."""
    import importlib

    from modules.toggles import InertToggleError

    module_name, name = path.rsplit(".", 1)
    cls = getattr(importlib.import_module(module_name), name)
    config_cls = getattr(importlib.import_module(module_name), f"{name}Config")
    toggles, cause = BACKBONES[path]
    with pytest.raises(TypeError, match=f"unknown {name} toggles \\['no_such_toggle'\\]"):
        cls(no_such_toggle=1)
    with pytest.raises(TypeError, match=f"either an? {config_cls.__name__} or keyword toggles"):
        cls(config_cls(), depth_scale=1)
    with pytest.raises(InertToggleError, match=cause) as err:
        cls(**toggles)
    assert err.value.toggle == list(toggles)[-1]
    # the same toggles as a resolved config, nothing chosen explicitly: built
    with torch.device("meta"):
        assert cls(config_cls(**toggles), explicit=()).cfg == config_cls(**toggles)
