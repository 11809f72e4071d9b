"""Stain normalisation and HED augmentation, on real MoNuSeg tiles and bad input."""

from __future__ import annotations

import numpy as np
import pytest
from skimage.color import rgb2lab

from utils.errors import ConfigError, ImageDimensionError, InvalidImageError, NoTissueError
from utils.histo.stain import (
    MacenkoNormalizer,
    ReinhardNormalizer,
    estimate_stain_matrix,
    hed_augment,
    hematoxylin_channel,
)

# Macenko's published reference hematoxylin and eosin OD vectors.
HEMATOXYLIN = np.array([0.5626, 0.7201, 0.4062])
EOSIN = np.array([0.2159, 0.8012, 0.5581])


def _lab_stats(rgb: np.ndarray) -> np.ndarray:
    lab = rgb2lab(rgb).reshape(-1, 3)
    tissue = lab[lab[:, 0] < 90]
    return np.concatenate([tissue.mean(axis=0), tissue.std(axis=0)])


def _cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(a @ b / np.linalg.norm(a) / np.linalg.norm(b))


@pytest.mark.real_data
def test_stain_matrix_columns_are_unit_and_ordered_h_then_e(two_real_tiles) -> None:
    for tile in two_real_tiles:
        stains = estimate_stain_matrix(tile)
        assert stains.shape == (3, 2)
        np.testing.assert_allclose(np.linalg.norm(stains, axis=0), 1.0, atol=1e-6)
        hema, eosin = stains[:, 0], stains[:, 1]
        assert _cosine(hema, HEMATOXYLIN) > _cosine(hema, EOSIN)
        assert _cosine(eosin, EOSIN) > _cosine(eosin, HEMATOXYLIN)


@pytest.mark.real_data
@pytest.mark.parametrize("normaliser", [MacenkoNormalizer, ReinhardNormalizer])
def test_normalising_a_to_b_reduces_colour_distance(two_real_tiles, normaliser) -> None:
    source, reference = two_real_tiles
    before = np.linalg.norm(_lab_stats(source) - _lab_stats(reference))
    normalised = normaliser().fit(reference).transform(source)
    after = np.linalg.norm(_lab_stats(normalised) - _lab_stats(reference))
    assert normalised.shape == source.shape and normalised.dtype == np.uint8
    assert after < 0.6 * before


@pytest.mark.real_data
def test_macenko_default_reference_keeps_nuclei_dark(two_real_tiles) -> None:
    tile = two_real_tiles[0]
    out = MacenkoNormalizer().transform(tile)
    # Pixels with the most hematoxylin stay among the darkest after normalisation.
    hema = hematoxylin_channel(tile)
    top = hema > np.percentile(hema, 95)
    assert out[top].mean() < out[~top].mean() - 30


@pytest.mark.real_data
def test_hed_augment_changes_colours_slightly_and_is_reproducible(two_real_tiles) -> None:
    tile = two_real_tiles[0]
    first = hed_augment(tile, np.random.default_rng(3))
    again = hed_augment(tile, np.random.default_rng(3))
    other = hed_augment(tile, np.random.default_rng(4))
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, other)
    difference = np.abs(first.astype(int) - tile.astype(int)).mean()
    assert 0.1 < difference < 25
    # Structure is kept: the augmented image correlates strongly with the original.
    assert np.corrcoef(first.ravel(), tile.ravel())[0, 1] > 0.95


def test_hed_augment_with_zero_sigmas_is_a_round_trip(rng) -> None:
    tile = rng.integers(60, 230, size=(16, 16, 3), dtype=np.uint8)
    out = hed_augment(tile, rng, scale_sigma=0.0, shift_sigma=0.0)
    assert np.abs(out.astype(int) - tile.astype(int)).max() <= 1


@pytest.mark.parametrize("value", [0, 255])
def test_blank_tiles_raise_no_tissue(value: int) -> None:
    blank = np.full((64, 64, 3), value, dtype=np.uint8)
    # All white has no stained pixel; all black has no second stain direction.
    message = "stained pixels" if value == 255 else "no colour variation"
    with pytest.raises(NoTissueError, match=message):
        estimate_stain_matrix(blank)
    with pytest.raises(NoTissueError, match=message):
        MacenkoNormalizer().transform(blank)
    if value == 255:
        with pytest.raises(NoTissueError, match="non-background"):
            ReinhardNormalizer().fit(blank)


def test_bad_input_raises() -> None:
    with pytest.raises(InvalidImageError, match="uint8"):
        estimate_stain_matrix(np.zeros((8, 8, 3), np.float32))
    with pytest.raises(ImageDimensionError, match=r"\(H, W, 3\)"):
        estimate_stain_matrix(np.zeros((8, 8), np.uint8))
    with pytest.raises(ImageDimensionError, match="empty"):
        hed_augment(np.zeros((0, 8, 3), np.uint8), np.random.default_rng())
    with pytest.raises(ConfigError, match="scale_sigma"):
        hed_augment(np.zeros((8, 8, 3), np.uint8), np.random.default_rng(), scale_sigma=1.5)
    with pytest.raises(ConfigError, match="fit"):
        ReinhardNormalizer().transform(np.zeros((8, 8, 3), np.uint8))
