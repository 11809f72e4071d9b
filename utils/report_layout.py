"""Page layout of the one-page case report (:mod:`utils.report`), drawn with fpdf2.

A4 portrait, 12 mm margins, DejaVu Sans (shipped with matplotlib, a pinned dependency,
so "mm²", "±" and notes in any European script print as typed). Each ``draw_*``
function draws one section from the cursor down and leaves the cursor below it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Final

import numpy as np
from fpdf import FPDF
from fpdf.enums import XPos, YPos
from PIL import Image

from utils.errors import ConfigError

if TYPE_CHECKING:
    from utils.report import CaseReport

#: Image slots across the page (the report's most panels).
PANEL_SLOTS: Final = 4
#: Longest side of an embedded panel: sharp at 45 mm wide, and keeps the PDF small.
PANEL_MAX_SIDE: Final = 512
PAGE_WIDTH, PAGE_HEIGHT, MARGIN = 210.0, 297.0, 12.0
CONTENT_WIDTH: Final = PAGE_WIDTH - 2 * MARGIN
PANEL_GAP, PANEL_MAX_HEIGHT = 3.0, 50.0
ROW = 3.9  # height of a bar, measurement or model row
FONT: Final = "DejaVu"
PREDICTED_RGB, OTHER_RGB, REFER_RGB = (214, 39, 40), (150, 150, 150), (200, 60, 0)


class ReportPDF(FPDF):
    """An A4 portrait page with the report's fonts and helpers."""

    def __init__(self) -> None:
        super().__init__(orientation="portrait", unit="mm", format="A4")
        # Fixed layout: content must fit page 1, so never break pages silently.
        self.set_auto_page_break(False)
        self.set_margins(MARGIN, MARGIN, MARGIN)
        fonts = font_dir()
        self.add_font(FONT, "", str(fonts / "DejaVuSans.ttf"))
        self.add_font(FONT, "B", str(fonts / "DejaVuSans-Bold.ttf"))
        # JPEG: a display copy of speckled ultrasound deflates poorly (~0.6 MB a report
        # losslessly, ~0.15 MB as JPEG) and prints the same.
        self.set_image_filter("DCTDecode")
        self.set_creator("TumorLens")
        self.set_title("TumorLens case report")
        self.add_page()

    def text_line(self, text: str, *, size: float = 9, bold: bool = False, height: float = 4.6):
        """One left-aligned line across the content width, then a line break."""
        self.set_font(FONT, "B" if bold else "", size)
        self.cell(0, height, text, new_x=XPos.LMARGIN, new_y=YPos.NEXT)

    def heading(self, text: str) -> None:
        """A section heading with a little space above."""
        self.ln(2.5)
        self.text_line(text, size=11, bold=True, height=6)


def font_dir() -> Path:
    """The folder of matplotlib's DejaVu fonts.

    Raises:
        ConfigError: DejaVuSans.ttf is not there.
    """
    import matplotlib  # Lazy: only the report needs its fonts.

    fonts = Path(matplotlib.get_data_path()) / "fonts" / "ttf"
    if not (fonts / "DejaVuSans.ttf").is_file():
        raise ConfigError(f"The report font DejaVuSans.ttf is missing from {fonts}.")
    return fonts


def panel_image(pixels: np.ndarray) -> Image.Image:
    """An RGB copy of a panel, at most ``PANEL_MAX_SIDE`` pixels a side."""
    image = Image.fromarray(pixels)
    image.thumbnail((PANEL_MAX_SIDE, PANEL_MAX_SIDE), Image.Resampling.LANCZOS)
    return image.convert("RGB")


def draw_panels(pdf: ReportPDF, panels: Sequence[tuple[str, np.ndarray | None]]) -> None:
    """The image panels in one row of ``PANEL_SLOTS`` slots, captions below."""
    width = (CONTENT_WIDTH - (PANEL_SLOTS - 1) * PANEL_GAP) / PANEL_SLOTS
    sizes = []
    for _, pixels in panels:
        aspect = pixels.shape[0] / pixels.shape[1] if pixels is not None else 0.75
        height = min(width * aspect, PANEL_MAX_HEIGHT)
        sizes.append((height / aspect, height))
    row_height = max(height for _, height in sizes)
    top = pdf.get_y() + 1.5
    pdf.set_font(FONT, "", 7.5)
    for index, ((caption, pixels), (w, h)) in enumerate(zip(panels, sizes, strict=True)):
        left = MARGIN + index * (width + PANEL_GAP)
        x = left + (width - w) / 2
        if pixels is None:
            pdf.set_draw_color(*OTHER_RGB)
            pdf.rect(x, top, w, h)
            pdf.set_xy(x, top + h / 2 - 2)
            pdf.cell(w, 4, "not available", align="C")
        else:
            pdf.image(panel_image(pixels), x=x, y=top, w=w, h=h)
        pdf.set_xy(left, top + row_height + 1)
        pdf.multi_cell(width, 3.4, caption, align="C", max_line_height=3.4)
    pdf.set_xy(MARGIN, top + row_height + 1 + 3 * 3.4)


