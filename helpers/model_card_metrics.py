"""The evaluation a model card records, as table rows and plot data, without Streamlit.

Nothing is filled in: an absent key is reported as absent (``None``), so the page can
say "not recorded in this card". Where a card records its evaluation (first match
wins, per key):

* cross-validation summary: ``cv_metrics`` (``{metric: {mean, sd, n}}``, as
  :func:`utils.model_card.card_to_markdown` renders it), else ``cv.summary`` (the
  ``cv.json`` of :func:`utils.training.common.collect_cv_results`);
* per-fold metrics: ``cv.folds`` (a list of per-fold metric dicts), else ``cv_folds``;
* pooled out-of-fold metrics: ``cv_pooled.metrics`` (a
  :func:`utils.evaluation.classification.classification_report`);
* ``roc``, ``reliability`` (or ``calibration``), ``confusion_matrix`` and their
  ``class_names``: in ``cv_pooled.plots`` (written by
  :mod:`utils.training.classifier_card` with
  :func:`utils.evaluation.classification.classification_plot_data`), then
  ``evaluation``, then ``cv``. A confusion matrix absent everywhere but present in
  every fold is the sum of the folds' held-out matrices.
* how the recipe does on a dataset it never trained on: ``cross_dataset`` (a
  leave-one-dataset-out run recorded by ``python -m utils.train attach-cv``), beside
  ``cross_dataset_reference`` (the same recipe's grouped CV at a similar training size).
"""

from __future__ import annotations

import math
from typing import Any, Final

from utils.errors import ModelError

__all__ = [
    "CROSS_DATASET_KEY",
    "CROSS_DATASET_REFERENCE_KEY",
    "EVALUATION_SECTIONS",
    "cross_site_note",
    "cv_fold_rows",
    "cv_summary_rows",
    "evaluation_class_names",
    "evaluation_value",
    "familiarity_rows",
    "format_value",
    "per_class_rows",
    "pooled_metric_rows",
]

#: Card sections searched, in order, for the plot data (dotted paths).
EVALUATION_SECTIONS: Final = ("cv_pooled.plots", "evaluation", "cv")

#: Card key of a leave-one-dataset-out run (``attach-cv --key cross_dataset``).
CROSS_DATASET_KEY: Final = "cross_dataset"
#: Card key of the same recipe's grouped CV at a similar training size, to compare with.
CROSS_DATASET_REFERENCE_KEY: Final = "cross_dataset_reference"
# The one metric the cross-site sentence quotes, by card task.
_CROSS_SITE_METRIC: Final = {
    "classification": ("auc_malignant", "malignant-vs-rest AUC"),
    "segmentation": ("dice_mean", "lesion Dice"),
}


def format_value(value: Any) -> str:
    """A card value as one line of text (lists comma-separated, dicts ``key: value``)."""
    if isinstance(value, list | tuple):
        return ", ".join(str(item) for item in value) if value else "none"
    if isinstance(value, dict):
        return "; ".join(f"{key}: {format_value(item)}" for key, item in value.items())
    return str(value)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _is_count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _format_summary(value: Any) -> tuple[str, str]:
    """(``mean ± sd``, ``n``) of a ``{mean, sd, n}`` dict, or the value as it is."""
    if isinstance(value, dict) and "mean" in value:
        mean, sd, n = value.get("mean"), value.get("sd"), value.get("n")
        if not _is_number(mean):
            return "n/a (no fold recorded it)", format_value(n if n is not None else 0)
        spread = f" ± {sd:.3f}" if _is_number(sd) else ""
        return f"{mean:.3f}{spread}", format_value(n) if n is not None else "not recorded"
    return format_value(value), "not recorded"


def cv_summary_rows(card: dict[str, Any]) -> list[dict[str, str]] | None:
    """Cross-validation metrics as metric / mean ± sd / folds rows; ``None`` when absent."""
    summary = card.get("cv_metrics")
    if not isinstance(summary, dict):
        cv = card.get("cv")
        summary = cv.get("summary") if isinstance(cv, dict) else None
    if not isinstance(summary, dict) or not summary:
        return None
    rows = []
    for metric, value in summary.items():
        shown, folds = _format_summary(value)
        rows.append({"metric": str(metric), "mean ± sd": shown, "folds": folds})
    return rows


