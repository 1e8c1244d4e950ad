"""EfficientMod: every toggle builds and trains, parity with the official code, loader, errors."""

from __future__ import annotations

import csv
import itertools
from pathlib import Path

import pytest
import timm
import torch
import torch.nn.functional as F
from torch.utils._python_dispatch import TorchDispatchMode

import modules  # noqa: F401  (registers the models)
from modules.efficientmod import AttentionBlock, EfficientMod, load_official_efficientmod
from modules.layers.mbconv import MBConvBlock
from modules.layers.modulation import Modulation, ModulationBlock, ModulationConfig
from modules.toggles import InertToggleError, ToggleError

REFERENCE = Path(__file__).resolve().parents[1] / "results" / "reference" / "official_models.csv"
CONTEXT_PARTS = ("context_f", "context_conv", "context_act", "context_g")
# A tiny 4-stage model for 224 px inputs: official strides, small widths.
TINY_224 = dict(
    dims=(8, 16, 24, 32),
    depths=(1, 2, 1, 1),
    attention_blocks=(0, 0, 1, 1),
    expansion=3,
    num_classes=5,
)


def _targets() -> list[tuple[str, float]]:
    with REFERENCE.open() as f:
        rows = [r for r in csv.DictReader(f) if r["family"] == "efficientmod"]
    return [(r["variant"], float(r["params_m"])) for r in rows]


