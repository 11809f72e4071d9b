"""Morphometry on synthetic discs and ellipses with known areas and eccentricities."""

from __future__ import annotations

import numpy as np
import pytest
from skimage.draw import disk, ellipse

from utils.errors import ConfigError, ImageDimensionError, InvalidImageError
from utils.histo.morphometry import measure_nuclei

BACKGROUND = (235, 225, 235)
NUCLEUS = (70, 50, 140)


def _scene(shapes: list[tuple[str, tuple]]) -> tuple[np.ndarray, np.ndarray]:
    labels = np.zeros((200, 200), np.int32)
    rgb = np.empty((200, 200, 3), np.uint8)
    rgb[:] = BACKGROUND
    for label, (kind, params) in enumerate(shapes, start=1):
        rows, cols = disk(*params) if kind == "disk" else ellipse(*params)
        labels[rows, cols] = label
        rgb[rows, cols] = NUCLEUS
    return labels, rgb


def test_discs_have_known_area_and_zero_eccentricity() -> None:
    labels, rgb = _scene(
        [("disk", ((40, 40), 12)), ("disk", ((40, 140), 12)), ("disk", ((140, 40), 12))]
    )
    result = measure_nuclei(labels, rgb, mpp=0.5)
    table = result.per_nucleus
    assert len(table) == 3
    # Pixel-counted disc area is within 5 % of pi r^2; 0.25 um^2 per pixel.
    np.testing.assert_allclose(table["area"], np.pi * 12**2 * 0.25, rtol=0.05)
    np.testing.assert_allclose(table["eccentricity"], 0.0, atol=0.05)
    summary = result.summary
    assert summary["count"] == 3
    assert summary["density_per_mm2"] == pytest.approx(3 / (200 * 200 * 0.5**2 / 1e6))
    assert summary["pleomorphism_index"] == pytest.approx(0.0, abs=0.05)
    assert result.not_measured == {}


def test_ellipse_eccentricity_and_pleomorphism_grow_with_variation() -> None:
    # Semi-axes 20 and 10: eccentricity sqrt(1 - (10/20)^2) = 0.866.
    labels, rgb = _scene(
        [("ellipse", (50, 50, 10, 20)), ("disk", ((50, 150), 8)), ("disk", ((150, 100), 16))]
    )
    result = measure_nuclei(labels, rgb, mpp=None)
    assert result.per_nucleus.loc[0, "eccentricity"] == pytest.approx(0.866, abs=0.02)
    uniform = measure_nuclei(
        *_scene(
            [("disk", ((50, 50), 10))] * 1 + [("disk", ((50, 150), 10)), ("disk", ((150, 100), 10))]
        ),
        mpp=None,
    )
    assert result.summary["pleomorphism_index"] > uniform.summary["pleomorphism_index"] + 0.3
    # Formula: CV(area) + sd(eccentricity)
    areas = result.per_nucleus["area"]
    expected = areas.std(ddof=1) / areas.mean() + result.per_nucleus["eccentricity"].std(ddof=1)
    assert result.summary["pleomorphism_index"] == pytest.approx(expected)


def test_without_mpp_density_per_mm2_is_not_measured() -> None:
    labels, rgb = _scene(
        [("disk", ((40, 40), 10))] * 1 + [("disk", ((100, 100), 10)), ("disk", ((160, 160), 10))]
    )
    result = measure_nuclei(labels, rgb)
    assert "density_per_mm2" not in result.summary
    assert result.not_measured["density_per_mm2"] == "microns per pixel unknown"
    assert result.summary["density_per_megapixel"] == pytest.approx(3 / 0.04)
    assert result.to_dict()["units"] == "px"


def test_chromatin_texture_is_higher_for_speckled_nuclei(rng) -> None:
    labels, rgb = _scene(
        [("disk", ((50, 50), 15)), ("disk", ((50, 150), 15)), ("disk", ((150, 100), 15))]
    )
    flat = measure_nuclei(labels, rgb).summary["chromatin_texture"]
    speckled_rgb = rgb.copy()
    inside = labels > 0
    noise = rng.integers(-60, 60, size=(inside.sum(), 1))
    speckled_rgb[inside] = np.clip(speckled_rgb[inside].astype(int) + noise, 0, 255).astype(
        np.uint8
    )
    speckled = measure_nuclei(labels, speckled_rgb).summary["chromatin_texture"]
    assert speckled["glcm_contrast"] > flat["glcm_contrast"]
    assert speckled["glcm_entropy_bits"] > flat["glcm_entropy_bits"]
    assert speckled["glcm_homogeneity"] < flat["glcm_homogeneity"]


def test_empty_and_sparse_regions_say_what_is_not_measured() -> None:
    labels = np.zeros((50, 50), np.int32)
    rgb = np.full((50, 50, 3), 230, np.uint8)
    empty = measure_nuclei(labels, rgb, mpp=0.25)
    assert empty.summary["count"] == 0 and empty.summary["density_per_mm2"] == 0.0
    assert empty.not_measured["pleomorphism_index"] == "no nuclei in the region"
    assert "chromatin_texture" in empty.not_measured
    labels[10:20, 10:20] = 1
    one = measure_nuclei(labels, rgb, mpp=0.25)
    assert "at least 3" in one.not_measured["pleomorphism_index"]
    assert "chromatin_texture" in one.summary
    assert len(one.to_dict()["per_nucleus"]) == 1


def test_bad_input_raises() -> None:
    rgb = np.zeros((10, 10, 3), np.uint8)
    with pytest.raises(ImageDimensionError, match="differ in size"):
        measure_nuclei(np.zeros((10, 12), np.int32), rgb)
    with pytest.raises(InvalidImageError, match="integer labels"):
        measure_nuclei(np.zeros((10, 10), np.float32), rgb)
    with pytest.raises(InvalidImageError, match="uint8"):
        measure_nuclei(np.zeros((10, 10), np.int32), rgb.astype(np.float32))
    with pytest.raises(ConfigError, match="mpp"):
        measure_nuclei(np.zeros((10, 10), np.int32), rgb, mpp=-1.0)
