"""Turning lesion probability maps into clean masks, and numpy overlap metrics.

The steps of :func:`postprocess_mask`, in order, each switchable in
:class:`PostprocessConfig`:

1. **Threshold**: pixels with probability >= ``threshold`` are foreground.
2. **Remove small components**: 8-connected foreground blobs smaller than the
   minimum area are dropped (speckle the network mistakes for lesion).
3. **Fill holes**: background regions fully enclosed by foreground become
   foreground (lesions are solid; dark necrotic or cystic centres are part of them).
4. **Keep largest only** (off by default): keep just the largest component, for
   datasets with exactly one lesion per image.

The metrics (:func:`dice_score`, :func:`iou`, :func:`hd95`) work on boolean masks
and are what evaluation reports. This module uses numpy/scipy only, no Keras.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace

import numpy as np
from scipy import ndimage

from utils.errors import ConfigError, ImageDimensionError

__all__ = [
    "DEFAULT_THRESHOLD_CANDIDATES",
    "PostprocessConfig",
    "choose_threshold",
    "dice_score",
    "fill_holes",
    "hd95",
    "iou",
    "keep_largest_component",
    "nanmean",
    "postprocess_mask",
    "remove_small_components",
]

# 8-connectivity: diagonal neighbours belong to the same blob, so thin oblique
# lesion edges are not split into fragments.
_EIGHT_CONNECTED = np.ones((3, 3), dtype=bool)

DEFAULT_THRESHOLD_CANDIDATES: np.ndarray = np.linspace(0.1, 0.9, 17)


@dataclass(frozen=True)
class PostprocessConfig:
    """Options of :func:`postprocess_mask`.

    Attributes:
        threshold: Probability at or above which a pixel is lesion; in (0, 1).
        remove_small: Whether to drop small connected components.
        min_component_area_fraction: Minimum component area as a fraction of the image
            area (0.002 = 0.2 %, i.e. 131 px at 256x256), so the rule does not depend on
            the image resolution. Used when ``min_component_px`` is None.
        min_component_px: Minimum component area in pixels; overrides the fraction.
        fill_holes: Whether to fill holes enclosed by a component.
        keep_largest_only: Whether to keep only the largest component.
    """

    threshold: float = 0.5
    remove_small: bool = True
    min_component_area_fraction: float = 0.002
    min_component_px: int | None = None
    fill_holes: bool = True
    keep_largest_only: bool = False

    def __post_init__(self) -> None:
        """Validate every option.

        Raises:
            ConfigError: An option is out of its allowed range.
        """
        if not isinstance(self.threshold, int | float) or not 0.0 < self.threshold < 1.0:
            raise ConfigError(
                f"threshold must be strictly between 0 and 1; received {self.threshold!r}."
            )
        fraction = self.min_component_area_fraction
        if not isinstance(fraction, int | float) or not 0.0 <= fraction < 1.0:
            raise ConfigError(
                f"min_component_area_fraction must be in [0, 1) (a fraction of the image "
                f"area); received {fraction!r}."
            )
        min_px = self.min_component_px
        if min_px is not None and (
            isinstance(min_px, bool) or not isinstance(min_px, int) or min_px < 0
        ):
            raise ConfigError(
                f"min_component_px must be a non-negative integer or None; received {min_px!r}."
            )
        for option in ("remove_small", "fill_holes", "keep_largest_only"):
            value = getattr(self, option)
            if not isinstance(value, bool):
                raise ConfigError(f"{option} must be True or False; received {value!r}.")

    def min_area_px(self, image_area: int) -> int:
        """Minimum component area in pixels for an image of ``image_area`` pixels."""
        if self.min_component_px is not None:
            return self.min_component_px
        return math.ceil(self.min_component_area_fraction * image_area)


def _as_2d(array: np.ndarray, what: str) -> np.ndarray:
    """Return ``array`` as (H, W), accepting a trailing channel axis of size 1."""
    array = np.asarray(array)
    if array.ndim == 3 and array.shape[-1] == 1:
        array = array[..., 0]
    if array.ndim != 2 or 0 in array.shape:
        raise ImageDimensionError(
            f"{what} must have shape (H, W) or (H, W, 1) with non-zero H and W; "
            f"received shape {array.shape}."
        )
    return array


def _check_same_shape(pred: np.ndarray, true: np.ndarray) -> None:
    if pred.shape != true.shape:
        raise ImageDimensionError(
            f"prediction shape {pred.shape} differs from ground-truth shape {true.shape}."
        )


def _foreground_pair(pred: np.ndarray, true: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Both masks as (H, W) booleans (non-zero is foreground), checked to match in shape.

    Raises:
        ImageDimensionError: A mask is not (H, W) or (H, W, 1), or the shapes differ.
    """
    pred, true = _as_2d(pred, "pred") != 0, _as_2d(true, "true") != 0
    _check_same_shape(pred, true)
    return pred, true


