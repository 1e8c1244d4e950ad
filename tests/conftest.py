"""Shared fixtures: an isolated runs/results folder and a tiny Fashion-MNIST in IDX format."""

from __future__ import annotations

import gzip
import os
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]

# The ``base:`` of the tiny grid and sweep specs the tests write (a str.format template).
TINY_BASE = """base:
  model: {{name: deit_micro, embed_dim: 32, depth: 2, heads: 2}}
  data: {{name: synthetic, synthetic_size: 16, synthetic_train: {n_train}, synthetic_test: 64,
          val_size: 64, batch_size: 32, crop_padding: 1}}
  train: {{epochs: {epochs}, warmup_epochs: 0.0, bench_seconds: 0.02}}
"""


def write_idx(path: Path, array: np.ndarray) -> None:
    """Write ``array`` (uint8) in the IDX format of (Fashion-)MNIST, gzipped."""
    header = bytes([0, 0, 8, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


@pytest.fixture
def tiny_fashion_mnist(tmp_path: Path) -> Path:
    """A 600/200-image Fashion-MNIST look-alike: class k is a bright k-th horizontal band."""
    rng = np.random.default_rng(0)
    root = tmp_path / "fmnist"
    root.mkdir()
    for prefix, n in (("train", 600), ("t10k", 200)):
        y = np.arange(n) % 10
        x = rng.integers(0, 60, size=(n, 28, 28))
        for i, k in enumerate(y):
            x[i, 2 + 2 * k : 4 + 2 * k, :] = 250
        write_idx(root / f"{prefix}-images-idx3-ubyte.gz", x)
        write_idx(root / f"{prefix}-labels-idx1-ubyte.gz", y)
    return root


@pytest.fixture
def workspace(tmp_path: Path, monkeypatch) -> Path:
    """Runs and results go to a temporary folder; returns it."""
    monkeypatch.setenv("ABLATE_RUNS", str(tmp_path / "runs"))
    monkeypatch.setenv("ABLATE_RESULTS", str(tmp_path / "results"))
    monkeypatch.setenv("PYTHONPATH", str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return tmp_path


def cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "experiments", *args]
