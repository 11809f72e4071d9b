"""Tests for utils.measurements on synthetic shapes with known answers and real BUSI masks."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from skimage import draw

from utils.errors import ConfigError, ImageDimensionError, InvalidImageError
from utils.measurements import (
    POSTERIOR_ENHANCEMENT_RATIO,
    POSTERIOR_SHADOWING_RATIO,
    EmptyMaskError,
    LesionMeasurements,
    measure_lesion,
    measure_lesion_or_none,
)

SHAPE = (200, 200)
CENTRE = (100, 100)


def ellipse_mask(
    col_radius: float,
    row_radius: float,
    shape: tuple[int, int] = SHAPE,
    centre: tuple[int, int] = CENTRE,
    rotation: float = 0.0,
) -> np.ndarray:
    mask = np.zeros(shape, dtype=bool)
    rr, cc = draw.ellipse(*centre, row_radius, col_radius, shape=shape, rotation=rotation)
    mask[rr, cc] = True
    return mask


def polygon_mask(rows: np.ndarray, cols: np.ndarray, shape: tuple[int, int] = SHAPE) -> np.ndarray:
    mask = np.zeros(shape, dtype=bool)
    rr, cc = draw.polygon(rows, cols, shape)
    mask[rr, cc] = True
    return mask


def star_mask(points: int = 5, outer: float = 60, inner: float = 25, turn: float = 0.0):
    angles = turn + np.pi / 2 + np.arange(2 * points) * np.pi / points
    radii = np.where(np.arange(2 * points) % 2 == 0, outer, inner)
    return polygon_mask(CENTRE[0] - radii * np.sin(angles), CENTRE[1] + radii * np.cos(angles))


def rectangle_mask(length: float, width: float, degrees: float) -> np.ndarray:
    angle = math.radians(degrees)
    along = np.array([-math.sin(angle), math.cos(angle)]) * length / 2
    across = np.array([math.cos(angle), math.sin(angle)]) * width / 2
    corners = np.array([CENTRE + along + across, CENTRE + along - across])
    corners = np.vstack([corners, 2 * np.array(CENTRE) - corners])
    return polygon_mask(corners[:, 0], corners[:, 1])


@pytest.fixture(scope="module")
def ellipse() -> np.ndarray:
    """Horizontal ellipse with semi-axes 40 (columns) and 20 (rows) pixels."""
    return ellipse_mask(40, 20)


@pytest.fixture(scope="module")
def ellipse_result(ellipse: np.ndarray) -> LesionMeasurements:
    return measure_lesion(ellipse)


# --- geometry on synthetic shapes ---------------------------------------------------------


def test_ellipse_size_matches_theory(ellipse_result: LesionMeasurements) -> None:
    assert ellipse_result.unit == "px"
    assert ellipse_result.pixel_spacing_mm is None
    assert ellipse_result.area == pytest.approx(math.pi * 40 * 20, rel=0.02)
    assert ellipse_result.longest_diameter == pytest.approx(80, rel=0.03)
    assert ellipse_result.perpendicular_diameter == pytest.approx(40, rel=0.05)


def test_ellipse_shape_is_smooth_oval_and_parallel(ellipse_result: LesionMeasurements) -> None:
    # Ramanujan's perimeter gives the theoretical circularity of a 2:1 ellipse.
    a, b = 40, 20
    perimeter = math.pi * (3 * (a + b) - math.sqrt((3 * a + b) * (a + 3 * b)))
    assert ellipse_result.circularity == pytest.approx(
        4 * math.pi**2 * a * b / perimeter**2, abs=0.03
    )
    assert ellipse_result.solidity >= 0.97
    assert ellipse_result.convexity_deficit == pytest.approx(1 - ellipse_result.solidity)
    assert ellipse_result.margin_lobulations == 0
    assert ellipse_result.boundary_roughness == pytest.approx(1.0, abs=0.02)
    assert ellipse_result.depth_width_ratio == pytest.approx(0.5, rel=0.05)
    assert ellipse_result.orientation == "parallel"
    assert ellipse_result.n_components == 1


def test_disk_is_circular() -> None:
    result = measure_lesion(ellipse_mask(30, 30))
    assert result.circularity >= 0.95
    assert result.longest_diameter == pytest.approx(result.perpendicular_diameter, rel=0.02)
    assert result.margin_lobulations == 0


def test_small_disk_has_no_spurious_lobulations() -> None:
    assert (
        measure_lesion(ellipse_mask(4, 4, shape=(20, 20), centre=(10, 10))).margin_lobulations == 0
    )


def test_vertical_ellipse_is_taller_than_wide() -> None:
    result = measure_lesion(ellipse_mask(20, 40))
    assert result.depth_width_ratio == pytest.approx(2.0, rel=0.05)
    assert result.orientation == "not parallel"


@pytest.mark.parametrize("rotation", [0.3, 0.7, 1.2])
def test_rotated_ellipse_diameters_do_not_depend_on_angle(rotation: float) -> None:
    result = measure_lesion(ellipse_mask(40, 20, rotation=rotation))
    assert result.longest_diameter == pytest.approx(80, rel=0.03)
    assert result.perpendicular_diameter == pytest.approx(40, rel=0.05)
    assert result.margin_lobulations == 0


@pytest.mark.parametrize("degrees", [0, 30, 65])
def test_rotated_rectangle_longest_diameter_is_its_diagonal(degrees: float) -> None:
    result = measure_lesion(rectangle_mask(80, 30, degrees))
    assert result.longest_diameter == pytest.approx(math.hypot(80, 30), rel=0.03)
    # The longest chord at right angles to the diagonal crosses the two long sides.
    expected = 30 / math.cos(math.atan2(30, 80))
    assert result.perpendicular_diameter == pytest.approx(expected, rel=0.05)
    assert result.solidity >= 0.95


@pytest.mark.parametrize("turn", [0.0, 0.3, np.pi / 5])
def test_star_has_five_lobulations_and_rough_margin(
    turn: float, ellipse_result: LesionMeasurements
) -> None:
    result = measure_lesion(star_mask(turn=turn))
    assert result.margin_lobulations == 5
    assert result.solidity < 0.8
    assert result.boundary_roughness > ellipse_result.boundary_roughness + 0.1
    assert result.circularity < ellipse_result.circularity


def test_holes_are_filled_because_the_outline_defines_the_lesion() -> None:
    ring = ellipse_mask(30, 30) & ~ellipse_mask(10, 10)
    filled = measure_lesion(ellipse_mask(30, 30))
    assert measure_lesion(ring).area == filled.area
    assert measure_lesion(ring).solidity == pytest.approx(filled.solidity)


def test_lesion_touching_the_border_is_measured() -> None:
    result = measure_lesion(np.ones((10, 30), dtype=bool))
    assert result.area == 300
    assert result.longest_diameter == pytest.approx(math.hypot(10, 30), rel=0.02)


# --- physical units ----------------------------------------------------------------------


def test_isotropic_spacing_scales_lengths_and_areas(
    ellipse: np.ndarray, ellipse_result: LesionMeasurements
) -> None:
    result = measure_lesion(ellipse, pixel_spacing_mm=0.1)
    assert result.unit == "mm"
    assert result.pixel_spacing_mm == (0.1, 0.1)
    assert result.area == pytest.approx(ellipse_result.area * 0.01)
    assert result.longest_diameter == pytest.approx(ellipse_result.longest_diameter * 0.1)
    perpendicular = ellipse_result.perpendicular_diameter * 0.1
    assert result.perpendicular_diameter == pytest.approx(perpendicular, rel=1e-3)
    for unitless in ("circularity", "solidity", "depth_width_ratio", "boundary_roughness"):
        assert getattr(result, unitless) == pytest.approx(getattr(ellipse_result, unitless))
    assert result.margin_lobulations == ellipse_result.margin_lobulations


def test_anisotropic_spacing_turns_a_pixel_ellipse_into_a_physical_disk() -> None:
    # 40 rows x 80 columns of pixels, rows 0.2 mm and columns 0.1 mm: an 8 mm disk.
    result = measure_lesion(ellipse_mask(40, 20), pixel_spacing_mm=(0.2, 0.1))
    assert result.area == pytest.approx(math.pi * 4**2, rel=0.02)
    assert result.longest_diameter == pytest.approx(8, rel=0.03)
    assert result.perpendicular_diameter == pytest.approx(8, rel=0.05)
    assert result.depth_width_ratio == pytest.approx(1.0, rel=0.05)
    assert result.circularity >= 0.95
    assert result.margin_lobulations == 0


# --- intensity measurements -----------------------------------------------------------------


def test_no_image_leaves_intensity_measures_empty(ellipse_result: LesionMeasurements) -> None:
    assert ellipse_result.mean_echogenicity_ratio is None
    assert ellipse_result.posterior_ratio is None
    assert ellipse_result.posterior_acoustic_feature is None


def test_dark_lesion_in_bright_tissue_is_hypoechoic(ellipse: np.ndarray) -> None:
    image = np.where(ellipse, 20, 200).astype(np.uint8)
    result = measure_lesion(ellipse, image)
    assert result.mean_echogenicity_ratio == pytest.approx(0.1)
    assert result.posterior_acoustic_feature == "none"


def test_speckle_fixture_lesion_is_hypoechoic(speckle_image: np.ndarray) -> None:
    yy, xx = np.mgrid[: speckle_image.shape[0], : speckle_image.shape[1]]
    mask = ((yy - 30) / 12.0) ** 2 + ((xx - 40) / 18.0) ** 2 <= 1.0
    ratio = measure_lesion(mask, speckle_image).mean_echogenicity_ratio
    assert ratio is not None
    assert ratio < 0.5


def test_colour_image_gives_the_same_result_as_gray(ellipse: np.ndarray) -> None:
    gray = np.where(ellipse, 40, 160).astype(np.uint8)
    rgba = np.dstack([gray, gray, gray, np.full_like(gray, 255)])
    from_gray = measure_lesion(ellipse, gray).mean_echogenicity_ratio
    assert measure_lesion(ellipse, rgba[..., :3]).mean_echogenicity_ratio == pytest.approx(
        from_gray
    )
    assert measure_lesion(ellipse, rgba).mean_echogenicity_ratio == pytest.approx(from_gray)


def image_with_posterior_band(mask: np.ndarray, below: float) -> np.ndarray:
    """Uniform tissue (100) with the columns under the lesion set to ``below``."""
    image = np.full(mask.shape, 100.0)
    rows, cols = np.nonzero(mask)
    image[rows.max() + 1 :, cols.min() : cols.max() + 1] = below
    image[mask] = 30.0
    return image


@pytest.mark.parametrize(
    ("below", "feature"), [(180.0, "enhancement"), (30.0, "shadowing"), (100.0, "none")]
)
def test_posterior_acoustic_feature(ellipse: np.ndarray, below: float, feature: str) -> None:
    result = measure_lesion(ellipse, image_with_posterior_band(ellipse, below))
    assert result.posterior_ratio == pytest.approx(below / 100.0)
    assert result.posterior_acoustic_feature == feature


def test_posterior_thresholds_are_ordered() -> None:
    assert POSTERIOR_SHADOWING_RATIO < 1 < POSTERIOR_ENHANCEMENT_RATIO


def test_posterior_is_none_when_lesion_reaches_the_image_bottom() -> None:
    mask = ellipse_mask(40, 20, shape=(60, 200), centre=(50, 100))
    result = measure_lesion(mask, np.full(mask.shape, 100.0))
    assert result.posterior_ratio is None
    assert result.posterior_acoustic_feature is None
    assert result.mean_echogenicity_ratio == pytest.approx(1.0)


def test_posterior_is_none_when_lesion_spans_the_whole_width() -> None:
    mask = np.zeros((50, 20), dtype=bool)
    mask[10:20, :] = True
    assert measure_lesion(mask, np.full(mask.shape, 100.0)).posterior_ratio is None


# --- connected components --------------------------------------------------------------------


@pytest.fixture(scope="module")
def two_blobs() -> np.ndarray:
    return ellipse_mask(30, 30, centre=(60, 60)) | ellipse_mask(10, 10, centre=(150, 150))


def test_largest_component_only_drops_the_small_blob(two_blobs: np.ndarray) -> None:
    big = measure_lesion(ellipse_mask(30, 30, centre=(60, 60)))
    result = measure_lesion(two_blobs)
    assert result.n_components == 2
    assert result.area == big.area
    assert result.longest_diameter == pytest.approx(big.longest_diameter)


def test_all_components_are_measured_together(two_blobs: np.ndarray) -> None:
    result = measure_lesion(two_blobs, largest_component_only=False)
    assert result.n_components == 2
    assert result.area == two_blobs.sum()
    # The longest diameter now spans both blobs, from one far edge to the other.
    assert result.longest_diameter > 150
    assert result.solidity < 0.6
    assert result.margin_lobulations == 0


def test_diagonal_pixels_are_one_component() -> None:
    mask = np.eye(6, dtype=bool)
    assert measure_lesion(mask).n_components == 1


# --- output formats ----------------------------------------------------------------------------


def test_to_dict_is_json_serialisable(ellipse: np.ndarray) -> None:
    result = measure_lesion(ellipse, np.where(ellipse, 20, 200), pixel_spacing_mm=(0.1, 0.2))
    data = json.loads(json.dumps(result.to_dict()))
    assert data["pixel_spacing_mm"] == [0.1, 0.2]
    assert data["unit"] == "mm"
    assert set(data) == set(LesionMeasurements.__dataclass_fields__)


def test_table_rows_are_readable(ellipse: np.ndarray) -> None:
    rows = measure_lesion(ellipse, pixel_spacing_mm=0.1).to_table_rows()
    by_name = {row["name"]: row for row in rows}
    assert all(set(row) == {"name", "value", "unit", "meaning"} for row in rows)
    assert by_name["Longest diameter"]["unit"] == "mm"
    assert by_name["Area"]["unit"] == "mm²"
    assert float(by_name["Longest diameter"]["value"]) == pytest.approx(8.0, rel=0.03)
    assert by_name["Orientation"]["value"] == "parallel"
    assert by_name["Echogenicity ratio"]["value"] == "n/a"
    assert by_name["Posterior acoustic feature"]["value"] == "n/a"


# --- bad input ------------------------------------------------------------------------------


def test_empty_mask_raises_a_clear_error() -> None:
    with pytest.raises(InvalidImageError, match="mask is empty: no lesion to measure"):
        measure_lesion(np.zeros((10, 10), dtype=bool))
    with pytest.raises(EmptyMaskError):
        measure_lesion(np.zeros((10, 10), dtype=np.uint8))


def test_measure_lesion_or_none_returns_none_only_for_empty_masks(ellipse: np.ndarray) -> None:
    assert measure_lesion_or_none(np.zeros((10, 10), dtype=bool)) is None
    assert measure_lesion_or_none(ellipse) == measure_lesion(ellipse)
    with pytest.raises(ImageDimensionError):
        measure_lesion_or_none(np.zeros((2, 10, 10), dtype=bool))


@pytest.mark.parametrize("shape", [(10,), (2, 10, 10)])
def test_mask_must_be_2d(shape: tuple[int, ...]) -> None:
    with pytest.raises(ImageDimensionError, match=r"mask must be a 2-D \(H, W\) array; got"):
        measure_lesion(np.ones(shape, dtype=bool))


def test_mask_must_not_have_a_zero_dimension() -> None:
    with pytest.raises(ImageDimensionError, match="non-zero height and width; got"):
        measure_lesion(np.ones((0, 10), dtype=bool))


@pytest.mark.parametrize(
    "values", [[0.0, 0.3, 0.7], [0, 1, 2], [0.0, np.nan], [0, 255, 1]], ids=str
)
def test_mask_must_be_binary(values: list[float]) -> None:
    mask = np.resize(np.array(values), (4, 4))
    with pytest.raises(InvalidImageError, match=r"mask must be binary.*got values"):
        measure_lesion(mask)


def test_mask_of_strings_is_rejected() -> None:
    with pytest.raises(InvalidImageError, match="mask must be bool or numeric; got dtype"):
        measure_lesion(np.full((4, 4), "x"))


@pytest.mark.parametrize("scale", [1, 255])
def test_saved_masks_with_0_1_or_0_255_are_accepted(ellipse: np.ndarray, scale: int) -> None:
    assert measure_lesion(ellipse.astype(np.uint8) * scale) == measure_lesion(ellipse)


@pytest.mark.parametrize("shape", [(200, 201), (100, 200, 3), (200, 200, 2), (200, 200, 3, 1)])
def test_image_shape_must_match_mask(ellipse: np.ndarray, shape: tuple[int, ...]) -> None:
    image = np.zeros(shape[:2] + shape[2:], dtype=np.uint8)
    with pytest.raises(ImageDimensionError, match=r"image .*got|must match the mask shape"):
        measure_lesion(ellipse, image)


def test_image_must_be_finite_and_numeric(ellipse: np.ndarray) -> None:
    image = np.ones(ellipse.shape)
    image[0, 0] = np.nan
    with pytest.raises(InvalidImageError, match="NaN or infinite"):
        measure_lesion(ellipse, image)
    with pytest.raises(InvalidImageError, match="image must hold real numbers; got dtype"):
        measure_lesion(ellipse, np.full(ellipse.shape, "x"))


@pytest.mark.parametrize(
    "spacing",
    [0, -0.1, math.nan, math.inf, (0.1,), (0.1, 0.1, 0.1), (0.1, 0), "0.1", True, (0.1, None)],
    ids=repr,
)
def test_pixel_spacing_must_be_positive_and_finite(ellipse: np.ndarray, spacing: object) -> None:
    with pytest.raises(ConfigError, match="pixel_spacing_mm must be one positive finite number"):
        measure_lesion(ellipse, pixel_spacing_mm=spacing)  # type: ignore[arg-type]


# --- real data ---------------------------------------------------------------------------------


BUSI_CASES = ["malignant/malignant (1)", "malignant/malignant (101)", "benign/benign (100)"]


@pytest.mark.real_data
@pytest.mark.parametrize("case", BUSI_CASES)
def test_real_busi_masks_give_plausible_values(shared_datasets: Path, case: str) -> None:
    base = shared_datasets / "busi" / "Dataset_BUSI_with_GT" / case
    image = np.asarray(Image.open(f"{base}.png"))
    mask = np.asarray(Image.open(f"{base}_mask.png").convert("L")) > 127
    result = measure_lesion(mask, image)
    numbers = [v for v in result.to_dict().values() if isinstance(v, float)]
    assert all(math.isfinite(v) for v in numbers)
    assert 0 < result.area <= mask.size
    assert 0 < result.perpendicular_diameter <= result.longest_diameter
    assert result.longest_diameter <= math.hypot(*mask.shape)
    assert 0 < result.circularity <= 1 and 0 < result.solidity <= 1
    assert 1 <= result.boundary_roughness < 2
    assert 0 <= result.margin_lobulations <= 12
    assert result.mean_echogenicity_ratio is not None
    assert 0 < result.mean_echogenicity_ratio < 1.5  # lesions are rarely much brighter
    assert result.n_components >= 1
