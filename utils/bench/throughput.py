"""``classify_img_per_s`` and ``segment_img_per_s``: compiled predictors' images/s.

Each is the best of a sweep of batch sizes.

The unit of work is a uint8 batch already at the model's size through the predictor's
public ``predict_probabilities`` (float conversion, compiled forward pass, calibration
for the classifier; no test-time augmentation, decoding or post-processing).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

from utils.bench.outcome import BenchOptions, Outcome
from utils.bench.stats import rate_stats, repeat_timed
from utils.inference.classifier import LesionClassifier
from utils.inference.predictor import BundlePredictor
from utils.inference.segmenter import LesionSegmenter

__all__ = ["BATCH_SIZES", "measure_throughput", "sweep"]

#: Batch sizes tried (the quick run stops at 8).
BATCH_SIZES = (1, 8, 16, 32, 64)
#: Images each batch size processes in timed runs, at least (full / quick).
_IMAGES_PER_SIZE = {False: 128, True: 16}


def sweep(
    make: Callable[[int], BundlePredictor],
    run: Callable[[BundlePredictor, np.ndarray], object],
    batch_sizes: tuple[int, ...],
    images_per_size: int,
) -> list[dict[str, Any]]:
    """Images/s of each batch size: one predictor per size, a random batch, warm runs.

    Args:
        make: Builds the predictor for a batch size (compiled and warmed).
        run: Runs the predictor on one uint8 batch.
        batch_sizes: Sizes to try.
        images_per_size: Images to time per size (runs = ceil(images / size), at least 3).

    Returns:
        One row per size: ``{"batch_size", "median", "p95", "n"}`` (images/s).
    """
    rng = np.random.default_rng(0)
    rows = []
    for size in batch_sizes:
        predictor = make(size)
        batch = rng.integers(0, 256, (size, *predictor.input_shape), dtype=np.uint8)
        repeats = max(3, math.ceil(images_per_size / size))
        seconds = repeat_timed(lambda p=predictor, b=batch: run(p, b), repeats=repeats, warmup=1)
        rows.append({"batch_size": size, **rate_stats(seconds, size)})
    return rows


def _best(rows: list[dict[str, Any]]) -> dict[str, Any]:
    best = max(rows, key=lambda row: row["median"])
    return {key: best[key] for key in ("median", "p95", "n", "batch_size")}


def measure_throughput(options: BenchOptions) -> Outcome:
    """Sweep the batch sizes of both predictors and keep the best of each."""
    outcome = Outcome()
    sizes = BATCH_SIZES[:2] if options.quick else BATCH_SIZES
    images = _IMAGES_PER_SIZE[options.quick]
    predictors: dict[str, tuple[type[BundlePredictor], str, Callable[..., object]]] = {
        "classify": (
            LesionClassifier,
            options.classifier,
            lambda p, b: p.predict_probabilities(b),
        ),
        "segment": (LesionSegmenter, options.segmenter, lambda p, b: p.predict_probabilities(b)),
    }
    for name, (cls, bundle, run) in predictors.items():
        key = f"{name}_img_per_s"
        if not options.bundle_present(bundle):
            outcome.skip(key, options.missing_reason(bundle))
            continue
        model, card = _load(cls, bundle, options)
        rows = sweep(
            lambda size, c=cls, m=model, k=card: c(m, k, batch_size=size), run, sizes, images
        )
        outcome.results[key] = _best(rows)
        outcome.details[f"{name}_sweep"] = rows
    return outcome


def _load(cls: type[BundlePredictor], bundle: str, options: BenchOptions) -> tuple[Any, Any]:
    """The bundle's model and card, loaded once for every batch size."""
    from utils.inference.bundle import load_bundle

    return load_bundle(bundle, models_dir=options.models_dir, task=cls.TASK)
