"""The harness end to end on tiny bundles (in-process), and its failure handling."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests.utils.inference.test_bundle import save_classifier_bundle, save_segmenter_bundle
from utils.bench import harness
from utils.bench.__main__ import main
from utils.bench.harness import MEASUREMENTS, build_report, resolve_names, run_measurement
from utils.bench.outcome import BenchOptions, Outcome
from utils.bench.throughput import sweep
from utils.errors import ConfigError

pytestmark = pytest.mark.filterwarnings("ignore:Please import `zoom`:DeprecationWarning")

ALL_KEYS = {key for _function, keys in MEASUREMENTS.values() for key in keys}


@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("bench_models")
    save_segmenter_bundle(folder, "tiny_segmenter")
    save_classifier_bundle(folder, "tiny_classifier")
    return folder


def tiny_options(folder: Path, **changes: object) -> BenchOptions:
    values = {
        "quick": True,
        "models_dir": folder,
        "segmenter": "tiny_segmenter",
        "classifier": "tiny_classifier",
        "repeats": 2,
        **changes,
    }
    return BenchOptions(**values)  # type: ignore[arg-type]


def test_resolve_names_keeps_registry_order_and_accepts_aliases() -> None:
    assert resolve_names(None) == list(MEASUREMENTS)
    assert resolve_names(["app", "classify", "analyze"]) == ["analyze", "throughput", "app"]


def test_resolve_names_rejects_unknown_names_listing_valid_ones() -> None:
    with pytest.raises(ConfigError, match="Unknown measurement 'speed'; valid names: analyze"):
        resolve_names(["speed"])


def test_options_round_trip_through_json(tmp_path: Path) -> None:
    options = tiny_options(tmp_path, api_clients=3)
    assert BenchOptions.from_dict(json.loads(json.dumps(options.to_dict()))) == options


@pytest.mark.slow
def test_quick_analyze_and_throughput_on_tiny_bundles(tiny_models: Path) -> None:
    report = build_report(["analyze", "throughput"], tiny_options(tiny_models), isolate=False)
    results, skipped = report["results"], report["skipped"]
    assert set(results) >= ALL_KEYS  # every key, measured or not
    for key in ("analyze_ms", "naive_analyze_ms"):
        assert set(results[key]) == {"median", "p95", "n"}
        assert 0 < results[key]["median"] <= results[key]["p95"]
    assert results["analyze_ms"]["n"] == 2
    expected = results["naive_analyze_ms"]["median"] / results["analyze_ms"]["median"]
    assert results["speedup_vs_naive"] == pytest.approx(expected, rel=0.01)
    for key in ("classify_img_per_s", "segment_img_per_s"):
        assert results[key]["batch_size"] in (1, 8)
        assert results[key]["median"] > 0
    steps = report["details"]["analyze"]["fast_step_median_ms"]
    assert set(steps) == {
        "segmentation",
        "segmenter_cam",
        "classification",
        "classifier_cam",
        "total",
    }
    for key in ("wsi_tiles_per_s", "api_rps", "app_first_result_s"):
        assert results[key] is None
        assert skipped[key] == "not selected (--only)"
    assert {"machine", "versions", "created", "seconds"} <= set(report)
    json.dumps(report, allow_nan=False)


def test_without_a_classifier_analyze_is_null_and_segment_only_is_measured(
    tiny_models: Path,
) -> None:
    options = tiny_options(tiny_models, classifier="not_installed", repeats=1)
    report = build_report(["analyze"], options, isolate=False)
    results, skipped = report["results"], report["skipped"]
    for key in ("analyze_ms", "naive_analyze_ms", "speedup_vs_naive"):
        assert results[key] is None
        assert "'not_installed' is not installed" in skipped[key]
    assert results["analyze_segment_only_ms"]["median"] > 0
    assert results["speedup_vs_naive_segment_only"] > 0


def test_missing_segmenter_skips_every_model_measurement(tmp_path: Path) -> None:
    options = tiny_options(tmp_path)
    for name in ("analyze", "throughput", "api", "app"):
        outcome = run_measurement(name, options, isolate=False)
        assert outcome.skipped, name
        assert all(value is None for value in outcome.results.values())
        assert any("'tiny_segmenter' is not installed" in r for r in outcome.skipped.values()) or (
            name == "app"
        )


def test_sweep_reports_images_per_second_per_batch_size(tiny_models: Path) -> None:
    from utils.inference.bundle import load_bundle
    from utils.inference.segmenter import LesionSegmenter

    model, card = load_bundle("tiny_segmenter", models_dir=tiny_models)
    seen = []

    def run(predictor: LesionSegmenter, batch: object) -> object:
        seen.append((predictor.batch_size, batch.shape))  # type: ignore[attr-defined]
        return predictor.predict_probabilities(batch)  # type: ignore[arg-type]

    rows = sweep(lambda size: LesionSegmenter(model, card, batch_size=size), run, (1, 4), 4)
    assert [row["batch_size"] for row in rows] == [1, 4]
    assert [row["n"] for row in rows] == [4, 3]  # ceil(4 / size) runs, at least 3
    assert all(row["median"] >= row["p95"] > 0 for row in rows)
    assert (4, (4, 32, 32, 1)) in seen


def test_a_crashed_child_gives_null_with_the_reason(
    tiny_models: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def crash(command: list[str], **_kwargs: object) -> subprocess.CompletedProcess:
        return subprocess.CompletedProcess(command, 1, "", "Traceback...\nMemoryError: boom")

    monkeypatch.setattr(harness.subprocess, "run", crash)
    outcome = run_measurement("throughput", tiny_options(tiny_models))
    assert outcome.results == {"classify_img_per_s": None, "segment_img_per_s": None}
    assert outcome.skipped["segment_img_per_s"] == (
        "measurement crashed (exit 1): MemoryError: boom"
    )


def test_a_child_prints_its_outcome_line(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = Outcome({"api_rps": 1.5, "api_p95_ms": 20.0})
    monkeypatch.setitem(MEASUREMENTS, "api", ("tests.utils.bench.test_harness:_fake", ()))
    monkeypatch.setattr("tests.utils.bench.test_harness._fake", lambda _o: fake, raising=False)
    line = harness.run_child("api", BenchOptions())
    assert line.startswith(harness.OUTCOME_PREFIX)
    assert Outcome.from_dict(json.loads(line[len(harness.OUTCOME_PREFIX) :])) == fake


def test_merge_drops_the_skip_of_a_key_measured_later() -> None:
    combined = Outcome()
    combined.skip("api_rps", "not yet")
    combined.merge(Outcome({"api_rps": 2.0}))
    assert combined.results == {"api_rps": 2.0}
    assert combined.skipped == {}


# ----------------------------------------------------------------------------- CLI


def test_cli_writes_null_results_with_reasons_when_no_model_is_installed(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    out = tmp_path / "bench.json"
    argv = ["--only", "analyze,classify", "--in-process", "--models-dir", str(tmp_path)]
    argv += ["--json", str(out)]
    assert main(argv) == 0
    report = json.loads(out.read_text())
    assert set(report["results"]) >= ALL_KEYS
    assert all(value is None for value in report["results"].values())
    assert set(report["skipped"]) == set(report["results"])
    assert "is not installed in" in report["skipped"]["analyze_ms"]
    assert "skipped: " in capsys.readouterr().out


def test_cli_classifier_option_picks_the_bundle(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    argv = ["--only", "classify", "--in-process", "--models-dir", str(tmp_path)]
    assert main([*argv, "--classifier", "my_variant", "--json", str(out)]) == 0
    skipped = json.loads(out.read_text())["skipped"]
    assert any("'my_variant' is not installed" in reason for reason in skipped.values())


@pytest.mark.slow
def test_cli_quick_only_run_writes_json_and_readme_block(
    tiny_models: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture,
) -> None:
    monkeypatch.setattr(
        "utils.bench.__main__.BenchOptions",
        lambda **kw: tiny_options(tiny_models, repeats=kw["repeats"]),
    )
    readme = tmp_path / "README.md"
    readme.write_text("# X\n<!-- bench:start -->\n<!-- bench:end -->\n", encoding="utf-8")
    out = tmp_path / "bench.json"
    argv = ["--quick", "--only", "analyze", "--in-process", "--repeats", "1"]
    assert main([*argv, "--json", str(out), "--readme", str(readme)]) == 0
    report = json.loads(out.read_text())
    assert report["results"]["analyze_ms"]["n"] == 1
    assert "| Full analysis of one 500×500 image, warm |" in readme.read_text()
    assert "analyze_ms" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--only", "speed"], "Unknown measurement 'speed'"),
        (["--repeats", "0"], "--repeats must be a positive integer"),
    ],
)
def test_cli_bad_arguments_exit_2(
    argv: list[str], message: str, capsys: pytest.CaptureFixture
) -> None:
    assert main(argv) == 2
    assert message in capsys.readouterr().err


def test_cli_readme_without_markers_exits_2_after_writing_the_json(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    monkeypatch.setattr(harness, "run_measurement", lambda name, options, isolate: Outcome())
    readme = tmp_path / "README.md"
    readme.write_text("# no markers\n", encoding="utf-8")
    out = tmp_path / "bench.json"
    assert main(["--only", "api", "--json", str(out), "--readme", str(readme)]) == 2
    assert out.is_file()
    assert readme.read_text() == "# no markers\n"
    assert "Expected one <!-- bench:start -->" in capsys.readouterr().err
