from __future__ import annotations

import itertools
import math
from collections.abc import Callable

import keras
import numpy as np
import pytest
from keras import ops

from utils.errors import ConfigError
from utils.models.losses import (
    SEGMENTATION_LOSSES,
    DiceBCEBoundaryLoss,
    DiceBCELoss,
    DiceBCEPresenceLoss,
    DiceLoss,
    FocalTverskyLoss,
    boundary_dice_loss,
    dice_bce_boundary_loss,
    dice_bce_loss,
    dice_bce_presence_loss,
    dice_coefficient,
    dice_loss,
    focal_tversky_loss,
    get_segmentation_loss,
    iou_score,
    presence_loss,
    soft_boundary,
)

# One image of 8 pixels: TP = 2, FN = 2, FP = 1.
TRUE_8 = np.array([[1, 1, 1, 1, 0, 0, 0, 0]], dtype=np.float32)
PRED_8 = np.array([[1, 1, 0, 0, 1, 0, 0, 0]], dtype=np.float32)

LOSS_FUNCTIONS = [
    dice_loss,
    dice_bce_loss,
    dice_bce_presence_loss,
    dice_bce_boundary_loss,
    focal_tversky_loss,
]


def value(tensor) -> np.ndarray:
    return np.asarray(ops.convert_to_numpy(tensor), dtype=np.float64)


def mean_loss(loss_fn: Callable, y_true, y_pred, **kwargs) -> float:
    return float(value(loss_fn(y_true, y_pred, **kwargs)).mean())


def gradient_wrt_pred(loss_fn: Callable, y_true: np.ndarray, y_pred: np.ndarray) -> np.ndarray:
    """d mean(loss) / d y_pred with whichever backend Keras runs on."""
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        pred = tf.Variable(y_pred)
        with tf.GradientTape() as tape:
            loss = ops.mean(loss_fn(y_true, pred))
        return tape.gradient(loss, pred).numpy()
    if backend == "jax":
        import jax

        return np.asarray(jax.grad(lambda p: ops.mean(loss_fn(y_true, p)))(y_pred))
    pytest.skip(f"no gradient helper for backend {backend}")


# --- exact values ------------------------------------------------------------------------


def test_perfect_prediction() -> None:
    mask = np.zeros((2, 4, 4, 1), np.float32)
    mask[0, 1:3, 1:3] = 1
    mask[1, :2] = 1
    assert float(value(dice_coefficient(mask, mask))) == pytest.approx(1.0)
    assert float(value(iou_score(mask, mask))) == pytest.approx(1.0)
    assert mean_loss(dice_loss, mask, mask) == pytest.approx(0.0, abs=1e-7)
    assert mean_loss(focal_tversky_loss, mask, mask) == pytest.approx(0.0, abs=1e-5)
    # BCE of a hard 0/1 prediction is ~0 after the epsilon clipping.
    assert mean_loss(dice_bce_loss, mask, mask) == pytest.approx(0.0, abs=1e-5)


def test_disjoint_prediction() -> None:
    y_true = np.array([[1, 1, 0, 0]], np.float32)
    y_pred = np.array([[0, 0, 1, 1]], np.float32)
    # TP = 0, FN = FP = 2: Dice = smooth / (4 + smooth).
    assert float(value(dice_coefficient(y_true, y_pred))) == pytest.approx(1 / 5)
    assert float(value(dice_coefficient(y_true, y_pred, smooth=1e-6))) == pytest.approx(
        0.0, abs=1e-6
    )
    assert float(value(iou_score(y_true, y_pred))) == pytest.approx(1 / 5)


def test_partial_overlap_known_values() -> None:
    # Dice = (2*2 + 1) / (2*2 + 2 + 1 + 1) = 5/8; IoU = (2 + 1) / (2 + 2 + 1 + 1) = 1/2.
    assert float(value(dice_coefficient(TRUE_8, PRED_8))) == pytest.approx(5 / 8)
    assert float(value(iou_score(TRUE_8, PRED_8))) == pytest.approx(1 / 2)
    assert mean_loss(dice_loss, TRUE_8, PRED_8) == pytest.approx(3 / 8)
    # Tversky = (2 + 1) / (2 + 0.7*2 + 0.3*1 + 1) = 3 / 4.7.
    expected = (1 - 3 / 4.7) ** 0.75
    assert mean_loss(focal_tversky_loss, TRUE_8, PRED_8) == pytest.approx(expected, rel=1e-5)


def test_soft_prediction_dice() -> None:
    # TP = FN = FP = 0.5: Dice = (1 + 1) / (1 + 0.5 + 0.5 + 1) = 2/3.
    y_true = np.array([[1, 0]], np.float32)
    y_pred = np.array([[0.5, 0.5]], np.float32)
    assert float(value(dice_coefficient(y_true, y_pred))) == pytest.approx(2 / 3)


