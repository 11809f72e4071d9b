from __future__ import annotations

from pathlib import Path

import keras
import numpy as np
import pytest
from scipy.special import softmax

from tests.utils.inference.test_bundle import (
    CLASS_NAMES,
    CLASSIFIER_CARD,
    loaded_image,
    save_classifier_bundle,
)
from utils.errors import ConfigError, ImageDimensionError, ModelError
from utils.familiarity import (
    FamiliarityReference,
    familiarity_path,
    fit_familiarity,
    save_familiarity,
)
from utils.inference.bundle import load_bundle
from utils.inference.classifier import ClassificationResult, LesionClassifier
from utils.model_card import update_model_card


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> tuple[keras.Model, dict]:
    models_dir = tmp_path_factory.mktemp("models")
    save_classifier_bundle(models_dir)
    return load_bundle("tiny_classifier", models_dir=models_dir)


@pytest.fixture(scope="module")
def classifier(bundle: tuple[keras.Model, dict]) -> LesionClassifier:
    return LesionClassifier(*bundle)


@pytest.fixture
def images() -> list[np.ndarray]:
    rng = np.random.default_rng(5)
    return [
        rng.integers(0, 256, (40, 60), dtype=np.uint8),
        rng.integers(0, 256, (50, 30, 3), dtype=np.uint8),
        np.full((32, 32), 255, np.uint8),
    ]


def test_probabilities_sum_to_one_and_name_every_class(
    classifier: LesionClassifier, images: list[np.ndarray]
) -> None:
    results = classifier.predict(images)
    assert len(results) == 3
    for result in results:
        assert isinstance(result, ClassificationResult)
        assert list(result.probabilities) == CLASS_NAMES
        assert sum(result.probabilities.values()) == pytest.approx(1.0)
        assert result.predicted_class == max(result.probabilities, key=result.probabilities.get)
        assert result.confidence == max(result.probabilities.values())
        assert result.uncertainty is None and result.refer is None
    probabilities = classifier.predict_probabilities(images)
    assert probabilities.shape == (3, 3)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0)
    [single] = classifier.predict(loaded_image(images[0]))
    assert single.probabilities == pytest.approx(results[0].probabilities)


def test_temperature_changes_confidence_but_not_the_argmax(
    bundle: tuple[keras.Model, dict], images: list[np.ndarray]
) -> None:
    model, card = bundle
    sharp = LesionClassifier(model, {**card, "temperature": 0.2}).predict(images)
    plain = LesionClassifier(model, {key: v for key, v in card.items() if key != "temperature"})
    soft = plain.predict(images, temperature=5.0)
    for sharp_result, plain_result, soft_result in zip(
        sharp, plain.predict(images), soft, strict=True
    ):
        assert sharp_result.predicted_class == plain_result.predicted_class
        assert soft_result.predicted_class == plain_result.predicted_class
        assert sharp_result.confidence > plain_result.confidence > soft_result.confidence
    with pytest.raises(ConfigError, match="temperature must be a positive number"):
        plain.predict(images, temperature=0.0)


def test_models_without_logits_are_calibrated_from_log_probabilities(
    images: list[np.ndarray],
) -> None:
    keras.utils.set_random_seed(1)
    inputs = keras.Input((32, 32, 1))
    pooled = keras.layers.GlobalAveragePooling2D()(keras.layers.Conv2D(4, 3)(inputs))
    model = keras.Model(inputs, keras.layers.Dense(3, activation="softmax")(pooled))
    classifier = LesionClassifier(model, {**CLASSIFIER_CARD, "temperature": 2.0})
    raw = LesionClassifier(model, {**CLASSIFIER_CARD, "temperature": 1.0})
    expected = softmax(np.log(raw.predict_probabilities(images)) / 2.0, axis=1)
    np.testing.assert_allclose(classifier.predict_probabilities(images), expected, rtol=1e-5)


