"""LocalViT: toggles build and train, placement, class-token bypass, parity, official loader."""

from __future__ import annotations

import argparse
import copy
import csv
import math
from dataclasses import replace
from pathlib import Path

import pytest
import timm
import torch
import torch.nn.functional as F
from timm.layers import EcaModule, SEModule
from torch import nn

import modules  # noqa: F401  (registers the models)
from modules.layers.channel_attention import create_channel_attention
from modules.layers.tokens import map_to_tokens, tokens_to_map
from modules.localvit import (
    LocalityFFN,
    LocalityFFNConfig,
    LocalViT,
    MlpFFN,
    TokenBatchNorm,
    resolve_layers,
)
from modules.localvit_checkpoint import convert_official_localvit, load_official_localvit
from modules.toggles import InertToggleError, ToggleError

REFERENCE = Path(__file__).resolve().parents[1] / "results" / "reference" / "official_models.csv"

# a small model for the toggle sweep: 28 px, 1 channel, patch 4 -> 7x7 map
SMALL = dict(embed_dim=24, depth=3, heads=2, num_classes=5)


def _forward(model: nn.Module, size=(28, 28), channels=1, batch=2) -> torch.Tensor:
    torch.manual_seed(0)
    return model(torch.randn(batch, channels, *size))


# --- every toggle builds and runs ------------------------------------------------------------

TOGGLES = [("ffn", v) for v in ("mlp", "conv1x1", "locality")] + [
    ("dwconv", False),
    ("kernel_size", 1),
    ("kernel_size", 5),
    ("kernel_size", 7),
    *[("act", v) for v in ("relu6", "hswish", "gelu", "silu", "relu")],
    *[("se", v) for v in ("none", "se", "eca")],
    ("se_reduction", 4),
    ("se_gate", "sigmoid"),
    ("se_gate", "hard_sigmoid"),
    ("expansion", 1),
    ("expansion", 2.5),
    ("expansion", 6),
    *[("layers", v) for v in ("none", "low", "mid", "high", "low+mid", "mid+high", "all")],
    ("layers", [0, 2]),
    ("layers", "1"),
    ("heads", 1),
    ("heads", 3),
    ("patch_size", 7),
]


# DeiT (ffn=mlp, act=gelu): the locality toggles and the placement do nothing there
DEIT_INERT = {"dwconv", "kernel_size", "se", "se_reduction", "se_gate", "layers"}
# values that spell the variant's default network
SAME_AS_DEFAULT = {
    "localvit_micro": {("ffn", "locality"), ("act", "hswish"), ("se", "se"), ("layers", "all")}
    | {("se_gate", "hard_sigmoid")},
    "deit_micro": {("ffn", "mlp"), ("act", "gelu")},
}


@pytest.mark.parametrize("name", ["localvit_micro", "deit_micro"])
@pytest.mark.parametrize(("toggle", "value"), TOGGLES)
def test_every_toggle_builds_and_changes_the_network(name, toggle, value):
    if name == "deit_micro" and toggle in DEIT_INERT:
        with pytest.raises(InertToggleError) as err:
            timm.create_model(name, **{**SMALL, toggle: value})
        assert err.value.toggle == toggle
        return
    extra = {"se_reduction": 12} if (name, toggle) == ("localvit_micro", "expansion") else {}
    model = timm.create_model(name, **{**SMALL, **extra, toggle: value})
    assert getattr(model.cfg, toggle) == value
    out = _forward(model)
    assert out.shape == (2, 5)
    assert torch.isfinite(out).all()
    with torch.device("meta"):
        default = timm.create_model(name, **SMALL, **extra).toggles()
    same = (toggle, value if not isinstance(value, list) else None) in SAME_AS_DEFAULT[name]
    assert (model.toggles() == default) == same


# --- forward and backward at every input size ------------------------------------------------

SIZES = [
    ("localvit_micro", dict(img_size=28, in_chans=1)),
    ("deit_micro", dict(img_size=28, in_chans=1)),
    ("localvit_micro", dict(img_size=32, in_chans=3)),
    ("deit_micro", dict(img_size=32, in_chans=3)),
    ("localvit_micro", dict(img_size=(28, 32), in_chans=3)),  # non-square 7x8 map
    ("localvit_micro", dict(img_size=32, in_chans=3, se="eca", layers="low")),
    ("localvit_micro", dict(img_size=32, in_chans=3, ffn="conv1x1")),
    ("localvit_micro", dict(img_size=32, in_chans=3, global_pool="avg")),
    ("localvit_tiny", dict(img_size=224, embed_dim=32, depth=2, heads=2, se_reduction=32)),
    ("deit_tiny_ablate", dict(img_size=224, embed_dim=32, depth=2, heads=2)),
    ("localvit_small", dict(img_size=224, embed_dim=32, depth=2, se_reduction=8)),
]


