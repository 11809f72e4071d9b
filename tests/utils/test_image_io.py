"""Tests of utils.image_io: every format, pixel type, source kind and bad input."""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import imagecodecs
import numpy as np
import pytest
import tifffile
from PIL import Image, ImageFile, ImageOps
from pydicom import dcmread
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.pixels import get_decoder
from pydicom.uid import (
    ExplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGBaseline8Bit,
    JPEGLSLossless,
    UltrasoundImageStorage,
    generate_uid,
)

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
from utils.image_io import (
    DEFAULT_MAX_BYTES,
    DEFAULT_MAX_PIXELS,
    SUPPORTED_FORMATS,
    ImageMetadata,
    LoadedImage,
    load_image,
)

ALLOWED_FORMATS_PATTERN = r"PNG, JPEG, BMP, TIFF and single-frame DICOM"
PATIENT_NAME = "Doe^Jane"
PATIENT_ID = "PID-0042"


# ----------------------------------------------------------------------------- helpers


def encode(image: Image.Image, image_format: str, **options: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=image_format, **options)
    return buffer.getvalue()


def png_chunk(chunk_type: bytes, payload: bytes) -> bytes:
    crc = zlib.crc32(chunk_type + payload)
    return struct.pack(">I", len(payload)) + chunk_type + payload + struct.pack(">I", crc)


def crafted_png(width: int, height: int, idat: bytes = b"") -> bytes:
    """A PNG with a valid IHDR (8-bit gray) and CRCs, for sizes Pillow cannot write."""
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", header)
        + png_chunk(b"IDAT", idat or zlib.compress(b""))
        + png_chunk(b"IEND", b"")
    )


def tiff_bytes(array: np.ndarray, **options: object) -> bytes:
    buffer = io.BytesIO()
    tifffile.imwrite(buffer, array, **options)
    return buffer.getvalue()


def make_dicom(
    pixels: np.ndarray,
    photometric: str = "MONOCHROME2",
    *,
    bits_stored: int | None = None,
    transfer_syntax: str = ExplicitVRLittleEndian,
    pixel_data: bytes | None = None,
    **attributes: object,
) -> bytes:
    """A minimal single-frame ultrasound DICOM file, with patient tags to check for leaks."""
    file_meta = FileMetaDataset()
    file_meta.MediaStorageSOPClassUID = UltrasoundImageStorage
    file_meta.MediaStorageSOPInstanceUID = generate_uid()
    file_meta.TransferSyntaxUID = transfer_syntax
    dataset = Dataset()
    dataset.file_meta = file_meta
    dataset.SOPClassUID = UltrasoundImageStorage
    dataset.SOPInstanceUID = file_meta.MediaStorageSOPInstanceUID
    dataset.PatientName = PATIENT_NAME
    dataset.PatientID = PATIENT_ID
    dataset.PatientBirthDate = "19700101"
    dataset.Modality = "US"
    dataset.Rows, dataset.Columns = pixels.shape[:2]
    dataset.SamplesPerPixel = 3 if pixels.ndim == 3 else 1
    dataset.PhotometricInterpretation = photometric
    if pixels.ndim == 3:
        dataset.PlanarConfiguration = 0
    dataset.BitsAllocated = pixels.dtype.itemsize * 8
    dataset.BitsStored = bits_stored or dataset.BitsAllocated
    dataset.HighBit = dataset.BitsStored - 1
    dataset.PixelRepresentation = 0
    if pixel_data is None:
        dataset.PixelData = pixels.tobytes()
    else:
        dataset.PixelData = encapsulate([pixel_data])
        dataset["PixelData"].VR = "OB"
    for keyword, value in attributes.items():  # may override any of the above
        setattr(dataset, keyword, value)
    buffer = io.BytesIO()
    dataset.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def ultrasound_region(delta_x_cm: float, delta_y_cm: float, spatial_format: int = 1) -> Dataset:
    region = Dataset()
    region.RegionSpatialFormat = spatial_format
    region.PhysicalUnitsXDirection = 3  # cm
    region.PhysicalUnitsYDirection = 3
    region.PhysicalDeltaX = delta_x_cm
    region.PhysicalDeltaY = delta_y_cm
    return region


@pytest.fixture
def rgb_array(rng: np.random.Generator) -> np.ndarray:
    return rng.integers(0, 256, size=(12, 16, 3), dtype=np.uint8)


@pytest.fixture
def gray_png(speckle_image: np.ndarray) -> bytes:
    return encode(Image.fromarray(speckle_image), "PNG")


# ---------------------------------------------------------------------- API and layout


def test_public_constants() -> None:
    assert SUPPORTED_FORMATS == ("png", "jpg", "jpeg", "bmp", "tif", "tiff", "dcm")
    assert DEFAULT_MAX_BYTES == 200 * 1024 * 1024
    assert DEFAULT_MAX_PIXELS == 64_000_000


