"""One-page PDF report of an analysed ultrasound case, with fpdf2.

:func:`render_case_report` lays out, on one A4 page: the four image panels (original,
lesion mask, classifier CAM, segmenter CAM), the calibrated class probabilities with
the uncertainty and referral flag, the lesion measurements, the model versions, the
time, an optional case note typed by the user, and the decision-support disclaimer.

Privacy: the report holds only what it is given. It has no patient field and reads no
DICOM tag; the only free text is the user's case note. Inputs are bounded (panels,
classes, rows, note length) so the page can never overflow; :func:`render_case_report`
checks that the layout ended on page 1.

The layout is drawn by :mod:`utils.report_layout`.
"""

from __future__ import annotations

import datetime as dt
import math
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final

import numpy as np
from fpdf.enums import XPos, YPos

from utils.errors import ConfigError, ImageDimensionError, InvalidImageError
from utils.report_layout import (
    CONTENT_WIDTH,
    FONT,
    MARGIN,
    PAGE_HEIGHT,
    PANEL_SLOTS,
    ReportPDF,
    draw_classification,
    draw_measurements,
    draw_models,
    draw_panels,
)

__all__ = [
    "MAX_MEASUREMENT_NOTE_CHARS",
    "MAX_MEASUREMENT_ROWS",
    "MAX_NOTE_CHARS",
    "REPORT_DISCLAIMER",
    "CaseReport",
    "render_case_report",
]

REPORT_DISCLAIMER: Final = (
    "TumorLens is decision support, not a diagnosis, and not a certified medical device. "
    "Every output on this page must be reviewed by a qualified clinician."
)
MAX_PANELS: Final = PANEL_SLOTS
MAX_CLASSES: Final = 10
MAX_MEASUREMENT_ROWS: Final = 16
MAX_MODELS: Final = 6
MAX_NOTE_CHARS: Final = 400
MAX_MEASUREMENT_NOTE_CHARS: Final = 150
MAX_PANEL_PIXELS: Final = 16_000_000


@dataclass(frozen=True)
class CaseReport:
    """Everything the one-page report shows.

    Attributes:
        panels: Up to four ``(caption, image)`` pairs; ``image`` is (H, W) or (H, W, 3)
            uint8, or ``None`` for a panel that is not available (its caption says why).
        created: When the analysis was reported (timezone-aware; printed in UTC).
        probabilities: Calibrated probability per class, ``None`` without a classifier.
        uncertainty: Normalised TTA entropy in [0, 1], ``None`` when not computed.
        refer: Whether the classifier asks for a human reader, ``None`` when unknown.
        familiarity: One line from :func:`utils.analysis.familiarity_note`, empty when
            the classifier has no familiarity reference.
        image_warning: One line on the image itself (the brief
            :func:`utils.analysis.smoothness_note`), printed in red above the
            classification; empty when there is nothing to say.
        unfamiliar: Whether that line is a warning (the image looks unfamiliar).
        measurements: Rows with ``name``, ``value`` and ``unit``; ``None`` when the
            mask is empty (nothing measured).
        measurement_note: One line on the pixel spacing or why nothing was measured.
        models: Rows with ``role``, ``name``, ``version`` (and optionally ``created``).
        case_note: Free text typed by the user (the only place identifiers can enter).
    """

    panels: Sequence[tuple[str, np.ndarray | None]]
    created: dt.datetime
    probabilities: Mapping[str, float] | None = None
    uncertainty: float | None = None
    refer: bool | None = None
    familiarity: str = ""
    unfamiliar: bool = False
    image_warning: str = ""
    measurements: Sequence[Mapping[str, str]] | None = None
    measurement_note: str = ""
    models: Sequence[Mapping[str, str]] = field(default_factory=tuple)
    case_note: str = ""

    def __post_init__(self) -> None:
        if not 1 <= len(self.panels) <= MAX_PANELS:
            raise ConfigError(
                f"A report has 1 to {MAX_PANELS} image panels; received {len(self.panels)}."
            )
        for caption, pixels in self.panels:
            if pixels is not None:
                _check_panel(caption, pixels)
        if self.created.tzinfo is None:
            raise ConfigError("The report time must be timezone-aware (e.g. datetime.now(UTC)).")
        if self.probabilities is not None:
            _check_probabilities(self.probabilities)
        if self.uncertainty is not None and not 0 <= self.uncertainty <= 1:
            raise ConfigError(f"uncertainty must be in [0, 1]; received {self.uncertainty}.")
        if self.measurements is not None and len(self.measurements) > MAX_MEASUREMENT_ROWS:
            raise ConfigError(
                f"A report lists at most {MAX_MEASUREMENT_ROWS} measurements; received "
                f"{len(self.measurements)}."
            )
        if len(self.measurement_note) > MAX_MEASUREMENT_NOTE_CHARS:
            raise ConfigError(
                f"The measurement note has {len(self.measurement_note)} characters; at most "
                f"{MAX_MEASUREMENT_NOTE_CHARS} are allowed."
            )
        if len(self.models) > MAX_MODELS:
            raise ConfigError(
                f"A report lists at most {MAX_MODELS} models; received {len(self.models)}."
            )
        if len(self.case_note) > MAX_NOTE_CHARS:
            raise ConfigError(
                f"The case note has {len(self.case_note)} characters; at most "
                f"{MAX_NOTE_CHARS} fit on the one-page report."
            )


