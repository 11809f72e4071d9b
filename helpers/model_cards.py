"""What the Models page shows about each bundle in ``saved_models/``, without Streamlit.

A bundle is ``NAME.keras`` + ``NAME.json`` (its card) + ``NAME.md`` (see
:mod:`utils.model_card`). This module turns a card into table rows and reads the
evaluation data a card may record, checking its shape but never filling a gap: an
absent key is reported as absent, so the page can say "not recorded in this card".

Where a card records its evaluation (first match wins, per key):

* cross-validation summary: ``cv_metrics`` (``{metric: {mean, sd, n}}``, as
  :func:`utils.model_card.card_to_markdown` renders it), else ``cv.summary`` (the
  ``cv.json`` of :func:`utils.training.common.collect_cv_results`);
* per-fold metrics: ``cv.folds`` (a list of per-fold metric dicts), else ``cv_folds``;
* ``roc``, ``calibration`` (or ``reliability``) and ``confusion_matrix``: in
  ``evaluation``, then ``cv``, then the card's top level. A confusion matrix absent
  everywhere but present in every fold is the sum of the folds' held-out matrices.

Plot data formats are parsed by :mod:`helpers.model_card_figures`. The one Streamlit
cache of this page (the weights hash) is :func:`cached_weights_info`.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import streamlit as st

from utils.errors import ModelError
from utils.inference.bundle import (
    DEFAULT_CLASSIFIER_BUNDLE,
    DEFAULT_SEGMENTER_BUNDLE,
    available_bundles,
    validate_card,
)
from utils.model_card import card_to_markdown, load_model_card
from utils.paths import SAVED_MODELS_DIR

__all__ = [
    "EVALUATION_SECTIONS",
    "MODELS_DIR",
    "BundleCard",
    "WeightsInfo",
    "bundle_cards",
    "cached_weights_info",
    "card_rows",
    "cv_fold_rows",
    "cv_summary_rows",
    "evaluation_value",
    "loaded_by",
    "overview_rows",
    "setting_rows",
    "weights_info",
]

#: Folder listed by the page; a module attribute so tests can point it at a tmp folder.
MODELS_DIR: Path = SAVED_MODELS_DIR
#: Card sections searched, in order, for an evaluation key (``None``: the top level).
EVALUATION_SECTIONS: Final = ("evaluation", "cv", None)
_HASH_CHUNK = 1 << 20


@dataclass(frozen=True)
class BundleCard:
    """One bundle of the models folder, as the page shows it.

    Attributes:
        name: Bundle name (file stem).
        card: The parsed JSON card.
        markdown: The ``.md`` card, or the JSON card rendered as Markdown when absent.
        weights_path: The ``.keras`` file the app loads.
        problem: Why inference would refuse this card (``None`` when it is valid).
    """

    name: str
    card: dict[str, Any]
    markdown: str
    weights_path: Path
    problem: str | None = None


@dataclass(frozen=True)
class WeightsInfo:
    """Identity of a weights file: what exactly the app loads.

    Attributes:
        path: The file.
        size_bytes: Its size.
        sha256: Hex SHA-256 of its bytes.
        modified: Last modification time (UTC).
    """

    path: Path
    size_bytes: int
    sha256: str
    modified: dt.datetime

    def rows(self) -> list[dict[str, str]]:
        """Field/value rows for a table."""
        return [
            {"field": "file", "value": str(self.path)},
            {
                "field": "size",
                "value": f"{self.size_bytes / 1e6:.2f} MB ({self.size_bytes:,} bytes)",
            },
            {"field": "SHA-256", "value": self.sha256},
            {"field": "modified (UTC)", "value": self.modified.isoformat(timespec="seconds")},
        ]


# ----------------------------------------------------------------------------- bundles


def bundle_cards(models_dir: Path | None = None) -> list[BundleCard]:
    """Every complete bundle (``.keras`` + ``.json``) of ``models_dir``, by name.

    Args:
        models_dir: Folder to list; defaults to :data:`MODELS_DIR`.

    Returns:
        One entry per bundle. A card that is not valid JSON is skipped by the caller's
        choice: it raises.

    Raises:
        ModelError: A card cannot be read as JSON.
    """
    folder = Path(models_dir or MODELS_DIR)
    cards = []
    for name in available_bundles(folder):
        card = load_model_card(name, models_dir=folder)
        if not isinstance(card, dict):
            raise ModelError(f"Model card {folder / name}.json must be a JSON object.")
        markdown_path = folder / f"{name}.md"
        markdown = (
            markdown_path.read_text(encoding="utf-8")
            if markdown_path.is_file()
            else card_to_markdown({"name": name, "intended_use": "not recorded", **card})
        )
        try:
            validate_card(card, f"{name}.json")
            problem = None
        except ModelError as error:
            problem = str(error)
        cards.append(BundleCard(name, card, markdown, folder / f"{name}.keras", problem))
    return cards


def loaded_by(name: str) -> str:
    """Which part of the app loads bundle ``name`` (by its default bundle names)."""
    if name == DEFAULT_SEGMENTER_BUNDLE:
        return "Analyse page: lesion segmentation, measurements and the segmenter's CAM"
    if name == DEFAULT_CLASSIFIER_BUNDLE:
        return "Analyse page: classification, uncertainty and the classifier's CAM"
    return "not loaded by the Analyse page (available to the evaluation CLI and the API by name)"


def weights_info(path: Path) -> WeightsInfo:
    """Size, SHA-256 and modification time of a weights file (read in 1 MB chunks).

    Raises:
        ModelError: The file is missing or unreadable.
    """
    digest = hashlib.sha256()
    try:
        with Path(path).open("rb") as stream:
            while chunk := stream.read(_HASH_CHUNK):
                digest.update(chunk)
        stat = Path(path).stat()
    except OSError as error:
        raise ModelError(f"Weights file {path} cannot be read: {error}") from error
    modified = dt.datetime.fromtimestamp(stat.st_mtime, tz=dt.UTC)
    return WeightsInfo(Path(path), stat.st_size, digest.hexdigest(), modified)


@st.cache_data(max_entries=32, show_spinner="Hashing the weights file…")
def _weights_info_cached(path: str, size: int, mtime_ns: int) -> WeightsInfo:
    # Size and mtime are in the key, so a replaced file is hashed again.
    return weights_info(Path(path))


def cached_weights_info(path: Path) -> WeightsInfo:
    """:func:`weights_info`, hashed once per file version (path, size, mtime).

    Raises:
        ModelError: The file is missing or unreadable.
    """
    try:
        stat = Path(path).stat()
    except OSError as error:
        raise ModelError(f"Weights file {path} cannot be read: {error}") from error
    return _weights_info_cached(str(path), stat.st_size, stat.st_mtime_ns)


# ----------------------------------------------------------------------------- card tables


def _text(value: Any) -> str:
    if isinstance(value, list | tuple):
        return ", ".join(str(item) for item in value) if value else "none"
    if isinstance(value, dict):
        return "; ".join(f"{key}: {_text(item)}" for key, item in value.items())
    return str(value)


_IDENTITY_FIELDS: Final = (
    ("title", "title"),
    ("version", "version"),
    ("status", "status"),
    ("task", "task"),
    ("architecture", "architecture"),
    ("input_shape", "input shape"),
    ("class_names", "classes"),
    ("trained_from", "trained from (initial weights)"),
    ("created", "created"),
    ("keras_version", "Keras version"),
)


def card_rows(card: dict[str, Any]) -> list[dict[str, str]]:
    """The card's identity fields as field/value rows; absent fields say so."""
    return [
        {"field": label, "value": _text(card[key]) if key in card else "not recorded in this card"}
        for key, label in _IDENTITY_FIELDS
    ]