def test_loaded_image_layout_and_metadata(gray_png: bytes, speckle_image: np.ndarray) -> None:
    loaded = load_image(gray_png)
    assert isinstance(loaded, LoadedImage)
    assert loaded.pixels.dtype == np.uint8
    assert loaded.pixels.shape == (*speckle_image.shape, 3)
    assert loaded.pixels.flags.c_contiguous
    assert loaded.pixels.flags.writeable and loaded.pixels.flags.owndata
    assert loaded.metadata == ImageMetadata(
        source="<bytes>",
        format="PNG",
        original_mode="L",
        original_bit_depth=8,
        width=speckle_image.shape[1],
        height=speckle_image.shape[0],
    )


def test_loaded_image_rejects_arrays_outside_the_layout() -> None:
    metadata = ImageMetadata("x.png", "PNG", "L", 8, 4, 3)
    with pytest.raises(ImageDimensionError, match=r"\(H, W, 3\) uint8"):
        LoadedImage(pixels=np.zeros((3, 4), dtype=np.uint8), metadata=metadata)
    with pytest.raises(ImageDimensionError, match="float64"):
        LoadedImage(pixels=np.zeros((3, 4, 3)), metadata=metadata)


def test_gray_of_colour_image_matches_pillow_luminance(rgb_array: np.ndarray) -> None:
    loaded = load_image(encode(Image.fromarray(rgb_array), "PNG"))
    assert not loaded.is_grayscale
    expected = np.asarray(Image.fromarray(rgb_array).convert("L"))
    assert loaded.gray.shape == rgb_array.shape[:2]
    assert np.abs(loaded.gray.astype(int) - expected).max() <= 1


def test_rgb_image_with_identical_channels_is_grayscale(speckle_image: np.ndarray) -> None:
    rgb = np.repeat(speckle_image[..., None], 3, axis=2)
    loaded = load_image(encode(Image.fromarray(rgb), "PNG"))
    assert loaded.metadata.original_mode == "RGB"
    assert loaded.is_grayscale
    np.testing.assert_array_equal(loaded.gray, speckle_image)


# --------------------------------------------------------------------------- pixel modes


def test_mode_1_bit_becomes_black_and_white() -> None:
    bits = np.zeros((5, 7), dtype=bool)
    bits[1:3, 2:6] = True
    loaded = load_image(encode(Image.fromarray(bits), "PNG"))
    assert loaded.metadata.original_mode == "1"
    assert loaded.metadata.original_bit_depth == 1
    np.testing.assert_array_equal(loaded.gray, bits.astype(np.uint8) * 255)
    assert loaded.is_grayscale


def test_mode_l_keeps_values(speckle_image: np.ndarray, gray_png: bytes) -> None:
    loaded = load_image(gray_png)
    assert loaded.is_grayscale
    for channel in range(3):
        np.testing.assert_array_equal(loaded.pixels[..., channel], speckle_image)
    np.testing.assert_array_equal(loaded.gray, speckle_image)


def test_mode_la_is_composited_on_black() -> None:
    gray = np.full((4, 6), 200, dtype=np.uint8)
    alpha = np.zeros((4, 6), dtype=np.uint8)
    alpha[:, 3:] = 255
    alpha[0, 0] = 128
    loaded = load_image(encode(Image.fromarray(np.dstack([gray, alpha]), mode="LA"), "PNG"))
    assert loaded.metadata.original_mode == "LA"
    assert loaded.metadata.had_alpha
    assert loaded.gray[1, 1] == 0
    assert loaded.gray[1, 4] == 200
    assert loaded.gray[0, 0] == round(200 * 128 / 255)


def test_rgba_transparent_pixels_become_black(rgb_array: np.ndarray) -> None:
    alpha = np.full(rgb_array.shape[:2], 255, dtype=np.uint8)
    alpha[:, :5] = 0  # outside the scan sector
    alpha[0, 10] = 51  # 20 % opaque
    loaded = load_image(encode(Image.fromarray(np.dstack([rgb_array, alpha])), "PNG"))
    assert loaded.metadata.had_alpha
    assert loaded.metadata.original_mode == "RGBA"
    assert not loaded.pixels[:, :5].any()
    np.testing.assert_array_equal(loaded.pixels[1:, 5:], rgb_array[1:, 5:])
    expected = np.rint(rgb_array[0, 10] * 0.2)
    assert np.abs(loaded.pixels[0, 10].astype(int) - expected).max() <= 1


def test_palette_without_transparency() -> None:
    palette_image = Image.new("P", (3, 2))
    palette_image.putpalette([255, 0, 0, 0, 255, 0, 0, 0, 255] + [0] * 759)
    palette_image.putdata([0, 1, 2, 2, 1, 0])
    loaded = load_image(encode(palette_image, "PNG"))
    assert loaded.metadata.original_mode == "P"
    assert not loaded.metadata.had_alpha
    np.testing.assert_array_equal(loaded.pixels[0, 0], [255, 0, 0])
    np.testing.assert_array_equal(loaded.pixels[0, 1], [0, 255, 0])
    np.testing.assert_array_equal(loaded.pixels[1, 0], [0, 0, 255])


