"""Opening whole-slide images: pyramidal SVS/TIFF through tiffslide, plain PNG/JPEG in memory.

:func:`open_slide` returns a :class:`Slide` whose :meth:`Slide.read_region` reads one
level-0 rectangle at a requested output size from the pyramid level closest to it, so a
caller never holds more than one tile of a 40,000 x 40,000 slide in memory. The physical
scale (microns per pixel, mpp) comes from the vendor or TIFF resolution metadata when it
is plausible, or from the caller; without either, :class:`MissingCalibrationError` asks
for it, because areas in mm² and the model's magnification depend on it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import cv2
import numpy as np

from utils.errors import (
    CorruptImageError,
    ImageDimensionError,
    InvalidImageError,
    MissingCalibrationError,
    UnsupportedFormatError,
)
from utils.image_io import load_image

__all__ = ["MPP_RANGE", "RASTER_MAX_PIXELS", "Slide", "open_slide"]

#: Plausible microns per pixel of a microscope scan (100x oil to a 1.25x overview). A TIFF
#: resolution outside it is a scanner-less default (72 dpi is 352 µm/px), not a scale.
MPP_RANGE: Final = (0.05, 20.0)
#: Largest plain PNG/JPEG/BMP accepted (decoded whole: 100 M px is 300 MB of RGB).
RASTER_MAX_PIXELS: Final = 100_000_000
_TIFF_MAGICS: Final = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")
_SLIDE_SUFFIXES: Final = ".svs, .tif, .tiff, .png, .jpg, .jpeg, .bmp"


@dataclass(frozen=True)
class _RasterPyramid:
    """A plain image decoded whole into memory (it has no pyramid to read from)."""

    pixels: np.ndarray


class Slide:
    """A whole-slide image opened for region reads (use :func:`open_slide`).

    Attributes:
        path: The file.
        width: Level-0 width in pixels.
        height: Level-0 height in pixels.
        mpp: Microns per level-0 pixel.
        mpp_source: ``"metadata"`` or ``"user"``.
        vendor: Scanner vendor from the metadata, or ``"raster"`` / ``"generic-tiff"``.
        level_downsamples: Downsample factor of every pyramid level (1.0 first).
    """

    def __init__(self, path: Path, backend: Any, mpp: float, mpp_source: str, vendor: str) -> None:
        """Wrap an open backend (a ``tiffslide.TiffSlide`` or an in-memory raster)."""
        self.path = path
        self._backend = backend
        self.mpp = mpp
        self.mpp_source = mpp_source
        self.vendor = vendor
        if isinstance(backend, _RasterPyramid):
            self.height, self.width = backend.pixels.shape[:2]
            self.level_downsamples: tuple[float, ...] = (1.0,)
        else:
            self.width, self.height = (int(side) for side in backend.dimensions)
            self.level_downsamples = tuple(float(d) for d in backend.level_downsamples)

    @property
    def dimensions(self) -> tuple[int, int]:
        """(width, height) of level 0."""
        return self.width, self.height

    def read_region(self, x: int, y: int, width: int, height: int, out_size: int) -> np.ndarray:
        """The level-0 rectangle ``(x, y, width, height)`` as (out_size, out_size, 3) uint8 RGB.

        Reads from the coarsest pyramid level that still has at least ``out_size`` pixels
        across the rectangle, then resizes (area interpolation) to exactly ``out_size``.

        Raises:
            ImageDimensionError: The rectangle leaves the slide.
            CorruptImageError: The slide's tile data cannot be decoded.
        """
        if x < 0 or y < 0 or width < 1 or height < 1:
            raise ImageDimensionError(f"Region ({x}, {y}, {width}, {height}) is not valid.")
        if x + width > self.width or y + height > self.height:
            raise ImageDimensionError(
                f"Region ({x}, {y}, {width} x {height}) leaves the {self.width} x "
                f"{self.height} px slide."
            )
        downsample = width / out_size
        if isinstance(self._backend, _RasterPyramid):
            region = self._backend.pixels[y : y + height, x : x + width]
        else:
            region = self._read_tiff(x, y, width, height, downsample)
        if region.shape[:2] != (out_size, out_size):
            interpolation = cv2.INTER_AREA if region.shape[0] > out_size else cv2.INTER_LINEAR
            region = cv2.resize(region, (out_size, out_size), interpolation=interpolation)
        return np.ascontiguousarray(region)

    def _read_tiff(self, x: int, y: int, width: int, height: int, downsample: float) -> np.ndarray:
        level = self._backend.get_best_level_for_downsample(max(downsample, 1.0))
        level_ds = self.level_downsamples[level]
        size = (max(1, round(width / level_ds)), max(1, round(height / level_ds)))
        try:
            region = self._backend.read_region((x, y), level, size, as_array=True)
        except Exception as error:  # tifffile/imagecodecs raise many types on bad tiles
            raise CorruptImageError(
                f"Slide {self.path.name}: the tile data at ({x}, {y}) cannot be decoded "
                f"({type(error).__name__}: {error}). The file is damaged or truncated."
            ) from error
        return np.asarray(region)[..., :3]

    def thumbnail(self, max_side: int) -> np.ndarray:
        """The whole slide as (h, w, 3) uint8 RGB with its longer side at most ``max_side``.

        Read from the smallest pyramid level that is at least that large, so the full
        resolution is never decoded when the file has a pyramid.
        """
        scale = min(1.0, max_side / max(self.width, self.height))
        size = (max(1, round(self.width * scale)), max(1, round(self.height * scale)))
        if isinstance(self._backend, _RasterPyramid):
            pixels = self._backend.pixels
        else:
            level = self._backend.get_best_level_for_downsample(1.0 / scale)
            level_w, level_h = self._backend.level_dimensions[level]
            try:
                pixels = self._backend.read_region((0, 0), level, (level_w, level_h), as_array=True)
            except Exception as error:
                raise CorruptImageError(
                    f"Slide {self.path.name}: its level {level} cannot be decoded "
                    f"({type(error).__name__}: {error}). The file is damaged or truncated."
                ) from error
            pixels = np.asarray(pixels)[..., :3]
        if pixels.shape[1::-1] == size:
            return np.ascontiguousarray(pixels)
        return cv2.resize(pixels, size, interpolation=cv2.INTER_AREA)

    def properties(self) -> dict[str, Any]:
        """JSON-ready description of the slide (no patient or operator fields)."""
        return {
            "file": self.path.name,
            "vendor": self.vendor,
            "width": self.width,
            "height": self.height,
            "mpp": self.mpp,
            "mpp_source": self.mpp_source,
            "levels": len(self.level_downsamples),
            "level_downsamples": [round(d, 4) for d in self.level_downsamples],
        }

    def close(self) -> None:
        """Release the file handle."""
        if not isinstance(self._backend, _RasterPyramid):
            self._backend.close()

    def __enter__(self) -> Slide:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _valid_mpp(value: Any) -> float | None:
    try:
        mpp = float(value)
    except (TypeError, ValueError):
        return None
    return mpp if math.isfinite(mpp) and MPP_RANGE[0] <= mpp <= MPP_RANGE[1] else None


def _check_user_mpp(mpp: float | None) -> float | None:
    if mpp is None:
        return None
    checked = _valid_mpp(mpp)
    if checked is None:
        raise MissingCalibrationError(
            f"--mpp must be microns per pixel between {MPP_RANGE[0]} and {MPP_RANGE[1]} "
            f"(0.25 at 40x, 0.5 at 20x); got {mpp!r}."
        )
    return checked


def _open_tiff(path: Path) -> Any:
    import tiffslide

    try:
        slide = tiffslide.TiffSlide(path)
        _ = slide.dimensions, slide.level_downsamples
    except Exception as error:  # tifffile raises TiffFileError, ValueError, struct.error...
        raise CorruptImageError(
            f"Slide {path.name} cannot be opened as a pyramidal TIFF/SVS "
            f"({type(error).__name__}: {error}). The file is damaged, truncated or not a slide."
        ) from error
    return slide


def open_slide(path: str | Path, *, mpp: float | None = None) -> Slide:
    """Open a whole-slide image or a large plain image for tiled reading.

    Args:
        path: An Aperio SVS, a (pyramidal) TIFF, or a PNG/JPEG/BMP.
        mpp: Microns per level-0 pixel; overrides the metadata. Required when the file
            has no plausible scale (plain images, TIFFs without resolution tags).

    Returns:
        The open slide (close it, or use it as a context manager).

    Raises:
        InvalidImageError: The path is not a readable file.
        UnsupportedFormatError: The content is not a TIFF/SVS or a raster image.
        CorruptImageError: The file is damaged.
        MissingCalibrationError: No usable mpp in the metadata and none given, or the
            given one is out of range.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise InvalidImageError(f"Slide {path} does not exist or is not a file.")
    user_mpp = _check_user_mpp(mpp)
    with path.open("rb") as handle:
        magic = handle.read(4)
    if magic in _TIFF_MAGICS:
        backend = _open_tiff(path)
        props = backend.properties
        vendor = props.get("tiffslide.vendor") or "generic-tiff"
        found_mpp = _valid_mpp(props.get("tiffslide.mpp-x"))
    else:
        try:
            image = load_image(path, max_pixels=RASTER_MAX_PIXELS)
        except UnsupportedFormatError as error:
            raise UnsupportedFormatError(
                f"{error} Whole-slide analysis reads {_SLIDE_SUFFIXES}."
            ) from error
        backend, vendor, found_mpp = _RasterPyramid(image.pixels), "raster", None
    chosen = user_mpp if user_mpp is not None else found_mpp
    if chosen is None:
        if not isinstance(backend, _RasterPyramid):
            backend.close()
        raise MissingCalibrationError(
            f"Slide {path.name} has no microns-per-pixel metadata, so tile magnification "
            "and areas in mm² are unknown. Pass it with --mpp (e.g. --mpp 0.25 for a 40x "
            "scan, 0.5 for 20x) or enter it on the page."
        )
    return Slide(path, backend, chosen, "user" if user_mpp is not None else "metadata", vendor)
