"""The conversion rules shared by every decoder: uint8, black background, RGB, orientation."""

from __future__ import annotations

import numpy as np

from utils.image_io.results import DecodedImage, ImageMetadata, LoadedImage


def to_loaded_image(decoded: DecodedImage, name: str) -> LoadedImage:
    """Apply the shared conversion rules: uint8, black background, RGB, orientation."""
    rgb = to_uint8(decoded.samples)
    if rgb.ndim == 2:
        rgb = np.repeat(rgb[..., np.newaxis], 3, axis=2)
    if decoded.alpha is not None:
        rgb = _composite_on_black(rgb, _alpha_to_uint8(decoded.alpha))
    oriented = _apply_orientation(rgb, decoded.orientation)
    # A fresh, writable array: never a read-only view into a decoder's buffer.
    pixels = np.require(oriented, np.uint8, ["C_CONTIGUOUS", "WRITEABLE", "OWNDATA"])
    metadata = ImageMetadata(
        source=name,
        format=decoded.format,
        original_mode=decoded.original_mode,
        original_bit_depth=decoded.bit_depth,
        width=pixels.shape[1],
        height=pixels.shape[0],
        pixel_spacing_mm=decoded.pixel_spacing_mm,
        had_alpha=decoded.alpha is not None,
        exif_transposed=decoded.orientation != 1 or decoded.transposed_by_decoder,
        extra=decoded.extra,
    )
    return LoadedImage(pixels=pixels, metadata=metadata)


def to_uint8(samples: np.ndarray) -> np.ndarray:
    """Keep uint8 as is; rescale anything else linearly from its min..max onto 0..255.

    The range is taken over all channels together so colour balance is kept. Non-finite
    values become 0; a constant image becomes all zeros.
    """
    if samples.dtype == np.uint8:
        return samples
    work_dtype = np.float64 if samples.dtype.itemsize > 2 else np.float32
    values = samples.astype(work_dtype)
    finite = np.isfinite(values)
    if not finite.any():
        return np.zeros(samples.shape, dtype=np.uint8)
    low, high = values[finite].min(), values[finite].max()
    if high <= low:
        return np.zeros(samples.shape, dtype=np.uint8)
    values[~finite] = low
    values -= low
    values *= 255.0 / (high - low)
    np.rint(values, out=values)
    return np.clip(values, 0, 255).astype(np.uint8)


def _alpha_to_uint8(alpha: np.ndarray) -> np.ndarray:
    """Scale an alpha channel of any dtype to 0 (transparent)..255 (opaque)."""
    if alpha.dtype == np.uint8:
        return alpha
    # Integer alpha spans 0..dtype max; float alpha is 0..1.
    full = float(np.iinfo(alpha.dtype).max) if alpha.dtype.kind in "ui" else 1.0
    scaled = np.clip(alpha.astype(np.float64) / full, 0.0, 1.0) * 255.0
    return np.rint(scaled).astype(np.uint8)


def _composite_on_black(rgb: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """Blend onto black: transparent pixels (outside the scan sector) become 0."""
    blended = rgb.astype(np.uint16) * alpha[..., np.newaxis].astype(np.uint16)
    return ((blended + 127) // 255).astype(np.uint8)


def _apply_orientation(pixels: np.ndarray, orientation: int) -> np.ndarray:
    """Apply an EXIF orientation, as ``PIL.ImageOps.exif_transpose`` would."""
    if orientation == 2:
        return pixels[:, ::-1]
    if orientation == 3:
        return pixels[::-1, ::-1]
    if orientation == 4:
        return pixels[::-1]
    if orientation == 5:
        return pixels.swapaxes(0, 1)
    if orientation == 6:
        return np.rot90(pixels, k=-1)
    if orientation == 7:
        return pixels[::-1, ::-1].swapaxes(0, 1)
    if orientation == 8:
        return np.rot90(pixels, k=1)
    return pixels
