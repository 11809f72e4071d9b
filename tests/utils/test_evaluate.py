from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from tests.utils.inference.test_bundle import (
    save_classifier_bundle,
    save_segmenter_bundle,
    write_busi_folder,
)
from utils.evaluate import main

SEGMENTATION_KEYS = {
    "n",
    "dice_mean",
    "iou_mean",
    "hd95_mean",
    "per_class",
    "normal_false_positive_rate",
    "ci95",
    "per_image",
    "model",
    "data",
    "figures",
}
CLASSIFICATION_KEYS = {
    "n",
    "accuracy",
    "macro_auc",
    "auc_malignant",
    "ece",
    "per_class",
    "confusion_matrix",
    "ci95",
    "per_image",
    "model",
    "data",
    "figures",
    "skipped_labels",
}


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("evaluate")
    # An ancestor of the class folders, like ../shared/datasets/busi.
    write_busi_folder(root / "busi" / "Dataset_BUSI_with_GT")
    save_segmenter_bundle(root / "models")
    save_classifier_bundle(root / "models")
    save_classifier_bundle(root / "models", "two_class", class_names=["benign", "malignant"])
    return root


def test_segment_writes_the_report_and_the_case_panel(workspace: Path, tmp_path: Path) -> None:
    out = tmp_path / "reports" / "seg.json"
    model = workspace / "models" / "tiny_segmenter.keras"
    argv = ["segment", "--data", str(workspace / "busi"), "--json", str(out), "--model", str(model)]
    assert main([*argv, "--batch-size", "2"]) == 0
    report = json.loads(out.read_text())
    assert set(report) >= SEGMENTATION_KEYS
    assert report["n"] == 5 and report["n_lesion"] == 4 and report["n_normal"] == 1
    assert report["model"]["name"] == "tiny_segmenter" and report["model"]["threshold"] == 0.5
    assert report["data"] == str(workspace / "busi")
    assert set(report["per_class"]) == {"benign", "malignant"}
    assert report["per_image"][0]["source"] == "Dataset_BUSI_with_GT/benign/benign (1).png"
    [figure] = report["figures"]
    assert Path(figure) == out.parent / "segmentation_cases.png"
    with Image.open(figure) as panel:
        assert panel.width > 3 * 256


def test_classify_writes_the_report_and_figures(workspace: Path, tmp_path: Path) -> None:
    out = tmp_path / "cls.json"
    figures = tmp_path / "figures"
    argv = ["classify", "--data", str(workspace / "busi"), "--json", str(out)]
    model = workspace / "models" / "tiny_classifier.keras"
    assert main([*argv, "--model", str(model), "--figures", str(figures)]) == 0
    report = json.loads(out.read_text())
    assert set(report) >= CLASSIFICATION_KEYS
    assert report["n"] == 5 and report["skipped_labels"] == {}
    assert report["model"]["temperature"] == 1.0
    assert {row["label"] for row in report["per_image"]} == {"normal", "benign", "malignant"}
    assert report["figures"] and all(Path(path).is_file() for path in report["figures"])
    assert (figures / "roc_curves.png").is_file() and (figures / "confusion_matrix.html").is_file()


def test_classify_skips_labels_outside_the_model_classes(
    workspace: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "two.json"
    argv = ["classify", "--data", str(workspace / "busi"), "--json", str(out)]
    assert main([*argv, "--model", str(workspace / "models" / "two_class.keras")]) == 0
    report = json.loads(out.read_text())
    assert report["n"] == 4 and report["skipped_labels"] == {"normal": 1}
    assert "4 images: accuracy" in capsys.readouterr().out


def test_missing_data_and_unknown_model_exit_2_with_the_reason(
    workspace: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = str(tmp_path / "out.json")
    assert main(["segment", "--data", str(tmp_path / "nowhere"), "--json", out]) == 2
    assert capsys.readouterr().err.startswith("error: Dataset folder")
    data = str(workspace / "busi")
    assert main(["classify", "--data", data, "--json", out, "--model", "no_such_model"]) == 2
    error = capsys.readouterr().err
    assert error.startswith("error: No model file") and "no_such_model.keras" in error
    classifier = str(workspace / "models" / "tiny_classifier.keras")
    assert main(["segment", "--data", data, "--json", out, "--model", classifier]) == 2
    assert "a segmentation model is needed" in capsys.readouterr().err
    assert not Path(out).exists()


def test_smooth_blurs_what_the_model_sees_and_is_recorded(workspace: Path, tmp_path: Path) -> None:
    data, model = str(workspace / "busi"), str(workspace / "models" / "tiny_classifier.keras")
    reports = {}
    for smooth in ("0", "0.05"):
        out = tmp_path / f"cls_{smooth}.json"
        argv = ["classify", "--data", data, "--json", str(out), "--model", model]
        assert main([*argv, "--smooth", smooth, "--figures", str(tmp_path / smooth)]) == 0
        reports[smooth] = json.loads(out.read_text())
    assert reports["0"]["smooth_fraction"] == 0 and reports["0.05"]["smooth_fraction"] == 0.05
    sharp, smooth = (
        [row["probabilities"]["malignant"] for row in reports[key]["per_image"]]
        for key in ("0", "0.05")
    )
    assert sharp != pytest.approx(smooth, abs=1e-6)
    out = tmp_path / "seg.json"
    segmenter = str(workspace / "models" / "tiny_segmenter.keras")
    argv = ["segment", "--data", data, "--json", str(out), "--model", segmenter]
    assert main([*argv, "--smooth", "0.01"]) == 0
    assert json.loads(out.read_text())["smooth_fraction"] == 0.01


@pytest.mark.parametrize("task", ["segment", "classify"])
def test_a_smoothing_out_of_range_exits_2_with_the_reason(
    task: str, workspace: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out.json"
    argv = [task, "--data", str(workspace / "busi"), "--json", str(out), "--smooth", "0.2"]
    assert main(argv) == 2
    assert "smoothing strength must be a number from 0 to 0.05" in capsys.readouterr().err
    assert not out.exists()