def paragraph(pdf: ReportPDF, width: float, height: float, text: str) -> None:
    """Wrapped text from the left margin; the cursor ends at the left margin below it."""
    pdf.multi_cell(width, height, text, align="L", new_x=XPos.LMARGIN, new_y=YPos.NEXT)


def draw_classification(pdf: ReportPDF, report: CaseReport, width: float) -> None:
    """Predicted class, probability bars, uncertainty and the referral flag (left column)."""
    if report.image_warning:
        pdf.set_text_color(*REFER_RGB)
        pdf.set_font(FONT, "B", 8.5)
        paragraph(pdf, width, 4.4, report.image_warning)
        pdf.set_text_color(0, 0, 0)
    probabilities = report.probabilities
    if probabilities is None:
        pdf.set_font(FONT, "", 9)
        paragraph(pdf, width, 4.6, "No classifier is installed: no class probabilities.")
        return
    predicted = max(probabilities, key=probabilities.__getitem__)
    pdf.set_font(FONT, "B", 9)
    confidence = probabilities[predicted]
    paragraph(pdf, width, 4.6, f"Predicted: {predicted} ({confidence:.0%}, calibrated)")
    label_w, bar_w = 26.0, width - 26.0 - 12.0
    pdf.set_font(FONT, "", 8.5)
    for name, value in probabilities.items():
        top = pdf.get_y()
        pdf.set_x(pdf.l_margin)
        pdf.cell(label_w, ROW, name)
        pdf.set_fill_color(*(PREDICTED_RGB if name == predicted else OTHER_RGB))
        if value > 0:
            pdf.rect(pdf.l_margin + label_w, top + 0.5, max(bar_w * value, 0.3), 2.9, style="F")
        pdf.set_xy(pdf.l_margin + label_w + bar_w + 1, top)
        pdf.cell(11, ROW, f"{value:.0%}", align="R", new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    pdf.set_font(FONT, "", 8.5)
    if report.uncertainty is not None:
        uncertainty = f"Uncertainty (normalised TTA entropy): {report.uncertainty:.2f}"
        paragraph(pdf, width, 4.4, uncertainty)
    if report.refer:
        pdf.set_text_color(*REFER_RGB)
        pdf.set_font(FONT, "B", 9)
        paragraph(pdf, width, 4.6, "REFER to a human reader: the classifier is unsure.")
        pdf.set_text_color(0, 0, 0)
    elif report.refer is False:
        paragraph(pdf, width, 4.4, "No referral flag; the image still needs a reader's review.")
    if report.familiarity:
        if report.unfamiliar:
            pdf.set_text_color(*REFER_RGB)
        paragraph(pdf, width, 4.4, report.familiarity)
        pdf.set_text_color(0, 0, 0)


def draw_measurements(pdf: ReportPDF, report: CaseReport, left: float, width: float) -> None:
    """The spacing note and the measurement table, in the column at ``left``."""
    pdf.set_xy(left, pdf.get_y())
    pdf.set_font(FONT, "", 8)
    if report.measurement_note:
        pdf.multi_cell(width, 3.8, report.measurement_note, align="L", new_x=XPos.LEFT)
    if not report.measurements:
        pdf.set_font(FONT, "", 9)
        pdf.multi_cell(
            width, 4.6, "No lesion at this threshold: nothing measured.", new_x=XPos.LEFT
        )
        return
    columns = (width * 0.5, width * 0.32, width * 0.18)
    pdf.set_font(FONT, "B", 8.5)
    for text, w, align in zip(("measurement", "value", "unit"), columns, "LRL", strict=True):
        pdf.cell(w, 4.4, text, border="B", align=align)
    pdf.ln(4.4)
    pdf.set_font(FONT, "", 8.5)
    for row in report.measurements:
        pdf.set_x(left)
        pdf.cell(columns[0], ROW, str(row.get("name", "")))
        pdf.cell(columns[1], ROW, str(row.get("value", "")), align="R")
        pdf.cell(columns[2], ROW, "  " + str(row.get("unit", "")))
        pdf.ln(ROW)


def draw_models(pdf: ReportPDF, models: Sequence[Mapping[str, str]]) -> None:
    """The model versions table across the page."""
    if not models:
        pdf.text_line("No model version recorded.", size=8.5)
        return
    columns = (34.0, 52.0, 52.0, CONTENT_WIDTH - 138.0)
    pdf.set_font(FONT, "B", 8.5)
    for text, w in zip(("role", "bundle", "version", "created"), columns, strict=True):
        pdf.cell(w, 4.4, text, border="B")
    pdf.ln(4.4)
    pdf.set_font(FONT, "", 8.5)
    for model in models:
        keys = ("role", "name", "version", "created")
        for key, w in zip(keys, columns, strict=True):
            pdf.cell(w, ROW, str(model.get(key, "not recorded")))
        pdf.ln(ROW)