def test_dice_bce_known_value_and_weights() -> None:
    y_true = np.array([[1, 0]], np.float32)
    y_pred = np.array([[0.9, 0.1]], np.float32)
    dice = (2 * 0.9 + 1) / (2 * 0.9 + 0.1 + 0.1 + 1)
    bce = -math.log(0.9)
    assert mean_loss(dice_bce_loss, y_true, y_pred) == pytest.approx((1 - dice) + bce, rel=1e-5)
    weighted = mean_loss(dice_bce_loss, y_true, y_pred, dice_weight=0.0, bce_weight=2.0)
    assert weighted == pytest.approx(2 * bce, rel=1e-5)


def test_focal_tversky_reduces_to_dice_loss() -> None:
    # Equal only without smoothing (Tversky adds smooth to TP, Dice to 2 TP).
    options = {"alpha": 0.5, "beta": 0.5, "gamma": 1.0, "smooth": 1e-6}
    plain = mean_loss(focal_tversky_loss, TRUE_8, PRED_8, **options)
    assert plain == pytest.approx(mean_loss(dice_loss, TRUE_8, PRED_8, smooth=1e-6), rel=1e-5)


def test_focal_tversky_penalises_misses_more_than_false_alarms() -> None:
    y_true = np.array([[1, 1, 0, 0]], np.float32)
    missed = np.array([[1, 0, 0, 0]], np.float32)
    false_alarm = np.array([[1, 1, 1, 0]], np.float32)
    assert mean_loss(focal_tversky_loss, y_true, missed) > mean_loss(
        focal_tversky_loss, y_true, false_alarm
    )


def test_dice_is_per_image_then_averaged() -> None:
    # Image 1 perfect (Dice 1), image 2 disjoint (Dice 1/5): mean 0.6, whatever the sizes.
    y_true = np.array([[1, 1, 0, 0], [1, 1, 0, 0]], np.float32)
    y_pred = np.array([[1, 1, 0, 0], [0, 0, 1, 1]], np.float32)
    assert float(value(dice_coefficient(y_true, y_pred))) == pytest.approx(0.6)
    np.testing.assert_allclose(value(dice_loss(y_true, y_pred)), [0.0, 0.8], atol=1e-6)


# --- behaviour ---------------------------------------------------------------------------


@pytest.mark.parametrize("loss_fn", LOSS_FUNCTIONS)
def test_loss_decreases_as_prediction_improves(loss_fn: Callable) -> None:
    y_true = np.zeros((1, 8, 8, 1), np.float32)
    y_true[0, 2:6, 2:6] = 1
    losses = []
    for quality in (0.1, 0.3, 0.5, 0.7, 0.9, 0.99):
        y_pred = y_true * quality + (1 - y_true) * (1 - quality)
        losses.append(mean_loss(loss_fn, y_true, y_pred))
    assert all(a > b for a, b in itertools.pairwise(losses)), losses


@pytest.mark.parametrize("loss_fn", [*LOSS_FUNCTIONS, dice_coefficient, iou_score])
def test_all_zero_inputs_are_finite(loss_fn: Callable) -> None:
    zeros = np.zeros((2, 4, 4, 1), np.float32)
    result = value(loss_fn(zeros, zeros))
    assert np.all(np.isfinite(result))
    if loss_fn in (dice_coefficient, iou_score):
        assert float(result) == pytest.approx(1.0)  # empty/empty counts as perfect


@pytest.mark.parametrize("loss_fn", LOSS_FUNCTIONS)
@pytest.mark.parametrize("case", ["zeros", "perfect"])
def test_gradients_are_finite(loss_fn: Callable, case: str) -> None:
    y_true = np.zeros((1, 4, 4, 1), np.float32)
    if case == "perfect":
        y_true[0, 1:3, 1:3] = 1
    gradient = gradient_wrt_pred(loss_fn, y_true, y_true.copy())
    assert np.all(np.isfinite(gradient))


def test_accepts_bool_masks_and_float16_predictions() -> None:
    y_true = TRUE_8.astype(bool)
    y_pred = PRED_8.astype(np.float16)
    assert float(value(dice_coefficient(y_true, y_pred))) == pytest.approx(5 / 8)


# --- classes, registry, serialisation ----------------------------------------------------


@pytest.mark.parametrize(
    ("loss_class", "loss_fn"),
    [
        (DiceLoss, dice_loss),
        (DiceBCELoss, dice_bce_loss),
        (DiceBCEPresenceLoss, dice_bce_presence_loss),
        (FocalTverskyLoss, focal_tversky_loss),
    ],
)
def test_loss_class_matches_function(loss_class: type, loss_fn: Callable) -> None:
    y_true = np.stack([TRUE_8, 1 - TRUE_8])
    y_pred = np.stack([PRED_8 * 0.8, PRED_8 * 0.3])
    expected = mean_loss(loss_fn, y_true, y_pred)
    assert float(value(loss_class()(y_true, y_pred))) == pytest.approx(expected, rel=1e-6)


