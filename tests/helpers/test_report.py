"""Tests of the Analyse page's PDF report glue (``helpers/report.py``)."""

from __future__ import annotations

import datetime as dt
import re

import numpy as np
import pytest

from helpers.analysis import AnalysisResult
from helpers.report import (
    LOST_DESCRIPTOR_FOOTNOTE,
    MAX_NOTE_CHARS,
    build_case_report,
    case_report_pdf,
    model_rows,
    report_file_name,
)
from tests.utils.pdf_text import image_count, page_count, pdf_text
from utils.errors import ConfigError
from utils.inference.classifier import ClassificationResult
from utils.inference.segmenter import SegmentationResult
from utils.measurements import measure_lesion

SEGMENTER_CARD = {"name": "ultrasound_segmenter", "version": "0.1.0", "created": "2026-11-23"}
CLASSIFIER_CARD = {"name": "ultrasound_classifier", "version": "2.0.0"}
CREATED = dt.datetime(2026, 11, 23, 6, 1, 2, tzinfo=dt.UTC)


def _result(*, lesion: bool = True, classified: bool = True) -> AnalysisResult:
    rng = np.random.default_rng(5)
    gray = rng.integers(0, 256, (60, 80), dtype=np.uint8)
    mask = np.zeros((60, 80), bool)
    if lesion:
        mask[20:40, 25:55] = True
    segmentation = SegmentationResult(
        probabilities=mask.astype(np.float32),
        mask=mask,
        measurements=measure_lesion(mask, gray, 0.1) if lesion else None,
        threshold=0.45,
    )
    classification = (
        ClassificationResult(
            probabilities={"normal": 0.05, "benign": 0.15, "malignant": 0.8},
            predicted_class="malignant",
            confidence=0.8,
            uncertainty=0.21,
            top_prob_std=0.03,
            refer=False,
        )
        if classified
        else None
    )
    return AnalysisResult(
        gray=gray,
        segmentation=segmentation,
        classification=classification,
        segmenter_cam=rng.random((32, 32)).astype(np.float32),
        classifier_cam=rng.random((32, 32)).astype(np.float32) if classified else None,
        classifier_cam_class="malignant" if classified else None,
    )


def _base(result: AnalysisResult) -> np.ndarray:
    return np.repeat(result.gray[..., None], 3, axis=2)


def test_the_report_shows_what_the_page_shows() -> None:
    result = _result()
    report = build_case_report(
        result,
        _base(result),
        segmenter_card=SEGMENTER_CARD,
        classifier_card=CLASSIFIER_CARD,
        cam_method="gradcam++",
        spacing_note="0.1 mm per pixel, as entered",
        case_note="Follow-up in 6 months.",
        created=CREATED,
    )
    captions = [caption for caption, _ in report.panels]
    assert captions == [
        "Original",
        "Lesion mask (threshold 0.45)",
        "Classifier gradcam++: malignant",
        "Segmenter gradcam++: predicted lesion area",
    ]
    assert all(pixels.shape == (60, 80, 3) for _, pixels in report.panels)
    # The mask panel is the overlay, not the bare image.
    assert not np.array_equal(report.panels[1][1], report.panels[0][1])
    assert report.probabilities == {"normal": 0.05, "benign": 0.15, "malignant": 0.8}
    assert report.uncertainty == 0.21 and report.refer is False
    assert report.measurements[0]["name"] == "Area" and report.measurements[0]["unit"] == "mm²"
    assert report.measurement_note == "Pixel spacing: 0.1 mm per pixel, as entered."
    assert [row["role"] for row in report.models] == ["segmenter", "classifier"]

    pdf = case_report_pdf(
        result,
        _base(result),
        segmenter_card=SEGMENTER_CARD,
        classifier_card=CLASSIFIER_CARD,
        case_note="Follow-up in 6 months.",
        created=CREATED,
    )
    text = " ".join(pdf_text(pdf).split())
    assert page_count(pdf) == 1 and image_count(pdf) == 4
    assert "Follow-up in 6 months." in text and "Predicted: malignant (80%, calibrated)" in text
    assert "No referral flag" in text and "2.0.0" in text


