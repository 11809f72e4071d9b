"""The Analyse page's one-page PDF report: from an analysis to :mod:`utils.report`.

The report shows what the page shows (the same panels, captions, probabilities and
measurements) plus the model versions and the time. It carries no file name, no DICOM
tag and no patient field; the only free text is the case note the user types.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any, Final

import numpy as np

from helpers.analysis import (
    AnalysisResult,
    cam_overlay,
    familiarity_note,
    mask_overlay,
    measurement_rows,
    smoothness_note,
)
from helpers.descriptor_fidelity import star_lost_descriptors
from utils.report import MAX_NOTE_CHARS, CaseReport, render_case_report

__all__ = [
    "MAX_NOTE_CHARS",
    "REPORT_MIME",
    "build_case_report",
    "case_report_pdf",
    "model_rows",
    "report_file_name",
]

REPORT_MIME: Final = "application/pdf"
_NOT_RECORDED = "not recorded"
#: Under the measurement table when rows are starred (see ``helpers.descriptor_fidelity``).
LOST_DESCRIPTOR_FOOTNOTE: Final = "* Read from a smoothed outline: check the margin on the image."


def model_rows(
    segmenter_card: Mapping[str, Any], classifier_card: Mapping[str, Any] | None
) -> list[dict[str, str]]:
    """Role, bundle name, version and creation date of the models behind the analysis."""
    cards = [("segmenter", segmenter_card)]
    if classifier_card is not None:
        cards.append(("classifier", classifier_card))
    return [
        {
            "role": role,
            "name": str(card.get("name", _NOT_RECORDED)),
            "version": str(card.get("version", _NOT_RECORDED)),
            "created": str(card.get("created", _NOT_RECORDED)),
        }
        for role, card in cards
    ]


def build_case_report(
    result: AnalysisResult,
    base: np.ndarray,
    *,
    segmenter_card: Mapping[str, Any],
    classifier_card: Mapping[str, Any] | None = None,
    cam_method: str = "gradcam",
    opacity: float = 0.4,
    enhanced: bool = False,
    spacing_note: str = "",
    case_note: str = "",
    created: dt.datetime | None = None,
) -> CaseReport:
    """The report contents of one analysis, as the page shows it.

    Args:
        result: The analysis.
        base: The (h, w, 3) uint8 display image the overlays are drawn on.
        segmenter_card: The segmenter's model card.
        classifier_card: The classifier's card, ``None`` without a classifier.
        cam_method: The CAM method used (for the captions).
        opacity: Mask tint opacity, as on the page.
        enhanced: Whether ``base`` is the CLAHE display version.
        spacing_note: Where the pixel spacing comes from (the page's sentence).
        case_note: Free text typed by the user.
        created: Report time; defaults to now (UTC).

    Returns:
        The validated :class:`~utils.report.CaseReport`.

    Raises:
        TumorLensError: A report limit is exceeded (e.g. the case note is too long).
    """
    segmentation = result.segmentation
    classifier_panel = (
        (
            f"Classifier {cam_method}: {result.classifier_cam_class}",
            cam_overlay(base, result.classifier_cam),
        )
        if result.classifier_cam is not None
        else ("Classifier CAM: no classifier installed", None)
    )
    panels = [
        ("Original (CLAHE display)" if enhanced else "Original", base),
        (
            f"Lesion mask (threshold {segmentation.threshold:.2f})",
            mask_overlay(base, segmentation.mask, opacity),
        ),
        classifier_panel,
        (f"Segmenter {cam_method}: predicted lesion area", cam_overlay(base, result.segmenter_cam)),
    ]
    rows = measurement_rows(segmentation)
    # With nothing measured, the spacing is moot; say why the table is empty instead.
    note = f"Pixel spacing: {spacing_note}." if spacing_note else ""
    if rows is None:
        note = f"No lesion found at threshold {segmentation.threshold:.2f}."
    else:
        rows, starred = star_lost_descriptors(rows, segmenter_card or {})
        note = f"{note} {LOST_DESCRIPTOR_FOOTNOTE}" if starred else note
    classification = result.classification
    return CaseReport(
        panels=panels,
        created=created or dt.datetime.now(dt.UTC),
        probabilities=dict(classification.probabilities) if classification else None,
        uncertainty=classification.uncertainty if classification else None,
        refer=classification.refer if classification else None,
        familiarity=familiarity_note(classification) or "",
        image_warning=smoothness_note(result.gray, segmenter_card or {}, brief=True) or "",
        unfamiliar=bool(
            classification and classification.familiarity and classification.familiarity.unfamiliar
        ),
        measurements=rows,
        measurement_note=note,
        models=model_rows(segmenter_card, classifier_card),
        case_note=case_note,
    )


def case_report_pdf(result: AnalysisResult, base: np.ndarray, **options: Any) -> bytes:
    """:func:`build_case_report` rendered as PDF bytes (same arguments)."""
    return render_case_report(build_case_report(result, base, **options))


def report_file_name(created: dt.datetime | None = None) -> str:
    """A download name made of the time only (never the uploaded file's name)."""
    when = (created or dt.datetime.now(dt.UTC)).astimezone(dt.UTC)
    return f"tumorlens_report_{when:%Y%m%d_%H%M%S}Z.pdf"
