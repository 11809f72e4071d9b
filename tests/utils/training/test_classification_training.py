from __future__ import annotations

import csv
import json
import time
from pathlib import Path

import keras
import numpy as np
import pytest

from utils.augment_config import AugmentConfig
from utils.errors import ConfigError, ModelError
from utils.labels import ULTRASOUND_CLASSES, encode_labels
from utils.models.classification import build_classifier
from utils.training import classification
from utils.training.arrays import TrainingArrays
from utils.training.classification import (
    CV_SUMMARY_KEYS,
    ClassifierTrainConfig,
    balanced_class_weights,
    check_classifier_config,
    cross_validate_classifier,
    train_classifier,
    train_final_classifier,
)
from utils.training.common import fold_finished, grouped_cv_folds, make_feeds, write_json

# 6 normal, 14 benign, 10 malignant: imbalanced on purpose; pairs share a patient.
_COUNTS = {"normal": 6, "benign": 14, "malignant": 10}
NO_AUGMENT = AugmentConfig(enabled=False)
TINY = {
    "arch": "compact_cnn",
    "image_size": 32,
    "batch_size": 8,
    "patience": 3,
    "dropout": 0.1,
    "augment": AugmentConfig(elastic_probability=0.0),
}


@pytest.fixture
def cls_arrays() -> TrainingArrays:
    """30 synthetic 32x32 gray images whose class shows in a brightness pattern."""
    rng = np.random.default_rng(0)
    labels = [name for name, count in _COUNTS.items() for _ in range(count)]
    images = rng.integers(70, 110, (len(labels), 32, 32, 1)).astype(np.uint8)
    rows, cols = np.mgrid[0:32, 0:32]
    for index, label in enumerate(labels):
        centre_y, centre_x = 12 + index % 8, 10 + index % 10
        blob = (rows - centre_y) ** 2 + (cols - centre_x) ** 2 < 36
        if label == "benign":  # bright, smooth oval
            images[index, blob] = 200
        elif label == "malignant":  # dark with a vertical shadow below
            images[index, blob] = 15
            images[index, centre_y:, centre_x - 3 : centre_x + 3] = 30
    return TrainingArrays(
        images=images,
        masks=None,
        labels=labels,
        groups=[f"patient{index // 2}" for index in range(len(labels))],
        sources=[f"img{index}.png" for index in range(len(labels))],
        datasets=["synthetic"] * len(labels),
    )


def _history_rows(path: Path) -> list[dict[str, str]]:
    with path.open() as handle:
        return list(csv.DictReader(handle))


# ----------------------------------------------------------------------------- pieces


def test_pipelines_reexport_the_tensorflow_free_labels() -> None:
    from utils import labels, pipelines

    assert pipelines.ULTRASOUND_CLASSES is labels.ULTRASOUND_CLASSES
    assert pipelines.encode_labels is labels.encode_labels


def test_grouped_folds_never_split_a_group(cls_arrays: TrainingArrays) -> None:
    folds = grouped_cv_folds(cls_arrays, n_folds=3, seed=0)
    groups = np.array(cls_arrays.groups)
    seen = np.concatenate([val for _, val in folds])
    assert sorted(seen) == list(range(len(cls_arrays)))
    for train_idx, val_idx in folds:
        assert not set(groups[train_idx]) & set(groups[val_idx])
        # Stratified: every class is in every validation fold.
        assert {cls_arrays.labels[i] for i in val_idx} == set(ULTRASOUND_CLASSES)


def test_balanced_class_weights_follow_sklearn() -> None:
    labels = np.array([0] * 6 + [1] * 14 + [2] * 10)
    weights = balanced_class_weights(labels, 3)
    assert weights == pytest.approx({0: 30 / 18, 1: 30 / 42, 2: 30 / 30})
    assert np.mean([weights[label] for label in labels]) == pytest.approx(1.0)
    # An absent class still gets a (never used) key, over the classes present.
    assert balanced_class_weights(np.array([1, 1, 2]), 3) == pytest.approx(
        {0: 1.0, 1: 0.75, 2: 1.5}
    )


