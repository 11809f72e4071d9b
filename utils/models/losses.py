"""Segmentation losses and metrics written with ``keras.ops`` (any Keras 3 backend).

Conventions shared by every function here:

* ``y_true`` is a binary mask and ``y_pred`` a probability map in [0, 1] (the
  ``seg_probs`` output), both shaped (N, H, W, C) or any (N, ...) shape; they are
  cast to float32 first, so float16 predictions under mixed precision are fine.
* Overlap scores are computed **per image** (summing over every non-batch axis) and
  only then averaged over the batch, so a large lesion cannot drown out a small one.
* ``smooth`` is added to numerator and denominator. Besides avoiding 0/0, it defines
  the score of an image whose mask and prediction are both empty: Dice = IoU =
  smooth / smooth = 1 (a correct "no lesion" answer is a perfect answer).

Loss *functions* return one value per image (shape (N,)) so Keras can apply sample
weights and its batch reduction; *metrics* return the batch mean. Everything is
registered under the ``tumorlens`` package so saved ``.keras`` models reload without
``custom_objects``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import keras
from keras import ops

from utils.errors import ConfigError

__all__ = [
    "SEGMENTATION_LOSSES",
    "SEGMENTATION_METRICS",
    "DiceBCEBoundaryLoss",
    "DiceBCELoss",
    "DiceBCEPresenceLoss",
    "DiceLoss",
    "FocalTverskyLoss",
    "boundary_dice_loss",
    "dice_bce_boundary_loss",
    "dice_bce_loss",
    "dice_bce_presence_loss",
    "dice_coefficient",
    "dice_loss",
    "focal_tversky_loss",
    "get_segmentation_loss",
    "iou_score",
    "presence_loss",
    "soft_boundary",
]

_PACKAGE = "tumorlens"


def _flatten_pair(y_true: Any, y_pred: Any) -> tuple[Any, Any]:
    """Cast both tensors to float32 and flatten them to (N, pixels)."""
    y_true = ops.cast(y_true, "float32")
    y_pred = ops.cast(y_pred, "float32")
    batch = ops.shape(y_pred)[0]
    return ops.reshape(y_true, (batch, -1)), ops.reshape(y_pred, (batch, -1))


def _per_image_overlap(y_true: Any, y_pred: Any) -> tuple[Any, Any, Any]:
    """Soft true positives, false negatives and false positives per image, each (N,)."""
    y_true, y_pred = _flatten_pair(y_true, y_pred)
    true_pos = ops.sum(y_true * y_pred, axis=1)
    false_neg = ops.sum(y_true * (1.0 - y_pred), axis=1)
    false_pos = ops.sum((1.0 - y_true) * y_pred, axis=1)
    return true_pos, false_neg, false_pos


def _per_image_dice(y_true: Any, y_pred: Any, smooth: float) -> Any:
    """Soft Dice (2TP + s) / (2TP + FN + FP + s) of each image, shape (N,)."""
    true_pos, false_neg, false_pos = _per_image_overlap(y_true, y_pred)
    return (2.0 * true_pos + smooth) / (2.0 * true_pos + false_neg + false_pos + smooth)


def _per_image_bce(y_true: Any, y_pred: Any) -> Any:
    """Mean binary cross-entropy over the pixels of each image, shape (N,).

    ``ops.binary_crossentropy`` clips probabilities away from 0 and 1, so log(0)
    never occurs.
    """
    y_true, y_pred = _flatten_pair(y_true, y_pred)
    return ops.mean(ops.binary_crossentropy(y_true, y_pred), axis=1)


@keras.saving.register_keras_serializable(package=_PACKAGE)
def dice_coefficient(y_true: Any, y_pred: Any, smooth: float = 1.0) -> Any:
    """Soft Dice coefficient, computed per image and averaged over the batch.

    An image with an empty mask and an all-zero prediction scores 1 thanks to
    ``smooth``; a prediction disjoint from the mask scores about ``smooth / (|A|+|B|)``.

    Args:
        y_true: Binary masks (N, ...).
        y_pred: Probabilities in [0, 1], same shape.
        smooth: Additive smoothing of numerator and denominator.

    Returns:
        Scalar tensor in [0, 1]; higher is better.
    """
    return ops.mean(_per_image_dice(y_true, y_pred, smooth))


@keras.saving.register_keras_serializable(package=_PACKAGE)
def iou_score(y_true: Any, y_pred: Any, smooth: float = 1.0) -> Any:
    """Soft IoU (Jaccard) TP / (TP + FN + FP), per image, averaged over the batch.

    Empty mask and empty prediction score 1, as for :func:`dice_coefficient`.

    Args:
        y_true: Binary masks (N, ...).
        y_pred: Probabilities in [0, 1], same shape.
        smooth: Additive smoothing of numerator and denominator.

    Returns:
        Scalar tensor in [0, 1]; higher is better.
    """
    true_pos, false_neg, false_pos = _per_image_overlap(y_true, y_pred)
    return ops.mean((true_pos + smooth) / (true_pos + false_neg + false_pos + smooth))


@keras.saving.register_keras_serializable(package=_PACKAGE)
def dice_loss(y_true: Any, y_pred: Any, smooth: float = 1.0) -> Any:
    """Soft Dice loss, 1 - Dice of each image.

    Args:
        y_true: Binary masks (N, ...).
        y_pred: Probabilities in [0, 1], same shape.
        smooth: Additive smoothing (see :func:`dice_coefficient`).

    Returns:
        Per-image losses, shape (N,), in [0, 1].
    """
    return 1.0 - _per_image_dice(y_true, y_pred, smooth)


@keras.saving.register_keras_serializable(package=_PACKAGE)
def dice_bce_loss(
    y_true: Any,
    y_pred: Any,
    dice_weight: float = 1.0,
    bce_weight: float = 1.0,
    smooth: float = 1.0,
) -> Any:
    """Weighted sum of the Dice loss and the pixel-mean binary cross-entropy.

    Dice handles the foreground/background imbalance of small lesions; BCE gives
    smooth, well-scaled per-pixel gradients early in training.

    Args:
        y_true: Binary masks (N, ...).
        y_pred: Probabilities in [0, 1], same shape.
        dice_weight: Weight of the Dice term.
        bce_weight: Weight of the cross-entropy term.
        smooth: Dice smoothing.

    Returns:
        Per-image losses, shape (N,).
    """
    return dice_weight * dice_loss(y_true, y_pred, smooth) + bce_weight * _per_image_bce(
        y_true, y_pred
    )


def _check_non_negative(option: str, weight: float) -> None:
    """Refuse a negative (or NaN) loss-term weight, which would reward the error."""
    if not weight >= 0.0:
        raise ConfigError(f"{option} must be zero or positive; received {weight!r}.")


def _check_area_fraction(min_area_fraction: float) -> None:
    """Refuse a presence blob size outside (0, 1] of the image."""
    if not 0.0 < min_area_fraction <= 1.0:
        raise ConfigError(f"min_area_fraction must be in (0, 1]; received {min_area_fraction!r}.")


@keras.saving.register_keras_serializable(package=_PACKAGE)
def presence_loss(y_true: Any, y_pred: Any, min_area_fraction: float = 0.002) -> Any:
    """Image-level cross-entropy of "is there a lesion?" read from the probability map.

    The presence score is the mean of the image's ``k`` most probable pixels, with ``k``
    the smallest component that post-processing keeps (``min_area_fraction`` of the
    image, 0.002 as in :class:`utils.postprocess.PostprocessConfig`): a mask survives
    post-processing roughly when that score passes the threshold. The target is 1 when
    the mask has any lesion pixel, else 0.

    Why: on an empty mask the per-image Dice loss is saturated near 1 whatever the
    network does (1 / (1 + predicted area)), so its gradient vanishes, and the
    pixel-mean BCE barely notices a small false blob. Normal images therefore hardly
    teach the segmenter to stay silent; this term does.

    Args:
        y_true: Binary masks (N, H, W, C) with static spatial dimensions.
        y_pred: Probabilities in [0, 1], same shape.
        min_area_fraction: ``k`` as a fraction of the pixels per image, in (0, 1].

    Returns:
        Per-image losses, shape (N,).
    """
    _check_area_fraction(min_area_fraction)
    spatial = tuple(y_pred.shape[1:])
    if any(size is None for size in spatial):
        raise ConfigError(
            f"presence_loss needs images of a fixed size (static H and W); received "
            f"shape {tuple(y_pred.shape)}."
        )
    pixels = math.prod(spatial)
    y_true, y_pred = _flatten_pair(y_true, y_pred)
    k = max(1, math.ceil(min_area_fraction * pixels))
    top_values, _ = ops.top_k(y_pred, k, sorted=False)
    score = ops.mean(top_values, axis=1)
    has_lesion = ops.cast(ops.max(y_true, axis=1) > 0.5, "float32")
    return ops.binary_crossentropy(has_lesion, score)


@keras.saving.register_keras_serializable(package=_PACKAGE)
def dice_bce_presence_loss(
    y_true: Any,
    y_pred: Any,
    dice_weight: float = 1.0,
    bce_weight: float = 1.0,
    presence_weight: float = 1.0,
    min_area_fraction: float = 0.002,
    smooth: float = 1.0,
) -> Any:
    """:func:`dice_bce_loss` plus ``presence_weight`` × :func:`presence_loss`.

    Meant for training sets with lesion-free images, to lower the rate at which the
    segmenter outlines something on a normal image.

    Returns:
        Per-image losses, shape (N,).
    """
    return dice_bce_loss(
        y_true, y_pred, dice_weight=dice_weight, bce_weight=bce_weight, smooth=smooth
    ) + presence_weight * presence_loss(y_true, y_pred, min_area_fraction=min_area_fraction)


def _check_boundary_width(width: int) -> None:
    """Refuse a structuring element that is even or too small to draw an outline."""
    if int(width) != width or width < 3 or width % 2 == 0:
        raise ConfigError(f"boundary width must be an odd integer >= 3; received {width!r}.")


def soft_boundary(masks: Any, width: int = 3) -> Any:
    """Soft morphological gradient (dilation minus erosion) of masks (N, H, W, C).

    On a binary mask this is the band of pixels within ``width // 2`` of the outline;
    on a probability map it is a differentiable version of that band, so boundary
    terms can be written with the same per-image overlap as Dice.

    Raises:
        ConfigError: ``width`` is not an odd integer of at least 3.
    """
    _check_boundary_width(width)
    masks = ops.cast(masks, "float32")
    dilated = ops.max_pool(masks, pool_size=width, strides=1, padding="same")
    eroded = -ops.max_pool(-masks, pool_size=width, strides=1, padding="same")
    return dilated - eroded


@keras.saving.register_keras_serializable(package=_PACKAGE)
def boundary_dice_loss(y_true: Any, y_pred: Any, width: int = 3, smooth: float = 1.0) -> Any:
    """1 - Dice of the outline bands of mask and prediction (see :func:`soft_boundary`).

    Why: region Dice is dominated by the lesion's interior, so a smooth blob that
    cuts across a spiculated or lobulated margin loses little. Scoring only the band
    around each outline makes the margin itself the target, which is what the margin
    descriptors (roughness, lobulations, solidity) read. An image with an empty mask
    and an empty prediction scores 0, as with :func:`dice_loss`.

    Args:
        y_true: Binary masks (N, H, W, C).
        y_pred: Probabilities in [0, 1], same shape.
        width: Side of the square structuring element (odd, >= 3).
        smooth: Additive smoothing.

    Returns:
        Per-image losses, shape (N,), in [0, 1].
    """
    return dice_loss(soft_boundary(y_true, width), soft_boundary(y_pred, width), smooth)


@keras.saving.register_keras_serializable(package=_PACKAGE)
def dice_bce_boundary_loss(
    y_true: Any,
    y_pred: Any,
    dice_weight: float = 1.0,
    bce_weight: float = 1.0,
    boundary_weight: float = 1.0,
    width: int = 3,
    smooth: float = 1.0,
) -> Any:
    """:func:`dice_bce_loss` plus ``boundary_weight`` × :func:`boundary_dice_loss`.

    Returns:
        Per-image losses, shape (N,).
    """
    return dice_bce_loss(
        y_true, y_pred, dice_weight=dice_weight, bce_weight=bce_weight, smooth=smooth
    ) + boundary_weight * boundary_dice_loss(y_true, y_pred, width=width, smooth=smooth)


@keras.saving.register_keras_serializable(package=_PACKAGE)
def focal_tversky_loss(
    y_true: Any,
    y_pred: Any,
    alpha: float = 0.7,
    beta: float = 0.3,
    gamma: float = 0.75,
    smooth: float = 1.0,
) -> Any:
    """Focal Tversky loss (Abraham & Khan, 2019): (1 - TI) ** gamma per image.

    Tversky index TI = (TP + s) / (TP + alpha * FN + beta * FP + s). With
    ``alpha > beta`` missed lesion pixels cost more than false alarms (favours
    recall); ``alpha = beta = 0.5`` gives Dice. ``gamma < 1`` raises the loss of
    images that are already fairly good, focusing training on hard, small lesions.

    Args:
        y_true: Binary masks (N, ...).
        y_pred: Probabilities in [0, 1], same shape.
        alpha: Weight of false negatives.
        beta: Weight of false positives.
        gamma: Focal exponent applied to 1 - TI.
        smooth: Additive smoothing.

    Returns:
        Per-image losses, shape (N,), in [0, 1].
    """
    true_pos, false_neg, false_pos = _per_image_overlap(y_true, y_pred)
    tversky = (true_pos + smooth) / (true_pos + alpha * false_neg + beta * false_pos + smooth)
    # x ** 0.75 has an infinite slope at 0; flooring 1 - TI keeps the gradient finite
    # (and exactly zero) for a perfect prediction.
    return ops.power(ops.maximum(1.0 - tversky, keras.config.epsilon()), gamma)


class _FunctionLoss(keras.losses.Loss):
    """Base of the loss classes: forwards to a loss function with stored options."""

    loss_fn: Callable[..., Any]

    def __init__(self, name: str, reduction: str = "sum_over_batch_size", **options: float):
        super().__init__(name=name, reduction=reduction)
        self.options = options

    def call(self, y_true: Any, y_pred: Any) -> Any:
        """Per-image loss values, shape (N,)."""
        return type(self).loss_fn(y_true, y_pred, **self.options)

    def get_config(self) -> dict[str, Any]:
        """Constructor arguments, so the loss is saved with the model."""
        return {**super().get_config(), **self.options}


@keras.saving.register_keras_serializable(package=_PACKAGE)
class DiceLoss(_FunctionLoss):
    """Loss-class form of :func:`dice_loss`."""

    loss_fn = staticmethod(dice_loss)

    def __init__(
        self, smooth: float = 1.0, name: str = "dice_loss", reduction: str = "sum_over_batch_size"
    ):
        super().__init__(name=name, reduction=reduction, smooth=smooth)


@keras.saving.register_keras_serializable(package=_PACKAGE)
class DiceBCELoss(_FunctionLoss):
    """Loss-class form of :func:`dice_bce_loss` (equal Dice and BCE weights by default)."""

    loss_fn = staticmethod(dice_bce_loss)

    def __init__(
        self,
        dice_weight: float = 1.0,
        bce_weight: float = 1.0,
        smooth: float = 1.0,
        name: str = "dice_bce_loss",
        reduction: str = "sum_over_batch_size",
    ):
        super().__init__(
            name=name,
            reduction=reduction,
            dice_weight=dice_weight,
            bce_weight=bce_weight,
            smooth=smooth,
        )


@keras.saving.register_keras_serializable(package=_PACKAGE)
class DiceBCEPresenceLoss(_FunctionLoss):
    """Loss-class form of :func:`dice_bce_presence_loss`."""

    loss_fn = staticmethod(dice_bce_presence_loss)

    def __init__(
        self,
        dice_weight: float = 1.0,
        bce_weight: float = 1.0,
        presence_weight: float = 1.0,
        min_area_fraction: float = 0.002,
        smooth: float = 1.0,
        name: str = "dice_bce_presence_loss",
        reduction: str = "sum_over_batch_size",
    ):
        _check_area_fraction(min_area_fraction)
        _check_non_negative("presence_weight", presence_weight)
        super().__init__(
            name=name,
            reduction=reduction,
            dice_weight=dice_weight,
            bce_weight=bce_weight,
            presence_weight=presence_weight,
            min_area_fraction=min_area_fraction,
            smooth=smooth,
        )


@keras.saving.register_keras_serializable(package=_PACKAGE)
class DiceBCEBoundaryLoss(_FunctionLoss):
    """Loss-class form of :func:`dice_bce_boundary_loss`."""

    loss_fn = staticmethod(dice_bce_boundary_loss)

    def __init__(
        self,
        dice_weight: float = 1.0,
        bce_weight: float = 1.0,
        boundary_weight: float = 1.0,
        width: int = 3,
        smooth: float = 1.0,
        name: str = "dice_bce_boundary_loss",
        reduction: str = "sum_over_batch_size",
    ):
        _check_boundary_width(width)
        _check_non_negative("boundary_weight", boundary_weight)
        super().__init__(
            name=name,
            reduction=reduction,
            dice_weight=dice_weight,
            bce_weight=bce_weight,
            boundary_weight=boundary_weight,
            width=width,
            smooth=smooth,
        )


@keras.saving.register_keras_serializable(package=_PACKAGE)
class FocalTverskyLoss(_FunctionLoss):
    """Loss-class form of :func:`focal_tversky_loss`."""

    loss_fn = staticmethod(focal_tversky_loss)

    def __init__(
        self,
        alpha: float = 0.7,
        beta: float = 0.3,
        gamma: float = 0.75,
        smooth: float = 1.0,
        name: str = "focal_tversky_loss",
        reduction: str = "sum_over_batch_size",
    ):
        super().__init__(
            name=name, reduction=reduction, alpha=alpha, beta=beta, gamma=gamma, smooth=smooth
        )


#: Loss classes by the name used in training configs.
SEGMENTATION_LOSSES: dict[str, type[keras.losses.Loss]] = {
    "dice": DiceLoss,
    "dice_bce": DiceBCELoss,
    "dice_bce_boundary": DiceBCEBoundaryLoss,
    "dice_bce_presence": DiceBCEPresenceLoss,
    "focal_tversky": FocalTverskyLoss,
}

#: Metrics to pass to ``model.compile(metrics=...)`` for segmentation models.
SEGMENTATION_METRICS: tuple[Callable[..., Any], ...] = (dice_coefficient, iou_score)


def get_segmentation_loss(name: str, **options: float) -> keras.losses.Loss:
    """Instantiate a segmentation loss by name.

    Args:
        name: One of the keys of :data:`SEGMENTATION_LOSSES`.
        **options: Constructor options of that loss (e.g. ``alpha`` for focal Tversky).

    Returns:
        A ``keras.losses.Loss`` instance.

    Raises:
        ConfigError: ``name`` is unknown or an option is not accepted by that loss.
    """
    loss_class = SEGMENTATION_LOSSES.get(name)
    if loss_class is None:
        valid = ", ".join(sorted(SEGMENTATION_LOSSES))
        raise ConfigError(f"Unknown segmentation loss {name!r}; valid names: {valid}.")
    try:
        return loss_class(**options)
    except TypeError as error:
        raise ConfigError(f"Invalid options for segmentation loss {name!r}: {error}") from error