def _check_panel(caption: str, pixels: np.ndarray) -> None:
    if not isinstance(pixels, np.ndarray) or pixels.dtype != np.uint8:
        kind = getattr(pixels, "dtype", type(pixels).__name__)
        raise InvalidImageError(f"Panel {caption!r} must be a uint8 image array; got {kind}.")
    shape_ok = pixels.ndim == 2 or (pixels.ndim == 3 and pixels.shape[2] == 3)
    if not shape_ok or 0 in pixels.shape:
        raise ImageDimensionError(
            f"Panel {caption!r} must be (H, W) or (H, W, 3) with no zero side; got shape "
            f"{pixels.shape}."
        )
    if pixels.shape[0] * pixels.shape[1] > MAX_PANEL_PIXELS:
        raise ImageDimensionError(
            f"Panel {caption!r} has {pixels.shape[0] * pixels.shape[1]:,} pixels; at most "
            f"{MAX_PANEL_PIXELS:,} are allowed."
        )


def _check_probabilities(probabilities: Mapping[str, float]) -> None:
    values = list(probabilities.values())
    if not 2 <= len(values) <= MAX_CLASSES:
        raise ConfigError(
            f"A report shows 2 to {MAX_CLASSES} class probabilities; received {len(values)}."
        )
    if not all(isinstance(v, int | float) and math.isfinite(v) and 0 <= v <= 1 for v in values):
        raise ConfigError(f"Class probabilities must be numbers in [0, 1]; received {values}.")
    if abs(sum(values) - 1.0) > 1e-2:
        raise ConfigError(f"Class probabilities must sum to 1; they sum to {sum(values):.4f}.")


def _clean_note(note: str) -> str:
    # Control characters (other than line breaks) have no glyph and could hide text.
    kept = (ch for ch in note if ch in "\n\t" or unicodedata.category(ch)[0] != "C")
    return "".join(kept).replace("\t", " ").strip()


def render_case_report(report: CaseReport) -> bytes:
    """Lay the case out on one A4 page and return the PDF.

    Args:
        report: The validated report contents.

    Returns:
        The PDF file's bytes.

    Raises:
        ConfigError: The contents do not fit one page (cannot happen within the limits
            :class:`CaseReport` enforces; checked so a layout change cannot overflow
            silently) or the report font is missing.
    """
    pdf = ReportPDF()
    pdf.text_line("TumorLens case report", size=16, bold=True, height=8)
    created = report.created.astimezone(dt.UTC)
    pdf.text_line(f"Generated {created:%Y-%m-%d %H:%M} UTC", size=9, height=5)
    pdf.ln(1.5)
    pdf.set_fill_color(255, 236, 229)
    pdf.set_font(FONT, "B", 9.5)
    pdf.multi_cell(0, 5, REPORT_DISCLAIMER, border=1, fill=True, padding=1.5, align="L")
    note = _clean_note(report.case_note)
    if note:
        pdf.heading("Case note (typed by the user)")
        pdf.set_font(FONT, "", 9)
        pdf.multi_cell(0, 4.4, note)
    pdf.heading("Images")
    draw_panels(pdf, report.panels)

    column_width = (CONTENT_WIDTH - 6) / 2
    pdf.heading("Classification")
    section_top = pdf.get_y()
    draw_classification(pdf, report, column_width)
    left_bottom = pdf.get_y()
    right = MARGIN + column_width + 6
    pdf.set_xy(right, section_top - 6)
    pdf.set_font(FONT, "B", 11)
    pdf.cell(column_width, 6, "Lesion measurements", new_x=XPos.LEFT, new_y=YPos.NEXT)
    draw_measurements(pdf, report, right, column_width)
    pdf.set_xy(MARGIN, max(left_bottom, pdf.get_y()))

    pdf.heading("Models")
    draw_models(pdf, report.models)
    pdf.ln(3)
    pdf.set_font(FONT, "", 7.5)
    pdf.set_text_color(90, 90, 90)
    pdf.multi_cell(
        0,
        3.6,
        "Images are the analysed image and its overlays. The report holds no patient "
        "identifier and no DICOM tag; a case note is printed exactly as the user typed it.",
        align="L",
    )
    if pdf.page_no() != 1 or pdf.get_y() > PAGE_HEIGHT - MARGIN:
        raise ConfigError(
            "The report does not fit on one page; shorten the case note or the measurement list."
        )
    return bytes(pdf.output())