def test_palette_with_transparency_becomes_black() -> None:
    palette_image = Image.new("P", (3, 2))
    palette_image.putpalette([255, 0, 0, 0, 255, 0, 0, 0, 255] + [0] * 759)
    palette_image.putdata([0, 1, 2, 2, 1, 0])
    loaded = load_image(encode(palette_image, "PNG", transparency=1))
    assert loaded.metadata.had_alpha
    np.testing.assert_array_equal(loaded.pixels[0, 1], [0, 0, 0])
    np.testing.assert_array_equal(loaded.pixels[0, 0], [255, 0, 0])


def test_rgb_keeps_values(rgb_array: np.ndarray) -> None:
    loaded = load_image(encode(Image.fromarray(rgb_array), "PNG"))
    np.testing.assert_array_equal(loaded.pixels, rgb_array)
    assert not loaded.metadata.had_alpha
    assert loaded.pixels.flags.writeable and loaded.pixels.flags.owndata


def test_cmyk_jpeg_is_converted_to_rgb() -> None:
    cmyk = Image.new("CMYK", (8, 8), (0, 255, 255, 0))  # pure red
    loaded = load_image(encode(cmyk, "JPEG", quality=95))
    assert loaded.metadata.original_mode == "CMYK"
    red, green, blue = loaded.pixels[4, 4].astype(int)
    assert red > 200 and green < 60 and blue < 60


def test_16_bit_png_is_rescaled_over_its_range() -> None:
    values = np.array([[1000, 2000], [3000, 5000]], dtype=np.uint16)
    loaded = load_image(encode(Image.fromarray(values), "PNG"))
    assert loaded.metadata.original_mode == "I;16"
    assert loaded.metadata.original_bit_depth == 16
    np.testing.assert_array_equal(loaded.gray, [[0, 64], [128, 255]])


def test_16_bit_tiff_is_rescaled_over_its_range() -> None:
    values = np.array([[100, 200, 300]], dtype=np.uint16)
    loaded = load_image(tiff_bytes(values))
    assert loaded.metadata.format == "TIFF"
    assert loaded.metadata.original_bit_depth == 16
    np.testing.assert_array_equal(loaded.gray, [[0, 128, 255]])


def test_constant_16_bit_image_becomes_zeros() -> None:
    loaded = load_image(tiff_bytes(np.full((3, 3), 777, dtype=np.uint16)))
    assert not loaded.pixels.any()


def test_16_bit_rgb_tiff_keeps_full_precision() -> None:
    values = np.zeros((2, 2, 3), dtype=np.uint16)
    values[0, 0] = [1000, 1000, 1000]
    values[1, 1] = [1000, 2000, 3000]
    values[0, 1] = [3000, 3000, 3000]
    values[1, 0] = [1000, 1000, 1000]
    loaded = load_image(tiff_bytes(values, photometric="rgb"))
    assert loaded.metadata.original_bit_depth == 16
    assert loaded.metadata.original_mode == "RGB"
    np.testing.assert_array_equal(loaded.pixels[1, 1], [0, 128, 255])
    np.testing.assert_array_equal(loaded.pixels[0, 1], [255, 255, 255])


def test_16_bit_rgba_png_is_rescaled_and_composited() -> None:
    values = np.zeros((2, 2, 4), dtype=np.uint16)
    values[..., :3] = [[[0, 0, 0], [65535, 32768, 0]], [[100, 100, 100], [65535, 65535, 65535]]]
    values[..., 3] = [[65535, 65535], [0, 65535]]
    loaded = load_image(imagecodecs.png_encode(values))
    assert loaded.metadata.original_bit_depth == 16
    assert loaded.metadata.had_alpha
    np.testing.assert_array_equal(loaded.pixels[0, 1], [255, 128, 0])
    np.testing.assert_array_equal(loaded.pixels[1, 0], [0, 0, 0])


def test_float_tiff_is_rescaled_and_nan_becomes_zero() -> None:
    values = np.array([[-1.0, 0.0], [1.0, np.nan]], dtype=np.float32)
    loaded = load_image(tiff_bytes(values))
    assert loaded.metadata.original_mode == "F"
    assert loaded.metadata.original_bit_depth == 32
    np.testing.assert_array_equal(loaded.gray, [[0, 128], [255, 0]])


def test_16_bit_planar_rgb_tiff_is_read_with_channels_last() -> None:
    planes = np.stack([np.full((2, 5), level, np.uint16) for level in (0, 1000, 2000)])
    loaded = load_image(tiff_bytes(planes, photometric="rgb", planarconfig="separate"))
    assert loaded.pixels.shape == (2, 5, 3)
    np.testing.assert_array_equal(loaded.pixels[1, 4], [0, 128, 255])


