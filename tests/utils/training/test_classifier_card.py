from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from utils.errors import ConfigError
from utils.inference.classifier import LesionClassifier
from utils.train import main
from utils.training.arrays import TrainingArrays


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A 2-fold CV plus final training of a tiny compact CNN on 24 synthetic images."""
    root = tmp_path_factory.mktemp("ship")
    rng = np.random.default_rng(0)
    count = 24
    images = rng.integers(80, 200, (count, 32, 32, 1), dtype=np.uint8)
    labels = ["normal", "benign", "malignant"] * (count // 3)
    arrays = TrainingArrays(
        images=images,
        masks=None,
        labels=labels,
        groups=[f"p{index // 2}" for index in range(count)],
        sources=[f"{index}.png" for index in range(count)],
        datasets=["synthetic"] * count,
    )
    cache = root / "tiny.npz"
    arrays.save(cache)
    out = root / "run"
    common = ["--arrays", str(cache), "--out", str(out)]
    options = ["--arch", "compact_cnn", "--epochs", "1", "--batch-size", "8", "--no-tta"]
    assert main(["classify", *common, *options, "--folds", "2", "--final"]) == 0
    return cache, out


def test_shipping_writes_a_loadable_bundle_with_cv_and_plot_data(
    finished_run: tuple[Path, Path], tmp_path: Path
) -> None:
    cache, out = finished_run
    extra = tmp_path / "extra.json"
    extra.write_text(json.dumps({"status": "test", "limitations": ["tiny"]}))
    models = tmp_path / "models"
    command = ["ship-classifier", "--arrays", str(cache), "--out", str(out)]
    command += ["--models-dir", str(models), "--name", "tiny_cls", "--card-extra", str(extra)]
    assert main(command) == 0

    card = json.loads((models / "tiny_cls.json").read_text())
    assert card["status"] == "test" and card["limitations"] == ["tiny"]
    assert card["trained_from"].startswith("random initialisation")
    assert len(card["cv"]["folds"]) == 2
    pooled = card["cv_pooled"]
    assert pooled["metrics"]["n"] == 24  # every image predicted once, out of fold
    assert np.asarray(pooled["plots"]["confusion_matrix"]).sum() == 24
    assert set(pooled["plots"]["roc"]) == {"normal", "benign", "malignant"}
    assert sum(pooled["plots"]["reliability"]["counts"]) == 24
    assert card["temperature"] == pytest.approx(card["cv"]["summary"]["temperature"]["mean"])
    by_fold = pooled["fold_calibration"]
    assert [row["n"] for row in by_fold["folds"]] == [12, 12]
    assert all(row["ece_floor"] <= row["ece_floor_p95"] for row in by_fold["folds"])
    assert card["calibration"]["ece_floor_per_fold"] == by_fold["summary"]["ece_floor"]
    assert 0 <= card["calibration"]["folds_within_floor_p95"] <= 2
    assert all(fold["ece_floor"] is not None for fold in card["cv"]["folds"])
    assert "## " in (models / "tiny_cls.md").read_text()

    classifier = LesionClassifier.from_bundle("tiny_cls", models_dir=models)
    probabilities = classifier.predict_probabilities(np.zeros((40, 40), np.uint8))
    assert probabilities.shape == (1, 3)


def test_shipping_an_unfinished_run_is_refused(tmp_path: Path, capsys) -> None:
    cache = tmp_path / "none.npz"
    command = ["ship-classifier", "--arrays", str(cache), "--out", str(tmp_path / "empty")]
    assert main(command) == 2
    assert "cv.json is missing: --out must be a finished classify run" in capsys.readouterr().err


def test_shipping_without_fold_weights_is_refused(
    finished_run: tuple[Path, Path], tmp_path: Path
) -> None:
    from utils.training.classification import ClassifierTrainConfig
    from utils.training.classifier_card import out_of_fold_probabilities

    cache, _ = finished_run
    config = ClassifierTrainConfig(arch="compact_cnn", image_size=32, channels=1)
    with pytest.raises(ConfigError, match="Fold 0 has no weights"):
        out_of_fold_probabilities(TrainingArrays.load(cache), config, tmp_path, 2)


def test_a_leave_one_dataset_out_run_is_scored_per_site_but_never_shipped(
    tmp_path: Path, capsys
) -> None:
    rng = np.random.default_rng(1)
    count = 24
    arrays = TrainingArrays(
        images=rng.integers(80, 200, (count, 32, 32, 1), dtype=np.uint8),
        masks=None,
        labels=["normal", "benign", "malignant"] * (count // 3),
        groups=[f"p{index // 2}" for index in range(count)],
        sources=[f"{index}.png" for index in range(count)],
        datasets=["site-a"] * 12 + ["site-b"] * 12,
    )
    cache, out = tmp_path / "sites.npz", tmp_path / "run"
    arrays.save(cache)
    common = ["--arrays", str(cache), "--out", str(out)]
    options = ["--arch", "compact_cnn", "--epochs", "1", "--batch-size", "8", "--no-tta"]
    assert main(["classify", *common, *options, "--split", "dataset", "--final"]) == 0

    cv = json.loads((out / "cv.json").read_text())
    assert cv["split"] == "dataset"
    assert [fold["held_out_dataset"] for fold in cv["folds"]] == ["site-a", "site-b"]
    assert [fold["n_val"] for fold in cv["folds"]] == [12, 12]
    assert main(["ship-classifier", *common, "--models-dir", str(tmp_path / "models")]) == 2
    assert "is a leave-one-dataset-out fold (--split dataset)" in capsys.readouterr().err
    assert not (tmp_path / "models").exists()
