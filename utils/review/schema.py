"""The review database's tables (SQLAlchemy 2 ORM): ``reviews`` and ``audit_log``.

``reviews`` holds one row per (case, reviewer); its ``version`` column is SQLAlchemy's
``version_id_col``, so every UPDATE checks the version it read and a concurrent change
fails instead of being overwritten. ``audit_log`` rows are never updated or deleted,
and point at a review by id without a foreign key, so a deleted review keeps its trail.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from utils.review.validation import (
    MAX_CASE_ID_CHARS,
    MAX_CASE_LABEL_CHARS,
    MAX_REVIEWER_CHARS,
)


class UtcDateTime(TypeDecorator[datetime]):
    """Timestamps stored as naive UTC and read back timezone-aware (SQLite keeps no zone)."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        """Any aware time -> naive UTC."""
        if value is None:
            return None
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        """Stored naive UTC -> aware UTC."""
        return None if value is None else value.replace(tzinfo=UTC)


def utc_now() -> datetime:
    """The current time, timezone-aware UTC."""
    return datetime.now(UTC)


class Base(DeclarativeBase):
    """Declarative base of the review tables."""


class ReviewRow(Base):
    """One reviewer's review of one case."""

    __tablename__ = "reviews"
    __table_args__ = (UniqueConstraint("case_id", "reviewer", name="uq_review_case_reviewer"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    case_id: Mapped[str] = mapped_column(String(MAX_CASE_ID_CHARS), index=True)
    case_label: Mapped[str] = mapped_column(String(MAX_CASE_LABEL_CHARS), default="")
    reviewer: Mapped[str] = mapped_column(String(MAX_REVIEWER_CHARS), index=True)
    agree: Mapped[bool] = mapped_column(Boolean)
    reviewer_class: Mapped[str] = mapped_column(String(16))
    birads: Mapped[str] = mapped_column(String(2))
    comment: Mapped[str] = mapped_column(Text, default="")
    corrected_mask_png: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    ai_snapshot: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime)
    version: Mapped[int] = mapped_column(Integer, nullable=False)

    __mapper_args__: ClassVar[dict[str, Any]] = {"version_id_col": version}


class AuditRow(Base):
    """One change of a review: who made it, when, and which fields changed how."""

    __tablename__ = "audit_log"
    __table_args__ = (Index("ix_audit_case", "case_id", "at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    at: Mapped[datetime] = mapped_column(UtcDateTime)
    actor: Mapped[str] = mapped_column(String(MAX_REVIEWER_CHARS))
    action: Mapped[str] = mapped_column(String(8))  # create, update or delete
    review_id: Mapped[int] = mapped_column(Integer, index=True)
    case_id: Mapped[str] = mapped_column(String(MAX_CASE_ID_CHARS))
    reviewer: Mapped[str] = mapped_column(String(MAX_REVIEWER_CHARS))
    version: Mapped[int] = mapped_column(Integer)  # the review's version after the change
    changes: Mapped[dict[str, Any]] = mapped_column(JSON)  # field -> [old, new]
