from __future__ import annotations

import numpy as np
import pytest
from scipy.special import softmax

from utils.calibration import (
    REFER_MAX_ENTROPY,
    REFER_MIN_CONFIDENCE,
    TTA_MAX_IMAGES_PER_CALL,
    TTAResult,
    apply_temperature,
    cross_fitted_probabilities,
    ece_sampling_floor,
    expected_calibration_error,
    fit_temperature,
    normalized_entropy,
    reliability_bins,
    should_refer,
    tta_predict,
)
from utils.errors import ConfigError


def _sample_labels(logits: np.ndarray, temperature: float, seed: int) -> np.ndarray:
    """Labels drawn from softmax(logits / temperature): calibrated at that temperature."""
    rng = np.random.default_rng(seed)
    probs = softmax(logits / temperature, axis=1)
    cumulative = probs.cumsum(axis=1)
    draws = rng.random((len(logits), 1))
    return np.minimum((draws > cumulative).sum(axis=1), logits.shape[1] - 1)


# ----------------------------------------------------------------------------- temperature


@pytest.mark.parametrize("true_temperature", [0.5, 2.0, 3.0])
def test_fit_temperature_recovers_known_temperature(true_temperature: float) -> None:
    logits = np.random.default_rng(0).normal(scale=4.0, size=(6000, 3))
    labels = _sample_labels(logits, true_temperature, seed=1)
    fitted = fit_temperature(logits, labels)
    assert fitted == pytest.approx(true_temperature, rel=0.1)
    raw_ece = expected_calibration_error(softmax(logits, axis=1), labels)
    calibrated_ece = expected_calibration_error(apply_temperature(logits, fitted), labels)
    assert calibrated_ece < raw_ece
    assert calibrated_ece < 0.03


def test_apply_temperature_is_stable_and_keeps_the_argmax() -> None:
    logits = np.array([[1000.0, 0.0, -1000.0], [1.0, 2.0, 3.0]])
    probs = apply_temperature(logits, 2.5)
    assert np.all(np.isfinite(probs))
    np.testing.assert_allclose(probs.sum(axis=1), 1.0)
    np.testing.assert_array_equal(probs.argmax(axis=1), logits.argmax(axis=1))
    np.testing.assert_allclose(apply_temperature(logits[1], 1.0), softmax(logits[1]))


@pytest.mark.parametrize("temperature", [0.0, -1.0, float("nan")])
def test_apply_temperature_rejects_bad_temperature(temperature: float) -> None:
    with pytest.raises(ConfigError, match="temperature"):
        apply_temperature(np.zeros((2, 3)), temperature)


# ----------------------------------------------------------------------------- ECE


def test_ece_exact_on_constructed_example() -> None:
    # Four predictions at confidence 0.9 (3 right) and two at 0.6 (1 right).
    probs = np.array(
        [[0.9, 0.1], [0.9, 0.1], [0.9, 0.1], [0.1, 0.9], [0.6, 0.4], [0.4, 0.6]],
    )
    # All labels 0: rows 0-2 right, row 3 wrong (predicts 1), row 4 right, row 5 wrong.
    labels = np.zeros(6, dtype=int)
    expected = (4 / 6) * abs(0.75 - 0.9) + (2 / 6) * abs(0.5 - 0.6)
    assert expected_calibration_error(probs, labels, n_bins=10) == pytest.approx(expected)
    # One bin: |overall accuracy - mean confidence|.
    one_bin = abs(4 / 6 - (4 * 0.9 + 2 * 0.6) / 6)
    assert expected_calibration_error(probs, labels, n_bins=1) == pytest.approx(one_bin)


def test_ece_zero_when_confident_and_right() -> None:
    probs = np.eye(3)[[0, 1, 2, 1]]
    assert expected_calibration_error(probs, np.array([0, 1, 2, 1])) == 0.0


def test_reliability_bins_put_edge_values_in_the_lower_bin() -> None:
    probs = np.array([[0.6, 0.4], [0.8, 0.2], [1.0, 0.0]])
    bins = reliability_bins(probs, np.array([0, 1, 0]), n_bins=5)
    np.testing.assert_array_equal(bins.counts, [0, 0, 1, 1, 1])
    np.testing.assert_allclose(bins.accuracy[2:], [1.0, 0.0, 1.0])
    assert np.isnan(bins.mean_confidence[0])


