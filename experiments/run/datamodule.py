"""The LightningDataModule over :mod:`experiments.run.data`: one interface for every dataset.

Splits live in memory as uint8 tensors; augmentation (random crop with padding, horizontal
flip) and normalisation run as batched tensor ops *after* the batch reached the model's device
(``on_after_batch_transfer``).
"""

from __future__ import annotations

import lightning as L
import torch

from experiments.run.data import (
    DATASETS,
    LOADERS,
    STATS,
    DataConfig,
    DataSplitError,
    TensorLoader,
    adapt,
    carve,
    check_splits,
    random_crop_flip,
    resolve_val_size,
)


class ImageDataModule(L.LightningDataModule):
    """One interface for every dataset: in-memory splits, device-side augmentation."""

    def __init__(self, cfg: DataConfig | None = None, seed: int = 0, **overrides):
        super().__init__()
        cfg = cfg or DataConfig()
        for k, v in overrides.items():
            setattr(cfg, k, v)
        if cfg.name not in LOADERS:
            raise ValueError(f"data.name: unknown dataset {cfg.name!r}; allowed: {DATASETS}")
        self.cfg, self.seed = cfg, seed
        self.train = self.val = self.test = None
        self.num_classes: int | None = None

    def setup(self, stage: str | None = None) -> None:
        if self.train is not None:
            return
        cfg = self.cfg
        train, test, self.num_classes = LOADERS[cfg.name](cfg)
        check_splits(cfg, len(train))
        train.x = adapt(train.x, cfg.img_size, cfg.channels)
        test.x = adapt(test.x, cfg.img_size, cfg.channels)
        self.train, self.val = carve(
            train, resolve_val_size(cfg, len(train)), cfg.subset, cfg.split_seed, self.num_classes
        )
        if len(self.train) < cfg.batch_size:  # a per-class carve can leave fewer than asked
            raise DataSplitError(
                "subset",
                f"the training split has {len(self.train)} images, fewer than one batch of "
                f"{cfg.batch_size}",
            )
        self.test = test
        mean, std = STATS[cfg.name]
        ch = self.train.x.shape[1]
        if len(mean) != ch:  # channels converted: average or repeat the statistics
            mean, std = (sum(mean) / len(mean),) * ch, (sum(std) / len(std),) * ch
        self.mean = torch.tensor(mean).view(1, -1, 1, 1) * 255
        self.std = torch.tensor(std).view(1, -1, 1, 1) * 255

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return tuple(self.train.x.shape[1:])

    def _epoch(self) -> int:
        return self.trainer.current_epoch if self.trainer is not None else 0

    def train_dataloader(self) -> TensorLoader:
        epoch_fn = self._epoch if self.trainer is not None else None
        return TensorLoader(
            self.train, self.cfg.batch_size, shuffle=True, seed=self.seed, epoch_fn=epoch_fn
        )

    def val_dataloader(self) -> TensorLoader:
        return TensorLoader(self.val, self.cfg.eval_batch_size, shuffle=False)

    def test_dataloader(self) -> TensorLoader:
        return TensorLoader(self.test, self.cfg.eval_batch_size, shuffle=False)

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        mean, std = self.mean.to(x.device), self.std.to(x.device)
        return (x.float() - mean) / std

    def on_after_batch_transfer(self, batch, dataloader_idx: int):
        x, y = batch
        if self.trainer is not None and self.trainer.training:
            # the global RNG: its state is part of the checkpoint (see lit.py)
            x = random_crop_flip(x, self.cfg.crop_padding, self.cfg.flip)
        return self.normalize(x), y
