"""BatchNorm folded for evaluation: the same logits, fewer BatchNorms, the trained network left
alone, and validation and the test actually evaluating the folded copy."""

from __future__ import annotations

import copy

import pytest
import timm
import torch
from torch import nn

import modules  # noqa: F401  (registers the models)
from experiments.run.identity import run_id
from experiments.run.train import train_run
from modules.layers.bn_folding import fold_into_next, fold_into_previous, folded_copy


def batchnorms(net: nn.Module) -> int:
    return sum(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in net.modules())


def with_random_statistics(net: nn.Module) -> nn.Module:
    """Statistics and affine parameters far from their initial (identity) values, so a fold
    that dropped a term would show in the logits."""
    g = torch.Generator().manual_seed(0)
    for m in net.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.running_mean.copy_(torch.rand(m.num_features, generator=g) * 2 - 1)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) * 1.5 + 0.5)
            m.weight.data.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.bias.data.copy_(torch.rand(m.num_features, generator=g) - 0.5)
    return net


# (model, toggles, BatchNorms left after folding: those no layer beside them can absorb)
CASES = [
    ("localvit_micro", {}, 0),
    ("localvit_micro", {"ffn": "conv1x1"}, 0),
    ("localvit_micro", {"se": "none", "kernel_size": 5}, 0),
    # CAS-ViT: the final norm stays; with the pool mixer each block's mixer pre-norm too
    ("casvit_micro", {}, 1),
    ("casvit_micro", {"mixer": "attention"}, 1),
    ("casvit_micro", {"fusion": "concat", "phi_on": "q", "proj": "dw3x3"}, 1),
    ("casvit_micro", {"mixer": "pool", "local": False}, None),
    ("efficientmod_micro", {"norm": "batchnorm"}, None),
    ("efficientmod_micro", {"block": "mbconv"}, 0),  # timm's InvertedResidual: BN + act
]


@pytest.mark.parametrize(("name", "toggles", "left"), CASES)
def test_folded_copy_gives_the_same_logits_with_fewer_batchnorms(name, toggles, left):
    net = with_random_statistics(timm.create_model(name, num_classes=10, in_chans=1, **toggles))
    net.train()
    before = copy.deepcopy(net.state_dict())
    folded = folded_copy(net)
    x = torch.randn(8, 1, 28, 28)
    with torch.inference_mode():
        expected = net.eval()(x)
        got = folded(x)
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5)
    if left is not None:
        assert batchnorms(folded) == left
    if toggles.get("mixer") == "pool":
        blocks = sum(1 for m in net.modules() if type(m).__name__ == "CASViTBlock")
        assert batchnorms(folded) == blocks + 1 < batchnorms(net)
    # the trained network is untouched: same weights and buffers, same BatchNorm count
    after = net.state_dict()
    assert before.keys() == after.keys()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert not folded.training


def test_fold_into_next_is_exact_for_a_1x1_conv_and_refuses_a_padded_one():
    bn = with_random_statistics(nn.Sequential(nn.BatchNorm2d(6))).eval()[0]
    conv = nn.Conv2d(6, 4, 1)
    x = torch.randn(2, 6, 5, 5)
    with torch.no_grad():
        torch.testing.assert_close(fold_into_next(bn, conv)(x), conv(bn(x)))
        linear = nn.Linear(6, 4, bias=False)
        tokens = torch.randn(3, 6)
        bn1d = with_random_statistics(nn.Sequential(nn.BatchNorm1d(6))).eval()[0]
        torch.testing.assert_close(fold_into_next(bn1d, linear)(tokens), linear(bn1d(tokens)))
    with pytest.raises(ValueError, match="1x1"):
        fold_into_next(bn, nn.Conv2d(6, 4, 3, padding=1))
    with pytest.raises(ValueError, match="eval"):
        fold_into_next(bn.train(), conv)


def test_fold_into_previous_keeps_the_layer_class():
    from modules.layers.small_map_conv import SmallMapConv2d

    conv = SmallMapConv2d(4, 4, 3, padding=1, groups=4, bias=False).eval()
    bn = with_random_statistics(nn.Sequential(nn.BatchNorm2d(4))).eval()[0]
    folded = fold_into_previous(conv, bn)
    assert type(folded) is SmallMapConv2d and folded.bias is not None
    x = torch.randn(2, 4, 2, 2)  # a map smaller than the kernel: the class's own path
    with torch.no_grad():
        torch.testing.assert_close(folded(x), bn(conv(x)), rtol=1e-5, atol=1e-6)


BN_MODEL = {"name": "localvit_micro", "embed_dim": 48, "depth": 2, "heads": 2}  # BatchNorm FFNs
SMALL = {"name": "synthetic", "synthetic_train": 96, "val_size": 32, "batch_size": 32}


def test_validation_and_test_evaluate_the_folded_copy(monkeypatch):
    """One fold per validation and one for the test, each of the network as evaluated; with
    ``fold_bn: false`` none; the training itself is the same either way; and the option does
    not change a run's id (it changes the rounding of evaluation only)."""
    folds = []

    def spy(net):
        folds.append(batchnorms(net))
        return folded_copy(net)

    monkeypatch.setattr("experiments.run.lit.folded_copy", spy)
    train = {"steps": 6, "bench_seconds": 0.01, "collapse_gap": 100.0}
    on = train_run(BN_MODEL, SMALL, train, progress=False, measure_cost=False)
    assert len(folds) == on["epochs_run"] + 1 and all(n > 0 for n in folds)
    folds.clear()
    off = train_run(
        BN_MODEL, SMALL, {**train, "fold_bn": False}, progress=False, measure_cost=False
    )
    assert folds == []
    assert [e["train_loss"] for e in on["epochs"]] == [e["train_loss"] for e in off["epochs"]]
    assert on["val_top1"] == pytest.approx(off["val_top1"], abs=1 / 32 + 1e-9)
    assert on["epochs"][-1]["val_loss"] == pytest.approx(off["epochs"][-1]["val_loss"], rel=1e-4)
    config = {"model": BN_MODEL, "data": SMALL, "train": train}
    assert run_id(config, 0) == run_id({**config, "train": {**train, "fold_bn": False}}, 0)


def test_models_without_batchnorm_are_evaluated_as_they_are(monkeypatch):
    monkeypatch.setattr(
        "experiments.run.lit.folded_copy", lambda net: pytest.fail("folded a LayerNorm model")
    )
    micro = {"name": "deit_micro", "embed_dim": 48, "depth": 2, "heads": 2, "patch_size": 4}
    result = train_run(micro, SMALL, {"steps": 3, "bench_seconds": 0.01}, progress=False,
                       measure_cost=False)  # fmt: skip
    assert result["status"] == "ok"
