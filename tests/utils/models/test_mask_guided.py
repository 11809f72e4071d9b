from __future__ import annotations

from pathlib import Path

import keras
import numpy as np
import pytest
from keras import layers

from utils.errors import ModelError
from utils.inference.classifier import LesionClassifier
from utils.models.classification import build_classifier, logits_model
from utils.models.mask_guided import (
    FRONT_END_OUTPUT,
    LesionView,
    build_mask_guided_classifier,
    build_mask_guided_front_end,
    lesion_view_pool_size,
    split_mask_guided,
)
from utils.models.segmentation import build_segmentation_model


@pytest.fixture(scope="module")
def tiny_segmenter() -> keras.Model:
    return build_segmentation_model("unet", input_shape=(32, 32, 1), base_filters=4, depth=2)


@pytest.fixture(scope="module")
def tiny_head() -> keras.Model:
    return build_classifier("compact_cnn", input_shape=(16, 16, 3), num_classes=3, base_filters=4)


def test_lesion_view_keeps_the_dilated_region_only() -> None:
    image = np.full((1, 12, 12, 1), 0.5, np.float32)
    probability = np.zeros((1, 12, 12, 1), np.float32)
    probability[0, 5, 5] = 0.9
    probability[0, 0, 11] = 0.4  # below the threshold
    view = keras.ops.convert_to_numpy(LesionView(0.5, 3)([image, probability]))[0, ..., 0]
    expected = np.zeros((12, 12), np.float32)
    expected[4:7, 4:7] = 0.5  # the 3x3 dilation of the one lesion pixel
    np.testing.assert_allclose(view, expected)
    restored = LesionView.from_config(LesionView(0.3, 5, name="v").get_config())
    assert (restored.threshold, restored.pool_size, restored.name) == (0.3, 5, "v")


def test_pool_size_is_odd_and_scales_with_the_head() -> None:
    assert lesion_view_pool_size(96) == 9 and lesion_view_pool_size(16) == 3
    assert all(lesion_view_pool_size(side) % 2 == 1 for side in range(8, 300, 7))


def test_front_end_stacks_image_probability_and_view(tiny_segmenter: keras.Model) -> None:
    front_end = build_mask_guided_front_end(tiny_segmenter, 16, 0.5)
    assert front_end.output_shape == (None, 16, 16, 3)
    batch = np.random.default_rng(0).uniform(0, 1, (2, 32, 32, 1)).astype(np.float32)
    stacked = front_end.predict(batch, verbose=0)
    # Channel 0 is the image shrunk 2x by averaging (exactly, for a whole factor).
    pooled = batch.reshape(2, 16, 2, 16, 2).mean(axis=(2, 4))
    np.testing.assert_allclose(stacked[..., 0], pooled, atol=1e-5)
    assert stacked[..., 1].min() >= 0.0 and stacked[..., 1].max() <= 1.0
    lesion = stacked[..., 2] > 0
    np.testing.assert_allclose(stacked[..., 2][lesion], stacked[..., 0][lesion], atol=1e-6)
    assert not front_end.get_layer("lesion_segmenter").trainable


def test_composed_model_reproduces_head_and_saves(
    tiny_segmenter: keras.Model, tiny_head: keras.Model, tmp_path: Path
) -> None:
    model = build_mask_guided_classifier(tiny_segmenter, tiny_head, 0.5)
    assert model.input_shape == (None, 32, 32, 1) and model.output_shape == (None, 3)
    names = [layer.name for layer in model.layers]
    # Head layers sit at the top level, where Grad-CAM and logits_model look for them.
    assert {FRONT_END_OUTPUT, "stage4_relu2", "logits", "lesion_segmenter"} <= set(names)
    batch = np.random.default_rng(1).uniform(0, 1, (3, 32, 32, 1)).astype(np.float32)
    front_end = build_mask_guided_front_end(tiny_segmenter, 16, 0.5)
    expected = tiny_head.predict(front_end.predict(batch, verbose=0), verbose=0)
    np.testing.assert_allclose(model.predict(batch, verbose=0), expected, atol=1e-5)
    assert logits_model(model).output_shape == (None, 3)
    model.save(tmp_path / "guided.keras")
    reloaded = keras.saving.load_model(tmp_path / "guided.keras", compile=False)
    np.testing.assert_allclose(reloaded.predict(batch, verbose=0), expected, atol=1e-5)


def test_a_one_channel_head_is_rejected(tiny_segmenter: keras.Model) -> None:
    head = build_classifier("compact_cnn", input_shape=(16, 16, 1), num_classes=3, base_filters=4)
    with pytest.raises(ModelError, match=r"square \(s, s, 3\) inputs; it takes \(16, 16, 1\)"):
        build_mask_guided_classifier(tiny_segmenter, head, 0.5)


def test_a_model_that_is_not_a_segmenter_is_rejected(tiny_head: keras.Model) -> None:
    with pytest.raises(ModelError, match=r"must map \(H, W, 1\) images.*\(16, 16, 3\) to \(3,\)"):
        build_mask_guided_front_end(tiny_head, 16, 0.5)


def test_a_branching_head_is_rejected(tiny_segmenter: keras.Model) -> None:
    inputs = keras.Input((16, 16, 3), name="input")
    left = layers.Conv2D(3, 3, padding="same", name="left")(inputs)
    right = layers.Conv2D(3, 1, name="right")(inputs)
    x = layers.Add(name="merge")([left, right])
    x = layers.GlobalAveragePooling2D(name="pool")(x)
    head = keras.Model(inputs, layers.Dense(3, activation="softmax", name="logits")(x))
    with pytest.raises(ModelError, match="not a chain of layers"):
        build_mask_guided_classifier(tiny_segmenter, head, 0.5)


def test_split_gives_front_end_and_head_that_compose_to_the_model(
    tiny_segmenter: keras.Model, tiny_head: keras.Model
) -> None:
    model = build_mask_guided_classifier(tiny_segmenter, tiny_head, 0.5)
    front_end, head = split_mask_guided(model)
    batch = np.random.default_rng(2).uniform(0, 1, (2, 32, 32, 1)).astype(np.float32)
    stacked = front_end.predict(batch, verbose=0)
    assert stacked.shape == (2, 16, 16, 3)
    np.testing.assert_allclose(
        head.predict(stacked, verbose=0), model.predict(batch, verbose=0), atol=1e-5
    )
    _, to_logits = split_mask_guided(model, to_logits=True)
    assert to_logits.layers[-1].name == "logits"
    assert split_mask_guided(tiny_head) is None  # a plain classifier


def test_classifier_runs_the_segmenter_once_and_augments_the_head_input(
    tiny_segmenter: keras.Model, tiny_head: keras.Model
) -> None:
    model = build_mask_guided_classifier(tiny_segmenter, tiny_head, 0.5)
    card = {
        "task": "classification",
        "architecture": "mask_guided_compact_cnn",
        "input_shape": [32, 32, 1],
        "class_names": ["normal", "benign", "malignant"],
        "temperature": 1.3,
    }
    classifier = LesionClassifier(model, card)
    images = [np.random.default_rng(seed).integers(0, 255, (40, 50), np.uint8) for seed in (3, 4)]
    plain = classifier.predict_probabilities(images)
    results = classifier.predict(images, with_uncertainty=True, n_augment=4)
    # Pass 0 is the unmodified image: the same answer as without uncertainty.
    for result, row in zip(results, plain, strict=True):
        np.testing.assert_allclose(list(result.probabilities.values()), row, atol=1e-5)
        assert 0.0 <= result.uncertainty <= 1.0 and result.refer is not None