@pytest.mark.parametrize(("name", "kwargs"), SIZES)
def test_forward_backward_every_parameter_learns(name, kwargs):
    model = timm.create_model(name, num_classes=7, drop_path_rate=0.1, **kwargs).train()
    size = model.patch_embed.img_size
    torch.manual_seed(0)
    x = torch.randn(4, kwargs["in_chans"] if "in_chans" in kwargs else 3, *size)
    out = model(x)
    assert out.shape == (4, 7)
    assert torch.isfinite(out).all()
    F.cross_entropy(out, torch.arange(4) % 7).backward()
    # official structure: the last block's locality FFN never reaches the class token
    dead = f"blocks.{len(model.blocks) - 1}.ffn."
    if not isinstance(model.blocks[-1].ffn, LocalityFFN) or model.global_pool == "avg":
        dead = None
    for pname, p in model.named_parameters():
        if dead and pname.startswith(dead):
            assert p.grad is None or not p.grad.any(), f"{pname} should not reach the head"
            continue
        assert p.grad is not None, f"{pname} got no gradient"
        assert torch.isfinite(p.grad).all(), f"{pname} has a NaN gradient"
        assert p.grad.abs().sum() > 0, f"{pname} got a zero gradient"


@pytest.mark.parametrize("name", ["localvit_micro", "deit_micro"])
def test_mixed_precision_forward_backward(name):
    model = timm.create_model(name, **({"se": "eca"} if name == "localvit_micro" else {})).train()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = _forward(model, batch=4)
    out.float().sum().backward()
    assert torch.isfinite(out).all()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


def test_micro_defaults_and_timm_kwargs():
    model = timm.create_model("localvit_micro")
    assert model.patch_embed.img_size == (28, 28)
    assert model.patch_embed.proj.in_channels == 1
    assert model.num_classes == 10
    assert model.pretrained_cfg["input_size"] == (1, 28, 28)
    model = timm.create_model(
        "deit_micro", img_size=32, in_chans=3, num_classes=100, drop_rate=0.1, drop_path_rate=0.1
    )
    assert _forward(model, (32, 32), 3).shape == (2, 100)
    assert model.pretrained_cfg["input_size"] == (3, 32, 32)
    with pytest.raises(RuntimeError, match="pretrained_cfg_overlay"):
        timm.create_model("localvit_tiny", pretrained=True)
    for name in ("localvit_tiny", "localvit_micro", "deit_micro", "deit_small_ablate"):
        cfg = timm.models.get_pretrained_cfg(name)
        assert cfg.fixed_input_size and cfg.first_conv == "patch_embed.proj"


def test_own_names_do_not_shadow_timm():
    names = set(timm.list_models("*ablate")) | set(timm.list_models("localvit*"))
    assert {"deit_tiny_ablate", "deit_small_ablate", "localvit_tiny", "localvit_micro"} <= names
    with torch.device("meta"):
        assert not isinstance(timm.create_model("deit_tiny_patch16_224"), LocalViT)


# --- parameter parity with the official implementations ------------------------------------

PARITY = {  # CSV variant -> (registered model, toggles)
    "deit_tiny (baseline)": ("deit_tiny_ablate", {}),
    "localvit_tiny": ("localvit_tiny", {}),
    "localvit_tiny_se4": ("localvit_tiny_se4", {}),
    "localvit_tiny_relu6_gamma6": ("localvit_tiny", dict(act="relu6", se="none", expansion=6)),
    "deit_tiny_gamma6 (baseline)": ("deit_tiny_ablate", dict(expansion=6)),
    "deit_small (baseline)": ("deit_small_ablate", {}),
    "localvit_small": ("localvit_small", {}),
}


def _reference_rows() -> list[dict]:
    with open(REFERENCE, newline="") as f:
        return [row for row in csv.DictReader(f) if row["family"] == "localvit"]


def test_reference_covers_every_parity_case():
    assert {row["variant"] for row in _reference_rows()} == set(PARITY)


