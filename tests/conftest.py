"""Shared pytest fixtures: the real datasets folder and tiny synthetic images."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

# Synthetic slides and tiny tile models, shared by the WSI, helper and page tests.
pytest_plugins = ["tests.utils.wsi.fixtures"]

PROJECT_ROOT = Path(__file__).resolve().parent.parent
SHARED_DATASETS = PROJECT_ROOT.parent / "shared" / "datasets"


@pytest.fixture(scope="session")
def shared_datasets() -> Path:
    """The real datasets folder ``../shared/datasets``; skips the test when absent."""
    if not SHARED_DATASETS.is_dir():
        pytest.skip(f"real datasets not found at {SHARED_DATASETS}")
    return SHARED_DATASETS


@pytest.fixture
def rng() -> np.random.Generator:
    """A seeded random generator, so synthetic fixtures are reproducible."""
    return np.random.default_rng(1234)


@pytest.fixture
def speckle_image(rng: np.random.Generator) -> np.ndarray:
    """A 64x80 grayscale uint8 ultrasound-like image with a dark oval lesion."""
    height, width = 64, 80
    image = rng.gamma(shape=2.0, scale=50.0, size=(height, width)).clip(0, 255)
    yy, xx = np.mgrid[:height, :width]
    lesion = ((yy - 30) / 12.0) ** 2 + ((xx - 40) / 18.0) ** 2 <= 1.0
    image[lesion] *= 0.25
    return image.astype(np.uint8)
