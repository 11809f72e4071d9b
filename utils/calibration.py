"""Calibration and uncertainty of the ultrasound classifier, with NumPy and SciPy only.

* Temperature scaling (Guo et al., 2017, "On Calibration of Modern Neural Networks"):
  one scalar ``T`` divides the logits so that probabilities match observed accuracy;
  fitted by minimising the negative log-likelihood on a held-out set. Accuracy is
  unchanged (the argmax is the same for every ``T > 0``).
* Top-label expected calibration error (ECE) with equal-width confidence bins, and its
  sampling floor: the ECE that a perfectly calibrated model would still show on a set of
  this size, because each bin's accuracy is estimated from few images.
* Test-time augmentation (TTA): the classifier sees ``n_augment`` mildly perturbed copies
  of each image; the spread of its answers measures how stable the prediction is.
* A "refer to a human" rule combining the calibrated confidence and the TTA entropy.

The defaults below are module constants so a model card can record them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from scipy.optimize import minimize_scalar
from scipy.special import log_softmax, softmax

from utils.errors import ConfigError

__all__ = [
    "DEFAULT_ECE_BINS",
    "DEFAULT_N_AUGMENT",
    "REFER_MAX_ENTROPY",
    "REFER_MIN_CONFIDENCE",
    "TEMPERATURE_BOUNDS",
    "TTA_BRIGHTNESS_DELTA",
    "TTA_CONTRAST_DELTA",
    "TTA_MAX_IMAGES_PER_CALL",
    "TTA_MAX_SHIFT_FRACTION",
    "ReliabilityBins",
    "TTAResult",
    "apply_temperature",
    "ece_sampling_floor",
    "expected_calibration_error",
    "fit_temperature",
    "normalized_entropy",
    "reliability_bins",
    "should_refer",
    "tta_predict",
    "validate_scores_and_labels",
]

#: Search range of the temperature; real classifiers land well inside it.
TEMPERATURE_BOUNDS = (0.05, 20.0)
#: Number of equal-width confidence bins of the ECE.
DEFAULT_ECE_BINS = 15
#: Forward passes of test-time augmentation (the first one on the unmodified image).
DEFAULT_N_AUGMENT = 8
#: Largest additive brightness change of a TTA pass, on the [0, 1] intensity scale.
TTA_BRIGHTNESS_DELTA = 0.05
#: Largest relative contrast change of a TTA pass (contrast factor in [0.9, 1.1]).
TTA_CONTRAST_DELTA = 0.1
#: Largest shift of a TTA pass, as a fraction of the image height / width.
TTA_MAX_SHIFT_FRACTION = 0.05
#: Most images :func:`tta_predict` hands ``predict_fn`` at once (passes stacked).
TTA_MAX_IMAGES_PER_CALL = 64
#: Refer when the calibrated top-class probability is below this.
REFER_MIN_CONFIDENCE = 0.6
#: Refer when the TTA predictive entropy (normalised to [0, 1]) is above this.
REFER_MAX_ENTROPY = 0.5

# Probabilities may drift this far from summing to 1 (float16 / float32 softmax).
_SUM_TOLERANCE = 1e-3


# ----------------------------------------------------------------------------- checks


def validate_scores_and_labels(
    scores: np.ndarray, labels: np.ndarray, *, name: str = "probs"
) -> tuple[np.ndarray, np.ndarray]:
    """Check an (N, C) score matrix against (N,) integer labels.

    Args:
        scores: Logits or probabilities, one row per example.
        labels: True class indices in ``[0, C)``.
        name: What ``scores`` is called in error messages.

    Returns:
        ``(scores as float64, labels as int64)``.

    Raises:
        ConfigError: Wrong dimensions, lengths, label type or range, non-finite scores.
    """
    scores = np.asarray(scores)
    labels = np.asarray(labels)
    if scores.ndim != 2 or scores.shape[1] < 1:
        raise ConfigError(
            f"{name} must be a 2-D array (n_examples, n_classes); received shape {scores.shape}."
        )
    if labels.ndim != 1 or not (labels.size == 0 or np.issubdtype(labels.dtype, np.integer)):
        raise ConfigError(
            f"labels must be a 1-D array of integer class indices; received shape "
            f"{labels.shape} of {labels.dtype}."
        )
    if len(labels) != len(scores):
        raise ConfigError(
            f"{name} has {len(scores)} rows but labels has {len(labels)} entries; they must "
            f"match one to one."
        )
    if len(labels) == 0:
        raise ConfigError(f"{name} and labels are empty; at least one example is needed.")
    n_classes = scores.shape[1]
    if labels.min() < 0 or labels.max() >= n_classes:
        bad = sorted({int(label) for label in labels if not 0 <= label < n_classes})
        raise ConfigError(
            f"labels {bad} are out of range; allowed class indices are 0 to {n_classes - 1} "
            f"({n_classes} columns in {name})."
        )
    scores = scores.astype(np.float64)
    if not np.all(np.isfinite(scores)):
        raise ConfigError(f"{name} contains NaN or infinite values.")
    return scores, labels.astype(np.int64)


def _check_probabilities(probs: np.ndarray, name: str = "probs") -> None:
    """Raise ConfigError unless every row of ``probs`` is a probability distribution."""
    if np.any(probs < -_SUM_TOLERANCE) or np.any(probs > 1 + _SUM_TOLERANCE):
        raise ConfigError(f"{name} must lie in [0, 1]; pass probabilities, not logits.")
    sums = probs.sum(axis=1)
    if not np.allclose(sums, 1.0, atol=_SUM_TOLERANCE):
        worst = float(sums[np.argmax(np.abs(sums - 1.0))])
        raise ConfigError(
            f"Each row of {name} must sum to 1 (a row sums to {worst:.4g}); pass softmax "
            f"probabilities, not logits (see apply_temperature)."
        )


def _check_positive_int(value: int, option: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
        raise ConfigError(f"{option} must be an integer >= 1; received {value!r}.")


# ----------------------------------------------------------------------------- temperature


def _mean_nll(logits: np.ndarray, labels: np.ndarray, temperature: float) -> float:
    log_probs = log_softmax(logits / temperature, axis=1)
    return float(-np.mean(log_probs[np.arange(len(labels)), labels]))


def fit_temperature(logits: np.ndarray, labels: np.ndarray) -> float:
    """Temperature minimising the negative log-likelihood of ``labels``.

    The search runs on ``log T`` (bounded to :data:`TEMPERATURE_BOUNDS`), where the NLL
    is smooth and the range is symmetric around ``T = 1``.

    Args:
        logits: (N, C) pre-softmax outputs on a held-out calibration set.
        labels: (N,) true class indices.

    Returns:
        The fitted temperature ``T > 0``; divide logits by it before the softmax.

    Raises:
        ConfigError: Bad shapes, lengths or labels, or fewer than 2 classes.
    """
    logits, labels = validate_scores_and_labels(logits, labels, name="logits")
    if logits.shape[1] < 2:
        raise ConfigError(f"logits need at least 2 classes; received shape {logits.shape}.")
    low, high = np.log(TEMPERATURE_BOUNDS)
    result = minimize_scalar(
        lambda log_t: _mean_nll(logits, labels, float(np.exp(log_t))),
        bounds=(low, high),
        method="bounded",
        options={"xatol": 1e-6},
    )
    return float(np.exp(result.x))


def apply_temperature(logits: np.ndarray, temperature: float) -> np.ndarray:
    """Calibrated probabilities ``softmax(logits / T)`` (numerically stable).

    Args:
        logits: (N, C) or (C,) pre-softmax outputs.
        temperature: ``T > 0`` from :func:`fit_temperature`.

    Returns:
        Probabilities of the same shape, float64.

    Raises:
        ConfigError: ``temperature`` is not a positive finite number.
    """
    if not np.isfinite(temperature) or temperature <= 0:
        raise ConfigError(f"temperature must be a positive number; received {temperature!r}.")
    return softmax(np.asarray(logits, dtype=np.float64) / temperature, axis=-1)


def cross_fitted_probabilities(
    logits: np.ndarray, labels: np.ndarray, groups: Sequence[str], *, seed: int = 0
) -> np.ndarray:
    """Temperature-scaled probabilities where no image calibrates its own prediction.

    Fitting the temperature on a validation fold and measuring the ECE on that same
    fold flatters the calibration. Here the fold's groups (patients or near-duplicate
    families) are split into two halves; each half is scaled with the temperature
    fitted on the other, so the ECE of the result is an honest held-out estimate.

    Args:
        logits: (N, C) pre-softmax outputs.
        labels: (N,) true class indices.
        groups: (N,) group of each image; a group never straddles the halves.
        seed: Seed of the split.

    Returns:
        (N, C) float64 probabilities.

    Raises:
        ConfigError: Bad shapes, or fewer than two groups.
    """
    logits, labels = validate_scores_and_labels(logits, labels, name="logits")
    groups = np.asarray(list(groups))
    if groups.shape != labels.shape:
        raise ConfigError(
            f"groups must have one entry per image; received {groups.shape[0]} for "
            f"{labels.shape[0]} images."
        )
    unique = np.unique(groups)
    if len(unique) < 2:
        raise ConfigError(f"cross-fitting needs at least 2 groups; received {len(unique)}.")
    first_half = np.random.default_rng(seed).permutation(unique)[: len(unique) // 2]
    in_first = np.isin(groups, first_half)
    probabilities = np.empty(logits.shape, np.float64)
    for fit_on, apply_to in ((in_first, ~in_first), (~in_first, in_first)):
        temperature = fit_temperature(logits[fit_on], labels[fit_on])
        probabilities[apply_to] = apply_temperature(logits[apply_to], temperature)
    return probabilities


# ----------------------------------------------------------------------------- ECE


@dataclass(frozen=True)
class ReliabilityBins:
    """Top-label confidence histogram behind the ECE and the reliability diagram.

    Attributes:
        edges: (n_bins + 1,) bin edges from 0 to 1; bin ``b`` is ``(edges[b], edges[b+1]]``
            (the first bin also holds confidence 0).
        counts: (n_bins,) examples per bin.
        mean_confidence: (n_bins,) mean top-class probability per bin, NaN when empty.
        accuracy: (n_bins,) share of correct top-class predictions, NaN when empty.
    """

    edges: np.ndarray
    counts: np.ndarray
    mean_confidence: np.ndarray
    accuracy: np.ndarray


def _confidence_bins(confidence: np.ndarray, n_bins: int) -> tuple[np.ndarray, np.ndarray]:
    """The bin edges, and each confidence's bin among ``n_bins`` equal-width bins."""
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    # side="left" on the inner edges puts a confidence equal to an edge in the lower
    # bin, giving the (low, high] bins of Guo et al.
    return edges, np.searchsorted(edges[1:-1], confidence, side="left")


