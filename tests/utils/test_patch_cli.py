"""`python -m utils.train patch` and `python -m utils.evaluate patch`, end to end."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tests.utils.training.patch_folders import write_breakhis_folder, write_pcam_folder
from utils import evaluate, train
from utils.inference.bundle import load_bundle

# The keys the ultrasound classifier evaluation writes, and the patch extras.
CLASSIFIER_KEYS = {
    "n",
    "accuracy",
    "balanced_accuracy",
    "macro_auc",
    "ece",
    "per_class",
    "confusion_matrix",
    "ci95",
    "per_image",
    "model",
    "data",
    "figures",
}


def _train(args: list[str]) -> int:
    return train.main(["patch", *args])


@pytest.mark.slow
def test_train_then_evaluate_with_features(tmp_path: Path, capsys) -> None:
    data = write_pcam_folder(tmp_path / "pcam", [0, 1] * 5)
    out = tmp_path / "run"
    code = _train(
        [
            "--dataset",
            "pcam",
            "--data",
            str(data),
            "--arch",
            "compact_cnn",
            "--image-size",
            "32",
            "--epochs",
            "1",
            "--batch-size",
            "4",
            "--no-tta",
            "--out",
            str(out),
            "--cache-dir",
            str(tmp_path / "cache"),
        ]
    )
    assert code == 0
    bundle = out / "final" / "pcam_patch_classifier.keras"
    _, card = load_bundle(bundle)
    assert card["input_shape"] == [32, 32, 3] and card["calibration"].startswith("none")

    report_path = tmp_path / "eval" / "report.json"
    code = evaluate.main(
        [
            "patch",
            "--data",
            str(data),
            "--json",
            str(report_path),
            "--model",
            str(bundle),
            "--features",
            str(tmp_path / "eval" / "features.npy"),
        ]
    )
    assert code == 0
    assert "10 images: accuracy" in capsys.readouterr().out
    report = json.loads(report_path.read_text())
    assert set(report) >= CLASSIFIER_KEYS | {"auc_tumour", "features"}
    assert report["model"]["name"] == "pcam_patch_classifier"
    assert np.load(tmp_path / "eval" / "features.npy").shape == (10, 192)


def test_evaluate_writes_the_report_and_features(tmp_path: Path, capsys) -> None:
    from tests.utils.evaluation.test_patch import tiny_classifier

    classifier = tiny_classifier(tmp_path / "models", ["benign", "malignant"])
    data = write_breakhis_folder(tmp_path / "breakhis")
    report_path = tmp_path / "report.json"
    args = ["patch", "--data", str(data), "--json", str(report_path)]
    args += ["--model", str(tmp_path / "models" / "tiny.keras")]
    code = evaluate.main([*args, "--features", str(tmp_path / "f.npy")])
    assert code == 0, capsys.readouterr().err
    report = json.loads(report_path.read_text())
    assert set(report) >= CLASSIFIER_KEYS | {"auc_malignant", "positive_class", "features"}
    assert report["model"]["input_shape"] == list(classifier.input_shape)
    assert report["grouping"] == "patient" and len(report["figures"]) == 6
    assert np.load(tmp_path / "f.npy").shape == (10, 32)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--dataset", "camelyon"], "Unknown patch dataset 'camelyon'"),
        (["--dataset", "pcam", "--subtypes"], "--subtypes needs subtype labels"),
        (["--dataset", "pcam", "--arch", "alexnet"], "Unknown classifier architecture"),
    ],
)
def test_train_bad_options_exit_2_before_reading_data(
    args: list[str], message: str, tmp_path: Path, capsys
) -> None:
    code = _train([*args, "--data", str(tmp_path / "missing"), "--out", str(tmp_path / "run")])
    assert code == 2
    assert message in capsys.readouterr().err


def test_train_on_an_empty_folder_exits_2(tmp_path: Path, capsys) -> None:
    (tmp_path / "empty").mkdir()
    code = _train(
        ["--dataset", "breakhis", "--data", str(tmp_path / "empty"), "--out", str(tmp_path / "r")]
    )
    assert code == 2
    assert "is empty" in capsys.readouterr().err


def test_evaluate_bad_inputs_exit_2(tmp_path: Path, capsys) -> None:
    breakhis = write_breakhis_folder(tmp_path / "breakhis")
    json_path = str(tmp_path / "r.json")
    code = evaluate.main(["patch", "--data", str(breakhis), "--json", json_path, "--dataset", "x"])
    assert code == 2 and "Unknown patch dataset 'x'" in capsys.readouterr().err
    busi_like = tmp_path / "busi" / "benign"
    busi_like.mkdir(parents=True)
    (busi_like / "benign (1).png").write_bytes(b"")
    code = evaluate.main(["patch", "--data", str(tmp_path / "busi"), "--json", json_path])
    assert code == 2 and "patch evaluation reads pcam, breakhis" in capsys.readouterr().err
    code = evaluate.main(
        ["patch", "--data", str(breakhis), "--json", json_path, "--model", "nothing_here"]
    )
    assert code == 2 and "No model file" in capsys.readouterr().err
