"""Reviews and their audit trail as tables, CSV and JSON (with or without the masks).

Masks travel as base64-encoded 1-bit PNGs in the ``corrected_mask_png_base64`` column,
so an export opens in any spreadsheet and :func:`reviews_from_json` reads it back.
"""

from __future__ import annotations

import base64
import io
import json
from collections.abc import Sequence
from typing import Any

import pandas as pd

from utils.errors import ConfigError
from utils.review.masks import decode_mask_png
from utils.review.records import AuditEntry, Review

#: Columns of the review table, in order (the mask column only when masks are included).
REVIEW_COLUMNS = (
    "review_id",
    "case_id",
    "case_label",
    "reviewer",
    "agree",
    "reviewer_class",
    "birads",
    "comment",
    "has_corrected_mask",
    "corrected_mask_pixels",
    "ai_segmenter",
    "ai_classifier",
    "ai_predicted_class",
    "ai_probabilities",
    "ai_mask_area_px",
    "ai_threshold",
    "image_digest",
    "created_at",
    "updated_at",
    "version",
)
MASK_COLUMN = "corrected_mask_png_base64"


def reviews_frame(reviews: Sequence[Review], *, include_masks: bool = False) -> pd.DataFrame:
    """One row per review; timestamps as ISO 8601 UTC strings, probabilities as JSON.

    Args:
        reviews: The reviews to export.
        include_masks: Add the corrected masks as base64 PNG (larger files).
    """
    rows = []
    for review in reviews:
        mask = review.corrected_mask
        row: dict[str, Any] = {
            "review_id": review.id,
            "case_id": review.case_id,
            "case_label": review.case_label,
            "reviewer": review.reviewer,
            "agree": review.agree,
            "reviewer_class": review.reviewer_class,
            "birads": review.birads,
            "comment": review.comment,
            "has_corrected_mask": mask is not None,
            "corrected_mask_pixels": None if mask is None else int(mask.sum()),
            "ai_segmenter": review.ai.segmenter,
            "ai_classifier": review.ai.classifier,
            "ai_predicted_class": review.ai.predicted_class,
            "ai_probabilities": json.dumps(review.ai.probabilities, sort_keys=True),
            "ai_mask_area_px": review.ai.mask_area_px,
            "ai_threshold": review.ai.threshold,
            "image_digest": review.ai.image_digest,
            "created_at": review.created_at.isoformat(),
            "updated_at": review.updated_at.isoformat(),
            "version": review.version,
        }
        if include_masks:
            png = review.corrected_mask_png
            row[MASK_COLUMN] = None if png is None else base64.b64encode(png).decode("ascii")
        rows.append(row)
    columns = [*REVIEW_COLUMNS, *([MASK_COLUMN] if include_masks else [])]
    return pd.DataFrame(rows, columns=columns)


def reviews_csv(reviews: Sequence[Review], *, include_masks: bool = False) -> bytes:
    """The reviews as UTF-8 CSV bytes (see :func:`reviews_frame`)."""
    return reviews_frame(reviews, include_masks=include_masks).to_csv(index=False).encode()


def reviews_json(reviews: Sequence[Review], *, include_masks: bool = False) -> bytes:
    """The reviews as a UTF-8 JSON array of objects (see :func:`reviews_frame`)."""
    frame = reviews_frame(reviews, include_masks=include_masks)
    return frame.to_json(orient="records", indent=1, force_ascii=False).encode()


def reviews_from_json(data: bytes) -> pd.DataFrame:
    """Read :func:`reviews_json` output back, masks decoded into a ``corrected_mask`` column.

    Raises:
        ConfigError: ``data`` is not a JSON export of reviews.
    """
    try:
        frame = pd.read_json(io.BytesIO(data), orient="records", dtype=False)
    except ValueError as error:
        raise ConfigError(f"This is not a TumorLens review export: {error}.") from error
    missing = [column for column in ("case_id", "reviewer", "birads") if column not in frame]
    if missing:
        raise ConfigError(f"This is not a TumorLens review export: no {', '.join(missing)}.")
    if MASK_COLUMN in frame:
        frame["corrected_mask"] = [
            None if not isinstance(encoded, str) else decode_mask_png(base64.b64decode(encoded))
            for encoded in frame[MASK_COLUMN]
        ]
    return frame


def audit_frame(entries: Sequence[AuditEntry]) -> pd.DataFrame:
    """One row per audit entry; the changes as a JSON string."""
    return pd.DataFrame(
        [
            {
                "at": entry.at.isoformat(),
                "actor": entry.actor,
                "action": entry.action,
                "review_id": entry.review_id,
                "case_id": entry.case_id,
                "reviewer": entry.reviewer,
                "version": entry.version,
                "changes": json.dumps(entry.changes, sort_keys=True),
            }
            for entry in entries
        ],
        columns=["at", "actor", "action", "review_id", "case_id", "reviewer", "version", "changes"],
    )
