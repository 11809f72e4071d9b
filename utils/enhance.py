"""Contrast enhancement for *display*: CLAHE on grayscale and on the lightness of RGB.

Contrast-limited adaptive histogram equalisation (CLAHE, Zuiderveld 1994) equalises the
histogram of each tile of a grid separately, clipping every tile histogram at
``clip_limit`` times its mean bin count before equalising (so noise in flat regions is
not amplified), and blends neighbouring tiles bilinearly. It makes faint structures of a
dark ultrasound image easier to see.

These functions change what the reader *sees*. The models were trained on unenhanced
images, so the analysis always runs on the original pixels; only the displayed image
goes through CLAHE.
"""

from __future__ import annotations

from typing import Final

import cv2
import numpy as np

from utils.errors import ConfigError, ImageDimensionError, InvalidImageError

__all__ = ["DEFAULT_CLIP_LIMIT", "DEFAULT_TILE_GRID", "clahe", "clahe_rgb"]

#: OpenCV's usual clip limit: enough to show structure without boosting speckle much.
DEFAULT_CLIP_LIMIT: Final = 2.0
#: Tiles per side of the equalisation grid.
DEFAULT_TILE_GRID: Final = 8


def _check_options(clip_limit: float, tile_grid: int) -> None:
    """Validate the CLAHE options.

    Raises:
        ConfigError: ``clip_limit`` is not a positive finite number, or ``tile_grid`` is
            not an integer from 1 to 64.
    """
    is_number = isinstance(clip_limit, int | float) and not isinstance(clip_limit, bool)
    if not is_number or not np.isfinite(clip_limit) or clip_limit <= 0:
        raise ConfigError(f"clip_limit must be a positive number; received {clip_limit!r}.")
    is_int = isinstance(tile_grid, int) and not isinstance(tile_grid, bool)
    if not is_int or not 1 <= tile_grid <= 64:
        raise ConfigError(f"tile_grid must be an integer from 1 to 64; received {tile_grid!r}.")


def _check_uint8(image: np.ndarray, expected: str) -> np.ndarray:
    pixels = np.asarray(image)
    if pixels.dtype != np.uint8:
        raise InvalidImageError(f"CLAHE needs a uint8 {expected} image; got {pixels.dtype}.")
    if 0 in pixels.shape:
        raise ImageDimensionError(f"CLAHE needs a non-empty image; got shape {pixels.shape}.")
    return pixels


def clahe(
    gray: np.ndarray,
    clip_limit: float = DEFAULT_CLIP_LIMIT,
    tile_grid: int = DEFAULT_TILE_GRID,
) -> np.ndarray:
    """CLAHE of a grayscale image.

    Args:
        gray: uint8 (H, W) or (H, W, 1) grayscale image.
        clip_limit: Histogram clip limit, relative to the mean bin count of a tile.
        tile_grid: Tiles per side (``tile_grid`` x ``tile_grid`` tiles).

    Returns:
        uint8 (H, W) enhanced image.

    Raises:
        ConfigError: Invalid ``clip_limit`` or ``tile_grid``.
        ImageDimensionError: The image is not (H, W) or (H, W, 1), or is empty.
        InvalidImageError: The image is not uint8.
    """
    _check_options(clip_limit, tile_grid)
    pixels = _check_uint8(gray, "grayscale")
    if pixels.ndim == 3 and pixels.shape[2] == 1:
        pixels = pixels[..., 0]
    if pixels.ndim != 2:
        raise ImageDimensionError(
            f"clahe needs an (H, W) grayscale image; got shape {pixels.shape}. Use clahe_rgb "
            "for colour images."
        )
    equaliser = cv2.createCLAHE(clipLimit=float(clip_limit), tileGridSize=(tile_grid, tile_grid))
    return equaliser.apply(np.ascontiguousarray(pixels))


def clahe_rgb(
    rgb: np.ndarray,
    clip_limit: float = DEFAULT_CLIP_LIMIT,
    tile_grid: int = DEFAULT_TILE_GRID,
) -> np.ndarray:
    """CLAHE of an RGB image's lightness (the L channel of CIE L*a*b*).

    Equalising R, G and B separately would shift the hues (a pink H&E stain turns
    orange or blue); equalising only the lightness keeps them. A gray image stored as RGB
    comes back gray.

    Args:
        rgb: uint8 (H, W, 3) RGB image.
        clip_limit: Histogram clip limit, relative to the mean bin count of a tile.
        tile_grid: Tiles per side.

    Returns:
        uint8 (H, W, 3) RGB image.

    Raises:
        ConfigError: Invalid ``clip_limit`` or ``tile_grid``.
        ImageDimensionError: The image is not (H, W, 3), or is empty.
        InvalidImageError: The image is not uint8.
    """
    _check_options(clip_limit, tile_grid)
    pixels = _check_uint8(rgb, "RGB")
    if pixels.ndim != 3 or pixels.shape[2] != 3:
        raise ImageDimensionError(
            f"clahe_rgb needs an (H, W, 3) RGB image; got shape {pixels.shape}. Use clahe for "
            "grayscale images."
        )
    lab = cv2.cvtColor(np.ascontiguousarray(pixels), cv2.COLOR_RGB2LAB)
    lab[..., 0] = clahe(lab[..., 0], clip_limit, tile_grid)
    enhanced = cv2.cvtColor(lab, cv2.COLOR_LAB2RGB)
    if _is_gray(pixels):
        # The 8-bit LAB round trip can tint grays by one level; keep gray images gray.
        enhanced = np.repeat(enhanced[..., :1], 3, axis=2)
    return enhanced


def _is_gray(rgb: np.ndarray) -> bool:
    return bool(
        np.array_equal(rgb[..., 0], rgb[..., 1]) and np.array_equal(rgb[..., 1], rgb[..., 2])
    )
