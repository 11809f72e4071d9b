"""Tests of the one-page PDF case report (``utils/report.py``)."""

from __future__ import annotations

import datetime as dt
import re

import numpy as np
import pytest

from tests.utils.pdf_text import image_count, page_count, pdf_text
from utils.errors import ConfigError, ImageDimensionError, InvalidImageError
from utils.report import (
    MAX_MEASUREMENT_NOTE_CHARS,
    MAX_MEASUREMENT_ROWS,
    MAX_NOTE_CHARS,
    REPORT_DISCLAIMER,
    CaseReport,
    render_case_report,
)

CREATED = dt.datetime(2026, 11, 23, 5, 7, tzinfo=dt.UTC)
MODELS = [
    {"role": "segmenter", "name": "ultrasound_segmenter", "version": "0.1.0-prelim"},
    {"role": "classifier", "name": "ultrasound_classifier", "version": "1.2.0", "created": "x"},
]
ROWS = [
    {"name": "Area", "value": "123.4", "unit": "mm²", "meaning": "ignored in the PDF"},
    {"name": "Longest diameter", "value": "15.2", "unit": "mm"},
]


def _panels(rng: np.random.Generator, missing_classifier: bool = False):
    gray = rng.integers(0, 256, (60, 80), dtype=np.uint8)
    rgb = rng.integers(0, 256, (60, 80, 3), dtype=np.uint8)
    return [
        ("Original", gray),
        ("Lesion mask (threshold 0.50)", rgb),
        ("Classifier Grad-CAM: malignant", None if missing_classifier else rgb),
        ("Segmenter Grad-CAM: predicted lesion area", rgb),
    ]


def _flat(pdf: bytes) -> str:
    return re.sub(r"\s+", " ", pdf_text(pdf))


def test_full_report_is_one_page_with_every_section(rng: np.random.Generator) -> None:
    report = CaseReport(
        panels=_panels(rng),
        created=CREATED,
        probabilities={"normal": 0.1, "benign": 0.25, "malignant": 0.65},
        uncertainty=0.37,
        refer=True,
        measurements=ROWS,
        measurement_note="Pixel spacing: 0.1 mm per pixel, known for this example.",
        models=MODELS,
        case_note="Left breast, 2 o'clock. Ωμέγα test ü.",
    )
    pdf = render_case_report(report)
    assert pdf.startswith(b"%PDF-")
    assert page_count(pdf) == 1
    assert image_count(pdf) == 4
    text = _flat(pdf)
    assert "decision support, not a diagnosis" in text
    assert REPORT_DISCLAIMER.split(".")[0] in text
    assert "Generated 2026-11-23 05:07 UTC" in text
    assert "Predicted: malignant (65%, calibrated)" in text
    assert all(share in text for share in ("10%", "25%", "65%"))
    assert "Uncertainty (normalised TTA entropy): 0.37" in text
    assert "REFER to a human reader" in text
    assert "123.4" in text and "mm²" in text and "Longest diameter" in text
    assert "ignored in the PDF" not in text
    assert "ultrasound_classifier" in text and "0.1.0-prelim" in text and "1.2.0" in text
    assert "Left breast, 2 o'clock. Ωμέγα test ü." in text
    assert "Classifier Grad-CAM: malignant" in text


def test_report_without_classifier_or_lesion_or_note(rng: np.random.Generator) -> None:
    report = CaseReport(
        panels=_panels(rng, missing_classifier=True),
        created=CREATED,
        measurements=None,
        models=MODELS[:1],
    )
    pdf = render_case_report(report)
    assert page_count(pdf) == 1
    assert image_count(pdf) == 3  # the missing classifier CAM is a labelled empty box
    text = _flat(pdf)
    assert "No classifier is installed" in text
    assert "not available" in text
    assert "nothing measured" in text
    assert "Case note" not in text  # no note, no section: nothing is invented
    assert "REFER" not in text and "Predicted" not in text


def test_no_referral_flag_is_stated(rng: np.random.Generator) -> None:
    report = CaseReport(
        panels=_panels(rng),
        created=CREATED,
        probabilities={"benign": 0.9, "malignant": 0.1},
        uncertainty=0.05,
        refer=False,
        measurements=ROWS,
    )
    assert "No referral flag" in _flat(render_case_report(report))


def test_the_familiarity_line_is_printed_when_given(rng: np.random.Generator) -> None:
    report = CaseReport(
        panels=_panels(rng),
        created=CREATED,
        probabilities={"benign": 0.9, "malignant": 0.1},
        refer=False,
        familiarity="Unfamiliar image: it lies farther than 99.0% of them do.",
        unfamiliar=True,
        measurements=ROWS,
    )
    assert "Unfamiliar image: it lies farther" in _flat(render_case_report(report))
    plain = CaseReport(panels=_panels(rng), created=CREATED, measurements=ROWS)
    assert "familiar" not in _flat(render_case_report(plain)).lower()


