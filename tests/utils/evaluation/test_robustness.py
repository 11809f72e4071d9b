from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from utils.errors import ConfigError, InvalidImageError
from utils.evaluation.robustness import (
    MAX_SMOOTH_FRACTION,
    check_smooth_fraction,
    smooth_image,
    smooth_loaded,
)
from utils.image_io import load_image


def _line_image(width: int) -> np.ndarray:
    """A bright vertical line on black: its blurred row profile is the kernel."""
    image = np.zeros((32, width), np.uint8)
    image[:, width // 2] = 255
    return image


def _profile_sd(row: np.ndarray) -> float:
    weights = row.astype(np.float64) / row.sum()
    positions = np.arange(row.size)
    centre = (weights * positions).sum()
    return float(np.sqrt((weights * (positions - centre) ** 2).sum()))


@pytest.mark.parametrize("width", [200, 400])
def test_sigma_is_the_fraction_of_the_width(width: int) -> None:
    smoothed = smooth_image(_line_image(width), 0.02)
    assert _profile_sd(smoothed[16]) == pytest.approx(0.02 * width, rel=0.05)


def test_zero_is_an_unchanged_copy() -> None:
    image = np.random.default_rng(0).integers(0, 256, (16, 24, 3), dtype=np.uint8)
    smoothed = smooth_image(image, 0)
    np.testing.assert_array_equal(smoothed, image)
    assert smoothed is not image


@pytest.mark.parametrize("shape", [(40, 60), (40, 60, 1), (40, 60, 3)])
def test_smoothing_keeps_the_layout_and_removes_speckle(shape: tuple[int, ...]) -> None:
    image = np.random.default_rng(1).integers(0, 256, shape, dtype=np.uint8)
    smoothed = smooth_image(image, 0.03)
    assert smoothed.shape == image.shape and smoothed.dtype == np.uint8
    assert smoothed.std() < image.std() / 3


@pytest.mark.parametrize("fraction", [-0.01, MAX_SMOOTH_FRACTION + 0.01, float("nan"), True, "0.1"])
def test_bad_strengths_are_refused(fraction: object) -> None:
    with pytest.raises(ConfigError, match=r"smoothing strength must be a number from 0 to 0\.05"):
        check_smooth_fraction(fraction)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="received"):
        smooth_image(np.zeros((8, 8), np.uint8), fraction)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "image", [np.zeros((8, 8), np.float32), np.zeros((2, 8, 8, 3), np.uint8), np.zeros(8, np.uint8)]
)
def test_bad_images_are_refused(image: np.ndarray) -> None:
    with pytest.raises(InvalidImageError, match=r"needs a uint8 \(H, W\) or \(H, W, C\) image"):
        smooth_image(image, 0.01)


def test_a_loaded_image_keeps_its_metadata() -> None:
    buffer = io.BytesIO()
    Image.fromarray(np.random.default_rng(2).integers(0, 256, (30, 50), np.uint8)).save(
        buffer, format="PNG"
    )
    loaded = load_image(buffer.getvalue())
    smoothed = smooth_loaded(loaded, 0.02)
    assert smoothed.metadata == loaded.metadata
    assert smoothed.pixels.shape == loaded.pixels.shape
    assert smoothed.pixels.std() < loaded.pixels.std()
    assert smooth_loaded(loaded, 0) is loaded


def test_a_loaded_image_with_a_bad_strength_is_refused() -> None:
    loaded = load_image(_png(np.zeros((8, 8), np.uint8)))
    with pytest.raises(ConfigError, match=r"smoothing strength must be a number from 0 to 0\.05"):
        smooth_loaded(loaded, 0.2)


def _png(pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()
