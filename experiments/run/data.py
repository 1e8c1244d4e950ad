"""Datasets as in-memory uint8 tensors: configuration, loaders, splits, batches, augmentation.

Small vision datasets (Fashion-MNIST, CIFAR) fit in memory many times over, so they are loaded
once as uint8 tensors, batches are sliced out of them without a per-sample Python loop, and the
augmentation (random crop with padding, horizontal flip) and normalisation run as batched
tensor ops *after* the batch reached the model's device (``on_after_batch_transfer``).

Every dataset is chosen by name (``DataConfig.name``) and yields the same split shapes:
a validation split carved from the official training split with a fixed seed, an optional
balanced per-class training subset, and the official test split. Lightning is not imported
here (spec checks use this file); the LightningDataModule is ``experiments.run.datamodule``.
"""

from __future__ import annotations

import gzip
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

DATASETS = ("fashion_mnist", "cifar10", "cifar100", "imagefolder", "synthetic")
DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")
CACHE_DIR = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "hybrid-vit-ablations"

# Per-dataset channel statistics of the training split (0-1 scale).
STATS = {
    "fashion_mnist": ((0.2860,), (0.3530,)),
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    "cifar100": ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
    "imagefolder": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
    "synthetic": ((0.5,), (0.25,)),
}


class DatasetNotFound(FileNotFoundError):
    """Raised with one message: where we looked and how to get the data."""


class DataSplitError(ValueError):
    """The splits a config asks for do not fit the dataset (e.g. an empty training split)."""

    def __init__(self, key: str, problem: str):
        self.key, self.problem = key, problem
        super().__init__(f"data.{key}: {problem}")


@dataclass(frozen=True)
class DataInfo:
    """What a model and a split check need to know about a dataset, without loading it.

    ``train_size`` is the size of the official training split (None when only loading tells,
    as for an ImageFolder tree that is not there). ``num_classes`` is None when unknown.
    """

    channels: int
    size: int
    num_classes: int | None
    train_size: int | None


# name -> (channels, size, classes, training images) of the native data
NATIVE = {
    "fashion_mnist": (1, 28, 10, 60000),
    "cifar10": (3, 32, 10, 50000),
    "cifar100": (3, 32, 100, 50000),
}


def data_info(cfg: DataConfig) -> DataInfo:
    """The input shape (after ``img_size``/``channels``), classes and training-split size."""
    if cfg.name == "synthetic":
        ch, size, classes, n = (
            cfg.channels or 1,
            cfg.synthetic_size,
            cfg.num_classes,
            cfg.synthetic_train,
        )
    elif cfg.name == "imagefolder":
        train = Path(cfg.root) / "train" if cfg.root else None
        if train is not None and train.is_dir():
            folders = [d for d in train.iterdir() if d.is_dir()]
            classes = len(folders)
            n = sum(1 for d in folders for f in d.iterdir() if f.is_file())
        else:
            classes = n = None
        ch, size = 3, 64
    else:
        ch, size, classes, n = NATIVE[cfg.name]
    return DataInfo(cfg.channels or ch, cfg.img_size or size, classes, n)


