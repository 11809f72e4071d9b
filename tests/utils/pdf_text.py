"""Read back the PDFs the app writes, for tests: page count, text, images drawn.

A thin layer over pypdf. A hand-written reader used to live here, and it lost a page's text
whenever a compressed stream happened to end in byte 0x0D (about 1 report in 90).
"""

from __future__ import annotations

import io

from pypdf import PdfReader
from pypdf.generic import ContentStream


def _reader(pdf: bytes) -> PdfReader:
    return PdfReader(io.BytesIO(pdf))


def page_count(pdf: bytes) -> int:
    """Number of pages."""
    return len(_reader(pdf).pages)


def image_count(pdf: bytes) -> int:
    """Number of images drawn (``Do`` of an image XObject; one image shown twice counts twice)."""
    reader, drawn = _reader(pdf), 0
    for page in reader.pages:
        xobjects = page["/Resources"].get_object().get("/XObject", {})
        xobjects = xobjects.get_object() if xobjects else {}
        contents = page.get_contents()
        if contents is None:
            continue
        for operands, operator in ContentStream(contents, reader).operations:
            if operator == b"Do" and xobjects[operands[0]].get_object()["/Subtype"] == "/Image":
                drawn += 1
    return drawn


def pdf_text(pdf: bytes) -> str:
    """All text of every page, in reading order, one extracted page after another."""
    return "\n".join(page.extract_text() for page in _reader(pdf).pages)
