"""Input checks shared by the H&E functions: RGB uint8 tiles and instance label maps."""

from __future__ import annotations

import numpy as np

from utils.errors import ImageDimensionError, ImageTooLargeError, InvalidImageError
from utils.image_io.limits import DEFAULT_MAX_PIXELS


def check_rgb_uint8(rgb: object, what: str = "image") -> np.ndarray:
    """Return ``rgb`` as a uint8 (H, W, 3) array or raise a typed error.

    Raises:
        InvalidImageError: Not a uint8 array.
        ImageDimensionError: Not (H, W, 3) or empty.
        ImageTooLargeError: More than the loader's pixel limit.
    """
    pixels = np.asarray(rgb)
    if pixels.dtype != np.uint8:
        raise InvalidImageError(f"The {what} must be uint8 RGB; got dtype {pixels.dtype}.")
    if pixels.ndim != 3 or pixels.shape[2] != 3:
        raise ImageDimensionError(f"The {what} must be (H, W, 3) RGB; got shape {pixels.shape}.")
    if 0 in pixels.shape:
        raise ImageDimensionError(f"The {what} is empty; got shape {pixels.shape}.")
    if pixels.shape[0] * pixels.shape[1] > DEFAULT_MAX_PIXELS:
        raise ImageTooLargeError(
            f"The {what} has {pixels.shape[0] * pixels.shape[1] / 1e6:.1f} million pixels; "
            f"the limit is {DEFAULT_MAX_PIXELS / 1e6:.0f} million. Use the tiled whole-slide "
            "pipeline for larger images."
        )
    return pixels


def check_labels(labels: object, what: str = "instance map") -> np.ndarray:
    """Return ``labels`` as an int32 (H, W) label map (0 = background) or raise.

    Raises:
        InvalidImageError: Not an integer array, or it has negative labels.
        ImageDimensionError: Not two-dimensional or empty.
    """
    array = np.asarray(labels)
    if not (np.issubdtype(array.dtype, np.integer) or array.dtype == bool):
        raise InvalidImageError(f"The {what} must hold integer labels; got dtype {array.dtype}.")
    if array.ndim != 2 or 0 in array.shape:
        raise ImageDimensionError(
            f"The {what} must be a non-empty (H, W) array; got {array.shape}."
        )
    if array.size and array.min() < 0:
        raise InvalidImageError(
            f"The {what} has negative labels (min {array.min()}); 0 is background."
        )
    return array.astype(np.int32, copy=False)
