"""Image and mask resizing shared by training, inference and the whole-slide pipeline.

TensorFlow-free (OpenCV only), so inference also imports on a JAX-only machine.
"""

from __future__ import annotations

import cv2
import numpy as np


def resize_image(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize a uint8 ``(H, W)`` or ``(H, W, 3)`` image to ``size = (height, width)``.

    Area interpolation when shrinking (averages speckle instead of aliasing it),
    bilinear when enlarging.
    """
    height, width = size
    shrinking = height * width < image.shape[0] * image.shape[1]
    interpolation = cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR
    return cv2.resize(image, (width, height), interpolation=interpolation)


def resize_mask(mask: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize a boolean or 0/1 ``(H, W)`` mask to ``size`` with nearest neighbour, as uint8 0/1."""
    height, width = size
    binary = (np.asarray(mask) > 0).astype(np.uint8)
    return cv2.resize(binary, (width, height), interpolation=cv2.INTER_NEAREST)


def resize_probabilities(probabilities: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize a float ``(H, W)`` probability map to ``size`` bilinearly, kept in [0, 1].

    Bilinear keeps the map smooth, so a thresholded edge falls between the model's
    pixels instead of following their staircase.
    """
    height, width = size
    resized = cv2.resize(
        np.asarray(probabilities, dtype=np.float32), (width, height), interpolation=cv2.INTER_LINEAR
    )
    return np.clip(resized, 0.0, 1.0).astype(np.float32, copy=False)