def test_16_bit_gray_alpha_tiff_that_pillow_cannot_open() -> None:
    values = np.zeros((2, 2, 2), dtype=np.uint16)
    values[..., 0] = [[0, 1000], [2000, 2000]]
    values[..., 1] = [[65535, 65535], [65535, 0]]
    data = tiff_bytes(values, photometric="minisblack", extrasamples=["unassalpha"])
    loaded = load_image(data)
    assert loaded.metadata.original_mode == "I;16"
    assert loaded.metadata.had_alpha
    np.testing.assert_array_equal(loaded.gray, [[0, 128], [255, 0]])


def test_float64_tiff_that_pillow_cannot_open() -> None:
    loaded = load_image(tiff_bytes(np.array([[0.0, 0.5, 2.0]])))
    assert loaded.metadata.original_mode == "F"
    assert loaded.metadata.original_bit_depth == 64
    np.testing.assert_array_equal(loaded.gray, [[0, 64, 255]])


def test_tiff_with_more_than_four_channels_is_unsupported() -> None:
    data = tiff_bytes(
        np.zeros((3, 4, 5), np.uint8), photometric="minisblack", planarconfig="contig"
    )
    with pytest.raises(UnsupportedFormatError, match="TIFF with 5 channels per pixel"):
        load_image(data)


def test_multi_page_tiff_loads_first_page() -> None:
    pages = np.stack([np.full((4, 5), 10, np.uint8), np.full((4, 5), 200, np.uint8)])
    loaded = load_image(tiff_bytes(pages))
    assert loaded.pixels.shape == (4, 5, 3)
    assert (loaded.gray == 10).all()
    assert loaded.metadata.extra == {"frame_count": 2}


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_matches_pillow(orientation: int, rgb_array: np.ndarray) -> None:
    image = Image.fromarray(rgb_array)
    exif = Image.Exif()
    exif[0x0112] = orientation
    data = encode(image, "PNG", exif=exif)
    loaded = load_image(data)
    expected = np.asarray(ImageOps.exif_transpose(Image.open(io.BytesIO(data))).convert("RGB"))
    np.testing.assert_array_equal(loaded.pixels, expected)
    assert loaded.metadata.exif_transposed is (orientation != 1)
    assert (loaded.metadata.width, loaded.metadata.height) == expected.shape[1::-1]


def test_exif_orientation_6_swaps_width_and_height_in_jpeg() -> None:
    exif = Image.Exif()
    exif[0x0112] = 6
    loaded = load_image(encode(Image.new("RGB", (40, 10), "white"), "JPEG", exif=exif))
    assert loaded.pixels.shape == (40, 10, 3)
    assert (loaded.metadata.width, loaded.metadata.height) == (10, 40)
    assert loaded.metadata.exif_transposed


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
@pytest.mark.parametrize("photometric", ["minisblack", "rgb"])
def test_tiff_orientation_is_applied_and_recorded(dtype: type, photometric: str) -> None:
    marker = np.zeros((10, 40), dtype=dtype)
    marker[0, 0] = 255
    array = marker if photometric == "minisblack" else np.dstack([marker] * 3)
    rotate_90_clockwise = [(0x0112, "H", 1, 6, True)]
    data = tiff_bytes(array, photometric=photometric, extratags=rotate_90_clockwise)
    loaded = load_image(data)
    assert loaded.pixels.shape == (40, 10, 3)
    assert loaded.metadata.exif_transposed
    np.testing.assert_array_equal(np.argwhere(loaded.gray == 255), [[0, 9]])


# ------------------------------------------------------------------ formats and sources


@pytest.fixture
def smooth_rgb() -> np.ndarray:
    """A smooth colour gradient, which JPEG reproduces closely."""
    yy, xx = np.mgrid[:24, :32]
    return np.dstack([xx * 8, yy * 10, 255 - xx * 8]).astype(np.uint8)


@pytest.mark.parametrize("image_format", ["PNG", "JPEG", "BMP", "TIFF"])
@pytest.mark.parametrize("source_kind", ["path", "str", "bytes", "bytearray", "stream"])
def test_every_format_loads_from_every_source_kind(
    image_format: str, source_kind: str, smooth_rgb: np.ndarray, tmp_path: Path
) -> None:
    data = encode(
        Image.fromarray(smooth_rgb),
        image_format,
        **({"quality": 95} if image_format == "JPEG" else {}),
    )
    path = tmp_path / f"scan.{image_format.lower()}"
    path.write_bytes(data)
    source = {
        "path": path,
        "str": str(path),
        "bytes": data,
        "bytearray": bytearray(data),
        "stream": io.BytesIO(data),
    }[source_kind]
    loaded = load_image(source)
    assert loaded.metadata.format == image_format
    assert loaded.pixels.shape == smooth_rgb.shape
    difference = np.abs(loaded.pixels.astype(int) - smooth_rgb)
    if image_format == "JPEG":
        assert difference.mean() < 3
    else:
        assert not difference.any()
    expected_source = path.name if source_kind in ("path", "str") else "<bytes>"
    assert loaded.metadata.source == expected_source


