"""Image degradations for robustness checks: how a model fares on smoother images.

Scanners differ in how strongly they smooth speckle (speckle-reduction filters,
compounding), and a low-resolution image that was upscaled looks smoothed too. The
ultrasound models were trained on two public datasets only, so a site should know how
their outputs move when its images are smoother than those. ``python -m utils.evaluate
segment|classify --smooth F`` applies :func:`smooth_image` to every image before the model
sees it; running it at a few values of ``F`` gives the curve.

The strength is a fraction of the image width, not a pixel count, so that the same
value means the same physical smoothing at any resolution (the models resize every image
to their input size first).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Final

import cv2
import numpy as np

from utils.errors import ConfigError, InvalidImageError
from utils.image_io.results import LoadedImage

__all__ = ["MAX_SMOOTH_FRACTION", "check_smooth_fraction", "smooth_image", "smooth_loaded"]

#: Stronger smoothing than this blurs a lesion into its surroundings at any size.
MAX_SMOOTH_FRACTION: Final = 0.05


def check_smooth_fraction(fraction: float) -> float:
    """``fraction`` as a float, checked.

    Raises:
        ConfigError: It is not a finite number from 0 to :data:`MAX_SMOOTH_FRACTION`.
    """
    is_number = isinstance(fraction, int | float) and not isinstance(fraction, bool)
    if not is_number or not math.isfinite(fraction) or not 0 <= fraction <= MAX_SMOOTH_FRACTION:
        raise ConfigError(
            f"The smoothing strength must be a number from 0 to {MAX_SMOOTH_FRACTION} "
            f"(Gaussian sigma as a fraction of the image width); received {fraction!r}."
        )
    return float(fraction)


def smooth_image(pixels: np.ndarray, fraction: float) -> np.ndarray:
    """Gaussian blur with sigma = ``fraction`` x the image width.

    Args:
        pixels: uint8 (H, W) or (H, W, C) image.
        fraction: From 0 (the image unchanged) to :data:`MAX_SMOOTH_FRACTION`.

    Returns:
        A new uint8 array of the same shape.

    Raises:
        ConfigError: ``fraction`` is out of range.
        InvalidImageError: ``pixels`` is not a uint8 (H, W) or (H, W, C) array.
    """
    fraction = check_smooth_fraction(fraction)
    array = np.asarray(pixels)
    if array.dtype != np.uint8 or array.ndim not in (2, 3) or min(array.shape[:2]) < 1:
        raise InvalidImageError(
            f"smooth_image needs a uint8 (H, W) or (H, W, C) image; received dtype "
            f"{array.dtype} and shape {array.shape}."
        )
    if fraction == 0:
        return array.copy()
    sigma = fraction * array.shape[1]
    # cv2 drops a trailing axis of size 1, so the shape is restored explicitly.
    return cv2.GaussianBlur(array, (0, 0), sigmaX=sigma, sigmaY=sigma).reshape(array.shape)


def smooth_loaded(image: LoadedImage, fraction: float) -> LoadedImage:
    """:func:`smooth_image` of a loaded image, keeping its metadata (pixel spacing...)."""
    if fraction == 0:
        return image
    return dataclasses.replace(
        image, pixels=np.ascontiguousarray(smooth_image(image.pixels, fraction))
    )
