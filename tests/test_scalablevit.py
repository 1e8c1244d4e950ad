"""ScalableViT: parity with the released structure, every toggle, inert/bad values, micro sizes."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import timm
import torch
import torch.nn.functional as F
from timm.layers import Attention
from torch import nn

import modules  # noqa: F401  (registers the models)
from modules.scalablevit import IWSA, SSA, ScalableViT
from modules.scalablevit_checkpoint import checkpoint_filter_fn
from modules.toggles import InertToggleError, ToggleError

REFERENCE = Path(__file__).resolve().parents[1] / "results" / "reference" / "official_models.csv"
# a small 4-stage model: micro geometry, tiny widths
TINY = dict(
    embed_dims=(8, 16, 16, 24),
    depths=(2, 2, 2, 2),
    num_heads=(1, 2, 2, 2),
    head_width=32,
    num_classes=5,
    in_chans=1,
)


def _n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _micro(**kw) -> ScalableViT:
    return timm.create_model("scalablevit_micro", **{**TINY, **kw})


def _targets() -> list[tuple[str, float]]:
    with REFERENCE.open() as f:
        rows = [r for r in csv.DictReader(f) if r["family"] == "scalablevit"]
    return [(r["variant"], float(r["params_m"])) for r in rows]


@pytest.mark.parametrize(("variant", "target"), _targets())
def test_parameter_parity_with_released_code(variant, target):
    with torch.device("meta"):
        model = timm.create_model(variant)
    assert abs(_n_params(model) / 1e6 - target) / target < 0.01


@pytest.mark.parametrize(("size", "chans"), [(28, 1), (32, 3), (16, 1)])
def test_micro_forward_and_gradient_on_every_parameter(size, chans):
    torch.manual_seed(0)
    model = timm.create_model("scalablevit_micro", in_chans=chans, num_classes=10)
    out = model(torch.randn(2, chans, size, size))
    assert out.shape == (2, 10) and torch.isfinite(out).all()
    out.square().mean().backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
        # 16 px (smoke grids only): stage 3's 2x2 map reduced by rn 2 leaves one key, so that
        # SSA's q gets no gradient; every parameter learns at 28 and 32 px
        if size >= 28:
            assert p.grad.abs().sum() > 0, f"zero gradient on {name}"


def test_micro_keeps_every_component_acting():
    """28 and 32 px: IWSA sees >= 2x2 windows, SSA >= 4 keys, rn > 1 in >= 2 stages."""
    cfg = timm.create_model("scalablevit_micro").cfg
    assert sum(r > 1 for r in cfg.rn) >= 2
    for size, maps in ((28, (14, 7, 4, 4)), (32, (16, 8, 4, 4))):
        model = timm.create_model("scalablevit_micro", in_chans=1)
        seen = []
        for stage in model.stages:
            stage.register_forward_hook(lambda m, i, o, seen=seen: seen.append(o.shape[1]))
        model(torch.randn(1, 1, size, size))
        assert tuple(seen) == maps
        for m, win, rn in zip(maps, cfg.window, cfg.rn, strict=True):
            assert -(-m // min(win, m)) >= 2  # windows per side
            assert (-(-m // rn)) ** 2 >= 4  # keys after reduction


def test_toggles_are_json_and_identity_is_canonical():
    a = _micro(rn=2)
    b = _micro(rn=[2, 2, 2, 2])
    assert json.loads(json.dumps(a.toggles())) == a.toggles() == b.toggles()
    t = _micro(pattern="ssa").toggles()
    assert t["window"] is None and t["lim"] is None and t["lim_kernel"] is None
    assert _micro(pattern="iwsa").toggles()["rn"] is None
    assert _micro().toggles() != _micro(rn=1, rc=1).toggles()


TOGGLE_VALUES = [
    ("rn", [2, 1, 1, 1]),
    ("rn", 1),
    ("rc", 1),
    ("rc", [2, 1, 1, 1]),
    ("pattern", "alternate_ssa_first"),
    ("pattern", "ssa"),
    ("pattern", "iwsa"),
    ("window", 4),
    ("lim", False),
    ("lim_kernel", 5),
    ("peg", False),
    ("head", "linear"),
    ("head_width", 16),
    ("qkv_bias", False),
]


@pytest.mark.parametrize(("toggle", "value"), TOGGLE_VALUES)
def test_every_toggle_builds_and_changes_the_network(toggle, value):
    x = torch.randn(2, 1, 28, 28)
    torch.manual_seed(0)
    base = _micro().eval()
    torch.manual_seed(0)
    kw = {**TINY, toggle: value}
    if (toggle, value) == ("head", "linear"):
        del kw["head_width"]  # inert with a linear head
    other = timm.create_model("scalablevit_micro", **kw).eval()
    with torch.no_grad():
        y0, y1 = base(x), other(x)
    assert torch.isfinite(y1).all() and y1.shape == y0.shape
    same_shapes = [p.shape for p in base.parameters()] == [p.shape for p in other.parameters()]
    assert not same_shapes or not torch.allclose(y0, y1)
    assert base.toggles() != other.toggles()


def test_rc_mode_decoupled_scales_qk_where_rn_is_1():
    off = _micro(rn=1, rc=2).stages[0].blocks[1].attn
    dec = _micro(rn=1, rc=2, rc_mode="decoupled").stages[0].blocks[1].attn
    assert off.qkv.out_features == 3 * 8 and dec.qkv.out_features == 2 * 16 + 8
    assert off.scale == dec.scale == (8 * 2) ** -0.5  # released: scale uses rc even at width C


@pytest.mark.parametrize(
    ("kw", "toggle"),
    [
        (dict(pattern="ssa", window=4), "window"),
        (dict(pattern="ssa", lim=False), "lim"),
        (dict(pattern="ssa", lim_kernel=5), "lim_kernel"),
        (dict(lim=False, lim_kernel=5), "lim_kernel"),
        (dict(pattern="iwsa", rn=2), "rn"),
        (dict(pattern="iwsa", rc=1), "rc"),
        (dict(rc_mode="decoupled"), "rc_mode"),  # micro: rc = 1 where rn = 1
        (dict(head="linear", head_width=64), "head_width"),
    ],
)
def test_inert_toggles_are_refused(kw, toggle):
    with pytest.raises(InertToggleError) as err:
        _micro(**kw)
    assert err.value.toggle == toggle


def test_variant_defaults_are_not_explicit():
    # the variant's own window / lim_kernel defaults must not trip the refusal
    assert _micro(pattern="ssa").cfg.pattern == "ssa"
    assert timm.create_model("scalablevit_micro", head="linear").cfg.head == "linear"


@pytest.mark.parametrize(
    ("kw", "toggle"),
    [
        (dict(rn=0), "rn"),
        (dict(rn=[2, 2]), "rn"),
        (dict(rc=0), "rc"),
        (dict(rc=1.1), "rc"),  # 8 * 1.1 is not a whole width
        (dict(rc_mode="pvt"), "rc_mode"),
        (dict(pattern="swin"), "pattern"),
        (dict(window=1), "window"),
        (dict(lim="yes"), "lim"),
        (dict(lim_kernel=4), "lim_kernel"),
        (dict(peg=1), "peg"),
        (dict(head="conv"), "head"),
        (dict(num_heads=(3, 2, 2, 2)), "num_heads"),
        (dict(strides=(2, 3, 1)), "strides"),
        (dict(drop_path_rate=1.0), "drop_path_rate"),
    ],
)
def test_bad_values_are_refused(kw, toggle):
    with pytest.raises(ToggleError) as err:
        _micro(**kw)
    assert err.value.toggle == toggle


def test_rn1_rc1_is_plain_multi_head_self_attention():
    torch.manual_seed(0)
    ssa = SSA(32, 4, rn=1, qk_width=32, scale=8**-0.5).eval()
    ref = Attention(32, num_heads=4, qkv_bias=True).eval()
    ref.load_state_dict(ssa.state_dict())
    x = torch.randn(2, 5, 6, 32)
    with torch.no_grad():
        assert torch.allclose(ssa(x), ref(x.reshape(2, 30, 32)).reshape(2, 5, 6, 32), atol=1e-6)


def test_window_as_large_as_the_map_is_global_attention():
    torch.manual_seed(0)
    iwsa = IWSA(16, 2, window=7, lim=False).eval()
    ref = Attention(16, num_heads=2, qkv_bias=True).eval()
    ref.load_state_dict(iwsa.state_dict())
    x = torch.randn(2, 5, 6, 16)  # window clipped to the 5x6 map
    with torch.no_grad():
        assert torch.allclose(iwsa(x), ref(x.reshape(2, 30, 16)).reshape(2, 5, 6, 16), atol=1e-6)


def test_padded_windows_mask_the_padding():
    """A 7x6 map in 4x4 windows equals attention over each window's real tokens (naive loop)."""
    torch.manual_seed(0)
    iwsa = IWSA(8, 2, window=4, lim=True).eval()
    x = torch.randn(1, 7, 6, 8)
    with torch.no_grad():
        out = iwsa(x)
        q, k, v = iwsa.qkv(x).chunk(3, dim=-1)
        y = torch.zeros(1, 7, 6, 8)
        for i0 in range(0, 7, 4):
            for j0 in range(0, 6, 4):
                sl = (slice(None), slice(i0, i0 + 4), slice(j0, j0 + 4))

                def heads(t, sl=sl):
                    return t[sl].reshape(1, -1, 2, 4).transpose(1, 2)

                a = (heads(q) @ heads(k).transpose(-2, -1) * 4**-0.5).softmax(-1) @ heads(v)
                y[sl] = a.transpose(1, 2).reshape(y[sl].shape)
        y = y + iwsa.lim(v.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)
        assert torch.allclose(out, iwsa.proj(y), atol=1e-5)


