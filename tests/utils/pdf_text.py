"""A small reader of the PDFs fpdf2 writes, for tests: page count, text, images.

No PDF library is a dependency, so this reads just what fpdf2 produces: Flate
streams, ``/Type /Page`` objects, ``Tj`` / ``TJ`` strings of 2-byte glyph ids, and the
``ToUnicode`` CMaps (``bfchar``) that map those ids back to characters.
"""

from __future__ import annotations

import re
import zlib

_OBJECT = re.compile(rb"(\d+) 0 obj(.*?)endobj", re.S)
_STREAM = re.compile(rb"stream\r?\n(.*?)\r?\nendstream", re.S)
_PAGE = re.compile(rb"/Type\s*/Page(?![a-zA-Z])")
_FONT_REFERENCE = re.compile(rb"/(F\d+)\s+(\d+) 0 R")
_TO_UNICODE = re.compile(rb"/ToUnicode\s+(\d+) 0 R")
_BFCHAR = re.compile(rb"<([0-9A-Fa-f]{4})>\s*<([0-9A-Fa-f]{4,8})>")
_NAME = re.compile(rb"/([A-Za-z0-9]+)")
_TEXT_OPERATOR = re.compile(rb"(Tj|TJ|Tf)(?![A-Za-z])")
_ESCAPES = {b"n": b"\n", b"r": b"\r", b"t": b"\t", b"b": b"\b", b"f": b"\f"}


def _objects(pdf: bytes) -> dict[int, tuple[bytes, bytes | None]]:
    """Object number -> (dictionary text, decompressed stream or None)."""
    objects = {}
    for match in _OBJECT.finditer(pdf):
        body = match.group(2)
        stream = _STREAM.search(body)
        data = None
        if stream:
            try:
                data = zlib.decompress(stream.group(1))
            except zlib.error:
                data = stream.group(1)
            body = body[: stream.start()]
        objects[int(match.group(1))] = (body, data)
    return objects


def page_count(pdf: bytes) -> int:
    """Number of page objects (``/Type /Page``, not ``/Pages``)."""
    return len(_PAGE.findall(pdf))


def image_count(pdf: bytes) -> int:
    """Number of images drawn (``Do`` operators; fpdf2 embeds an image shown twice once)."""
    streams = [stream for _, stream in _objects(pdf).values() if stream is not None]
    return sum(len(re.findall(rb"/I\d+\s+Do\b", stream)) for stream in streams)


def _read_literal(stream: bytes, start: int) -> tuple[bytes, int]:
    """The unescaped PDF string starting after ``(`` at ``start``, and the index after ``)``."""
    out, depth, index = bytearray(), 0, start
    while index < len(stream):
        char = stream[index]
        if char == 0x5C:  # backslash
            following = stream[index + 1 : index + 2]
            octal = re.match(rb"[0-7]{1,3}", stream[index + 1 : index + 4])
            if octal:
                out.append(int(octal.group(0), 8))
                index += 1 + len(octal.group(0))
            else:
                out += _ESCAPES.get(following, following)
                index += 2
            continue
        if char == 0x29 and depth == 0:  # the closing parenthesis
            return bytes(out), index + 1
        depth += {0x28: 1, 0x29: -1}.get(char, 0)
        out.append(char)
        index += 1
    return bytes(out), index


def _content_lines(stream: bytes, fonts: dict[bytes, dict[int, str]]) -> list[str]:
    """The strings shown by each ``Tj`` / ``TJ`` of a content stream, decoded."""
    lines, pending, mapping, name, index = [], [], {}, b"", 0
    while index < len(stream):
        char = stream[index : index + 1]
        if char == b"(":
            literal, index = _read_literal(stream, index + 1)
            pending.append(literal)
            continue
        if char == b"/" and (match := _NAME.match(stream, index)):
            name, index = match.group(1), match.end()
            continue
        if match := _TEXT_OPERATOR.match(stream, index):
            if match.group(1) == b"Tf":
                mapping = fonts.get(name, {})
            else:
                raw = b"".join(pending)
                glyphs = [int.from_bytes(raw[i : i + 2], "big") for i in range(0, len(raw) - 1, 2)]
                lines.append("".join(mapping.get(glyph, "\ufffd") for glyph in glyphs))
            pending = []
            index = match.end()
            continue
        index += 1
    return lines


def _cmap(stream: bytes) -> dict[int, str]:
    return {
        int(glyph, 16): bytes.fromhex(code.decode()).decode("utf-16-be")
        for glyph, code in _BFCHAR.findall(stream)
    }


def pdf_text(pdf: bytes) -> str:
    """All text shown with ``Tj``, glyphs mapped through each font's ToUnicode CMap.

    One line per ``Tj`` or ``TJ`` (fpdf2 writes one per cell or wrapped line).
    """
    objects = _objects(pdf)
    fonts: dict[bytes, dict[int, str]] = {}
    for body, _ in objects.values():
        if b"/Font" not in body:
            continue
        for name, number in _FONT_REFERENCE.findall(body):
            to_unicode = _TO_UNICODE.search(objects[int(number)][0])
            if to_unicode:
                fonts[name] = _cmap(objects[int(to_unicode.group(1))][1] or b"")
    lines = []
    for _, stream in objects.values():
        if stream is not None and (b"Tj" in stream or b"TJ" in stream):
            lines += _content_lines(stream, fonts)
    return "\n".join(lines)
