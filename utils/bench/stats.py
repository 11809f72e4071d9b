"""Summaries of repeated warm runs: a timing is ``{"median", "p95", "n"}``."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from utils.errors import ConfigError

__all__ = ["rate_stats", "repeat_timed", "timing_stats"]

#: Decimal places kept in the JSON (sub-microsecond digits are noise on this machine).
_DIGITS = 3


def _check_samples(samples: Sequence[float]) -> np.ndarray:
    values = np.asarray(samples, dtype=np.float64)
    if values.ndim != 1 or values.size == 0:
        raise ConfigError(f"Timing needs at least one sample; got {len(values)} samples.")
    if not np.all(np.isfinite(values)) or np.any(values <= 0):
        raise ConfigError("Timing samples must be finite positive durations.")
    return values


def timing_stats(seconds: Sequence[float], *, scale: float = 1000.0) -> dict[str, Any]:
    """Median and 95th percentile of durations, in milliseconds by default.

    Args:
        seconds: One duration per warm run, in seconds.
        scale: Multiplier of the reported unit (1000: ms; 1: s).

    Returns:
        ``{"median": ..., "p95": ..., "n": len(seconds)}``; p95 is NumPy's linear
        interpolation, so with few samples it lies between the two slowest runs.

    Raises:
        ConfigError: No samples, or a sample that is not a positive finite number.
    """
    values = _check_samples(seconds) * scale
    return {
        "median": round(float(np.median(values)), _DIGITS),
        "p95": round(float(np.percentile(values, 95)), _DIGITS),
        "n": int(values.size),
    }


def rate_stats(seconds: Sequence[float], items_per_run: int) -> dict[str, Any]:
    """Items per second from the median and the 95th-percentile run time.

    ``p95`` is the rate of the slow tail (items / p95 time), so it is never above the
    median rate: a pessimistic figure, like a latency p95.

    Raises:
        ConfigError: No samples, a bad sample, or ``items_per_run`` < 1.
    """
    if isinstance(items_per_run, bool) or not isinstance(items_per_run, int) or items_per_run < 1:
        raise ConfigError(f"items_per_run must be a positive integer; got {items_per_run!r}.")
    times = timing_stats(seconds, scale=1.0)
    values = _check_samples(seconds)
    return {
        "median": round(items_per_run / float(np.median(values)), _DIGITS - 1),
        "p95": round(items_per_run / float(np.percentile(values, 95)), _DIGITS - 1),
        "n": times["n"],
    }


def repeat_timed(run: Callable[[], object], *, repeats: int, warmup: int = 1) -> list[float]:
    """Wall-clock seconds of ``repeats`` calls of ``run`` after ``warmup`` untimed calls.

    Raises:
        ConfigError: ``repeats`` < 1 or ``warmup`` < 0.
    """
    if repeats < 1 or warmup < 0:
        raise ConfigError(f"Need repeats >= 1 and warmup >= 0; got {repeats} and {warmup}.")
    for _ in range(warmup):
        run()
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        samples.append(time.perf_counter() - start)
    return samples
