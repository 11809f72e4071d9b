"""PNG, JPEG, BMP and TIFF decoding, and Pillow modes turned into numpy samples.

Pillow decodes; tifffile and imagecodecs take over where it falls short (16-bit colour,
TIFFs Pillow cannot open).
"""

from __future__ import annotations

import io
import struct
from typing import Any, Final

import imagecodecs
import numpy as np
import tifffile
from PIL import Image

from utils.errors import CorruptImageError, UnsupportedFormatError
from utils.image_io.limits import check_dimensions
from utils.image_io.messages import decoding_errors, subject
from utils.image_io.results import DecodedImage

# PNG IHDR colour types that hold colour or alpha next to gray (2 RGB, 4 LA, 6 RGBA).
_PNG_MULTI_SAMPLE_COLOUR_TYPES = frozenset({2, 4, 6})

# Pillow modes whose samples are wider than 8 bits, with their bit depth.
_HIGH_DEPTH_MODE_BITS: Final[dict[str, int]] = {
    "I;16": 16,
    "I;16L": 16,
    "I;16B": 16,
    "I;16N": 16,
    "I": 32,
    "F": 32,
}

_EXIF_ORIENTATION_TAG = 0x0112
_TIFF_BITS_PER_SAMPLE_TAG = 258


def decode_raster(data: bytes, image_format: str, name: str, max_pixels: int) -> DecodedImage:
    """Decode PNG, JPEG, BMP or TIFF with Pillow; tifffile/imagecodecs where it falls short."""
    header_size = _peek_header_size(data, image_format)
    if header_size is not None:
        check_dimensions(*header_size, name, max_pixels)
    try:
        with decoding_errors(image_format, name):
            image = Image.open(io.BytesIO(data), formats=[image_format])
    except CorruptImageError:
        if image_format == "TIFF":
            # tifffile reads TIFFs Pillow cannot open and reports their real dimensions.
            return _decode_tiff_with_tifffile(data, name, max_pixels)
        raise
    with image:
        check_dimensions(*image.size, name, max_pixels)
        if image_format == "TIFF" and _is_high_depth_colour_tiff(image):
            return _decode_tiff_with_tifffile(data, name, max_pixels)
        if image_format == "PNG" and _is_high_depth_colour_png(data):
            return _decode_png_with_imagecodecs(data, image, name)
        # Pillow's TIFF load applies the orientation itself and then drops the tag, so
        # read it first (TIFF tags are parsed at open; other formats may need a load).
        declared_orientation = _exif_orientation(image) if image_format == "TIFF" else 1
        with decoding_errors(image_format, name):
            image.load()
        remaining_orientation = _exif_orientation(image)
        samples, alpha = _pil_arrays(image)
        return DecodedImage(
            samples=samples,
            alpha=alpha,
            format=image_format,
            original_mode=image.mode,
            bit_depth=_pil_bit_depth(image, data, image_format),
            orientation=remaining_orientation,
            transposed_by_decoder=declared_orientation != 1 and remaining_orientation == 1,
            extra=_frame_count_extra(getattr(image, "n_frames", 1)),
        )


def _peek_header_size(data: bytes, image_format: str) -> tuple[int, int] | None:
    """Read (width, height) from a PNG or BMP header; Pillow rejects zero sizes unnamed."""
    if image_format == "PNG" and len(data) >= 24 and data[12:16] == b"IHDR":
        width, height = struct.unpack_from(">II", data, 16)
        return width, height
    if image_format == "BMP" and len(data) >= 26:
        (info_header_size,) = struct.unpack_from("<I", data, 14)
        if info_header_size == 12:
            width, height = struct.unpack_from("<HH", data, 18)
            return width, height
        width, height = struct.unpack_from("<ii", data, 18)
        return width, abs(height)  # negative height marks a top-down bitmap
    return None


def _pil_arrays(image: Image.Image) -> tuple[np.ndarray, np.ndarray | None]:
    """Return (samples, alpha) of a loaded Pillow image in a mode numpy understands."""
    mode = image.mode
    if mode in _HIGH_DEPTH_MODE_BITS:
        return np.asarray(image), None
    has_transparency = "transparency" in image.info
    if mode in ("LA", "La") or (mode == "L" and has_transparency):
        target = "LA"
    elif mode in ("RGBA", "RGBa", "PA") or (mode in ("P", "RGB") and has_transparency):
        target = "RGBA"
    elif mode in ("1", "L"):
        target = "L"
    else:
        # P without transparency, CMYK, YCbCr, LAB, HSV, RGBX...
        target = "RGB"
    array = np.asarray(image if mode == target else image.convert(target))
    if target == "LA":
        return array[..., 0], array[..., 1]
    if target == "RGBA":
        return array[..., :3], array[..., 3]
    return array, None


