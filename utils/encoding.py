"""Compact, lossless encodings of masks and heatmaps for JSON answers and result tables.

* Masks: PNG (8-bit, 0 or 255) as base64, or run-length encoding (RLE). The RLE is
  row-major (C order) over the (H, W) mask; ``counts`` alternate background and lesion
  run lengths, starting with a background run (0 when the first pixel is lesion), and
  sum to ``H * W``. :func:`rle_decode` inverts :func:`rle_encode` exactly.
* Heatmaps: a [0, 1] map quantised to an 8-bit grayscale PNG (``round(value * 255)``),
  as base64: at most 1/510 off, small, and viewable as is.
"""

from __future__ import annotations

import base64
from typing import Any

import cv2
import numpy as np

from utils.errors import ImageDimensionError, InvalidImageError

__all__ = [
    "decode_png_base64",
    "heatmap_png_base64",
    "mask_png_base64",
    "rle_decode",
    "rle_encode",
]


def _check_2d(array: np.ndarray, what: str) -> np.ndarray:
    array = np.asarray(array)
    if array.ndim != 2 or 0 in array.shape:
        raise ImageDimensionError(f"A {what} must be a non-empty (H, W) array; got {array.shape}.")
    return array


def rle_encode(mask: np.ndarray) -> dict[str, Any]:
    """Row-major run lengths of a boolean (H, W) mask.

    Returns:
        ``{"size": [H, W], "counts": [...]}`` (see the module docstring).

    Raises:
        ImageDimensionError: ``mask`` is not a non-empty 2-D array.
    """
    flat = _check_2d(mask, "mask").astype(bool).ravel()
    # Indices where the value changes, plus both ends, give the run boundaries.
    changes = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    boundaries = np.concatenate(([0], changes, [flat.size]))
    counts = np.diff(boundaries).tolist()
    if flat[0]:
        counts.insert(0, 0)
    return {"size": [int(mask.shape[0]), int(mask.shape[1])], "counts": counts}


def rle_decode(rle: dict[str, Any]) -> np.ndarray:
    """The boolean (H, W) mask of :func:`rle_encode`'s output.

    Raises:
        InvalidImageError: The counts are negative or do not sum to H * W.
    """
    height, width = (int(side) for side in rle["size"])
    counts = np.asarray(rle["counts"], dtype=np.int64)
    if (counts < 0).any() or counts.sum() != height * width:
        raise InvalidImageError(
            f"RLE counts must be non-negative and sum to {height} x {width} = "
            f"{height * width}; they sum to {int(counts.sum())}."
        )
    values = np.arange(counts.size) % 2 == 1  # odd runs are lesion
    return np.repeat(values, counts).reshape(height, width)


def _png_base64(gray: np.ndarray) -> str:
    ok, encoded = cv2.imencode(".png", gray)
    if not ok:  # cv2 only fails on unusable arrays, which _check_2d rejects.
        raise InvalidImageError(f"Could not encode a {gray.shape} array as PNG.")
    return base64.b64encode(encoded.tobytes()).decode("ascii")


def mask_png_base64(mask: np.ndarray) -> str:
    """A boolean (H, W) mask as a base64 8-bit PNG (lesion 255, background 0)."""
    return _png_base64(_check_2d(mask, "mask").astype(bool).astype(np.uint8) * 255)


def heatmap_png_base64(heatmap: np.ndarray) -> str:
    """A [0, 1] (h, w) heatmap as a base64 8-bit grayscale PNG (value * 255, rounded)."""
    values = np.clip(_check_2d(heatmap, "heatmap").astype(np.float32), 0.0, 1.0)
    return _png_base64(np.round(values * 255.0).astype(np.uint8))


def decode_png_base64(data: str) -> np.ndarray:
    """The (H, W) uint8 array of :func:`mask_png_base64` or :func:`heatmap_png_base64`.

    Raises:
        InvalidImageError: ``data`` is not base64 of a PNG.
    """
    try:
        raw = base64.b64decode(data, validate=True)
    except ValueError as error:
        raise InvalidImageError(f"Not valid base64: {error}") from error
    decoded = cv2.imdecode(np.frombuffer(raw, np.uint8), cv2.IMREAD_UNCHANGED)
    if decoded is None:
        raise InvalidImageError("The base64 data is not a PNG image.")
    return decoded