def test_uncertainty_adds_tta_entropy_and_referral(
    classifier: LesionClassifier, images: list[np.ndarray]
) -> None:
    plain = classifier.predict(images)
    uncertain = classifier.predict(images, with_uncertainty=True, n_augment=4)
    again = classifier.predict(images, with_uncertainty=True, n_augment=4)
    for plain_result, result, repeat in zip(plain, uncertain, again, strict=True):
        assert result.probabilities == pytest.approx(plain_result.probabilities)
        assert 0.0 <= result.uncertainty <= 1.0 and result.top_prob_std >= 0.0
        assert isinstance(result.refer, bool)
        assert repeat == result  # seeded: reproducible
        assert result.to_dict()["refer"] == result.refer
    assert classifier.predict([], with_uncertainty=True) == []


def test_rgb_models_accept_grayscale_and_bad_input_is_rejected(
    tmp_path: Path, images: list[np.ndarray]
) -> None:
    save_classifier_bundle(tmp_path, "rgb", channels=3)
    classifier = LesionClassifier.from_bundle(tmp_path / "rgb.keras")
    assert classifier.input_shape == (32, 32, 3)
    assert classifier.predict_probabilities(images).shape == (3, 3)
    with pytest.raises(ImageDimensionError, match="pass \\[image\\]"):
        classifier.predict(images[1])
    with pytest.raises(ConfigError, match="batch_size must be a positive integer"):
        LesionClassifier(classifier.model, classifier.card, batch_size=0)


def _reference_for(classifier: LesionClassifier, **options: object) -> FamiliarityReference:
    rng = np.random.default_rng(11)
    training = [rng.integers(60, 200, (32, 32), dtype=np.uint8) for _ in range(40)]
    return fit_familiarity(classifier.embed(training), n_components=4, **options)


def test_familiarity_is_read_from_the_bundle_and_added_on_request(
    tmp_path: Path, images: list[np.ndarray]
) -> None:
    path = save_classifier_bundle(tmp_path, "familiar")
    plain = LesionClassifier.from_bundle(path)
    assert plain.familiarity is None and plain.assess_familiarity(images) is None
    assert all(
        result.familiarity is None for result in plain.predict(images, with_familiarity=True)
    )
    features = plain.embed(images)
    assert features.shape[0] == 3 and features.ndim == 2
    assert plain.embed([]).shape == (0, features.shape[1])
    reference = _reference_for(plain, weights_fingerprint=plain.weights_fingerprint)
    save_familiarity(reference, familiarity_path(path))
    classifier = LesionClassifier.from_bundle(path)
    assert classifier.familiarity is not None
    results = classifier.predict(images, with_uncertainty=True, with_familiarity=True)
    expected = reference.assess(features)
    for result, assessed in zip(results, expected, strict=True):
        assert result.familiarity.distance == pytest.approx(assessed.distance, rel=1e-4)
        assert result.to_dict()["familiarity"]["unfamiliar"] == assessed.unfamiliar
    # Without the request the answers are unchanged and carry no familiarity.
    plain_results = classifier.predict(images, with_uncertainty=True)
    for result, without in zip(results, plain_results, strict=True):
        assert without.familiarity is None
        assert without.probabilities == pytest.approx(result.probabilities)
    assert classifier.assess_familiarity([]) == []
    # familiarity=None skips the file, e.g. to refit it.
    assert LesionClassifier.from_bundle(path, familiarity=None).familiarity is None


def test_a_reference_of_other_weights_or_size_or_a_missing_one_is_refused(
    tmp_path: Path, classifier: LesionClassifier
) -> None:
    stale = _reference_for(classifier, weights_fingerprint="0123456789abcdef")
    with pytest.raises(ModelError, match="fitted on weights 0123456789abcdef, not on this"):
        LesionClassifier(classifier.model, classifier.card, familiarity=stale)
    wrong_size = fit_familiarity(np.random.default_rng(0).normal(size=(30, 5)), n_components=2)
    with pytest.raises(ModelError, match="has 5 features but this classifier's penultimate"):
        LesionClassifier(classifier.model, classifier.card, familiarity=wrong_size)
    path = save_classifier_bundle(tmp_path, "card_says")
    # The card names a reference whose file was lost (not copied with the bundle).
    update_model_card("card_says", {"familiarity": {"file": "x"}}, models_dir=tmp_path)
    with pytest.raises(ModelError, match=r"card_says.familiarity.npz is missing next to it"):
        LesionClassifier.from_bundle(path)
