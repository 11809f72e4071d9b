"""The WSI measurement's aggregation of utils.wsi.bench rows, and its skips."""

from __future__ import annotations

from pathlib import Path

import pytest

from utils.bench import wsi
from utils.bench.outcome import BenchOptions
from utils.bench.wsi import measure_wsi, parse_rows

ROW = {
    "slide": "s.svs",
    "size": "2220 x 2967",
    "tiles_per_s": 20.0,
    "peak_rss_mib": 900.0,
    "rss_before_mib": 700.0,
}


def test_parse_rows_keeps_the_json_lines_and_ignores_the_table() -> None:
    stdout = '{"a": 1}\n\nslide   size\ns.svs  10 x 10\n{"b": 2}\n'
    assert parse_rows(stdout) == [{"a": 1}, {"b": 2}]


def _fake_runs(calls: list[list[str]]):
    def run(arguments: list[str], options: BenchOptions, timeout: float) -> list[dict]:
        calls.append(arguments)
        if "--synthetic" in arguments:
            return [
                {**ROW, "size": "2000 x 2000", "peak_rss_mib": 600.0},
                {**ROW, "size": "4000 x 4000", "peak_rss_mib": 612.5},
            ]
        return [{**ROW, "tiles_per_s": 10.0 * (len(calls))}]

    return run


def test_real_slide_and_memory_curve(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "wsi").mkdir()
    (tmp_path / "wsi" / "CMU-1-Small-Region.svs").write_bytes(b"")
    for suffix in (".keras", ".json"):
        (tmp_path / f"nuclei_segmenter{suffix}").write_bytes(b"")
    calls: list[list[str]] = []
    monkeypatch.setattr(wsi, "_run_wsi_bench", _fake_runs(calls))
    options = BenchOptions(quick=True, models_dir=tmp_path, datasets_dir=tmp_path)
    outcome = measure_wsi(options)
    assert calls[0][:2] == ["--slide", str(tmp_path / "wsi" / "CMU-1-Small-Region.svs")]
    assert calls[0][3] == str(tmp_path / "nuclei_segmenter.keras")
    assert calls[1] == ["--synthetic", "2000", "4000", "--model", "untrained-tiny"]
    assert outcome.results["wsi_tiles_per_s"] == {"median": 10.0, "p95": 10.0, "n": 1}
    assert outcome.results["wsi_peak_rss_mb"] == 900.0
    assert outcome.results["wsi_synthetic_peak_rss_mb"] == {
        "2000 x 2000": 600.0,
        "4000 x 4000": 612.5,
    }
    assert outcome.results["wsi_peak_rss_growth_mb"] == 12.5
    assert outcome.skipped == {}


def test_missing_slide_or_model_is_null_with_the_reason(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(wsi, "_run_wsi_bench", _fake_runs([]))
    outcome = measure_wsi(BenchOptions(quick=True, models_dir=tmp_path, datasets_dir=tmp_path))
    assert outcome.results["wsi_tiles_per_s"] is None
    assert "CMU-1-Small-Region.svs is not available" in outcome.skipped["wsi_peak_rss_mb"]
    (tmp_path / "wsi").mkdir()
    (tmp_path / "wsi" / "CMU-1-Small-Region.svs").write_bytes(b"")
    outcome = measure_wsi(BenchOptions(quick=True, models_dir=tmp_path, datasets_dir=tmp_path))
    assert "'nuclei_segmenter' is not installed" in outcome.skipped["wsi_tiles_per_s"]
    assert outcome.results["wsi_peak_rss_growth_mb"] == 12.5  # the curve needs neither


def test_a_failing_wsi_bench_gives_null_with_its_message(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def fail(arguments: list[str], options: BenchOptions, timeout: float) -> list[dict]:
        raise RuntimeError("utils.wsi.bench exited with 1: out of memory")

    monkeypatch.setattr(wsi, "_run_wsi_bench", fail)
    outcome = measure_wsi(BenchOptions(quick=True, models_dir=tmp_path, datasets_dir=tmp_path))
    assert outcome.skipped["wsi_synthetic_peak_rss_mb"] == (
        "measurement failed: utils.wsi.bench exited with 1: out of memory"
    )
