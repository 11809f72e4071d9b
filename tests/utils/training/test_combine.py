from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from tests.utils.training.conftest import make_tiny_arrays
from tests.utils.training.test_mask_guided import CLS_TINY, SEG_TINY
from utils.augment_config import AugmentConfig
from utils.errors import ConfigError
from utils.inference.classifier import LesionClassifier
from utils.models.classification import logits_model
from utils.models.segmentation import build_segmentation_model
from utils.train import main
from utils.training.classification import (
    ClassifierTrainConfig,
    cross_validate_classifier,
    train_final_classifier,
)
from utils.training.classifier_card import load_fold_model
from utils.training.combine import (
    calibrated_weights,
    combine_final,
    cross_validate_combined,
)
from utils.training.common import config_from_saved
from utils.training.mask_guided import (
    cross_validate_mask_guided,
    fold_probability_maps,
    mask_guided_images,
    ship_mask_guided,
    train_final_mask_guided,
)
from utils.training.segmentation import SegmenterTrainConfig, cross_validate_segmenter


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Finished 2-fold segmenter, plain and mask-guided runs (CV + final) on tiny data."""
    root = tmp_path_factory.mktemp("runs")
    arrays = make_tiny_arrays()
    seg_config = SegmenterTrainConfig(epochs=1, augment=AugmentConfig(enabled=False), **SEG_TINY)
    cross_validate_segmenter(arrays, seg_config, root / "seg", n_folds=2)
    config = ClassifierTrainConfig(**CLS_TINY)
    cross_validate_classifier(arrays, config, root / "plain", n_folds=2)
    train_final_classifier(arrays, config, root / "plain" / "final")
    cross_validate_mask_guided(arrays, config, root / "guided", root / "seg", n_folds=2)
    segmenter = build_segmentation_model("unet", input_shape=(32, 32, 1), base_filters=4, depth=2)
    train_final_mask_guided(arrays, segmenter, 0.5, config, root / "guided" / "final")
    return {"seg": root / "seg", "plain": root / "plain", "guided": root / "guided"}


def _cv(run: Path) -> dict:
    return json.loads((run / "cv.json").read_text())


def test_weights_average_calibrated_logits() -> None:
    assert calibrated_weights((1.0, 3.0)) == pytest.approx((0.75, 0.25))
    assert calibrated_weights((2.0, 2.0)) == pytest.approx((0.5, 0.5))
    with pytest.raises(ConfigError, match=r"Temperatures must be positive; received \[1.0, 0.0\]"):
        calibrated_weights((1.0, 0.0))


def test_combined_cv_final_and_shipped_bundle(runs: dict[str, Path], tmp_path: Path) -> None:
    arrays = make_tiny_arrays()
    out = tmp_path / "both"
    cv = cross_validate_combined(arrays, runs["plain"], runs["guided"], runs["seg"], out)
    assert cv["n_folds"] == 2 and cv["config"]["channels"] == 3
    assert cv["combined"]["plain_run"] == str(runs["plain"])
    fold = cv["folds"][0]
    plain_fold, guided_fold = (_cv(runs[name])["folds"][0] for name in ("plain", "guided"))
    assert [member["member"] for member in fold["members"]] == ["plain", "mask_guided"]
    assert fold["members"][0]["accuracy"] == plain_fold["accuracy"]
    expected = calibrated_weights((plain_fold["temperature"], guided_fold["temperature"]))
    assert [m["weight"] for m in fold["members"]] == pytest.approx(list(expected))

    # Fold 0's saved head is the weighted mean of the two fold models' logits.
    head = load_fold_model(ClassifierTrainConfig(), out / "fold_0")  # its saved model.keras
    guided_config = config_from_saved(ClassifierTrainConfig, cv["config"])
    plain = load_fold_model(replace(guided_config, channels=1), runs["plain"] / "fold_0")
    guided = load_fold_model(guided_config, runs["guided"] / "fold_0")
    maps, threshold = fold_probability_maps(arrays, runs["seg"], 0, fold["n_val"])
    stacked = mask_guided_images(arrays.images, maps, threshold).astype(np.float32) / 255.0
    mixed = logits_model(head).predict(stacked, verbose=0)
    parts = (
        logits_model(plain).predict(stacked[..., :1], verbose=0),
        logits_model(guided).predict(stacked, verbose=0),
    )
    np.testing.assert_allclose(mixed, expected[0] * parts[0] + expected[1] * parts[1], atol=1e-4)
    # Rerunning skips the finished folds.
    before = (out / "fold_0" / "metrics.json").read_text()
    cross_validate_combined(arrays, runs["plain"], runs["guided"], runs["seg"], out)
    assert (out / "fold_0" / "metrics.json").read_text() == before

    model = combine_final(runs["plain"], runs["guided"], out)
    assert model.input_shape == (None, 32, 32, 1)
    assert {"lesion_segmenter", "member0_channels", "ensemble_features"} <= {
        layer.name for layer in model.layers
    }
    final = json.loads((out / "final" / "final.json").read_text())
    assert final["temperature"] == pytest.approx(cv["summary"]["temperature"]["mean"])
    assert [m["member"] for m in final["combined"]["members"]] == ["plain", "mask_guided"]

    models_dir = tmp_path / "models"
    config = ClassifierTrainConfig(**CLS_TINY)
    path = ship_mask_guided(out, arrays, config, runs["seg"], name="both", models_dir=models_dir)
    card = json.loads(path.with_suffix(".json").read_text())
    assert card["architecture"].startswith("combined head: compact_cnn (grey-scale) + ")
    assert set(card["combined"]["member_cv"]) == {"plain", "mask_guided"}
    assert card["cv_pooled"]["metrics"]["n"] == len(arrays)
    classifier = LesionClassifier.from_bundle("both", models_dir=models_dir)
    assert classifier.is_mask_guided
    [result] = classifier.predict([arrays.images[0]], with_uncertainty=True)
    assert sum(result.probabilities.values()) == pytest.approx(1.0)
    assert classifier.cam_model.get_layer("ensemble_features") is not None


def test_mismatched_or_unfinished_runs_are_rejected(runs: dict[str, Path], tmp_path: Path) -> None:
    arrays = make_tiny_arrays()
    with pytest.raises(ConfigError, match=r"nowhere/cv.json is missing"):
        cross_validate_combined(arrays, tmp_path / "nowhere", runs["guided"], runs["seg"], tmp_path)
    with pytest.raises(ConfigError, match=r"takes 1 channel\(s\), not 3"):
        cross_validate_combined(arrays, runs["plain"], runs["plain"], runs["seg"], tmp_path)
    other = tmp_path / "other_seed"
    shutil.copytree(runs["plain"], other)
    cv = _cv(other)
    cv["config"]["seed"] = 7
    (other / "cv.json").write_text(json.dumps(cv))
    with pytest.raises(ConfigError, match=r"plain run's seed \(folds\) is 7 but the mask-guided"):
        cross_validate_combined(arrays, other, runs["guided"], runs["seg"], tmp_path / "o")
    other_data = tmp_path / "other_data"
    shutil.copytree(runs["plain"], other_data)
    metrics = json.loads((other_data / "fold_0" / "metrics.json").read_text())
    (other_data / "fold_0" / "metrics.json").write_text(json.dumps(metrics | {"n_val": 5}))
    with pytest.raises(ConfigError, match=r"Fold 0 of .*other_data held out 5 images but"):
        cross_validate_combined(arrays, other_data, runs["guided"], runs["seg"], tmp_path / "o1")
    by_site = tmp_path / "by_site"
    shutil.copytree(runs["plain"], by_site)
    (by_site / "fold_0" / "metrics.json").write_text(
        json.dumps(metrics | {"held_out_dataset": "a"})
    )
    with pytest.raises(ConfigError, match=r"by_site/fold_0 is a leave-one-dataset-out fold"):
        cross_validate_combined(arrays, by_site, runs["guided"], runs["seg"], tmp_path / "o4")
    unfinished = tmp_path / "unfinished"
    shutil.copytree(runs["guided"], unfinished)
    shutil.rmtree(unfinished / "final")
    with pytest.raises(ConfigError, match=r"final/model.keras is missing: run .* with --final"):
        combine_final(runs["plain"], unfinished, tmp_path / "o")
    (unfinished / "fold_1" / "best.weights.h5").unlink()
    with pytest.raises(ConfigError, match=r"Fold 1 has no weights"):
        cross_validate_combined(arrays, runs["plain"], unfinished, runs["seg"], tmp_path / "o2")
    with pytest.raises(ConfigError, match="is not a mask-guided model"):
        combine_final(runs["plain"], _plain_as_guided(runs, tmp_path), tmp_path / "o3")


def _plain_as_guided(runs: dict[str, Path], tmp_path: Path) -> Path:
    """A copy of the mask-guided run whose final model is the plain one."""
    fake = tmp_path / "fake_guided"
    shutil.copytree(runs["guided"], fake)
    shutil.copy(runs["plain"] / "final" / "model.keras", fake / "final" / "model.keras")
    return fake


def test_cli_combine_needs_folds_or_final(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    command = ["combine", "--arrays", str(tmp_path / "a.npz"), "--out", str(tmp_path / "o")]
    command += ["--plain-run", "p", "--mask-guided-run", "g", "--mask-guided-from", "s"]
    assert main(command) == 2
    assert "combine needs --folds and/or --final" in capsys.readouterr().err
    assert main([*command, "--folds"]) == 2
    assert "g/cv.json is missing" in capsys.readouterr().err
