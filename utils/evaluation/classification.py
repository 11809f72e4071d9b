"""Classification metrics and plots: accuracy, AUC, calibration, confusion matrix.

AUCs on sets that lack a class: a test fold or an external set may hold no ``normal``
image. One-vs-rest AUCs are then computed over the classes *present* in the labels,
after renormalising the probabilities over those classes (``p_k / sum_{j present} p_j``),
so that probability put on an absent class does not reorder the examples of the
classes that are there; with exactly two classes present this is the ordinary binary
AUC. ``auc_malignant`` (malignant vs everything else) uses the raw malignant probability,
since "everything else" includes any class.

Plots: matplotlib and kaleido (Plotly's static image export) are not dependencies, so
the PNGs are drawn with Pillow, and the same figures are also written as interactive
Plotly HTML files that share one ``plotly.min.js`` in the output folder (works offline).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import plotly.graph_objects as go
from PIL import Image, ImageDraw, ImageFont
from scipy.stats import rankdata
from sklearn.metrics import (
    accuracy_score,
    balanced_accuracy_score,
    confusion_matrix,
    precision_recall_fscore_support,
    roc_auc_score,
    roc_curve,
)

from utils.calibration import (
    DEFAULT_ECE_BINS,
    ReliabilityBins,
    ece_sampling_floor,
    expected_calibration_error,
    reliability_bins,
    validate_scores_and_labels,
)
from utils.errors import ConfigError
from utils.evaluation.bootstrap import bootstrap_ci

__all__ = ["classification_report", "save_classification_plots"]

MALIGNANT = "malignant"
_FIGURE_STEMS = ("roc_curves", "reliability_diagram", "confusion_matrix")


# ----------------------------------------------------------------------------- checks


def _validate(
    probs: np.ndarray, labels: np.ndarray, class_names: Sequence[str]
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    probs, labels = validate_scores_and_labels(probs, labels)
    names = [str(name) for name in class_names]
    if len(names) != probs.shape[1] or len(set(names)) != len(names):
        raise ConfigError(
            f"class_names must name each of the {probs.shape[1]} columns of probs once; "
            f"received {names}."
        )
    return probs, labels, names


# ----------------------------------------------------------------------------- AUCs


def _present_probs(probs: np.ndarray, present: np.ndarray) -> np.ndarray:
    """Probabilities of the present classes, renormalised to sum to 1 per row."""
    sub = probs[:, present]
    totals = sub.sum(axis=1, keepdims=True)
    # A row with no mass on any present class carries no ranking information.
    return np.divide(sub, totals, out=np.full_like(sub, 1.0 / len(present)), where=totals > 0)


def _per_class_auc(probs: np.ndarray, labels: np.ndarray) -> dict[int, float]:
    """One-vs-rest AUC of every present class (empty with fewer than 2 present)."""
    present = np.unique(labels)
    if len(present) < 2:
        return {}
    scores = _present_probs(probs, present)
    return {
        int(k): float(roc_auc_score(labels == k, scores[:, column]))
        for column, k in enumerate(present)
    }


def _rank_auc(rows: np.ndarray) -> float:
    """AUC of ``rows[:, 1]`` for the binary target ``rows[:, 0]`` (Mann-Whitney U).

    Equal to ``roc_auc_score`` (ties count one half) but ~100x faster, which matters
    for 1000 bootstrap resamples; NaN when a resample holds a single class.
    """
    positive = rows[:, 0] > 0.5
    n_pos = int(positive.sum())
    n_neg = len(rows) - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = rankdata(rows[:, 1])
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def _round_ci(interval: tuple[float, float]) -> list[float] | None:
    low, high = interval
    return None if np.isnan(low) else [float(low), float(high)]


# ----------------------------------------------------------------------------- report


def classification_report(
    probs: np.ndarray,
    labels: np.ndarray,
    class_names: Sequence[str],
    *,
    n_bins: int = DEFAULT_ECE_BINS,
    n_resamples: int = 1000,
    bootstrap_seed: int = 0,
) -> dict:
    """Summarise predicted probabilities against true labels.

    Args:
        probs: (N, C) class probabilities (ideally temperature-calibrated).
        labels: (N,) true class indices.
        class_names: Name of each column of ``probs``, e.g. ``("benign", "malignant",
            "normal")``.
        n_bins: Confidence bins of the ECE.
        n_resamples: Bootstrap resamples of the confidence intervals, and simulated
            label sets of the ECE floor.
        bootstrap_seed: Seed of the bootstrap CIs and of the ECE floor.

    Returns:
        JSON-ready dict with ``n``, ``classes_present``, ``accuracy``,
        ``balanced_accuracy`` (mean recall over present classes), ``macro_auc``
        (one-vs-rest over present classes, ``None`` with fewer than 2), ``auc_malignant``
        (``None`` without a ``malignant`` class or unless both malignant and other
        images are present), ``ece``, ``ece_floor`` and ``ece_floor_p95`` (mean and 95th
        percentile of the ECE a perfectly calibrated model with these probabilities would
        show on this many images; see :func:`utils.calibration.ece_sampling_floor`),
        ``per_class`` (``{name: {precision, recall, f1,
        support, auc}}``, ``auc`` ``None`` for an absent class), ``confusion_matrix``
        (rows true, columns predicted, over all ``class_names``) and ``ci95`` (bootstrap
        95% intervals ``[low, high]`` of ``accuracy`` and ``auc_malignant``, or ``None``).

    Raises:
        ConfigError: Bad shapes, labels, class names or probabilities.
    """
    probs, labels, names = _validate(probs, labels, class_names)
    predicted = probs.argmax(axis=1)
    all_classes = list(range(len(names)))
    with warnings.catch_warnings():
        # Predictions of a class absent from the labels are expected on partial sets.
        warnings.simplefilter("ignore", UserWarning)
        balanced = float(balanced_accuracy_score(labels, predicted))
    precision, recall, f1, support = precision_recall_fscore_support(
        labels, predicted, labels=all_classes, zero_division=0
    )
    class_auc = _per_class_auc(probs, labels)
    correct = (predicted == labels).astype(np.float64)
    ece_floor, ece_floor_p95 = ece_sampling_floor(
        probs, n_bins, n_draws=n_resamples, seed=bootstrap_seed
    )

    auc_malignant, ci_malignant = None, None
    if MALIGNANT in names:
        is_malignant = labels == names.index(MALIGNANT)
        if 0 < is_malignant.sum() < len(labels):
            rows = np.column_stack([is_malignant, probs[:, names.index(MALIGNANT)]])
            auc_malignant = float(roc_auc_score(rows[:, 0], rows[:, 1]))
            ci_malignant = _round_ci(
                bootstrap_ci(rows, _rank_auc, n_resamples=n_resamples, seed=bootstrap_seed)
            )

    return {
        "n": len(labels),
        "classes_present": [names[k] for k in np.unique(labels)],
        "accuracy": float(accuracy_score(labels, predicted)),
        "balanced_accuracy": balanced,
        "macro_auc": float(np.mean(list(class_auc.values()))) if class_auc else None,
        "auc_malignant": auc_malignant,
        "ece": expected_calibration_error(probs, labels, n_bins),
        "ece_floor": ece_floor,
        "ece_floor_p95": ece_floor_p95,
        "per_class": {
            name: {
                "precision": float(precision[k]),
                "recall": float(recall[k]),
                "f1": float(f1[k]),
                "support": int(support[k]),
                "auc": class_auc.get(k),
            }
            for k, name in enumerate(names)
        },
        "confusion_matrix": confusion_matrix(labels, predicted, labels=all_classes).tolist(),
        "ci95": {
            "accuracy": _round_ci(
                bootstrap_ci(correct, np.mean, n_resamples=n_resamples, seed=bootstrap_seed)
            ),
            "auc_malignant": ci_malignant,
        },
    }


# ----------------------------------------------------------------------------- PNG drawing

_WIDTH, _HEIGHT = 640, 520
_MARGIN_LEFT, _MARGIN_RIGHT, _MARGIN_TOP, _MARGIN_BOTTOM = 70, 20, 40, 60
_WHITE, _BLACK, _GREY, _LIGHT = (255, 255, 255), (20, 20, 20), (150, 150, 150), (225, 225, 225)
# Colour-blind-safe palette (Okabe & Ito).
_PALETTE = [
    (0, 114, 178),
    (213, 94, 0),
    (0, 158, 115),
    (204, 121, 167),
    (230, 159, 0),
    (86, 180, 233),
    (240, 228, 66),
]


def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    return ImageFont.load_default(size=size)


@dataclass
class _UnitAxes:
    """A [0, 1] x [0, 1] plot area on a Pillow canvas, with grid, ticks and labels."""

    title: str
    x_label: str
    y_label: str

    def __post_init__(self) -> None:
        self.image = Image.new("RGB", (_WIDTH, _HEIGHT), _WHITE)
        self.draw = ImageDraw.Draw(self.image)
        self.left, self.top = _MARGIN_LEFT, _MARGIN_TOP
        self.right, self.bottom = _WIDTH - _MARGIN_RIGHT, _HEIGHT - _MARGIN_BOTTOM
        self._frame()

    def point(self, x: float, y: float) -> tuple[float, float]:
        """Pixel position of data point (x, y)."""
        return (
            self.left + x * (self.right - self.left),
            self.bottom - y * (self.bottom - self.top),
        )

    def _frame(self) -> None:
        small, large = _font(12), _font(14)
        for tick in np.linspace(0, 1, 6):
            x, y = self.point(tick, tick)
            self.draw.line([(x, self.top), (x, self.bottom)], fill=_LIGHT)
            self.draw.line([(self.left, y), (self.right, y)], fill=_LIGHT)
            self.draw.text(
                (x, self.bottom + 6), f"{tick:.1f}", fill=_BLACK, font=small, anchor="mt"
            )
            self.draw.text((self.left - 6, y), f"{tick:.1f}", fill=_BLACK, font=small, anchor="rm")
        self.draw.rectangle((self.left, self.top, self.right, self.bottom), outline=_BLACK)
        centre_x = (self.left + self.right) / 2
        self.draw.text((centre_x, 12), self.title, fill=_BLACK, font=large, anchor="mt")
        self.draw.text((centre_x, _HEIGHT - 20), self.x_label, fill=_BLACK, font=small, anchor="mm")
        label = Image.new("RGB", (self.bottom - self.top, 18), _WHITE)
        ImageDraw.Draw(label).text(
            (label.width / 2, 9), self.y_label, fill=_BLACK, font=small, anchor="mm"
        )
        self.image.paste(label.rotate(90, expand=True), (8, self.top))

    def polyline(
        self, xs: Sequence[float], ys: Sequence[float], colour: tuple, width: int = 2
    ) -> None:
        """Draw connected data points."""
        self.draw.line([self.point(x, y) for x, y in zip(xs, ys, strict=True)], colour, width)

    def legend(self, entries: Sequence[tuple[str, tuple]], *, upper_left: bool = False) -> None:
        """Colour swatches and labels in the lower-right (or upper-left) corner."""
        font = _font(12)
        text_width = max(font.getlength(text) for text, _ in entries)
        for row, (text, colour) in enumerate(entries):
            if upper_left:
                x, y = self.left + 12, self.top + 16 + 18 * row
            else:
                x = self.right - 12 - text_width - 26
                y = self.bottom - 16 - 18 * (len(entries) - 1 - row)
            self.draw.rectangle((x - 4, y - 9, x + text_width + 30, y + 9), fill=_WHITE)
            self.draw.rectangle((x, y - 5, x + 18, y + 5), fill=colour)
            self.draw.text((x + 24, y), text, fill=_BLACK, font=font, anchor="lm")


def _roc_png(curves: list[tuple[str, np.ndarray, np.ndarray, float]], path: Path) -> None:
    axes = _UnitAxes("ROC curves (one-vs-rest)", "False positive rate", "True positive rate")
    axes.polyline([0, 1], [0, 1], _GREY, 1)
    entries = []
    for index, (name, fpr, tpr, auc) in enumerate(curves):
        colour = _PALETTE[index % len(_PALETTE)]
        axes.polyline(fpr, tpr, colour)
        entries.append((f"{name} (AUC {auc:.3f})", colour))
    if entries:
        axes.legend(entries)
    else:
        axes.draw.text(axes.point(0.5, 0.5), "fewer than 2 classes present", fill=_BLACK)
    axes.image.save(path)


def _reliability_png(bins: ReliabilityBins, ece: float, path: Path) -> None:
    axes = _UnitAxes(f"Reliability diagram (ECE {ece:.3f})", "Confidence", "Accuracy")
    for low, high, accuracy, count in zip(
        bins.edges[:-1], bins.edges[1:], bins.accuracy, bins.counts, strict=True
    ):
        if count:
            x0, y0 = axes.point(low, accuracy)
            x1, y1 = axes.point(high, 0)
            axes.draw.rectangle((x0 + 1, y0, x1 - 1, y1), fill=_PALETTE[0], outline=_WHITE)
    axes.polyline([0, 1], [0, 1], _PALETTE[1], 2)
    entries = [("accuracy per bin", _PALETTE[0]), ("perfect calibration", _PALETTE[1])]
    axes.legend(entries, upper_left=True)
    axes.image.save(path)


def _confusion_png(matrix: np.ndarray, names: list[str], path: Path) -> None:
    cell = max(60, min(140, 420 // len(names)))
    left, top = 120, 60
    size = (left + cell * len(names) + 20, top + cell * len(names) + 50)
    image = Image.new("RGB", size, _WHITE)
    draw = ImageDraw.Draw(image)
    font, small = _font(14), _font(12)
    draw.text((size[0] / 2, 10), "Confusion matrix", fill=_BLACK, font=font, anchor="mt")
    draw.text((left - 8, top - 4), "true \\ predicted", fill=_GREY, font=small, anchor="rb")
    totals = matrix.sum(axis=1, keepdims=True)
    shares = np.divide(matrix, totals, out=np.zeros(matrix.shape), where=totals > 0)
    for row, name in enumerate(names):
        draw.text((left - 8, top + (row + 0.5) * cell), name, fill=_BLACK, font=small, anchor="rm")
        draw.text((left + (row + 0.5) * cell, top - 4), name, fill=_BLACK, font=small, anchor="mb")
        for column in range(len(names)):
            share = shares[row, column]
            # White to blue by the share of the true class's images in the cell.
            fill = tuple(int(255 - share * (255 - c)) for c in _PALETTE[0])
            box = (left + column * cell, top + row * cell)
            draw.rectangle((*box, box[0] + cell, box[1] + cell), fill=fill, outline=_GREY)
            text = f"{matrix[row, column]}\n{share:.0%}"
            colour = _WHITE if share > 0.5 else _BLACK
            centre = (box[0] + cell / 2, box[1] + cell / 2)
            draw.multiline_text(centre, text, fill=colour, font=font, anchor="mm", align="center")
    image.save(path)


# ----------------------------------------------------------------------------- HTML figures


def roc_figure(curves: list[tuple[str, np.ndarray, np.ndarray, float]]) -> go.Figure:
    figure = go.Figure()
    figure.add_trace(
        go.Scatter(x=[0, 1], y=[0, 1], mode="lines", name="chance", line={"dash": "dash"})
    )
    for name, fpr, tpr, auc in curves:
        figure.add_trace(go.Scatter(x=fpr, y=tpr, mode="lines", name=f"{name} (AUC {auc:.3f})"))
    figure.update_layout(
        title="ROC curves (one-vs-rest)",
        xaxis_title="False positive rate",
        yaxis_title="True positive rate",
    )
    return figure


def reliability_figure(bins: ReliabilityBins, ece: float) -> go.Figure:
    centres = (bins.edges[:-1] + bins.edges[1:]) / 2
    figure = go.Figure()
    figure.add_trace(
        go.Bar(
            x=centres,
            y=bins.accuracy,
            width=np.diff(bins.edges),
            name="accuracy per bin",
            customdata=np.column_stack([bins.counts, bins.mean_confidence]),
            hovertemplate="accuracy %{y:.3f}<br>n %{customdata[0]}"
            "<br>mean confidence %{customdata[1]:.3f}",
        )
    )
    figure.add_trace(go.Scatter(x=[0, 1], y=[0, 1], mode="lines", name="perfect calibration"))
    figure.update_layout(
        title=f"Reliability diagram (ECE {ece:.3f})",
        xaxis_title="Confidence",
        yaxis_title="Accuracy",
        xaxis_range=[0, 1],
        yaxis_range=[0, 1],
    )
    return figure


def confusion_figure(matrix: np.ndarray, names: list[str]) -> go.Figure:
    figure = go.Figure(
        go.Heatmap(
            z=matrix, x=names, y=names, colorscale="Blues", text=matrix, texttemplate="%{text}"
        )
    )
    figure.update_layout(
        title="Confusion matrix",
        xaxis_title="predicted",
        yaxis_title="true",
        yaxis_autorange="reversed",
    )
    return figure


# ----------------------------------------------------------------------------- plots


def _roc_curves(
    probs: np.ndarray, labels: np.ndarray, names: list[str]
) -> list[tuple[str, np.ndarray, np.ndarray, float]]:
    """One-vs-rest ROC curve of every present class, on renormalised probabilities."""
    present = np.unique(labels)
    if len(present) < 2:
        return []
    scores = _present_probs(probs, present)
    curves = []
    for column, k in enumerate(present):
        fpr, tpr, _ = roc_curve(labels == k, scores[:, column])
        curves.append((names[k], fpr, tpr, float(roc_auc_score(labels == k, scores[:, column]))))
    return curves


def save_classification_plots(
    probs: np.ndarray,
    labels: np.ndarray,
    class_names: Sequence[str],
    out_dir: Path | str,
    *,
    n_bins: int = DEFAULT_ECE_BINS,
    formats: Sequence[str] = ("png", "html"),
) -> list[Path]:
    """Write ROC curves, a reliability diagram and a confusion matrix.

    Files: ``roc_curves``, ``reliability_diagram`` and ``confusion_matrix``, each as
    ``.png`` (drawn with Pillow) and/or ``.html`` (interactive Plotly; the HTML files
    load ``plotly.min.js`` written once beside them, so they open offline).

    Args:
        probs: (N, C) class probabilities.
        labels: (N,) true class indices.
        class_names: Name of each column of ``probs``.
        out_dir: Output folder, created if needed.
        n_bins: Confidence bins of the reliability diagram.
        formats: Any of ``"png"`` and ``"html"``.

    Returns:
        The written figure paths (not ``plotly.min.js``).

    Raises:
        ConfigError: Bad inputs or an unknown format.
    """
    probs, labels, names = _validate(probs, labels, class_names)
    unknown = sorted(set(formats) - {"png", "html"})
    if unknown or not formats:
        raise ConfigError(f"formats must be among 'png' and 'html'; received {list(formats)}.")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    curves = _roc_curves(probs, labels, names)
    bins = reliability_bins(probs, labels, n_bins)
    ece = expected_calibration_error(probs, labels, n_bins)
    matrix = confusion_matrix(labels, probs.argmax(axis=1), labels=list(range(len(names))))

    written = []
    if "png" in formats:
        pngs = [out_dir / f"{stem}.png" for stem in _FIGURE_STEMS]
        _roc_png(curves, pngs[0])
        _reliability_png(bins, ece, pngs[1])
        _confusion_png(matrix, names, pngs[2])
        written += pngs
    if "html" in formats:
        figures = (
            roc_figure(curves),
            reliability_figure(bins, ece),
            confusion_figure(matrix, names),
        )
        for stem, figure in zip(_FIGURE_STEMS, figures, strict=True):
            figure.write_html(out_dir / f"{stem}.html", include_plotlyjs="directory")
            written.append(out_dir / f"{stem}.html")
    return written


def _thinned(fpr: np.ndarray, tpr: np.ndarray, max_points: int) -> tuple[list[float], list[float]]:
    """At most ``max_points`` points of a ROC curve, always keeping both ends."""
    if len(fpr) > max_points:
        keep = np.unique(np.linspace(0, len(fpr) - 1, max_points).round().astype(int))
        fpr, tpr = fpr[keep], tpr[keep]
    return [round(float(v), 4) for v in fpr], [round(float(v), 4) for v in tpr]


def classification_plot_data(
    probs: np.ndarray,
    labels: np.ndarray,
    class_names: Sequence[str],
    *,
    n_bins: int = DEFAULT_ECE_BINS,
    max_roc_points: int = 60,
) -> dict[str, Any]:
    """The numbers behind the ROC, reliability and confusion plots, JSON-ready (for cards).

    Returns:
        ``class_names``, ``roc`` (``{class: {fpr, tpr, auc}}`` one-vs-rest, present
        classes only), ``reliability`` (``edges``, ``counts``, ``mean_confidence``,
        ``accuracy``; ``None`` for empty bins) and ``confusion_matrix`` (rows true).

    Raises:
        ConfigError: Bad inputs.
    """
    probs, labels, names = _validate(probs, labels, class_names)
    roc = {}
    for name, fpr, tpr, auc in _roc_curves(probs, labels, names):
        fpr_points, tpr_points = _thinned(fpr, tpr, max_roc_points)
        roc[name] = {"fpr": fpr_points, "tpr": tpr_points, "auc": auc}
    bins = reliability_bins(probs, labels, n_bins)

    def listed(values: np.ndarray) -> list[float | None]:
        return [None if np.isnan(v) else round(float(v), 4) for v in values]

    return {
        "class_names": names,
        "roc": roc,
        "reliability": {
            "edges": [round(float(v), 4) for v in bins.edges],
            "counts": [int(v) for v in bins.counts],
            "mean_confidence": listed(bins.mean_confidence),
            "accuracy": listed(bins.accuracy),
        },
        "confusion_matrix": confusion_matrix(
            labels, probs.argmax(axis=1), labels=list(range(len(names)))
        ).tolist(),
    }
