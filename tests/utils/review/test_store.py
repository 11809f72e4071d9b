"""Tests of the review store: create/update/delete, versions, audit trail and durability."""

from __future__ import annotations

import multiprocessing
import os
from datetime import UTC
from pathlib import Path

import numpy as np
import pytest

import utils.review.store as store_module
from tests.utils.review.conftest import IMAGE_SHAPE, lesion_mask, make_review, sqlite_url
from utils.errors import (
    ConfigError,
    ImageDimensionError,
    ReviewConflictError,
    ReviewNotFoundError,
    StorageError,
)
from utils.paths import default_review_db_url, default_user_data_dir
from utils.review import ReviewStore


def test_a_new_review_is_version_1_with_a_create_audit_entry(store: ReviewStore) -> None:
    saved = store.save(make_review(corrected_mask=lesion_mask(), birads="4a"))
    assert saved.version == 1
    assert saved.birads == "4A"  # canonical spelling
    assert saved.created_at.tzinfo is UTC and saved.created_at == saved.updated_at
    assert np.array_equal(saved.corrected_mask, lesion_mask())
    [entry] = store.audit_log()
    assert (entry.action, entry.actor, entry.review_id, entry.version) == (
        "create",
        "Dr Ada",
        saved.id,
        1,
    )
    assert entry.changes["birads"] == [None, "4A"]
    assert entry.changes["corrected_mask"][1].startswith(f"{lesion_mask().sum()} px")


def test_an_update_records_only_what_changed(store: ReviewStore) -> None:
    first = store.save(make_review())
    second = store.save(
        make_review(agree=False, reviewer_class="malignant", birads="5"), expected_version=1
    )
    assert second.id == first.id and second.version == 2
    assert second.created_at == first.created_at and second.updated_at >= first.updated_at
    update = store.audit_log(review_id=first.id)[-1]
    assert update.action == "update" and update.version == 2
    assert update.changes == {
        "agree": [True, False],
        "birads": ["3", "5"],
        "reviewer_class": ["benign", "malignant"],
    }


def test_saving_an_unchanged_review_writes_nothing(store: ReviewStore) -> None:
    store.save(make_review())
    again = store.save(make_review(), expected_version=1)
    assert again.version == 1
    assert len(store.audit_log()) == 1


def test_two_reviewers_of_one_case_have_separate_reviews(store: ReviewStore) -> None:
    store.save(make_review())
    store.save(make_review(reviewer="Dr Bo", agree=False))
    assert {review.reviewer for review in store.reviews(case_id="example:benign_oval_01")} == {
        "Dr Ada",
        "Dr Bo",
    }
    assert store.reviewed_case_ids("Dr Bo") == {"example:benign_oval_01"}
    assert store.reviewed_case_ids("Dr Cy") == set()


def test_editing_a_stale_version_raises_and_keeps_the_newer_review(store: ReviewStore) -> None:
    store.save(make_review())
    store.save(make_review(comment="Second look: fine."), expected_version=1)  # other tab
    with pytest.raises(ReviewConflictError, match="now version 2, but you edited version 1"):
        store.save(make_review(comment="Overwrite?"), expected_version=1)
    assert store.get("example:benign_oval_01", "Dr Ada").comment == "Second look: fine."
    assert len(store.audit_log()) == 2


def test_creating_a_review_that_already_exists_raises(store: ReviewStore) -> None:
    store.save(make_review())
    with pytest.raises(ReviewConflictError, match=r"already exists \(version 1\)"):
        store.save(make_review(comment="mine"))


def test_editing_a_deleted_review_raises(store: ReviewStore) -> None:
    store.save(make_review())
    store.delete("example:benign_oval_01", "Dr Ada", expected_version=1, actor="Admin")
    with pytest.raises(ReviewConflictError, match="was deleted meanwhile"):
        store.save(make_review(), expected_version=1)


def test_delete_keeps_the_audit_trail(store: ReviewStore) -> None:
    saved = store.save(make_review())
    store.delete("example:benign_oval_01", "Dr Ada", expected_version=1, actor="Admin")
    assert store.get("example:benign_oval_01", "Dr Ada") is None
    actions = [(entry.action, entry.actor) for entry in store.audit_log(review_id=saved.id)]
    assert actions == [("create", "Dr Ada"), ("delete", "Admin")]
    assert store.audit_log()[-1].changes["birads"] == ["3", None]


