from __future__ import annotations

import numpy as np
import pytest

from utils.resize import resize_mask, resize_probabilities


def test_probabilities_are_upsampled_smoothly_and_stay_in_range() -> None:
    square = np.zeros((4, 4), np.float64)
    square[1:3, 1:3] = 1.0
    resized = resize_probabilities(square, (8, 12))
    assert resized.shape == (8, 12) and resized.dtype == np.float32
    assert resized.min() >= 0.0 and resized.max() <= 1.0
    # Bilinear: the edge passes through intermediate values instead of a staircase.
    assert ((resized > 0.05) & (resized < 0.95)).any()
    assert resized[4, 6] == pytest.approx(1.0)


def test_probabilities_outside_zero_one_are_clipped() -> None:
    resized = resize_probabilities(np.array([[-0.5, 1.5], [0.2, 0.8]]), (4, 4))
    assert resized.min() >= 0.0 and resized.max() <= 1.0


def test_masks_stay_binary_when_resized() -> None:
    mask = np.zeros((4, 4), bool)
    mask[:2] = True
    resized = resize_mask(mask, (8, 8))
    assert set(np.unique(resized)) == {0, 1} and resized[:4].all() and not resized[4:].any()
