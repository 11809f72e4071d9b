"""Dataset audit: near-duplicates, mask problems and burned-in overlays.

Run ``python -m utils.audit <dataset-dir> --out <dir>`` to write ``audit.json`` and
``contact_sheet.png`` and print a short summary; :func:`audit_dataset` is the pure part.

The overlay heuristics were calibrated by eye on the real BUSI (622 images) and
BUS-BRA (946 images) folders; they favour precision over recall, so a flag is worth
looking at and a missing flag proves nothing.

Colour overlay (Doppler boxes, coloured calipers or text on a grey-scale scan): the
score is the fraction of pixels whose chroma ``max(R, G, B) - min(R, G, B)`` exceeds
``CHROMA_THRESHOLD`` (40). Grey-scale images, and RGB files with identical channels,
score exactly 0; the BUSI images with a visible colour overlay score 1.5e-4 (a small
pink annotation) to 9e-3 (Doppler), the only other non-zero BUSI score is one pixel
(2.6e-6) on the edge of a dim yellow box. Flag at ``COLOUR_FRACTION_THRESHOLD`` = 1e-4
(about 25 pixels of a 500 x 500 image).

Calipers and text: overlay marks are thin strokes (1-3 px) much brighter than their
surroundings, roughly as tall as wide (``+`` crosses, letters, digits), while bright
tissue echoes are horizontal streaks (ultrasound blurs laterally). A white top-hat
with a 9 x 9 square isolates thin bright structures; connected components of pixels
with top-hat >= 50 and grey >= 150 count as *marks* when they are 7-40 px tall, at
most 40 px and twice their height wide, fill at most 75 % of their box (strokes, not
blobs) and have a mean top-hat >= 100 (crisp, high contrast). Marks inside the
top-left 32 x 32 px (the scanner logo on most BUSI images) or touching the image
border (edges of the scan sector) are ignored. The score is the number of marks; the
image is flagged from ``MIN_MARKS_TO_FLAG`` = 2. On BUSI every image checked with 2 or
more marks had calipers or text; with exactly one mark about a third were tissue,
which is why one mark is not enough. Small dim marks (the 5 px crosses of many
BUS-BRA images) are often missed. Images are processed at native resolution, and
downscaled to ``MAX_ANALYSIS_SIDE`` px first when larger.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import imagehash
import numpy as np
from PIL import Image, ImageDraw, ImageFont, UnidentifiedImageError

from utils.datasets.masks import load_mask
from utils.datasets.monuseg import aperio_xml_to_mask
from utils.datasets.records import DatasetRecord
from utils.errors import DatasetError, InvalidImageError, TumorLensError
from utils.near_duplicates import (
    DEFAULT_PHASH_THRESHOLD,
    find_near_duplicate_families,
    hamming_distance_matrix,
    merge_groups,
    phash_image,
)
from utils.postprocess import dice_score, iou

PHASH_SIZE = 8
NO_LESION_LABELS = frozenset({"normal"})
"""Labels whose images should carry no lesion (and may have no mask)."""

CHROMA_THRESHOLD = 40
COLOUR_FRACTION_THRESHOLD = 1e-4

MAX_ANALYSIS_SIDE = 1024
TOPHAT_KERNEL_PX = 9
MARK_MIN_TOPHAT = 50
MARK_MIN_GREY = 150
MARK_MIN_MEAN_TOPHAT = 100
MARK_HEIGHT_RANGE_PX = (7, 40)
MARK_MAX_WIDTH_PX = 40
MARK_MAX_WIDTH_TO_HEIGHT = 2.0
MARK_MAX_FILL = 0.75
LOGO_CORNER_PX = 32
BORDER_MARGIN_PX = 2
MIN_MARKS_TO_FLAG = 2

# Two workers: PNG decoding and OpenCV release the GIL, and the machines are small.
AUDIT_WORKERS = 2

Box = tuple[int, int, int, int]


# ----------------------------------------------------------------------------- heuristics


def colour_overlay_fraction(rgb: np.ndarray) -> float:
    """Fraction of strongly coloured pixels in an RGB image (0 for grey-scale content).

    Args:
        rgb: (H, W, 3) uint8 array.

    Returns:
        Share of pixels whose ``max - min`` over channels exceeds ``CHROMA_THRESHOLD``.
    """
    channels = rgb.astype(np.int16)
    chroma = channels.max(axis=-1) - channels.min(axis=-1)
    return float(np.mean(chroma > CHROMA_THRESHOLD))


def _is_mark(box: Box, area: int, mean_tophat: float, shape: tuple[int, int]) -> bool:
    """Whether one bright component looks like a caliper cross, letter or digit."""
    x, y, width, height = box
    min_height, max_height = MARK_HEIGHT_RANGE_PX
    if not min_height <= height <= max_height or width > MARK_MAX_WIDTH_PX:
        return False
    if width > MARK_MAX_WIDTH_TO_HEIGHT * height or area > MARK_MAX_FILL * width * height:
        return False
    if mean_tophat < MARK_MIN_MEAN_TOPHAT:
        return False
    in_logo_corner = x + width <= LOGO_CORNER_PX and y + height <= LOGO_CORNER_PX
    image_height, image_width = shape
    on_border = (
        min(x, y) <= BORDER_MARGIN_PX
        or x + width >= image_width - BORDER_MARGIN_PX
        or y + height >= image_height - BORDER_MARGIN_PX
    )
    return not (in_logo_corner or on_border)


def find_caliper_text_marks(grey: np.ndarray) -> list[Box]:
    """Find thin, bright, compact marks: caliper crosses, letters, digits.

    Args:
        grey: (H, W) uint8 image.

    Returns:
        Boxes ``(x, y, width, height)`` of the marks, in the input's pixel coordinates.
    """
    scale = min(1.0, MAX_ANALYSIS_SIDE / max(grey.shape))
    if scale < 1.0:
        size = (round(grey.shape[1] * scale), round(grey.shape[0] * scale))
        grey = cv2.resize(grey, size, interpolation=cv2.INTER_AREA)
    kernel = cv2.getStructuringElement(cv2.MORPH_RECT, (TOPHAT_KERNEL_PX, TOPHAT_KERNEL_PX))
    tophat = cv2.morphologyEx(grey, cv2.MORPH_TOPHAT, kernel)
    candidates = ((tophat >= MARK_MIN_TOPHAT) & (grey >= MARK_MIN_GREY)).astype(np.uint8)
    count, labels, stats, _ = cv2.connectedComponentsWithStats(candidates, connectivity=8)
    tophat_sums = np.bincount(labels.ravel(), weights=tophat.ravel(), minlength=count)
    marks = []
    for component in range(1, count):
        x, y, width, height, area = (int(value) for value in stats[component])
        box = (x, y, width, height)
        if _is_mark(box, area, tophat_sums[component] / area, grey.shape):
            x, y, width, height = (round(value / scale) for value in box)
            marks.append((x, y, width, height))
    return marks


# ----------------------------------------------------------------------------- per image


@dataclass
class ImageFindings:
    """What the audit measured on one image (and its masks).

    Attributes:
        size: Image (width, height); None when the image could not be read.
        error: Why the image could not be read, else None.
        phash: Perceptual hash of the grey-scale image.
        colour_fraction: Colour-overlay score, see :func:`colour_overlay_fraction`.
        mark_boxes: Caliper/text marks, see :func:`find_caliper_text_marks`.
        mismatched_masks: ``(mask path, (width, height))`` of masks whose size differs.
        unreadable_masks: ``(mask path, reason)`` of masks that could not be decoded.
        mask_empty: Whether the merged, size-matching masks are all background (None
            when no mask could be compared).
    """

    size: tuple[int, int] | None = None
    error: str | None = None
    phash: imagehash.ImageHash | None = None
    colour_fraction: float = 0.0
    mark_boxes: list[Box] = field(default_factory=list)
    mismatched_masks: list[tuple[Path, tuple[int, int]]] = field(default_factory=list)
    unreadable_masks: list[tuple[Path, str]] = field(default_factory=list)
    mask_empty: bool | None = None


_GREY_MODES = frozenset({"1", "L", "LA", "I", "I;16", "F"})


def _measure_image(path: Path, findings: ImageFindings) -> None:
    with Image.open(path) as image:
        image.load()
        findings.size = image.size
        grey_image = image.convert("L")
        if image.mode not in _GREY_MODES:
            findings.colour_fraction = colour_overlay_fraction(np.asarray(image.convert("RGB")))
    findings.phash = phash_image(grey_image, PHASH_SIZE)
    findings.mark_boxes = find_caliper_text_marks(np.asarray(grey_image))


def _check_masks(record: DatasetRecord, findings: ImageFindings) -> None:
    assert findings.size is not None
    width, height = findings.size
    # Masks are checked one by one so each problem names its file; emptiness is judged on
    # the union of the usable ones, as training would see it.
    usable_masks = 0
    any_foreground = False
    for mask_path in record.mask_paths:
        try:
            mask = load_mask([mask_path])
        except InvalidImageError as error:
            findings.unreadable_masks.append((mask_path, str(error)))
            continue
        if mask.shape != (height, width):
            findings.mismatched_masks.append((mask_path, (mask.shape[1], mask.shape[0])))
            continue
        usable_masks += 1
        any_foreground = any_foreground or bool(mask.any())
    findings.mask_empty = not any_foreground if usable_masks else None


def analyse_record(record: DatasetRecord) -> ImageFindings:
    """Measure one image and its masks; unreadable files are recorded, not raised.

    Args:
        record: The image's record.

    Returns:
        The findings.
    """
    findings = ImageFindings()
    try:
        _measure_image(record.image_path, findings)
    except (OSError, UnidentifiedImageError, ValueError) as error:
        findings.error = f"{type(error).__name__}: {error}"
        return findings
    _check_masks(record, findings)
    return findings


# ----------------------------------------------------------------------------- report


class _Namer:
    """Short, stable file names relative to the folder all images and masks share."""

    def __init__(self, records: Sequence[DatasetRecord]) -> None:
        paths = [str(record.image_path) for record in records]
        paths += [str(mask) for record in records for mask in record.mask_paths]
        self.root = Path(os.path.commonpath([os.path.dirname(path) for path in paths]))

    def __call__(self, path: Path) -> str:
        return Path(path).relative_to(self.root).as_posix()


def _image_entry(record: DatasetRecord, name: _Namer, **extra: Any) -> dict[str, Any]:
    return {"file": name(record.image_path), "label": record.label, **extra}


def _near_duplicate_section(
    records: Sequence[DatasetRecord],
    findings: Sequence[ImageFindings],
    threshold: int,
    name: _Namer,
) -> dict[str, Any]:
    hashed = [index for index, found in enumerate(findings) if found.phash is not None]
    hashes = [findings[index].phash for index in hashed]
    distances = hamming_distance_matrix(hashes)
    families = []
    for local_family in find_near_duplicate_families(hashes, threshold):
        members = [hashed[local] for local in local_family]
        labels = sorted({str(records[index].label) for index in members})
        families.append(
            {
                "size": len(members),
                "labels": labels,
                "cross_label": len(labels) > 1,
                "max_distance": int(distances[np.ix_(local_family, local_family)].max()),
                "members": [
                    _image_entry(records[index], name, group_id=records[index].group_id)
                    for index in members
                ],
                "indices": members,
            }
        )
    merged_groups = merge_groups(
        [record.group_id for record in records], [family["indices"] for family in families]
    )
    cross_label = [number for number, family in enumerate(families) if family["cross_label"]]
    return {
        "method": "phash (DCT perceptual hash of the grey-scale image), union-find families",
        "hash_bits": PHASH_SIZE * PHASH_SIZE,
        "threshold": threshold,
        "n_families": len(families),
        "n_images_in_families": sum(family["size"] for family in families),
        "family_sizes": dict(sorted(Counter(family["size"] for family in families).items())),
        "n_cross_label_families": len(cross_label),
        "cross_label_families": cross_label,
        "n_groups_after_merging_families": len(set(merged_groups)),
        "families": families,
    }


def _mask_section(
    records: Sequence[DatasetRecord], findings: Sequence[ImageFindings], name: _Namer
) -> dict[str, Any]:
    problems: dict[str, list[dict[str, Any]]] = {
        "missing_on_lesion_image": [],
        "empty_on_lesion_image": [],
        "nonempty_on_normal_image": [],
        "size_mismatch": [],
        "several_masks": [],
        "unreadable_mask": [],
    }
    for record, found in zip(records, findings, strict=True):
        if found.error is not None:
            continue
        lesion_expected = record.label is not None and record.label not in NO_LESION_LABELS
        entry = _image_entry(record, name)
        if lesion_expected and not record.mask_paths:
            problems["missing_on_lesion_image"].append(entry)
        if lesion_expected and found.mask_empty:
            problems["empty_on_lesion_image"].append(entry)
        if record.label in NO_LESION_LABELS and found.mask_empty is False:
            problems["nonempty_on_normal_image"].append(entry)
        if len(record.mask_paths) > 1:
            masks = [name(mask) for mask in record.mask_paths]
            problems["several_masks"].append({**entry, "n_masks": len(masks), "masks": masks})
        for mask_path, (mask_width, mask_height) in found.mismatched_masks:
            sizes = {"image_size": list(found.size or ()), "mask_size": [mask_width, mask_height]}
            problems["size_mismatch"].append({**entry, "mask": name(mask_path), **sizes})
        for mask_path, reason in found.unreadable_masks:
            problems["unreadable_mask"].append({**entry, "mask": name(mask_path), "error": reason})
    return {"counts": {kind: len(items) for kind, items in problems.items()}, **problems}


def _strongest_first(entry: dict[str, Any]) -> tuple[float, str]:
    return -entry["score"], entry["file"]


def _overlay_section(
    records: Sequence[DatasetRecord], findings: Sequence[ImageFindings], name: _Namer
) -> dict[str, Any]:
    colour, marks = [], []
    for record, found in zip(records, findings, strict=True):
        if found.colour_fraction >= COLOUR_FRACTION_THRESHOLD:
            colour.append(_image_entry(record, name, score=round(found.colour_fraction, 6)))
        if len(found.mark_boxes) >= MIN_MARKS_TO_FLAG:
            boxes = [list(box) for box in found.mark_boxes]
            marks.append(_image_entry(record, name, score=len(boxes), boxes=boxes))
    return {
        "colour": {
            "score": "fraction of pixels with max-min channel difference > chroma_threshold",
            "chroma_threshold": CHROMA_THRESHOLD,
            "flag_at": COLOUR_FRACTION_THRESHOLD,
            "n_flagged": len(colour),
            "flagged": sorted(colour, key=_strongest_first),
        },
        "calipers_text": {
            "score": "number of thin, bright, compact marks (white top-hat components)",
            "flag_at": MIN_MARKS_TO_FLAG,
            "n_flagged": len(marks),
            "flagged": sorted(marks, key=_strongest_first),
        },
    }


#: Datasets of H&E images, where colour is the stain, not an overlay, and there are no calipers.
HISTOPATHOLOGY_DATASETS = frozenset({"monuseg", "pcam", "breakhis"})
OVERLAYS_NOT_APPLICABLE = (
    "burned-in caliper, text and colour-overlay checks are for ultrasound; H&E is colour by nature"
)


def _annotation_agreement_section(
    records: Sequence[DatasetRecord], name: _Namer
) -> dict[str, Any] | None:
    """Dice/IoU between rasterised Aperio XML polygons and the binary masks, where both exist.

    MoNuSeg ships both for some tiles; agreement near 1 shows the XML reader and the
    rasterisation convention (pixel centres inside the polygon) reproduce the masks.
    """
    rows = []
    for record in records:
        xml_path = record.metadata.get("annotation_xml")
        if not xml_path or not record.mask_paths:
            continue
        truth = load_mask(record.mask_paths)
        rasterised = aperio_xml_to_mask(xml_path, truth.shape)
        rows.append(
            _image_entry(
                record,
                name,
                dice=round(dice_score(rasterised, truth), 4),
                iou=round(iou(rasterised, truth), 4),
            )
        )
    if not rows:
        return None
    return {
        "n_images": len(rows),
        "mean_dice": round(float(np.mean([row["dice"] for row in rows])), 4),
        "mean_iou": round(float(np.mean([row["iou"] for row in rows])), 4),
        "images": rows,
    }


def audit_dataset(
    records: Sequence[DatasetRecord], phash_threshold: int = DEFAULT_PHASH_THRESHOLD
) -> dict[str, Any]:
    """Audit a dataset: counts, near-duplicates, mask problems, overlays.

    Args:
        records: The dataset's records (any reader's output).
        phash_threshold: Hamming distance (bits of 64) linking near-duplicates.

    Returns:
        A JSON-serialisable report; file names are relative to ``report["root"]`` and
        each family's ``indices`` point into ``records``.

    Raises:
        DatasetError: ``records`` is empty.
        ConfigError: ``phash_threshold`` is not a non-negative integer.
    """
    if not records:
        raise DatasetError("The dataset has no images to audit (got 0 records).")
    name = _Namer(records)
    with ThreadPoolExecutor(max_workers=AUDIT_WORKERS) as pool:
        findings = list(pool.map(analyse_record, records))
    labels = Counter(str(record.label) for record in records)
    return {
        "root": str(name.root),
        "datasets": sorted({record.dataset or "unknown" for record in records}),
        "n_images": len(records),
        "class_counts": dict(sorted(labels.items())),
        "n_groups": len({record.group_id or str(record.image_path) for record in records}),
        "unreadable_images": [
            _image_entry(record, name, error=found.error)
            for record, found in zip(records, findings, strict=True)
            if found.error is not None
        ],
        "near_duplicates": _near_duplicate_section(records, findings, phash_threshold, name),
        "masks": _mask_section(records, findings, name),
        "overlays": (
            _overlay_section(records, findings, name)
            if not {record.dataset for record in records} <= HISTOPATHOLOGY_DATASETS
            else {"applicable": False, "reason": OVERLAYS_NOT_APPLICABLE}
        ),
        "annotation_xml_vs_mask": _annotation_agreement_section(records, name),
        "images": [
            _image_entry(
                record,
                name,
                colour_fraction=round(found.colour_fraction, 6),
                caliper_text_marks=len(found.mark_boxes),
            )
            for record, found in zip(records, findings, strict=True)
        ],
    }


def summarise(report: dict[str, Any]) -> str:
    """A few human-readable lines about an audit report."""
    duplicates, overlays = report["near_duplicates"], report["overlays"]
    classes = ", ".join(f"{label} {count}" for label, count in report["class_counts"].items())
    masks = ", ".join(f"{kind} {count}" for kind, count in report["masks"]["counts"].items())
    agreement = report.get("annotation_xml_vs_mask")
    agreement_lines = (
        [
            f"Aperio XML vs binary masks on {agreement['n_images']} images: "
            f"mean Dice {agreement['mean_dice']}, mean IoU {agreement['mean_iou']}"
        ]
        if agreement
        else []
    )
    return "\n".join(
        [
            f"Audit of {', '.join(report['datasets'])}: {report['n_images']} images "
            f"({classes}), {report['n_groups']} groups; "
            f"{len(report['unreadable_images'])} unreadable",
            f"Near-duplicates (phash, <= {duplicates['threshold']} bits): "
            f"{duplicates['n_families']} families, {duplicates['n_images_in_families']} images, "
            f"{duplicates['n_cross_label_families']} cross-label; "
            f"{duplicates['n_groups_after_merging_families']} groups after merging",
            f"Mask problems: {masks}",
            (
                f"Overlays: colour {overlays['colour']['n_flagged']}, "
                f"calipers/text {overlays['calipers_text']['n_flagged']} images"
                if overlays.get("applicable", True)
                else f"Overlays: not applicable ({overlays['reason']})"
            ),
            *agreement_lines,
        ]
    )


# ----------------------------------------------------------------------------- contact sheet

THUMB_PX = 132
PADDING_PX = 6
CAPTION_PX = 28
HEADER_PX = 18
TITLE_PX = 26
THUMBS_PER_ROW = 8
MAX_FAMILIES_SHOWN = 40
MAX_OVERLAY_SAMPLES = 16

_BACKGROUND, _TILE, _TEXT, _ALERT = (255, 255, 255), (40, 40, 40), (20, 20, 20), (200, 0, 0)


@dataclass(frozen=True)
class _Thumb:
    path: Path
    caption: tuple[str, str]
    boxes: tuple[Box, ...] = ()


@dataclass(frozen=True)
class _Block:
    """Thumbnails drawn side by side under one header (a family, or part of a sample)."""

    header: str
    thumbs: tuple[_Thumb, ...]
    alert: bool = False


def _thumbnail(thumb: _Thumb) -> Image.Image:
    tile = Image.new("RGB", (THUMB_PX, THUMB_PX), _TILE)
    try:
        with Image.open(thumb.path) as image:
            picture = image.convert("RGB")
    except (OSError, UnidentifiedImageError):
        return tile
    draw = ImageDraw.Draw(picture)
    line = max(1, round(max(picture.size) / THUMB_PX))
    for x, y, width, height in thumb.boxes:
        draw.rectangle((x - 2, y - 2, x + width + 1, y + height + 1), outline=_ALERT, width=line)
    picture.thumbnail((THUMB_PX, THUMB_PX), Image.Resampling.LANCZOS)
    tile.paste(picture, ((THUMB_PX - picture.width) // 2, (THUMB_PX - picture.height) // 2))
    return tile


def _fit_text(text: str, font: ImageFont.FreeTypeFont, width: int) -> str:
    """Cut ``text`` from the right with an ellipsis until it is at most ``width`` px long."""
    if font.getlength(text) <= width:
        return text
    while text and font.getlength(text + "…") > width:
        text = text[:-1]
    return text + "…"


def _thumb(root: Path, entry: dict[str, Any], detail: str = "") -> _Thumb:
    boxes = tuple((x, y, w, h) for x, y, w, h in entry.get("boxes", ()))
    return _Thumb(
        root / entry["file"], (Path(entry["file"]).name, f"{entry['label']}{detail}"), boxes
    )


def _family_blocks(report: dict[str, Any], root: Path) -> list[_Block]:
    families = report["near_duplicates"]["families"]
    # Cross-label families first: they are the most harmful leaks.
    order = sorted(range(len(families)), key=lambda k: (not families[k]["cross_label"], k))
    blocks = []
    for number in order[:MAX_FAMILIES_SHOWN]:
        family = families[number]
        members = family["members"][:THUMBS_PER_ROW]
        extra = family["size"] - len(members)
        header = f"#{number} {'+'.join(family['labels'])}, d<={family['max_distance']}"
        blocks.append(
            _Block(
                header + (f", {extra} more" if extra else ""),
                tuple(_thumb(root, member) for member in members),
                alert=family["cross_label"],
            )
        )
    return blocks


def _sample_evenly(items: list[dict[str, Any]], count: int) -> list[dict[str, Any]]:
    """Up to ``count`` items spread over a score-sorted list: strongest to borderline."""
    if len(items) <= count:
        return items
    positions = np.linspace(0, len(items) - 1, count).round().astype(int)
    return [items[position] for position in positions]


def _overlay_blocks(report: dict[str, Any], root: Path) -> list[_Block]:
    blocks: list[_Block] = []
    if not report["overlays"].get("applicable", True):
        return blocks
    for kind, title in (("colour", "colour overlay"), ("calipers_text", "calipers / text")):
        section = report["overlays"][kind]
        sample = _sample_evenly(section["flagged"], MAX_OVERLAY_SAMPLES)
        thumbs = [_thumb(root, entry, f", score {entry['score']:.3g}") for entry in sample]
        header = f"{title}: {section['n_flagged']} flagged, strongest to weakest"
        blocks += [
            _Block(header, tuple(thumbs[start : start + THUMBS_PER_ROW]))
            for start in range(0, len(thumbs), THUMBS_PER_ROW)
        ]
    return blocks


def _pack(blocks: list[_Block]) -> list[list[_Block]]:
    """Flow blocks left to right into rows of at most ``THUMBS_PER_ROW`` thumbnails."""
    rows: list[list[_Block]] = []
    used = THUMBS_PER_ROW
    for block in blocks:
        if used + len(block.thumbs) > THUMBS_PER_ROW:
            rows.append([])
            used = 0
        rows[-1].append(block)
        used += len(block.thumbs)
    return rows


def _draw_block(sheet: Image.Image, block: _Block, left: int, top: int) -> None:
    draw = ImageDraw.Draw(sheet)
    font = ImageFont.load_default(size=11)
    width = len(block.thumbs) * (THUMB_PX + PADDING_PX) - PADDING_PX
    colour = _ALERT if block.alert else _TEXT
    draw.text((left, top + 3), _fit_text(block.header, font, width), fill=colour, font=font)
    for column, thumb in enumerate(block.thumbs):
        x = left + column * (THUMB_PX + PADDING_PX)
        sheet.paste(_thumbnail(thumb), (x, top + HEADER_PX))
        for line, text in enumerate(thumb.caption):
            position = (x, top + HEADER_PX + THUMB_PX + 2 + 12 * line)
            draw.text(position, _fit_text(text, font, THUMB_PX), fill=_TEXT, font=font)


def _draw_sheet(rows: list[list[_Block]], title: str) -> Image.Image:
    width = PADDING_PX + THUMBS_PER_ROW * (THUMB_PX + PADDING_PX)
    row_height = HEADER_PX + THUMB_PX + CAPTION_PX + PADDING_PX
    sheet = Image.new("RGB", (width, TITLE_PX + max(1, len(rows)) * row_height), _BACKGROUND)
    draw = ImageDraw.Draw(sheet)
    title_font = ImageFont.load_default(size=13)
    draw.text((PADDING_PX, 6), _fit_text(title, title_font, width), fill=_TEXT, font=title_font)
    if not rows:
        message = "No near-duplicate family and no overlay flag to show."
        draw.text((PADDING_PX, TITLE_PX + 4), message, fill=_TEXT)
    for number, row in enumerate(rows):
        left = PADDING_PX
        for block in row:
            _draw_block(sheet, block, left, TITLE_PX + number * row_height)
            left += len(block.thumbs) * (THUMB_PX + PADDING_PX)
    return sheet


def write_contact_sheet(report: dict[str, Any], path: Path | str) -> Path:
    """Draw near-duplicate families (cross-label first, in red) and samples of overlay flags.

    Args:
        report: A report from :func:`audit_dataset`.
        path: Output PNG path.

    Returns:
        The written path.
    """
    root = Path(report["root"])
    rows = _pack(_family_blocks(report, root) + _overlay_blocks(report, root))
    title = (
        f"{', '.join(report['datasets'])}: near-duplicate families (#number, labels, largest "
        "hash distance; red = different labels), then overlay flags (red boxes = marks found)"
    )
    path = Path(path)
    _draw_sheet(rows, title).save(path)
    return path


# ----------------------------------------------------------------------------- CLI


def build_parser() -> argparse.ArgumentParser:
    """The command-line parser of ``python -m utils.audit``."""
    parser = argparse.ArgumentParser(
        prog="python -m utils.audit",
        description="Audit a dataset folder: near-duplicates, mask problems, overlays.",
    )
    parser.add_argument("dataset_dir", type=Path, help="dataset folder (any supported layout)")
    parser.add_argument("--out", type=Path, required=True, help="folder for the report files")
    parser.add_argument("--layout", default="auto", help="dataset layout name (default: auto)")
    parser.add_argument(
        "--phash-threshold",
        type=int,
        default=DEFAULT_PHASH_THRESHOLD,
        help=f"near-duplicate Hamming distance in bits of 64 (default: {DEFAULT_PHASH_THRESHOLD})",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the audit CLI.

    Args:
        argv: Arguments without the program name (``sys.argv[1:]`` when None).

    Returns:
        0 on success, 2 on a bad dataset folder, layout or option.
    """
    from utils.datasets import read_dataset  # the readers pull in many modules; load on use

    args = build_parser().parse_args(argv)
    started = time.perf_counter()
    try:
        records = read_dataset(args.dataset_dir, layout=args.layout)
        report = audit_dataset(records, phash_threshold=args.phash_threshold)
    except TumorLensError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    report_path = args.out / "audit.json"
    report_path.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n")
    sheet_path = write_contact_sheet(report, args.out / "contact_sheet.png")
    print(summarise(report))
    elapsed = time.perf_counter() - started
    print(f"Wrote {report_path} and {sheet_path} in {elapsed:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
