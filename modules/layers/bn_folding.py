"""BatchNorm folded into the linear layer beside it, for evaluation.

In evaluation a BatchNorm is a fixed per-channel affine map, so the conv or linear layer just
before it absorbs it exactly, and so does a 1x1 conv just after it (no padding there sees the
BatchNorm's shift; a padded k x k conv after it would not be exact at the borders). Each fold
removes one pass over the activations: on CPU, where the micro models' steps are bound by such
passes, LocalViT's evaluation runs 1.16-1.18x as fast and CAS-ViT's 1.06-1.07x (micro models,
batch 128, one thread; ``python -m experiments bench --only eval-fold``). The function is the
same up to float rounding: logits agree to about 2e-7.

A module with such pairs says so by a ``fold_batchnorm()`` method that folds them in place;
``folded_copy`` calls it on every module of a copy of the network. (Not timm's
``reparameterize_model``: it calls any child's ``fuse`` attribute, and CAS-ViT's token mixer
has a ``fuse`` conv.)
"""

from __future__ import annotations

import copy

import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval, fuse_linear_bn_eval

Affine = nn.Conv2d | nn.Linear


def fold_into_previous(layer: Affine, bn: nn.modules.batchnorm._BatchNorm) -> Affine:
    """``layer`` then ``bn`` (in eval) as one layer of ``layer``'s class (a bias added)."""
    if isinstance(layer, nn.Conv2d):
        return fuse_conv_bn_eval(layer, bn)
    return fuse_linear_bn_eval(layer, bn)


def fold_into_next(bn: nn.modules.batchnorm._BatchNorm, layer: Affine) -> Affine:
    """``bn`` (in eval) then a 1x1 conv or linear ``layer`` as one layer: the weight scaled
    per input channel, the BatchNorm's shift carried through the weight into the bias."""
    if isinstance(layer, nn.Conv2d) and (
        layer.kernel_size != (1, 1) or layer.groups != 1 or layer.stride != (1, 1)
    ):
        raise ValueError("a BatchNorm folds exactly into the next layer only if it is a 1x1 conv")
    if bn.training or bn.running_mean is None or bn.running_var is None:
        raise ValueError("fold a BatchNorm in eval mode, with running statistics")
    with torch.no_grad():
        scale = torch.rsqrt(bn.running_var + bn.eps)
        shift = -bn.running_mean * scale
        if bn.affine:
            scale, shift = scale * bn.weight, shift * bn.weight + bn.bias
        weight = layer.weight.flatten(1)  # (out, in)
        bias = weight @ shift + (layer.bias if layer.bias is not None else 0)
        folded = copy.deepcopy(layer)
        folded.weight = nn.Parameter(
            (weight * scale).view_as(layer.weight), layer.weight.requires_grad
        )
        folded.bias = nn.Parameter(bias, layer.weight.requires_grad)
    return folded


def has_batchnorm(model: nn.Module) -> bool:
    return any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())


def folded_copy(model: nn.Module) -> nn.Module:
    """A copy of ``model`` in eval mode with every BatchNorm its modules know how to fold
    folded (``fold_batchnorm()``); ``model`` itself is left as it was."""
    # normal tensors even when called under inference mode (evaluation hooks run there)
    with torch.inference_mode(False), torch.no_grad():
        net = copy.deepcopy(model).eval()
        for module in list(net.modules()):
            if hasattr(module, "fold_batchnorm"):
                module.fold_batchnorm()
    return net
