"""Corrected lesion masks: checked, and stored as 1-bit PNG bytes (small and lossless)."""

from __future__ import annotations

import io
from typing import Final

import numpy as np
from PIL import Image, UnidentifiedImageError

from utils.datasets.masks import binarise_mask_image
from utils.errors import CorruptImageError, EmptyFileError, ImageDimensionError
from utils.image_io import load_image

#: Largest side of a stored mask: as large as the images the Analyse page accepts.
MAX_MASK_SIDE: Final = 16_384


def check_mask(mask: object, image_shape: tuple[int, int] | None = None) -> np.ndarray:
    """A corrected mask as an (H, W) bool array, after checking its type and shape.

    Args:
        mask: (H, W) bool array, or uint8 holding only 0 and 1 or 0 and 255.
        image_shape: (height, width) the mask must have; ``None`` skips this check.

    Returns:
        The mask as a C-contiguous bool array.

    Raises:
        ImageDimensionError: Not a 2-D bool/uint8 array, values other than 0/1 or
            0/255, a side of 0 or over :data:`MAX_MASK_SIDE`, or not ``image_shape``.
    """
    if not isinstance(mask, np.ndarray):
        raise ImageDimensionError(f"The mask must be a NumPy array; got {type(mask).__name__}.")
    if mask.ndim != 2 or min(mask.shape) < 1 or max(mask.shape) > MAX_MASK_SIDE:
        raise ImageDimensionError(
            f"The mask has shape {mask.shape}; it must be 2-D (height, width) with sides "
            f"from 1 to {MAX_MASK_SIDE} pixels."
        )
    if mask.dtype == np.uint8:
        values = set(np.unique(mask).tolist())
        if not (values <= {0, 1} or values <= {0, 255}):
            raise ImageDimensionError(
                f"The uint8 mask holds the values {sorted(values)[:6]}; only 0/1 or 0/255 "
                "are allowed."
            )
    elif mask.dtype != np.bool_:
        raise ImageDimensionError(f"The mask has dtype {mask.dtype}; use bool or uint8.")
    if image_shape is not None and mask.shape != tuple(image_shape):
        raise ImageDimensionError(
            f"The mask is {mask.shape[1]} x {mask.shape[0]} pixels but the image is "
            f"{image_shape[1]} x {image_shape[0]}; draw or upload a mask of the image's size."
        )
    return np.ascontiguousarray(mask != 0)


def encode_mask_png(mask: np.ndarray) -> bytes:
    """A bool mask as 1-bit PNG bytes (check it with :func:`check_mask` first)."""
    buffer = io.BytesIO()
    Image.fromarray(np.asarray(mask, dtype=bool)).save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()


def decode_mask_png(data: bytes) -> np.ndarray:
    """Inverse of :func:`encode_mask_png`: the stored PNG as an (H, W) bool mask.

    Raises:
        EmptyFileError: ``data`` is empty.
        CorruptImageError: ``data`` is not a readable image.
    """
    if not data:
        raise EmptyFileError("The stored mask is empty (0 bytes).")
    try:
        with Image.open(io.BytesIO(data)) as image:
            image.load()
            return binarise_mask_image(image)
    except (UnidentifiedImageError, OSError, ValueError) as error:
        raise CorruptImageError(f"The stored mask cannot be decoded: {error}.") from error


def mask_from_image_bytes(data: bytes, image_shape: tuple[int, int]) -> np.ndarray:
    """A mask uploaded as an image file (PNG, TIFF...): any non-black pixel is lesion.

    Args:
        data: The file's bytes.
        image_shape: (height, width) of the image the mask belongs to.

    Returns:
        (H, W) bool mask.

    Raises:
        InvalidImageError: Empty, corrupt, not an image, or too large (from
            :func:`utils.image_io.load_image`).
        ImageDimensionError: Not the image's size.
    """
    loaded = load_image(data, max_pixels=MAX_MASK_SIDE * MAX_MASK_SIDE)
    # Transparent pixels were composited onto black, so they count as background.
    return check_mask(loaded.gray > 0, image_shape)