def test_class_weight_reweights_the_training_loss_of_the_feed() -> None:
    """Keras applies fit(class_weight=...) to our tf.data feed: loss = sum(w*l) / N."""
    rng = np.random.default_rng(1)
    images = rng.integers(0, 255, (12, 8, 8, 1)).astype(np.uint8)
    labels = np.array([0] * 2 + [1] * 7 + [2] * 3)
    weights = balanced_class_weights(labels, 3)
    feed, _ = make_feeds(
        images, labels, images, labels, batch_size=4, seed=0, augment_config=NO_AUGMENT
    )
    keras.utils.set_random_seed(0)
    inputs = keras.Input((8, 8, 1))
    model = keras.Model(
        inputs, keras.layers.Dense(3, activation="softmax")(keras.layers.Flatten()(inputs))
    )
    model.compile(optimizer=keras.optimizers.SGD(0.0), loss="sparse_categorical_crossentropy")
    probs = model.predict(images.astype(np.float32) / 255.0, verbose=0)
    per_example = -np.log(probs[np.arange(len(labels)), labels])
    sample_weights = np.array([weights[label] for label in labels])

    options = {"epochs": 1, "verbose": 0, "shuffle": False}
    plain = model.fit(feed, **options).history["loss"][0]
    weighted = model.fit(feed, class_weight=weights, **options).history["loss"][0]
    assert plain == pytest.approx(per_example.mean(), rel=1e-4)
    assert weighted == pytest.approx((sample_weights * per_example).mean(), rel=1e-4)
    assert weighted != pytest.approx(plain, rel=1e-3)


class _StopBeforeTrainingError(Exception):
    pass


@pytest.mark.parametrize("class_weighting", [True, False])
def test_train_classifier_passes_balanced_class_weights_to_fit(
    cls_arrays: TrainingArrays, tmp_path: Path, monkeypatch, class_weighting: bool
) -> None:
    passed = {}

    def spy_fit(self, *args, **kwargs):
        passed.update(kwargs)
        raise _StopBeforeTrainingError

    monkeypatch.setattr(keras.Model, "fit", spy_fit)
    config = ClassifierTrainConfig(class_weighting=class_weighting, **TINY)
    with pytest.raises(_StopBeforeTrainingError):
        train_classifier(cls_arrays, cls_arrays, config, tmp_path)
    expected = {0: 30 / 18, 1: 30 / 42, 2: 1.0} if class_weighting else None
    assert passed["class_weight"] == (pytest.approx(expected) if expected else None)
    assert passed["shuffle"] is False


def test_bad_configuration_and_labels_are_rejected(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"valid names: .*compact_cnn"):
        check_classifier_config(ClassifierTrainConfig(arch="alexnet"))
    with pytest.raises(ModelError, match="not found"):
        check_classifier_config(ClassifierTrainConfig(weights=str(tmp_path / "none.h5")))
    with pytest.raises(ConfigError, match="head_epochs"):
        check_classifier_config(ClassifierTrainConfig(head_epochs=0))
    with pytest.raises(ConfigError, match="'cyst'"):
        encode_labels(["benign", "cyst"], ULTRASOUND_CLASSES)
    assert ClassifierTrainConfig(weights=tmp_path / "w.h5").to_dict()["two_phase"] is True
    assert ClassifierTrainConfig().to_dict()["two_phase"] is False


def test_image_shape_must_match_the_configuration(
    cls_arrays: TrainingArrays, tmp_path: Path
) -> None:
    config = ClassifierTrainConfig(**{**TINY, "image_size": 64})
    with pytest.raises(ConfigError, match=r"\(32, 32, 1\).*\(64, 64, 1\)"):
        train_classifier(cls_arrays, cls_arrays, config, tmp_path)


def test_cv_rerun_skips_finished_folds_and_stops_at_the_deadline(
    cls_arrays: TrainingArrays, tmp_path: Path, monkeypatch
) -> None:
    def no_training(*args, **kwargs):
        raise AssertionError("a finished fold was trained again")

    monkeypatch.setattr(classification, "train_classifier", no_training)
    for fold, temperature in ((0, 1.5), (1, 2.5)):
        write_json(tmp_path / f"fold_{fold}" / "metrics.json", {"temperature": temperature})
    summary = cross_validate_classifier(
        cls_arrays, ClassifierTrainConfig(**TINY), tmp_path, n_folds=2
    )
    assert summary["summary"]["temperature"] == pytest.approx(
        {"mean": 2.0, "sd": 0.7071, "n": 2}, abs=1e-4
    )

    # A fold cut short by the deadline is run again; a passed deadline runs nothing.
    write_json(tmp_path / "fold_1" / "metrics.json", {"stopped_by_deadline": True})
    assert not fold_finished(tmp_path / "fold_1")
    late = ClassifierTrainConfig(deadline=time.time() - 1, **TINY)
    assert cross_validate_classifier(cls_arrays, late, tmp_path, n_folds=2)["n_folds"] == 2


