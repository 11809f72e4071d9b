from __future__ import annotations

import math

import numpy as np
import pytest

from utils.errors import ConfigError, ImageDimensionError
from utils.postprocess import (
    PostprocessConfig,
    choose_threshold,
    dice_score,
    hd95,
    iou,
    nanmean,
    postprocess_mask,
)

SIZE = 100  # 10 000 px: the default 0.2 % minimum area is 20 px


def square(top: int, left: int, side: int, size: int = SIZE) -> np.ndarray:
    mask = np.zeros((size, size), dtype=bool)
    mask[top : top + side, left : left + side] = True
    return mask


def as_probs(mask: np.ndarray, high: float = 0.9, low: float = 0.05) -> np.ndarray:
    return np.where(mask, high, low).astype(np.float32)


# --- config validation -------------------------------------------------------------------


@pytest.mark.parametrize("threshold", [0.0, 1.0, -0.2, 1.5])
def test_config_rejects_threshold_outside_open_unit_interval(threshold: float) -> None:
    with pytest.raises(ConfigError, match=rf"threshold.*received {threshold}"):
        PostprocessConfig(threshold=threshold)


@pytest.mark.parametrize(
    ("options", "pattern"),
    [
        ({"min_component_area_fraction": 1.0}, "min_component_area_fraction"),
        ({"min_component_area_fraction": -0.1}, "min_component_area_fraction"),
        ({"min_component_px": -1}, "min_component_px"),
        ({"min_component_px": 2.5}, "min_component_px"),
        ({"fill_holes": "yes"}, "fill_holes must be True or False"),
    ],
)
def test_config_rejects_bad_options(options: dict, pattern: str) -> None:
    with pytest.raises(ConfigError, match=pattern):
        PostprocessConfig(**options)


def test_min_area_uses_fraction_unless_pixels_given() -> None:
    assert PostprocessConfig().min_area_px(256 * 256) == math.ceil(0.002 * 256 * 256)
    assert PostprocessConfig(min_component_px=7).min_area_px(256 * 256) == 7


# --- postprocess steps -------------------------------------------------------------------


def test_threshold_only_when_other_steps_disabled() -> None:
    probs = np.array([[0.2, 0.5], [0.7, 0.49]], dtype=np.float32)
    config = PostprocessConfig(remove_small=False, fill_holes=False)
    expected = np.array([[False, True], [True, False]])
    np.testing.assert_array_equal(postprocess_mask(probs, config), expected)


def test_accepts_trailing_channel_and_returns_bool_2d() -> None:
    probs = as_probs(square(20, 20, 30))[..., None]
    mask = postprocess_mask(probs)
    assert mask.dtype == bool
    assert mask.shape == (SIZE, SIZE)


def test_small_blob_removed_large_kept() -> None:
    lesion, speck = square(20, 20, 30), square(80, 80, 3)  # 900 px and 9 px < 20 px
    probs = as_probs(lesion | speck)
    np.testing.assert_array_equal(postprocess_mask(probs), lesion)
    kept = postprocess_mask(probs, PostprocessConfig(remove_small=False))
    np.testing.assert_array_equal(kept, lesion | speck)


def test_min_component_px_overrides_fraction() -> None:
    probs = as_probs(square(20, 20, 30) | square(80, 80, 3))
    mask = postprocess_mask(probs, PostprocessConfig(min_component_px=5))
    assert mask[81, 81]


def test_hole_filled_and_switchable() -> None:
    ring = square(20, 20, 30) & ~square(30, 30, 10)
    probs = as_probs(ring)
    np.testing.assert_array_equal(postprocess_mask(probs), square(20, 20, 30))
    no_fill = postprocess_mask(probs, PostprocessConfig(fill_holes=False))
    np.testing.assert_array_equal(no_fill, ring)


def test_keep_largest_only() -> None:
    big, small = square(10, 10, 30), square(60, 60, 10)  # both above the minimum area
    probs = as_probs(big | small)
    np.testing.assert_array_equal(postprocess_mask(probs), big | small)
    largest = postprocess_mask(probs, PostprocessConfig(keep_largest_only=True))
    np.testing.assert_array_equal(largest, big)


def test_diagonal_pixels_are_one_component() -> None:
    diagonal = np.eye(SIZE, dtype=bool)[:30]  # 30 px touching only diagonally
    diagonal = np.pad(diagonal, ((0, SIZE - 30), (0, 0)))
    mask = postprocess_mask(as_probs(diagonal), PostprocessConfig(min_component_px=25))
    np.testing.assert_array_equal(mask, diagonal)


def test_empty_probability_map_gives_empty_mask() -> None:
    config = PostprocessConfig(keep_largest_only=True)
    assert not postprocess_mask(np.zeros((32, 32), dtype=np.float32), config).any()


@pytest.mark.parametrize("shape", [(4, 4, 3), (4,), (0, 4), (1, 4, 4, 1)])
def test_bad_probability_shape_raises(shape: tuple[int, ...]) -> None:
    with pytest.raises(ImageDimensionError, match=r"\(H, W\) or \(H, W, 1\)"):
        postprocess_mask(np.zeros(shape))


