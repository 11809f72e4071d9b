"""Percentile bootstrap confidence intervals."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np


def bootstrap_ci(
    values: np.ndarray,
    statistic: Callable[[np.ndarray], float] = np.nanmean,
    *,
    n_resamples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> tuple[float, float]:
    """Percentile bootstrap interval of ``statistic`` over per-item ``values``.

    Args:
        values: Per-item values (e.g. per-image Dice), or per-item rows that
            ``statistic`` reduces (e.g. ``(correct, label)`` pairs).
        statistic: Reduces a resample (same layout as ``values``) to a number.
        n_resamples: Number of bootstrap resamples.
        confidence: Coverage of the interval.
        seed: Seed of the resampling, for reproducible reports.

    Returns:
        ``(low, high)``; ``(nan, nan)`` for empty input.
    """
    values = np.asarray(values)
    if len(values) == 0:
        return (float("nan"), float("nan"))
    rng = np.random.default_rng(seed)
    indices = rng.integers(0, len(values), size=(n_resamples, len(values)))
    stats = np.array([statistic(values[row]) for row in indices], dtype=float)
    alpha = (1.0 - confidence) / 2.0
    return (float(np.nanquantile(stats, alpha)), float(np.nanquantile(stats, 1.0 - alpha)))
