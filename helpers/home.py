"""Data shown on the home page: which models and datasets this installation has."""

from __future__ import annotations

from pathlib import Path

from utils.paths import SAVED_MODELS_DIR, default_datasets_dir

DISCLAIMER = (
    "TumorLens is decision support for trained readers. It is not a diagnosis and is "
    "not a certified medical device."
)

#: Datasets the workbench knows how to read, by folder name under the datasets dir.
KNOWN_DATASETS = {
    "busi": "BUSI breast ultrasound",
    "bus-bra": "BUS-BRA breast ultrasound",
    "monuseg": "MoNuSeg H&E nuclei",
    "wsi": "Whole-slide images",
    "pcam_sample": "PatchCamelyon patches",
    "breakhis_sample": "BreakHis H&E images",
}


def model_status_rows(models_dir: Path = SAVED_MODELS_DIR) -> list[dict[str, str]]:
    """List the model files shipped in ``models_dir``.

    Args:
        models_dir: Folder holding the saved models and their cards.

    Returns:
        One row per ``.keras`` file, or one row saying that none is installed.
    """
    models = sorted(models_dir.glob("*.keras")) if models_dir.is_dir() else []
    if not models:
        return [{"model": "none yet", "status": "no trained model is installed"}]
    return [{"model": path.stem, "status": "installed"} for path in models]


def dataset_status_rows(datasets_dir: Path | None = None) -> list[dict[str, str]]:
    """Report which known datasets are present in the configured datasets folder.

    Args:
        datasets_dir: Folder to inspect; defaults to ``TUMORLENS_DATA_DIR`` or
            ``../shared/datasets``.

    Returns:
        One row per known dataset with ``found`` or ``not found``.
    """
    root = datasets_dir or default_datasets_dir()
    return [
        {
            "dataset": title,
            "folder": str(root / name),
            "status": "found" if (root / name).exists() else "not found",
        }
        for name, title in KNOWN_DATASETS.items()
    ]