# --- metrics -----------------------------------------------------------------------------


def test_dice_and_iou_known_values() -> None:
    a = square(0, 0, 10)  # 100 px
    b = square(0, 5, 10)  # overlap 50 px
    assert dice_score(a, b) == pytest.approx(2 * 50 / 200)
    assert iou(a, b) == pytest.approx(50 / 150)
    assert dice_score(a, a) == 1.0
    assert dice_score(a, square(50, 50, 10)) == 0.0


def test_empty_mask_conventions() -> None:
    empty, lesion = np.zeros((SIZE, SIZE), bool), square(10, 10, 10)
    assert dice_score(empty, empty) == 1.0
    assert iou(empty, empty) == 1.0
    assert dice_score(lesion, empty) == 0.0
    assert dice_score(empty, lesion) == 0.0
    assert hd95(empty, empty) == 0.0
    assert math.isnan(hd95(lesion, empty))
    assert math.isnan(hd95(empty, lesion))


def test_metric_shape_mismatch_raises() -> None:
    with pytest.raises(ImageDimensionError, match="differs"):
        dice_score(np.zeros((4, 4)), np.zeros((4, 5)))


def test_hd95_identical_masks_is_zero() -> None:
    assert hd95(square(10, 10, 20), square(10, 10, 20)) == 0.0


@pytest.mark.parametrize("offset", [3, 5, 8])
def test_hd95_of_offset_squares_equals_offset(offset: int) -> None:
    assert hd95(square(20, 20, 30), square(20, 20 + offset, 30)) == pytest.approx(offset)


def test_hd95_spacing_scales_distances() -> None:
    a, b = square(20, 20, 30), square(20, 25, 30)
    assert hd95(a, b, spacing=0.5) == pytest.approx(2.5)


def test_hd95_ignores_single_far_outlier_pixel() -> None:
    a = square(20, 20, 40)
    b = a.copy()
    b[95, 95] = True  # one stray pixel far away: the max Hausdorff would be ~50
    assert hd95(a, b) < 1.0


def test_nanmean_skips_nan() -> None:
    assert nanmean([1.0, float("nan"), 3.0]) == 2.0
    assert math.isnan(nanmean([float("nan")]))
    assert math.isnan(nanmean([]))


# --- choose_threshold --------------------------------------------------------------------


def test_choose_threshold_picks_separating_threshold() -> None:
    # Lesion pixels at 0.6, background at 0.4 in image 1; image 2 is normal but has a
    # 0.55 false-alarm region. Only thresholds in (0.55, 0.6] give Dice 1 on both.
    lesion = square(20, 20, 30)
    probs_1 = np.where(lesion, 0.6, 0.4)
    probs_2 = np.where(square(60, 60, 20), 0.55, 0.1)
    empty = np.zeros((SIZE, SIZE), bool)
    candidates = [0.3, 0.5, 0.58, 0.7]
    threshold, dice = choose_threshold([probs_1, probs_2], [lesion, empty], candidates)
    assert threshold == 0.58
    assert dice == 1.0


def test_choose_threshold_default_candidates_and_partial_dice() -> None:
    lesion = square(20, 20, 30)
    probs = np.where(lesion, 0.35, 0.0)
    threshold, dice = choose_threshold([probs], [lesion])
    assert threshold == pytest.approx(0.1)  # first of the tied best candidates
    assert dice == 1.0
    # With a 0.2-probability halo around the lesion, thresholds above 0.2 drop it.
    halo = square(15, 15, 40)
    threshold, dice = choose_threshold([np.where(lesion, 0.35, np.where(halo, 0.2, 0.0))], [lesion])
    assert threshold == pytest.approx(0.25)
    assert dice == 1.0


def test_choose_threshold_with_postprocess_config() -> None:
    # A 0.8-probability speck beside the lesion: plain thresholding always keeps it,
    # post-processing removes it.
    lesion = square(20, 20, 30)
    probs = np.where(lesion | square(80, 80, 2), 0.8, 0.0)
    _, plain_dice = choose_threshold([probs], [lesion], [0.5])
    _, cleaned_dice = choose_threshold([probs], [lesion], [0.5], config=PostprocessConfig())
    assert plain_dice < 1.0
    assert cleaned_dice == 1.0


@pytest.mark.parametrize(
    ("probs", "masks", "candidates", "pattern"),
    [
        ([np.zeros((4, 4))], [], None, "1 probability maps but 0 masks"),
        ([], [], None, "at least one"),
        ([np.zeros((4, 4))], [np.zeros((4, 4))], [0.5, 1.0], "candidates"),
        ([np.zeros((4, 4))], [np.zeros((4, 4))], [], "candidates"),
    ],
)
def test_choose_threshold_validation(probs, masks, candidates, pattern: str) -> None:
    kwargs = {} if candidates is None else {"candidates": candidates}
    with pytest.raises(ConfigError, match=pattern):
        choose_threshold(probs, masks, **kwargs)
