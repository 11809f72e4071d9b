"""The one image loader of TumorLens: ultrasound and H&E images in, RGB uint8 out.

:func:`load_image` reads PNG, JPEG, BMP, TIFF and single-frame DICOM from a path, raw
bytes or a binary file-like object (e.g. a Streamlit upload) and always returns a
:class:`LoadedImage` whose pixels are a C-contiguous ``(H, W, 3)`` ``uint8`` RGB array,
so every later stage (preprocessing, models, display) sees one layout.

Conversion rules, applied to every source:

* The format is detected from the bytes, never from the file extension.
* Grayscale sources are replicated to three identical channels.
* Transparent pixels are composited onto black: ultrasound exports are often RGBA with
  a transparent area outside the scan sector, which must read as "no signal".
* Sources with more than 8 bits per sample (16-bit PNG/TIFF, 32-bit int, float TIFF,
  DICOM without a VOI window) are rescaled linearly from their actual minimum..maximum
  over all channels to 0..255; a constant image becomes all zeros. 8-bit sources keep
  their values.
* The EXIF orientation tag is applied, so phone photos of slides come out upright.
* DICOM: the modality LUT (rescale slope/intercept) and the VOI LUT or window are
  applied, MONOCHROME1 is inverted so that bright always means high signal, and the
  physical pixel spacing is read into :attr:`ImageMetadata.pixel_spacing_mm`. Patient
  identifiers are never copied into the metadata.

Every failure raises a :class:`~utils.errors.TumorLensError` subclass whose message says
what was received and what is allowed. Sizes are checked before any pixel is decoded:
the byte count against ``max_bytes`` and the header's width x height against
``max_pixels``. Pillow's own decompression-bomb guard (``Image.MAX_IMAGE_PIXELS``) stays
active on top and is reported as :class:`~utils.errors.ImageTooLargeError`; this module
never changes that global, nor ``ImageFile.LOAD_TRUNCATED_IMAGES``, so truncated files
fail instead of loading half grey.
"""

from __future__ import annotations

import io
import struct
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cached_property
from os import PathLike
from pathlib import Path
from typing import Any, BinaryIO, Final

import imagecodecs
import numpy as np
import pydicom
import tifffile
from PIL import Image
from pydicom.pixels import apply_modality_lut, apply_voi_lut, get_decoder

from utils.errors import (
    ConfigError,
    CorruptImageError,
    EmptyFileError,
    ImageDimensionError,
    ImageTooLargeError,
    InvalidImageError,
    TumorLensError,
    UnsupportedDicomError,
    UnsupportedFormatError,
)

#: Largest file or upload accepted, in bytes (200 MiB): far above any ultrasound frame or
#: H&E tile, small enough that a wrong upload (a video, a whole-slide image) fails fast.
DEFAULT_MAX_BYTES: Final[int] = 200 * 1024 * 1024

#: Largest image accepted, in pixels (64 million, e.g. 8000 x 8000). The decoded RGB
#: array of such an image takes 192 MB; whole-slide images need a tiled reader instead.
DEFAULT_MAX_PIXELS: Final[int] = 64_000_000

#: File extensions (without dot) to offer in file pickers, e.g. ``st.file_uploader(type=...)``.
SUPPORTED_FORMATS: Final[tuple[str, ...]] = ("png", "jpg", "jpeg", "bmp", "tif", "tiff", "dcm")

#: ``ImageMetadata.source`` of images given as bytes or as an unnamed stream.
BYTES_SOURCE: Final[str] = "<bytes>"

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

_DICOM_PHOTOMETRICS = frozenset({"MONOCHROME1", "MONOCHROME2", "RGB", "YBR_FULL", "YBR_FULL_422"})
# DICOM ultrasound region physical unit code for centimetres (PS3.3 C.8.5.5.1.15).
_DICOM_UNIT_CM = 3
# DICOM ultrasound region spatial format code for a 2D tissue image.
_DICOM_REGION_2D = 1


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
class _Decoded:
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
    _require_positive_limit("max_bytes", max_bytes)
    _require_positive_limit("max_pixels", max_pixels)
    data, name = _read_source(source, max_bytes)
    image_format = _sniff_format(data, name)
    if image_format == "DICOM":
        decoded = _decode_dicom(data, name, max_pixels)
    else:
        decoded = _decode_raster(data, image_format, name, max_pixels)
    return _to_loaded_image(decoded, name)


