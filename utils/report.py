"""One-page PDF report of an analysed ultrasound case, with fpdf2.

:func:`render_case_report` lays out, on one A4 page: the four image panels (original,
lesion mask, classifier CAM, segmenter CAM), the calibrated class probabilities with
the uncertainty and referral flag, the lesion measurements, the model versions, the
time, an optional case note typed by the user, and the decision-support disclaimer.

Privacy: the report holds only what it is given. It has no patient field and reads no
DICOM tag; the only free text is the user's case note. Inputs are bounded (panels,
classes, rows, note length) so the page can never overflow; :func:`render_case_report`
checks that the layout ended on page 1.

Text is set in DejaVu Sans (shipped with matplotlib, a pinned dependency), so "mm²",
"±" and notes in any European script print as typed.
"""

from __future__ import annotations

import datetime as dt
import math
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

import numpy as np
from fpdf import FPDF
from fpdf.enums import XPos, YPos
from PIL import Image

from utils.errors import ConfigError, ImageDimensionError, InvalidImageError

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
MAX_PANELS: Final = 4
MAX_CLASSES: Final = 10
MAX_MEASUREMENT_ROWS: Final = 16
MAX_MODELS: Final = 6
MAX_NOTE_CHARS: Final = 400
MAX_MEASUREMENT_NOTE_CHARS: Final = 120
MAX_PANEL_PIXELS: Final = 16_000_000
#: Longest side of an embedded panel: sharp at 45 mm wide, and keeps the PDF small.
_PANEL_MAX_SIDE: Final = 512
_PAGE_WIDTH, _PAGE_HEIGHT, _MARGIN = 210.0, 297.0, 12.0
_CONTENT_WIDTH: Final = _PAGE_WIDTH - 2 * _MARGIN
_PANEL_GAP, _PANEL_MAX_HEIGHT = 3.0, 50.0
_ROW = 3.9  # height of a bar, measurement or model row
_FONT: Final = "DejaVu"
_PREDICTED_RGB, _OTHER_RGB, _REFER_RGB = (214, 39, 40), (150, 150, 150), (200, 60, 0)


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


class _ReportPDF(FPDF):
    """An A4 portrait page with the report's fonts and helpers."""

    def __init__(self) -> None:
        super().__init__(orientation="portrait", unit="mm", format="A4")
        # Fixed layout: content must fit page 1, so never break pages silently.
        self.set_auto_page_break(False)
        self.set_margins(_MARGIN, _MARGIN, _MARGIN)
        fonts = _font_dir()
        self.add_font(_FONT, "", str(fonts / "DejaVuSans.ttf"))
        self.add_font(_FONT, "B", str(fonts / "DejaVuSans-Bold.ttf"))
        # JPEG: a display copy of speckled ultrasound deflates poorly (~0.6 MB a report
        # losslessly, ~0.15 MB as JPEG) and prints the same.
        self.set_image_filter("DCTDecode")
        self.set_creator("TumorLens")
        self.set_title("TumorLens case report")
        self.add_page()

    def text_line(self, text: str, *, size: float = 9, bold: bool = False, height: float = 4.6):
        """One left-aligned line across the content width, then a line break."""
        self.set_font(_FONT, "B" if bold else "", size)
        self.cell(0, height, text, new_x=XPos.LMARGIN, new_y=YPos.NEXT)

    def heading(self, text: str) -> None:
        """A section heading with a little space above."""
        self.ln(2.5)
        self.text_line(text, size=11, bold=True, height=6)


def _font_dir() -> Path:
    import matplotlib  # Lazy: only the report needs its fonts.

    fonts = Path(matplotlib.get_data_path()) / "fonts" / "ttf"
    if not (fonts / "DejaVuSans.ttf").is_file():
        raise ConfigError(f"The report font DejaVuSans.ttf is missing from {fonts}.")
    return fonts


def _panel_image(pixels: np.ndarray) -> Image.Image:
    image = Image.fromarray(pixels)
    image.thumbnail((_PANEL_MAX_SIDE, _PANEL_MAX_SIDE), Image.Resampling.LANCZOS)
    return image.convert("RGB")


