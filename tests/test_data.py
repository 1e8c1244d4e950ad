"""The data module: shapes, dtypes, splits, determinism, augmentation, missing data."""

from __future__ import annotations

import pytest
import torch

from experiments.run.data import (
    DataConfig,
    DatasetNotFound,
    DataSplitError,
    TensorLoader,
    carve,
    holdout,
    load_fashion_mnist,
    random_crop_flip,
)
from experiments.run.datamodule import ImageDataModule


def make(tiny_root, **kw) -> ImageDataModule:
    dm = ImageDataModule(DataConfig(name="fashion_mnist", root=str(tiny_root), val_size=100, **kw))
    dm.setup()
    return dm


def test_fashion_mnist_shapes_dtypes_and_splits(tiny_fashion_mnist):
    dm = make(tiny_fashion_mnist)
    assert dm.train.x.dtype == torch.uint8 and dm.train.y.dtype == torch.int64
    assert dm.train.x.shape == (500, 1, 28, 28)
    assert len(dm.val) == 100 and len(dm.test) == 200
    # the validation split is balanced and disjoint from the training split
    assert torch.bincount(dm.val.y).tolist() == [10] * 10
    train_rows = {bytes(r.numpy()) for r in dm.train.x.flatten(1)}
    assert not any(bytes(r.numpy()) in train_rows for r in dm.val.x.flatten(1))


def test_balanced_subset_size_and_channels(tiny_fashion_mnist):
    dm = make(tiny_fashion_mnist, subset=200, img_size=32, channels=3)
    assert dm.train.x.shape == (200, 3, 32, 32)
    assert torch.bincount(dm.train.y).tolist() == [20] * 10
    x, y = next(iter(dm.train_dataloader()))
    assert dm.normalize(x).shape == (128, 3, 32, 32)


def test_holdout_is_balanced_unused_training_images(tiny_fashion_mnist):
    cfg = DataConfig(name="fashion_mnist", root=str(tiny_fashion_mnist))
    train, _, k = load_fashion_mnist(cfg)
    tr, va = carve(train, 100, 200, 0, k)
    held = holdout(train, 100, 200, 0, k, 250)
    assert torch.bincount(held.y).tolist() == [25] * 10
    seen = {bytes(r.numpy()) for r in torch.cat([tr.x, va.x]).flatten(1)}
    assert not any(bytes(r.numpy()) in seen for r in held.x.flatten(1))
    # the same carve, whatever the holdout asks: a holdout never changes what a run trains on
    tr2, _ = carve(train, 100, 200, 0, k)
    assert torch.equal(tr.x, tr2.x)
    with pytest.raises(DataSplitError, match="needs 31 unused images a class; 30 are left"):
        holdout(train, 100, 200, 0, k, 310)


def test_same_seed_same_split_and_order(tiny_fashion_mnist):
    a, b = make(tiny_fashion_mnist, split_seed=3), make(tiny_fashion_mnist, split_seed=3)
    c = make(tiny_fashion_mnist, split_seed=4)
    assert torch.equal(a.val.x, b.val.x) and not torch.equal(a.val.x, c.val.x)
    la, lb = TensorLoader(a.train, 64, True, seed=7), TensorLoader(b.train, 64, True, seed=7)
    assert all(torch.equal(ya, yb) for (_, ya), (_, yb) in zip(la, lb, strict=True))
    other = next(iter(TensorLoader(a.train, 64, True, seed=8)))[1]
    assert not torch.equal(next(iter(TensorLoader(a.train, 64, True, seed=7)))[1], other)


def test_augmentation_keeps_labels_shape_and_content(tiny_fashion_mnist):
    dm = make(tiny_fashion_mnist)
    x, y = dm.train.x[:64], dm.train.y[:64]
    g = torch.Generator().manual_seed(0)
    out = random_crop_flip(x, padding=2, flip=True, generator=g)
    assert out.shape == x.shape and out.dtype == x.dtype
    assert not torch.equal(out, x)  # something moved
    # a crop of 2 px can shift the band of class k by at most 2 rows: labels still readable
    band = out.float().mean(-1).squeeze(1).argmax(-1)
    assert ((band - (2 + 2 * y)).abs() <= 3).all()
    # no padding and no flip is the identity
    assert torch.equal(random_crop_flip(x, 0, False), x)


def test_synthetic_is_deterministic():
    a = ImageDataModule(DataConfig(name="synthetic", val_size=100))
    b = ImageDataModule(DataConfig(name="synthetic", val_size=100))
    a.setup(), b.setup()
    assert torch.equal(a.train.x, b.train.x) and a.num_classes == 10


def test_missing_dataset_message(tmp_path, monkeypatch):
    monkeypatch.setenv("DATA_DIR", str(tmp_path / "nowhere"))
    monkeypatch.setattr("experiments.run.data.DEBIAN_FASHION_MNIST", tmp_path / "no-debian")
    monkeypatch.setattr("experiments.run.data.CACHE_DIR", tmp_path / "no-cache")
    dm = ImageDataModule(DataConfig(name="fashion_mnist", root=str(tmp_path / "empty")))
    with pytest.raises(DatasetNotFound) as err:
        dm.setup()
    msg = str(err.value)
    assert "looked in" in msg and str(tmp_path / "empty") in msg and "make data" in msg


def test_unknown_dataset_refused():
    with pytest.raises(ValueError, match="allowed"):
        ImageDataModule(DataConfig(name="mnist3d"))
