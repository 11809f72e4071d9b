"""Tissue detection on a low-resolution thumbnail: Otsu on saturation, then morphology.

Glass and background are bright and grey; stained tissue is coloured. Otsu's threshold
on the HSV saturation of a thumbnail separates the two; morphology then closes small
gaps, drops dust and fills holes (fat vacuoles and lumens are tissue for the burden).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

import cv2
import numpy as np
from scipy import ndimage
from skimage.filters import threshold_otsu
from skimage.morphology import remove_small_objects

from utils.errors import NoTissueError

__all__ = ["MIN_SATURATION", "TissueMask", "detect_tissue"]

#: Lowest saturation (0-255) counted as stain, whatever Otsu says.
MIN_SATURATION: Final = 20
#: Smallest tissue fragment kept, as a fraction of the thumbnail's pixels.
_MIN_FRAGMENT_FRACTION: Final = 1e-4


@dataclass(frozen=True)
class TissueMask:
    """A boolean tissue mask on a thumbnail grid.

    Attributes:
        mask: (h, w) bool, True on tissue.
        downsample: Level-0 pixels per mask pixel (x and y).
        threshold: The saturation threshold used.
    """

    mask: np.ndarray
    downsample: tuple[float, float]
    threshold: float

    @property
    def fraction(self) -> float:
        """Share of the slide covered by tissue."""
        return float(self.mask.mean())

    def area_mm2(self, mpp: float) -> float:
        """Tissue area in mm² for a level-0 scale of ``mpp`` microns per pixel."""
        pixel_mm2 = self.downsample[0] * self.downsample[1] * (mpp / 1000.0) ** 2
        return float(self.mask.sum()) * pixel_mm2

    def fraction_in(self, x: int, y: int, width: int, height: int) -> float:
        """Share of tissue inside the level-0 rectangle ``(x, y, width, height)``."""
        sx, sy = self.downsample
        x0, y0 = int(x / sx), int(y / sy)
        x1 = max(x0 + 1, int(np.ceil((x + width) / sx)))
        y1 = max(y0 + 1, int(np.ceil((y + height) / sy)))
        window = self.mask[y0:y1, x0:x1]
        return float(window.mean()) if window.size else 0.0


def detect_tissue(
    thumbnail: np.ndarray, downsample: tuple[float, float], *, closing_px: int = 3
) -> TissueMask:
    """Find the tissue in an RGB thumbnail.

    Args:
        thumbnail: (h, w, 3) uint8 RGB, whole slide.
        downsample: Level-0 pixels per thumbnail pixel (x, y).
        closing_px: Radius of the morphological closing, in thumbnail pixels.

    Returns:
        The tissue mask.

    Raises:
        NoTissueError: The slide shows no stained tissue (blank, or uniformly grey).
    """
    saturation = cv2.cvtColor(thumbnail, cv2.COLOR_RGB2HSV)[..., 1]
    spread = int(saturation.max()) - int(saturation.min())
    otsu = float(threshold_otsu(saturation)) if spread > 0 else 0.0
    # Otsu splits any image in two, blank glass too: a floor keeps JPEG colour noise
    # and grey padding out (H&E stain is far more saturated).
    threshold = max(otsu, float(MIN_SATURATION))
    if int(saturation.max()) <= threshold:
        raise NoTissueError(
            f"No tissue found: the slide's colour saturation is at most "
            f"{int(saturation.max())} of 255, below the stain floor of {MIN_SATURATION}. "
            "Check that this is a stained H&E slide and not a blank or overview image."
        )
    mask = saturation > threshold
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * closing_px + 1,) * 2)
    mask = cv2.morphologyEx(mask.astype(np.uint8), cv2.MORPH_CLOSE, kernel).astype(bool)
    mask = cv2.morphologyEx(mask.astype(np.uint8), cv2.MORPH_OPEN, kernel).astype(bool)
    min_size = max(4, int(_MIN_FRAGMENT_FRACTION * mask.size))
    mask = remove_small_objects(mask, max_size=min_size)
    mask = ndimage.binary_fill_holes(mask)
    if not mask.any():
        raise NoTissueError(
            "No tissue found: only specks smaller than "
            f"{min_size} thumbnail pixels are stained. Check the slide."
        )
    return TissueMask(mask=mask, downsample=downsample, threshold=threshold)