def test_stream_name_is_used_as_source(gray_png: bytes, tmp_path: Path) -> None:
    path = tmp_path / "upload.png"
    path.write_bytes(gray_png)
    with path.open("rb") as stream:
        assert load_image(stream).metadata.source == "upload.png"
    assert load_image(io.BytesIO(gray_png)).metadata.source == "<bytes>"


def test_format_is_sniffed_from_content_not_extension(gray_png: bytes, tmp_path: Path) -> None:
    misnamed = tmp_path / "scan.jpg"
    misnamed.write_bytes(gray_png)
    assert load_image(misnamed).metadata.format == "PNG"
    text_named_png = tmp_path / "notes.png"
    text_named_png.write_text("not an image")
    with pytest.raises(UnsupportedFormatError, match=r"'notes.png' is a text file"):
        load_image(text_named_png)


# ------------------------------------------------------------------------------- DICOM


def test_dicom_monochrome2_16_bit_with_pixel_spacing(tmp_path: Path) -> None:
    values = np.array([[0, 1024], [2048, 4095]], dtype=np.uint16)
    path = tmp_path / "scan.dcm"
    path.write_bytes(make_dicom(values, bits_stored=12, PixelSpacing=[0.5, 0.25]))
    loaded = load_image(path)
    metadata = loaded.metadata
    assert metadata.format == "DICOM"
    assert metadata.original_mode == "MONOCHROME2"
    assert metadata.original_bit_depth == 12
    assert metadata.pixel_spacing_mm == (0.5, 0.25)
    assert metadata.extra["modality"] == "US"
    np.testing.assert_array_equal(loaded.gray, [[0, 64], [128, 255]])
    assert loaded.is_grayscale


def test_dicom_metadata_holds_no_patient_identifiers() -> None:
    values = np.arange(6, dtype=np.uint8).reshape(2, 3)
    loaded = load_image(make_dicom(values))
    extra = loaded.metadata.extra
    assert set(extra) == {
        "modality",
        "transfer_syntax",
        "rescale_applied",
        "voi_applied",
    }
    everything = repr(loaded.metadata)
    assert PATIENT_NAME not in everything
    assert PATIENT_ID not in everything
    assert "Doe" not in everything and "19700101" not in everything


def test_dicom_monochrome1_is_inverted() -> None:
    values = np.array([[0, 100], [200, 255]], dtype=np.uint8)
    loaded = load_image(make_dicom(values, "MONOCHROME1"))
    assert loaded.metadata.original_mode == "MONOCHROME1"
    np.testing.assert_array_equal(loaded.gray, 255 - values)


def test_dicom_8_bit_monochrome_keeps_values() -> None:
    values = np.array([[10, 20], [30, 40]], dtype=np.uint8)
    np.testing.assert_array_equal(load_image(make_dicom(values)).gray, values)


def test_dicom_rgb_8_bit() -> None:
    values = np.zeros((2, 3, 3), dtype=np.uint8)
    values[0, 0] = [255, 0, 0]
    values[1, 2] = [10, 200, 30]
    loaded = load_image(make_dicom(values, "RGB"))
    assert loaded.metadata.original_mode == "RGB"
    np.testing.assert_array_equal(loaded.pixels, values)


def test_dicom_jpeg_baseline_ybr_is_decoded_to_rgb() -> None:
    colour = np.zeros((16, 16, 3), dtype=np.uint8)
    colour[...] = [200, 40, 40]
    jpeg = encode(Image.fromarray(colour), "JPEG", quality=95)
    data = make_dicom(colour, "YBR_FULL_422", transfer_syntax=JPEGBaseline8Bit, pixel_data=jpeg)
    loaded = load_image(data)
    assert np.abs(loaded.pixels[8, 8].astype(int) - [200, 40, 40]).max() <= 8


def test_dicom_window_is_applied_over_its_output_range() -> None:
    values = np.array([[0, 999, 1100, 1200, 4000]], dtype=np.uint16)
    data = make_dicom(values, bits_stored=12, WindowCenter=1100, WindowWidth=201)
    loaded = load_image(data)
    assert loaded.metadata.extra["voi_applied"]
    np.testing.assert_array_equal(loaded.gray, [[0, 0, 128, 255, 255]])


def test_dicom_window_keeps_contrast_when_no_pixel_reaches_its_ends() -> None:
    values = np.array([[1050, 1100, 1150]], dtype=np.uint16)
    data = make_dicom(values, bits_stored=12, WindowCenter=1100, WindowWidth=201)
    gray = load_image(data).gray
    assert 50 <= gray[0, 0] < gray[0, 1] < gray[0, 2] <= 205


