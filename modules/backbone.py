"""What the four paper backbones share: a typed config whose toggles are the run identity, and
timm's classifier API over a linear head on ``num_features``."""

from __future__ import annotations

from typing import Any

from torch import nn


def linear_head(num_features: int, num_classes: int) -> nn.Module:
    """The classifier: a linear layer, or the identity for ``num_classes=0`` (features out)."""
    return nn.Linear(num_features, num_classes) if num_classes > 0 else nn.Identity()


class ToggleableBackbone(nn.Module):
    """Base of the paper backbones. A subclass sets ``cfg`` (its config dataclass, with a
    ``toggles()`` method), ``num_features``, ``num_classes`` and ``head``."""

    cfg: Any
    num_features: int
    num_classes: int
    head: nn.Module

    def toggles(self) -> dict:
        """The run identity: every constructor toggle, inert ones None (see the config)."""
        return self.cfg.toggles()

    def unreached_parameters(self) -> list[nn.Parameter]:
        """Parameters ``forward`` leaves out because they cannot reach its output (their
        gradient would be exactly zero); training gives them zero gradients, so the optimizer
        and gradient clipping see what the full computation gives. Empty by default."""
        return []

    def get_classifier(self) -> nn.Module:
        return self.head

    def reset_classifier(self, num_classes: int, global_pool: str | None = None) -> None:
        self.num_classes = num_classes
        self.head = linear_head(self.num_features, num_classes)
