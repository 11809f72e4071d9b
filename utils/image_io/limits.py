"""Size limits checked before any pixel is decoded: bytes, then header dimensions."""

from __future__ import annotations

from typing import Final

from utils.errors import ConfigError, EmptyFileError, ImageDimensionError, ImageTooLargeError
from utils.image_io.messages import subject

#: Largest file or upload accepted, in bytes (200 MiB): far above any ultrasound frame or
#: H&E tile, small enough that a wrong upload (a video, a whole-slide image) fails fast.
DEFAULT_MAX_BYTES: Final[int] = 200 * 1024 * 1024

#: Largest image accepted, in pixels (64 million, e.g. 8000 x 8000). The decoded RGB
#: array of such an image takes 192 MB; whole-slide images need a tiled reader instead.
DEFAULT_MAX_PIXELS: Final[int] = 64_000_000


def require_positive_limit(option: str, value: int) -> None:
    """Raise ConfigError unless ``value`` (the ``load_image`` option ``option``) is an int >= 1."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"load_image {option} must be a positive integer; got {value!r}.")


def check_byte_count(size: int, name: str, max_bytes: int) -> None:
    """Raise EmptyFileError for 0 bytes, ImageTooLargeError above ``max_bytes``."""
    if size == 0:
        raise EmptyFileError(
            f"{subject(name)} is empty (0 bytes). Choose a PNG, JPEG, BMP, TIFF or DICOM "
            "image that contains data; the export or upload may have failed."
        )
    if size > max_bytes:
        raise ImageTooLargeError(
            f"{subject(name)} is {_format_bytes(size)}; the limit is "
            f"{_format_bytes(max_bytes)}. Export a smaller or cropped image."
        )


def check_dimensions(width: int, height: int, name: str, max_pixels: int) -> None:
    """Raise ImageDimensionError for a zero side, ImageTooLargeError above ``max_pixels``."""
    if width <= 0 or height <= 0:
        raise ImageDimensionError(
            f"{subject(name)} is {width} x {height} px; an image needs at least 1 x 1 px. "
            "The file is probably a failed export; export it again."
        )
    if width * height > max_pixels:
        raise ImageTooLargeError(
            f"{subject(name)} is {width} x {height} px ({width * height / 1e6:.1f} million "
            f"pixels); the limit is {max_pixels / 1e6:.1f} million pixels. Downscale or crop "
            "it first."
        )


def _format_bytes(size: int) -> str:
    if size < 1024 * 1024:
        return f"{size / 1024:.1f} KiB"
    return f"{size / (1024 * 1024):.1f} MiB"
