"""SmallMapConv2d: the same convolution as nn.Conv2d, padded explicitly only where it pays."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from modules.layers.small_map_conv import SmallMapConv2d


def _pair(k: int, c: int = 8, bias: bool = True) -> tuple[nn.Conv2d, SmallMapConv2d]:
    torch.manual_seed(0)
    ref = nn.Conv2d(c, c, k, padding=k // 2, groups=c, bias=bias)
    ours = SmallMapConv2d(c, c, k, padding=k // 2, groups=c, bias=bias)
    ours.load_state_dict(ref.state_dict())
    return ref, ours


@pytest.mark.parametrize(
    ("k", "size", "explicit"),
    [(3, 2, True), (3, 1, True), (7, 4, True), (7, 7, False), (3, 3, False), (3, 8, False)],
)
@pytest.mark.parametrize("channels_last", [False, True])
def test_same_convolution_as_conv2d(k, size, explicit, channels_last):
    ref, ours = _pair(k)
    x = torch.randn(4, 8, size, size + 1 if size > 1 else 1)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    assert ours._pads_explicitly(x) == explicit
    xa, xb = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
    ya, yb = ref(xa), ours(xb)
    assert torch.equal(ya, yb)  # the forward is bit for bit the same
    assert yb.is_contiguous(memory_format=torch.channels_last) == ya.is_contiguous(
        memory_format=torch.channels_last
    )
    g = torch.randn_like(ya)
    ya.backward(g)
    yb.backward(g)
    assert torch.equal(xa.grad, xb.grad)
    for pa, pb in zip(ref.parameters(), ours.parameters(), strict=True):
        torch.testing.assert_close(pa.grad, pb.grad, rtol=1e-5, atol=1e-5)


def test_state_dict_is_conv2ds_and_no_padding_means_no_change():
    ref, ours = _pair(3, bias=False)
    assert list(ours.state_dict()) == list(ref.state_dict()) == ["weight"]
    plain = SmallMapConv2d(4, 4, 3, padding=0)
    assert not plain._pads_explicitly(torch.randn(1, 4, 2, 2))
    same = SmallMapConv2d(4, 4, 3, padding="same")
    assert not same._pads_explicitly(torch.randn(1, 4, 2, 2))
    assert same(torch.randn(1, 4, 2, 2)).shape == (1, 4, 2, 2)
