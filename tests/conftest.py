"""Shared fixtures: tiny synthetic pairs written to disk, and the real ISBI 2012 data.

Tests that need ISBI read it from $UNETKIT_DATA (default ../shared/data/isbi2012);
they skip when it is missing on a developer's machine but fail in CI (CI is set),
where the data is always present.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
from PIL import Image

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session", autouse=True)
def private_cache(tmp_path_factory: pytest.TempPathFactory) -> None:
    """The planner remembers probe rates in a cache folder: the tests use their own, not the user's."""
    os.environ["UNETKIT_CACHE"] = str(tmp_path_factory.mktemp("unetkit-cache"))


def isbi_root() -> Path:
    return Path(os.environ.get("UNETKIT_DATA", REPO.parent / "shared" / "data" / "isbi2012"))


@pytest.fixture(scope="session")
def isbi() -> Path:
    root = isbi_root()
    if not (root / "train-volume.tif").is_file():
        message = f"ISBI 2012 data not found at {root}; set UNETKIT_DATA"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return root


def write_png(path: Path, array: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)
    return path


def blob_pair(rng: np.random.Generator, size: int = 32) -> tuple[np.ndarray, np.ndarray]:
    """A learnable toy pair: bright squares (class 1) on a dark noisy background (class 0)."""
    label = np.zeros((size, size), dtype=np.uint8)
    for _ in range(3):
        y, x = rng.integers(0, size - 8, 2)
        h, w = rng.integers(4, 10, 2)
        label[y : y + h, x : x + w] = 1
    image = (60 + 120 * label + rng.normal(0, 8, label.shape)).clip(0, 255).astype(np.uint8)
    return image, label


def write_blob_pairs(
    root: Path, count: int = 4, size: int = 32, seed: int = 0, mask: Callable[[np.ndarray], np.ndarray] = lambda label: label * 255
) -> tuple[Path, Path]:
    """`count` blob pairs in root/image and root/label named 0..count-1; `mask` turns a 0/1 label into the mask written."""
    rng = np.random.default_rng(seed)
    for i in range(count):
        image, label = blob_pair(rng, size)
        write_png(root / "image" / f"{i}.png", image)
        write_png(root / "label" / f"{i}.png", mask(label))
    return root / "image", root / "label"


def train_tiny_run(root: Path, count: int, size: int, epochs: int) -> Path:
    """A width-4, depth-2 run trained on `count` blob pairs (0/255 masks) written in root/image and root/label;
    returns `root`, which holds run/ beside them."""
    from dataclasses import replace

    from unetkit.config import TrainConfig
    from unetkit.train.start import train

    images, labels = write_blob_pairs(root, count, size)
    config = replace(TrainConfig(), base_width=4, depth=2, patch_size=32, epochs=epochs, budget_s=None, device="cpu")
    train(images, labels, root / "run", config, progress=False, say=lambda _: None)
    return root


@pytest.fixture
def toy_data(tmp_path: Path) -> tuple[Path, Path]:
    """Six 32 x 32 pairs in image/ and label/ (labels 0/255), named 0..5 without padding."""
    rng = np.random.default_rng(0)
    for i in range(6):
        image, label = blob_pair(rng)
        write_png(tmp_path / "data" / "image" / f"{i}.png", image)
        write_png(tmp_path / "data" / "label" / f"{i}.png", label * 255)
    return tmp_path / "data" / "image", tmp_path / "data" / "label"