def test_loss_config_round_trip() -> None:
    loss = FocalTverskyLoss(alpha=0.6, beta=0.4, gamma=0.5, smooth=2.0)
    config = loss.get_config()
    assert {k: config[k] for k in ("alpha", "beta", "gamma", "smooth")} == {
        "alpha": 0.6,
        "beta": 0.4,
        "gamma": 0.5,
        "smooth": 2.0,
    }
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(loss))
    assert isinstance(restored, FocalTverskyLoss)
    assert restored.get_config() == config


@pytest.mark.parametrize(
    "function",
    [
        dice_coefficient,
        iou_score,
        dice_bce_loss,
        presence_loss,
        dice_bce_presence_loss,
        boundary_dice_loss,
        dice_bce_boundary_loss,
    ],
)
def test_functions_are_registered(function: Callable) -> None:
    name = keras.saving.get_registered_name(function)
    assert name == f"tumorlens>{function.__name__}"
    assert keras.saving.get_registered_object(name) is function


@pytest.mark.parametrize("name", sorted(SEGMENTATION_LOSSES))
def test_get_segmentation_loss(name: str) -> None:
    assert isinstance(get_segmentation_loss(name), SEGMENTATION_LOSSES[name])


def test_get_segmentation_loss_passes_options() -> None:
    assert get_segmentation_loss("focal_tversky", alpha=0.9).get_config()["alpha"] == 0.9


def test_unknown_loss_lists_valid_names() -> None:
    valid = "dice, dice_bce, dice_bce_boundary, dice_bce_presence, focal_tversky"
    with pytest.raises(ConfigError, match=rf"'nope'.*{valid}"):
        get_segmentation_loss("nope")


def test_bad_loss_option_raises_config_error() -> None:
    with pytest.raises(ConfigError, match="dice"):
        get_segmentation_loss("dice", alpha=0.3)


# --- the presence term ---------------------------------------------------------------------


def _normal_with_blob(blob_probability: float) -> tuple[np.ndarray, np.ndarray]:
    """A lesion-free 32x32 image whose prediction has one 3-pixel blob."""
    y_true = np.zeros((1, 32, 32, 1), np.float32)
    y_pred = np.full_like(y_true, 0.01)
    y_pred[0, 5, 5:8] = blob_probability
    return y_true, y_pred


def test_presence_loss_known_value() -> None:
    # k = ceil(0.002 * 1024) = 3 pixels: the blob; target "no lesion".
    y_true, y_pred = _normal_with_blob(0.9)
    assert mean_loss(presence_loss, y_true, y_pred) == pytest.approx(-math.log(0.1), rel=1e-5)
    # A 0.05 fraction makes k = 52: the blob is diluted among 49 quiet pixels.
    diluted = (3 * 0.9 + 49 * 0.01) / 52
    assert mean_loss(presence_loss, y_true, y_pred, min_area_fraction=0.05) == pytest.approx(
        -math.log(1 - diluted), rel=1e-5
    )


def test_presence_loss_rewards_a_confident_lesion() -> None:
    y_true = np.zeros((1, 32, 32, 1), np.float32)
    y_true[0, 10:20, 10:20] = 1
    strong = np.where(y_true > 0, 0.99, 0.01).astype(np.float32)
    weak = np.where(y_true > 0, 0.3, 0.01).astype(np.float32)
    assert mean_loss(presence_loss, y_true, strong) < 0.02
    assert mean_loss(presence_loss, y_true, weak) == pytest.approx(-math.log(0.3), rel=1e-5)


def test_presence_term_sees_false_blobs_that_dice_bce_ignores() -> None:
    quiet = _normal_with_blob(0.01)
    blob = _normal_with_blob(0.95)
    dice_bce_change = mean_loss(dice_bce_loss, *blob) - mean_loss(dice_bce_loss, *quiet)
    presence_change = mean_loss(presence_loss, *blob) - mean_loss(presence_loss, *quiet)
    assert dice_bce_change < 0.1  # Dice is saturated on an empty mask
    assert presence_change > 2.0


def test_dice_bce_presence_is_the_weighted_sum() -> None:
    y_true = np.stack([TRUE_8, 0 * TRUE_8])
    y_pred = np.stack([PRED_8 * 0.8, PRED_8 * 0.3])
    expected = mean_loss(dice_bce_loss, y_true, y_pred) + 0.5 * mean_loss(
        presence_loss, y_true, y_pred
    )
    assert mean_loss(dice_bce_presence_loss, y_true, y_pred, presence_weight=0.5) == pytest.approx(
        expected, rel=1e-6
    )


