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