@pytest.mark.parametrize("row", _reference_rows(), ids=lambda row: row["variant"])
def test_parameter_parity_with_official(row):
    name, toggles = PARITY[row["variant"]]
    with torch.device("meta"):
        model = timm.create_model(name, img_size=int(row["input"]), **toggles)
    params = sum(p.numel() for p in model.parameters()) / 1e6
    target = float(row["params_m"])
    assert model.num_classes == int(row["num_classes"])
    assert abs(params - target) / target < 0.01, f"{params:.3f}M vs {target}M"
    assert round(params, 3) == target  # in fact exact to the published precision


# --- placement ---------------------------------------------------------------------------------

PRESETS = {
    12: {
        "none": [],
        "low": [0, 1, 2, 3],
        "mid": [4, 5, 6, 7],
        "high": [8, 9, 10, 11],
        "low+mid": list(range(8)),
        "mid+high": list(range(4, 12)),
        "all": list(range(12)),
    },
    6: {
        "none": [],
        "low": [0, 1],
        "mid": [2, 3],
        "high": [4, 5],
        "low+mid": [0, 1, 2, 3],
        "mid+high": [2, 3, 4, 5],
        "all": list(range(6)),
    },
}


@pytest.mark.parametrize("depth", [12, 6])
@pytest.mark.parametrize("preset", list(PRESETS[12]))
def test_placement_presets_select_intended_blocks(depth, preset):
    expected = PRESETS[depth][preset]
    assert resolve_layers(preset, depth) == expected
    with torch.device("meta"):
        model = timm.create_model("localvit_tiny", depth=depth, layers=preset)
    assert model.layer_indices == expected
    got = [i for i, b in enumerate(model.blocks) if isinstance(b.ffn, LocalityFFN)]
    assert got == expected
    assert all(isinstance(b.ffn, MlpFFN) for i, b in enumerate(model.blocks) if i not in got)


def test_explicit_layer_indices():
    assert resolve_layers([5, 0, 5], 6) == [0, 5]
    assert resolve_layers("0, 3", 6) == [0, 3]
    with torch.device("meta"):
        model = timm.create_model("localvit_micro", layers=[1, 4])
    assert [isinstance(b.ffn, LocalityFFN) for b in model.blocks] == [
        False,
        True,
        False,
        False,
        True,
        False,
    ]


def test_unselected_blocks_are_plain_deit_blocks():
    with torch.device("meta"):
        model = timm.create_model("localvit_micro", layers="low", act="relu6", expansion=3)
    plain = model.blocks[5].ffn
    assert type(plain.mlp.act).__name__ == "GELU"
    assert plain.mlp.fc1.out_features == 96 * 3


# --- the locality FFN itself -----------------------------------------------------------------


@pytest.mark.parametrize("training", [True, False])
def test_class_token_does_not_pass_the_ffn(training):
    torch.manual_seed(0)
    ffn = LocalityFFN(16, se_reduction=16).train(training)
    if not training:  # non-trivial running statistics
        ffn.train()(torch.randn(8, 1 + 20, 16), (4, 5))
        ffn.eval()
    x = torch.randn(3, 1 + 20, 16)
    out = ffn(x, (4, 5))  # non-square 4x5 map
    assert torch.equal(out[:, 0], x[:, 0])  # class token re-attached unchanged
    assert not torch.allclose(out[:, 1:], x[:, 1:])
    # the class token neither reaches the image tokens nor the batch statistics
    x2 = x.clone()
    x2[:, 0] += 10.0
    assert torch.allclose(ffn(x2, (4, 5))[:, 1:], out[:, 1:], atol=1e-6)
    # image tokens change the image outputs
    x3 = x.clone()
    x3[:, 1:] += 1.0
    assert not torch.allclose(ffn(x3, (4, 5))[:, 1:], out[:, 1:])


def test_class_token_bypasses_ffn_inside_the_model():
    model = timm.create_model("localvit_micro").eval()
    seen = {}
    block = model.blocks[2]
    block.ffn.register_forward_hook(lambda m, i, o: seen.update(inp=i[0], out=o))
    _forward(model)
    assert torch.equal(seen["out"][:, 0], seen["inp"][:, 0])


def test_conv1x1_is_locality_without_dwconv():
    a = LocalityFFNConfig(ffn="conv1x1", se_reduction=16)
    b = LocalityFFNConfig(ffn="locality", dwconv=False, se_reduction=16)
    assert a.dwconv is False
    torch.manual_seed(0)
    fa, fb = LocalityFFN(16, a), LocalityFFN(16, b)
    assert fa.dw is None and fb.dw is None
    fb.load_state_dict(fa.state_dict())
    x = torch.randn(2, 1 + 9, 16)
    assert torch.equal(fa(x, (3, 3)), fb(x, (3, 3)))


