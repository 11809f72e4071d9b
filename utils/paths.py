"""Well-known locations of the project: saved models, datasets, user data."""

from __future__ import annotations

import os
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
SAVED_MODELS_DIR = PROJECT_ROOT / "saved_models"


def default_datasets_dir() -> Path:
    """Return the datasets folder: ``$TUMORLENS_DATA_DIR`` or ``../shared/datasets``."""
    configured = os.environ.get("TUMORLENS_DATA_DIR")
    if configured:
        return Path(configured).expanduser()
    return PROJECT_ROOT.parent / "shared" / "datasets"


def default_user_data_dir() -> Path:
    """Return the per-user data folder: ``$TUMORLENS_USER_DATA`` or ``~/.tumorlens``.

    It lies outside the repository, so reviews are never committed or shipped.
    """
    configured = os.environ.get("TUMORLENS_USER_DATA")
    if configured:
        return Path(configured).expanduser()
    return Path.home() / ".tumorlens"


def default_review_db_url() -> str:
    """Return the review database URL: ``$TUMORLENS_REVIEW_DB`` or a SQLite file.

    Any SQLAlchemy URL works (e.g. ``postgresql+psycopg://host/tumorlens`` for a shared
    server); by default ``reviews.sqlite3`` in :func:`default_user_data_dir`.
    """
    configured = os.environ.get("TUMORLENS_REVIEW_DB")
    if configured:
        return configured
    return f"sqlite:///{default_user_data_dir() / 'reviews.sqlite3'}"