def test_delete_errors(store: ReviewStore) -> None:
    with pytest.raises(ReviewNotFoundError, match="no review by 'Dr Ada'"):
        store.delete("example:benign_oval_01", "Dr Ada", expected_version=1, actor="Admin")
    store.save(make_review())
    with pytest.raises(ReviewConflictError, match="now version 1, but you edited version 3"):
        store.delete("example:benign_oval_01", "Dr Ada", expected_version=3, actor="Admin")
    with pytest.raises(ConfigError, match="name of who deletes is empty"):
        store.delete("example:benign_oval_01", "Dr Ada", expected_version=1, actor=" ")


def test_reviews_survive_closing_and_reopening_the_database(db_url: str) -> None:
    first = ReviewStore(db_url)
    saved = first.save(make_review(corrected_mask=lesion_mask()))
    first.save(make_review(reviewer="Dr Bo"))
    first.close()  # the app stops: every connection is gone

    reopened = ReviewStore(db_url)
    again = reopened.get("example:benign_oval_01", "Dr Ada")
    assert again is not None and again.version == saved.version
    assert again.created_at == saved.created_at
    assert np.array_equal(again.corrected_mask, lesion_mask())
    assert again.ai == saved.ai
    assert len(reopened.reviews()) == 2 and len(reopened.audit_log()) == 2
    reopened.save(make_review(birads="2"), expected_version=1)  # editing goes on
    reopened.close()


def test_the_sqlite_file_runs_in_wal_mode(store: ReviewStore, tmp_path: Path) -> None:
    store.save(make_review())
    with store._engine.connect() as connection:
        mode = connection.exec_driver_sql("PRAGMA journal_mode").scalar()
        timeout = connection.exec_driver_sql("PRAGMA busy_timeout").scalar()
    assert mode == "wal" and timeout == 30_000


def test_default_database_is_a_sqlite_file_in_the_user_data_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("TUMORLENS_REVIEW_DB", raising=False)
    monkeypatch.setenv("TUMORLENS_USER_DATA", str(tmp_path / "user"))
    assert default_user_data_dir() == tmp_path / "user"
    assert default_review_db_url() == sqlite_url(tmp_path / "user" / "reviews.sqlite3")
    store = ReviewStore()
    store.save(make_review())
    store.close()
    assert (tmp_path / "user" / "reviews.sqlite3").is_file()
    monkeypatch.setenv("TUMORLENS_REVIEW_DB", "postgresql://u:secret@db/tumorlens")
    assert default_review_db_url() == "postgresql://u:secret@db/tumorlens"


def test_bad_database_urls_raise_typed_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not usable"):
        ReviewStore("not a url")
    with pytest.raises(ConfigError, match="not usable"):
        ReviewStore("nosuchdb://host/db")
    blocker = tmp_path / "file"
    blocker.write_text("a file, not a folder")
    with pytest.raises(StorageError, match="Cannot create the folder"):
        ReviewStore(sqlite_url(blocker / "sub" / "reviews.sqlite3"))
    (tmp_path / "notadb.sqlite3").write_bytes(b"this is not a database" * 100)
    with pytest.raises(StorageError, match="Cannot open the review database"):
        ReviewStore(sqlite_url(tmp_path / "notadb.sqlite3"))


def test_the_mask_must_match_the_image_shape(store: ReviewStore) -> None:
    wrong = lesion_mask((IMAGE_SHAPE[0] + 1, IMAGE_SHAPE[1]))
    with pytest.raises(ImageDimensionError, match="the image is 16 x 12"):
        store.save(make_review(corrected_mask=wrong))
    assert store.reviews() == []


def test_a_failed_audit_write_saves_nothing(
    store: ReviewStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken_audit(*args, **kwargs):
        raise store_module.SQLAlchemyError("disk full")

    monkeypatch.setattr(store_module, "_audit", broken_audit)
    with pytest.raises(StorageError, match="disk full"):
        store.save(make_review())
    assert store.reviews() == [] and store.audit_log() == []


def _save_then_die(url: str) -> None:
    """A writer process that ends abruptly right after saving (no close, no cleanup)."""
    ReviewStore(url).save(make_review(comment="saved just before the crash"))
    os._exit(0)


def test_a_review_saved_just_before_the_process_dies_is_kept(db_url: str) -> None:
    ReviewStore(db_url).close()
    process = multiprocessing.get_context("spawn").Process(target=_save_then_die, args=(db_url,))
    process.start()
    process.join(timeout=120)
    assert process.exitcode == 0
    store = ReviewStore(db_url)
    [review] = store.reviews()
    assert review.comment == "saved just before the crash"
    assert [entry.action for entry in store.audit_log()] == ["create"]
    store.close()
