"""The review database: save, read and delete reviews, each change written to the audit log.

Any SQLAlchemy URL works; the default is a SQLite file outside the repository
(:func:`utils.paths.default_review_db_url`). Safe for several reviewers at once:

* SQLite runs in WAL mode (readers never block the writer) with a busy timeout, and
  every write transaction starts with ``BEGIN IMMEDIATE``: two writers queue for the
  lock instead of failing with "database is locked" half-way through.
* Optimistic concurrency: a save names the version it edited (``expected_version``);
  if the stored review is newer, or was created meanwhile, the save raises
  :class:`~utils.errors.ReviewConflictError` and overwrites nothing.
* A review and its audit entry are written in one transaction: both or neither.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine, create_engine, select
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, IntegrityError, NoSuchModuleError, SQLAlchemyError
from sqlalchemy.orm import Session
from sqlalchemy.orm.exc import StaleDataError

from utils.errors import ConfigError, ReviewConflictError, ReviewNotFoundError, StorageError
from utils.paths import default_review_db_url
from utils.review.masks import check_mask, encode_mask_png
from utils.review.records import AuditEntry, Review, comparable_fields, diff_fields
from utils.review.schema import AuditRow, Base, ReviewRow, utc_now
from utils.review.sqlite import DEFAULT_BUSY_TIMEOUT_S, prepare_sqlite
from utils.review.validation import (
    MAX_CASE_ID_CHARS,
    MAX_CASE_LABEL_CHARS,
    MAX_COMMENT_CHARS,
    MAX_REVIEWER_CHARS,
    ReviewInput,
    check_class,
    check_snapshot,
    clean_name,
    clean_text,
    normalise_birads,
)


def review_values(review: ReviewInput) -> dict[str, Any]:
    """The validated column values of a review.

    Raises:
        ConfigError: A bad reviewer, case id, class, BI-RADS category, text or snapshot.
        ImageDimensionError: A corrected mask of the wrong type, values or shape.
    """
    if not isinstance(review.agree, bool):
        raise ConfigError(f"'agree' must be True or False; got {review.agree!r}.")
    ai = check_snapshot(review.ai)
    mask_png = None
    if review.corrected_mask is not None:
        mask_png = encode_mask_png(check_mask(review.corrected_mask, ai.image_shape))
    return {
        "case_id": clean_name(review.case_id, "case id", MAX_CASE_ID_CHARS),
        "reviewer": clean_name(review.reviewer, "reviewer name", MAX_REVIEWER_CHARS),
        "case_label": clean_text(
            review.case_label, "case label", MAX_CASE_LABEL_CHARS, required=False
        ),
        "agree": review.agree,
        "reviewer_class": check_class(review.reviewer_class),
        "birads": normalise_birads(review.birads),
        "comment": clean_text(review.comment, "comment", MAX_COMMENT_CHARS, required=False),
        "corrected_mask_png": mask_png,
        "ai_snapshot": ai.to_dict(),
    }


class ReviewStore:
    """Reviews and their audit trail in a SQL database.

    Args:
        url: SQLAlchemy URL; ``None``: ``$TUMORLENS_REVIEW_DB`` or the default SQLite
            file. A SQLite file's folder is created if missing.
        busy_timeout_s: SQLite only: how long a writer waits for the lock.

    Raises:
        StorageError: The database cannot be opened or its tables created.
        ConfigError: The URL is malformed or names an unknown database driver.
    """

    def __init__(
        self, url: str | None = None, *, busy_timeout_s: float = DEFAULT_BUSY_TIMEOUT_S
    ) -> None:
        self.url = url or default_review_db_url()
        try:
            parsed = make_url(self.url)
            self._engine = create_engine(parsed)
        except (ArgumentError, NoSuchModuleError, ValueError) as error:
            raise ConfigError(
                f"The review database URL {self.url!r} is not usable: {error}. Give a "
                "SQLAlchemy URL such as sqlite:////path/reviews.sqlite3."
            ) from error
        self.display_url = parsed.render_as_string(hide_password=True)
        if parsed.get_backend_name() == "sqlite":
            prepare_sqlite(self._engine, parsed.database, busy_timeout_s)
        # Writes start with BEGIN IMMEDIATE on SQLite (see _prepare_sqlite).
        self._write_engine = self._engine.execution_options(tumorlens_write=True)
        try:
            Base.metadata.create_all(self._engine)
        except SQLAlchemyError as error:
            self._engine.dispose()
            raise StorageError(
                f"Cannot open the review database {self.display_url}: {error}"
            ) from error

    def close(self) -> None:
        """Close every pooled connection (the data stays in the database)."""
        self._engine.dispose()

    # ------------------------------------------------------------------------- writes

    def save(self, review: ReviewInput, *, expected_version: int | None = None) -> Review:
        """Create or update the review of ``(review.case_id, review.reviewer)``.

        Args:
            review: The review as entered.
            expected_version: The stored version the reviewer edited; ``None`` when they
                started a new review.

        Returns:
            The stored review (unchanged, same version, when nothing differs).

        Raises:
            ConfigError, ImageDimensionError: A field is invalid (nothing is written).
            ReviewConflictError: The stored review is not ``expected_version`` (someone
                saved or deleted it meanwhile), or already exists for a new review.
            StorageError: The database failed.
        """
        values = review_values(review)
        key = f"{values['reviewer']!r} on case {values['case_id']!r}"
        with self._writing(key) as session:
            row = session.scalars(
                select(ReviewRow).where(
                    ReviewRow.case_id == values["case_id"],
                    ReviewRow.reviewer == values["reviewer"],
                )
            ).one_or_none()
            _check_version(row, expected_version, key)
            now = utc_now()
            if row is None:
                row = ReviewRow(**values, created_at=now, updated_at=now)
                session.add(row)
                before = None
                action = "create"
            else:
                before = comparable_fields(row)
                for name, value in values.items():
                    setattr(row, name, value)
                action = "update"
            changes = diff_fields(before, comparable_fields(row))
            if not changes:
                return Review.from_row(row)
            row.updated_at = now
            session.flush()  # assigns the id and the new version, checking the old one
            session.add(_audit(row, values["reviewer"], action, changes, now))
            session.flush()
            return Review.from_row(row)

    def delete(self, case_id: str, reviewer: str, *, expected_version: int, actor: str) -> None:
        """Delete a review; its audit trail stays.

        Raises:
            ConfigError: Bad case id, reviewer or actor name.
            ReviewNotFoundError: No such review.
            ReviewConflictError: The stored review is not ``expected_version``.
            StorageError: The database failed.
        """
        case_id = clean_name(case_id, "case id", MAX_CASE_ID_CHARS)
        reviewer = clean_name(reviewer, "reviewer name", MAX_REVIEWER_CHARS)
        actor = clean_name(actor, "name of who deletes", MAX_REVIEWER_CHARS)
        key = f"{reviewer!r} on case {case_id!r}"
        with self._writing(key) as session:
            row = session.scalars(
                select(ReviewRow).where(
                    ReviewRow.case_id == case_id, ReviewRow.reviewer == reviewer
                )
            ).one_or_none()
            if row is None:
                raise ReviewNotFoundError(f"There is no review by {key} to delete.")
            _check_version(row, expected_version, key)
            changes = diff_fields(comparable_fields(row), None)
            session.add(_audit(row, actor, "delete", changes, utc_now()))
            session.delete(row)
            session.flush()

    # ------------------------------------------------------------------------- reads

    def get(self, case_id: str, reviewer: str) -> Review | None:
        """The review of ``case_id`` by ``reviewer``, ``None`` when there is none."""
        with self._reading() as session:
            row = session.scalars(
                select(ReviewRow).where(
                    ReviewRow.case_id == case_id, ReviewRow.reviewer == reviewer
                )
            ).one_or_none()
            return None if row is None else Review.from_row(row)

    def reviews(self, *, case_id: str | None = None, reviewer: str | None = None) -> list[Review]:
        """Every review, optionally of one case and/or by one reviewer, oldest first."""
        query = select(ReviewRow).order_by(ReviewRow.created_at, ReviewRow.id)
        if case_id is not None:
            query = query.where(ReviewRow.case_id == case_id)
        if reviewer is not None:
            query = query.where(ReviewRow.reviewer == reviewer)
        with self._reading() as session:
            return [Review.from_row(row) for row in session.scalars(query)]

    def reviewed_case_ids(self, reviewer: str) -> set[str]:
        """The cases ``reviewer`` has a review of."""
        with self._reading() as session:
            query = select(ReviewRow.case_id).where(ReviewRow.reviewer == reviewer)
            return set(session.scalars(query))

    def audit_log(
        self, *, case_id: str | None = None, review_id: int | None = None
    ) -> list[AuditEntry]:
        """The audit trail, optionally of one case or review, in the order it happened."""
        query = select(AuditRow).order_by(AuditRow.id)
        if case_id is not None:
            query = query.where(AuditRow.case_id == case_id)
        if review_id is not None:
            query = query.where(AuditRow.review_id == review_id)
        with self._reading() as session:
            return [AuditEntry.from_row(row) for row in session.scalars(query)]

    # ------------------------------------------------------------------------- sessions

    def _reading(self) -> _Transaction:
        return _Transaction(self._engine, self.display_url, "")

    def _writing(self, key: str) -> _Transaction:
        return _Transaction(self._write_engine, self.display_url, key)


class _Transaction:
    """A session in one transaction, with database errors turned into typed errors."""

    def __init__(self, engine: Engine, display_url: str, key: str) -> None:
        self._session = Session(engine, expire_on_commit=False)
        self._display_url = display_url
        self._key = key

    def __enter__(self) -> Session:
        self._context = self._session.begin()
        self._context.__enter__()
        return self._session

    def __exit__(self, exc_type: Any, exc: BaseException | None, traceback: Any) -> None:
        try:
            self._context.__exit__(exc_type, exc, traceback)  # commit, or roll back
        except (IntegrityError, StaleDataError) as error:
            raise _conflict(self._key) from error
        except SQLAlchemyError as error:
            raise StorageError(
                f"The review database {self._display_url} failed: {error}"
            ) from error
        finally:
            self._session.close()
        if isinstance(exc, IntegrityError | StaleDataError):
            raise _conflict(self._key) from exc
        if isinstance(exc, SQLAlchemyError):
            raise StorageError(f"The review database {self._display_url} failed: {exc}") from exc


def _conflict(key: str) -> ReviewConflictError:
    return ReviewConflictError(
        f"The review by {key} was changed by another session while you edited it; "
        "nothing was saved. Reload it and enter your changes again."
    )


def _check_version(row: ReviewRow | None, expected_version: int | None, key: str) -> None:
    """Raise :class:`ReviewConflictError` unless the stored row is the version edited."""
    stored = None if row is None else row.version
    if stored == expected_version:
        return
    if stored is None:
        message = f"The review by {key} (version {expected_version}) was deleted meanwhile"
    elif expected_version is None:
        message = f"A review by {key} already exists (version {stored})"
    else:
        message = (
            f"The review by {key} is now version {stored}, but you edited version "
            f"{expected_version}"
        )
    raise ReviewConflictError(f"{message}; nothing was saved. Reload it and try again.")


def _audit(row: ReviewRow, actor: str, action: str, changes: dict[str, Any], at: Any) -> AuditRow:
    return AuditRow(
        at=at,
        actor=actor,
        action=action,
        review_id=row.id,
        case_id=row.case_id,
        reviewer=row.reviewer,
        version=row.version,
        changes=changes,
    )
