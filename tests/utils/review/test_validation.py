"""Every bad field of a review is refused with a typed error that says what is allowed."""

from __future__ import annotations

import numpy as np
import pytest

from tests.utils.review.conftest import IMAGE_SHAPE, make_review
from utils.errors import ConfigError, ImageDimensionError
from utils.review import AiSnapshot, ReviewStore, normalise_birads
from utils.review.validation import BIRADS_CATEGORIES, MAX_COMMENT_CHARS, MAX_REVIEWER_CHARS


@pytest.mark.parametrize(
    ("value", "expected"),
    [("4a", "4A"), (" 4C ", "4C"), ("0", "0"), (6, "6"), (np.int64(3), "3"), ("4", "4")],
)
def test_birads_categories_are_normalised(value: object, expected: str) -> None:
    assert normalise_birads(value) == expected
    assert expected in BIRADS_CATEGORIES


@pytest.mark.parametrize(
    ("changes", "error", "message"),
    [
        ({"reviewer": ""}, ConfigError, "reviewer name is empty"),
        ({"reviewer": "   "}, ConfigError, "reviewer name is empty"),
        ({"reviewer": "x" * (MAX_REVIEWER_CHARS + 1)}, ConfigError, "at most 80 are allowed"),
        ({"reviewer": "Dr\nAda"}, ConfigError, "control characters"),
        ({"reviewer": 42}, ConfigError, "reviewer name must be text; got int"),
        ({"case_id": ""}, ConfigError, "case id is empty"),
        ({"birads": "7"}, ConfigError, r"BI-RADS category '7' is not valid; allowed: 0, 1"),
        ({"birads": "4d"}, ConfigError, "BI-RADS category '4d' is not valid"),
        ({"birads": True}, ConfigError, "BI-RADS category True is not valid"),
        ({"birads": None}, ConfigError, "No BI-RADS category was chosen; choose one of 0, 1"),
        ({"reviewer_class": None}, ConfigError, "No class was chosen; choose one of normal"),
        ({"reviewer_class": "cancer"}, ConfigError, "normal, benign, malignant"),
        ({"agree": "yes"}, ConfigError, "'agree' must be True or False"),
        ({"comment": "x" * (MAX_COMMENT_CHARS + 1)}, ConfigError, "comment has 4001 characters"),
        (
            {"ai": AiSnapshot(probabilities={"benign": 1.5})},
            ConfigError,
            r"probability of 'benign' is 1.5; it must be in \[0, 1\]",
        ),
        ({"ai": AiSnapshot(mask_area_px=-1)}, ConfigError, "cannot be negative"),
        ({"ai": AiSnapshot(image_shape=(0, 5))}, ConfigError, "two positive sizes"),
        (
            {"corrected_mask": np.zeros((2, *IMAGE_SHAPE), bool)},
            ImageDimensionError,
            "it must be 2-D",
        ),
        (
            {"corrected_mask": np.zeros(IMAGE_SHAPE, np.float32)},
            ImageDimensionError,
            "dtype float32; use bool or uint8",
        ),
        (
            {"corrected_mask": np.full(IMAGE_SHAPE, 7, np.uint8)},
            ImageDimensionError,
            r"values \[7\]; only 0/1 or 0/255",
        ),
        ({"corrected_mask": [[0, 1]]}, ImageDimensionError, "must be a NumPy array; got list"),
        (
            {"corrected_mask": np.zeros((4, 4), bool)},
            ImageDimensionError,
            "mask is 4 x 4 pixels but the image is 16 x 12",
        ),
    ],
    ids=lambda value: str(value)[:30] if not isinstance(value, dict) else next(iter(value)),
)
def test_bad_fields_are_refused_and_nothing_is_written(
    store: ReviewStore, changes: dict, error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        store.save(make_review(**changes))
    assert store.reviews() == [] and store.audit_log() == []


def test_uint8_masks_of_0_255_and_0_1_are_accepted(store: ReviewStore) -> None:
    mask = np.zeros(IMAGE_SHAPE, np.uint8)
    mask[2:4, 2:4] = 255
    saved = store.save(make_review(corrected_mask=mask))
    assert saved.corrected_mask.dtype == bool and saved.corrected_mask.sum() == 4
    saved = store.save(make_review(corrected_mask=mask // 255), expected_version=1)
    assert saved.version == 1  # the same mask: nothing changed
