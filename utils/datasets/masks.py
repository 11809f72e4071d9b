"""Reading lesion / nuclei masks stored in any of the modes real datasets use."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from utils.errors import CorruptImageError, ImageDimensionError


def binarise_mask_image(image: Image.Image) -> np.ndarray:
    """Turn a mask image of any mode into a boolean array.

    1-bit, L, P, I;16, RGB and RGBA masks all occur in public datasets. A pixel is
    foreground when any colour channel is non-zero; in RGBA/LA masks a fully
    transparent pixel is background whatever its colour.

    Args:
        image: A PIL image holding a mask.

    Returns:
        Boolean array of shape (H, W).
    """
    if image.mode == "P":
        image = image.convert("RGBA")
    array = np.asarray(image)
    if array.ndim == 2:
        return array != 0
    alpha = None
    if image.mode in ("RGBA", "LA", "PA"):
        alpha = array[..., -1]
        array = array[..., :-1]
    foreground = np.any(array != 0, axis=-1)
    if alpha is not None:
        foreground &= alpha != 0
    return foreground


def load_mask(paths: Sequence[Path | str], shape: tuple[int, int] | None = None) -> np.ndarray:
    """Load and OR-merge one or more mask files.

    Args:
        paths: Mask files of one image. With none, an empty mask of ``shape`` is returned
            (BUSI ``normal`` images have no mask).
        shape: Expected (height, width). Required when ``paths`` is empty; when given,
            every mask must match it.

    Returns:
        Boolean array of shape (H, W), True on the lesion.

    Raises:
        ImageDimensionError: A mask's size differs from ``shape`` or from the other masks.
        CorruptImageError: A mask file cannot be decoded.
    """
    if not paths:
        if shape is None:
            raise ImageDimensionError("load_mask got no mask file and no shape; give either.")
        return np.zeros(shape, dtype=bool)
    merged: np.ndarray | None = None
    for path in paths:
        try:
            with Image.open(path) as image:
                mask = binarise_mask_image(image)
        except (UnidentifiedImageError, OSError) as error:
            name = Path(path).name
            raise CorruptImageError(f"Mask file {name} cannot be read: {error}") from error
        expected = shape if shape is not None else (merged.shape if merged is not None else None)
        if expected is not None and mask.shape != tuple(expected):
            raise ImageDimensionError(
                f"Mask {Path(path).name} is {mask.shape[1]}x{mask.shape[0]} px but the image is "
                f"{expected[1]}x{expected[0]} px; masks must match their image."
            )
        merged = mask if merged is None else (merged | mask)
    assert merged is not None
    return merged
