"""Tests of the display-only CLAHE enhancement."""

from __future__ import annotations

import numpy as np
import pytest

from utils.enhance import clahe, clahe_rgb
from utils.errors import ConfigError, ImageDimensionError, InvalidImageError


def _low_contrast(rng: np.random.Generator) -> np.ndarray:
    """A dark image squeezed into grey levels 40..70, with a faint brighter square."""
    image = rng.integers(40, 60, size=(96, 128)).astype(np.uint8)
    image[30:60, 40:90] += 10
    return image


def test_clahe_stretches_a_low_contrast_image(rng: np.random.Generator) -> None:
    image = _low_contrast(rng)
    enhanced = clahe(image)
    assert enhanced.dtype == np.uint8
    assert enhanced.shape == image.shape
    assert enhanced.std() > 2 * image.std()


def test_clahe_accepts_a_trailing_channel_axis(rng: np.random.Generator) -> None:
    image = _low_contrast(rng)
    np.testing.assert_array_equal(clahe(image[..., None]), clahe(image))


def test_clip_limit_bounds_the_enhancement(rng: np.random.Generator) -> None:
    image = _low_contrast(rng)
    assert clahe(image, clip_limit=1.0).std() < clahe(image, clip_limit=4.0).std()


def test_clahe_rgb_keeps_gray_images_gray(
    rng: np.random.Generator,
) -> None:
    gray = _low_contrast(rng)
    rgb = np.repeat(gray[..., None], 3, axis=2)
    enhanced = clahe_rgb(rgb)
    assert enhanced.shape == rgb.shape and enhanced.dtype == np.uint8
    assert np.array_equal(enhanced[..., 0], enhanced[..., 1])
    assert np.array_equal(enhanced[..., 1], enhanced[..., 2])
    assert enhanced.std() > 2 * rgb.std()


def test_clahe_rgb_preserves_hue(rng: np.random.Generator) -> None:
    # A pink (H&E-like) image: red stays the strongest channel everywhere.
    lightness = _low_contrast(rng).astype(np.float32) / 255.0
    pink = np.stack([lightness * 3.0, lightness * 1.5, lightness * 2.0], axis=2)
    rgb = np.clip(pink * 255, 0, 255).astype(np.uint8)
    enhanced = clahe_rgb(rgb).astype(int)
    assert np.mean(enhanced[..., 0] >= enhanced[..., 1]) > 0.99
    assert np.mean(enhanced[..., 2] >= enhanced[..., 1]) > 0.95


@pytest.mark.parametrize(
    ("image", "error"),
    [
        (np.zeros((8, 8), np.float32), InvalidImageError),
        (np.zeros((0, 8), np.uint8), ImageDimensionError),
        (np.zeros((8, 8, 3), np.uint8), ImageDimensionError),
    ],
)
def test_clahe_rejects_bad_images(image: np.ndarray, error: type[Exception]) -> None:
    with pytest.raises(error):
        clahe(image)


def test_clahe_rgb_rejects_grayscale() -> None:
    with pytest.raises(ImageDimensionError, match="clahe for"):
        clahe_rgb(np.zeros((8, 8), np.uint8))


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"clip_limit": 0}, "clip_limit"),
        ({"clip_limit": float("nan")}, "clip_limit"),
        ({"clip_limit": True}, "clip_limit"),
        ({"tile_grid": 0}, "tile_grid"),
        ({"tile_grid": 2.5}, "tile_grid"),
    ],
)
def test_bad_options_are_config_errors(options: dict, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        clahe(np.zeros((8, 8), np.uint8), **options)
