"""Tests of the mask and heatmap encodings used by the API and the batch results."""

from __future__ import annotations

import base64

import numpy as np
import pytest

from utils.encoding import (
    decode_png_base64,
    heatmap_png_base64,
    mask_png_base64,
    rle_decode,
    rle_encode,
)
from utils.errors import ImageDimensionError, InvalidImageError


@pytest.mark.parametrize("first_pixel_lesion", [False, True])
def test_rle_round_trips_and_starts_with_a_background_run(first_pixel_lesion: bool) -> None:
    mask = np.random.default_rng(1).random((17, 23)) > 0.6
    mask[0, 0] = first_pixel_lesion
    rle = rle_encode(mask)
    assert rle["size"] == [17, 23] and sum(rle["counts"]) == 17 * 23
    assert (rle["counts"][0] == 0) == first_pixel_lesion
    np.testing.assert_array_equal(rle_decode(rle), mask)


def test_rle_of_uniform_masks() -> None:
    assert rle_encode(np.zeros((2, 3), bool))["counts"] == [6]
    assert rle_encode(np.ones((2, 3), bool))["counts"] == [0, 6]
    # Row-major: the second row's lesion comes after the whole first row.
    mask = np.array([[0, 0, 0], [0, 1, 1]], bool)
    assert rle_encode(mask)["counts"] == [4, 2]


def test_bad_rle_and_bad_shapes_are_errors() -> None:
    with pytest.raises(InvalidImageError, match="sum to 2 x 3 = 6; they sum to 5"):
        rle_decode({"size": [2, 3], "counts": [4, 1]})
    with pytest.raises(InvalidImageError, match="non-negative"):
        rle_decode({"size": [2, 3], "counts": [7, -1]})
    with pytest.raises(ImageDimensionError, match=r"non-empty \(H, W\) array; got \(2, 2, 3\)"):
        rle_encode(np.zeros((2, 2, 3), bool))
    with pytest.raises(ImageDimensionError, match="heatmap"):
        heatmap_png_base64(np.zeros((0, 4)))


def test_png_encodings_round_trip() -> None:
    mask = np.eye(5, dtype=bool)
    np.testing.assert_array_equal(decode_png_base64(mask_png_base64(mask)), mask * 255)
    heatmap = np.linspace(0, 1, 20, dtype=np.float32).reshape(4, 5)
    decoded = decode_png_base64(heatmap_png_base64(heatmap)) / 255.0
    np.testing.assert_allclose(decoded, heatmap, atol=1 / 510 + 1e-6)
    assert decode_png_base64(heatmap_png_base64(heatmap * 3 - 1)).max() == 255  # clipped


def test_decoding_rejects_what_is_not_base64_png() -> None:
    with pytest.raises(InvalidImageError, match="Not valid base64"):
        decode_png_base64("not base64!")
    with pytest.raises(InvalidImageError, match="not a PNG image"):
        decode_png_base64(base64.b64encode(b"plain text").decode())