def test_presence_loss_rejects_unknown_image_size() -> None:
    symbolic = keras.KerasTensor((None, None, None, 1))
    with pytest.raises(ConfigError, match=r"fixed size.*\(None, None, None, 1\)"):
        presence_loss(symbolic, symbolic)


@pytest.mark.parametrize("fraction", [0.0, -0.1, 1.5])
def test_presence_loss_class_rejects_bad_fraction(fraction: float) -> None:
    with pytest.raises(ConfigError, match=rf"min_area_fraction.*\(0, 1\].*{fraction}"):
        DiceBCEPresenceLoss(min_area_fraction=fraction)


def test_presence_loss_class_rejects_a_negative_weight() -> None:
    with pytest.raises(ConfigError, match=r"presence_weight must be zero or positive.*-0\.5"):
        DiceBCEPresenceLoss(presence_weight=-0.5)


@pytest.mark.parametrize("fraction", [0.0, 2.0])
def test_presence_loss_function_rejects_bad_fraction(fraction: float) -> None:
    y_true, y_pred = _normal_with_blob(0.9)
    with pytest.raises(ConfigError, match=rf"min_area_fraction.*\(0, 1\].*{fraction}"):
        presence_loss(y_true, y_pred, min_area_fraction=fraction)


# --- boundary term -----------------------------------------------------------------------


def _square(size: int = 16, start: int = 4, stop: int = 12) -> np.ndarray:
    mask = np.zeros((1, size, size, 1), np.float32)
    mask[0, start:stop, start:stop] = 1
    return mask


def test_soft_boundary_of_a_square_is_its_two_pixel_outline_band() -> None:
    band = value(soft_boundary(_square()))[0, ..., 0]
    expected = np.zeros((16, 16))
    expected[3:13, 3:13] = 1  # one pixel outside the square ...
    expected[5:11, 5:11] = 0  # ... and one pixel inside it
    np.testing.assert_array_equal(band, expected)


def test_boundary_loss_known_values() -> None:
    square = _square()
    assert mean_loss(boundary_dice_loss, square, square) == pytest.approx(0.0, abs=1e-6)
    assert mean_loss(boundary_dice_loss, square * 0, square * 0) == pytest.approx(0.0, abs=1e-6)
    # The square one pixel smaller: bands of 64 and 48 pixels sharing 28.
    smaller = _square(start=5, stop=11)
    expected = 1 - (2 * 28 + 1) / (64 + 48 + 1)
    assert mean_loss(boundary_dice_loss, square, smaller) == pytest.approx(expected, rel=1e-6)


def test_boundary_term_sees_a_lost_spike_that_region_dice_barely_notices() -> None:
    spiky = _square(size=32, start=10, stop=22)
    spiky[0, 4:10, 15:17] = 1  # a thin spicule on top of the lesion
    smooth = _square(size=32, start=10, stop=22)
    region = mean_loss(dice_loss, spiky, smooth)
    outline = mean_loss(boundary_dice_loss, spiky, smooth)
    assert region < 0.05
    assert outline > 2.5 * region  # 0.11 against 0.04


def test_dice_bce_boundary_is_the_weighted_sum() -> None:
    y_true = np.concatenate([_square(), _square() * 0])
    y_pred = np.concatenate([_square(start=5) * 0.8, _square() * 0.3])
    expected = mean_loss(dice_bce_loss, y_true, y_pred) + 0.5 * mean_loss(
        boundary_dice_loss, y_true, y_pred
    )
    loss = mean_loss(dice_bce_boundary_loss, y_true, y_pred, boundary_weight=0.5)
    assert loss == pytest.approx(expected, rel=1e-6)
    assert float(value(DiceBCEBoundaryLoss(boundary_weight=0.5)(y_true, y_pred))) == (
        pytest.approx(expected, rel=1e-6)
    )


@pytest.mark.parametrize("width", [1, 2, 4, 3.5])
def test_boundary_loss_rejects_a_bad_width(width: float) -> None:
    with pytest.raises(ConfigError, match=rf"odd integer >= 3.*{width}"):
        DiceBCEBoundaryLoss(width=width)
    with pytest.raises(ConfigError, match=rf"odd integer >= 3.*{width}"):
        boundary_dice_loss(_square(), _square(), width=width)
    with pytest.raises(ConfigError, match=rf"odd integer >= 3.*{width}"):
        soft_boundary(_square(), width=width)


def test_boundary_loss_class_rejects_a_negative_weight() -> None:
    with pytest.raises(ConfigError, match=r"boundary_weight must be zero or positive.*-1"):
        DiceBCEBoundaryLoss(boundary_weight=-1.0)
