from __future__ import annotations

from pathlib import Path

import keras
import numpy as np
import pytest
from keras import layers

from utils.errors import ConfigError, ModelError
from utils.explain import explainer_for
from utils.models.classification import build_classifier, last_conv_layer_name, logits_model
from utils.models.ensemble import (
    ENSEMBLE_FEATURES_LAYER,
    assemble_ensemble,
    build_classifier_ensemble,
    member_prefix,
)

SHAPE = (32, 32, 1)


@pytest.fixture(scope="module")
def members() -> list[keras.Model]:
    keras.utils.set_random_seed(0)
    return [build_classifier("compact_cnn", input_shape=SHAPE, num_classes=3) for _ in range(3)]


@pytest.fixture(scope="module")
def batch() -> np.ndarray:
    return np.random.default_rng(0).uniform(size=(4, *SHAPE)).astype(np.float32)


def _logits(model: keras.Model, batch: np.ndarray) -> np.ndarray:
    return logits_model(model).predict(batch, verbose=0)


def test_ensemble_logits_are_the_mean_of_the_members(members, batch) -> None:
    ensemble = assemble_ensemble(members)
    expected = np.mean([_logits(member, batch) for member in members], axis=0)
    np.testing.assert_allclose(_logits(ensemble, batch), expected, atol=1e-5)
    probabilities = ensemble.predict(batch, verbose=0)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-5)
    # One flat graph: every member layer is present under its prefix, names are unique.
    names = [layer.name for layer in ensemble.layers]
    assert len(names) == len(set(names))
    for index in range(3):
        assert f"{member_prefix(index)}stage4_relu2" in names
    assert last_conv_layer_name(ensemble) == ENSEMBLE_FEATURES_LAYER


def test_untrained_ensemble_takes_assembled_weights_and_round_trips(
    members, batch, tmp_path: Path
) -> None:
    ensemble = assemble_ensemble(members)
    fresh = build_classifier_ensemble("compact_cnn", 3, input_shape=SHAPE, num_classes=3)
    fresh.set_weights(ensemble.get_weights())
    np.testing.assert_allclose(_logits(fresh, batch), _logits(ensemble, batch), atol=1e-6)
    path = tmp_path / "ensemble.keras"
    ensemble.save(path)
    reloaded = keras.saving.load_model(path, compile=False)
    np.testing.assert_allclose(
        reloaded.predict(batch, verbose=0), ensemble.predict(batch, verbose=0), atol=1e-6
    )


def test_gradcam_explains_the_whole_ensemble(members, batch) -> None:
    ensemble = assemble_ensemble(members)
    explainer = explainer_for(ensemble)
    assert explainer.default_layer == ENSEMBLE_FEATURES_LAYER
    cam = explainer.explain(batch[0], 1)
    assert cam.shape == SHAPE[:2]
    assert cam.min() >= 0.0 and cam.max() <= 1.0


def _headed_model(strides: int) -> keras.Model:
    """A model with the shared head whose feature map is 32 / strides px."""
    inputs = keras.Input(SHAPE, name="input_image")
    x = layers.Conv2D(4, 3, strides=strides, padding="same", name="features")(inputs)
    x = layers.GlobalAveragePooling2D(name="head_pool")(x)
    x = layers.Dropout(0.1, name="head_dropout")(x)
    logits = layers.Dense(3, name="logits")(x)
    return keras.Model(inputs, layers.Softmax(name="probabilities")(logits))


def test_bad_members_are_refused(members) -> None:
    with pytest.raises(ConfigError, match=r"at least 2 members; received 1"):
        assemble_ensemble(members[:1])
    with pytest.raises(ConfigError, match=r"at least 2 members; received 1"):
        build_classifier_ensemble("compact_cnn", 1, input_shape=SHAPE)
    with pytest.raises(ConfigError, match=r"valid names"):
        build_classifier_ensemble("alexnet", 2, input_shape=SHAPE)
    other_size = build_classifier("compact_cnn", input_shape=(48, 48, 1), num_classes=3)
    with pytest.raises(
        ModelError, match=r"one input shape; received \[\(32, 32, 1\), \(48, 48, 1\)\]"
    ):
        assemble_ensemble([members[0], other_size])
    two_classes = build_classifier("compact_cnn", input_shape=SHAPE, num_classes=2)
    with pytest.raises(ModelError, match=r"one class count; received \[2, 3\]"):
        assemble_ensemble([members[0], two_classes])
    with pytest.raises(ModelError, match=r"one spatial size.*\(8, 8\).*\(16, 16\)"):
        assemble_ensemble([_headed_model(2), _headed_model(4)])
    inputs = keras.Input(SHAPE)
    headless = keras.Model(inputs, layers.Dense(3)(layers.Flatten()(inputs)), name="bare")
    with pytest.raises(ModelError, match=r"member 1 \('bare'\) lacks the shared classifier head"):
        assemble_ensemble([members[0], headless])
