"""What the Models page shows about each bundle in ``saved_models/``: cards and weights.

A bundle is ``NAME.keras`` + ``NAME.json`` (its card) + ``NAME.md`` (see
:mod:`utils.model_card`). This module lists the bundles, identifies the exact weights
file the app loads (size, SHA-256, time) and turns a card's identity and settings into
table rows; an absent field says "not recorded in this card", never a guess.

The evaluation a card records (CV metrics, plot data) is read by
:mod:`helpers.model_card_metrics` and drawn by :mod:`helpers.model_card_figures`. The
page's one Streamlit cache, the weights hash, is :func:`cached_weights_info`.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import streamlit as st

from helpers.model_card_metrics import format_value
from utils.errors import ModelError, TumorLensError
from utils.inference.bundle import (
    DEFAULT_CLASSIFIER_BUNDLE,
    DEFAULT_SEGMENTER_BUNDLE,
    available_bundles,
    validate_card,
)
from utils.model_card import card_to_markdown, load_model_card
from utils.paths import SAVED_MODELS_DIR

__all__ = [
    "MODELS_DIR",
    "BundleCard",
    "TumorLensError",
    "WeightsInfo",
    "bundle_cards",
    "cached_weights_info",
    "card_rows",
    "loaded_by",
    "overview_rows",
    "setting_rows",
    "weights_info",
]

#: Folder listed by the page; a module attribute so tests can point it at a tmp folder.
MODELS_DIR: Path = SAVED_MODELS_DIR
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
    return "not loaded by the Analyse page (other pages, the CLIs and the API load bundles by name)"


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
        {
            "field": label,
            "value": format_value(card[key]) if key in card else "not recorded in this card",
        }
        for key, label in _IDENTITY_FIELDS
    ]


def overview_rows(cards: list[BundleCard]) -> list[dict[str, str]]:
    """One summary row per bundle for the page's overview table."""
    return [
        {
            "bundle": bundle.name,
            "task": format_value(bundle.card.get("task", "not recorded")),
            "architecture": format_value(bundle.card.get("architecture", "not recorded")),
            "version": format_value(bundle.card.get("version", "not recorded")),
            "status": format_value(bundle.card.get("status", "no status recorded")),
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
            {"setting": f"postprocess.{key}", "value": format_value(value)}
            for key, value in postprocess.items()
        ]
    for key in ("threshold", "temperature"):
        if key in card:
            rows.append({"setting": key, "value": format_value(card[key])})
    for section in ("calibration", "refer_rule"):
        values = card.get(section)
        if isinstance(values, dict) and "edges" not in values:  # not reliability bins
            rows += [
                {"setting": f"{section}.{key}", "value": format_value(value)}
                for key, value in values.items()
            ]
    if card.get("task") == "classification" and "temperature" not in card:
        rows.append({"setting": "temperature", "value": "not recorded (inference uses 1.0)"})
    return rows