def test_dicom_rescale_slope_and_intercept_are_applied() -> None:
    values = np.array([[0, 10, 20]], dtype=np.uint16)
    data = make_dicom(values, RescaleSlope=2, RescaleIntercept=-1000)
    loaded = load_image(data)
    assert loaded.metadata.extra["rescale_applied"]
    np.testing.assert_array_equal(loaded.gray, [[0, 128, 255]])


def test_dicom_imager_pixel_spacing_is_used_without_pixel_spacing() -> None:
    data = make_dicom(np.zeros((2, 2), np.uint8), ImagerPixelSpacing=[0.1, 0.2])
    assert load_image(data).metadata.pixel_spacing_mm == (0.1, 0.2)


def test_dicom_ultrasound_region_spacing_is_converted_from_cm() -> None:
    doppler = ultrasound_region(delta_x_cm=0.5, delta_y_cm=0.5, spatial_format=3)
    tissue = ultrasound_region(delta_x_cm=0.01, delta_y_cm=0.02)
    data = make_dicom(np.zeros((4, 4), np.uint8), SequenceOfUltrasoundRegions=[doppler, tissue])
    assert load_image(data).metadata.pixel_spacing_mm == pytest.approx((0.2, 0.1))


def test_dicom_spacing_with_one_value_is_ignored() -> None:
    data = make_dicom(np.zeros((2, 2), np.uint8), PixelSpacing=0.3)
    assert load_image(data).metadata.pixel_spacing_mm is None


def test_dicom_with_malformed_frame_count_is_corrupt() -> None:
    valid = make_dicom(np.zeros((2, 2), np.uint8), NumberOfFrames=9)
    frame_count_element = b"\x28\x00\x08\x00IS\x02\x00"
    assert valid.count(frame_count_element + b"9 ") == 1
    data = valid.replace(frame_count_element + b"9 ", frame_count_element + b"x ")
    with (
        pytest.warns(UserWarning, match="Invalid value for VR IS"),
        pytest.raises(CorruptImageError, match="NumberOfFrames is not a number"),
    ):
        load_image(data)


def test_dicom_without_spacing_has_none() -> None:
    assert load_image(make_dicom(np.zeros((2, 2), np.uint8))).metadata.pixel_spacing_mm is None


def test_dicom_is_detected_by_content_whatever_the_name(tmp_path: Path) -> None:
    path = tmp_path / "export.png"
    path.write_bytes(make_dicom(np.zeros((3, 2), np.uint8)))
    assert load_image(path).metadata.format == "DICOM"


def test_dicom_extension_without_dicom_content_is_rejected(tmp_path: Path) -> None:
    path = tmp_path / "scan.dcm"
    path.write_bytes(b"\x00" * 200)
    with pytest.raises(UnsupportedFormatError, match=r"'scan.dcm' is unrecognised binary data"):
        load_image(path)


def test_dicom_multi_frame_is_rejected() -> None:
    frames = np.zeros((3, 4, 5), dtype=np.uint8)
    data = make_dicom(frames[0], NumberOfFrames=3, PixelData=frames.tobytes())
    with pytest.raises(UnsupportedDicomError, match=r"holds 3 frames.*single-frame"):
        load_image(data)


def test_dicom_compression_without_decoder_names_the_transfer_syntax() -> None:
    assert not get_decoder(JPEGLSLossless).is_available, "test needs a missing decoder"
    data = make_dicom(
        np.zeros((4, 4), np.uint8), transfer_syntax=JPEGLSLossless, pixel_data=b"\xff\xd8junk"
    )
    with pytest.raises(
        UnsupportedDicomError, match=r"JPEG-LS Lossless.*1\.2\.840\.10008\.1\.2\.4\.80"
    ):
        load_image(data)


def test_dicom_jpeg_2000_with_junk_pixel_data_is_rejected() -> None:
    data = make_dicom(
        np.zeros((4, 4), np.uint8), transfer_syntax=JPEG2000Lossless, pixel_data=b"junk" * 8
    )
    if get_decoder(JPEG2000Lossless).is_available:
        with pytest.raises(CorruptImageError, match="damaged or incomplete DICOM"):
            load_image(data)
    else:
        with pytest.raises(UnsupportedDicomError, match="JPEG 2000"):
            load_image(data)


def test_dicom_without_pixel_data_is_rejected() -> None:
    data = make_dicom(np.zeros((2, 2), np.uint8))
    dataset = dcmread(io.BytesIO(data))
    del dataset.PixelData
    dataset.Modality = "SR"
    buffer = io.BytesIO()
    dataset.save_as(buffer)
    with pytest.raises(UnsupportedDicomError, match=r"without image pixel data.*SR"):
        load_image(buffer.getvalue())


def test_dicom_palette_colour_is_rejected() -> None:
    data = make_dicom(np.zeros((2, 2), np.uint8), "PALETTE COLOR")
    with pytest.raises(UnsupportedDicomError, match="colour model 'PALETTE COLOR'"):
        load_image(data)