def test_se_squeezes_relative_to_expanded_width():
    ffn = LocalityFFN(192, se_reduction=192)  # LocalViT-T: 768 -> 4 channels
    assert ffn.se.fc1.out_channels == 4
    z = torch.tensor([-4.0, 0.0, 2.0, 4.0])
    assert torch.allclose(ffn.se.gate(z), F.relu6(z + 3) / 6)  # hard sigmoid
    assert LocalityFFN(192, se_reduction=4).se.fc1.out_channels == 192  # "SE4"
    assert torch.allclose(LocalityFFN(192, se="eca").se.gate(z), torch.sigmoid(z))


@pytest.mark.parametrize("kind", ["se", "eca"])
def test_channel_attention_matches_timm_on_both_layouts(kind):
    torch.manual_seed(0)
    ours = create_channel_attention(kind, 32, reduction=8)
    reference = (
        SEModule(32, rd_channels=4, gate_layer="hard_sigmoid") if kind == "se" else EcaModule(32)
    )
    reference.load_state_dict(ours.state_dict())
    x = torch.randn(2, 32, 5, 3)
    for layout in (x, x.contiguous(memory_format=torch.channels_last)):
        assert torch.allclose(ours(layout), reference(layout), atol=1e-6)


def test_token_batchnorm_equals_conv1x1_and_batchnorm2d():
    torch.manual_seed(0)
    linear, bn = nn.Linear(8, 12, bias=False), TokenBatchNorm(12)
    conv, bn2d = nn.Conv2d(8, 12, 1, bias=False), nn.BatchNorm2d(12)
    conv.weight.data = linear.weight.data[:, :, None, None].clone()
    tokens = torch.randn(4, 15, 8)
    maps = tokens_to_map(tokens, (3, 5))
    expected = bn2d(conv(maps))
    got = tokens_to_map(bn(linear(tokens)), (3, 5))
    assert torch.allclose(got, expected, atol=1e-5)
    assert torch.allclose(bn.running_var, bn2d.running_var, atol=1e-6)


def test_tokens_map_round_trip_non_square():
    x = torch.randn(2, 6 * 4, 5)
    m = tokens_to_map(x, (6, 4))
    assert m.shape == (2, 5, 6, 4)
    assert m.data_ptr() == x.data_ptr()  # a view, no copy
    assert torch.equal(m[:, :, 1, 2], x[:, 1 * 4 + 2])
    assert torch.equal(map_to_tokens(m), x)
    with pytest.raises(ValueError):
        tokens_to_map(x, (5, 5))


# --- invalid values are refused with the toggle's name ------------------------------------------

INVALID = [
    ("kernel_size", 2),
    ("kernel_size", 0),
    ("expansion", 0),
    ("expansion", -1.0),
    ("layers", [12]),
    ("layers", [-1]),
    ("layers", "bottom"),
    ("act", "swishy"),
    ("heads", 5),
    ("ffn", "conv3x3"),
    ("se", "cbam"),
    ("se_reduction", 0),
    ("se_reduction", 1000),
    ("dwconv", "yes"),
    ("se_gate", "tanh"),
    ("drop_path_rate", 1.5),
]


@pytest.mark.parametrize(("toggle", "value"), INVALID)
def test_invalid_values_raise_toggle_error(toggle, value):
    with pytest.raises(ToggleError) as err, torch.device("meta"):
        timm.create_model("localvit_tiny", **{toggle: value})
    assert err.value.toggle == toggle
    assert f"'{toggle}'" in str(err.value)
    assert "allowed" in str(err.value)


# --- official checkpoint loader ----------------------------------------------------------------
# A re-statement of the official module structure (names and order of
# ofsoundof/LocalViT models/localvit.py), used as the source the loader must reproduce.