def _overlap_ratio(overlap: float, reference: int) -> float:
    """``overlap / reference``, or 1.0 when ``reference`` is 0.

    ``reference`` is 0 only when both masks are empty: a correctly predicted "no lesion"
    is a perfect score.
    """
    if reference == 0:
        return 1.0
    return overlap / reference


def _label(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """8-connected labels of ``mask`` and the pixel count of each label (index 0 unused)."""
    labels, count = ndimage.label(mask, structure=_EIGHT_CONNECTED)
    sizes = np.bincount(labels.ravel(), minlength=count + 1)
    sizes[0] = 0  # background is not a component
    return labels, sizes


def remove_small_components(mask: np.ndarray, min_area_px: int) -> np.ndarray:
    """Drop 8-connected components with fewer than ``min_area_px`` pixels.

    Args:
        mask: Boolean mask (H, W).
        min_area_px: Minimum area to keep; 0 or 1 keeps everything.

    Returns:
        A new boolean mask.
    """
    if min_area_px <= 1 or not mask.any():
        return mask.copy()
    labels, sizes = _label(mask)
    return (sizes >= min_area_px)[labels]


def fill_holes(mask: np.ndarray) -> np.ndarray:
    """Fill background regions not connected to the image border.

    A hole that touches the image border is not enclosed and stays open.
    """
    return ndimage.binary_fill_holes(mask)


def keep_largest_component(mask: np.ndarray) -> np.ndarray:
    """Keep only the largest 8-connected component; an empty mask stays empty.

    Ties go to the component met first in raster order.
    """
    if not mask.any():
        return mask.copy()
    labels, sizes = _label(mask)
    return labels == int(np.argmax(sizes))


def postprocess_mask(
    probabilities: np.ndarray, config: PostprocessConfig | None = None
) -> np.ndarray:
    """Threshold a probability map and clean the mask (see the module docstring).

    Args:
        probabilities: Lesion probabilities, (H, W) or (H, W, 1).
        config: Options; defaults to ``PostprocessConfig()``.

    Returns:
        Boolean mask (H, W).

    Raises:
        ImageDimensionError: ``probabilities`` is not (H, W) or (H, W, 1).
    """
    config = config or PostprocessConfig()
    probabilities = _as_2d(probabilities, "probabilities")
    mask = probabilities >= config.threshold
    if config.remove_small:
        mask = remove_small_components(mask, config.min_area_px(mask.size))
    if config.fill_holes:
        mask = fill_holes(mask)
    if config.keep_largest_only:
        mask = keep_largest_component(mask)
    return mask


def dice_score(pred: np.ndarray, true: np.ndarray) -> float:
    """Dice 2|A∩B| / (|A| + |B|) of two masks.

    Both empty gives 1.0 (correctly predicted "no lesion"); a non-empty prediction on
    an empty ground truth, or vice versa, gives 0.0.

    Args:
        pred: Predicted mask (H, W) or (H, W, 1); non-zero is foreground.
        true: Ground-truth mask of the same shape.

    Returns:
        Dice in [0, 1].
    """
    pred, true = _foreground_pair(pred, true)
    intersection = int(np.logical_and(pred, true).sum())
    return _overlap_ratio(2.0 * intersection, int(pred.sum()) + int(true.sum()))


def iou(pred: np.ndarray, true: np.ndarray) -> float:
    """Intersection over union |A∩B| / |A∪B|; both empty gives 1.0.

    Args are as in :func:`dice_score`.

    Returns:
        IoU in [0, 1].
    """
    pred, true = _foreground_pair(pred, true)
    intersection = int(np.logical_and(pred, true).sum())
    return _overlap_ratio(intersection, int(np.logical_or(pred, true).sum()))


def _boundary(mask: np.ndarray) -> np.ndarray:
    """Foreground pixels with at least one 4-connected background neighbour.

    Pixels on the image edge count as boundary (the outside is background).
    """
    return mask & ~ndimage.binary_erosion(mask, border_value=0)


def hd95(pred: np.ndarray, true: np.ndarray, spacing: float | Sequence[float] = 1.0) -> float:
    """95th-percentile symmetric Hausdorff distance between the mask boundaries.

    For every boundary pixel of each mask, the Euclidean distance to the nearest
    boundary pixel of the other mask is found with a distance transform; HD95 is the
    95th percentile of both sets of distances pooled together (as in MedPy). It is
    robust to a few outlying pixels, unlike the plain Hausdorff distance.

    Values when a mask is empty:

    * both empty: 0.0 (no boundary to disagree about, consistent with Dice 1);
    * exactly one empty: NaN, since the distance is undefined. Average with
      :func:`nanmean` (NaNs skipped) and report the count of such cases separately;
      Dice already penalises them.

    Args:
        pred: Predicted mask (H, W) or (H, W, 1); non-zero is foreground.
        true: Ground-truth mask of the same shape.
        spacing: Pixel size (one value or (row, col)); 1.0 gives distances in pixels.

    Returns:
        HD95 in units of ``spacing`` (pixels by default), or NaN as above.
    """
    pred, true = _foreground_pair(pred, true)
    pred_empty, true_empty = not pred.any(), not true.any()
    if pred_empty and true_empty:
        return 0.0
    if pred_empty or true_empty:
        return float("nan")
    pred_edge, true_edge = _boundary(pred), _boundary(true)
    # Distance from every pixel to the nearest boundary pixel of each mask.
    to_true_edge = ndimage.distance_transform_edt(~true_edge, sampling=spacing)
    to_pred_edge = ndimage.distance_transform_edt(~pred_edge, sampling=spacing)
    distances = np.concatenate([to_true_edge[pred_edge], to_pred_edge[true_edge]])
    return float(np.percentile(distances, 95))


def nanmean(values: Iterable[float]) -> float:
    """Mean of ``values`` skipping NaNs; NaN (without a warning) when none is finite."""
    array = np.asarray(list(values), dtype=float)
    valid = array[~np.isnan(array)]
    return float(valid.mean()) if valid.size else float("nan")


def choose_threshold(
    probabilities_list: Sequence[np.ndarray],
    masks_list: Sequence[np.ndarray],
    candidates: Sequence[float] | np.ndarray = DEFAULT_THRESHOLD_CANDIDATES,
    config: PostprocessConfig | None = None,
) -> tuple[float, float]:
    """Pick the threshold that maximises the mean Dice on validation images.

    Empty prediction on an empty ground truth counts as Dice 1, a non-empty one as
    Dice 0 (see :func:`dice_score`), so normal images reward thresholds that stay silent.

    Args:
        probabilities_list: Probability maps, each (H, W) or (H, W, 1).
        masks_list: Ground-truth masks, same length and shapes.
        candidates: Thresholds to try, each in (0, 1).
        config: If given, every candidate is scored after the full post-processing with
            this config (its threshold replaced); if None, after plain thresholding.

    Returns:
        (best threshold, its mean Dice). Ties go to the first best candidate in order.

    Raises:
        ConfigError: The lists are empty or of different lengths, or a candidate is not
            in (0, 1).
        ImageDimensionError: A probability map and its mask differ in shape.
    """
    if len(probabilities_list) != len(masks_list):
        raise ConfigError(
            f"choose_threshold got {len(probabilities_list)} probability maps but "
            f"{len(masks_list)} masks; they must pair up one to one."
        )
    if not len(probabilities_list):
        raise ConfigError("choose_threshold needs at least one validation image; received none.")
    candidates = [float(value) for value in np.asarray(candidates, dtype=float).ravel()]
    if not candidates or any(not 0.0 < value < 1.0 for value in candidates):
        raise ConfigError(
            f"threshold candidates must be a non-empty list of values in (0, 1); "
            f"received {candidates}."
        )
    masks = [_as_2d(mask, "mask") != 0 for mask in masks_list]
    probs = [_as_2d(prob, "probabilities") for prob in probabilities_list]
    for prob, mask in zip(probs, masks, strict=True):
        _check_same_shape(prob, mask)

    def mean_dice(threshold: float) -> float:
        if config is None:
            preds = [prob >= threshold for prob in probs]
        else:
            step_config = replace(config, threshold=threshold)
            preds = [postprocess_mask(prob, step_config) for prob in probs]
        return float(np.mean([dice_score(p, m) for p, m in zip(preds, masks, strict=True)]))

    scores = [mean_dice(value) for value in candidates]
    best = int(np.argmax(scores))
    return candidates[best], scores[best]