@pytest.mark.parametrize(
    ("probs", "labels", "kwargs", "message"),
    [
        (np.full((3, 2), 0.5), np.array([0, 1]), {}, "3 rows but labels has 2"),
        (np.full((2, 2), 0.5), np.array([0, 2]), {}, r"labels \[2\] are out of range"),
        (np.full((2, 2), 0.5), np.array([0, -1]), {}, "out of range"),
        (np.full(4, 0.5), np.array([0, 1, 0, 1]), {}, "2-D array"),
        (np.full((2, 2), 0.5), np.array([0.0, 1.0]), {}, "integer class indices"),
        (np.full((2, 2), 0.5), np.array([0, 1]), {"n_bins": 0}, "n_bins"),
        (np.array([[2.0, -1.0], [0.0, 3.0]]), np.array([0, 1]), {}, "not logits"),
        (np.zeros((0, 2)), np.zeros(0, dtype=int), {}, "empty"),
    ],
)
def test_ece_rejects_bad_input(probs, labels, kwargs: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        expected_calibration_error(probs, labels, **kwargs)


def _calibrated_set(n_images: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Probabilities and labels drawn from them: perfectly calibrated by construction."""
    logits = np.random.default_rng(seed).normal(0.0, 2.0, (n_images, 3))
    return softmax(logits, axis=1), _sample_labels(logits, 1.0, seed + 1)


def test_ece_floor_is_zero_for_certain_predictions() -> None:
    assert ece_sampling_floor(np.eye(3)[[0, 1, 2, 2]]) == (0.0, 0.0)


def test_ece_floor_shrinks_with_the_number_of_images() -> None:
    probs, _ = _calibrated_set(4000, seed=0)
    small, _ = ece_sampling_floor(probs[:300], n_draws=300)
    large, _ = ece_sampling_floor(probs, n_draws=300)
    assert small > 2 * large > 0.0
    # Sampling noise of a proportion falls as 1 / sqrt(n): about sqrt(4000 / 300) = 3.7x.
    assert 2.5 < small / large < 5.0


def test_calibrated_sets_mostly_fall_below_the_floor_p95_and_miscalibrated_do_not() -> None:
    within = 0
    for seed in range(40):
        probs, labels = _calibrated_set(300, seed=10 * seed)
        floor, floor_p95 = ece_sampling_floor(probs, n_draws=400, seed=seed)
        assert 0.0 < floor < floor_p95
        within += expected_calibration_error(probs, labels) <= floor_p95
    assert within >= 34  # about 95% of 40; a wrong floor (0, or far off) fails this
    probs, labels = _calibrated_set(300, seed=999)
    overconfident = softmax(np.log(probs) * 3.0, axis=1)
    _, floor_p95 = ece_sampling_floor(overconfident, n_draws=400)
    assert expected_calibration_error(overconfident, labels) > 2 * floor_p95


def test_ece_floor_is_reproducible_by_seed() -> None:
    probs, _ = _calibrated_set(200, seed=3)
    assert ece_sampling_floor(probs, seed=5) == ece_sampling_floor(probs, seed=5)


@pytest.mark.parametrize(
    ("probs", "kwargs", "message"),
    [
        (np.full((2, 2), 0.5), {"n_draws": 0}, "n_draws must be an integer >= 1; received 0"),
        (np.full((2, 2), 0.5), {"n_bins": 0}, "n_bins"),
        (np.full(4, 0.5), {}, "2-D array"),
        (np.float64(0.5), {}, "2-D array"),
        (np.array([[2.0, -1.0], [0.0, 3.0]]), {}, "not logits"),
        (np.zeros((0, 2)), {}, "empty"),
    ],
)
def test_ece_floor_rejects_bad_input(probs, kwargs: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        ece_sampling_floor(probs, **kwargs)


@pytest.mark.parametrize(
    ("logits", "labels", "message"),
    [
        (np.zeros((3, 2)), np.array([0, 1]), "must match"),
        (np.zeros((2, 3)), np.array([0, 3]), "out of range"),
        (np.zeros((2, 3, 1)), np.array([0, 1]), "2-D array"),
        (np.array([[np.nan, 0.0], [0.0, 1.0]]), np.array([0, 1]), "NaN"),
        (np.zeros((2, 1)), np.array([0, 0]), "at least 2 classes"),
    ],
)
def test_fit_temperature_rejects_bad_input(logits, labels, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        fit_temperature(logits, labels)


# ----------------------------------------------------------------------------- TTA


def _toy_predict(images: np.ndarray) -> np.ndarray:
    """Probabilities that depend on brightness and on left-right asymmetry."""
    width = images.shape[2]
    left = images[:, :, : width // 2].mean(axis=(1, 2, 3))
    right = images[:, :, width // 2 :].mean(axis=(1, 2, 3))
    logits = np.stack([10 * left, 10 * right, np.full(len(images), 3.0)], axis=1)
    return softmax(logits, axis=1)


@pytest.fixture
def images() -> np.ndarray:
    rng = np.random.default_rng(5)
    batch = rng.random((4, 40, 40, 1), dtype=np.float32) * 0.5
    batch[0, :, :20] += 0.5  # bright on the left: flips change its answer
    return batch


def test_tta_shapes_and_ranges(images: np.ndarray) -> None:
    result = tta_predict(_toy_predict, images, n_augment=6, seed=0)
    assert isinstance(result, TTAResult)
    assert result.mean_probs.shape == (4, 3)
    assert result.normalized_entropy.shape == (4,)
    assert result.top_prob_std.shape == (4,)
    assert result.pass_probs.shape == (6, 4, 3)
    np.testing.assert_allclose(result.mean_probs.sum(axis=1), 1.0)
    assert np.all((result.normalized_entropy >= 0) & (result.normalized_entropy <= 1))
    np.testing.assert_allclose(result.pass_probs[0], _toy_predict(images))
    np.testing.assert_array_equal(result.predicted, result.mean_probs.argmax(axis=1))
    # The left-bright image is the one whose answer moves under flips.
    assert result.top_prob_std.argmax() == 0


def test_tta_is_deterministic_and_batch_independent(images: np.ndarray) -> None:
    first = tta_predict(_toy_predict, images, seed=3)
    again = tta_predict(_toy_predict, images, seed=3)
    other = tta_predict(_toy_predict, images, seed=4)
    np.testing.assert_array_equal(first.pass_probs, again.pass_probs)
    assert not np.array_equal(first.pass_probs, other.pass_probs)
    part = tta_predict(_toy_predict, images[:2], seed=3)
    np.testing.assert_allclose(part.mean_probs, first.mean_probs[:2])


def test_tta_single_pass_is_plain_prediction(images: np.ndarray) -> None:
    result = tta_predict(_toy_predict, images, n_augment=1)
    np.testing.assert_allclose(result.mean_probs, _toy_predict(images))
    np.testing.assert_array_equal(result.top_prob_std, 0.0)


def test_tta_passes_augmented_images_in_range(images: np.ndarray) -> None:
    seen = []

    def recording_predict(batch: np.ndarray) -> np.ndarray:
        seen.append(batch.copy())
        return _toy_predict(batch)

    tta_predict(recording_predict, images, n_augment=5, seed=0)
    # Few images: the 5 passes arrive stacked in one call, the plain batch first.
    assert len(seen) == 1
    stack = seen[0]
    assert stack.shape == (5 * len(images), *images.shape[1:]) and stack.dtype == np.float32
    assert stack.min() >= 0 and stack.max() <= 1
    passes = np.split(stack, 5)
    np.testing.assert_array_equal(passes[0], images)
    assert any(not np.array_equal(batch, images) for batch in passes[1:])


def test_tta_passes_one_pass_per_call_when_the_stack_would_be_large(images: np.ndarray) -> None:
    many = np.repeat(images, -(-TTA_MAX_IMAGES_PER_CALL // len(images)), axis=0)
    sizes = []

    def recording_predict(batch: np.ndarray) -> np.ndarray:
        sizes.append(len(batch))
        return _toy_predict(batch)

    stacked = tta_predict(recording_predict, many, n_augment=3, seed=0)
    assert sizes == [len(many)] * 3
    few = tta_predict(_toy_predict, many[:1], n_augment=3, seed=0)
    np.testing.assert_allclose(few.pass_probs[:, 0], stacked.pass_probs[:, 0], atol=1e-12)


@pytest.mark.parametrize(
    ("predict", "batch", "kwargs", "message"),
    [
        (_toy_predict, np.zeros((2, 8, 8, 1), np.uint8), {}, "floats in"),
        (_toy_predict, np.full((2, 8, 8, 1), 2.0), {}, r"lie in \[0, 1\]"),
        (_toy_predict, np.zeros((8, 8, 1)), {}, r"\(N, H, W, C\)"),
        (_toy_predict, np.zeros((2, 8, 8, 1)), {"n_augment": 0}, "n_augment"),
        (lambda x: np.zeros((len(x), 3)) + 5.0, np.zeros((2, 8, 8, 1)), {}, "not logits"),
        (
            lambda x: np.full((1, 3), 1 / 3),
            np.zeros((2, 8, 8, 1)),
            {},
            "one row per input image, with N = 16",
        ),
    ],
)
def test_tta_rejects_bad_input(predict, batch, kwargs: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        tta_predict(predict, batch, **kwargs)


def test_normalized_entropy_bounds() -> None:
    probs = np.array([[1.0, 0.0, 0.0], [1 / 3, 1 / 3, 1 / 3], [0.5, 0.5, 0.0]])
    np.testing.assert_allclose(normalized_entropy(probs), [0.0, 1.0, np.log(2) / np.log(3)])


# ----------------------------------------------------------------------------- referral


def test_refer_rule_defaults_are_documented_constants() -> None:
    assert (REFER_MIN_CONFIDENCE, REFER_MAX_ENTROPY) == (0.6, 0.5)


def test_should_refer_low_confidence_or_high_entropy() -> None:
    probs = np.array(
        [
            [0.90, 0.05, 0.05],  # confident and stable: keep
            [0.50, 0.30, 0.20],  # low confidence: refer
            [0.90, 0.05, 0.05],  # confident but unstable under TTA: refer
            [0.60, 0.20, 0.20],  # exactly at the thresholds: keep
        ]
    )
    entropy = np.array([0.2, 0.2, 0.7, 0.5])
    np.testing.assert_array_equal(should_refer(probs, entropy), [False, True, True, False])
    np.testing.assert_array_equal(
        should_refer(probs, entropy, min_confidence=0.95, max_entropy=1.0), [True] * 4
    )


def test_should_refer_on_tta_output(images: np.ndarray) -> None:
    result = tta_predict(_toy_predict, images)
    referred = should_refer(result.mean_probs, result.normalized_entropy)
    assert referred.shape == (4,) and referred.dtype == bool


@pytest.mark.parametrize(
    ("entropy", "kwargs", "message"),
    [
        (np.zeros(3), {}, "normalized_entropy"),
        (np.zeros(2), {"min_confidence": 1.5}, "min_confidence"),
        (np.zeros(2), {"max_entropy": -0.1}, "max_entropy"),
    ],
)
def test_should_refer_rejects_bad_input(entropy, kwargs: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        should_refer(np.full((2, 3), 1 / 3), entropy, **kwargs)


# ----------------------------------------------------------------------------- cross-fitting


def _overconfident_logits(count: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 3, count)
    logits = rng.normal(0, 1, (count, 3))
    logits[np.arange(count), labels] += 1.0
    return logits * 4.0, labels  # 4x too sharp: the fitted temperature is about 4


def test_cross_fitting_scales_each_half_with_the_other_halfs_temperature() -> None:
    logits, labels = _overconfident_logits(400, 0)
    groups = [f"g{index // 2}" for index in range(400)]
    probs = cross_fitted_probabilities(logits, labels, groups, seed=1)
    first_half = np.random.default_rng(1).permutation(np.unique(groups))[:100]
    in_first = np.isin(groups, first_half)
    other_t = fit_temperature(logits[~in_first], labels[~in_first])
    np.testing.assert_allclose(probs[in_first], apply_temperature(logits[in_first], other_t))
    assert 2.5 < other_t < 6.0
    np.testing.assert_allclose(probs.sum(axis=1), 1.0)


def test_cross_fitted_ece_is_not_better_than_in_sample() -> None:
    logits, labels = _overconfident_logits(300, 3)
    groups = [str(index) for index in range(300)]
    in_sample = apply_temperature(logits, fit_temperature(logits, labels))
    held_out = cross_fitted_probabilities(logits, labels, groups)
    assert (
        expected_calibration_error(held_out, labels)
        >= expected_calibration_error(in_sample, labels) - 0.02
    )
    assert expected_calibration_error(held_out, labels) < expected_calibration_error(
        softmax(logits, axis=1), labels
    )


def test_cross_fitting_needs_one_group_per_image_and_two_groups() -> None:
    logits, labels = _overconfident_logits(10, 0)
    with pytest.raises(ConfigError, match="one entry per image; received 3 for 10 images"):
        cross_fitted_probabilities(logits, labels, ["a", "b", "c"])
    with pytest.raises(ConfigError, match="at least 2 groups; received 1"):
        cross_fitted_probabilities(logits, labels, ["a"] * 10)