def resolve_val_size(cfg: DataConfig, train_size: int | None) -> int:
    """``val_size`` as given, or the automatic one (5000, at most a tenth of the training split)."""
    if cfg.val_size is not None:
        return cfg.val_size
    return 5000 if train_size is None else min(5000, train_size // 10)


def check_splits(cfg: DataConfig, train_size: int | None) -> None:
    """Refuse splits that cannot train: validation or subset larger than the data, or fewer
    training images than one batch. Raises :class:`DataSplitError` naming the key."""
    if train_size is None:
        return
    val = resolve_val_size(cfg, train_size)
    if val < 0 or val >= train_size:
        raise DataSplitError(
            "val_size",
            f"got {val}; allowed: an integer in [0, {train_size}) "
            f"({cfg.name} has {train_size} training images)",
        )
    left = train_size - val
    if cfg.subset is not None and cfg.subset > left:
        raise DataSplitError(
            "subset",
            f"got {cfg.subset}; allowed: at most {left} "
            f"({train_size} training images less val_size {val})",
        )
    n = left if cfg.subset is None else cfg.subset
    if n < cfg.batch_size:
        raise DataSplitError(
            "batch_size" if cfg.subset is None else "subset",
            f"the training split has {n} images, fewer than one batch of {cfg.batch_size}; "
            "lower val_size or batch_size, or raise subset",
        )


@dataclass
class DataConfig:
    """What data a run trains on; every field is a key under ``data:`` in a grid spec."""

    name: str = "fashion_mnist"
    root: str | None = None  # where the files are (else: DATA_DIR, system copy, cache)
    download: bool = False  # allow torchvision to download (never in tests or defaults)
    subset: int | None = None  # training images, balanced over classes (None = all)
    val_size: int | None = None  # validation images carved from the training split
    # (None = auto: 5000, or a tenth of the training split when that is smaller)
    split_seed: int = 0  # seed of the train/val carve and of the subset
    img_size: int | None = None  # resize to this (None = native)
    channels: int | None = None  # 1 or 3 (None = native)
    batch_size: int = 128
    eval_batch_size: int = 512
    crop_padding: int = 2  # random crop with this padding (0 = off)
    flip: bool = True  # random horizontal flip
    # synthetic data only
    num_classes: int = 10
    synthetic_train: int = 2000
    synthetic_test: int = 500
    synthetic_size: int = 16
    extra: dict = field(default_factory=dict)  # reserved for user datasets


@dataclass
class Split:
    """Images (N, C, H, W) uint8 and labels (N,) int64."""

    x: torch.Tensor
    y: torch.Tensor

    def __len__(self) -> int:
        return len(self.y)


# ----------------------------------------------------------------------------- sources
def _read_idx(path: Path) -> np.ndarray:
    """Read an IDX file (the MNIST format), gzipped or not."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        data = f.read()
    ndim = data[3]
    dims = [int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def fashion_mnist_dirs(root: str | None) -> list[Path]:
    """Where Fashion-MNIST is looked for, in order."""
    dirs = [Path(root)] if root else []
    if os.environ.get("DATA_DIR"):
        dirs.append(Path(os.environ["DATA_DIR"]) / "fashion-mnist")
    dirs += [DEBIAN_FASHION_MNIST, CACHE_DIR / "fashion-mnist"]
    # torchvision's download layout under each of them
    return dirs + [d / "FashionMNIST" / "raw" for d in dirs]


def _find_idx(dirs: list[Path], stem: str) -> Path | None:
    for d in dirs:
        for suffix in ("", ".gz"):
            if (d / (stem + suffix)).is_file():
                return d / (stem + suffix)
    return None


def load_fashion_mnist(cfg: DataConfig) -> tuple[Split, Split, int]:
    dirs = fashion_mnist_dirs(cfg.root)
    if _find_idx(dirs, "train-images-idx3-ubyte") is None and cfg.download:
        import torchvision

        target = Path(cfg.root or os.environ.get("DATA_DIR") or CACHE_DIR) / "fashion-mnist"
        torchvision.datasets.FashionMNIST(str(target), train=True, download=True)
        torchvision.datasets.FashionMNIST(str(target), train=False, download=True)
    files = {
        s: _find_idx(dirs, s)
        for s in (
            "train-images-idx3-ubyte",
            "train-labels-idx1-ubyte",
            "t10k-images-idx3-ubyte",
            "t10k-labels-idx1-ubyte",
        )
    }
    if any(p is None for p in files.values()):
        raise DatasetNotFound(
            "Fashion-MNIST not found; looked in: "
            + ", ".join(str(d) for d in dirs)
            + ". Get it with `make data` (Debian package dataset-fashion-mnist, or a download "
            "into the cache), or pass data.root / set DATA_DIR, or data.download=true."
        )

    def split(images: str, labels: str) -> Split:
        x = torch.from_numpy(_read_idx(files[images]).copy()).unsqueeze(1)
        y = torch.from_numpy(_read_idx(files[labels]).astype(np.int64))
        return Split(x, y)

    train = split("train-images-idx3-ubyte", "train-labels-idx1-ubyte")
    test = split("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
    return train, test, 10


def load_cifar(cfg: DataConfig) -> tuple[Split, Split, int]:
    import torchvision

    cls = torchvision.datasets.CIFAR10 if cfg.name == "cifar10" else torchvision.datasets.CIFAR100
    root = Path(cfg.root or os.environ.get("DATA_DIR") or CACHE_DIR) / cfg.name
    try:
        sets = [cls(str(root), train=t, download=cfg.download) for t in (True, False)]
    except RuntimeError as err:  # torchvision: "Dataset not found or corrupted"
        raise DatasetNotFound(
            f"{cfg.name} not found in {root} ({err}). Pass data.download=true to let "
            "torchvision download it, or data.root / DATA_DIR pointing at an existing copy."
        ) from None

    def split(ds) -> Split:
        x = torch.from_numpy(np.asarray(ds.data)).permute(0, 3, 1, 2).contiguous()
        return Split(x, torch.as_tensor(ds.targets, dtype=torch.int64))

    return split(sets[0]), split(sets[1]), 10 if cfg.name == "cifar10" else 100


def load_imagefolder(cfg: DataConfig) -> tuple[Split, Split, int]:
    """An ImageNet-style tree ``root/{train,val}/<class>/<image>``, decoded once into memory.

    Images are resized (shorter side) and centre-cropped to ``img_size`` (default 64) when
    loaded, so this suits small trees (Imagenette-like); larger ones need a streaming loader.
    """
    import torchvision
    from torchvision.transforms import v2

    root = Path(cfg.root or os.environ.get("DATA_DIR") or "")
    if not cfg.root or not (root / "train").is_dir():
        raise DatasetNotFound(
            f"imagefolder needs data.root with train/ and val/ (or test/) class folders; "
            f"looked in {root / 'train'}."
        )
    size = cfg.img_size or 64
    tf = v2.Compose([v2.ToImage(), v2.Resize(size, antialias=True), v2.CenterCrop(size)])
    test_dir = root / "val" if (root / "val").is_dir() else root / "test"

    def split(d: Path, classes: list[str] | None = None) -> tuple[Split, list[str]]:
        ds = torchvision.datasets.ImageFolder(str(d), transform=tf)
        if classes is not None and ds.classes != classes:
            raise DatasetNotFound(f"class folders of {d} differ from those of {root / 'train'}")
        xs = [ds[i][0] for i in range(len(ds))]
        x = torch.stack([img if img.shape[0] == 3 else img.expand(3, -1, -1) for img in xs])
        return Split(x.to(torch.uint8), torch.as_tensor(ds.targets, dtype=torch.int64)), ds.classes

    train, classes = split(root / "train")
    test, _ = split(test_dir, classes)
    return train, test, len(classes)


def load_synthetic(cfg: DataConfig) -> tuple[Split, Split, int]:
    """A deterministic, learnable task: each class is a smooth prototype image plus noise.

    Prototypes are mirror-symmetric, so the horizontal flip augmentation keeps labels.
    """
    g = torch.Generator().manual_seed(1234)
    c, s, k = cfg.channels or 1, cfg.synthetic_size, cfg.num_classes
    protos = F.interpolate(torch.rand(k, c, 4, 4, generator=g), size=(s, s), mode="bilinear")
    protos = (protos + protos.flip(-1)) / 2

    def make(n: int) -> Split:
        y = torch.arange(n) % k
        x = protos[y] * 200 + torch.randn(n, c, s, s, generator=g) * 40
        return Split(x.clamp(0, 255).to(torch.uint8), y)

    return make(cfg.synthetic_train), make(cfg.synthetic_test), k


LOADERS = {
    "fashion_mnist": load_fashion_mnist,
    "cifar10": load_cifar,
    "cifar100": load_cifar,
    "imagefolder": load_imagefolder,
    "synthetic": load_synthetic,
}


# ----------------------------------------------------------------------------- splits
def _carve_indices(split: Split, val_size: int, subset: int | None, seed: int, num_classes: int):
    """Per class, a fixed-seed permutation cut into validation, training and the rest."""
    g = torch.Generator().manual_seed(seed)
    per_val = val_size // num_classes
    per_train = None if subset is None else subset // num_classes
    train_idx, val_idx, rest_idx = [], [], []
    for cls in range(num_classes):
        idx = (split.y == cls).nonzero().squeeze(1)
        idx = idx[torch.randperm(len(idx), generator=g)]
        val_idx.append(idx[:per_val])
        rest = idx[per_val:]
        train_idx.append(rest if per_train is None else rest[:per_train])
        rest_idx.append(rest[len(train_idx[-1]) :])
    return train_idx, val_idx, rest_idx


def carve(split: Split, val_size: int, subset: int | None, seed: int, num_classes: int):
    """Balanced per-class train/val carve with a fixed seed: (train, val)."""
    train_idx, val_idx, _ = _carve_indices(split, val_size, subset, seed, num_classes)
    t, v = torch.cat(train_idx).sort().values, torch.cat(val_idx).sort().values
    return Split(split.x[t], split.y[t]), Split(split.x[v], split.y[v])


def holdout(
    split: Split, val_size: int, subset: int | None, seed: int, num_classes: int, size: int
) -> Split:
    """Training-split images that neither ``carve`` split uses, ``size // num_classes`` a class.

    Why: with a ``subset``, most of the training split is never seen, and it is drawn from
    the same distribution as the test split, so it can measure a trained model's accuracy on
    many more images than the test split holds (``experiments.tools.test_set_noise``).
    """
    _, _, rest_idx = _carve_indices(split, val_size, subset, seed, num_classes)
    per = size // num_classes
    short = min(len(r) for r in rest_idx)
    if per > short:
        raise DataSplitError(
            "subset", f"a holdout of {size} needs {per} unused images a class; {short} are left"
        )
    h = torch.cat([r[:per] for r in rest_idx]).sort().values
    return Split(split.x[h], split.y[h])


def adapt(x: torch.Tensor, img_size: int | None, channels: int | None) -> torch.Tensor:
    """Resize and convert channels once, at load time, keeping uint8."""
    if channels is not None and channels != x.shape[1]:
        if channels == 3 and x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1).contiguous()
        elif channels == 1 and x.shape[1] == 3:
            w = torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)
            x = (x.float() * w).sum(1, keepdim=True).round().to(torch.uint8)
        else:
            raise ValueError(f"data.channels: cannot convert {x.shape[1]} to {channels} channels")
    if img_size is not None and img_size != x.shape[-1]:
        chunks = [
            F.interpolate(c.float(), size=(img_size, img_size), mode="bilinear", antialias=True)
            for c in x.split(4096)
        ]
        x = torch.cat(chunks).round().clamp(0, 255).to(torch.uint8)
    return x


# ----------------------------------------------------------------------------- batches
class TensorLoader:
    """Iterates over (images, labels) batches sliced from in-memory tensors.

    Shuffling uses its own generator seeded with ``seed + epoch``, so the same seed gives the
    same order in every run, independently of the global RNG. ``epoch`` is read from the
    trainer when one is given (``epoch_fn``), so a run resumed in a new process shuffles its
    remaining epochs exactly as the uninterrupted run did; without it the loader counts.
    """

    def __init__(self, split: Split, batch_size: int, shuffle: bool, seed: int = 0, epoch_fn=None):
        self.split, self.batch_size, self.shuffle, self.seed = split, batch_size, shuffle, seed
        self.epoch, self.epoch_fn = 0, epoch_fn

    def __len__(self) -> int:
        return -(-len(self.split) // self.batch_size)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        n = len(self.split)
        if self.shuffle:
            epoch = self.epoch_fn() if self.epoch_fn is not None else self.epoch
            g = torch.Generator().manual_seed(self.seed + epoch)
            order = torch.randperm(n, generator=g)
            self.epoch = epoch + 1
            for i in range(0, n, self.batch_size):
                idx = order[i : i + self.batch_size]
                yield self.split.x[idx], self.split.y[idx]
        else:
            for i in range(0, n, self.batch_size):
                yield self.split.x[i : i + self.batch_size], self.split.y[i : i + self.batch_size]


def random_crop_flip(x: torch.Tensor, padding: int, flip: bool, generator=None) -> torch.Tensor:
    """Per-sample random crop (zero padding) and horizontal flip, as batched tensor ops."""
    b, c, h, w = x.shape
    if padding > 0:
        padded = F.pad(x, (padding,) * 4)
        dy = torch.randint(0, 2 * padding + 1, (b,), device=x.device, generator=generator)
        dx = torch.randint(0, 2 * padding + 1, (b,), device=x.device, generator=generator)
        rows = (dy[:, None] + torch.arange(h, device=x.device))[:, None, :, None]
        cols = (dx[:, None] + torch.arange(w, device=x.device))[:, None, None, :]
        bi = torch.arange(b, device=x.device)[:, None, None, None]
        ci = torch.arange(c, device=x.device)[None, :, None, None]
        x = padded[bi, ci, rows, cols]
    if flip:
        mask = torch.rand(b, device=x.device, generator=generator) < 0.5
        x = torch.where(mask[:, None, None, None], x.flip(-1), x)
    return x