# ---------------------------------------------------------------------------- reading


def _require_positive_limit(option: str, value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"load_image {option} must be a positive integer; got {value!r}.")


def _read_source(source: object, max_bytes: int) -> tuple[bytes, str]:
    """Return the source's bytes and display name, enforcing the byte limit first."""
    if isinstance(source, bytes | bytearray | memoryview):
        view = memoryview(source)
        _check_byte_count(view.nbytes, BYTES_SOURCE, max_bytes)
        return view.tobytes(), BYTES_SOURCE
    if isinstance(source, str | PathLike):
        return _read_path(Path(source), max_bytes)
    if hasattr(source, "read"):
        return _read_stream(source, max_bytes)
    raise TypeError(
        f"load_image expects a path, bytes or a binary file object; got {type(source).__name__}."
    )


def _read_path(path: Path, max_bytes: int) -> tuple[bytes, str]:
    try:
        size = path.stat().st_size
    except FileNotFoundError as error:
        raise InvalidImageError(
            f"File not found: '{path}'. Check the path and that the file still exists."
        ) from error
    except OSError as error:
        raise InvalidImageError(f"Cannot read '{path}': {error.strerror}.") from error
    if path.is_dir():
        raise InvalidImageError(f"'{path}' is a folder, not an image file. Choose one image.")
    _check_byte_count(size, path.name, max_bytes)
    try:
        with path.open("rb") as stream:
            # One byte more than allowed, in case the file grew since stat().
            data = stream.read(max_bytes + 1)
    except OSError as error:
        raise InvalidImageError(f"Cannot read '{path}': {error.strerror}.") from error
    _check_byte_count(len(data), path.name, max_bytes)
    return data, path.name


def _read_stream(stream: Any, max_bytes: int) -> tuple[bytes, str]:
    stream_name = getattr(stream, "name", None)
    name = Path(stream_name).name if isinstance(stream_name, str) and stream_name else None
    name = name or BYTES_SOURCE
    # Reading one byte past the limit tells "too large" apart without reading it all.
    data = stream.read(max_bytes + 1)
    if not isinstance(data, bytes | bytearray):
        raise TypeError(
            f"load_image needs a stream opened in binary mode ('rb'); {name} returned "
            f"{type(data).__name__}."
        )
    _check_byte_count(len(data), name, max_bytes)
    return bytes(data), name


def _check_byte_count(size: int, name: str, max_bytes: int) -> None:
    if size == 0:
        raise EmptyFileError(
            f"{_subject(name)} is empty (0 bytes). Choose a PNG, JPEG, BMP, TIFF or DICOM "
            "image that contains data; the export or upload may have failed."
        )
    if size > max_bytes:
        raise ImageTooLargeError(
            f"{_subject(name)} is {_format_bytes(size)}; the limit is "
            f"{_format_bytes(max_bytes)}. Export a smaller or cropped image."
        )


def _sniff_format(data: bytes, name: str) -> str:
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
        f"{_subject(name)} is {_describe_content(data)}, not a supported image. "
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


# ---------------------------------------------------------- PNG / JPEG / BMP / TIFF


