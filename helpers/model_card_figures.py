"""Plotly figures of the evaluation data a model card records (ROC, reliability, confusion).

The data format is the one
:func:`utils.evaluation.classification.classification_plot_data` writes.
Each ``*_figure`` function checks the card's data first and raises
:class:`~utils.errors.ModelError` naming what is wrong, so a malformed card gives a
message on the page rather than a wrong plot. Nothing is filled in: an AUC absent from
the card is the area under the recorded curve, and an absent ECE is computed from the
recorded bins (both exact functions of the recorded data).

The figures are those of the evaluation CLI (:mod:`utils.evaluation.classification`),
so a card and an evaluation report of the same predictions look the same.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

import numpy as np
import plotly.graph_objects as go
from sklearn.metrics import auc as area_under_curve

from helpers.model_card_metrics import evaluation_class_names, evaluation_value
from utils.calibration import ReliabilityBins
from utils.errors import ModelError

# The evaluation CLI's figure builders, reused so both draw the same plots.
from utils.evaluation.classification import (
    confusion_figure as evaluation_confusion_figure,
)
from utils.evaluation.classification import (
    reliability_figure as evaluation_reliability_figure,
)
from utils.evaluation.classification import (
    roc_figure as evaluation_roc_figure,
)

__all__ = ["CardPlot", "card_plots", "confusion_figure", "reliability_figure", "roc_figure"]

_FIGURE_HEIGHT = 420
# The page puts three plots side by side: a legend beside a plot would squeeze it.
_LEGEND_BELOW: Final = {"orientation": "h", "yanchor": "top", "y": -0.25, "x": 0}


def _unit_floats(values: Any, what: str, *, allow_null: bool = False) -> np.ndarray:
    """A list of numbers in [0, 1] (``null`` as NaN when allowed) as a float array."""
    ok = isinstance(values, list) and all(
        (value is None and allow_null)
        or (isinstance(value, int | float) and not isinstance(value, bool) and 0 <= value <= 1)
        for value in values
    )
    if not ok:
        nulls = " or null" if allow_null else ""
        raise ModelError(f"{what} must be a list of numbers in [0, 1]{nulls}; got {values!r}.")
    return np.array([np.nan if value is None else value for value in values], dtype=float)


def _roc_entries(roc: Any) -> list[tuple[str, Any]]:
    if isinstance(roc, dict):
        return [(str(name), curve) for name, curve in roc.items()]
    if isinstance(roc, list) and all(isinstance(curve, dict) for curve in roc):
        names = [curve.get("class", curve.get("name")) for curve in roc]
        if all(isinstance(name, str) for name in names):
            return list(zip(names, roc, strict=True))
    raise ModelError(
        "roc must map each class name to {fpr, tpr, auc}, or list {class, fpr, tpr, auc} "
        f"objects; got {type(roc).__name__}."
    )


def roc_figure(roc: Any) -> go.Figure:
    """One-vs-rest ROC curves recorded in a card.

    Args:
        roc: ``{class: {"fpr": [...], "tpr": [...], "auc": float}}`` (``auc`` optional),
            or a list of ``{"class": ..., "fpr", "tpr", "auc"}``.

    Raises:
        ModelError: Not in that format, no curve, or a curve with fewer than 2 points or
            unequal ``fpr``/``tpr`` lengths.
    """
    curves = []
    for name, curve in _roc_entries(roc):
        if not isinstance(curve, dict) or "fpr" not in curve or "tpr" not in curve:
            raise ModelError(f"roc curve {name!r} must hold 'fpr' and 'tpr' lists.")
        fpr = _unit_floats(curve["fpr"], f"roc {name!r} fpr")
        tpr = _unit_floats(curve["tpr"], f"roc {name!r} tpr")
        if len(fpr) != len(tpr) or len(fpr) < 2:
            raise ModelError(
                f"roc curve {name!r} needs equally long fpr and tpr with at least 2 points; "
                f"got {len(fpr)} and {len(tpr)}."
            )
        recorded = curve.get("auc")
        if isinstance(recorded, int | float) and not isinstance(recorded, bool):
            value = float(recorded)
        else:
            order = np.lexsort((tpr, fpr))
            value = float(area_under_curve(fpr[order], tpr[order]))
        curves.append((name, fpr, tpr, value))
    if not curves:
        raise ModelError("roc holds no curve.")
    figure = evaluation_roc_figure(curves)
    figure.update_layout(
        height=_FIGURE_HEIGHT, xaxis_range=[0, 1], yaxis_range=[0, 1.02], legend=_LEGEND_BELOW
    )
    return figure


def reliability_figure(calibration: Any) -> go.Figure:
    """The reliability diagram of the confidence bins recorded in a card.

    Args:
        calibration: ``{"edges": [n+1], "counts": [n], "mean_confidence": [n],
            "accuracy": [n], "ece": float}`` (``ece`` optional; empty bins ``null``).

    Raises:
        ModelError: A list is missing, out of [0, 1], or of the wrong length.
    """
    if not isinstance(calibration, dict):
        raise ModelError(
            f"calibration must be an object of bin lists; got {type(calibration).__name__}."
        )
    missing = [
        key for key in ("edges", "counts", "mean_confidence", "accuracy") if key not in calibration
    ]
    if missing:
        raise ModelError(f"calibration lacks {', '.join(missing)}.")
    edges = _unit_floats(calibration["edges"], "calibration edges")
    counts = calibration["counts"]
    count_ok = isinstance(counts, list) and all(
        isinstance(count, int) and not isinstance(count, bool) and count >= 0 for count in counts
    )
    if not count_ok:
        raise ModelError(f"calibration counts must be non-negative integers; got {counts!r}.")
    confidence = _unit_floats(calibration["mean_confidence"], "mean_confidence", allow_null=True)
    accuracy = _unit_floats(calibration["accuracy"], "calibration accuracy", allow_null=True)
    n_bins = len(edges) - 1
    if n_bins < 1 or not len(counts) == len(confidence) == len(accuracy) == n_bins:
        raise ModelError(
            f"calibration needs n+1 edges and n counts, mean_confidence and accuracy; got "
            f"{len(edges)} edges, {len(counts)} counts, {len(confidence)} confidences and "
            f"{len(accuracy)} accuracies."
        )
    bins = ReliabilityBins(edges, np.array(counts), confidence, accuracy)
    ece = calibration.get("ece")
    if not isinstance(ece, int | float) or isinstance(ece, bool):
        filled = bins.counts > 0
        gaps = np.abs(accuracy[filled] - confidence[filled])
        ece = float(np.sum(bins.counts[filled] * gaps) / max(int(bins.counts.sum()), 1))
    figure = evaluation_reliability_figure(bins, float(ece))
    figure.update_layout(height=_FIGURE_HEIGHT, legend=_LEGEND_BELOW)
    return figure


def confusion_figure(matrix: Any, class_names: Sequence[str] | None) -> go.Figure:
    """The confusion matrix recorded in a card (rows true, columns predicted).

    Args:
        matrix: Square list of rows of non-negative integer counts.
        class_names: One name per row; ``None`` numbers the classes.

    Raises:
        ModelError: Not a square matrix of counts, or not one row per class name.
    """
    rows_ok = isinstance(matrix, list) and all(
        isinstance(row, list) and len(row) == len(matrix) for row in matrix
    )
    cells_ok = rows_ok and all(
        isinstance(cell, int) and not isinstance(cell, bool) and cell >= 0
        for row in matrix
        for cell in row
    )
    if not matrix or not cells_ok:
        raise ModelError(
            f"confusion_matrix must be a square list of rows of non-negative integer counts; "
            f"got {matrix!r}."
        )
    names = [str(name) for name in class_names] if class_names else None
    if names is None:
        names = [f"class {index}" for index in range(len(matrix))]
    if len(names) != len(matrix):
        raise ModelError(
            f"confusion_matrix has {len(matrix)} rows but the card names {len(names)} "
            f"classes ({', '.join(names)})."
        )
    figure = evaluation_confusion_figure(np.array(matrix), names)
    figure.update_layout(height=_FIGURE_HEIGHT)
    return figure


@dataclass(frozen=True)
class CardPlot:
    """One evaluation plot of a card, or why there is none.

    Attributes:
        title: What the plot is ("ROC curves"...).
        figure: The figure, ``None`` when the card lacks (or garbles) its data.
        note: Where the data came from, or why there is no figure.
        malformed: The card holds the data, but not in a usable form.
    """

    title: str
    figure: go.Figure | None
    note: str
    malformed: bool = False


_PLOTS: Final = (
    ("ROC curves", ("roc", "roc_curves")),
    ("Reliability (calibration)", ("reliability", "calibration")),
    ("Confusion matrix", ("confusion_matrix",)),
)


def card_plots(card: dict[str, Any]) -> list[CardPlot]:
    """The ROC, reliability and confusion plots a card's evaluation data allows.

    Args:
        card: The model card (see :mod:`helpers.model_cards` for where data is read).

    Returns:
        Three entries in that order; absent data gives ``figure=None`` and the note
        "not recorded in this card".
    """
    plots = []
    for title, keys in _PLOTS:
        try:
            found = evaluation_value(card, *keys)
            if found is None:
                plots.append(CardPlot(title, None, "not recorded in this card"))
                continue
            value, where = found
            if keys[0] == "roc":
                figure = roc_figure(value)
            elif keys[0] == "reliability":
                figure = reliability_figure(value)
            else:
                figure = confusion_figure(value, evaluation_class_names(card))
            plots.append(CardPlot(title, figure, f"from the card's {where}"))
        except ModelError as error:
            plots.append(CardPlot(title, None, f"cannot be plotted: {error}", malformed=True))
    return plots
