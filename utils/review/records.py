"""Read-only views of stored reviews and audit entries (detached from the database)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np

from utils.review.masks import decode_mask_png
from utils.review.schema import AuditRow, ReviewRow
from utils.review.validation import AiSnapshot


@dataclass(frozen=True, eq=False)
class Review:
    """A stored review.

    Attributes:
        id: Database id.
        case_id: The case.
        case_label: What the queue calls the case.
        reviewer: Who reviewed it.
        agree: Whether the reviewer agrees with the AI.
        reviewer_class: The reviewer's class.
        birads: The reviewer's BI-RADS category.
        comment: Free text.
        corrected_mask_png: The corrected mask as 1-bit PNG bytes, ``None`` for none.
        ai: What the AI showed when the review was saved.
        created_at: First save (UTC).
        updated_at: Last save (UTC).
        version: Starts at 1 and grows by one per saved change; pass it back as
            ``expected_version`` to edit the review.
    """

    id: int
    case_id: str
    case_label: str
    reviewer: str
    agree: bool
    reviewer_class: str
    birads: str
    comment: str
    corrected_mask_png: bytes | None
    ai: AiSnapshot
    created_at: datetime
    updated_at: datetime
    version: int

    @property
    def corrected_mask(self) -> np.ndarray | None:
        """The corrected mask as an (H, W) bool array, ``None`` for none."""
        if self.corrected_mask_png is None:
            return None
        return decode_mask_png(self.corrected_mask_png)

    @classmethod
    def from_row(cls, row: ReviewRow) -> Review:
        """Copy an ORM row into a detached record."""
        return cls(
            id=row.id,
            case_id=row.case_id,
            case_label=row.case_label,
            reviewer=row.reviewer,
            agree=bool(row.agree),
            reviewer_class=row.reviewer_class,
            birads=row.birads,
            comment=row.comment,
            corrected_mask_png=row.corrected_mask_png,
            ai=AiSnapshot.from_dict(row.ai_snapshot),
            created_at=row.created_at,
            updated_at=row.updated_at,
            version=row.version,
        )


@dataclass(frozen=True)
class AuditEntry:
    """One change of a review.

    Attributes:
        id: Database id (grows with time).
        at: When (UTC).
        actor: Who made the change.
        action: ``"create"``, ``"update"`` or ``"delete"``.
        review_id: The review's id (kept after a delete).
        case_id: The review's case.
        reviewer: The review's reviewer.
        version: The review's version after the change (before it, for a delete).
        changes: Field name -> ``[old, new]``; a mask appears as a short summary.
    """

    id: int
    at: datetime
    actor: str
    action: str
    review_id: int
    case_id: str
    reviewer: str
    version: int
    changes: dict[str, Any]

    @classmethod
    def from_row(cls, row: AuditRow) -> AuditEntry:
        """Copy an ORM row into a detached record."""
        return cls(
            id=row.id,
            at=row.at,
            actor=row.actor,
            action=row.action,
            review_id=row.review_id,
            case_id=row.case_id,
            reviewer=row.reviewer,
            version=row.version,
            changes=dict(row.changes),
        )


def mask_summary(png: bytes | None) -> str | None:
    """How the audit trail shows a mask: its lesion pixel count and a short hash."""
    if png is None:
        return None
    pixels = int(decode_mask_png(png).sum())
    return f"{pixels} px, sha256 {hashlib.sha256(png).hexdigest()[:12]}"


def comparable_fields(row: ReviewRow) -> dict[str, Any]:
    """The fields of a review the audit trail compares, in JSON-ready form."""
    return {
        "case_label": row.case_label,
        "agree": bool(row.agree),
        "reviewer_class": row.reviewer_class,
        "birads": row.birads,
        "comment": row.comment,
        "corrected_mask": mask_summary(row.corrected_mask_png),
        "ai": row.ai_snapshot,
    }


def diff_fields(before: dict[str, Any] | None, after: dict[str, Any] | None) -> dict[str, Any]:
    """``{field: [old, new]}`` for every field that differs (``None`` side: absent)."""
    before = before or {}
    after = after or {}
    return {
        name: [before.get(name), after.get(name)]
        for name in sorted(set(before) | set(after))
        if before.get(name) != after.get(name)
    }