def _n_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _check_train_step(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Forward + backward; finite output, and a finite, non-zero gradient on every parameter."""
    out = model(x)
    assert torch.isfinite(out).all()
    out.square().mean().backward()
    for name, p in model.named_parameters():
        assert p.grad is not None, f"no gradient on {name}"
        assert torch.isfinite(p.grad).all(), f"non-finite gradient on {name}"
        assert p.grad.abs().sum() > 0, f"zero gradient on {name}"
    return out


@pytest.mark.parametrize("parts", list(itertools.product([True, False], repeat=4)))
def test_every_context_combination_builds_and_trains(parts):
    torch.manual_seed(0)
    toggles = dict(zip(CONTEXT_PARTS, parts, strict=True))
    block = ModulationBlock(dim=8, expansion=2, kernel_sizes=(3, 5), **toggles)
    out = _check_train_step(block, torch.randn(2, 6, 5, 8))
    assert out.shape == (2, 6, 5, 8)
    assert (len(block.mixer.context.convs) == 2) == toggles["context_conv"]


@pytest.mark.parametrize("fusion", ["mul", "sum"])
@pytest.mark.parametrize("kernel_sizes", [3, (7,), [3, 5, 7], [3, 3]])
def test_fusion_and_kernel_sizes(fusion, kernel_sizes):
    block = ModulationBlock(dim=8, expansion=4, kernel_sizes=kernel_sizes, fusion=fusion)
    _check_train_step(block, torch.randn(2, 7, 7, 8))


@pytest.mark.parametrize(
    ("size", "chans", "toggles"),
    [
        (28, 1, {}),
        (28, 1, {"attention": True}),
        (28, 1, {"block": "mbconv"}),
        (32, 3, {}),
        (32, 3, {"attention_blocks": (0, 0, 1, 2), "kernel_sizes": [3, 5, 7]}),
        (32, 3, {"context_conv": False, "fusion": "sum", "broadcast": "repeat"}),
        (28, 1, {"norm": "batchnorm", "layer_scale_init": 0}),
    ],
)
def test_micro_forward_backward(size, chans, toggles):
    torch.manual_seed(0)
    model = timm.create_model("efficientmod_micro", in_chans=chans, num_classes=10, **toggles)
    out = _check_train_step(model, torch.randn(2, chans, size, size))
    assert out.shape == (2, 10)
    assert model.forward_features(torch.randn(1, chans, size, size)).shape[1:3] == (4, 4)


@pytest.mark.parametrize("toggles", [{}, {"block": "mbconv"}, {"attention": False}])
def test_224_forward_backward(toggles):
    torch.manual_seed(0)
    tiny = {k: v for k, v in TINY_224.items() if not (k == "attention_blocks" and toggles)}
    model = EfficientMod(**tiny, **toggles)
    out = _check_train_step(model, torch.randn(2, 3, 224, 224))
    assert out.shape == (2, 5)
    assert model.forward_features(torch.randn(1, 3, 224, 224)).shape == (1, 7, 7, 32)


@pytest.mark.parametrize(("variant", "target_m"), _targets())
def test_parameter_parity_with_official(variant, target_m):
    with torch.device("meta"):
        model = timm.create_model(variant)
    assert abs(_n_params(model) / 1e6 / target_m - 1) < 0.01


def test_timm_kwargs_are_honoured():
    with torch.device("meta"):
        model = timm.create_model(
            "efficientmod_xxs", num_classes=7, in_chans=1, drop_path_rate=0.2, drop_rate=0.1
        )
    assert model.head.out_features == 7 and model.stem.conv.in_channels == 1
    last = model.stages[-1].blocks[-1]
    assert isinstance(last, AttentionBlock) and last.drop_path2.drop_prob == pytest.approx(0.2)
    assert model.head_drop.p == pytest.approx(0.1)


def test_attention_toggles():
    def n_attention(model):
        return sum(isinstance(m, AttentionBlock) for m in model.modules())

    with torch.device("meta"):
        assert n_attention(timm.create_model("efficientmod_xxs")) == 3
        assert n_attention(timm.create_model("efficientmod_xxs", attention=False)) == 0
        assert n_attention(timm.create_model("efficientmod_micro")) == 0
        assert n_attention(timm.create_model("efficientmod_micro", attention=True)) == 2
        micro = timm.create_model("efficientmod_micro", attention_blocks=(0, 1, 1, 2))
        assert n_attention(micro) == 4
        s = timm.create_model("efficientmod_s")
    # head dim max(C/8, 32): stage 3 of s has C = 144 -> 8 heads of 32 (wider than C)
    attn = s.stages[2].blocks[-1].attn
    assert (attn.num_heads, attn.head_dim) == (8, 32)
    assert s.stages[3].blocks[-1].mlp.fc1.out_features == 312 * 5


@pytest.mark.parametrize(("alternate", "widths"), [(True, [32, 192, 32, 192]), (False, [192] * 4)])
def test_expansion_alternates(alternate, widths):
    with torch.device("meta"):
        model = timm.create_model(
            "efficientmod_s_conv", dims=(32, 64, 96, 128), alternate=alternate
        )
    blocks = model.stages[0].blocks
    assert [b.mixer.value.out_features for b in blocks] == widths


@pytest.mark.parametrize("fusion", ["mul", "sum"])
def test_repeat_and_reshape_broadcast_agree(fusion):
    torch.manual_seed(0)
    a = timm.create_model("efficientmod_micro", broadcast="repeat", fusion=fusion, num_classes=10)
    b = timm.create_model("efficientmod_micro", broadcast="reshape", fusion=fusion, num_classes=10)
    for m in a.modules():  # make the context matter: layer scale 1e-4 would hide differences
        if hasattr(m, "gamma"):
            torch.nn.init.ones_(m.gamma)
    b.load_state_dict(a.state_dict())
    x = torch.randn(2, 3, 32, 32)
    assert torch.equal(a(x), b(x))
    # and the broadcast is the official channel mapping: value channel i*C + j meets context j
    mixer = Modulation(ModulationConfig(dim=3, expansion=2, fusion=fusion))
    v, c = torch.arange(6.0).view(1, 6), torch.tensor([[10.0, 20.0, 30.0]])
    expected = v * c.repeat(1, 2) if fusion == "mul" else v + c.repeat(1, 2)
    assert torch.equal(mixer.fuse(v, c), expected)


@pytest.mark.parametrize("r", [1, 3])
def test_block_matches_the_official_formula(r):
    """x + gamma * fc2(act_r(fc1(h)) * tile(g(sum_k gelu(dwconv_k(f(h)))))), h = LN(x)."""
    torch.manual_seed(0)
    dim = 6
    block = ModulationBlock(dim=dim, expansion=r, kernel_sizes=(3, 5), layer_scale_init=0.5)
    x = torch.randn(2, 5, 4, dim)
    m, ctx = block.mixer, block.mixer.context
    h = F.layer_norm(x, (dim,), block.norm.weight, block.norm.bias, 1e-5)
    fh = ctx.f(h).permute(0, 3, 1, 2).contiguous()
    conv = sum(
        F.gelu(F.conv2d(fh, c.weight, c.bias, padding=c.padding, groups=dim)) for c in ctx.convs
    )
    c = ctx.g(conv.permute(0, 2, 3, 1))
    v = m.value(h)
    v = F.gelu(v) if r > 1 else v  # official: GELU on the value only when expanded
    expected = x + 0.5 * m.proj(v * c.repeat(1, 1, 1, r))
    torch.testing.assert_close(block(x), expected)


class _OpCounter(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.ops = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.ops.append(func.overloadpacket.__name__)
        return func(*args, **(kwargs or {}))


def test_reshape_layout_makes_no_copies():
    block = ModulationBlock(dim=16, expansion=4, kernel_sizes=(3, 7), broadcast="reshape")
    x = torch.randn(2, 9, 9, 16)
    with _OpCounter() as counter:
        block(x)
    copies = [op for op in counter.ops if op in ("copy_", "clone", "repeat", "_to_copy")]
    assert copies == [], copies
    with _OpCounter() as counter:
        ModulationBlock(dim=16, expansion=4, broadcast="repeat")(x)
    assert "repeat" in counter.ops  # the counter does see copies


@pytest.mark.parametrize(
    ("toggle", "value"),
    [
        ("fusion", "max"),
        ("kernel_sizes", 4),
        ("kernel_sizes", [3, 4]),
        ("expansion", 0),
        ("broadcast", "tile"),
        ("attention_blocks", (0, 0, 1)),
        ("context_f", "yes"),
        ("block", "resnet"),
        ("stem_stride", 3),
        ("layer_scale_init", -1.0),
        ("drop_path_rate", 1.5),
    ],
)
def test_invalid_toggles_name_the_toggle(toggle, value):
    with pytest.raises(ToggleError, match=f"'{toggle}'") as err, torch.device("meta"):
        timm.create_model("efficientmod_micro", **{toggle: value})
    assert err.value.toggle == toggle and err.value.allowed


def test_block_config_validates_too():
    with pytest.raises(ToggleError, match="'fusion'"):
        ModulationConfig(dim=8, fusion="max")
    with pytest.raises(ToggleError, match="'expansion'"):
        ModulationBlock(dim=8, expansion=0)
    with pytest.raises(TypeError, match="unknown EfficientMod toggles"):
        EfficientMod(fusions="mul")


def test_mbconv_matches_modulation_params():
    with torch.device("meta"):
        mod = timm.create_model("efficientmod_micro", num_classes=10)
        mb = timm.create_model("efficientmod_micro", num_classes=10, block="mbconv")
        for dim, r in [(32, 1), (48, 4), (128, 6)]:
            target = _n_params(ModulationBlock(dim=dim, expansion=r))
            mbconv = MBConvBlock.matched(dim, target, kernel_size=7)
            assert abs(_n_params(mbconv) / target - 1) < 0.1
    assert abs(_n_params(mb) / _n_params(mod) - 1) < 0.02
    assert sum(isinstance(m, MBConvBlock) for m in mb.modules()) == 8


def _official_state_dict(dims, depths, attention, att_ratio, r, num_classes=1000, ksize=7):
    """Key names and shapes of the official ``EfficientMod`` module tree (models/EfficientMod.py).

    patch_embed.{proj,norm}; layers.i.blocks.j = BasicBlock (norm, gamma_1, mlp.fc1, mlp.fc2,
    mlp.context_layer.{f,g,context_list.k}) then AttentionBlock (norm1, attn.qkv without bias,
    attn.proj, norm2, mlp.fc1, mlp.fc2); layers.i.downsample.{proj,norm} ends stage i; norm, head.
    """
    sd, gen = {}, torch.Generator().manual_seed(0)

    def put(name, *shape):
        sd[name] = torch.randn(*shape, generator=gen)

    def linear(name, n_in, n_out, bias=True):
        put(name + ".weight", n_out, n_in)
        if bias:
            put(name + ".bias", n_out)

    def norm(name, dim):
        put(name + ".weight", dim)
        put(name + ".bias", dim)

    put("patch_embed.proj.weight", dims[0], 3, 7, 7)
    put("patch_embed.proj.bias", dims[0])
    norm("patch_embed.norm", dims[0])
    for i, dim in enumerate(dims):
        for j in range(depths[i]):
            ratio = r if j % 2 else 1
            p = f"layers.{i}.blocks.{j}."
            norm(p + "norm", dim)
            put(p + "gamma_1", dim)
            linear(p + "mlp.fc1", dim, ratio * dim)
            linear(p + "mlp.fc2", ratio * dim, dim)
            linear(p + "mlp.context_layer.f", dim, dim)
            linear(p + "mlp.context_layer.g", dim, dim)
            put(p + "mlp.context_layer.context_list.0.weight", dim, 1, ksize, ksize)
            put(p + "mlp.context_layer.context_list.0.bias", dim)
        for j in range(attention[i]):
            p = f"layers.{i}.blocks.{depths[i] + j}."
            inner = 8 * max(dim // 8, 32)
            norm(p + "norm1", dim)
            linear(p + "attn.qkv", dim, 3 * inner, bias=False)
            linear(p + "attn.proj", inner, dim)
            norm(p + "norm2", dim)
            linear(p + "mlp.fc1", dim, int(dim * att_ratio[i]))
            linear(p + "mlp.fc2", int(dim * att_ratio[i]), dim)
        if i + 1 < len(dims):
            put(f"layers.{i}.downsample.proj.weight", dims[i + 1], dim, 3, 3)
            put(f"layers.{i}.downsample.proj.bias", dims[i + 1])
            norm(f"layers.{i}.downsample.norm", dims[i + 1])
    norm("norm", dims[-1])
    linear("head", dims[-1], num_classes)
    return sd


def test_official_loader_on_synthetic_checkpoint():
    cfg = dict(dims=(8, 16, 24, 40), depths=(2, 1, 3, 2), attention_blocks=(0, 0, 1, 2))
    sd = _official_state_dict(cfg["dims"], cfg["depths"], cfg["attention_blocks"], (4,) * 4, r=3)
    model = EfficientMod(**cfg, expansion=3, num_classes=1000)
    checkpoint = {"state_dict": {"module." + k: v for k, v in sd.items()}, "epoch": 3}
    result = load_official_efficientmod(model, checkpoint)
    assert not result.missing_keys and not result.unexpected_keys
    own = model.state_dict()
    assert torch.equal(own["stem.conv.weight"], sd["patch_embed.proj.weight"])
    assert torch.equal(
        own["stages.1.downsample.conv.weight"], sd["layers.0.downsample.proj.weight"]
    )
    assert torch.equal(own["stages.2.blocks.1.layer_scale.gamma"], sd["layers.2.blocks.1.gamma_1"])
    assert torch.equal(
        own["stages.2.blocks.1.mixer.context.convs.0.weight"],
        sd["layers.2.blocks.1.mlp.context_layer.context_list.0.weight"],
    )
    assert torch.equal(
        own["stages.3.blocks.3.mlp.fc1.weight"], sd["layers.3.blocks.3.mlp.fc1.weight"]
    )
    assert torch.equal(
        own["stages.3.blocks.1.mixer.value.weight"], sd["layers.3.blocks.1.mlp.fc1.weight"]
    )
    loaded = sum(v.numel() for v in sd.values())
    assert loaded == _n_params(model)  # every parameter came from the checkpoint

    with pytest.raises(ValueError, match="shape mismatch"):
        load_official_efficientmod(EfficientMod(**cfg, expansion=4), sd)
    with pytest.raises(KeyError, match="not from an official"):
        load_official_efficientmod(model, {**sd, "dist_head.weight": torch.zeros(1)})


@pytest.mark.slow
@pytest.mark.parametrize("variant", ["efficientmod_xxs", "efficientmod_s_conv"])
def test_paper_variant_trains_at_224(variant):
    # no stochastic depth: with 2 images it drops a whole block for both up to 1% of the time
    # per block, and that block's parameters then rightly get no gradient (the test was flaky)
    model = timm.create_model(variant, num_classes=10, drop_path_rate=0.0)
    _check_train_step(model, torch.randn(2, 3, 224, 224))


def test_official_checkpoint_loads_through_timm(tmp_path):
    """timm.create_model(..., pretrained=True, pretrained_cfg_overlay=dict(file=...)) renames
    an official file's keys through checkpoint_filter_fn."""
    cfg = dict(dims=(8, 16, 24, 40), depths=(2, 1, 3, 2), attention_blocks=(0, 0, 1, 2))
    sd = _official_state_dict(cfg["dims"], cfg["depths"], cfg["attention_blocks"], (4,) * 4, r=3)
    path = tmp_path / "efficientMod_xxs.pth"
    torch.save({"state_dict": sd, "epoch": 3}, path)
    model = timm.create_model(
        "efficientmod_xxs",
        pretrained=True,
        pretrained_cfg_overlay=dict(file=str(path)),
        **cfg,
        expansion=3,
        att_mlp_ratio=(4, 4, 4, 4),
    )
    reference = EfficientMod(**cfg, expansion=3)
    load_official_efficientmod(reference, sd)
    assert all(torch.equal(v, reference.state_dict()[k]) for k, v in model.state_dict().items())
    with pytest.raises(RuntimeError, match="pretrained_cfg_overlay"):
        timm.create_model("efficientmod_xxs", pretrained=True)


OFF_VALUES = [
    ("layer_scale_init", 0),
    ("attention", False),
    ("context_f", False),
    ("context_conv", False),
    ("alternate", False),
    ("drop_rate", 0.0),
]


@pytest.mark.parametrize(("toggle", "value"), OFF_VALUES)
def test_off_values_reach_the_model(toggle, value):
    with torch.device("meta"):
        model = timm.create_model("efficientmod_xxs", **{toggle: value})
    assert getattr(model.cfg, toggle) == value
    if toggle == "layer_scale_init":
        assert not any(hasattr(m, "gamma") for m in model.modules())


INERT = [  # (variant, toggles) -> the toggle refused
    ("efficientmod_s_conv", dict(attention=True), "attention"),
    ("efficientmod_s_conv", dict(attention=False), "attention"),
    ("efficientmod_s_conv", dict(num_heads=4), "num_heads"),
    ("efficientmod_xxs", dict(attention=False, attention_blocks=(0, 0, 1, 1)), "attention_blocks"),
    ("efficientmod_xxs", dict(attention=False, att_mlp_ratio=(4, 4, 2, 2)), "att_mlp_ratio"),
    ("efficientmod_xxs", dict(attention=False, num_heads=4), "num_heads"),
    ("efficientmod_micro", dict(num_heads=4), "num_heads"),
    ("efficientmod_micro", dict(context_conv=False, kernel_sizes=[3]), "kernel_sizes"),
    ("efficientmod_micro", dict(expansion=1, broadcast="repeat"), "broadcast"),
    ("efficientmod_micro", dict(expansion=1, alternate=False), "alternate"),
    ("efficientmod_micro", dict(depths=(1, 1, 1, 1), expansion=6), "expansion"),
    ("efficientmod_micro", dict(block="mbconv", fusion="sum"), "fusion"),
    ("efficientmod_micro", dict(block="mbconv", broadcast="repeat"), "broadcast"),
    ("efficientmod_micro", dict(block="mbconv", context_act=False), "context_act"),
]


@pytest.mark.parametrize(("name", "toggles", "refused"), INERT, ids=str)
def test_inert_toggles_are_refused(name, toggles, refused):
    with pytest.raises(InertToggleError) as err, torch.device("meta"):
        timm.create_model(name, **toggles)
    assert err.value.toggle == refused and err.value.cause


def test_what_mbconv_still_uses():
    """MBConv blocks are sized to the modulation block they replace: kernels, r and the context
    parts with parameters matter; layer scale only by whether it is on."""
    with torch.device("meta"):
        base = timm.create_model("efficientmod_micro", block="mbconv")
        for kwargs in (dict(kernel_sizes=[3]), dict(expansion=6), dict(context_f=False)):
            other = timm.create_model("efficientmod_micro", block="mbconv", **kwargs)
            assert other.toggles() != base.toggles()
            assert _n_params(other) != _n_params(base)
        scale = timm.create_model("efficientmod_micro", block="mbconv", layer_scale_init=1e-2)
    assert scale.toggles() == base.toggles()


SAME_NETWORK = [
    ("efficientmod_micro", dict(), dict(attention_blocks=(0, 0, 0, 0))),
    ("efficientmod_micro", dict(attention=True), dict(attention_blocks=(0, 0, 1, 1))),
    ("efficientmod_micro", dict(kernel_sizes=7), dict(kernel_sizes=[7])),
    ("efficientmod_micro", dict(context_conv=False), dict(context_conv=False, alternate=True)),
    ("efficientmod_xxs", dict(att_mlp_ratio=(2, 3, 4, 4)), dict()),  # stages 1-2: no ViT blocks
]


@pytest.mark.parametrize(("name", "ka", "kb"), SAME_NETWORK, ids=str)
def test_same_network_same_toggles(name, ka, kb):
    torch.manual_seed(0)
    a = timm.create_model(name, num_classes=10, **ka)
    torch.manual_seed(0)
    b = timm.create_model(name, num_classes=10, **kb)
    assert a.toggles() == b.toggles()
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_norm_toggle_swaps_the_block_norm_at_equal_parameters():
    ln = timm.create_model("efficientmod_micro", num_classes=10)
    bn = timm.create_model("efficientmod_micro", num_classes=10, norm="batchnorm")
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert count(ln) == count(bn)
    norms = [type(b.norm).__name__ for b in bn.modules() if isinstance(b, ModulationBlock)]
    assert norms and set(norms) == {"BatchNormHWC"}
    with pytest.raises(ToggleError, match="norm"):
        timm.create_model("efficientmod_micro", norm="groupnorm")
    # MBConv blocks bring their own BatchNorm: the toggle is inert there and refused
    with pytest.raises(Exception, match="norm"):
        timm.create_model("efficientmod_micro", block="mbconv", norm="batchnorm")