def overview_rows(cards: list[BundleCard]) -> list[dict[str, str]]:
    """One summary row per bundle for the page's overview table."""
    return [
        {
            "bundle": bundle.name,
            "task": _text(bundle.card.get("task", "not recorded")),
            "architecture": _text(bundle.card.get("architecture", "not recorded")),
            "version": _text(bundle.card.get("version", "not recorded")),
            "status": _text(bundle.card.get("status", "no status recorded")),
            "card check": "valid" if bundle.problem is None else "invalid (see its tab)",
        }
        for bundle in cards
    ]


def setting_rows(card: dict[str, Any]) -> list[dict[str, str]]:
    """Decision threshold, post-processing and calibration settings the card records."""
    rows = []
    postprocess = card.get("postprocess")
    if isinstance(postprocess, dict):
        rows += [
            {"setting": f"postprocess.{key}", "value": _text(value)}
            for key, value in postprocess.items()
        ]
    for key in ("threshold", "temperature", "refer_min_confidence", "refer_max_entropy"):
        if key in card:
            rows.append({"setting": key, "value": _text(card[key])})
    if card.get("task") == "classification" and "temperature" not in card:
        rows.append({"setting": "temperature", "value": "not recorded (inference uses 1.0)"})
    return rows


# ----------------------------------------------------------------------------- evaluation


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _is_count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _format_summary(value: Any) -> tuple[str, str]:
    """(``mean ± sd``, ``n``) of a ``{mean, sd, n}`` dict, or the value as it is."""
    if isinstance(value, dict) and "mean" in value:
        mean, sd, n = value.get("mean"), value.get("sd"), value.get("n")
        if not _is_number(mean):
            return "n/a (no fold recorded it)", _text(n if n is not None else 0)
        spread = f" ± {sd:.3f}" if _is_number(sd) else ""
        return f"{mean:.3f}{spread}", _text(n) if n is not None else "not recorded"
    return _text(value), "not recorded"


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


def evaluation_value(card: dict[str, Any], *keys: str) -> tuple[Any, str] | None:
    """The first of ``keys`` found in the card's evaluation sections, and where.

    Args:
        card: The model card.
        *keys: Alternative names of one item (e.g. ``"calibration", "reliability"``).

    Returns:
        ``(value, where)`` with ``where`` like ``"evaluation.roc"``, or ``None`` when no
        section holds any of ``keys``. A missing confusion matrix present in every fold
        is summed over the folds (``where`` says so).
    """
    for section in EVALUATION_SECTIONS:
        holder = card if section is None else card.get(section)
        if not isinstance(holder, dict):
            continue
        for key in keys:
            if key in holder and holder[key] is not None:
                return holder[key], key if section is None else f"{section}.{key}"
    if "confusion_matrix" in keys:
        folds = _folds(card) or []
        matrices = [fold.get("confusion_matrix") for fold in folds]
        if matrices and all(isinstance(matrix, list) for matrix in matrices):
            return _sum_matrices(matrices), f"sum over the {len(matrices)} folds' held-out sets"
    return None


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