def test_descriptors_the_card_shows_unreliable_are_starred_with_a_footnote() -> None:
    result = _result()
    lost = {"auc_malignant_vs_benign": {"reference": 0.95, "mask": 0.74}}
    kept = {"auc_malignant_vs_benign": {"reference": 0.75, "mask": 0.76}}
    for entry in (lost, kept):
        entry["median_absolute_difference"] = 0.01
    agreement = {"descriptors": {"boundary_roughness": lost, "depth_width_ratio": kept}}
    card = {
        **SEGMENTER_CARD,
        "cv_pooled": {"native_resolution": {"measurement_agreement": agreement}},
    }
    spacing = "unknown: measurements are in pixels (enter the spacing in the sidebar)"
    report = build_case_report(
        result, _base(result), segmenter_card=card, spacing_note=spacing, created=CREATED
    )
    names = [row["name"] for row in report.measurements]
    assert "Boundary roughness *" in names and "Depth/width ratio" in names
    assert report.measurement_note == f"Pixel spacing: {spacing}. {LOST_DESCRIPTOR_FOOTNOTE}"
    pdf = case_report_pdf(result, _base(result), segmenter_card=card, spacing_note=spacing)
    text = " ".join(pdf_text(pdf).split())
    assert page_count(pdf) == 1 and "check the margin on the image" in text
    # A card without the section stars nothing.
    plain = build_case_report(result, _base(result), segmenter_card=SEGMENTER_CARD)
    assert not any(row["name"].endswith("*") for row in plain.measurements)


def test_without_classifier_or_lesion_the_report_says_so() -> None:
    result = _result(lesion=False, classified=False)
    report = build_case_report(
        result,
        _base(result),
        segmenter_card=SEGMENTER_CARD,
        enhanced=True,
        spacing_note="unknown: measurements are in pixels (enter the spacing in the sidebar)",
    )
    assert report.panels[0][0] == "Original (CLAHE display)"
    assert report.panels[2] == ("Classifier CAM: no classifier installed", None)
    assert report.probabilities is None and report.measurements is None
    assert report.measurement_note == "No lesion found at threshold 0.45."
    assert [row["role"] for row in report.models] == ["segmenter"]
    assert report.created.tzinfo is not None
    text = " ".join(pdf_text(case_report_pdf(result, _base(result), segmenter_card={})).split())
    assert "No lesion found at threshold 0.45." in text
    assert "not recorded" in text  # a card without name or version says so


def test_model_rows_say_what_the_card_does_not_record() -> None:
    rows = model_rows({"name": "seg"}, None)
    assert rows == [
        {"role": "segmenter", "name": "seg", "version": "not recorded", "created": "not recorded"}
    ]


def test_a_too_long_case_note_is_refused() -> None:
    result = _result()
    with pytest.raises(ConfigError, match=f"at most {MAX_NOTE_CHARS}"):
        build_case_report(result, _base(result), segmenter_card=SEGMENTER_CARD, case_note="n" * 401)


def test_the_file_name_is_the_time_only() -> None:
    assert report_file_name(CREATED) == "tumorlens_report_20261123_060102Z.pdf"
    assert re.fullmatch(r"tumorlens_report_\d{8}_\d{6}Z\.pdf", report_file_name())


def test_a_too_smooth_image_is_flagged_in_red_above_the_classification() -> None:
    from utils.image_quality import CARD_KEY

    result = _result()  # uniform noise: far more texture than any threshold below
    textured_card = {**SEGMENTER_CARD, CARD_KEY: {"percentiles": {"p01": 0.4}}}
    assert (
        build_case_report(result, _base(result), segmenter_card=textured_card).image_warning == ""
    )
    smooth_card = {**SEGMENTER_CARD, CARD_KEY: {"percentiles": {"p01": 1e9}}}
    for classified in (True, False):
        smooth = _result(classified=classified)
        report = build_case_report(smooth, _base(smooth), segmenter_card=smooth_card)
        assert report.image_warning.startswith("Smooth image (texture index")
        text = pdf_text(case_report_pdf(smooth, _base(smooth), segmenter_card=smooth_card))
        assert "Smooth image (texture index" in re.sub(r"\s+", " ", text)
