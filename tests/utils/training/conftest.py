from __future__ import annotations

import numpy as np
import pytest

from utils.training.arrays import TrainingArrays


def make_tiny_arrays() -> TrainingArrays:
    """24 synthetic 32x32 ultrasound-like images: dark squares with masks, some normal."""
    rng = np.random.default_rng(0)
    count = 24
    images = rng.integers(80, 200, (count, 32, 32, 1), dtype=np.uint8)
    masks = np.zeros((count, 32, 32, 1), np.uint8)
    labels = []
    for index in range(count):
        if index % 4 == 0:
            labels.append("normal")
            continue
        top, left = 6 + index % 10, 4 + index % 12
        masks[index, top : top + 10, left : left + 12] = 1
        images[index][masks[index] == 1] = 20
        labels.append("benign" if index % 2 else "malignant")
    return TrainingArrays(
        images=images,
        masks=masks,
        labels=labels,
        groups=[f"patient{index // 2}" for index in range(count)],
        sources=[f"img{index}.png" for index in range(count)],
        datasets=["synthetic"] * count,
    )


@pytest.fixture
def tiny_arrays() -> TrainingArrays:
    """See :func:`make_tiny_arrays`."""
    return make_tiny_arrays()
