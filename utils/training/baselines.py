"""Pixel baselines for the ultrasound classifier: logistic regression and a random forest.

The seeds compared their CNNs with scikit-learn models on raw pixels. These baselines run
under the same grouped, dataset-and-label-stratified folds as the CNNs
(:func:`utils.training.common.grouped_cv_folds`), so the CV table compares like with like.
Images are shrunk to a small square (area interpolation) and flattened; nothing else is
engineered, which is the point of a pixel baseline.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler

from utils.calibration import (
    cross_fitted_probabilities,
    expected_calibration_error,
    fit_temperature,
)
from utils.errors import ConfigError
from utils.evaluation.classification import classification_report
from utils.labels import ULTRASOUND_CLASSES, encode_labels
from utils.training.arrays import TrainingArrays
from utils.training.common import collect_cv_results, run_grouped_cv

LOGGER = logging.getLogger(__name__)

BASELINE_SUMMARY_KEYS = ("accuracy", "balanced_accuracy", "macro_auc", "auc_malignant", "ece")


def _logistic_regression(seed: int) -> Pipeline:
    # Standardised pixels, L2 penalty strong enough for 1k+ features from ~1k images.
    return make_pipeline(
        StandardScaler(),
        LogisticRegression(C=0.01, max_iter=2000, class_weight="balanced", random_state=seed),
    )


def _random_forest(seed: int) -> RandomForestClassifier:
    return RandomForestClassifier(
        n_estimators=300, min_samples_leaf=2, class_weight="balanced", n_jobs=-1, random_state=seed
    )


BASELINE_BUILDERS = {"logistic_regression": _logistic_regression, "random_forest": _random_forest}


@dataclass
class BaselineConfig:
    """Options of a pixel baseline.

    Attributes:
        model: A key of :data:`BASELINE_BUILDERS`.
        pixels: Side of the square the images are shrunk to before flattening.
        seed: Seed of the folds and of the model.
        class_names: Class order of the probability columns.
    """

    model: str = "logistic_regression"
    pixels: int = 32
    seed: int = 0
    class_names: tuple[str, ...] = ULTRASOUND_CLASSES

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready options."""
        return {**asdict(self), "class_names": list(self.class_names)}


def check_baseline_config(config: BaselineConfig) -> None:
    """Raise :class:`ConfigError` for an unknown model or a bad pixel size."""
    if config.model not in BASELINE_BUILDERS:
        raise ConfigError(
            f"Unknown baseline {config.model!r}; valid baselines: {sorted(BASELINE_BUILDERS)}."
        )
    if isinstance(config.pixels, bool) or not isinstance(config.pixels, int):
        raise ConfigError(f"pixels must be an integer; received {config.pixels!r}.")
    if not 4 <= config.pixels <= 128:
        raise ConfigError(f"pixels must be between 4 and 128; received {config.pixels}.")


def pixel_features(images: np.ndarray, pixels: int) -> np.ndarray:
    """Shrink (N, H, W, C) uint8 images to ``pixels``² grey levels in [0, 1], flattened.

    Raises:
        ConfigError: ``images`` is not a 4-D batch.
    """
    if images.ndim != 4:
        raise ConfigError(f"images must be (N, H, W, C); received shape {images.shape}.")
    features = np.empty((len(images), pixels * pixels), np.float32)
    for index, image in enumerate(images):
        gray = image.mean(axis=-1) if image.shape[-1] > 1 else image[..., 0]
        small = cv2.resize(gray.astype(np.float32), (pixels, pixels), interpolation=cv2.INTER_AREA)
        features[index] = small.ravel() / 255.0
    return features


def _log_probabilities(probabilities: np.ndarray) -> np.ndarray:
    # Log-probabilities act as logits, so the CNNs' temperature scaling applies unchanged.
    return np.log(np.clip(probabilities, 1e-7, 1.0))


def train_and_evaluate_baseline(
    train: TrainingArrays, val: TrainingArrays, config: BaselineConfig
) -> dict[str, Any]:
    """Fit one baseline on ``train`` and report temperature-calibrated metrics on ``val``.

    Returns:
        :func:`classification_report` of ``val`` plus
        ``ece_before``, ``temperature`` and ``seconds``.
    """
    check_baseline_config(config)
    started = time.time()
    model = BASELINE_BUILDERS[config.model](config.seed)
    train_labels = encode_labels(train.labels, config.class_names)
    model.fit(pixel_features(train.images, config.pixels), train_labels)
    raw = np.zeros((len(val), len(config.class_names)), np.float64)
    # A fold may lack a class; scikit-learn then returns fewer columns.
    raw[:, model.classes_] = model.predict_proba(pixel_features(val.images, config.pixels))
    labels = encode_labels(val.labels, config.class_names)
    logits = _log_probabilities(raw)
    temperature = fit_temperature(logits, labels)
    report = classification_report(
        cross_fitted_probabilities(logits, labels, val.groups, seed=config.seed),
        labels,
        config.class_names,
    )
    report["ece_before"] = expected_calibration_error(raw, labels)
    report["temperature"] = temperature
    report["seconds"] = round(time.time() - started, 2)
    return report


def cross_validate_baseline(
    arrays: TrainingArrays, config: BaselineConfig, out_dir: Path, *, n_folds: int = 5
) -> dict[str, Any]:
    """Grouped k-fold CV of one pixel baseline; writes ``fold_<k>/metrics.json`` and ``cv.json``.

    Raises:
        ConfigError: Bad configuration or fold count.
    """
    check_baseline_config(config)

    def train_fold(train: TrainingArrays, val: TrainingArrays, fold_dir: Path) -> dict[str, Any]:
        return train_and_evaluate_baseline(train, val, config)

    run_grouped_cv(arrays, out_dir, train_fold, n_folds=n_folds, seed=config.seed)
    summary = collect_cv_results(out_dir, BASELINE_SUMMARY_KEYS, config.to_dict())
    LOGGER.info("%s CV: %s", config.model, summary["summary"])
    return summary
