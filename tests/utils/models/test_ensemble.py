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
    SelectChannels,
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


def test_members_can_read_different_channels_with_weights(members, batch) -> None:
    keras.utils.set_random_seed(1)
    guided = build_classifier("compact_cnn", input_shape=(32, 32, 3), num_classes=3)
    shared = np.concatenate([batch, batch[..., ::-1] * 0.5, 1.0 - batch], axis=-1)
    mixed = assemble_ensemble(
        [members[0], guided], member_channels=[(0,), (0, 1, 2)], member_weights=[3.0, 1.0]
    )
    assert mixed.input_shape == (None, 32, 32, 3)
    assert isinstance(mixed.get_layer("member0_channels"), SelectChannels)
    assert "member1_channels" not in {layer.name for layer in mixed.layers}  # reads all
    expected = 0.75 * _logits(members[0], batch) + 0.25 * _logits(guided, shared)
    np.testing.assert_allclose(_logits(mixed, shared), expected, atol=1e-5)
    # A member may itself be an ensemble (its logits are one member's logits).
    nested = assemble_ensemble(
        [assemble_ensemble(members[:2]), guided], member_channels=[(0,), (0, 1, 2)]
    )
    inner = np.mean([_logits(member, batch) for member in members[:2]], axis=0)
    np.testing.assert_allclose(
        _logits(nested, shared), (inner + _logits(guided, shared)) / 2, atol=1e-5
    )
    assert last_conv_layer_name(nested) == ENSEMBLE_FEATURES_LAYER
    restored = SelectChannels.from_config(SelectChannels((2, 0), name="pick").get_config())
    assert (restored.channels, restored.name) == ((2, 0), "pick")


def test_bad_channel_maps_and_weights_are_refused(members) -> None:
    guided = build_classifier("compact_cnn", input_shape=(32, 32, 3), num_classes=3)
    pair = [members[0], guided]
    with pytest.raises(ConfigError, match=r"each of the 2 members; received 1 entries"):
        assemble_ensemble(pair, member_channels=[(0,)])
    with pytest.raises(ConfigError, match=r"Member 1 takes 3 channel\(s\).*received \[0, 1\]"):
        assemble_ensemble(pair, member_channels=[(0,), (0, 1)])
    with pytest.raises(ConfigError, match=r"Member 0 takes 1 channel\(s\).*received \[-1\]"):
        assemble_ensemble(pair, member_channels=[(-1,), (0, 1, 2)])
    other_size = build_classifier("compact_cnn", input_shape=(48, 48, 3), num_classes=3)
    with pytest.raises(ModelError, match=r"one image size; received \[\(32, 32\), \(48, 48\)\]"):
        assemble_ensemble([members[0], other_size], member_channels=[(0,), (0, 1, 2)])
    with pytest.raises(ConfigError, match=r"2 positive numbers; received \[1.0, 0.0\]"):
        assemble_ensemble(members[:2], member_weights=[1.0, 0.0])
    with pytest.raises(ConfigError, match=r"2 positive numbers; received \[1.0\]"):
        assemble_ensemble(members[:2], member_weights=[1.0])
