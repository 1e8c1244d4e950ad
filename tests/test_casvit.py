"""CAS-ViT: toggles build, train and change the network; inert/bad values refused; parity."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import timm
import torch
import torch.nn.functional as F
from torch import nn

import modules  # noqa: F401  (registers the models)
from modules.casvit import CASViT, checkpoint_filter_fn
from modules.layers.catm import CATM, CATMConfig, auto_heads
from modules.toggles import InertToggleError, ToggleError

REFERENCE = Path(__file__).resolve().parents[1] / "results" / "reference" / "official_models.csv"
SMALL = dict(dims=(16, 16, 24, 32), depths=(1, 1, 1, 1))

# every non-default value of every toggle (each builds alone from the released defaults)
TOGGLES = [
    ("mixer", "identity"),
    ("mixer", "pool"),
    ("mixer", "attention"),
    ("spatial", False),
    ("channel", False),
    ("phi_order", "channel_first"),
    ("phi_on", "q"),
    ("phi_on", "k"),
    ("phi_shared", True),
    ("fusion", "product"),
    ("fusion", "concat"),
    ("fusion_dwconv", False),
    ("proj", "1x1"),
    ("gate", "softmax"),
    ("local", False),
    ("mlp_ratio", 2),
]


def _forward(model, size=28, chans=1, batch=2):
    torch.manual_seed(0)
    return model(torch.randn(batch, chans, size, size))


@pytest.mark.parametrize(("toggle", "value"), TOGGLES)
def test_every_toggle_builds_trains_and_changes_the_network(toggle, value):
    torch.manual_seed(0)
    base = timm.create_model("casvit_micro", **SMALL).eval()
    torch.manual_seed(0)
    model = timm.create_model("casvit_micro", **SMALL, **{toggle: value}).train()
    out = _forward(model, batch=4)
    assert out.shape == (4, 10) and torch.isfinite(out).all()
    F.cross_entropy(out, torch.arange(4)).backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, f"{name} got a zero gradient"
    assert model.toggles() != base.toggles()
    changed = {k: v.shape for k, v in model.state_dict().items()} != {
        k: v.shape for k, v in base.state_dict().items()
    }
    if not changed:  # same tensors: the function must differ
        model.load_state_dict(base.state_dict())
        model.eval()
        assert not torch.allclose(_forward(model), _forward(base))


@pytest.mark.parametrize(
    "kwargs",
    [dict(in_chans=1), dict(in_chans=3), dict(in_chans=3, mixer="attention", heads=8)],
    ids=str,
)
@pytest.mark.parametrize("size", [28, 32])
def test_micro_at_28_and_32_px(kwargs, size):
    model = timm.create_model("casvit_micro", **kwargs).train()
    maps = []
    for stage in model.stages:
        stage.register_forward_hook(lambda m, i, o: maps.append(o.shape[-1]))
    out = _forward(model, size, kwargs["in_chans"], batch=3)
    assert out.shape == (3, 10) and torch.isfinite(out).all()
    assert maps == ([14, 7, 4, 4] if size == 28 else [16, 8, 4, 4])


def test_micro_defaults_and_cost():
    model = timm.create_model("casvit_micro")
    assert model.cfg.in_chans == 1 and model.num_classes == 10
    assert model.pretrained_cfg["input_size"] == (1, 28, 28)
    params = sum(p.numel() for p in model.parameters())
    assert 0.5e6 < params < 1.0e6


def test_released_stem_gives_a_1x1_last_map_at_32px():
    model = timm.create_model("casvit_xs", **SMALL, num_classes=10)
    maps = []
    for stage in model.stages:
        stage.register_forward_hook(lambda m, i, o: maps.append(o.shape[-1]))
    _forward(model, 32, 3)
    assert maps == [8, 4, 2, 1]


def test_toggles_are_the_run_identity():
    a = timm.create_model("casvit_micro", mixer="pool")
    b = timm.create_model("casvit_micro", mixer="pool", drop_path_rate=0.0)
    assert a.toggles() == b.toggles()
    t = a.toggles()
    assert t["fusion"] is None and t["phi_on"] is None and t["heads"] is None
    assert t["mixer"] == "pool" and t["in_chans"] == 1 and t["dims"] == [32, 48, 80, 112]
    import json

    json.dumps(t)
    assert timm.create_model("casvit_micro", spatial=False).toggles()["phi_order"] is None
    assert timm.create_model("casvit_micro", spatial=False).toggles()["gate"] is None


INERT = [
    dict(mixer="pool", fusion="sum"),
    dict(mixer="identity", spatial=True),
    dict(mixer="attention", gate="sigmoid"),
    dict(mixer="attention", proj="1x1"),
    dict(heads=2),
    dict(spatial=False, phi_order="spatial_first"),
    dict(channel=False, phi_order="channel_first"),
    dict(phi_on="q", phi_shared=False),
    dict(spatial=False, gate="softmax"),
    dict(spatial=False, channel=False, phi_on="q"),
]


@pytest.mark.parametrize("kwargs", INERT, ids=str)
def test_inert_toggles_are_refused(kwargs):
    with pytest.raises(InertToggleError), torch.device("meta"):
        timm.create_model("casvit_micro", **kwargs)


def test_variant_defaults_are_not_explicit():
    # the released default of an inert toggle is not refused when the caller did not pass it
    with torch.device("meta"):
        timm.create_model("casvit_micro", mixer="pool")
        timm.create_model("casvit_xs", spatial=False, channel=False)


INVALID = [
    ("mixer", "conv"),
    ("spatial", "yes"),
    ("phi_order", "both"),
    ("phi_on", "v"),
    ("fusion", "max"),
    ("proj", "3x3"),
    ("gate", "tanh"),
    ("mlp_ratio", 0),
    ("heads", 5),
    ("heads", -1),
    ("stem_stride", 8),
    ("strides", (2, 3, 1)),
    ("depths", (1, 1)),
    ("drop_path_rate", 1.0),
]


@pytest.mark.parametrize(("toggle", "value"), INVALID)
def test_invalid_values_raise_toggle_error(toggle, value):
    kwargs = {toggle: value}
    if toggle == "heads":
        kwargs["mixer"] = "attention"
    with pytest.raises(ToggleError) as err, torch.device("meta"):
        timm.create_model("casvit_micro", **kwargs)
    assert err.value.toggle == toggle and not isinstance(err.value, InertToggleError)
    assert "allowed" in str(err.value)


def test_unknown_keyword_is_refused():
    # the released model swallows layer_scale_init_value etc.; here it is an error
    with pytest.raises(TypeError, match="layer_scale_init_value"), torch.device("meta"):
        timm.create_model("casvit_xs", layer_scale_init_value=1e-6)


def test_auto_heads():
    assert [auto_heads(d) for d in (32, 48, 80, 112, 220, 512)] == [1, 1, 2, 2, 5, 16]


def test_shared_phi_is_one_phi_for_both():
    torch.manual_seed(0)
    m = CATM(8, CATMConfig(phi_shared=True)).eval()
    assert m.phi.spatial.dw.in_channels == 8
    q = torch.randn(2, 8, 5, 5)
    stacked = m.phi(torch.cat([q, q], 0))
    assert torch.allclose(stacked[:2], stacked[2:])


def test_softmax_gate_weights_average_one():
    torch.manual_seed(0)
    m = CATM(8, CATMConfig(gate="softmax", channel=False)).eval()
    seen = {}
    orig = torch.softmax

    def spy(x, dim):
        out = orig(x, dim=dim)
        seen["w"] = out * x.shape[-1]
        return out

    torch.softmax = spy
    try:
        m(torch.randn(2, 8, 4, 3))
    finally:
        torch.softmax = orig
    assert torch.allclose(seen["w"].mean(-1), torch.ones(2, 2))


LAYOUT_CONFIGS = [
    {},
    {"gate": "softmax"},
    {"phi_on": "q"},
    {"phi_shared": True},
    {"fusion": "product"},
    {"fusion": "concat"},
    {"phi_order": "channel_first"},
]


@pytest.mark.parametrize("kwargs", LAYOUT_CONFIGS, ids=str)
def test_catm_is_the_same_function_in_both_layouts(kwargs):
    """The channels-last path (the one the models run) computes what the NCHW path computes,
    forward and backward, and hands back a channels-last gradient: an NCHW one puts every
    later sum of gradients on a mixed-layout kernel several times slower."""
    torch.manual_seed(0)
    m = CATM(8, CATMConfig(**kwargs))
    x = torch.randn(2, 8, 5, 6)
    g = torch.randn(2, 8, 5, 6)
    results = []
    for layout in (torch.contiguous_format, torch.channels_last):
        xi = x.clone().contiguous(memory_format=layout).requires_grad_()
        m.zero_grad()
        out = m(xi)
        out.backward(g)
        results.append((out, xi.grad, [p.grad.clone() for p in m.parameters()]))
    (out_n, gx_n, gp_n), (out_c, gx_c, gp_c) = results
    assert out_c.is_contiguous(memory_format=torch.channels_last)
    assert gx_c.is_contiguous(memory_format=torch.channels_last)
    assert torch.allclose(out_n, out_c, atol=1e-6)
    assert torch.allclose(gx_n, gx_c, atol=1e-5)
    for a, b in zip(gp_n, gp_c, strict=True):
        assert torch.allclose(a, b, atol=1e-5)


# --- parameter parity with the released models ----------------------------------------------


def _reference_rows() -> list[dict]:
    with open(REFERENCE, newline="") as f:
        return [row for row in csv.DictReader(f) if row["family"] == "casvit"]


@pytest.mark.parametrize("row", _reference_rows(), ids=lambda row: row["variant"])
def test_parameter_parity_with_official(row):
    with torch.device("meta"):
        model = timm.create_model(row["variant"])
    params = sum(p.numel() for p in model.parameters()) / 1e6
    target = float(row["params_m"])
    assert model.num_classes == int(row["num_classes"])
    assert abs(params - target) / target < 0.01, f"{params:.3f}M vs {target}M"
    assert round(params, 2) == target


# --- official checkpoints --------------------------------------------------------------------
# A re-statement of the released module names and structure (classification/model/rcvit.py
# of Tianfang-Zhang/CAS-ViT), used as the source the converter must reproduce.


class _Spatial(nn.Module):
    def __init__(self, d):
        super().__init__()
        self.block = nn.Sequential(
            nn.Conv2d(d, d, 3, 1, 1, groups=d),
            nn.BatchNorm2d(d),
            nn.ReLU(),
            nn.Conv2d(d, 1, 1, bias=False),
            nn.Sigmoid(),
        )

    def forward(self, x):
        return x * self.block(x)


class _Channel(nn.Module):
    def __init__(self, d):
        super().__init__()
        self.block = nn.Sequential(
            nn.AdaptiveAvgPool2d(1), nn.Conv2d(d, d, 1, bias=False), nn.Sigmoid()
        )

    def forward(self, x):
        return x * self.block(x)


class _Mixer(nn.Module):
    def __init__(self, d):
        super().__init__()
        self.qkv = nn.Conv2d(d, 3 * d, 1, bias=False)
        self.oper_q = nn.Sequential(_Spatial(d), _Channel(d))
        self.oper_k = nn.Sequential(_Spatial(d), _Channel(d))
        self.dwc = nn.Conv2d(d, d, 3, 1, 1, groups=d)
        self.proj = nn.Conv2d(d, d, 3, 1, 1, groups=d)

    def forward(self, x):
        q, k, v = self.qkv(x).chunk(3, dim=1)
        return self.proj(self.dwc(self.oper_q(q) + self.oper_k(k)) * v)


class _Local(nn.Module):
    def __init__(self, d):
        super().__init__()
        self.network = nn.Sequential(
            nn.Conv2d(d, d, 1), nn.BatchNorm2d(d), nn.Conv2d(d, d, 3, 1, 1, groups=d),
            nn.GELU(), nn.Conv2d(d, d, 1),
        )  # fmt: skip

    def forward(self, x):
        return self.network(x)


class _Mlp(nn.Module):
    def __init__(self, d):
        super().__init__()
        self.fc1, self.act, self.fc2 = nn.Conv2d(d, 4 * d, 1), nn.GELU(), nn.Conv2d(4 * d, d, 1)

    def forward(self, x):
        return self.fc2(self.act(self.fc1(x)))


class _Block(nn.Module):
    def __init__(self, d):
        super().__init__()
        self.local_perception = _Local(d)
        self.norm1, self.attn = nn.BatchNorm2d(d), _Mixer(d)
        self.norm2, self.mlp = nn.BatchNorm2d(d), _Mlp(d)

    def forward(self, x):
        x = x + self.local_perception(x)
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class _Embedding(nn.Module):
    def __init__(self, a, b):
        super().__init__()
        self.proj, self.norm = nn.Conv2d(a, b, 3, 2, 1), nn.BatchNorm2d(b)

    def forward(self, x):
        return self.norm(self.proj(x))


class _OfficialRCViT(nn.Module):
    def __init__(self, layers=(1, 2, 1, 1), dims=(16, 16, 24, 32), classes=7, dist=True):
        super().__init__()
        d0 = dims[0]
        self.patch_embed = nn.Sequential(
            nn.Conv2d(3, d0 // 2, 3, 2, 1), nn.BatchNorm2d(d0 // 2), nn.ReLU(),
            nn.Conv2d(d0 // 2, d0, 3, 2, 1), nn.BatchNorm2d(d0), nn.ReLU(),
        )  # fmt: skip
        net = []
        for i, (n, d) in enumerate(zip(layers, dims, strict=True)):
            net.append(nn.Sequential(*[_Block(d) for _ in range(n)]))
            if i < len(dims) - 1:
                net.append(_Embedding(d, dims[i + 1]))
        self.network = nn.ModuleList(net)
        self.norm = nn.BatchNorm2d(dims[-1])
        self.head = nn.Linear(dims[-1], classes)
        self.dist = dist
        if dist:
            self.dist_head = nn.Linear(dims[-1], classes)

    def forward(self, x):
        x = self.patch_embed(x)
        for m in self.network:
            x = m(x)
        x = self.norm(x).flatten(2).mean(-1)
        if self.dist:
            return (self.head(x) + self.dist_head(x)) / 2  # eval output
        return self.head(x)


def _randomise(model: nn.Module) -> nn.Module:
    torch.manual_seed(1)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn_like(p) * 0.2)
        for name, buf in model.named_buffers():
            if name.endswith("running_mean"):
                buf.copy_(torch.randn_like(buf) * 0.1)
            elif name.endswith("running_var"):
                buf.copy_(torch.rand_like(buf) + 0.5)
    return model


@pytest.mark.parametrize("dist", [True, False])
def test_official_checkpoint_gives_identical_logits(dist):
    source = _randomise(_OfficialRCViT(dist=dist)).eval()
    model = timm.create_model(
        "casvit_xs", dims=(16, 16, 24, 32), depths=(1, 2, 1, 1), num_classes=7
    ).eval()
    state = source.state_dict()
    model.load_state_dict(checkpoint_filter_fn({"model": state}, model))  # strict
    x = torch.randn(3, 3, 64, 64)
    with torch.no_grad():
        assert torch.allclose(model(x), source(x), rtol=0, atol=1e-4)
    # the q and k tensors land in the grouped Phi, q first
    phi = model.stages[1].blocks[1].mixer.phi
    a = source.network[2][1].attn
    assert torch.equal(phi.spatial.score.weight[0], a.oper_q[0].block[3].weight[0])
    assert torch.equal(phi.channel.fc.weight[16:], a.oper_k[1].block[1].weight)
    assert torch.equal(model.stages[2].downsample.conv.weight, source.network[3].proj.weight)


def test_official_checkpoint_file_loads_through_timm(tmp_path):
    source = _randomise(_OfficialRCViT(dist=False)).eval()
    path = tmp_path / "rcvit_small.pth"
    torch.save({"model": source.state_dict(), "epoch": 299}, path)
    model = timm.create_model(
        "casvit_xs",
        pretrained=True,
        pretrained_cfg_overlay=dict(file=str(path), num_classes=7),
        dims=(16, 16, 24, 32),
        depths=(1, 2, 1, 1),
        num_classes=7,
    ).eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.allclose(model(x), source(x), rtol=0, atol=1e-4)


def test_training_mode_matches_official_structure():
    source = _randomise(_OfficialRCViT(dist=False)).train()
    model = CASViT(dims=(16, 16, 24, 32), depths=(1, 2, 1, 1), num_classes=7).train()
    model.load_state_dict(checkpoint_filter_fn(source.state_dict(), model))
    x = torch.randn(4, 3, 64, 64)
    assert torch.allclose(model(x), source(x), rtol=0, atol=1e-4)


def test_gelu_of_a_channels_last_map_is_the_contiguous_computation():
    """MapGELU on a channels-last map: the values and gradients of the contiguous (NCHW)
    computation, bit for bit, and a channels-last output and gradient; the model's GELUs are
    MapGELUs (PyTorch's own kernel for that layout runs 1.5-1.8x slower on CPU)."""
    from modules.layers.map_gelu import MapGELU

    torch.manual_seed(0)
    x = torch.randn(4, 48, 7, 9)
    g = torch.randn(4, 48, 7, 9)
    grads = []
    for act, layout in ((nn.GELU(), torch.contiguous_format), (MapGELU(), torch.channels_last)):
        xi = x.clone().contiguous(memory_format=layout).requires_grad_()
        out = act(xi)
        out.backward(g.contiguous(memory_format=layout))
        grads.append((out, xi.grad))
    (out_n, gx_n), (out_c, gx_c) = grads
    assert out_c.is_contiguous(memory_format=torch.channels_last)
    assert gx_c.is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(out_n, out_c) and torch.equal(gx_n, gx_c)
    tokens = torch.randn(2, 5, 8)  # not a map: plain nn.GELU
    assert torch.equal(MapGELU()(tokens), F.gelu(tokens))
    model = timm.create_model("casvit_micro", num_classes=10, in_chans=1)
    acts = [m for m in model.modules() if isinstance(m, nn.GELU)]
    assert acts and all(isinstance(m, MapGELU) for m in acts)
