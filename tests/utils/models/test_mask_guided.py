from __future__ import annotations

from pathlib import Path

import keras
import numpy as np
import pytest
from keras import layers

from tests.utils.inference.test_bundle import SEGMENTER_CARD, loaded_image
from utils.analysis import AnalysisSettings, analyse_ultrasound, reusable_segmenter_map
from utils.errors import ConfigError, ModelError
from utils.explain import explainer_for
from utils.inference.classifier import LesionClassifier
from utils.inference.segmenter import LesionSegmenter
from utils.models.classification import build_classifier, logits_model
from utils.models.mask_guided import (
    FRONT_END_OUTPUT,
    LesionView,
    build_mask_guided_classifier,
    build_mask_guided_front_end,
    build_mask_guided_mixer,
    lesion_view_pool_size,
    mask_guided_feature_head,
    mask_guided_head_copy,
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


def test_a_branching_head_composes_splits_and_copies(tiny_segmenter: keras.Model) -> None:
    inputs = keras.Input((16, 16, 3), name="input")
    left = layers.Conv2D(3, 3, padding="same", name="left")(inputs)
    right = layers.Conv2D(3, 1, name="right")(inputs)
    x = layers.Add(name="merge")([left, right])
    x = layers.GlobalAveragePooling2D(name="pool")(x)
    head = keras.Model(inputs, layers.Dense(3, activation="softmax", name="logits")(x))
    model = build_mask_guided_classifier(tiny_segmenter, head, 0.5)
    assert {"left", "right", "merge", "logits"} <= {layer.name for layer in model.layers}
    batch = np.random.default_rng(4).uniform(0, 1, (2, 32, 32, 1)).astype(np.float32)
    stacked = build_mask_guided_front_end(tiny_segmenter, 16, 0.5).predict(batch, verbose=0)
    expected = head.predict(stacked, verbose=0)
    np.testing.assert_allclose(model.predict(batch, verbose=0), expected, atol=1e-5)
    front_end, split_head = split_mask_guided(model)
    np.testing.assert_allclose(
        split_head.predict(front_end.predict(batch, verbose=0), verbose=0), expected, atol=1e-5
    )
    copy = mask_guided_head_copy(model)
    assert copy.get_layer("merge") is not model.get_layer("merge")  # fresh layers
    np.testing.assert_allclose(copy.predict(stacked, verbose=0), expected, atol=1e-5)


def test_a_head_that_does_not_survive_composition_is_rejected(
    tiny_segmenter: keras.Model, tiny_head: keras.Model, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Simulate a replay that loses the trained weights (e.g. a layer whose config drops
    # state): the composed model must be refused, not shipped silently wrong.
    from utils.models import mask_guided

    def forget_weights(head: keras.Model, inputs: keras.KerasTensor) -> keras.KerasTensor:
        return keras.models.clone_model(head)(inputs)

    monkeypatch.setattr(mask_guided, "replay_copies", forget_weights)
    with pytest.raises(ModelError, match="changed its outputs"):
        build_mask_guided_classifier(tiny_segmenter, tiny_head, 0.5)


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


@pytest.fixture(scope="module")
def guided(tiny_segmenter: keras.Model, tiny_head: keras.Model) -> LesionClassifier:
    """A mask-guided classifier around the tiny segmenter."""
    return LesionClassifier(build_mask_guided_classifier(tiny_segmenter, tiny_head, 0.5), _card())


def _card() -> dict:
    return {
        "task": "classification",
        "architecture": "mask_guided_compact_cnn",
        "input_shape": [32, 32, 1],
        "class_names": ["normal", "benign", "malignant"],
        "temperature": 1.3,
    }


def test_mixer_turns_image_and_map_into_the_front_end_output(
    tiny_segmenter: keras.Model, tiny_head: keras.Model
) -> None:
    model = build_mask_guided_classifier(tiny_segmenter, tiny_head, 0.5)
    front_end, _ = split_mask_guided(model)
    mixer = build_mask_guided_mixer(model)
    batch = np.random.default_rng(5).uniform(0, 1, (2, 32, 32, 1)).astype(np.float32)
    probability = tiny_segmenter.predict(batch, verbose=0)
    mixed = mixer.predict(np.concatenate([batch, probability], axis=-1), verbose=0)
    np.testing.assert_allclose(mixed, front_end.predict(batch, verbose=0), atol=1e-5)
    assert build_mask_guided_mixer(tiny_head) is None


def test_head_copy_has_its_own_layers_and_the_same_answers(
    tiny_segmenter: keras.Model, tiny_head: keras.Model
) -> None:
    model = build_mask_guided_classifier(tiny_segmenter, tiny_head, 0.5)
    copy = mask_guided_head_copy(model)
    _, shared = split_mask_guided(model)
    stacked = np.random.default_rng(6).uniform(0, 1, (2, 16, 16, 3)).astype(np.float32)
    np.testing.assert_allclose(
        copy.predict(stacked, verbose=0), shared.predict(stacked, verbose=0), atol=1e-6
    )
    assert not {id(layer) for layer in copy.layers[1:]} & {id(layer) for layer in model.layers}
    assert mask_guided_head_copy(tiny_head) is None


def test_classifier_reuses_the_segmenters_maps_with_unchanged_answers(
    guided: LesionClassifier, tiny_segmenter: keras.Model
) -> None:
    classifier = guided
    segmenter = LesionSegmenter(tiny_segmenter, SEGMENTER_CARD)
    assert classifier.is_mask_guided
    assert classifier.can_reuse(segmenter.weights_fingerprint, segmenter.input_shape)
    assert not classifier.can_reuse(segmenter.weights_fingerprint, (64, 64, 1))
    images = [np.random.default_rng(seed).integers(0, 255, (40, 50), np.uint8) for seed in (7, 8)]
    maps = [segmenter.segment(image).model_probabilities for image in images]
    for uncertainty in (False, True):
        fresh = classifier.predict(images, with_uncertainty=uncertainty)
        reused = classifier.predict(
            images, with_uncertainty=uncertainty, segmenter_probabilities=maps
        )
        for a, b in zip(fresh, reused, strict=True):
            np.testing.assert_allclose(
                list(a.probabilities.values()), list(b.probabilities.values()), atol=1e-5
            )
            assert (a.uncertainty is None) == (not uncertainty)
    # The head's CAM on the reused head input equals the whole model's CAM.
    whole = explainer_for(classifier.model).explain(classifier._model_batch(images[:1])[0], 2)
    head = explainer_for(classifier.cam_model).explain(classifier.cam_input(images[0], maps[0]), 2)
    assert head.shape == (16, 16) and whole.shape == (32, 32)
    np.testing.assert_allclose(head, whole[::2, ::2], atol=0.15)


def test_other_segmenter_weights_are_not_reused(
    guided: LesionClassifier, tiny_segmenter: keras.Model
) -> None:
    classifier = guided
    other = build_segmentation_model("unet", input_shape=(32, 32, 1), base_filters=4, depth=2)
    other.set_weights([w + 0.01 for w in tiny_segmenter.get_weights()])
    segmenter = LesionSegmenter(other, SEGMENTER_CARD)
    image = loaded_image(np.random.default_rng(9).integers(0, 255, (32, 32), np.uint8))
    segmentation = segmenter.segment(image)
    assert reusable_segmenter_map(classifier, segmenter, segmentation) is None
    result = analyse_ultrasound(
        image, AnalysisSettings(), segmenter=segmenter, classifier=classifier
    )
    expected = classifier.predict([image])[0]
    np.testing.assert_allclose(
        list(result.classification.probabilities.values()),
        list(expected.probabilities.values()),
        atol=1e-5,
    )


def test_bad_segmenter_maps_are_rejected(guided: LesionClassifier, tiny_head: keras.Model) -> None:
    classifier = guided
    image = np.zeros((32, 32), np.uint8)
    with pytest.raises(ConfigError, match=r"one \(32, 32\) map per image: got \[\(16, 16\)\]"):
        classifier.predict([image], segmenter_probabilities=[np.zeros((16, 16))])
    with pytest.raises(ConfigError, match="for 2 image"):
        classifier.head_inputs([image, image], [np.zeros((32, 32))])
    plain = LesionClassifier(tiny_head, {**_card(), "input_shape": [16, 16, 3]})
    assert not plain.is_mask_guided and plain.cam_model is plain.model
    with pytest.raises(ConfigError, match="is not mask-guided"):
        plain.predict(
            [np.zeros((16, 16, 3), np.uint8)], segmenter_probabilities=[np.zeros((16, 16))]
        )
    with pytest.raises(ConfigError, match="is not mask-guided"):
        plain.cam_input(np.zeros((16, 16, 3), np.uint8), np.zeros((16, 16)))


def test_analysis_skips_the_embedded_segmenter_when_it_is_the_same(
    guided: LesionClassifier, tiny_segmenter: keras.Model, monkeypatch: pytest.MonkeyPatch
) -> None:
    classifier = guided
    segmenter = LesionSegmenter(tiny_segmenter, SEGMENTER_CARD)
    image = loaded_image(np.random.default_rng(10).integers(0, 255, (40, 40), np.uint8))
    expected = classifier.predict([image], with_uncertainty=True)[0]

    def second_segmenter_pass(_batch: np.ndarray) -> np.ndarray:
        raise AssertionError("the embedded segmenter ran again")

    monkeypatch.setattr(classifier, "_front_end", second_segmenter_pass)
    result = analyse_ultrasound(
        image, AnalysisSettings(), segmenter=segmenter, classifier=classifier
    )
    assert result.classification.probabilities == pytest.approx(expected.probabilities, abs=1e-5)
    assert result.classifier_cam is not None and result.classifier_cam.shape == (16, 16)


def test_features_of_a_mask_guided_classifier_are_the_heads_with_or_without_reused_maps(
    guided: LesionClassifier, tiny_segmenter: keras.Model, tiny_head: keras.Model
) -> None:
    segmenter = LesionSegmenter(tiny_segmenter, SEGMENTER_CARD)
    images = [np.random.default_rng(seed).integers(0, 255, (40, 50), np.uint8) for seed in (9, 10)]
    maps = [segmenter.segment(image).model_probabilities for image in images]
    fresh, reused = guided.embed(images), guided.embed(images, maps)
    np.testing.assert_allclose(fresh, reused, atol=1e-5)
    # They are what the head's logits layer reads: the logits follow from them.
    logits_layer = guided.model.get_layer("logits")
    logits = keras.ops.convert_to_numpy(logits_layer(fresh))
    _, to_logits = split_mask_guided(guided.model, to_logits=True)
    stacked = guided.head_inputs(images)
    np.testing.assert_allclose(logits, to_logits.predict(stacked, verbose=0), atol=1e-4)
    assert mask_guided_feature_head(guided.model).output_shape == (None, fresh.shape[1])
    assert mask_guided_feature_head(tiny_head) is None
