"""Tests of the review exports (CSV, JSON, with and without masks) and the mask codec."""

from __future__ import annotations

import base64
import io

import cv2
import numpy as np
import pandas as pd
import pytest

from tests.utils.review.conftest import IMAGE_SHAPE, lesion_mask, make_review
from utils.errors import ConfigError, CorruptImageError, EmptyFileError, ImageDimensionError
from utils.review import (
    ReviewStore,
    audit_frame,
    decode_mask_png,
    encode_mask_png,
    mask_from_image_bytes,
    reviews_csv,
    reviews_from_json,
    reviews_json,
)
from utils.review.export import MASK_COLUMN, REVIEW_COLUMNS


@pytest.fixture
def filled(store: ReviewStore) -> ReviewStore:
    store.save(make_review(corrected_mask=lesion_mask(), comment='Commas, "quotes"\nand ünïcode'))
    store.save(make_review(reviewer="Dr Bo", birads="4B", agree=False))
    return store


def test_json_export_round_trips_every_field_and_the_masks(filled: ReviewStore) -> None:
    reviews = filled.reviews()
    frame = reviews_from_json(reviews_json(reviews, include_masks=True))
    assert list(frame["reviewer"]) == ["Dr Ada", "Dr Bo"]
    assert list(frame["birads"]) == ["3", "4B"]  # stays text, never a number
    assert list(frame["agree"]) == [True, False]
    assert frame["comment"][0] == 'Commas, "quotes"\nand ünïcode'
    assert np.array_equal(frame["corrected_mask"][0], lesion_mask())
    assert frame["corrected_mask"][1] is None
    assert frame["updated_at"][0] == reviews[0].updated_at.isoformat()
    assert frame["ai_probabilities"][0] == '{"benign": 0.7, "malignant": 0.2, "normal": 0.1}'


def test_csv_export_without_masks(filled: ReviewStore) -> None:
    frame = pd.read_csv(io.BytesIO(reviews_csv(filled.reviews())), dtype={"birads": str})
    assert list(frame.columns) == list(REVIEW_COLUMNS)
    assert list(frame["has_corrected_mask"]) == [True, False]
    assert frame["corrected_mask_pixels"][0] == lesion_mask().sum()
    assert frame["comment"][0] == 'Commas, "quotes"\nand ünïcode'
    assert list(frame["birads"]) == ["3", "4B"]


def test_csv_export_with_masks_decodes(filled: ReviewStore) -> None:
    frame = pd.read_csv(io.BytesIO(reviews_csv(filled.reviews(), include_masks=True)))
    assert np.array_equal(decode_mask_png(base64.b64decode(frame[MASK_COLUMN][0])), lesion_mask())


def test_empty_exports_have_the_columns(store: ReviewStore) -> None:
    frame = pd.read_csv(io.BytesIO(reviews_csv([])))
    assert list(frame.columns) == list(REVIEW_COLUMNS) and frame.empty
    assert audit_frame([]).empty


def test_audit_frame(filled: ReviewStore) -> None:
    frame = audit_frame(filled.audit_log())
    assert list(frame["action"]) == ["create", "create"]
    assert '"birads": [null, "4B"]' in frame["changes"][1]


@pytest.mark.parametrize(
    ("data", "message"),
    [(b"not json", "not a TumorLens review export"), (b'[{"a": 1}]', "no case_id, reviewer")],
)
def test_reading_a_bad_export_raises(data: bytes, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        reviews_from_json(data)


def test_mask_png_round_trip_is_small_and_lossless() -> None:
    png = encode_mask_png(lesion_mask())
    assert np.array_equal(decode_mask_png(png), lesion_mask())
    big = np.zeros((500, 400), bool)
    big[100:300, 50:250] = True
    assert len(encode_mask_png(big)) < 2_000


def test_bad_stored_masks_raise() -> None:
    with pytest.raises(EmptyFileError, match="stored mask is empty"):
        decode_mask_png(b"")
    with pytest.raises(CorruptImageError, match="stored mask cannot be decoded"):
        decode_mask_png(b"\x89PNG garbage")


def test_an_uploaded_mask_image_becomes_a_bool_mask() -> None:
    mask = lesion_mask().astype(np.uint8) * 255
    data = cv2.imencode(".png", mask)[1].tobytes()
    assert np.array_equal(mask_from_image_bytes(data, IMAGE_SHAPE), lesion_mask())
    with pytest.raises(ImageDimensionError, match="the image is 20 x 10"):
        mask_from_image_bytes(data, (10, 20))
    with pytest.raises(EmptyFileError):
        mask_from_image_bytes(b"", IMAGE_SHAPE)