def _draw_panels(pdf: _ReportPDF, panels: Sequence[tuple[str, np.ndarray | None]]) -> None:
    width = (_CONTENT_WIDTH - (MAX_PANELS - 1) * _PANEL_GAP) / MAX_PANELS
    sizes = []
    for _, pixels in panels:
        aspect = pixels.shape[0] / pixels.shape[1] if pixels is not None else 0.75
        height = min(width * aspect, _PANEL_MAX_HEIGHT)
        sizes.append((height / aspect, height))
    row_height = max(height for _, height in sizes)
    top = pdf.get_y() + 1.5
    pdf.set_font(_FONT, "", 7.5)
    for index, ((caption, pixels), (w, h)) in enumerate(zip(panels, sizes, strict=True)):
        left = _MARGIN + index * (width + _PANEL_GAP)
        x = left + (width - w) / 2
        if pixels is None:
            pdf.set_draw_color(*_OTHER_RGB)
            pdf.rect(x, top, w, h)
            pdf.set_xy(x, top + h / 2 - 2)
            pdf.cell(w, 4, "not available", align="C")
        else:
            pdf.image(_panel_image(pixels), x=x, y=top, w=w, h=h)
        pdf.set_xy(left, top + row_height + 1)
        pdf.multi_cell(width, 3.4, caption, align="C", max_line_height=3.4)
    pdf.set_xy(_MARGIN, top + row_height + 1 + 3 * 3.4)


def _paragraph(pdf: _ReportPDF, width: float, height: float, text: str) -> None:
    """Wrapped text from the left margin; the cursor ends at the left margin below it."""
    pdf.multi_cell(width, height, text, align="L", new_x=XPos.LMARGIN, new_y=YPos.NEXT)


