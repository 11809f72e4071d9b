"""Benchmark of concurrent review saves: throughput, latency, and that nothing is lost.

Run ``python -m utils.review.benchmark --writers 4 --saves 50 --processes`` to have
several writer processes (or threads) create and then update reviews in one SQLite file
(a temporary one unless ``--url`` is given). Prints saves per second, the median and
95th-percentile save latency, and the reviews and audit entries found afterwards.
"""

from __future__ import annotations

import argparse
import multiprocessing
import tempfile
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from utils.review.store import ReviewStore
from utils.review.validation import AiSnapshot, ReviewInput

_SHAPE = (400, 500)


def _review(case: int, reviewer: str, birads: str) -> ReviewInput:
    mask = np.zeros(_SHAPE, dtype=bool)
    mask[100:200, 150 + case % 50 : 300] = True
    return ReviewInput(
        case_id=f"bench:{case}",
        reviewer=reviewer,
        agree=birads == "3",
        reviewer_class="benign",
        birads=birads,
        comment="benchmark",
        corrected_mask=mask,
        ai=AiSnapshot(segmenter="bench v1", image_shape=_SHAPE, mask_area_px=15_000),
    )


def writer(url: str, reviewer: str, saves: int) -> list[float]:
    """Create ``saves // 2`` reviews as ``reviewer`` and update each; the save latencies."""
    store = ReviewStore(url)
    latencies = []
    try:
        for case in range(saves // 2):
            start = time.perf_counter()
            created = store.save(_review(case, reviewer, "3"))
            latencies.append(time.perf_counter() - start)
            start = time.perf_counter()
            store.save(_review(case, reviewer, "4A"), expected_version=created.version)
            latencies.append(time.perf_counter() - start)
    finally:
        store.close()
    return latencies


def run(url: str, writers: int, saves: int, processes: bool) -> dict[str, float]:
    """Run the writers at once and check the database afterwards."""
    ReviewStore(url).close()  # create the tables before the writers start
    names = [f"writer {index}" for index in range(writers)]
    start = time.perf_counter()
    if processes:
        with multiprocessing.get_context("spawn").Pool(writers) as pool:
            results = pool.starmap(writer, [(url, name, saves) for name in names])
    else:
        with ThreadPoolExecutor(writers) as pool:
            results = list(pool.map(lambda name: writer(url, name, saves), names))
    elapsed = time.perf_counter() - start
    latencies = np.concatenate([np.asarray(result) for result in results])
    store = ReviewStore(url)
    reviews, audit = len(store.reviews()), len(store.audit_log())
    store.close()
    return {
        "saves": float(latencies.size),
        "seconds": elapsed,
        "saves_per_second": latencies.size / elapsed,
        "p50_ms": float(np.percentile(latencies, 50) * 1000),
        "p95_ms": float(np.percentile(latencies, 95) * 1000),
        "reviews_expected": float(writers * (saves // 2)),
        "reviews_found": float(reviews),
        "audit_entries_found": float(audit),
    }


def main(argv: Sequence[str] | None = None) -> None:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--writers", type=int, default=4)
    parser.add_argument("--saves", type=int, default=50, help="saves per writer (even)")
    parser.add_argument("--processes", action="store_true", help="processes, not threads")
    parser.add_argument("--url", help="SQLAlchemy URL (default: a temporary SQLite file)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as folder:
        url = args.url or f"sqlite:///{Path(folder) / 'bench.sqlite3'}"
        result = run(url, args.writers, args.saves, args.processes)
    kind = "processes" if args.processes else "threads"
    print(
        f"{args.writers} writer {kind}, {int(result['saves'])} saves in {result['seconds']:.2f} s"
    )
    print(f"throughput: {result['saves_per_second']:.0f} saves/s")
    print(f"latency: p50 {result['p50_ms']:.1f} ms, p95 {result['p95_ms']:.1f} ms")
    print(
        f"reviews found: {int(result['reviews_found'])} of {int(result['reviews_expected'])}; "
        f"audit entries: {int(result['audit_entries_found'])} (expected {int(result['saves'])})"
    )


if __name__ == "__main__":
    main()
