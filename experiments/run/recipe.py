"""The recipe of a run (``train:`` in a grid spec) as a typed dataclass, free of Lightning so
that spec checks and run ids do not import it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch


@dataclass
class TrainConfig:
    """The recipe of a run; every field is a key under ``train:`` in a grid spec."""

    epochs: int = 3
    # the budget in optimizer steps (None: whole epochs); epochs then follow from the dataset,
    # ceil(steps / batches per epoch), the last one partial, so a small dataset still trains
    steps: int | None = None
    # multiplies the budget a profile gives (its steps, else its epochs), so a calibration
    # grid can say "twice the profile's budget" at any profile; resolved on construction
    # (``scaled_budget``), after which it reads 1.0 and steps or epochs hold the product
    budget_scale: float = 1.0
    # at most this many epochs between validations; the last epoch is always validated (the
    # interval used is the largest divisor of the epoch count not above this)
    val_every: int = 1
    lr: float = 2e-3
    weight_decay: float = 0.05
    warmup_epochs: float = 0.5
    min_lr_ratio: float = 0.01  # cosine decays to lr * min_lr_ratio
    label_smoothing: float = 0.1
    mixup: float = 0.0  # mixup alpha (0 = off)
    cutmix: float = 0.0  # CutMix alpha (0 = off)
    grad_clip: float | None = 5.0
    ema_decay: float | None = None  # e.g. 0.999; evaluation then uses the EMA weights
    drop_path: float = 0.0
    precision: str = "auto"  # auto: bf16-mixed on GPU, 32-true on CPU
    channels_last: str = "auto"  # auto: on for GPU, off on CPU; or "on"/"off"
    compile: bool = False
    deterministic: bool = False
    accelerator: str = "auto"
    limit_train_batches: float | int | None = None  # for smoke tests
    # BatchNorm running statistics recomputed over this many training batches before every
    # validation and the test (precise BN; 0 = off); models without BatchNorm are unaffected
    precise_bn: int = 0
    # validation and the test run on a copy of the evaluated network with each BatchNorm
    # folded into the conv beside it (``modules.layers.bn_folding``): the same function up to
    # float rounding, one pass fewer per BatchNorm; false evaluates the network as it trains
    fold_bn: bool = True
    # a run whose final val top-1 is this many pp below its train top-1 is flagged "collapsed"
    collapse_gap: float = 40.0
    # how long inference throughput is timed after training (0 = not timed: grids take speed
    # from `make bench`, measured in isolation, not from runs that share the machine)
    bench_seconds: float = 1.0
    inject_nan_at_step: int | None = None  # fault injection: turn the loss into NaN

    def __post_init__(self) -> None:
        if self.budget_scale != 1.0:
            scaled = scaled_budget(vars(self))
            self.steps, self.epochs = scaled.get("steps"), scaled["epochs"]
            self.budget_scale = 1.0


def scaled_budget(train: dict) -> dict:
    """``train:`` with ``budget_scale`` applied: ``steps`` (when set) or ``epochs`` multiplied
    and rounded (at least 1), the scale itself dropped. A run's table then shows the budget it
    trained, and its id is that of the same budget written out."""
    out = dict(train)
    scale = out.pop("budget_scale", 1.0)
    if scale == 1.0:
        return out
    if out.get("steps") is not None:
        out["steps"] = max(1, round(out["steps"] * scale))
    else:
        out["epochs"] = max(1, round(out.get("epochs", TrainConfig.epochs) * scale))
    return out


def fused_adamw_ok(model: torch.nn.Module) -> bool:
    """Fused AdamW (one vectorised kernel per parameter) where the parameters' device has it.

    Why: the default on CPU is the per-tensor loop (about ten elementwise ops per parameter);
    fused is 4-5x faster, 1.5-4% of a micro model's CPU training step
    (``bench --only optimizer``), and gives the same update up to float rounding.
    """
    return all(p.device.type in ("cpu", "cuda") for p in model.parameters())
