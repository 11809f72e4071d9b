from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from tests.utils.wsi.fixtures import SLIDE_H, SLIDE_MPP, SLIDE_W
from utils.errors import (
    CorruptImageError,
    ImageDimensionError,
    InvalidImageError,
    MissingCalibrationError,
    UnsupportedFormatError,
)
from utils.wsi.reader import open_slide


def test_synthetic_slide_reads_its_scale_and_pyramid(synthetic_slide: Path) -> None:
    with open_slide(synthetic_slide) as slide:
        assert slide.dimensions == (SLIDE_W, SLIDE_H)
        assert slide.mpp == pytest.approx(SLIDE_MPP)
        assert slide.mpp_source == "metadata"
        assert slide.level_downsamples[:2] == (1.0, 2.0)
        region = slide.read_region(0, 0, 64, 64, 64)
        assert region.shape == (64, 64, 3) and region.dtype == np.uint8


def test_user_mpp_overrides_metadata(synthetic_slide: Path) -> None:
    with open_slide(synthetic_slide, mpp=0.25) as slide:
        assert slide.mpp == 0.25
        assert slide.mpp_source == "user"


def test_region_reads_come_from_the_coarsest_sufficient_level(synthetic_slide: Path) -> None:
    with open_slide(synthetic_slide) as slide:
        calls = []
        backend = slide._backend
        original = backend.read_region

        def spy(location, level, size, **kwargs):
            calls.append((location, level, size))
            return original(location, level, size, **kwargs)

        backend.read_region = spy
        out = slide.read_region(200, 100, 400, 400, 200)
        assert out.shape == (200, 200, 3)
        # A 2x downsample is read from level 1 at its own size: never the level-0 pixels.
        assert calls == [((200, 100), 1, (200, 200))]


def test_region_outside_the_slide_is_refused(synthetic_slide: Path) -> None:
    with open_slide(synthetic_slide) as slide, pytest.raises(ImageDimensionError, match="leaves"):
        slide.read_region(SLIDE_W - 10, 0, 64, 64, 64)


def test_thumbnail_has_the_requested_size(synthetic_slide: Path) -> None:
    with open_slide(synthetic_slide) as slide:
        thumb = slide.thumbnail(400)
    assert thumb.shape == (300, 400, 3)


def test_slide_without_mpp_asks_for_it(slide_without_mpp: Path) -> None:
    with pytest.raises(MissingCalibrationError, match="--mpp"):
        open_slide(slide_without_mpp)
    with open_slide(slide_without_mpp, mpp=0.5) as slide:
        assert slide.mpp == 0.5


def test_72_dpi_default_resolution_is_not_a_scale(shared_datasets: Path) -> None:
    # small_levels.tiff carries 28.34 px/cm (72 dpi): 353 µm/px is no microscope scale.
    with pytest.raises(MissingCalibrationError, match="no microns-per-pixel"):
        open_slide(shared_datasets / "wsi" / "small_levels.tiff")


@pytest.mark.parametrize("bad", [0.0, -1.0, 100.0, float("nan")])
def test_implausible_user_mpp_is_refused(synthetic_slide: Path, bad: float) -> None:
    with pytest.raises(MissingCalibrationError, match=r"between 0\.05 and 20"):
        open_slide(synthetic_slide, mpp=bad)


def test_corrupt_slide_gives_a_clear_error(corrupt_slide: Path) -> None:
    with pytest.raises(CorruptImageError, match="damaged, truncated or not a slide"):
        open_slide(corrupt_slide)


def test_truncated_slide_fails_on_open_or_read(synthetic_slide: Path, tmp_path: Path) -> None:
    data = synthetic_slide.read_bytes()
    path = tmp_path / "truncated.tif"
    path.write_bytes(data[: len(data) // 3])
    with pytest.raises(CorruptImageError, match=r"damaged|truncated"), open_slide(path) as slide:
        slide.thumbnail(2000)
        for y in range(0, slide.height - 256, 256):
            for x in range(0, slide.width - 256, 256):
                slide.read_region(x, y, 256, 256, 256)


def test_missing_file_and_non_image(tmp_path: Path) -> None:
    with pytest.raises(InvalidImageError, match="does not exist"):
        open_slide(tmp_path / "nothing.svs")
    text = tmp_path / "notes.svs"
    text.write_text("not a slide at all\n" * 10)
    with pytest.raises(UnsupportedFormatError, match="Whole-slide analysis reads"):
        open_slide(text)


def test_plain_png_needs_mpp_and_reads_in_memory(tmp_path: Path) -> None:
    image = np.full((300, 400, 3), 200, np.uint8)
    image[100:200, 100:300] = (200, 80, 150)
    path = tmp_path / "tile.png"
    cv2.imwrite(str(path), image[..., ::-1])
    with pytest.raises(MissingCalibrationError, match="--mpp"):
        open_slide(path)
    with open_slide(path, mpp=0.5) as slide:
        assert slide.vendor == "raster" and slide.dimensions == (400, 300)
        region = slide.read_region(100, 100, 100, 100, 50)
        assert region.shape == (50, 50, 3)
        assert tuple(region[25, 25]) == (200, 80, 150)


@pytest.mark.real_data
def test_real_aperio_slide_metadata(shared_datasets: Path) -> None:
    with open_slide(shared_datasets / "wsi" / "CMU-1-Small-Region.svs") as slide:
        assert slide.dimensions == (2220, 2967)
        assert slide.mpp == pytest.approx(0.499)
        assert slide.vendor == "aperio"
        props = slide.properties()
        assert "User" not in str(props)  # no operator identifiers copied
