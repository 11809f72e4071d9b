"""Run the measurements (each in a fresh process by default) and assemble the report."""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any, Final

from utils.bench.machine import machine_info, versions
from utils.bench.outcome import BenchOptions, Outcome
from utils.errors import ConfigError

__all__ = ["MEASUREMENTS", "SCHEMA_VERSION", "build_report", "run_child", "run_measurement"]

SCHEMA_VERSION: Final = 1
#: Prefix of the line a child process prints its outcome on.
OUTCOME_PREFIX: Final = "BENCH-OUTCOME "

#: name -> ("module:function", the result keys it reports even when it fails).
MEASUREMENTS: Final[dict[str, tuple[str, tuple[str, ...]]]] = {
    "analyze": (
        "utils.bench.analyze:measure_analyze",
        ("analyze_ms", "naive_analyze_ms", "speedup_vs_naive"),
    ),
    "throughput": (
        "utils.bench.throughput:measure_throughput",
        ("classify_img_per_s", "segment_img_per_s"),
    ),
    "wsi": (
        "utils.bench.wsi:measure_wsi",
        (
            "wsi_tiles_per_s",
            "wsi_peak_rss_mb",
            "wsi_synthetic_peak_rss_mb",
            "wsi_peak_rss_growth_mb",
        ),
    ),
    "api": ("utils.bench.api_load:measure_api", ("api_rps", "api_p95_ms")),
    "app": ("utils.bench.app_start:measure_app_start", ("app_first_result_s",)),
}
#: Names --only also accepts, for the keys' prefixes.
ALIASES: Final = {"classify": "throughput", "segment": "throughput", "app_start": "app"}
#: Longest a measurement may run (the WSI one writes a 20,000 px slide).
_CHILD_TIMEOUT_S: Final = 3600


def resolve_names(only: Sequence[str] | None) -> list[str]:
    """The measurements to run, in registry order, from ``--only`` names or aliases.

    Raises:
        ConfigError: An unknown name (the message lists the valid ones).
    """
    if not only:
        return list(MEASUREMENTS)
    wanted = set()
    for name in only:
        canonical = ALIASES.get(name, name)
        if canonical not in MEASUREMENTS:
            valid = ", ".join([*MEASUREMENTS, *ALIASES])
            raise ConfigError(f"Unknown measurement {name!r}; valid names: {valid}.")
        wanted.add(canonical)
    return [name for name in MEASUREMENTS if name in wanted]


def _function(name: str) -> Callable[[BenchOptions], Outcome]:
    module, function = MEASUREMENTS[name][0].split(":")
    return getattr(importlib.import_module(module), function)


def run_child(name: str, options: BenchOptions) -> str:
    """Run one measurement in this process and return its outcome line (child side)."""
    outcome = _function(name)(options)
    return OUTCOME_PREFIX + json.dumps(outcome.to_dict(), allow_nan=False)


def _failed(name: str, reason: str) -> Outcome:
    outcome = Outcome()
    for key in MEASUREMENTS[name][1]:
        outcome.skip(key, reason)
    return outcome


def run_measurement(name: str, options: BenchOptions, *, isolate: bool = True) -> Outcome:
    """Run one measurement, in a fresh ``python -m utils.bench --child`` process by default.

    A crash, a timeout or unreadable output gives every key of the measurement as
    ``None`` with the reason: the report never lacks a key or invents a value.
    """
    if not isolate:
        return _function(name)(options)
    command = [sys.executable, "-m", "utils.bench", "--child", name]
    command += ["--options", json.dumps(options.to_dict())]
    try:
        done = subprocess.run(
            command,
            cwd=options.project_root,
            capture_output=True,
            text=True,
            check=False,
            timeout=_CHILD_TIMEOUT_S,
        )
    except subprocess.TimeoutExpired:
        return _failed(name, f"timed out after {_CHILD_TIMEOUT_S} s")
    lines = [line for line in done.stdout.splitlines() if line.startswith(OUTCOME_PREFIX)]
    if done.returncode != 0 or not lines:
        tail = done.stderr.strip().splitlines()[-1:] or ["no output"]
        return _failed(name, f"measurement crashed (exit {done.returncode}): {tail[0][:300]}")
    return Outcome.from_dict(json.loads(lines[-1][len(OUTCOME_PREFIX) :]))


def build_report(
    names: Sequence[str],
    options: BenchOptions,
    *,
    isolate: bool = True,
    progress: Callable[[str], None] = lambda _message: None,
) -> dict[str, Any]:
    """Run ``names`` and return the JSON report (every registry key present).

    Keys of measurements that were not selected are ``None`` with the reason
    ``"not selected"``, so the file always has the same keys.
    """
    started = time.perf_counter()
    combined = Outcome()
    for name in MEASUREMENTS:
        if name not in names:
            for key in MEASUREMENTS[name][1]:
                combined.skip(key, "not selected (--only)")
    seconds: dict[str, float] = {}
    for name in names:
        progress(f"running {name}…")
        begun = time.perf_counter()
        combined.merge(run_measurement(name, options, isolate=isolate))
        seconds[name] = round(time.perf_counter() - begun, 1)
        progress(f"{name} done in {seconds[name]} s")
    return {
        "schema_version": SCHEMA_VERSION,
        "created": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "quick": options.quick,
        "options": options.to_dict(),
        "machine": machine_info(),
        "versions": versions(),
        "results": combined.results,
        "skipped": combined.skipped,
        "details": combined.details,
        "seconds": {**seconds, "total": round(time.perf_counter() - started, 1)},
    }