def test_dicom_with_truncated_pixel_data_is_corrupt() -> None:
    data = make_dicom(np.zeros((2, 2), np.uint8), PixelData=b"\x00\x00")
    with pytest.raises(CorruptImageError, match="damaged or incomplete DICOM"):
        load_image(data)


def test_dicom_with_zero_rows_is_rejected() -> None:
    data = make_dicom(np.zeros((2, 2), np.uint8), Rows=0, PixelData=b"")
    with pytest.raises(ImageDimensionError, match="is 2 x 0 px"):
        load_image(data)


def test_dicom_with_too_many_pixels_is_rejected_before_decoding() -> None:
    data = make_dicom(np.zeros((20, 30), np.uint8))
    with pytest.raises(ImageTooLargeError, match=r"30 x 20 px"):
        load_image(data, max_pixels=100)


# --------------------------------------------------------------------------- bad input


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(InvalidImageError, match=r"File not found: .*absent.png"):
        load_image(tmp_path / "absent.png")


def test_folder_instead_of_file(tmp_path: Path) -> None:
    with pytest.raises(InvalidImageError, match="is a folder, not an image file"):
        load_image(tmp_path)


@pytest.mark.parametrize("source_kind", ["path", "bytes", "stream"])
def test_empty_input(source_kind: str, tmp_path: Path) -> None:
    path = tmp_path / "empty.png"
    path.write_bytes(b"")
    source = {"path": path, "bytes": b"", "stream": io.BytesIO()}[source_kind]
    with pytest.raises(EmptyFileError, match=r"is empty \(0 bytes\)"):
        load_image(source)