def test_the_largest_allowed_report_still_fits_one_page(rng: np.random.Generator) -> None:
    tall = rng.integers(0, 256, (900, 200), dtype=np.uint8)  # tallest panel aspect
    report = CaseReport(
        panels=[(f"A long caption that wraps onto a second line {i}", tall) for i in range(4)],
        created=CREATED,
        probabilities={f"class {i}": 0.1 for i in range(10)},
        uncertainty=1.0,
        refer=True,
        measurements=[{"name": "m", "value": "1", "unit": "mm"}] * MAX_MEASUREMENT_ROWS,
        measurement_note="x" * MAX_MEASUREMENT_NOTE_CHARS,
        models=MODELS * 3,
        case_note="W" * MAX_NOTE_CHARS,  # the widest letter
    )
    assert page_count(render_case_report(report)) == 1


def test_control_characters_are_dropped_from_the_note(rng: np.random.Generator) -> None:
    report = CaseReport(panels=_panels(rng), created=CREATED, case_note="see\x00 \x1b[31mred")
    text = pdf_text(render_case_report(report))
    assert "see [31mred" in text and "\x1b" not in text


def test_the_time_is_printed_in_utc(rng: np.random.Generator) -> None:
    paris = dt.timezone(dt.timedelta(hours=1))
    report = CaseReport(panels=_panels(rng), created=dt.datetime(2026, 1, 1, 9, 30, tzinfo=paris))
    assert "Generated 2026-01-01 08:30 UTC" in pdf_text(render_case_report(report))


# ----------------------------------------------------------------------------- bad input


def _report(rng: np.random.Generator, **changes) -> CaseReport:
    fields = {"panels": _panels(rng), "created": CREATED, **changes}
    return CaseReport(**fields)


@pytest.mark.parametrize(
    ("changes", "error", "message"),
    [
        ({"panels": []}, ConfigError, "1 to 4 image panels; received 0"),
        ({"panels": [("a", None)] * 5}, ConfigError, "1 to 4 image panels; received 5"),
        (
            {"panels": [("f", np.zeros((4, 4), np.float32))]},
            InvalidImageError,
            "Panel 'f' must be a uint8 image array; got float32",
        ),
        (
            {"panels": [("rgba", np.zeros((4, 4, 4), np.uint8))]},
            ImageDimensionError,
            r"must be \(H, W\) or \(H, W, 3\).*\(4, 4, 4\)",
        ),
        (
            {"panels": [("empty", np.zeros((0, 4), np.uint8))]},
            ImageDimensionError,
            "no zero side",
        ),
        (
            {"panels": [("list", [[1, 2]])]},
            InvalidImageError,
            "must be a uint8 image array; got list",
        ),
        ({"created": dt.datetime(2026, 1, 1)}, ConfigError, "timezone-aware"),
        ({"probabilities": {"a": 1.0}}, ConfigError, "2 to 10 class probabilities; received 1"),
        (
            {"probabilities": {"a": 0.5, "b": float("nan")}},
            ConfigError,
            r"numbers in \[0, 1\]",
        ),
        ({"probabilities": {"a": 0.5, "b": 0.2}}, ConfigError, "sum to 1; they sum to 0.7000"),
        ({"uncertainty": 1.5}, ConfigError, r"uncertainty must be in \[0, 1\]; received 1.5"),
        (
            {"measurements": ROWS * 9},
            ConfigError,
            "at most 16 measurements; received 18",
        ),
        ({"models": MODELS * 4}, ConfigError, "at most 6 models; received 8"),
        (
            {"measurement_note": "s" * (MAX_MEASUREMENT_NOTE_CHARS + 1)},
            ConfigError,
            f"measurement note has {MAX_MEASUREMENT_NOTE_CHARS + 1} characters; at most "
            f"{MAX_MEASUREMENT_NOTE_CHARS}",
        ),
        (
            {"case_note": "x" * (MAX_NOTE_CHARS + 1)},
            ConfigError,
            f"{MAX_NOTE_CHARS + 1} characters; at most {MAX_NOTE_CHARS}",
        ),
    ],
)
def test_bad_report_inputs_raise_typed_errors(
    rng: np.random.Generator, changes: dict, error: type, message: str
) -> None:
    with pytest.raises(error, match=message):
        _report(rng, **changes)


def test_a_huge_panel_is_refused(rng: np.random.Generator) -> None:
    huge = np.broadcast_to(np.zeros(1, np.uint8), (4001, 4001))  # no 16 MB allocation
    with pytest.raises(ImageDimensionError, match="16,008,001 pixels; at most 16,000,000"):
        _report(rng, panels=[("huge", huge)])