# ----------------------------------------------------------------------------- training


def test_two_fold_cv_then_final_model(cls_arrays: TrainingArrays, tmp_path: Path) -> None:
    config = ClassifierTrainConfig(epochs=2, **TINY)
    summary = cross_validate_classifier(cls_arrays, config, tmp_path, n_folds=2)
    assert summary["n_folds"] == 2
    for fold in summary["folds"]:
        assert fold["n_train"] + fold["n_val"] == len(cls_arrays)
        assert fold["temperature"] > 0
        assert 0.0 <= fold["ece"] <= 1.0 and 0.0 <= fold["ece_before"] <= 1.0
        assert fold["referral_rule"] == {"min_confidence": 0.6, "max_entropy": 0.5, "tta_passes": 4}
        assert 0.0 <= fold["referral_rate"] <= 1.0
        assert fold["class_weights"]["normal"] > fold["class_weights"]["benign"]
        assert len(_history_rows(tmp_path / f"fold_{fold['fold']}" / "history.csv")) == 2
    saved = json.loads((tmp_path / "cv.json").read_text())
    assert set(CV_SUMMARY_KEYS) <= set(saved["summary"])
    assert saved["summary"]["temperature"]["n"] == 2
    assert saved["config"]["arch"] == "compact_cnn"

    model, temperature = train_final_classifier(cls_arrays, config, tmp_path / "final")
    assert temperature == pytest.approx(saved["summary"]["temperature"]["mean"])
    reloaded = keras.saving.load_model(tmp_path / "final" / "model.keras", compile=False)
    assert reloaded.dtype_policy.name == "float32"
    assert reloaded.output_shape == (None, 3)
    batch = cls_arrays.images[:4].astype(np.float32) / 255.0
    np.testing.assert_allclose(
        reloaded.predict(batch, verbose=0), model.predict(batch, verbose=0), atol=1e-5
    )
    card = json.loads((tmp_path / "final" / "final.json").read_text())
    assert card["class_names"] == list(ULTRASOUND_CLASSES)
    assert card["input_shape"] == [32, 32, 1]
    assert card["temperature"] == pytest.approx(temperature)


def test_two_phase_fine_tuning_from_a_local_weights_file(
    cls_arrays: TrainingArrays, tmp_path: Path
) -> None:
    keras.utils.set_random_seed(3)
    pretrained = build_classifier("compact_cnn", input_shape=(32, 32, 1), num_classes=3)
    weights_path = tmp_path / "pretrained.weights.h5"
    pretrained.save_weights(weights_path)
    config = ClassifierTrainConfig(
        weights=str(weights_path), head_epochs=1, epochs=1, evaluate_tta=False, **TINY
    )
    trained = train_classifier(cls_arrays, cls_arrays, config, tmp_path / "run")

    head_dir = tmp_path / "run" / "head"
    assert len(_history_rows(head_dir / "history.csv")) == 1
    assert len(_history_rows(tmp_path / "run" / "history.csv")) == 1
    assert trained.epochs_run == 2
    # Phase 1 froze the backbone: its conv kernels left the head phase unchanged...
    after_head = build_classifier("compact_cnn", input_shape=(32, 32, 1), num_classes=3)
    after_head.load_weights(head_dir / "head_final.weights.h5")
    head_kernel = after_head.get_layer("stem_conv").kernel.numpy()
    np.testing.assert_array_equal(head_kernel, pretrained.get_layer("stem_conv").kernel.numpy())
    assert not np.allclose(
        after_head.get_layer("logits").kernel.numpy(),
        pretrained.get_layer("logits").kernel.numpy(),
    )
    # ...phase 2 fine-tuned it, while BatchNorm stayed frozen throughout.
    model = trained.model
    assert not np.allclose(model.get_layer("stem_conv").kernel.numpy(), head_kernel)
    assert not model.get_layer("stem_bn").trainable
    np.testing.assert_array_equal(
        model.get_layer("stem_bn").moving_mean.numpy(),
        pretrained.get_layer("stem_bn").moving_mean.numpy(),
    )
