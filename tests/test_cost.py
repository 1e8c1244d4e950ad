"""Cost measurement: MACs against counts by hand, throughput and memory positive."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from experiments.run.cost import PeakMemory, count_macs, count_params, inference_throughput


class SmallConv(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 16, 3, padding=1)
        self.dw = nn.Conv2d(16, 16, 3, padding=1, groups=16)
        self.fc = nn.Linear(16, 10)

    def forward(self, x):
        x = self.dw(self.conv(x))
        return self.fc(x.mean((2, 3)))


class SmallAttention(nn.Module):
    """One head-split attention layer on N tokens of width C, via SDPA."""

    def __init__(self, c=32, heads=4):
        super().__init__()
        self.qkv, self.proj, self.heads = nn.Linear(c, 3 * c), nn.Linear(c, c), heads

    def forward(self, x):  # x: (1, C, N, 1) to fit the (C, H, W) input convention
        x = x.flatten(2).transpose(1, 2)
        b, n, c = x.shape
        q, k, v = self.qkv(x).view(b, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        y = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(b, n, c)
        return self.proj(y)


def test_conv_macs_by_hand():
    hw = 8 * 8
    hand = hw * 16 * 3 * 9 + hw * 16 * 9 + 16 * 10
    assert count_macs(SmallConv(), (3, 8, 8)) == pytest.approx(hand, rel=0.05)


def test_attention_macs_by_hand_include_sdpa():
    n, c = 49, 32
    hand = n * c * 3 * c + 2 * n * n * c + n * c * c  # qkv, QK^T and AV, projection
    assert count_macs(SmallAttention(c), (c, n, 1)) == pytest.approx(hand, rel=0.05)


def test_params_throughput_memory_positive():
    model = SmallConv()
    assert count_params(model) == sum(p.numel() for p in model.parameters()) > 0
    assert inference_throughput(model, (3, 8, 8), batch_size=8, seconds=0.05) > 0
    with PeakMemory() as mem:
        torch.zeros(1000, 1000).sum()
    assert mem.mb > 0


def test_localvit_macs_count_the_ffn_its_forward_skips():
    """LocalViT's forward leaves out the last block's FFN (it cannot reach the logits); its
    MACs are still the architecture's, as the papers and the committed tables count them."""
    import timm

    import modules  # noqa: F401  (registers the models)

    model = timm.create_model("localvit_micro", num_classes=10, in_chans=1)
    avg = timm.create_model("localvit_micro", num_classes=10, in_chans=1, global_pool="avg")
    assert model.unreached_parameters() and not avg.unreached_parameters()
    macs = count_macs(model, (1, 28, 28))
    assert macs == count_macs(avg, (1, 28, 28))  # the same layers, none skipped
    assert macs == 36_725_952  # the committed tables' figure for localvit/layers, layers=all
    # DeiT: its forward computes the last block for the class token alone; the MACs are still
    # every token's
    assert count_macs(timm.create_model("deit_micro"), (1, 28, 28)) == 36_133_824
