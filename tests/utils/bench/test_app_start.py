"""The app cold-start measurement: its skips here; the real cold start is a slow test."""

from __future__ import annotations

from pathlib import Path

import pytest

from utils.bench.app_start import DRIVER, measure_app_start
from utils.bench.outcome import BenchOptions
from utils.paths import SAVED_MODELS_DIR


def test_driver_is_valid_python() -> None:
    compile(DRIVER, "<driver>", "exec")


def test_other_models_folder_is_skipped_because_the_app_reads_saved_models(
    tmp_path: Path,
) -> None:
    outcome = measure_app_start(BenchOptions(models_dir=tmp_path))
    assert outcome.results == {"app_first_result_s": None}
    assert "the app reads" in outcome.skipped["app_first_result_s"]


@pytest.mark.slow
def test_cold_start_of_the_analyse_page_gives_a_time() -> None:
    if not (SAVED_MODELS_DIR / "ultrasound_segmenter.keras").is_file():
        pytest.skip("no shipped segmenter")
    outcome = measure_app_start(BenchOptions(quick=True))
    timing = outcome.results["app_first_result_s"]
    assert timing["n"] == 1 and timing["median"] > 0
    assert outcome.details["app_start"]["panels"]["images"] >= 2
