""":func:`load_image`: read, check, sniff, decode and convert, in that order."""

from __future__ import annotations

from os import PathLike
from typing import BinaryIO

from utils.image_io.conversion import to_loaded_image
from utils.image_io.dicom import decode_dicom
from utils.image_io.limits import DEFAULT_MAX_BYTES, DEFAULT_MAX_PIXELS, require_positive_limit
from utils.image_io.raster import decode_raster
from utils.image_io.results import LoadedImage
from utils.image_io.sniffing import sniff_format
from utils.image_io.sources import read_source


def load_image(
    source: str | PathLike[str] | bytes | BinaryIO,
    *,
    max_bytes: int = DEFAULT_MAX_BYTES,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> LoadedImage:
    """Load an ultrasound or H&E image as RGB uint8, whatever its format and pixel type.

    Args:
        source: A file path, the file's bytes, or a binary file-like object (read from
            its current position, e.g. a Streamlit ``UploadedFile``).
        max_bytes: Largest accepted size in bytes, checked before decoding.
        max_pixels: Largest accepted width x height, checked from the header before the
            pixels are decoded.

    Returns:
        The pixels as a C-contiguous (H, W, 3) uint8 RGB array, with metadata.

    Raises:
        InvalidImageError: The path does not exist, is a folder or cannot be read.
        EmptyFileError: The file or bytes are empty.
        UnsupportedFormatError: The content is not PNG, JPEG, BMP, TIFF or DICOM.
        UnsupportedDicomError: The DICOM is multi-frame, has no pixel data, uses an
            unsupported colour model, or a compression with no installed decoder.
        ImageTooLargeError: Larger than ``max_bytes`` or ``max_pixels``.
        ImageDimensionError: The image has a zero width or height.
        CorruptImageError: The file is truncated or damaged and cannot be decoded.
        ConfigError: ``max_bytes`` or ``max_pixels`` is not a positive integer.
        TypeError: ``source`` is none of the accepted types, or a text-mode stream.
    """
    require_positive_limit("max_bytes", max_bytes)
    require_positive_limit("max_pixels", max_pixels)
    data, name = read_source(source, max_bytes)
    image_format = sniff_format(data, name)
    if image_format == "DICOM":
        decoded = decode_dicom(data, name, max_pixels)
    else:
        decoded = decode_raster(data, image_format, name, max_pixels)
    return to_loaded_image(decoded, name)
