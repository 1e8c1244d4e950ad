"""on_meta: the fast meta build skips value-only init and nothing else."""

from __future__ import annotations

import pytest
import timm
import torch

import modules  # noqa: F401
from experiments.run.meta import on_meta


@pytest.mark.parametrize(
    "name", ["localvit_micro", "efficientmod_micro", "scalablevit_micro", "casvit_micro"]
)
def test_same_parameters_as_a_plain_meta_build(name):
    with torch.device("meta"):
        plain = timm.create_model(name, num_classes=10, in_chans=1)
    with on_meta():
        fast = timm.create_model(name, num_classes=10, in_chans=1)
    shapes = {k: (v.shape, v.dtype) for k, v in plain.state_dict().items()}
    assert shapes == {k: (v.shape, v.dtype) for k, v in fast.state_dict().items()}
    assert all(p.is_meta for p in fast.parameters())


def test_real_tensors_are_still_written():
    real = torch.full((4,), 5.0)
    with on_meta():
        real.clamp_(max=1.0)
        made = torch.empty(3)
    assert real.tolist() == [1.0] * 4 and made.is_meta
