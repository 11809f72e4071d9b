"""Single-frame DICOM decoding: modality and VOI transforms, MONOCHROME1, pixel spacing.

Patient identifiers are never copied into the metadata.
"""

from __future__ import annotations

import io
from typing import Any

import numpy as np
import pydicom
from pydicom.pixels import apply_modality_lut, apply_voi_lut, get_decoder

from utils.errors import CorruptImageError, UnsupportedDicomError
from utils.image_io.conversion import to_uint8
from utils.image_io.limits import check_dimensions
from utils.image_io.messages import decoding_errors, subject
from utils.image_io.results import DecodedImage

_DICOM_PHOTOMETRICS = frozenset({"MONOCHROME1", "MONOCHROME2", "RGB", "YBR_FULL", "YBR_FULL_422"})
# DICOM ultrasound region physical unit code for centimetres (PS3.3 C.8.5.5.1.15).
_DICOM_UNIT_CM = 3
# DICOM ultrasound region spatial format code for a 2D tissue image.
_DICOM_REGION_2D = 1


def decode_dicom(data: bytes, name: str, max_pixels: int) -> DecodedImage:
    """Decode a single-frame DICOM image with its modality and VOI transforms."""
    with decoding_errors("DICOM", name):
        dataset = pydicom.dcmread(io.BytesIO(data))
    _require_single_image(dataset, name)
    rows, columns = _dicom_int(dataset, "Rows", 0, name), _dicom_int(dataset, "Columns", 0, name)
    check_dimensions(columns, rows, name, max_pixels)
    photometric = str(dataset.get("PhotometricInterpretation", "")).strip().upper()
    if photometric not in _DICOM_PHOTOMETRICS:
        raise UnsupportedDicomError(
            f"{subject(name)} uses the DICOM colour model '{photometric or 'none'}'; "
            "TumorLens reads MONOCHROME1, MONOCHROME2, RGB and YBR_FULL DICOM images. "
            "Export the image as PNG instead."
        )
    transfer_syntax = dataset.file_meta.get("TransferSyntaxUID")
    _require_dicom_decoder(transfer_syntax, name)
    with decoding_errors("DICOM", name):
        raw = dataset.pixel_array
    samples, rescaled, voi_applied = _dicom_display_values(raw, dataset, photometric)
    extra = {
        "modality": str(dataset.get("Modality", "")),
        "transfer_syntax": transfer_syntax.name if transfer_syntax else "",
        "rescale_applied": rescaled,
        "voi_applied": voi_applied,
    }
    return DecodedImage(
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
            f"{subject(name)} is a DICOM file without image pixel data (modality "
            f"{modality}); it may be a report or a presentation state. Choose a DICOM image."
        )
    frame_count = _dicom_int(dataset, "NumberOfFrames", 1, name)
    if frame_count > 1:
        raise UnsupportedDicomError(
            f"{subject(name)} holds {frame_count} frames (a cine loop or volume); "
            "TumorLens reads single-frame DICOM images only. Export the frame you need."
        )


def _dicom_int(dataset: pydicom.Dataset, keyword: str, default: int, name: str) -> int:
    """Read an integer attribute; a malformed value means a damaged file."""
    try:
        value = dataset.get(keyword)  # pydicom converts the raw text here
        return default if value is None or value == "" else int(value)
    except (TypeError, ValueError) as error:
        raise CorruptImageError(
            f"{subject(name)} is a damaged DICOM file: its {keyword} is not a number "
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
            f"{subject(name)} is compressed with {transfer_syntax.name} ({transfer_syntax}), "
            "and no decoder for it is installed. Export it uncompressed (Explicit VR Little "
            "Endian) or as PNG, or install a decoder such as pylibjpeg."
        )


def _dicom_display_values(
    raw: np.ndarray, dataset: pydicom.Dataset, photometric: str
) -> tuple[np.ndarray, bool, bool]:
    """Apply modality and VOI transforms; return (uint8 samples, rescaled, voi_applied)."""
    if not photometric.startswith("MONOCHROME"):
        # pydicom already converts YBR to RGB; colour images carry no LUTs to apply.
        return to_uint8(raw), False, False
    values = raw
    rescaled = _has_modality_transform(dataset)
    if rescaled:
        values = apply_modality_lut(values, dataset)
    voi_applied = "VOILUTSequence" in dataset or "WindowCenter" in dataset
    samples = _apply_voi_to_uint8(values, dataset) if voi_applied else to_uint8(values)
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
        return to_uint8(windowed)
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
