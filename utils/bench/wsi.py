"""``wsi_tiles_per_s`` and ``wsi_peak_rss_mb``, and peak memory against slide size.

Calls :mod:`utils.wsi.bench` (each of its measurements already runs in a fresh process
and resets the kernel's peak-RSS counter before the analysis), so the slide pipeline's
benchmark is written once. The real Aperio slide runs with the shipped nuclei model;
the synthetic pyramidal TIFFs, up to 20,000 x 20,000, run with an untrained tiny model
so the memory curve shows the reader, tiler and heatmaps rather than a slow network.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from utils.bench.outcome import BenchOptions, Outcome
from utils.bench.stats import timing_stats

__all__ = ["SYNTHETIC_SIDES", "measure_wsi", "parse_rows"]

#: Sides of the synthetic slides (full / quick).
SYNTHETIC_SIDES = {False: (5000, 10000, 20000), True: (2000, 4000)}
#: Runs of the real slide whose tiles/s the median and p95 summarise.
_SLIDE_RUNS = {False: 3, True: 1}


def parse_rows(stdout: str) -> list[dict[str, Any]]:
    """The JSON lines :mod:`utils.wsi.bench` prints (one per slide), ignoring its table."""
    return [json.loads(line) for line in stdout.splitlines() if line.startswith("{")]


def _run_wsi_bench(arguments: list[str], options: BenchOptions, timeout: float) -> list[dict]:
    done = subprocess.run(
        [sys.executable, "-m", "utils.wsi.bench", *arguments],
        capture_output=True,
        text=True,
        check=False,
        cwd=options.project_root,
        timeout=timeout,
    )
    if done.returncode != 0:
        tail = (done.stderr or done.stdout)[-600:].strip()
        raise RuntimeError(f"utils.wsi.bench exited with {done.returncode}: {tail}")
    return parse_rows(done.stdout)


def _real_slide(options: BenchOptions, outcome: Outcome) -> None:
    keys = ("wsi_tiles_per_s", "wsi_peak_rss_mb")
    model = Path(options.models_dir) / f"{options.nuclei}.keras"
    reason = None
    if not options.slide.is_file():
        reason = f"slide {options.slide} is not available"
    elif not options.bundle_present(options.nuclei):
        reason = options.missing_reason(options.nuclei)
    if reason:
        for key in keys:
            outcome.skip(key, reason)
        return
    rows = []
    for _ in range(_SLIDE_RUNS[options.quick]):
        rows += _run_wsi_bench(["--slide", str(options.slide), "--model", str(model)], options, 900)
    # tiles/s as a timing object: the median and slow-tail rate over the runs.
    seconds_per_tile = [1.0 / row["tiles_per_s"] for row in rows if row["tiles_per_s"] > 0]
    if not seconds_per_tile:
        for key in keys:
            outcome.skip(key, "the slide pipeline scored no tiles")
        return
    per_tile = timing_stats(seconds_per_tile, scale=1.0)
    outcome.results["wsi_tiles_per_s"] = {
        "median": round(1.0 / per_tile["median"], 2),
        "p95": round(1.0 / per_tile["p95"], 2),
        "n": per_tile["n"],
    }
    outcome.results["wsi_peak_rss_mb"] = max(row["peak_rss_mib"] for row in rows)
    outcome.details["wsi_slide_runs"] = rows


def _synthetic_curve(options: BenchOptions, outcome: Outcome) -> None:
    sides = SYNTHETIC_SIDES[options.quick]
    arguments = ["--synthetic", *map(str, sides), "--model", "untrained-tiny"]
    rows = _run_wsi_bench(arguments, options, 3000)
    outcome.details["wsi_memory_curve"] = rows
    peaks = [row["peak_rss_mib"] for row in rows]
    outcome.results["wsi_synthetic_peak_rss_mb"] = {
        row["size"]: row["peak_rss_mib"] for row in rows
    }
    # Flat in slide size: the growth from the smallest to the largest slide.
    outcome.results["wsi_peak_rss_growth_mb"] = round(max(peaks) - min(peaks), 1)


def measure_wsi(options: BenchOptions) -> Outcome:
    """Throughput and memory on the real slide, and the synthetic memory curve."""
    outcome = Outcome()
    for part, keys in (
        (_real_slide, ("wsi_tiles_per_s", "wsi_peak_rss_mb")),
        (_synthetic_curve, ("wsi_synthetic_peak_rss_mb", "wsi_peak_rss_growth_mb")),
    ):
        try:
            part(options, outcome)
        except (RuntimeError, subprocess.TimeoutExpired, ValueError, KeyError) as error:
            for key in keys:
                outcome.skip(key, f"measurement failed: {error}")
    return outcome
