"""What :func:`~utils.image_io.load_image` returns, and what each decoder hands over.

:class:`LoadedImage` and :class:`ImageMetadata` are public; :class:`DecodedImage` is
the decoders' intermediate result, before the shared conversion to RGB uint8.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np

from utils.errors import ImageDimensionError


@dataclass(frozen=True)
class ImageMetadata:
    """What is known about a loaded image besides its pixels.

    Attributes:
        source: File name (without folder) or ``"<bytes>"`` for bytes and unnamed streams.
        format: Detected format: ``"PNG"``, ``"JPEG"``, ``"BMP"``, ``"TIFF"`` or ``"DICOM"``.
        original_mode: Pillow mode of the source (``"L"``, ``"RGBA"``, ``"I;16"``...), or
            the DICOM PhotometricInterpretation (``"MONOCHROME2"``...).
        original_bit_depth: Bits per sample in the source (1, 8, 16, 32...).
        width: Width in pixels of the loaded image, after the EXIF orientation.
        height: Height in pixels of the loaded image, after the EXIF orientation.
        pixel_spacing_mm: (row, column) spacing in millimetres, known only for
            calibrated DICOM; ``None`` otherwise (PNG/JPEG DPI is not a calibration).
        had_alpha: The source had an alpha channel or a transparent palette entry.
        exif_transposed: The EXIF orientation changed the pixel layout.
        extra: Format-specific, non-identifying details (e.g. DICOM ``modality``,
            ``transfer_syntax``; ``frame_count`` of a multi-page TIFF). Never holds
            patient identifiers.
    """

    source: str
    format: str
    original_mode: str
    original_bit_depth: int
    width: int
    height: int
    pixel_spacing_mm: tuple[float, float] | None = None
    had_alpha: bool = False
    exif_transposed: bool = False
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, eq=False)
class LoadedImage:
    """A decoded image in the one layout TumorLens works with.

    Attributes:
        pixels: ``uint8`` array of shape (H, W, 3), RGB, C-contiguous, owned and writable
            (``load_image`` never returns a view into a decoder's buffer). Grayscale
            sources have three identical channels.
        metadata: Where the image came from and how it was converted.
    """

    pixels: np.ndarray
    metadata: ImageMetadata

    def __post_init__(self) -> None:
        """Reject pixel arrays that break the documented layout.

        Raises:
            ImageDimensionError: ``pixels`` is not a C-contiguous (H, W, 3) uint8 array.
        """
        pixels = self.pixels
        if (
            pixels.dtype != np.uint8
            or pixels.ndim != 3
            or pixels.shape[2] != 3
            or not pixels.flags.c_contiguous
        ):
            raise ImageDimensionError(
                f"LoadedImage needs a C-contiguous (H, W, 3) uint8 array; got shape "
                f"{pixels.shape} of {pixels.dtype}."
            )

    @cached_property
    def is_grayscale(self) -> bool:
        """True when the source was single-channel or its three channels are identical."""
        red, green, blue = (self.pixels[..., channel] for channel in range(3))
        return bool(np.array_equal(red, green) and np.array_equal(green, blue))

    @property
    def gray(self) -> np.ndarray:
        """The image as (H, W) ``uint8`` luminance (ITU-R 601, as Pillow's ``"L"``)."""
        if self.is_grayscale:
            return self.pixels[..., 0].copy()
        weights = np.array([299, 587, 114], dtype=np.uint32)
        luminance = (self.pixels.astype(np.uint32) @ weights + 500) // 1000
        return luminance.astype(np.uint8)


@dataclass
class DecodedImage:
    """Intermediate result of one decoder, before the shared conversion to RGB uint8."""

    samples: np.ndarray  # (H, W) or (H, W, 3), any numeric dtype
    alpha: np.ndarray | None  # (H, W), any numeric dtype
    format: str
    original_mode: str
    bit_depth: int
    orientation: int = 1  # EXIF orientation still to apply
    transposed_by_decoder: bool = False  # Pillow already applied the TIFF orientation
    pixel_spacing_mm: tuple[float, float] | None = None
    extra: dict[str, Any] = field(default_factory=dict)