@pytest.mark.parametrize("image_format", ["PNG", "JPEG", "BMP", "TIFF"])
def test_truncated_image_is_corrupt(image_format: str, rgb_array: np.ndarray) -> None:
    big = np.tile(rgb_array, (4, 4, 1))
    data = encode(Image.fromarray(big), image_format)
    with pytest.raises(CorruptImageError, match=f"damaged or incomplete {image_format} file"):
        load_image(data[: len(data) // 2])
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False


def test_truncated_png_from_path_names_the_file(gray_png: bytes, tmp_path: Path) -> None:
    path = tmp_path / "cut.png"
    path.write_bytes(gray_png[: len(gray_png) // 2])
    with pytest.raises(CorruptImageError, match=r"'cut.png' is a damaged or incomplete PNG"):
        load_image(path)


def test_random_bytes_after_png_header_are_corrupt(
    gray_png: bytes, rng: np.random.Generator
) -> None:
    junk = rng.integers(0, 256, size=500, dtype=np.uint8).tobytes()
    with pytest.raises(CorruptImageError, match="damaged or incomplete PNG"):
        load_image(gray_png[:33] + junk)


def test_corrupt_compressed_data_in_png_is_corrupt() -> None:
    data = crafted_png(4, 4, idat=b"\x78\x9c" + b"\x00garbage")
    with pytest.raises(CorruptImageError, match="damaged or incomplete PNG"):
        load_image(data)


def test_random_bytes_after_jpeg_header_are_corrupt(rng: np.random.Generator) -> None:
    junk = rng.integers(0, 256, size=500, dtype=np.uint8).tobytes()
    with pytest.raises(CorruptImageError, match="damaged or incomplete JPEG"):
        load_image(b"\xff\xd8\xff\xe0" + junk)


@pytest.mark.parametrize(
    ("content", "description"),
    [
        (b"Patient report\nno image here\n", "a text file"),
        (b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj", "a PDF document"),
        (b"GIF89a\x01\x00\x01\x00\x00\x00\x00", "a GIF image"),
        (b"PK\x03\x04\x14\x00\x00\x00", "a ZIP archive"),
        (b"<!DOCTYPE html><html></html>", "an HTML or XML document"),
        (b"RIFF\x10\x00\x00\x00WEBPVP8 ", "a WebP image"),
        (b"\x00\x00\x00\x18ftypheic", "an HEIC photo"),
        (b"\x00\x01\x02\x03\xfe\xfd\xfc\xfb\x00", r"unrecognised binary data \(first bytes: 00 01"),
        (b"BMnot really a bitmap, just text", "a text file"),
    ],
)
def test_non_image_is_unsupported(content: bytes, description: str) -> None:
    with pytest.raises(UnsupportedFormatError, match=description) as caught:
        load_image(content)
    assert not isinstance(caught.value, UnsupportedDicomError)
    assert "PNG, JPEG, BMP, TIFF and single-frame DICOM" in str(caught.value)
    assert ".dcm" in str(caught.value)


def test_text_file_on_disk_is_unsupported(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("hello")
    with pytest.raises(
        UnsupportedFormatError, match=f"'notes.txt' is a text file.*{ALLOWED_FORMATS_PATTERN}"
    ):
        load_image(path)


@pytest.mark.parametrize("source_kind", ["path", "bytes", "stream"])
def test_too_many_bytes(source_kind: str, gray_png: bytes, tmp_path: Path) -> None:
    path = tmp_path / "big.png"
    path.write_bytes(gray_png)
    source = {"path": path, "bytes": gray_png, "stream": io.BytesIO(gray_png)}[source_kind]
    with pytest.raises(ImageTooLargeError, match=r"is \d+\.\d KiB; the limit is 0\.1 KiB"):
        load_image(source, max_bytes=100)


@pytest.mark.parametrize("image_format", ["PNG", "JPEG", "BMP", "TIFF"])
def test_too_many_pixels(image_format: str, rgb_array: np.ndarray) -> None:
    data = encode(Image.fromarray(rgb_array), image_format)
    with pytest.raises(ImageTooLargeError, match=r"16 x 12 px .*limit is 0\.0 million pixels"):
        load_image(data, max_pixels=100)


def test_pixel_limit_is_checked_from_the_header_before_decoding() -> None:
    # 10000 x 10000 header with no real pixel data: must fail on size, not as corrupt.
    with pytest.raises(ImageTooLargeError, match="10000 x 10000 px"):
        load_image(crafted_png(10_000, 10_000))


def test_decompression_bomb_is_too_large() -> None:
    limit_before = Image.MAX_IMAGE_PIXELS
    with pytest.raises(ImageTooLargeError, match="safety limit"):
        load_image(crafted_png(20_000, 20_000), max_pixels=10**9)
    assert limit_before == Image.MAX_IMAGE_PIXELS


@pytest.mark.filterwarnings("error::PIL.Image.DecompressionBombWarning")
def test_decompression_bomb_warning_raised_as_error_is_too_large() -> None:
    # 100 million pixels: above Pillow's warning threshold, below its hard limit.
    with pytest.raises(ImageTooLargeError, match="safety limit"):
        load_image(crafted_png(10_000, 10_000), max_pixels=10**9)


def test_zero_width_png() -> None:
    with pytest.raises(ImageDimensionError, match="is 0 x 5 px; an image needs at least 1 x 1"):
        load_image(crafted_png(0, 5))


def test_zero_size_tiff() -> None:
    with pytest.warns(UserWarning, match="zero-size"):
        data = tiff_bytes(np.zeros((0, 4), np.uint8))
    with pytest.raises(ImageDimensionError, match=r"is 0 x 0 px"):
        load_image(data)


def test_zero_height_bmp(rgb_array: np.ndarray) -> None:
    data = bytearray(encode(Image.fromarray(rgb_array), "BMP"))
    data[22:26] = struct.pack("<i", 0)
    with pytest.raises(ImageDimensionError, match="is 16 x 0 px"):
        load_image(bytes(data))


def test_wrong_source_type() -> None:
    with pytest.raises(TypeError, match="path, bytes or a binary file object"):
        load_image(12345)  # type: ignore[arg-type]


def test_text_mode_stream(tmp_path: Path) -> None:
    path = tmp_path / "scan.png"
    path.write_text("x")
    with path.open() as stream, pytest.raises(TypeError, match="binary mode"):
        load_image(stream)  # type: ignore[arg-type]


@pytest.mark.parametrize("option", ["max_bytes", "max_pixels"])
@pytest.mark.parametrize("value", [0, -1, 1.5])
def test_invalid_limits(option: str, value: object, gray_png: bytes) -> None:
    with pytest.raises(ConfigError, match=f"{option} must be a positive integer"):
        load_image(gray_png, **{option: value})  # type: ignore[arg-type]


def test_every_error_is_a_tumorlens_error(tmp_path: Path) -> None:
    for bad in (b"", b"text", crafted_png(0, 1), tmp_path / "absent.png"):
        with pytest.raises(TumorLensError):
            load_image(bad)


# ---------------------------------------------------------------------------- real data


@pytest.mark.real_data
def test_real_dataset_images_load(shared_datasets: Path) -> None:
    busi = shared_datasets / "busi" / "Dataset_BUSI_with_GT"
    paths = []
    for label in ("benign", "malignant", "normal"):
        images = sorted(p for p in (busi / label).glob("*.png") if "_mask" not in p.name)
        paths.extend(images[:2])
    paths.append(shared_datasets / "bus-bra" / "Images" / "bus_0001-l.png")
    monuseg = shared_datasets / "monuseg" / "MoNuSegTrainingData" / "Tissue_Images"
    paths.append(sorted(monuseg.glob("*.png"))[0])
    paths.append(sorted((shared_datasets / "pcam_sample" / "train").glob("*.tif"))[0])
    for path in paths:
        loaded = load_image(path)
        with Image.open(path) as reference:
            width, height = reference.size
        assert loaded.pixels.shape == (height, width, 3), path.name
        assert loaded.pixels.dtype == np.uint8
        assert loaded.pixels.flags.c_contiguous
        assert loaded.metadata.source == path.name
        assert loaded.pixels.std() > 0, path.name
    assert load_image(paths[-1]).metadata.format == "TIFF"
    assert load_image(paths[-1]).pixels.shape == (96, 96, 3)
