from __future__ import annotations

import pytest

from utils.bench.stats import rate_stats, repeat_timed, timing_stats
from utils.errors import ConfigError


def test_timing_stats_are_median_and_interpolated_p95_in_ms() -> None:
    seconds = [0.1, 0.2, 0.3, 0.4, 1.0]
    stats = timing_stats(seconds)
    assert stats == {"median": 300.0, "p95": 880.0, "n": 5}  # 0.4 + 0.8 * (1.0 - 0.4)


def test_timing_stats_other_unit_and_one_sample() -> None:
    assert timing_stats([2.5], scale=1.0) == {"median": 2.5, "p95": 2.5, "n": 1}


@pytest.mark.parametrize(
    ("samples", "message"),
    [([], "at least one sample"), ([0.1, -1.0], "positive"), ([float("nan")], "finite")],
)
def test_timing_stats_reject_bad_samples(samples: list[float], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        timing_stats(samples)


def test_rate_stats_p95_is_the_slow_tail_rate() -> None:
    stats = rate_stats([0.5, 0.5, 1.0], items_per_run=8)
    assert stats["median"] == 16.0
    assert stats["p95"] < stats["median"]
    assert stats["p95"] == round(8 / 0.95, 2)  # p95 time = 0.5 + 0.9 * 0.5


@pytest.mark.parametrize("items", [0, -3, True, 2.0])
def test_rate_stats_reject_bad_item_counts(items: object) -> None:
    with pytest.raises(ConfigError, match="items_per_run must be a positive integer"):
        rate_stats([0.1], items_per_run=items)  # type: ignore[arg-type]


def test_repeat_timed_runs_warmup_untimed_then_repeats() -> None:
    calls = []
    samples = repeat_timed(lambda: calls.append(1), repeats=4, warmup=2)
    assert len(calls) == 6
    assert len(samples) == 4
    assert all(sample >= 0 for sample in samples)


@pytest.mark.parametrize(("repeats", "warmup"), [(0, 1), (3, -1)])
def test_repeat_timed_rejects_bad_counts(repeats: int, warmup: int) -> None:
    with pytest.raises(ConfigError, match="Need repeats >= 1 and warmup >= 0"):
        repeat_timed(lambda: None, repeats=repeats, warmup=warmup)
