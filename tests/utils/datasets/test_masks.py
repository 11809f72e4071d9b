from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from utils.datasets.masks import load_mask
from utils.errors import CorruptImageError, ImageDimensionError


def _square(shape=(8, 10), top_left=(2, 3), size=3) -> np.ndarray:
    mask = np.zeros(shape, dtype=bool)
    mask[top_left[0] : top_left[0] + size, top_left[1] : top_left[1] + size] = True
    return mask


@pytest.mark.parametrize("mode", ["1", "L", "P", "RGB", "RGBA"])
def test_masks_in_every_mode_are_binarised(tmp_path: Path, mode: str) -> None:
    expected = _square()
    image = Image.fromarray((expected * 255).astype(np.uint8), mode="L").convert(mode)
    path = tmp_path / f"mask_{mode}.png"
    image.save(path)
    np.testing.assert_array_equal(load_mask([path]), expected)


def test_transparent_pixels_are_background_in_rgba_masks(tmp_path: Path) -> None:
    rgba = np.zeros((4, 4, 4), dtype=np.uint8)
    rgba[..., :3] = 255  # white everywhere...
    rgba[:2, :, 3] = 255  # ...but opaque only in the top half
    path = tmp_path / "rgba.png"
    Image.fromarray(rgba, mode="RGBA").save(path)
    assert load_mask([path]).sum() == 8


def test_several_masks_are_or_merged(tmp_path: Path) -> None:
    first, second = _square(top_left=(0, 0)), _square(top_left=(4, 6))
    paths = []
    for index, mask in enumerate((first, second)):
        paths.append(tmp_path / f"m{index}.png")
        Image.fromarray(mask).save(paths[-1])
    np.testing.assert_array_equal(load_mask(paths), first | second)


def test_no_mask_gives_empty_mask_of_shape() -> None:
    mask = load_mask([], shape=(5, 7))
    assert mask.shape == (5, 7) and not mask.any()


def test_no_mask_and_no_shape_is_rejected() -> None:
    with pytest.raises(ImageDimensionError, match="no mask file and no shape"):
        load_mask([])


def test_mask_of_wrong_size_is_rejected(tmp_path: Path) -> None:
    path = tmp_path / "m.png"
    Image.fromarray(_square()).save(path)
    with pytest.raises(ImageDimensionError, match=r"10x8 px but the image is 12x9"):
        load_mask([path], shape=(9, 12))


def test_corrupt_mask_is_rejected(tmp_path: Path) -> None:
    path = tmp_path / "broken_mask.png"
    path.write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    with pytest.raises(CorruptImageError, match=r"broken_mask\.png cannot be read"):
        load_mask([path])
