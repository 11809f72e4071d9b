"""Several reviewers saving at once: threads and processes on one SQLite file.

Nothing may be lost (every review and every audit entry is there), and two saves of
the same review from the same version must not both win.
"""

from __future__ import annotations

import multiprocessing
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.utils.review.conftest import make_review
from utils.errors import ReviewConflictError
from utils.review import ReviewStore

CASES_PER_REVIEWER = 6


def review_cases(url: str, reviewer: str, barrier: threading.Barrier | None = None) -> int:
    """Create then update one review per case as ``reviewer``, with its own store."""
    store = ReviewStore(url)
    try:
        if barrier is not None:
            barrier.wait(timeout=60)
        for index in range(CASES_PER_REVIEWER):
            case = f"example:case_{index}"
            created = store.save(make_review(case_id=case, reviewer=reviewer))
            store.save(
                make_review(case_id=case, reviewer=reviewer, birads="4B", agree=False),
                expected_version=created.version,
            )
        return CASES_PER_REVIEWER
    finally:
        store.close()


def _check_nothing_lost(url: str, reviewers: list[str]) -> None:
    store = ReviewStore(url)
    reviews = store.reviews()
    audit = store.audit_log()
    store.close()
    assert len(reviews) == len(reviewers) * CASES_PER_REVIEWER
    assert {review.reviewer for review in reviews} == set(reviewers)
    assert all(review.version == 2 and review.birads == "4B" for review in reviews)
    assert len(audit) == 2 * len(reviews)
    for review in reviews:
        trail = [entry.action for entry in audit if entry.review_id == review.id]
        assert trail == ["create", "update"]


def test_reviewers_saving_at_once_in_threads_lose_nothing(db_url: str) -> None:
    ReviewStore(db_url).close()  # create the tables once
    reviewers = [f"Reviewer {index}" for index in range(4)]
    barrier = threading.Barrier(len(reviewers))
    with ThreadPoolExecutor(len(reviewers)) as pool:
        saved = list(pool.map(lambda name: review_cases(db_url, name, barrier), reviewers))
    assert saved == [CASES_PER_REVIEWER] * len(reviewers)
    _check_nothing_lost(db_url, reviewers)


def test_two_processes_saving_at_once_lose_nothing(db_url: str) -> None:
    ReviewStore(db_url).close()
    reviewers = ["Process A", "Process B"]
    context = multiprocessing.get_context("spawn")  # no forked TensorFlow or open files
    with context.Pool(len(reviewers)) as pool:
        results = [pool.apply_async(review_cases, (db_url, name)) for name in reviewers]
        saved = [result.get(timeout=120) for result in results]
    assert saved == [CASES_PER_REVIEWER] * len(reviewers)
    _check_nothing_lost(db_url, reviewers)


@pytest.mark.parametrize("writers", [6])
def test_simultaneous_edits_of_one_version_let_exactly_one_win(
    store: ReviewStore, writers: int
) -> None:
    store.save(make_review())
    barrier = threading.Barrier(writers)

    def edit(index: int) -> str:
        barrier.wait(timeout=60)
        try:
            store.save(make_review(comment=f"edit {index}"), expected_version=1)
        except ReviewConflictError:
            return "conflict"
        return "saved"

    with ThreadPoolExecutor(writers) as pool:
        outcomes = list(pool.map(edit, range(writers)))
    assert outcomes.count("saved") == 1 and outcomes.count("conflict") == writers - 1
    stored = store.get("example:benign_oval_01", "Dr Ada")
    assert stored.version == 2
    winner = outcomes.index("saved")
    assert stored.comment == f"edit {winner}"
    assert [entry.action for entry in store.audit_log()] == ["create", "update"]