def _folds(card: dict[str, Any]) -> list[dict[str, Any]] | None:
    cv = card.get("cv")
    folds = cv.get("folds") if isinstance(cv, dict) else None
    if folds is None:
        folds = card.get("cv_folds")
    if isinstance(folds, list) and folds and all(isinstance(fold, dict) for fold in folds):
        return folds
    return None


def cv_fold_rows(card: dict[str, Any]) -> list[dict[str, Any]] | None:
    """Per-fold scalar metrics (one row per fold); ``None`` when the card has no folds."""
    folds = _folds(card)
    if folds is None:
        return None
    columns = [
        key
        for key in dict.fromkeys(key for fold in folds for key in fold)
        if any(_is_number(fold.get(key)) for fold in folds)
    ]
    if not columns:
        return None
    return [
        {key: fold[key] if _is_number(fold.get(key)) else None for key in columns} for fold in folds
    ]


def _section(card: dict[str, Any], dotted: str) -> dict[str, Any] | None:
    holder: Any = card
    for part in dotted.split("."):
        holder = holder.get(part) if isinstance(holder, dict) else None
    return holder if isinstance(holder, dict) else None


def evaluation_value(card: dict[str, Any], *keys: str) -> tuple[Any, str] | None:
    """The first of ``keys`` found in the card's evaluation sections, and where.

    Args:
        card: The model card.
        *keys: Alternative names of one item (e.g. ``"reliability", "calibration"``).

    Returns:
        ``(value, where)`` with ``where`` like ``"cv_pooled.plots.roc"``, or ``None``
        when no section holds any of ``keys``. A missing confusion matrix present in
        every fold is summed over the folds (``where`` says so).
    """
    for section in EVALUATION_SECTIONS:
        holder = _section(card, section)
        if holder is None:
            continue
        for key in keys:
            if holder.get(key) is not None:
                return holder[key], f"{section}.{key}"
    if "confusion_matrix" in keys:
        folds = _folds(card) or []
        matrices = [fold.get("confusion_matrix") for fold in folds]
        if matrices and all(isinstance(matrix, list) for matrix in matrices):
            return _sum_matrices(matrices), f"sum over the {len(matrices)} folds' held-out sets"
    return None


def evaluation_class_names(card: dict[str, Any]) -> list[str] | None:
    """The class names of the plot data: its section's ``class_names``, else the card's."""
    for section in EVALUATION_SECTIONS:
        names = (_section(card, section) or {}).get("class_names")
        if isinstance(names, list):
            return [str(name) for name in names]
    names = card.get("class_names")
    return [str(name) for name in names] if isinstance(names, list) else None


_POOLED_METRICS: Final = (
    "n",
    # Classifiers (utils.training.classifier_card).
    "accuracy",
    "balanced_accuracy",
    "macro_auc",
    "auc_malignant",
    "ece",
    "ece_floor",
    # Segmenters (utils.training.segmenter_card).
    "lesion_dice",
    "lesion_dice_at_model_resolution",
    "normal_false_positive_rate",
)


def _interval(value: Any) -> str:
    if isinstance(value, list) and len(value) == 2 and all(_is_number(v) for v in value):
        return f"{value[0]:.3f} – {value[1]:.3f}"
    return "not recorded"


def pooled_metric_rows(card: dict[str, Any]) -> list[dict[str, str]] | None:
    """Pooled out-of-fold metrics (``cv_pooled.metrics``) with bootstrap 95% intervals.

    Returns:
        metric / value / 95% CI rows, ``None`` when the card has no pooled metrics. A
        metric recorded as ``null`` (not computable on those images) says so.
    """
    metrics = _section(card, "cv_pooled.metrics")
    if metrics is None:
        return None
    intervals = metrics.get("ci95") if isinstance(metrics.get("ci95"), dict) else {}
    rows = []
    for key in _POOLED_METRICS:
        if key not in metrics:
            continue
        value = metrics[key]
        if value is None:
            shown = "n/a (not computable on these images)"
        else:
            shown = f"{value:.3f}" if isinstance(value, float) else format_value(value)
        rows.append({"metric": key, "value": shown, "95% CI": _interval(intervals.get(key))})
    return rows