def _pil_bit_depth(image: Image.Image, data: bytes, image_format: str) -> int:
    if image_format == "PNG":
        return data[24]  # IHDR bit depth: bits per sample, or per palette index
    if image_format == "TIFF":
        bits = image.tag_v2.get(_TIFF_BITS_PER_SAMPLE_TAG)
        if isinstance(bits, tuple) and bits:
            return int(max(bits))
        if isinstance(bits, int):
            return bits
    if image.mode == "1":
        return 1
    return _HIGH_DEPTH_MODE_BITS.get(image.mode, 8)


def _exif_orientation(image: Image.Image) -> int:
    """Return the EXIF orientation (1..8); 1 when absent, unreadable or invalid."""
    try:
        orientation = image.getexif().get(_EXIF_ORIENTATION_TAG, 1)
    except Exception:
        # A damaged EXIF block must not make an otherwise good image unreadable.
        return 1
    return orientation if isinstance(orientation, int) and 1 <= orientation <= 8 else 1


def _frame_count_extra(frame_count: int) -> dict[str, Any]:
    # Only the first page of a multi-page TIFF is loaded; say so in the metadata.
    return {"frame_count": frame_count} if frame_count > 1 else {}


def _is_high_depth_colour_tiff(image: Image.Image) -> bool:
    """Pillow keeps only the high byte of 16-bit colour TIFFs; tifffile keeps all 16."""
    bits = image.tag_v2.get(_TIFF_BITS_PER_SAMPLE_TAG)
    return isinstance(bits, tuple) and len(bits) > 1 and max(bits) > 8


def _is_high_depth_colour_png(data: bytes) -> bool:
    """16-bit RGB/RGBA/LA PNGs, which Pillow reduces to 8 bits."""
    return data[24] == 16 and data[25] in _PNG_MULTI_SAMPLE_COLOUR_TYPES


def _decode_png_with_imagecodecs(data: bytes, image: Image.Image, name: str) -> DecodedImage:
    with decoding_errors("PNG", name):
        array = imagecodecs.png_decode(data)
    samples, alpha = _split_alpha(array)
    return DecodedImage(
        samples=samples,
        alpha=alpha,
        format="PNG",
        original_mode=image.mode,
        bit_depth=16,
        orientation=_exif_orientation(image),
    )


def _decode_tiff_with_tifffile(data: bytes, name: str, max_pixels: int) -> DecodedImage:
    with decoding_errors("TIFF", name), tifffile.TiffFile(io.BytesIO(data)) as tiff:
        page = tiff.pages.first
        check_dimensions(page.imagewidth, page.imagelength, name, max_pixels)
        array = page.asarray()
        if page.planarconfig == tifffile.PLANARCONFIG.SEPARATE and array.ndim == 3:
            array = np.moveaxis(array, 0, -1)
        orientation_tag = page.tags.get(_EXIF_ORIENTATION_TAG)
        orientation = int(orientation_tag.value) if orientation_tag is not None else 1
        bit_depth = int(page.bitspersample)
        frame_count = len(tiff.pages)
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[2] > 4):
        raise UnsupportedFormatError(
            f"{subject(name)} is a TIFF with {array.shape[-1]} channels per pixel; "
            "TumorLens reads gray, gray+alpha, RGB and RGBA images."
        )
    samples, alpha = _split_alpha(array)
    return DecodedImage(
        samples=samples,
        alpha=alpha,
        format="TIFF",
        original_mode=_mode_of_array(samples, alpha),
        bit_depth=bit_depth,
        orientation=orientation if 1 <= orientation <= 8 else 1,
        extra=_frame_count_extra(frame_count),
    )


def _split_alpha(array: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    """Split a (H, W, C) array with C in 1..4 into gray/RGB samples and optional alpha."""
    if array.ndim == 2:
        return array, None
    channels = array.shape[2]
    if channels == 1:
        return array[..., 0], None
    if channels == 2:
        return array[..., 0], array[..., 1]
    return array[..., :3], (array[..., 3] if channels == 4 else None)


def _mode_of_array(samples: np.ndarray, alpha: np.ndarray | None) -> str:
    """Describe a tifffile array with the nearest Pillow-style mode name."""
    if samples.ndim == 2:
        base = "L" if samples.dtype == np.uint8 else _numpy_mode_suffix(samples)
        return base + ("A" if alpha is not None and base == "L" else "")
    return "RGBA" if alpha is not None else "RGB"


def _numpy_mode_suffix(samples: np.ndarray) -> str:
    if samples.dtype.kind == "f":
        return "F"
    return "I;16" if samples.dtype.itemsize == 2 else "I"
