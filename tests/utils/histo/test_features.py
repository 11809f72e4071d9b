"""Pooled CNN features of patches (utils.histo.features)."""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np
import pytest

from tests.utils.training.patch_folders import he_patch
from utils.errors import ConfigError, ImageDimensionError, InvalidImageError, ModelError
from utils.histo.features import extract_features, feature_model
from utils.inference.classifier import LesionClassifier
from utils.model_card import save_model_bundle
from utils.models.classification import build_compact_cnn


@pytest.fixture(scope="module")
def model() -> keras.Model:
    keras.utils.set_random_seed(0)
    return build_compact_cnn((32, 32, 3), num_classes=2, base_filters=8)


@pytest.fixture(scope="module")
def patches() -> np.ndarray:
    rng = np.random.default_rng(0)
    return np.stack([he_patch(rng, 32, tumour=index % 2 == 1) for index in range(5)])


def test_features_are_pooled_deterministic_and_patch_specific(model, patches) -> None:
    features = extract_features(model, patches, batch_size=2)
    assert features.shape == (5, 64) and features.dtype == np.float32  # 8 * 2**3 channels
    # Bit-identical on a repeat; batching changes only the float summation order.
    np.testing.assert_array_equal(features, extract_features(model, patches, batch_size=2))
    np.testing.assert_allclose(
        features, extract_features(model, patches, batch_size=5), rtol=1e-4, atol=1e-6
    )
    assert np.isfinite(features).all()
    distances = np.abs(features[:, None] - features[None]).sum(axis=-1)
    assert (distances[~np.eye(5, dtype=bool)] > 1e-4).all()  # every pair differs


def test_a_list_of_patches_gives_the_same_features(model, patches) -> None:
    np.testing.assert_array_equal(
        extract_features(model, list(patches)), extract_features(model, patches)
    )


def test_a_spatial_layer_is_global_average_pooled(model, patches) -> None:
    features = extract_features(model, patches, layer="stage3_relu2")
    assert features.shape == (5, 32)
    spatial = keras.Model(model.inputs, model.get_layer("stage3_relu2").output)
    expected = np.asarray(spatial([patches.astype(np.float32) / 255.0], training=False)).mean(
        axis=(1, 2)
    )
    np.testing.assert_allclose(features, expected, rtol=1e-4, atol=1e-5)


def test_feature_model_defaults_to_the_head_pool(model) -> None:
    assert feature_model(model).output_shape == (None, 64)


def test_features_from_a_bundle_and_a_classifier_agree(model, patches, tmp_path: Path) -> None:
    card = {
        "task": "classification",
        "architecture": "compact_cnn",
        "input_shape": [32, 32, 3],
        "class_names": ["normal", "tumour"],
    }
    path = save_model_bundle(model, "tiny_patch", card, models_dir=tmp_path)
    from_path = extract_features(path, patches)
    from_classifier = extract_features(LesionClassifier.from_bundle(path), patches)
    np.testing.assert_allclose(from_path, from_classifier, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(from_path, extract_features(model, patches), rtol=1e-5, atol=1e-6)


def test_unknown_layer_is_rejected(model, patches) -> None:
    with pytest.raises(ConfigError, match="Layer 'fc7' is not in model"):
        extract_features(model, patches, layer="fc7")


def test_patches_of_another_size_are_rejected(model) -> None:
    with pytest.raises(ImageDimensionError, match=r"\(96, 96, 3\).*takes \(32, 32, 3\)"):
        extract_features(model, np.zeros((2, 96, 96, 3), np.uint8))


def test_float_patches_are_rejected(model) -> None:
    with pytest.raises(InvalidImageError, match="must be uint8"):
        extract_features(model, np.zeros((2, 32, 32, 3), np.float32))


def test_empty_input_is_rejected(model) -> None:
    with pytest.raises(ImageDimensionError, match="non-empty"):
        extract_features(model, np.zeros((0, 32, 32, 3), np.uint8))


def test_bad_batch_size_and_model_argument_are_rejected(model, patches) -> None:
    with pytest.raises(ConfigError, match="batch_size must be a positive integer"):
        extract_features(model, patches, batch_size=0)
    with pytest.raises(ConfigError, match="model_or_bundle must be"):
        extract_features(42, patches)


def test_missing_bundle_is_rejected(patches, tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="No model file"):
        extract_features(tmp_path / "nothing.keras", patches)