class _OfficialSE(nn.Module):
    def __init__(self, c, r):
        super().__init__()
        self.fc = nn.Sequential(nn.Linear(c, c // r), nn.ReLU(), nn.Linear(c // r, c))

    def forward(self, x):
        return x * F.hardsigmoid(self.fc(x.mean((2, 3))))[:, :, None, None]


class _OfficialECA(nn.Module):
    def __init__(self, c):
        super().__init__()
        t = int(abs((math.log2(c) + 1) / 2))
        k = t if t % 2 else t + 1
        self.conv = nn.Conv1d(1, 1, k, padding=k // 2, bias=False)

    def forward(self, x):
        y = torch.sigmoid(self.conv(x.mean((2, 3))[:, None]))
        return x * y[:, 0, :, None, None]


class _OfficialFFN(nn.Module):
    def __init__(self, d, hidden, dwconv=True, se="se", r=4):
        super().__init__()
        layers = [nn.Conv2d(d, hidden, 1, bias=False), nn.BatchNorm2d(hidden), nn.Hardswish()]
        if dwconv:
            layers += [
                nn.Conv2d(hidden, hidden, 3, 1, 1, groups=hidden, bias=False),
                nn.BatchNorm2d(hidden),
                nn.Hardswish(),
            ]
        if se == "se":
            layers.append(_OfficialSE(hidden, r))
        elif se == "eca":
            layers.append(_OfficialECA(hidden))
        layers += [nn.Conv2d(hidden, d, 1, bias=False), nn.BatchNorm2d(d)]
        self.conv = nn.Sequential(*layers)

    def forward(self, x):
        return x + self.conv(x)


class _OfficialAttention(nn.Module):
    def __init__(self, d, heads):
        super().__init__()
        self.heads, self.qkv, self.proj = heads, nn.Linear(d, 3 * d), nn.Linear(d, d)

    def forward(self, x):
        b, n, c = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        attn = (q @ k.transpose(-2, -1) * (c // self.heads) ** -0.5).softmax(-1)
        return self.proj((attn @ v).transpose(1, 2).reshape(b, n, c))


class _OfficialBlock(nn.Module):
    def __init__(self, d, heads, **ffn):
        super().__init__()
        self.norm1 = nn.LayerNorm(d, eps=1e-6)
        self.attn = _OfficialAttention(d, heads)
        self.conv = _OfficialFFN(d, 4 * d, **ffn)

    def forward(self, x, hw):
        x = x + self.attn(self.norm1(x))
        cls, img = x[:, :1], x[:, 1:]
        img = img.transpose(1, 2).reshape(x.shape[0], x.shape[2], *hw)
        return torch.cat([cls, self.conv(img).flatten(2).transpose(1, 2)], dim=1)


class _OfficialLocalViT(nn.Module):
    def __init__(self, d=16, depth=2, heads=2, img=32, patch=8, classes=5, **ffn):
        super().__init__()
        self.patch_embed = nn.Module()
        self.patch_embed.proj = nn.Conv2d(3, d, patch, patch)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, d))
        self.pos_embed = nn.Parameter(torch.zeros(1, (img // patch) ** 2 + 1, d))
        self.blocks = nn.ModuleList(_OfficialBlock(d, heads, **ffn) for _ in range(depth))
        self.norm = nn.LayerNorm(d, eps=1e-6)
        self.head = nn.Linear(d, classes)

    def forward_features(self, x):
        x = self.patch_embed.proj(x)
        hw = x.shape[-2:]
        x = torch.cat([self.cls_token.expand(len(x), -1, -1), x.flatten(2).transpose(1, 2)], 1)
        x = x + self.pos_embed
        for block in self.blocks:
            x = block(x, hw)
        return self.norm(x)

    def forward(self, x):
        return self.head(self.forward_features(x)[:, 0])


def _randomise(model: nn.Module) -> nn.Module:
    torch.manual_seed(1)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn_like(p) * 0.3)
        for name, buf in model.named_buffers():
            if name.endswith("running_mean"):
                buf.copy_(torch.randn_like(buf) * 0.1)
            elif name.endswith("running_var"):
                buf.copy_(torch.rand_like(buf) + 0.5)
    return model


OFFICIAL_VARIANTS = [
    dict(),  # LocalViT-T layout: dw conv + SE
    dict(se="none"),  # relu6/hswish without SE
    dict(se="eca"),
    dict(dwconv=False),  # official wo_dp_conv, i.e. ffn="conv1x1"
]


@pytest.mark.parametrize("ffn", OFFICIAL_VARIANTS, ids=str)
@pytest.mark.parametrize("training", [False, True])
def test_official_checkpoint_gives_identical_outputs(ffn, training):
    source = _randomise(_OfficialLocalViT(**ffn)).train(training)
    reduction = {"se_reduction": 4} if ffn.get("se", "se") == "se" else {}
    model = LocalViT(
        img_size=32,
        patch_size=8,
        num_classes=5,
        embed_dim=16,
        depth=2,
        heads=2,
        act="hswish",
        **reduction,
        **ffn,
    ).train(training)
    load_official_localvit(model, source.state_dict())  # strict: every key used, none missing
    x = torch.randn(3, 3, 32, 32)
    # all tokens, not only the logits: the last block's FFN reaches the image tokens alone
    features, expected = model.forward_features(x), source.forward_features(x)
    assert torch.allclose(features, expected, rtol=0, atol=2e-6)  # float error is ~2e-7
    assert torch.allclose(model(x), source(x), rtol=0, atol=2e-6)


def test_official_tensors_land_in_the_right_place():
    official = _randomise(_OfficialLocalViT()).state_dict()
    converted = convert_official_localvit(official)
    expected = {  # official name -> (our name, reshape)
        "blocks.1.conv.conv.0.weight": "blocks.1.ffn.fc1.weight",
        "blocks.1.conv.conv.1.running_mean": "blocks.1.ffn.bn1.running_mean",
        "blocks.1.conv.conv.3.weight": "blocks.1.ffn.dw.weight",
        "blocks.1.conv.conv.4.weight": "blocks.1.ffn.bn2.weight",
        "blocks.1.conv.conv.6.fc.0.weight": "blocks.1.ffn.se.fc1.weight",
        "blocks.1.conv.conv.6.fc.2.bias": "blocks.1.ffn.se.fc2.bias",
        "blocks.1.conv.conv.7.weight": "blocks.1.ffn.fc2.weight",
        "blocks.1.conv.conv.8.running_var": "blocks.1.ffn.bn3.running_var",
        "blocks.0.attn.qkv.weight": "blocks.0.attn.qkv.weight",
        "patch_embed.proj.weight": "patch_embed.proj.weight",
        "pos_embed": "pos_embed",
        "head.bias": "head.bias",
    }
    for src, dst in expected.items():
        assert torch.equal(converted[dst].flatten(), official[src].flatten()), src
    assert len(converted) == len(official)
    ours = LocalViT(
        img_size=32, patch_size=8, num_classes=5, embed_dim=16, depth=2, heads=2, se_reduction=4
    ).state_dict()
    assert {k: v.shape for k, v in converted.items()} == {k: v.shape for k, v in ours.items()}


def test_official_checkpoint_file_with_training_state(tmp_path):
    source = _randomise(_OfficialLocalViT())
    path = tmp_path / "localvit_t.pth"
    torch.save(
        {"model": source.state_dict(), "epoch": 299, "args": argparse.Namespace(lr=5e-4)}, path
    )
    model = LocalViT(
        img_size=32, patch_size=8, num_classes=5, embed_dim=16, depth=2, heads=2, se_reduction=4
    )
    load_official_localvit(model, path)
    assert torch.equal(model.blocks[0].ffn.dw.weight, source.blocks[0].conv.conv[3].weight)
    # a model with another layout refuses the checkpoint instead of loading it silently
    with pytest.raises(RuntimeError):
        load_official_localvit(
            LocalViT(
                img_size=32, patch_size=8, num_classes=5, embed_dim=16, depth=2, heads=2, se="none"
            ),
            path,
        )


def test_timm_deit_weights_load_into_deit_ablate():
    torch.manual_seed(0)
    kw = dict(img_size=32, patch_size=8, num_classes=5, embed_dim=16, depth=2)
    source = timm.create_model("deit_tiny_patch16_224", num_heads=2, **kw).eval()
    model = load_official_localvit(
        timm.create_model("deit_tiny_ablate", heads=2, **kw), source.state_dict()
    )
    x = torch.randn(2, 3, 32, 32)
    assert torch.allclose(model.eval()(x), source(x), atol=1e-5)


def test_official_checkpoint_loads_through_timm(tmp_path):
    """timm.create_model(..., pretrained=True, pretrained_cfg_overlay=dict(file=...)) converts
    an official file (with its pickled training args) through checkpoint_filter_fn."""
    source = _randomise(_OfficialLocalViT()).eval()
    path = tmp_path / "localvit_t.pth"
    torch.save({"model": source.state_dict(), "args": argparse.Namespace(lr=5e-4)}, path)
    model = timm.create_model(
        "localvit_tiny",
        pretrained=True,
        pretrained_cfg_overlay=dict(file=str(path), num_classes=5),
        **dict(img_size=32, patch_size=8, num_classes=5, embed_dim=16, depth=2, heads=2),
        se_reduction=4,
    ).eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(model(x), source(x), rtol=0, atol=1e-4)


# --- None-free toggles, inert toggles, run identity ----------------------------------------------

OFF_VALUES = [  # every "off" (and a few other values) must survive timm's None filter
    ("se_gate", "auto"),
    ("se", "none"),
    ("dwconv", False),
    ("layers", "none"),
    ("ffn", "mlp"),
    ("drop_rate", 0.0),
    ("qkv_bias", False),
    ("global_pool", "avg"),
]


@pytest.mark.parametrize(("toggle", "value"), OFF_VALUES)
def test_toggle_values_reach_the_model(toggle, value):
    with torch.device("meta"):
        model = timm.create_model("localvit_micro", **{toggle: value})
    assert getattr(model.cfg, toggle) == value


INERT = [  # (variant, toggles) -> the toggle refused
    ("localvit_micro", dict(ffn="mlp", se="eca"), "se"),
    ("localvit_micro", dict(ffn="mlp", se_reduction=4), "se_reduction"),
    ("localvit_micro", dict(ffn="mlp", se_gate="sigmoid"), "se_gate"),
    ("localvit_micro", dict(ffn="mlp", dwconv=False), "dwconv"),
    ("localvit_micro", dict(ffn="mlp", kernel_size=5), "kernel_size"),
    ("localvit_micro", dict(se="none", se_reduction=4), "se_reduction"),
    ("localvit_micro", dict(se="none", se_gate="sigmoid"), "se_gate"),
    ("localvit_micro", dict(se="eca", se_reduction=4), "se_reduction"),
    ("localvit_micro", dict(dwconv=False, kernel_size=5), "kernel_size"),
    ("localvit_micro", dict(ffn="conv1x1", kernel_size=3), "kernel_size"),
    ("localvit_micro", dict(ffn="conv1x1", dwconv=False), "dwconv"),
    ("localvit_micro", dict(layers="none", act="relu6"), "act"),
    ("localvit_micro", dict(layers=[], ffn="conv1x1"), "ffn"),
    ("localvit_micro", dict(layers="none", se="eca"), "se"),
    ("localvit_micro", dict(ffn="mlp", act="gelu", layers="low"), "layers"),
    ("deit_micro", dict(layers="low"), "layers"),
    ("deit_micro", dict(layers="none"), "layers"),
    ("deit_micro", dict(se="none"), "se"),
]


@pytest.mark.parametrize(("name", "toggles", "refused"), INERT, ids=str)
def test_inert_toggles_are_refused(name, toggles, refused):
    with pytest.raises(InertToggleError) as err, torch.device("meta"):
        timm.create_model(name, **toggles)
    assert err.value.toggle == refused
    # the same setting as a variant default (not passed) is fine, and None in toggles()
    with torch.device("meta"):
        cfg = replace(timm.create_model(name).cfg, **toggles)
    assert refused in cfg.inert()
    assert cfg.toggles()[refused] is None or refused == "layers"


def test_not_inert_where_it_matters():
    with torch.device("meta"):
        timm.create_model("deit_micro", act="relu6", layers="low")  # ReLU6 MLP in blocks 0-1
        timm.create_model("localvit_micro", ffn="mlp")  # h-swish MLP everywhere
        timm.create_model("localvit_micro", layers="none", expansion=2)  # DeiT MLP width


SAME_NETWORK = [  # pairs of spellings of one network
    ("localvit_micro", dict(ffn="conv1x1"), "localvit_micro", dict(dwconv=False)),
    ("localvit_micro", dict(), "localvit_micro", dict(se_gate="hard_sigmoid")),
    ("localvit_micro", dict(se="eca"), "localvit_micro", dict(se="eca", se_gate="sigmoid")),
    ("localvit_micro", dict(), "localvit_micro", dict(layers=[0, 1, 2, 3, 4, 5])),
    ("localvit_micro", dict(layers="low"), "localvit_micro", dict(layers="0,1")),
    ("localvit_micro", dict(), "localvit_micro", dict(img_size=(28, 28))),
    ("deit_micro", dict(), "localvit_micro", dict(layers="none")),
    ("deit_micro", dict(), "localvit_micro", dict(ffn="mlp", act="gelu")),
    ("deit_micro", dict(expansion=2), "localvit_micro", dict(layers=[], expansion=2)),
]


@pytest.mark.parametrize(("a", "ka", "b", "kb"), SAME_NETWORK, ids=str)
def test_same_network_same_toggles(a, ka, b, kb):
    torch.manual_seed(0)
    ma = timm.create_model(a, **ka).eval()
    torch.manual_seed(0)
    mb = timm.create_model(b, **kb).eval()
    assert ma.toggles() == mb.toggles()
    sa, sb = ma.state_dict(), mb.state_dict()
    assert {k: v.shape for k, v in sa.items()} == {k: v.shape for k, v in sb.items()}
    assert all(torch.equal(sa[k], sb[k]) for k in sa)  # same init order, same seed
    x = torch.randn(2, 1, 28, 28)
    assert torch.equal(ma(x), mb(x))


def test_different_networks_different_toggles():
    with torch.device("meta"):
        base = timm.create_model("localvit_micro").toggles()
        for kwargs in (
            dict(ffn="conv1x1"),
            dict(se="eca"),
            dict(se_gate="sigmoid"),
            dict(layers="low"),
        ):
            assert timm.create_model("localvit_micro", **kwargs).toggles() != base
        deit = timm.create_model("deit_micro").toggles()
        assert timm.create_model("deit_micro", act="relu6").toggles() != deit
    assert deit["layers"] == [] and deit["ffn"] is None and deit["expansion"] == 4.0


def test_default_networks_unchanged():
    """Fixed numbers of the default micro networks (seed 0): init order and structure kept."""
    for name, expected in (("localvit_micro", 726_562), ("deit_micro", 678_730)):
        torch.manual_seed(0)
        model = timm.create_model(name)
        assert sum(p.numel() for p in model.parameters()) == expected


@pytest.mark.parametrize("shape", [(2, 49, 384), (3, 196, 768), (1, 4, 7)])
def test_channel_attention_pooling_is_the_mean_bit_for_bit(shape):
    from modules.layers.channel_attention import _pooled

    rows = torch.randn(shape) * 3 + 1
    assert torch.equal(_pooled(rows), rows.mean(1))


@pytest.mark.parametrize(
    "toggles, skipped",
    [
        ({}, True),  # locality FFN in the last block, class-token head
        ({"ffn": "conv1x1"}, True),  # the 1x1-conv FFN also leaves the class token alone
        ({"global_pool": "avg"}, False),  # the mean image token reaches the last FFN
        ({"layers": "low"}, False),  # the last block has DeiT's MLP, which updates the token
        ({"layers": "none", "drop_path_rate": 0.2}, False),  # DeiT, drop-path drawn alike
    ],
)
def test_forward_computes_what_reaches_the_logits_and_nothing_else(toggles, skipped):
    """Under the class-token head the last block runs for the class token alone: logits and
    every gradient those of the full computation up to float rounding, the same random draws
    (drop-path), and the FFN that cannot reach the logits gets no gradient at all."""
    model = timm.create_model("localvit_micro", num_classes=10, in_chans=1, **toggles).train()
    last = list(model.blocks[-1].ffn.parameters())
    assert model.unreached_parameters() == (last if skipped else [])
    torch.manual_seed(0)
    x, y = torch.randn(8, 1, 28, 28), torch.arange(8) % 10
    full = copy.deepcopy(model)
    torch.manual_seed(1)
    F.cross_entropy(logits := model(x), y).backward()
    after = torch.rand(1)
    torch.manual_seed(1)
    F.cross_entropy(expected := full.forward_head(full.forward_features(x)), y).backward()
    assert torch.equal(after, torch.rand(1))  # the same draws from the generator
    torch.testing.assert_close(logits, expected, rtol=0, atol=1e-5)
    for (name, p), q in zip(model.named_parameters(), full.parameters(), strict=True):
        if skipped and any(p is d for d in last):
            assert p.grad is None and not q.grad.any(), name  # computed zeros, skipped here
        else:
            assert p.grad is not None and p.grad.any(), name
            scale = q.grad.abs().max()
            torch.testing.assert_close(p.grad, q.grad, rtol=0, atol=1e-4 * scale), name


def test_class_token_attention_is_the_attention_of_the_class_token():
    """``class_token_attention`` equals timm's ``Attention`` at token 0, with every option
    it has (q/k norms, output norm, gate, no qkv bias), fused or not."""
    from timm.layers import Attention

    from modules.layers.class_token_attention import class_token_attention

    torch.manual_seed(0)
    x = torch.randn(3, 10, 32)
    for kwargs in (
        dict(qkv_bias=True),
        dict(qkv_bias=False, qk_norm=True, scale_norm=True, norm_layer=torch.nn.LayerNorm),
        dict(qkv_bias=True, gated=True),
    ):
        attn = Attention(32, num_heads=4, **kwargs).eval()
        for fused in (True, False):
            attn.fused_attn = fused
            torch.testing.assert_close(
                class_token_attention(attn, x), attn(x)[:, :1], rtol=0, atol=1e-6
            )