def _draw_classification(pdf: _ReportPDF, report: CaseReport, width: float) -> None:
    probabilities = report.probabilities
    if probabilities is None:
        pdf.set_font(_FONT, "", 9)
        _paragraph(pdf, width, 4.6, "No classifier is installed: no class probabilities.")
        return
    predicted = max(probabilities, key=probabilities.__getitem__)
    pdf.set_font(_FONT, "B", 9)
    confidence = probabilities[predicted]
    _paragraph(pdf, width, 4.6, f"Predicted: {predicted} ({confidence:.0%}, calibrated)")
    label_w, bar_w = 26.0, width - 26.0 - 12.0
    pdf.set_font(_FONT, "", 8.5)
    for name, value in probabilities.items():
        top = pdf.get_y()
        pdf.set_x(pdf.l_margin)
        pdf.cell(label_w, _ROW, name)
        pdf.set_fill_color(*(_PREDICTED_RGB if name == predicted else _OTHER_RGB))
        if value > 0:
            pdf.rect(pdf.l_margin + label_w, top + 0.5, max(bar_w * value, 0.3), 2.9, style="F")
        pdf.set_xy(pdf.l_margin + label_w + bar_w + 1, top)
        pdf.cell(11, _ROW, f"{value:.0%}", align="R", new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    pdf.set_font(_FONT, "", 8.5)
    if report.uncertainty is not None:
        uncertainty = f"Uncertainty (normalised TTA entropy): {report.uncertainty:.2f}"
        _paragraph(pdf, width, 4.4, uncertainty)
    if report.refer:
        pdf.set_text_color(*_REFER_RGB)
        pdf.set_font(_FONT, "B", 9)
        _paragraph(pdf, width, 4.6, "REFER to a human reader: the classifier is unsure.")
        pdf.set_text_color(0, 0, 0)
    elif report.refer is False:
        _paragraph(pdf, width, 4.4, "No referral flag; the image still needs a reader's review.")


def _draw_measurements(pdf: _ReportPDF, report: CaseReport, left: float, width: float) -> None:
    pdf.set_xy(left, pdf.get_y())
    pdf.set_font(_FONT, "", 8)
    if report.measurement_note:
        pdf.multi_cell(width, 3.8, report.measurement_note, align="L", new_x=XPos.LEFT)
    if not report.measurements:
        pdf.set_font(_FONT, "", 9)
        pdf.multi_cell(
            width, 4.6, "No lesion at this threshold: nothing measured.", new_x=XPos.LEFT
        )
        return
    columns = (width * 0.5, width * 0.32, width * 0.18)
    pdf.set_font(_FONT, "B", 8.5)
    for text, w, align in zip(("measurement", "value", "unit"), columns, "LRL", strict=True):
        pdf.cell(w, 4.4, text, border="B", align=align)
    pdf.ln(4.4)
    pdf.set_font(_FONT, "", 8.5)
    for row in report.measurements:
        pdf.set_x(left)
        pdf.cell(columns[0], _ROW, str(row.get("name", "")))
        pdf.cell(columns[1], _ROW, str(row.get("value", "")), align="R")
        pdf.cell(columns[2], _ROW, "  " + str(row.get("unit", "")))
        pdf.ln(_ROW)


def _draw_models(pdf: _ReportPDF, models: Sequence[Mapping[str, str]]) -> None:
    if not models:
        pdf.text_line("No model version recorded.", size=8.5)
        return
    columns = (34.0, 52.0, 52.0, _CONTENT_WIDTH - 138.0)
    pdf.set_font(_FONT, "B", 8.5)
    for text, w in zip(("role", "bundle", "version", "created"), columns, strict=True):
        pdf.cell(w, 4.4, text, border="B")
    pdf.ln(4.4)
    pdf.set_font(_FONT, "", 8.5)
    for model in models:
        keys = ("role", "name", "version", "created")
        for key, w in zip(keys, columns, strict=True):
            pdf.cell(w, _ROW, str(model.get(key, "not recorded")))
        pdf.ln(_ROW)


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
    pdf = _ReportPDF()
    pdf.text_line("TumorLens case report", size=16, bold=True, height=8)
    created = report.created.astimezone(dt.UTC)
    pdf.text_line(f"Generated {created:%Y-%m-%d %H:%M} UTC", size=9, height=5)
    pdf.ln(1.5)
    pdf.set_fill_color(255, 236, 229)
    pdf.set_font(_FONT, "B", 9.5)
    pdf.multi_cell(0, 5, REPORT_DISCLAIMER, border=1, fill=True, padding=1.5, align="L")
    note = _clean_note(report.case_note)
    if note:
        pdf.heading("Case note (typed by the user)")
        pdf.set_font(_FONT, "", 9)
        pdf.multi_cell(0, 4.4, note)
    pdf.heading("Images")
    _draw_panels(pdf, report.panels)

    column_width = (_CONTENT_WIDTH - 6) / 2
    pdf.heading("Classification")
    section_top = pdf.get_y()
    _draw_classification(pdf, report, column_width)
    left_bottom = pdf.get_y()
    right = _MARGIN + column_width + 6
    pdf.set_xy(right, section_top - 6)
    pdf.set_font(_FONT, "B", 11)
    pdf.cell(column_width, 6, "Lesion measurements", new_x=XPos.LEFT, new_y=YPos.NEXT)
    _draw_measurements(pdf, report, right, column_width)
    pdf.set_xy(_MARGIN, max(left_bottom, pdf.get_y()))

    pdf.heading("Models")
    _draw_models(pdf, report.models)
    pdf.ln(3)
    pdf.set_font(_FONT, "", 7.5)
    pdf.set_text_color(90, 90, 90)
    pdf.multi_cell(
        0,
        3.6,
        "Images are the analysed image and its overlays. The report holds no patient "
        "identifier and no DICOM tag; a case note is printed exactly as the user typed it.",
        align="L",
    )
    if pdf.page_no() != 1 or pdf.get_y() > _PAGE_HEIGHT - _MARGIN:
        raise ConfigError(
            "The report does not fit on one page; shorten the case note or the measurement list."
        )
    return bytes(pdf.output())
