"""Real MoNuSeg tiles for the H&E tests (skipped when the datasets are absent)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from utils.image_io import load_image


@pytest.fixture(scope="session")
def monuseg_root(shared_datasets: Path) -> Path:
    root = shared_datasets / "monuseg" / "MoNuSegTrainingData"
    if not root.is_dir():
        pytest.skip(f"MoNuSeg not found at {root}")
    return root


@pytest.fixture(scope="session")
def two_real_tiles(monuseg_root: Path) -> tuple[np.ndarray, np.ndarray]:
    """Central 400x400 crops of two MoNuSeg tiles from different hospitals and organs."""
    paths = sorted((monuseg_root / "Tissue_Images").iterdir())
    first = load_image(paths[0]).pixels[300:700, 300:700]
    second = load_image(paths[-1]).pixels[300:700, 300:700]
    return first, second