def _decode_raster(data: bytes, image_format: str, name: str, max_pixels: int) -> _Decoded:
    """Decode PNG, JPEG, BMP or TIFF with Pillow; tifffile/imagecodecs where it falls short."""
    header_size = _peek_header_size(data, image_format)
    if header_size is not None:
        _check_dimensions(*header_size, name, max_pixels)
    try:
        with _decoding_errors(image_format, name):
            image = Image.open(io.BytesIO(data), formats=[image_format])
    except CorruptImageError:
        if image_format == "TIFF":
            # tifffile reads TIFFs Pillow cannot open and reports their real dimensions.
            return _decode_tiff_with_tifffile(data, name, max_pixels)
        raise
    with image:
        _check_dimensions(*image.size, name, max_pixels)
        if image_format == "TIFF" and _is_high_depth_colour_tiff(image):
            return _decode_tiff_with_tifffile(data, name, max_pixels)
        if image_format == "PNG" and _is_high_depth_colour_png(data):
            return _decode_png_with_imagecodecs(data, image, name)
        # Pillow's TIFF load applies the orientation itself and then drops the tag, so
        # read it first (TIFF tags are parsed at open; other formats may need a load).
        declared_orientation = _exif_orientation(image) if image_format == "TIFF" else 1
        with _decoding_errors(image_format, name):
            image.load()
        remaining_orientation = _exif_orientation(image)
        samples, alpha = _pil_arrays(image)
        return _Decoded(
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


def _check_dimensions(width: int, height: int, name: str, max_pixels: int) -> None:
    if width <= 0 or height <= 0:
        raise ImageDimensionError(
            f"{_subject(name)} is {width} x {height} px; an image needs at least 1 x 1 px. "
            "The file is probably a failed export; export it again."
        )
    if width * height > max_pixels:
        raise ImageTooLargeError(
            f"{_subject(name)} is {width} x {height} px ({width * height / 1e6:.1f} million "
            f"pixels); the limit is {max_pixels / 1e6:.1f} million pixels. Downscale or crop "
            "it first."
        )


@contextmanager
def _decoding_errors(image_format: str, name: str) -> Iterator[None]:
    """Turn any decoder failure into a TumorLens error naming the file and format."""
    try:
        yield
    except TumorLensError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        raise ImageTooLargeError(
            f"{_subject(name)} has more pixels than the decoder's safety limit ({error}). "
            "Downscale or crop it first."
        ) from error
    except MemoryError:
        raise
    except Exception as error:
        # Decoders raise many types on damaged input (OSError, SyntaxError, ValueError,
        # struct.error, zlib.error...); for the user they all mean the same thing.
        raise CorruptImageError(
            f"{_subject(name)} is a damaged or incomplete {image_format} file and cannot be "
            f"decoded ({error}). Export or download it again."
        ) from error


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


def _decode_png_with_imagecodecs(data: bytes, image: Image.Image, name: str) -> _Decoded:
    with _decoding_errors("PNG", name):
        array = imagecodecs.png_decode(data)
    samples, alpha = _split_alpha(array)
    return _Decoded(
        samples=samples,
        alpha=alpha,
        format="PNG",
        original_mode=image.mode,
        bit_depth=16,
        orientation=_exif_orientation(image),
    )


def _decode_tiff_with_tifffile(data: bytes, name: str, max_pixels: int) -> _Decoded:
    with _decoding_errors("TIFF", name), tifffile.TiffFile(io.BytesIO(data)) as tiff:
        page = tiff.pages.first
        _check_dimensions(page.imagewidth, page.imagelength, name, max_pixels)
        array = page.asarray()
        if page.planarconfig == tifffile.PLANARCONFIG.SEPARATE and array.ndim == 3:
            array = np.moveaxis(array, 0, -1)
        orientation_tag = page.tags.get(_EXIF_ORIENTATION_TAG)
        orientation = int(orientation_tag.value) if orientation_tag is not None else 1
        bit_depth = int(page.bitspersample)
        frame_count = len(tiff.pages)
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[2] > 4):
        raise UnsupportedFormatError(
            f"{_subject(name)} is a TIFF with {array.shape[-1]} channels per pixel; "
            "TumorLens reads gray, gray+alpha, RGB and RGBA images."
        )
    samples, alpha = _split_alpha(array)
    return _Decoded(
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


# -------------------------------------------------------------------------------- DICOM


def _decode_dicom(data: bytes, name: str, max_pixels: int) -> _Decoded:
    """Decode a single-frame DICOM image with its modality and VOI transforms."""
    with _decoding_errors("DICOM", name):
        dataset = pydicom.dcmread(io.BytesIO(data))
    _require_single_image(dataset, name)
    rows, columns = _dicom_int(dataset, "Rows", 0, name), _dicom_int(dataset, "Columns", 0, name)
    _check_dimensions(columns, rows, name, max_pixels)
    photometric = str(dataset.get("PhotometricInterpretation", "")).strip().upper()
    if photometric not in _DICOM_PHOTOMETRICS:
        raise UnsupportedDicomError(
            f"{_subject(name)} uses the DICOM colour model '{photometric or 'none'}'; "
            "TumorLens reads MONOCHROME1, MONOCHROME2, RGB and YBR_FULL DICOM images. "
            "Export the image as PNG instead."
        )
    transfer_syntax = dataset.file_meta.get("TransferSyntaxUID")
    _require_dicom_decoder(transfer_syntax, name)
    with _decoding_errors("DICOM", name):
        raw = dataset.pixel_array
    samples, rescaled, voi_applied = _dicom_display_values(raw, dataset, photometric)
    extra = {
        "modality": str(dataset.get("Modality", "")),
        "transfer_syntax": transfer_syntax.name if transfer_syntax else "",
        "rescale_applied": rescaled,
        "voi_applied": voi_applied,
    }
    return _Decoded(
        samples=samples,
        alpha=None,
        format="DICOM",
        original_mode=photometric,
        bit_depth=_dicom_int(dataset, "BitsStored", 8, name),
        pixel_spacing_mm=_dicom_pixel_spacing(dataset),
        extra=extra,
    )


def _require_single_image(dataset: pydicom.Dataset, name: str) -> None:
    if "PixelData" not in dataset:
        modality = dataset.get("Modality", "unknown")
        raise UnsupportedDicomError(
            f"{_subject(name)} is a DICOM file without image pixel data (modality "
            f"{modality}); it may be a report or a presentation state. Choose a DICOM image."
        )
    frame_count = _dicom_int(dataset, "NumberOfFrames", 1, name)
    if frame_count > 1:
        raise UnsupportedDicomError(
            f"{_subject(name)} holds {frame_count} frames (a cine loop or volume); "
            "TumorLens reads single-frame DICOM images only. Export the frame you need."
        )


def _dicom_int(dataset: pydicom.Dataset, keyword: str, default: int, name: str) -> int:
    """Read an integer attribute; a malformed value means a damaged file."""
    try:
        value = dataset.get(keyword)  # pydicom converts the raw text here
        return default if value is None or value == "" else int(value)
    except (TypeError, ValueError) as error:
        raise CorruptImageError(
            f"{_subject(name)} is a damaged DICOM file: its {keyword} is not a number "
            f"({error}). Export it again."
        ) from error


def _require_dicom_decoder(transfer_syntax: pydicom.uid.UID | None, name: str) -> None:
    if transfer_syntax is None:
        return  # pydicom falls back to the default (uncompressed) encoding
    try:
        available = get_decoder(transfer_syntax).is_available
    except (NotImplementedError, ValueError):
        available = False
    if not available:
        raise UnsupportedDicomError(
            f"{_subject(name)} is compressed with {transfer_syntax.name} ({transfer_syntax}), "
            "and no decoder for it is installed. Export it uncompressed (Explicit VR Little "
            "Endian) or as PNG, or install a decoder such as pylibjpeg."
        )


def _dicom_display_values(
    raw: np.ndarray, dataset: pydicom.Dataset, photometric: str
) -> tuple[np.ndarray, bool, bool]:
    """Apply modality and VOI transforms; return (uint8 samples, rescaled, voi_applied)."""
    if not photometric.startswith("MONOCHROME"):
        # pydicom already converts YBR to RGB; colour images carry no LUTs to apply.
        return _to_uint8(raw), False, False
    values = raw
    rescaled = _has_modality_transform(dataset)
    if rescaled:
        values = apply_modality_lut(values, dataset)
    voi_applied = "VOILUTSequence" in dataset or "WindowCenter" in dataset
    samples = _apply_voi_to_uint8(values, dataset) if voi_applied else _to_uint8(values)
    if photometric == "MONOCHROME1":
        samples = 255 - samples  # MONOCHROME1 shows low values bright
    return samples, rescaled, voi_applied


def _has_modality_transform(dataset: pydicom.Dataset) -> bool:
    if "ModalityLUTSequence" in dataset:
        return True
    slope = float(dataset.get("RescaleSlope") or 1.0)
    intercept = float(dataset.get("RescaleIntercept") or 0.0)
    return slope != 1.0 or intercept != 0.0


def _apply_voi_to_uint8(values: np.ndarray, dataset: pydicom.Dataset) -> np.ndarray:
    """Apply the VOI LUT or window, mapping the window's output range onto 0..255.

    Mapping the window's full output range (not the image's min..max) keeps the
    contrast the window was chosen for, even when no pixel reaches its ends.
    """
    windowed = apply_voi_lut(values, dataset)
    extremes = np.array([np.iinfo(np.int32).min, np.iinfo(np.int32).max], dtype=np.int64)
    with np.errstate(over="ignore"):  # the sigmoid window overflows to its limits here
        low, high = (float(bound) for bound in apply_voi_lut(extremes, dataset))
    if not high > low:
        return _to_uint8(windowed)
    scaled = (np.asarray(windowed, dtype=np.float64) - low) * (255.0 / (high - low))
    return np.clip(np.rint(scaled), 0, 255).astype(np.uint8)


def _dicom_pixel_spacing(dataset: pydicom.Dataset) -> tuple[float, float] | None:
    """Return (row, column) spacing in mm from the pixel-spacing tags or ultrasound regions."""
    for keyword in ("PixelSpacing", "ImagerPixelSpacing"):
        spacing = _positive_pair(*_two_values(dataset.get(keyword)))
        if spacing is not None:
            return spacing
    regions = list(dataset.get("SequenceOfUltrasoundRegions") or [])
    # Prefer 2D tissue regions over Doppler / M-mode strips of the same frame.
    regions.sort(key=lambda region: region.get("RegionSpatialFormat") != _DICOM_REGION_2D)
    for region in regions:
        in_cm = (
            region.get("PhysicalUnitsXDirection") == _DICOM_UNIT_CM
            and region.get("PhysicalUnitsYDirection") == _DICOM_UNIT_CM
        )
        spacing = _positive_pair(region.get("PhysicalDeltaY"), region.get("PhysicalDeltaX"))
        if in_cm and spacing is not None:
            return spacing[0] * 10.0, spacing[1] * 10.0  # regions are calibrated in cm
    return None


def _two_values(value: Any) -> tuple[Any, Any]:
    """Unpack a DICOM value of multiplicity 2; (None, None) for anything else."""
    try:
        first, second = value
    except (TypeError, ValueError):
        return None, None
    return first, second


def _positive_pair(first: Any, second: Any) -> tuple[float, float] | None:
    try:
        pair = (float(first), float(second))
    except (TypeError, ValueError):
        return None
    return pair if all(np.isfinite(value) and value > 0 for value in pair) else None


# ------------------------------------------------------------------------ conversion


def _to_loaded_image(decoded: _Decoded, name: str) -> LoadedImage:
    """Apply the shared conversion rules: uint8, black background, RGB, orientation."""
    rgb = _to_uint8(decoded.samples)
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


def _to_uint8(samples: np.ndarray) -> np.ndarray:
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


# ---------------------------------------------------------------------------- messages


def _subject(name: str) -> str:
    """Name the input at the start of a message: the quoted file name, or "The uploaded data"."""
    return "The uploaded data" if name == BYTES_SOURCE else f"'{name}'"


def _format_bytes(size: int) -> str:
    if size < 1024 * 1024:
        return f"{size / 1024:.1f} KiB"
    return f"{size / (1024 * 1024):.1f} MiB"