def reliability_bins(
    probs: np.ndarray, labels: np.ndarray, n_bins: int = DEFAULT_ECE_BINS
) -> ReliabilityBins:
    """Bin examples by top-class probability into ``n_bins`` equal-width bins.

    Args:
        probs: (N, C) probabilities.
        labels: (N,) true class indices.
        n_bins: Number of bins (>= 1).

    Returns:
        The per-bin counts, mean confidence and accuracy.

    Raises:
        ConfigError: Bad shapes, labels, non-probabilities or ``n_bins < 1``.
    """
    _check_positive_int(n_bins, "n_bins")
    probs, labels = validate_scores_and_labels(probs, labels)
    _check_probabilities(probs)
    confidence = probs.max(axis=1)
    correct = (probs.argmax(axis=1) == labels).astype(np.float64)
    edges, bin_of = _confidence_bins(confidence, n_bins)
    counts = np.bincount(bin_of, minlength=n_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_confidence = np.bincount(bin_of, confidence, minlength=n_bins) / counts
        accuracy = np.bincount(bin_of, correct, minlength=n_bins) / counts
    return ReliabilityBins(edges, counts, mean_confidence, accuracy)


def expected_calibration_error(
    probs: np.ndarray, labels: np.ndarray, n_bins: int = DEFAULT_ECE_BINS
) -> float:
    """Top-label ECE: ``sum_b (n_b / N) * |accuracy_b - confidence_b|``.

    The sum runs over the equal-width confidence bins of :func:`reliability_bins`, whose
    Args and Raises apply here unchanged.

    Returns:
        The ECE in [0, 1]; 0 is perfect calibration.
    """
    bins = reliability_bins(probs, labels, n_bins)
    filled = bins.counts > 0
    gaps = np.abs(bins.accuracy[filled] - bins.mean_confidence[filled])
    return float(np.sum(bins.counts[filled] * gaps) / bins.counts.sum())


def ece_sampling_floor(
    probs: np.ndarray,
    n_bins: int = DEFAULT_ECE_BINS,
    n_draws: int = 1000,
    seed: int = 0,
) -> tuple[float, float]:
    """The ECE a perfectly calibrated model with these probabilities would show here.

    ECE is biased upwards on a finite set: a bin's accuracy is a proportion of a few
    images, so it misses the bin's confidence by chance even when the model is exactly
    calibrated. This simulates that case: each image's top-class prediction is right with
    probability equal to its own top-class confidence (the definition of perfect
    calibration), and the ECE of :func:`expected_calibration_error` is taken over
    ``n_draws`` such draws. A measured ECE below the returned 95th percentile is
    consistent with perfect calibration at this sample size; a goal set below the mean
    cannot be told apart from sampling noise.

    Args:
        probs: (N, C) probabilities, as passed to :func:`expected_calibration_error`.
        n_bins: Confidence bins (>= 1), as in the ECE being judged.
        n_draws: Simulated label sets (>= 1).
        seed: Seed of the simulation.

    Returns:
        ``(mean, 95th percentile)`` of the simulated ECE.

    Raises:
        ConfigError: ``probs`` is not an (N, C) probability matrix, or ``n_bins`` or
            ``n_draws`` is not a positive integer.
    """
    _check_positive_int(n_bins, "n_bins")
    _check_positive_int(n_draws, "n_draws")
    probs = np.asarray(probs)
    no_labels = np.zeros(probs.shape[0] if probs.ndim else 0, dtype=int)
    probs, _ = validate_scores_and_labels(probs, no_labels)
    _check_probabilities(probs)
    confidence = probs.max(axis=1)
    _, bin_of = _confidence_bins(confidence, n_bins)
    members = np.zeros((len(confidence), n_bins))
    members[np.arange(len(confidence)), bin_of] = 1.0
    rng = np.random.default_rng(seed)
    # ECE = sum over bins of |sum_i (correct_i - confidence_i)| / N; draw in chunks so
    # the (draws, N) matrix stays small on large sets.
    per_draw: list[np.ndarray] = []
    chunk = max(1, 2_000_000 // len(confidence))
    for start in range(0, n_draws, chunk):
        draws = min(chunk, n_draws - start)
        correct = rng.random((draws, len(confidence))) < confidence
        gaps = (correct - confidence) @ members
        per_draw.append(np.abs(gaps).sum(axis=1) / len(confidence))
    ece = np.concatenate(per_draw)
    return float(ece.mean()), float(np.quantile(ece, 0.95))


# ----------------------------------------------------------------------------- TTA


def normalized_entropy(probs: np.ndarray) -> np.ndarray:
    """Entropy of each row of ``probs`` divided by ``log C``, so it lies in [0, 1].

    0 means all the probability on one class; 1 means the uniform distribution.
    """
    probs = np.asarray(probs, dtype=np.float64)
    n_classes = probs.shape[-1]
    if n_classes < 2:
        return np.zeros(probs.shape[:-1])
    # 0 * log 0 = 0: clipping only guards the log.
    entropy = -np.sum(probs * np.log(np.clip(probs, 1e-12, 1.0)), axis=-1)
    return np.clip(entropy / np.log(n_classes), 0.0, 1.0)


@dataclass(frozen=True)
class TTAResult:
    """Predictions of :func:`tta_predict`.

    Attributes:
        mean_probs: (N, C) probabilities averaged over the passes.
        normalized_entropy: (N,) predictive entropy of ``mean_probs`` / log C, in [0, 1].
        top_prob_std: (N,) standard deviation over the passes of the probability of the
            top class of ``mean_probs``.
        pass_probs: (n_augment, N, C) probabilities of every pass; pass 0 is the
            unmodified image.
    """

    mean_probs: np.ndarray
    normalized_entropy: np.ndarray
    top_prob_std: np.ndarray
    pass_probs: np.ndarray

    @property
    def predicted(self) -> np.ndarray:
        """(N,) class index of the highest mean probability."""
        return self.mean_probs.argmax(axis=1)

    @property
    def confidence(self) -> np.ndarray:
        """(N,) highest mean probability."""
        return self.mean_probs.max(axis=1)


def _shift(images: np.ndarray, dy: int, dx: int) -> np.ndarray:
    """Translate (N, H, W, C) images by (dy, dx) pixels, filling with black.

    Black (0) is what surrounds the ultrasound sector, so no wrap-around artefact is
    introduced.
    """
    shifted = np.zeros_like(images)
    height, width = images.shape[1:3]
    src_y, dst_y = slice(max(0, -dy), height - max(0, dy)), slice(max(0, dy), height - max(0, -dy))
    src_x, dst_x = slice(max(0, -dx), width - max(0, dx)), slice(max(0, dx), width - max(0, -dx))
    shifted[:, dst_y, dst_x] = images[:, src_y, src_x]
    return shifted


def _augment(images: np.ndarray, flip: bool, rng: np.random.Generator) -> np.ndarray:
    """One TTA pass: the same mild transform applied to every image.

    Horizontal flip only: left-right is arbitrary in a breast ultrasound, whereas the
    vertical axis is depth (posterior shadowing and enhancement below a lesion are
    diagnostic), so images are never flipped upside down. Brightness and contrast
    changes mimic gain settings; shifts mimic probe placement.
    """
    out = images[:, :, ::-1] if flip else images
    contrast = 1.0 + rng.uniform(-TTA_CONTRAST_DELTA, TTA_CONTRAST_DELTA)
    brightness = rng.uniform(-TTA_BRIGHTNESS_DELTA, TTA_BRIGHTNESS_DELTA)
    mean = out.mean(axis=(1, 2, 3), keepdims=True)
    out = (out - mean) * contrast + mean + brightness
    max_dy = int(TTA_MAX_SHIFT_FRACTION * images.shape[1])
    max_dx = int(TTA_MAX_SHIFT_FRACTION * images.shape[2])
    dy, dx = rng.integers(-max_dy, max_dy + 1), rng.integers(-max_dx, max_dx + 1)
    out = _shift(out, int(dy), int(dx))
    return np.clip(out, 0.0, 1.0).astype(images.dtype)


def tta_predict(
    predict_fn: Callable[[np.ndarray], np.ndarray],
    images: np.ndarray,
    n_augment: int = DEFAULT_N_AUGMENT,
    seed: int = 0,
) -> TTAResult:
    """Predict with test-time augmentation and measure the spread of the answers.

    Pass 0 is the unmodified batch. Every later pass draws a random contrast factor in
    ``1 ± TTA_CONTRAST_DELTA`` (about the image mean), a brightness offset of at most
    :data:`TTA_BRIGHTNESS_DELTA` and a shift of at most :data:`TTA_MAX_SHIFT_FRACTION` of
    the size (black fill), then clips to [0, 1]; odd passes are also mirrored
    left-right, so both orientations are equally represented however few passes there
    are (a random flip could leave all of them unflipped). The transform of a pass is
    shared by the whole batch, so an image gets the same result whichever batch it is in.

    Args:
        predict_fn: Maps a float32 (N, H, W, C) batch in [0, 1] to (N, C)
            probabilities, e.g. ``lambda x: apply_temperature(logit_fn(x), T)``. It
            gets the passes stacked along the batch axis, as many whole passes per
            call as fit in :data:`TTA_MAX_IMAGES_PER_CALL` images (at least one), so
            batch inside it if needed.
        images: (N, H, W, C) float images in [0, 1].
        n_augment: Number of passes (>= 1), the unmodified one included.
        seed: Seed of the augmentations, for reproducible results.

    Returns:
        Mean probabilities, normalised predictive entropy, spread of the top-class
        probability and the per-pass probabilities.

    Raises:
        ConfigError: Bad images, ``n_augment`` or ``predict_fn`` output.
    """
    _check_positive_int(n_augment, "n_augment")
    images = np.asarray(images)
    if images.ndim != 4 or images.shape[0] == 0:
        raise ConfigError(
            f"images must be a non-empty (N, H, W, C) array; received shape {images.shape}."
        )
    if not np.issubdtype(images.dtype, np.floating):
        raise ConfigError(
            f"images must be floats in [0, 1]; received {images.dtype} (divide uint8 by 255)."
        )
    if images.min() < 0 or images.max() > 1:
        raise ConfigError(
            f"images must lie in [0, 1]; received values from {images.min():.4g} to "
            f"{images.max():.4g}."
        )
    images = images.astype(np.float32)
    rng = np.random.default_rng(seed)
    # Few images (one analysis): all passes in one call, so a compiled model runs one
    # batch instead of n_augment tiny ones; many images: one pass per call, and only
    # that call's passes exist at a time (memory). Passes draw from rng in order.
    per_call = max(1, TTA_MAX_IMAGES_PER_CALL // len(images))
    passes = []
    for start in range(0, n_augment, per_call):
        stack = np.concatenate(
            [
                images if index == 0 else _augment(images, index % 2 == 1, rng)
                for index in range(start, min(start + per_call, n_augment))
            ]
        )
        probs = np.asarray(predict_fn(stack), dtype=np.float64)
        if probs.ndim != 2 or probs.shape[0] != len(stack):
            raise ConfigError(
                f"predict_fn must return (N, C) probabilities, one row per input image, "
                f"with N = {len(stack)}; returned shape {probs.shape}."
            )
        _check_probabilities(probs, "predict_fn output")
        passes.extend(np.split(probs, len(stack) // len(images)))
    pass_probs = np.stack(passes)
    mean_probs = pass_probs.mean(axis=0)
    top = mean_probs.argmax(axis=1)
    top_prob_std = pass_probs[:, np.arange(len(images)), top].std(axis=0)
    return TTAResult(mean_probs, normalized_entropy(mean_probs), top_prob_std, pass_probs)


# ----------------------------------------------------------------------------- referral


def should_refer(
    mean_probs: np.ndarray,
    normalized_entropy: np.ndarray,
    *,
    min_confidence: float = REFER_MIN_CONFIDENCE,
    max_entropy: float = REFER_MAX_ENTROPY,
) -> np.ndarray:
    """Which predictions to hand to a human reader instead of reporting them as is.

    An image is referred when the calibrated top-class probability is below
    ``min_confidence`` (the model itself is unsure) OR the normalised TTA entropy is
    above ``max_entropy`` (the answer changes under harmless perturbations). Defaults:
    :data:`REFER_MIN_CONFIDENCE` = 0.6 (with 3 classes, well above the 1/3 of a
    guess) and :data:`REFER_MAX_ENTROPY` = 0.5 (half the entropy of the uniform
    distribution). Both are starting points to tune on validation data against the
    referral rate a clinic can absorb.

    Args:
        mean_probs: (N, C) calibrated probabilities, e.g. ``TTAResult.mean_probs``.
        normalized_entropy: (N,) entropies in [0, 1], e.g.
            ``TTAResult.normalized_entropy``.
        min_confidence: Refer below this top-class probability, in [0, 1].
        max_entropy: Refer above this normalised entropy, in [0, 1].

    Returns:
        (N,) boolean array, True = refer.

    Raises:
        ConfigError: Bad shapes or thresholds outside [0, 1].
    """
    for option, value in (("min_confidence", min_confidence), ("max_entropy", max_entropy)):
        if not 0.0 <= value <= 1.0:
            raise ConfigError(f"{option} must be in [0, 1]; received {value!r}.")
    mean_probs = np.asarray(mean_probs, dtype=np.float64)
    entropy = np.asarray(normalized_entropy, dtype=np.float64)
    if mean_probs.ndim != 2 or entropy.shape != (mean_probs.shape[0],):
        raise ConfigError(
            f"mean_probs must be (N, C) and normalized_entropy (N,); received shapes "
            f"{mean_probs.shape} and {entropy.shape}."
        )
    return (mean_probs.max(axis=1) < min_confidence) | (entropy > max_entropy)
