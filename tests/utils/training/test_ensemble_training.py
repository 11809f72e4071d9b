from __future__ import annotations

import json
from pathlib import Path

import keras
import numpy as np
import pytest

from utils.augment_config import AugmentConfig
from utils.errors import ConfigError
from utils.models.ensemble import ENSEMBLE_FEATURES_LAYER
from utils.train import main as train_main
from utils.training import ensemble as ensemble_training
from utils.training.arrays import TrainingArrays
from utils.training.classification import (
    ClassifierTrainConfig,
    build_architecture,
    check_classifier_config,
    cross_validate_classifier,
    train_final_classifier,
)
from utils.training.classifier_card import build_classifier_card, ensemble_card_section

CONFIG = ClassifierTrainConfig(
    arch="compact_cnn",
    image_size=32,
    batch_size=8,
    epochs=1,
    patience=2,
    dropout=0.1,
    evaluate_tta=False,
    augment=AugmentConfig(enabled=False),
    ensemble_members=2,
    seed=3,
)


def test_ensemble_cv_trains_one_member_per_seed_and_resumes(
    tiny_arrays: TrainingArrays, tmp_path: Path, monkeypatch
) -> None:
    summary = cross_validate_classifier(tiny_arrays, CONFIG, tmp_path, n_folds=2)
    for fold in summary["folds"]:
        assert [member["seed"] for member in fold["members"]] == [3, 4]
        assert all(0.0 <= member["accuracy"] <= 1.0 for member in fold["members"])
        fold_dir = tmp_path / f"fold_{fold['fold']}"
        assert (fold_dir / "member_1" / "member.json").is_file()
        # The fold's ensemble weights load into the ensemble the configuration builds.
        model = build_architecture(CONFIG, None)
        model.load_weights(fold_dir / "best.weights.h5")
        assert model.get_layer(ENSEMBLE_FEATURES_LAYER).output.shape[-1] == 2 * 192

    # A fold rerun reuses its finished members instead of training them again.
    def no_training(*args, **kwargs):
        raise AssertionError("a finished member was trained again")

    monkeypatch.setattr(ensemble_training, "train_classifier", no_training)
    (tmp_path / "fold_0" / "metrics.json").unlink()
    again = cross_validate_classifier(tiny_arrays, CONFIG, tmp_path, n_folds=2)
    assert again["folds"][0]["accuracy"] == pytest.approx(summary["folds"][0]["accuracy"])


def test_final_ensemble_is_exported_with_its_members(
    tiny_arrays: TrainingArrays, tmp_path: Path
) -> None:
    model, temperature = train_final_classifier(
        tiny_arrays, CONFIG, tmp_path / "final", temperature=1.3
    )
    assert temperature == 1.3
    final = json.loads((tmp_path / "final" / "final.json").read_text())
    assert final["ensemble_members"] == 2 and final["member_epochs_run"] == [1, 1]
    reloaded = keras.saving.load_model(tmp_path / "final" / "model.keras", compile=False)
    batch = tiny_arrays.images[:3].astype(np.float32) / 255.0
    np.testing.assert_allclose(
        reloaded.predict(batch, verbose=0), model.predict(batch, verbose=0), atol=1e-5
    )
    member_seeds = [
        json.loads((tmp_path / "final" / f"member_{m}" / "member.json").read_text())["seed"]
        for m in range(2)
    ]
    assert member_seeds == [3, 4]


def test_card_reports_the_members_beside_the_ensemble() -> None:
    folds = [
        {
            "fold": k,
            "accuracy": 0.8,
            "members": [
                {"seed": s, "accuracy": a, "auc_malignant": 0.7} for s, a in ((0, 0.6), (1, 0.7))
            ],
        }
        for k in range(2)
    ]
    cv = {
        "n_folds": 2,
        "folds": folds,
        "summary": {"accuracy": {"mean": 0.8, "sd": 0.0, "n": 2}, "temperature": {"mean": 1.0}},
    }
    final = {
        "architecture": "compact_cnn",
        "ensemble_members": 2,
        "config": {"seed": 0},
        "input_shape": [32, 32, 1],
        "class_names": ["normal", "benign", "malignant"],
        "temperature": 1.0,
        "n_images": 10,
        "epochs_run": 1,
        "class_weights": {},
    }
    section = ensemble_card_section(cv, final)
    assert section["seeds"] == [0, 1]
    assert section["single_member_cv"]["accuracy"]["mean"] == pytest.approx(0.65)
    assert section["single_member_cv"]["accuracy"]["n"] == 4
    assert section["ensemble_cv"]["accuracy"]["mean"] == 0.8
    card = build_classifier_card(cv, final, {}, {})
    assert card["architecture"] == "compact_cnn deep ensemble of 2 (logits averaged)"
    assert card["ensemble"] == section


def test_bad_ensemble_options_are_refused(tmp_path: Path, capsys) -> None:
    with pytest.raises(
        ConfigError, match=r"ensemble_members must be a positive integer; received 0"
    ):
        check_classifier_config(ClassifierTrainConfig(ensemble_members=0))
    code = train_main(
        [
            "classify",
            "--data",
            str(tmp_path),
            "--out",
            str(tmp_path / "run"),
            "--ensemble-members",
            "3",
            "--mask-guided-from",
            str(tmp_path),
        ]
    )
    assert code == 2
    assert (
        "--ensemble-members 3 cannot be combined with --mask-guided-from" in capsys.readouterr().err
    )


def test_members_differ_only_by_seed() -> None:
    member = ensemble_training.member_config(CONFIG, 1)
    assert (member.seed, member.ensemble_members, member.arch) == (4, 1, "compact_cnn")