def per_class_rows(card: dict[str, Any]) -> list[dict[str, Any]] | None:
    """Per-class precision, recall, F1, support and AUC of the pooled metrics."""
    per_class = (_section(card, "cv_pooled.metrics") or {}).get("per_class")
    if not isinstance(per_class, dict) or not per_class:
        return None
    return [
        {"class": str(name), **{key: value for key, value in scores.items() if key != "class"}}
        for name, scores in per_class.items()
        if isinstance(scores, dict)
    ]


def _sum_matrices(matrices: list[list[Any]]) -> list[list[int]]:
    shapes = set()
    for matrix in matrices:
        rows_ok = all(isinstance(row, list) for row in matrix)
        if not rows_ok or not all(_is_count(cell) for row in matrix for cell in row):
            raise ModelError(
                "A fold's confusion_matrix must be a list of rows of non-negative integer "
                f"counts; got {matrix!r}."
            )
        shapes.add((len(matrix), *(len(row) for row in matrix)))
    if len(shapes) != 1:
        raise ModelError(
            f"The folds' confusion matrices have different shapes {sorted(shapes)}; they "
            "cannot be summed."
        )
    first = matrices[0]
    return [
        [sum(matrix[row][column] for matrix in matrices) for column in range(len(first[row]))]
        for row in range(len(first))
    ]


def cross_site_note(card: dict[str, Any]) -> str | None:
    """One sentence on how a model built like this one did on a dataset it never saw.

    Read from the card's ``cross_dataset`` section (a ``--split dataset`` run) and, when
    present, ``cross_dataset_reference``; ``None`` when the card records no such run.
    """
    metric_label = _CROSS_SITE_METRIC.get(str(card.get("task")))
    section = card.get(CROSS_DATASET_KEY)
    if metric_label is None or not isinstance(section, dict) or section.get("split") != "dataset":
        return None
    metric, label = metric_label
    rows = [
        row
        for row in section.get("per_fold") or []
        if isinstance(row, dict) and _is_number(row.get(metric)) and row.get("held_out_dataset")
    ]
    if not rows:
        return None
    scores = " and ".join(f"{row[metric]:.2f} on {row['held_out_dataset']}" for row in rows)
    reference = (_section(card, f"{CROSS_DATASET_REFERENCE_KEY}.summary.{metric}") or {}).get(
        "mean"
    )
    compared = (
        f", against {reference:.2f} when training and test patients came from every dataset"
        if _is_number(reference)
        else ""
    )
    return (
        "In the card's cross-dataset test (trained on one dataset, tested on another it "
        f"never saw, as at another hospital), {label} was {scores}{compared}. Expect "
        "lower accuracy on images from a scanner or hospital it was not trained on."
    )


def _share(spread: Any) -> str:
    mean = spread.get("mean") if isinstance(spread, dict) else None
    return f"{mean:.0%}" if _is_number(mean) else ""


def _auroc(spread: Any) -> str:
    mean = spread.get("mean") if isinstance(spread, dict) else None
    return f"{mean:.3f}" if _is_number(mean) else ""


def familiarity_rows(card: dict[str, Any]) -> list[dict[str, str]] | None:
    """How the card's unfamiliar-image flag did in CV (``familiarity.validation``), or ``None``.

    One row for the held-out patients (the false-alarm rate), one per outside image set
    and one per site pair (flag fitted on one dataset, scored on the other).
    """
    validation = _section(card, "familiarity.validation")
    if validation is None:
        return None
    rows = [
        {
            "images": "held-out patients, same hospitals (false alarms)",
            "flagged unfamiliar": _share(validation.get("held_out_flagged")),
            "AUROC vs held-out": "",
        }
    ]
    for name, entry in (validation.get("outside") or {}).items():
        if isinstance(entry, dict):
            rows.append(
                {
                    "images": f"{name} ({entry.get('n', '?')} images, outside the training data)",
                    "flagged unfamiliar": _share(entry.get("flagged")),
                    "AUROC vs held-out": _auroc(entry.get("auroc")),
                }
            )
    for pair, entry in (validation.get("cross_site") or {}).items():
        if isinstance(entry, dict):
            fitted, _, other = str(pair).partition("->")
            rows.append(
                {
                    "images": f"{other} patients, flag fitted on {fitted} only (another site)",
                    "flagged unfamiliar": (
                        f"{_share(entry.get('flagged_other_site'))} (same site: "
                        f"{_share(entry.get('flagged_same_site'))})"
                    ),
                    "AUROC vs held-out": _auroc(entry.get("auroc")),
                }
            )
    return rows
