"""Evaluation of an H&E patch classifier bundle on a labelled PCam or BreakHis folder.

The report has the keys of the ultrasound classifier evaluation
(:func:`utils.evaluation.classification.classification_report`: ``n``, ``accuracy``,
``balanced_accuracy``, ``macro_auc``, ``ece``, ``per_class``, ``confusion_matrix``,
``ci95``...) plus, for a two-class model, ``positive_class`` and ``auc_<positive class>``
(e.g. ``auc_tumour`` for PCam) with its bootstrap interval in ``ci95``.

Small sets: bootstrap intervals of fewer than :data:`MIN_N_FOR_CI` patches would be
wider than the unit interval says, so they are reported as ``None`` with a note; a set
holding one class gets ``None`` AUCs (there is nothing to rank) instead of an error.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import numpy as np

from utils.datasets import DatasetRecord, detect_layout
from utils.errors import DatasetError
from utils.evaluation.bootstrap import bootstrap_ci
from utils.evaluation.classification import (
    _rank_auc,  # the fast Mann-Whitney AUC (NaN for one class) the report bootstraps with
    classification_report,
    save_classification_plots,
)
from utils.training.patch_data import (
    BREAKHIS_SUBTYPE_CLASSES,
    PATCH_DATASETS,
    check_patch_dataset,
    decode_patch,
    read_patch_records,
)

if TYPE_CHECKING:
    from utils.inference.classifier import LesionClassifier

#: Fewest patches for which bootstrap confidence intervals are reported.
MIN_N_FOR_CI: Final = 10


def resolve_patch_dataset(data: Path, dataset: str) -> str:
    """``dataset``, or the layout detected in ``data`` when it is ``"auto"``.

    Raises:
        ConfigError: ``dataset`` is not ``"auto"`` or a patch dataset.
        DatasetError: The folder is missing, or ``"auto"`` finds a non-patch layout.
    """
    if dataset != "auto":
        check_patch_dataset(dataset)
        return dataset
    detected = detect_layout(data)
    if detected not in PATCH_DATASETS:
        raise DatasetError(
            f"{data} looks like a {detected} dataset; patch evaluation reads "
            f"{', '.join(PATCH_DATASETS)} (pass --dataset to force one)."
        )
    return detected


def add_positive_class_auc(
    report: dict[str, Any], probs: np.ndarray, labels: np.ndarray, names: Sequence[str]
) -> None:
    """Add ``positive_class``, ``auc_<name>`` and its CI for a two-class model, in place."""
    if len(names) != 2:
        return
    positive = names[1]
    key = f"auc_{positive}"
    report["positive_class"] = positive
    if key in report and report[key] is not None:
        return  # classification_report already has it (BreakHis: auc_malignant)
    rows = np.column_stack([labels == 1, probs[:, 1]]).astype(np.float64)
    auc = _rank_auc(rows)
    report[key] = None if np.isnan(auc) else auc
    interval = None
    if report[key] is not None:
        low, high = bootstrap_ci(rows, _rank_auc, n_resamples=1000, seed=0)
        interval = None if np.isnan(low) else [float(low), float(high)]
    report["ci95"][key] = interval


def gate_small_sample_cis(report: dict[str, Any]) -> None:
    """Replace every bootstrap interval by ``None`` below :data:`MIN_N_FOR_CI`, in place."""
    if report["n"] >= MIN_N_FOR_CI:
        return
    report["ci95"] = dict.fromkeys(report["ci95"])
    report["ci95_note"] = (
        f"Only {report['n']} patches: bootstrap intervals need at least {MIN_N_FOR_CI}."
    )


def _label_mode_subtypes(class_names: Sequence[str]) -> bool:
    """Whether a BreakHis model predicts subtypes (its classes are subtype names)."""
    return set(class_names) <= set(BREAKHIS_SUBTYPE_CLASSES)


def _probabilities(
    classifier: LesionClassifier, records: Sequence[DatasetRecord], batch_size: int
) -> tuple[np.ndarray, list[np.ndarray]]:
    """Calibrated probabilities and model-size patches (kept for feature extraction)."""
    side = classifier.input_shape[0]
    patches = [decode_patch(record, side) for record in records]
    chunks = [
        classifier.predict_probabilities(np.stack(patches[start : start + batch_size]))
        for start in range(0, len(patches), batch_size)
    ]
    return np.concatenate(chunks), patches


def evaluate_patch_classifier(
    classifier: LesionClassifier,
    data: Path,
    *,
    dataset: str = "auto",
    batch_size: int = 32,
    figures_dir: Path | None = None,
    features_path: Path | None = None,
    feature_layer: str | None = None,
) -> dict[str, Any]:
    """Evaluate ``classifier`` on the labelled images of ``data``.

    Args:
        classifier: A loaded classification bundle (RGB, square input).
        data: A PCam (Kaggle layout) or BreakHis folder.
        dataset: ``"pcam"``, ``"breakhis"`` or ``"auto"`` (detect from the folder).
        batch_size: Patches per forward pass.
        figures_dir: Where to write ROC, reliability and confusion figures (None: none).
        features_path: Also write the pooled features of the evaluated patches, in the
            order of ``per_image``, as ``.npy`` (see :mod:`utils.histo.features`).
        feature_layer: Layer of those features (default: the global pool).

    Returns:
        The JSON-ready report body (see the module docstring), with ``dataset``,
        ``skipped_labels``, ``figures``, ``per_image`` and, with ``features_path``,
        ``features``.

    Raises:
        ConfigError: Unknown dataset name.
        DatasetError: The folder is missing, not a patch dataset, or holds no image of
            one of the model's classes.
        ImageDimensionError: A PCam patch is not 96x96 RGB.
    """
    dataset = resolve_patch_dataset(Path(data), dataset)
    names = list(classifier.class_names)
    subtypes = dataset == "breakhis" and _label_mode_subtypes(names)
    records = read_patch_records(dataset, [data], subtypes=subtypes)
    selected = [record for record in records if record.label in names]
    skipped = Counter(str(record.label) for record in records if record.label not in names)
    if not selected:
        raise DatasetError(
            f"No image in {data} is labelled with one of the model's classes "
            f"({', '.join(names)}); labels found: {', '.join(sorted(skipped)) or 'none'}."
        )
    probs, patches = _probabilities(classifier, selected, batch_size)
    labels = np.array([names.index(record.label) for record in selected])
    report = classification_report(probs, labels, names)
    add_positive_class_auc(report, probs, labels, names)
    gate_small_sample_cis(report)
    figures = (
        [] if figures_dir is None else save_classification_plots(probs, labels, names, figures_dir)
    )
    body: dict[str, Any] = {
        "dataset": dataset,
        "grouping": "patient" if dataset == "breakhis" else "none (PCam has no patient ids)",
        "skipped_labels": dict(sorted(skipped.items())),
        "figures": [str(path) for path in figures],
        **report,
        "per_image": [
            {
                "source": _relative(record.image_path, Path(data)),
                "group": record.group_id,
                "label": record.label,
                "predicted": names[int(np.argmax(row))],
                "probabilities": dict(zip(names, map(float, row), strict=True)),
            }
            for record, row in zip(selected, probs, strict=True)
        ],
    }
    if features_path is not None:
        body["features"] = _write_features(
            classifier, np.stack(patches), Path(features_path), feature_layer, batch_size
        )
    return body


def _write_features(
    classifier: LesionClassifier,
    patches: np.ndarray,
    path: Path,
    layer: str | None,
    batch_size: int,
) -> dict[str, Any]:
    from utils.histo.features import DEFAULT_FEATURE_LAYER, extract_features

    features = extract_features(classifier, patches, layer=layer, batch_size=batch_size)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.save(path, features)
    return {
        "path": str(path),
        "shape": list(features.shape),
        "layer": layer or DEFAULT_FEATURE_LAYER,
        "order": "rows follow per_image",
    }


def _relative(path: Path, root: Path) -> str:
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return path.name
