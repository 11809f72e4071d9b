"""Fixtures of the review-store tests: a fresh SQLite file per test, and a valid review."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from utils.review import AiSnapshot, ReviewInput, ReviewStore

IMAGE_SHAPE = (12, 16)


def sqlite_url(path: Path) -> str:
    return f"sqlite:///{path}"


@pytest.fixture
def db_url(tmp_path: Path) -> str:
    return sqlite_url(tmp_path / "data" / "reviews.sqlite3")


@pytest.fixture
def store(db_url: str) -> Iterator[ReviewStore]:
    opened = ReviewStore(db_url)
    yield opened
    opened.close()


def lesion_mask(shape: tuple[int, int] = IMAGE_SHAPE) -> np.ndarray:
    mask = np.zeros(shape, dtype=bool)
    mask[3:8, 4:11] = True
    return mask


def make_review(**changes) -> ReviewInput:
    """A valid review; keyword arguments replace fields."""
    fields = {
        "case_id": "example:benign_oval_01",
        "reviewer": "Dr Ada",
        "agree": True,
        "reviewer_class": "benign",
        "birads": "3",
        "comment": "Oval, circumscribed.",
        "corrected_mask": None,
        "case_label": "benign_oval_01 (benign)",
        "ai": AiSnapshot(
            segmenter="ultrasound_segmenter v1",
            probabilities={"normal": 0.1, "benign": 0.7, "malignant": 0.2},
            predicted_class="benign",
            mask_area_px=35,
            threshold=0.5,
            image_shape=IMAGE_SHAPE,
            image_digest="abc123",
        ),
    }
    fields.update(changes)
    return ReviewInput(**fields)