# --- official checkpoint loader ----------------------------------------------------------------
# A re-statement of the released module names and structure (Yangr116/ScalableViT,
# image_classification/models/scalablevit.py), at small width, as the source the filter must
# reproduce: IWSA (qkv, lim_func, proj), SSA (q, reduction.0/1, norm_act.0, k, v, proj; or
# q, kv, proj without reduction), ConvPatchEmbed (proj, norm), PosCNN (proj.0), MLP head.


def _attend(q, k, v, scale):
    return (q @ k.transpose(-2, -1) * scale).softmax(-1) @ v


class _OIWSA(nn.Module):
    def __init__(self, c, heads, ws):
        super().__init__()
        self.heads, self.ws = heads, ws
        self.qkv, self.proj = nn.Linear(c, 3 * c), nn.Linear(c, c)
        self.lim_func = nn.Conv2d(c, c, 3, 1, 1, groups=c)

    def forward(self, x, h, w):
        b, n, c = x.shape
        ws, g = self.ws, (h // self.ws) * (w // self.ws)

        def win(t):
            t = t.reshape(b, h // ws, ws, w // ws, ws, c).transpose(2, 3)
            return t.reshape(b, g, ws * ws, self.heads, c // self.heads).permute(0, 1, 3, 2, 4)

        def unwin(t):
            t = t.permute(0, 1, 3, 2, 4).reshape(b, h // ws, w // ws, ws, ws, c)
            return t.transpose(2, 3).reshape(b, h, w, c)

        q, k, v = self.qkv(x).reshape(b, n, 3, c).permute(2, 0, 1, 3)
        q, k, v = win(q), win(k), win(v)
        lim = self.lim_func(unwin(v).permute(0, 3, 1, 2)).flatten(2).transpose(1, 2)
        y = unwin(_attend(q, k, v, (c // self.heads) ** -0.5)).reshape(b, n, c)
        return self.proj(y + lim)


class _OSSA(nn.Module):
    def __init__(self, c, heads, sr, rc):
        super().__init__()
        self.heads, self.sr, self.cn = heads, sr, int(c * rc)
        self.scale = (c // heads * rc) ** -0.5
        if sr > 1:
            self.q = nn.Linear(c, self.cn)
            self.reduction = nn.Sequential(
                nn.Conv2d(c, c, sr, sr, groups=c), nn.Conv2d(c, self.cn, 1)
            )
            self.norm_act = nn.Sequential(nn.LayerNorm(self.cn), nn.GELU())
            self.k, self.v = nn.Linear(self.cn, self.cn), nn.Linear(self.cn, c)
        else:
            self.q, self.kv = nn.Linear(c, c), nn.Linear(c, 2 * c)
        self.proj = nn.Linear(c, c)

    def forward(self, x, h, w):
        b, n, c = x.shape
        nh = self.heads

        def heads(t):
            return t.reshape(b, t.shape[1], nh, -1).transpose(1, 2)

        if self.sr > 1:
            t = self.reduction(x.transpose(1, 2).reshape(b, c, h, w)).flatten(2).transpose(1, 2)
            t = self.norm_act(t)
            q, k, v = heads(self.q(x)), heads(self.k(t)), heads(self.v(t))
        else:
            q = heads(self.q(x))
            k, v = self.kv(x).reshape(b, n, 2, nh, -1).permute(2, 0, 3, 1, 4)
        return self.proj(_attend(q, k, v, self.scale).transpose(1, 2).reshape(b, n, c))


class _OBlock(nn.Module):
    def __init__(self, c, heads, sr, rc, ws):
        super().__init__()
        self.norm1, self.norm2 = nn.LayerNorm(c, eps=1e-6), nn.LayerNorm(c, eps=1e-6)
        self.attn = _OSSA(c, heads, sr, rc) if ws == 1 else _OIWSA(c, heads, ws)
        self.mlp = nn.Module()
        self.mlp.fc1, self.mlp.fc2 = nn.Linear(c, 4 * c), nn.Linear(4 * c, c)

    def forward(self, x, h, w):
        x = x + self.attn(self.norm1(x), h, w)
        return x + self.mlp.fc2(F.gelu(self.mlp.fc1(self.norm2(x))))


class _OEmbed(nn.Module):
    def __init__(self, cin, c, k, s, p):
        super().__init__()
        self.s = s
        self.proj, self.norm = nn.Conv2d(cin, c, k, s, p), nn.LayerNorm(c, eps=1e-6)

    def forward(self, x):
        h, w = x.shape[2] // self.s, x.shape[3] // self.s
        return self.norm(self.proj(x).flatten(2).transpose(1, 2)), (h, w)


class _OViT(nn.Module):
    def __init__(self, dims, depths, heads, srs, rcs, ws=7, classes=5, plain_head=False):
        super().__init__()
        self.patch_embeds, self.pos_block, self.stages = nn.ModuleList(), nn.ModuleList(), []
        for i, c in enumerate(dims):
            args = (3, c, 7, 4, 3) if i == 0 else (dims[i - 1], c, 3, 2, 1)
            self.patch_embeds.append(_OEmbed(*args))
            peg = nn.Module()
            peg.proj = nn.Sequential(nn.Conv2d(c, c, 3, 1, 1, groups=c))
            self.pos_block.append(peg)
            self.stages.append(
                nn.ModuleList(
                    _OBlock(c, heads[i], srs[i], rcs[i], 1 if j % 2 else ws)
                    for j in range(depths[i])
                )
            )
        self.stages = nn.ModuleList(self.stages)
        self.norm = nn.LayerNorm(dims[-1], eps=1e-6)
        if plain_head:
            self.head = nn.Linear(dims[-1], classes)
        else:
            self.head = nn.Sequential(
                nn.Linear(dims[-1], 64),
                nn.LayerNorm(64, eps=1e-6),
                nn.GELU(),
                nn.Linear(64, classes),
            )

    def forward(self, x):
        b = x.shape[0]
        for i, stage in enumerate(self.stages):
            x, (h, w) = self.patch_embeds[i](x)
            for j, blk in enumerate(stage):
                x = blk(x, h, w)
                if j == 0:
                    m = x.transpose(1, 2).reshape(b, -1, h, w)
                    x = (self.pos_block[i].proj(m) + m).flatten(2).transpose(1, 2)
            if i < len(self.stages) - 1:
                x = x.reshape(b, h, w, -1).permute(0, 3, 1, 2)
        return self.head(self.norm(x).mean(1))


# (variant, rc per stage, plain head): S-, B- and L-like channel scales at small width; the
# last case is the released ``scalable_vit_small_0`` kind (rc 1.25 where sr = 1: scale quirk).
OFFICIAL_CASES = [
    ("scalablevit_s", (1.25, 1.25, 1.25, 1), False),
    ("scalablevit_b", (2, 1.25, 1.25, 1), False),
    ("scalablevit_l", (0.25, 0.5, 1, 1), False),
    ("scalablevit_s", (1.25, 1.25, 1.25, 1.25), True),
]


@pytest.mark.parametrize(("variant", "rcs", "plain"), OFFICIAL_CASES)
def test_official_checkpoint_gives_the_same_logits(variant, rcs, plain, tmp_path):
    torch.manual_seed(0)
    dims, depths, heads = (8, 16, 16, 32), (2, 2, 3, 2), (1, 2, 2, 4)
    official = _OViT(dims, depths, heads, (8, 4, 2, 1), rcs, plain_head=plain).eval()
    with torch.no_grad():
        for p in official.parameters():
            p.normal_(0, 0.2)
    kw = dict(embed_dims=dims, depths=depths, num_heads=heads, rc=list(rcs), num_classes=5)
    kw.update(head="linear") if plain else kw.update(head_width=64)
    ours = timm.create_model(variant, **kw).eval()
    ours.load_state_dict(checkpoint_filter_fn(official.state_dict(), ours))
    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        assert (ours(x) - official(x)).abs().max() < 1e-4
    # the same through timm's pretrained path (a training checkpoint with a 'model' key)
    path = tmp_path / "official.pth"
    torch.save({"model": official.state_dict()}, path)
    loaded = timm.create_model(
        variant, pretrained=True, pretrained_cfg_overlay=dict(file=str(path), num_classes=5), **kw
    ).eval()
    with torch.no_grad():
        assert (loaded(x) - official(x)).abs().max() < 1e-4
