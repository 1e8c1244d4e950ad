"""SmallMapConv2d: the same convolution as nn.Conv2d, padded explicitly or computed as a matmul
only where it pays."""

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
    ("k", "size", "path"),
    [
        (3, 2, "explicit"),
        (3, 1, "explicit"),
        (7, 4, "dense"),
        (5, 3, "dense"),
        (7, 1, "dense"),
        (7, 7, "conv"),
        (3, 3, "conv"),
        (3, 8, "conv"),
    ],
)
@pytest.mark.parametrize("channels_last", [False, True])
def test_same_convolution_as_conv2d(k, size, path, channels_last):
    """Explicit padding is bit for bit the conv; the dense matmul is the conv up to rounding
    (its sums run in another order); both keep the input's memory layout."""
    ref, ours = _pair(k)
    x = torch.randn(4, 8, size, size + 1 if size > 1 else 1)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    assert ours._pads_explicitly(x) == (path != "conv")
    assert ours._is_dense(x) == (path == "dense")
    xa, xb = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
    ya, yb = ref(xa), ours(xb)
    if path == "dense":
        torch.testing.assert_close(yb, ya, rtol=1e-5, atol=1e-6)
    else:
        assert torch.equal(ya, yb)  # the forward is bit for bit the same
    assert yb.is_contiguous(memory_format=torch.channels_last) == ya.is_contiguous(
        memory_format=torch.channels_last
    )
    g = torch.randn_like(ya)
    ya.backward(g)
    yb.backward(g)
    if path == "dense":
        torch.testing.assert_close(xb.grad, xa.grad, rtol=1e-5, atol=1e-6)
    else:
        assert torch.equal(xa.grad, xb.grad)
    for pa, pb in zip(ref.parameters(), ours.parameters(), strict=True):
        torch.testing.assert_close(pa.grad, pb.grad, rtol=1e-5, atol=1e-5)


def test_the_dense_path_is_only_for_centred_depthwise_stride_one_convs():
    x = torch.randn(2, 8, 4, 4)
    assert not SmallMapConv2d(8, 8, 7, padding=3, groups=2)._is_dense(x)  # not depth-wise
    assert not SmallMapConv2d(8, 8, 7, padding=3, groups=8, stride=2)._is_dense(x)
    assert not SmallMapConv2d(8, 8, 7, padding=2, groups=8)._is_dense(x)  # not centred
    assert not SmallMapConv2d(8, 8, 3, padding=1, groups=8)._is_dense(torch.randn(2, 8, 2, 2))
    assert SmallMapConv2d(8, 8, 7, padding=3, groups=8)._is_dense(x)


def test_the_counted_cost_is_the_convolutions_on_every_path():
    """MACs (results' ``macs``) and MFU FLOPs count the conv, padding taps included, however
    the layer computes it; without ``plain_convolutions`` the dense path would read 16 of 49
    taps on a 4x4 map."""
    from experiments.run.cost import count_macs
    from modules.layers.small_map_conv import plain_convolutions

    ref, ours = _pair(7)
    assert count_macs(ours, (8, 4, 4)) == count_macs(ref, (8, 4, 4)) == 8 * 16 * 49
    with torch.utils.flop_counter.FlopCounterMode(display=False) as counter, torch.no_grad():
        ours(torch.zeros(1, 8, 4, 4))
    assert counter.get_total_flops() // 2 == 8 * 16 * 16  # the matmul's own count
    with plain_convolutions(), torch.no_grad():
        torch.testing.assert_close(ours(x := torch.randn(1, 8, 4, 4)), ref(x), rtol=0, atol=0)


def test_state_dict_is_conv2ds_and_no_padding_means_no_change():
    ref, ours = _pair(3, bias=False)
    assert list(ours.state_dict()) == list(ref.state_dict()) == ["weight"]
    plain = SmallMapConv2d(4, 4, 3, padding=0)
    assert not plain._pads_explicitly(torch.randn(1, 4, 2, 2))
    same = SmallMapConv2d(4, 4, 3, padding="same")
    assert not same._pads_explicitly(torch.randn(1, 4, 2, 2))
    assert same(torch.randn(1, 4, 2, 2)).shape == (1, 4, 2, 2)
