"""Tests of the Review page's helpers: queue, AI snapshot, canvas masks and tables."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from helpers.analysis import AnalysisResult, example_choices, load_upload
from helpers.review import (
    CANVAS_MAX_HEIGHT,
    CANVAS_MAX_WIDTH,
    ReviewInput,
    ReviewStore,
    ai_snapshot,
    canvas_background,
    canvas_mask,
    canvas_size,
    case_review_rows,
    history_rows,
    mask_from_upload,
    model_label,
    queue_rows,
    review_cases,
    review_store,
)
from utils.errors import CorruptImageError, ImageDimensionError
from utils.inference.classifier import ClassificationResult
from utils.inference.segmenter import SegmentationResult


def test_review_cases_are_the_examples_then_the_dataset_images() -> None:
    examples = example_choices()
    dataset = [examples[0].__class__(key="dataset:x", title="BUSI x", source="dataset")]
    cases = review_cases(dataset)
    assert [case.key for case in cases] == [*(e.key for e in examples), "dataset:x"]
    rows = queue_rows(cases, reviewed={examples[1].key})
    assert rows[1]["reviewed by you"] == "✓ reviewed" and rows[0]["reviewed by you"] == "to do"
    assert rows[-1]["source"] == "dataset"


def _result(mask: np.ndarray, classification: ClassificationResult | None) -> AnalysisResult:
    segmentation = SegmentationResult(
        probabilities=mask.astype(np.float32), mask=mask, measurements=None, threshold=0.4
    )
    return AnalysisResult(
        gray=np.zeros(mask.shape, np.uint8),
        segmentation=segmentation,
        classification=classification,
        segmenter_cam=np.zeros((8, 8), np.float32),
        classifier_cam=None,
        classifier_cam_class=None,
    )


def test_ai_snapshot_with_and_without_a_classifier(speckle_image: np.ndarray) -> None:
    image = load_upload(cv2.imencode(".png", speckle_image)[1].tobytes())
    mask = np.zeros((64, 80), bool)
    mask[10:20, 10:15] = True
    card = {"name": "ultrasound_segmenter", "version": "0.1.0"}
    bare = ai_snapshot(_result(mask, None), image, "d1", card, {"name": "clf", "version": 2})
    assert bare.segmenter == "ultrasound_segmenter v0.1.0"
    assert bare.classifier is None and bare.probabilities == {} and bare.predicted_class is None
    assert (bare.mask_area_px, bare.threshold, bare.image_shape) == (50, 0.4, (64, 80))
    classification = ClassificationResult(
        probabilities={"normal": 0.2, "benign": 0.5, "malignant": 0.3},
        predicted_class="benign",
        confidence=0.5,
    )
    full = ai_snapshot(_result(mask, classification), image, "d1", card, {"name": "clf"})
    assert full.classifier == "clf" and full.predicted_class == "benign"
    assert full.probabilities["malignant"] == pytest.approx(0.3)
    assert model_label(None) is None


def test_canvas_size_keeps_the_aspect_ratio() -> None:
    assert canvas_size((400, 500)) == (CANVAS_MAX_WIDTH, 448)
    assert canvas_size((40, 50)) == (CANVAS_MAX_WIDTH, 448)  # small images are enlarged
    assert canvas_size((2000, 500)) == (160, CANVAS_MAX_HEIGHT)  # tall ones fit in height


def test_a_drawn_outline_becomes_a_filled_mask_at_the_image_size() -> None:
    rgba = np.zeros((100, 200, 4), np.uint8)
    cv2.rectangle(rgba, (50, 20), (150, 80), (255, 80, 0, 255), 2)  # an outline only
    mask = canvas_mask(rgba, (50, 100))  # the image is half the canvas size
    assert mask.shape == (50, 100) and mask.dtype == bool
    assert mask[25, 50] and not mask[5, 5]  # inside filled, outside not
    assert abs(int(mask.sum()) - 51 * 31) < 120


def test_an_empty_canvas_is_no_mask() -> None:
    assert canvas_mask(None, (10, 10)) is None
    assert canvas_mask(np.zeros((20, 20, 4), np.uint8), (10, 10)) is None


def test_a_canvas_array_of_the_wrong_shape_raises() -> None:
    with pytest.raises(ImageDimensionError, match=r"shape \(20, 20, 3\); expected \(h, w, 4\)"):
        canvas_mask(np.zeros((20, 20, 3), np.uint8), (10, 10))


def test_canvas_background_is_a_png_of_the_display_image() -> None:
    display = np.zeros((10, 12, 3), np.uint8)
    display[..., 0] = 200  # red
    decoded = cv2.imdecode(np.frombuffer(canvas_background(display), np.uint8), cv2.IMREAD_COLOR)
    assert decoded.shape == (10, 12, 3) and decoded[0, 0, 2] == 200  # BGR: red last


def test_mask_uploads(tmp_path: Path) -> None:
    mask = np.zeros((30, 40), np.uint8)
    mask[5:10, 5:20] = 255
    data = cv2.imencode(".png", mask)[1].tobytes()
    assert mask_from_upload(data, (30, 40)).sum() == 75
    with pytest.raises(ImageDimensionError, match="the image is 50 x 30"):
        mask_from_upload(data, (30, 50))
    with pytest.raises(CorruptImageError):
        mask_from_upload(data[:60], (30, 40))


def test_tables_of_reviews_and_history(tmp_path: Path) -> None:
    store = review_store(f"sqlite:///{tmp_path / 'r.sqlite3'}")
    assert isinstance(store, ReviewStore)
    assert review_store(f"sqlite:///{tmp_path / 'r.sqlite3'}") is store  # cached per URL
    review = ReviewInput("example:a", "Dr Ada", True, "benign", "4a", "fine", case_label="a")
    store.save(review)
    store.save(
        ReviewInput("example:a", "Dr Ada", False, "benign", "4a", "fine", case_label="a"),
        expected_version=1,
    )
    [row] = case_review_rows(store.reviews(case_id="example:a"))
    assert row["agrees with AI"] == "no" and row["BI-RADS"] == "4A" and row["version"] == 2
    history = history_rows(store.audit_log(case_id="example:a"))
    assert [entry["action"] for entry in history] == ["create", "update"]
    assert history[1]["changes"] == "agree: True → False"
    assert "birads: '4A'" in history[0]["changes"]
    store.close()
