"""The ROC, reliability and confusion data a classifier's model card records, as JSON.

:func:`card_curves` turns held-out predictions into the ``evaluation`` block the
Models page plots (``roc``, ``calibration``, ``confusion_matrix``). Store it in the
card, e.g. ``card["evaluation"] = card_curves(oof_probs, labels, class_names)`` with
the out-of-fold (cross-validation) predictions, so the plots show held-out data.

Format (JSON-ready, plain lists)::

    {
      "source": "...",                       # what the predictions were
      "n": 120,
      "class_names": ["benign", "malignant", "normal"],
      "roc": {"benign": {"fpr": [...], "tpr": [...], "auc": 0.91}, ...},
      "calibration": {"edges": [...], "counts": [...],
                      "mean_confidence": [...], "accuracy": [...], "ece": 0.04},
      "confusion_matrix": [[...], ...]       # rows true, columns predicted
    }

ROC curves are one-vs-rest over the classes present, on probabilities renormalised
over those classes (as :func:`utils.evaluation.classification.classification_report`);
empty calibration bins hold ``null`` accuracy and confidence.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from sklearn.metrics import confusion_matrix

from utils.calibration import DEFAULT_ECE_BINS, expected_calibration_error, reliability_bins
from utils.evaluation.classification import _roc_curves, _validate

__all__ = ["card_curves"]


def _json_floats(values: np.ndarray, digits: int = 6) -> list[float | None]:
    return [None if np.isnan(value) else round(float(value), digits) for value in values]


def card_curves(
    probs: np.ndarray,
    labels: np.ndarray,
    class_names: Sequence[str],
    *,
    source: str = "held-out predictions",
    n_bins: int = DEFAULT_ECE_BINS,
) -> dict[str, Any]:
    """ROC points, reliability bins and the confusion matrix of predictions.

    Args:
        probs: (N, C) calibrated class probabilities on held-out images.
        labels: (N,) true class indices.
        class_names: Name of each column of ``probs``.
        source: What the predictions are (shown on the Models page).
        n_bins: Equal-width confidence bins of the reliability diagram.

    Returns:
        The JSON-ready block described in the module docstring.

    Raises:
        ConfigError: Bad shapes, labels, class names or probabilities.
    """
    probs, labels, names = _validate(probs, labels, class_names)
    bins = reliability_bins(probs, labels, n_bins)
    matrix = confusion_matrix(labels, probs.argmax(axis=1), labels=list(range(len(names))))
    return {
        "source": source,
        "n": len(labels),
        "class_names": names,
        "roc": {
            name: {"fpr": _json_floats(fpr), "tpr": _json_floats(tpr), "auc": round(auc, 6)}
            for name, fpr, tpr, auc in _roc_curves(probs, labels, names)
        },
        "calibration": {
            "edges": _json_floats(bins.edges),
            "counts": [int(count) for count in bins.counts],
            "mean_confidence": _json_floats(bins.mean_confidence),
            "accuracy": _json_floats(bins.accuracy),
            "ece": round(expected_calibration_error(probs, labels, n_bins), 6),
        },
        "confusion_matrix": matrix.tolist(),
    }
