"""Content detection: the image format from the leading bytes, never the extension."""

from __future__ import annotations

import struct
from typing import Final

from utils.errors import UnsupportedFormatError
from utils.image_io.messages import subject

#: File extensions (without dot) to offer in file pickers, e.g. ``st.file_uploader(type=...)``.
SUPPORTED_FORMATS: Final[tuple[str, ...]] = ("png", "jpg", "jpeg", "bmp", "tif", "tiff", "dcm")

_ALLOWED_FORMATS_TEXT = (
    "TumorLens reads PNG, JPEG, BMP, TIFF and single-frame DICOM images "
    "(.png, .jpg, .jpeg, .bmp, .tif, .tiff, .dcm)"
)

_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
_DICOM_MAGIC_OFFSET = 128
_DICOM_MAGIC = b"DICM"
_RASTER_MAGICS: Final[tuple[tuple[bytes, str], ...]] = (
    (_PNG_MAGIC, "PNG"),
    (b"\xff\xd8\xff", "JPEG"),
    (b"II*\x00", "TIFF"),
    (b"MM\x00*", "TIFF"),
    (b"II+\x00", "TIFF"),  # BigTIFF
    (b"MM\x00+", "TIFF"),
)
# Sizes of the BMP info headers (core, v1..v5): "BM" alone is too weak a signature.
_BMP_INFO_HEADER_SIZES = frozenset({12, 40, 52, 56, 64, 108, 124})

# Signatures of common wrong uploads, to tell the user what they actually sent.
_KNOWN_NON_IMAGES: Final[tuple[tuple[bytes, str], ...]] = (
    (b"%PDF", "a PDF document"),
    (b"PK\x03\x04", "a ZIP archive or Office document"),
    (b"GIF8", "a GIF image"),
    (b"\x1f\x8b", "a gzip-compressed file"),
    (b"\x00\x00\x00\x0cjP  ", "a JPEG 2000 image"),
    (b"\xff\x4f\xff\x51", "a JPEG 2000 codestream"),
)


def sniff_format(data: bytes, name: str) -> str:
    """Name the image format from the leading bytes; the extension is never trusted."""
    magic_end = _DICOM_MAGIC_OFFSET + len(_DICOM_MAGIC)
    if data[_DICOM_MAGIC_OFFSET:magic_end] == _DICOM_MAGIC:
        return "DICOM"
    for magic, image_format in _RASTER_MAGICS:
        if data.startswith(magic):
            return image_format
    if data.startswith(b"BM") and len(data) >= 18:
        (info_header_size,) = struct.unpack_from("<I", data, 14)
        if info_header_size in _BMP_INFO_HEADER_SIZES:
            return "BMP"
    raise UnsupportedFormatError(
        f"{subject(name)} is {_describe_content(data)}, not a supported image. "
        f"{_ALLOWED_FORMATS_TEXT}."
    )


def _describe_content(data: bytes) -> str:
    """Say in words what a non-image upload is, so the user can pick the right file."""
    for magic, description in _KNOWN_NON_IMAGES:
        if data.startswith(magic):
            return description
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "a WebP image"
    if data[4:8] == b"ftyp":
        return "an HEIC photo or MP4 video"
    head = data[:4096]
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        text = None
    if text is not None and "\x00" not in text:
        if text.lstrip().lower().startswith(("<!doctype html", "<html", "<?xml")):
            return "an HTML or XML document"
        return "a text file"
    return f"unrecognised binary data (first bytes: {data[:8].hex(' ')})"
