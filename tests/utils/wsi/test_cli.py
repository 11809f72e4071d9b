from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

import utils.wsi.scorers
from utils.wsi.cli import main


@pytest.fixture(autouse=True)
def restore_visible_devices(monkeypatch: pytest.MonkeyPatch) -> None:
    """``--device cpu`` sets CUDA_VISIBLE_DEVICES; undo it after each test."""
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", os.environ.get("CUDA_VISIBLE_DEVICES", ""))


@pytest.fixture
def bundles_here(models_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Let the CLI find the test bundles by name."""
    original = utils.wsi.scorers.load_scorer

    def load(model, **kwargs):
        return original(model, models_dir=models_dir, **kwargs)

    monkeypatch.setattr(utils.wsi.scorers, "load_scorer", load)


def test_cli_writes_the_outputs(
    synthetic_slide: Path, tmp_path: Path, bundles_here, capsys: pytest.CaptureFixture
) -> None:
    out = tmp_path / "run"
    status = main(
        [
            "--image",
            str(synthetic_slide),
            "--model",
            "tiny_patch",
            "--threshold",
            "0.5",
            "--device",
            "cpu",
            "--out",
            str(out),
        ]
    )
    assert status == 0
    captured = capsys.readouterr()
    assert "tiles scored" in captured.out
    assert "tiles" in captured.err  # the tqdm progress bar
    data = json.loads((out / "results.json").read_text())
    assert data["threshold"] == 0.5 and data["model"] == "tiny_patch"
    assert (out / "regions.geojson").is_file() and (out / "analysis_report.png").is_file()


@pytest.mark.parametrize(
    ("slide_fixture", "extra", "message"),
    [
        ("slide_without_mpp", [], "Pass it with --mpp"),
        ("corrupt_slide", [], "damaged"),
        ("blank_slide", [], "No tissue found"),
        ("synthetic_slide", ["--overlap", "0.99"], "overlap must be"),
        ("synthetic_slide", ["--magnification", "0"], "--magnification must be positive"),
    ],
)
def test_cli_bad_input_exits_2_with_the_message(
    request: pytest.FixtureRequest,
    slide_fixture: str,
    extra: list[str],
    message: str,
    tmp_path: Path,
    bundles_here,
    capsys: pytest.CaptureFixture,
) -> None:
    slide = request.getfixturevalue(slide_fixture)
    args = ["--image", str(slide), "--model", "tiny_patch", "--out", str(tmp_path), *extra]
    assert main(args) == 2
    assert message in capsys.readouterr().err


def test_cli_wrong_input_size_model(
    synthetic_slide: Path, tmp_path: Path, bundles_here, capsys: pytest.CaptureFixture
) -> None:
    args = ["--image", str(synthetic_slide), "--model", "tiny_gray", "--out", str(tmp_path)]
    assert main(args) == 2
    assert "square RGB" in capsys.readouterr().err


def test_cli_magnification_sets_the_tile_scale(
    synthetic_slide: Path, tmp_path: Path, bundles_here
) -> None:
    args = ["--image", str(synthetic_slide), "--model", "tiny_patch", "--out", str(tmp_path)]
    assert main([*args, "--magnification", "10", "--threshold", "0.5"]) == 0
    data = json.loads((tmp_path / "results.json").read_text())
    assert data["target_mpp"] == 1.0
    assert data["options"]["tile_level0_px"] == 64  # 32 px at 1 µm over 0.5 µm pixels


def test_cli_gpu_without_a_gpu_is_a_clear_error(
    synthetic_slide: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    import tensorflow as tf

    if tf.config.list_physical_devices("GPU"):
        pytest.skip("this machine has a GPU")
    args = ["--image", str(synthetic_slide), "--device", "gpu", "--out", str(tmp_path)]
    assert main(args) == 2
    assert "sees no GPU; use --device cpu" in capsys.readouterr().err
