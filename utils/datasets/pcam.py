"""Readers for PatchCamelyon (Veeling et al. 2018): the Kaggle layout and the official HDF5.

Kaggle "histopathologic cancer detection" layout: ``train/<id>.tif`` (96x96 RGB), ``test/<id>.tif``
(unlabelled) and a labels table ``train_labels.csv`` (``id,label``; the shared sample calls it
``mock_train_labels.csv`` and adds a leading index column). Label 1 means the centre 32x32 px
region holds at least one pixel of tumour.

The Kaggle form carries no patient or slide id (patches of one slide are spread over the
set), so each patch is its own group; this is a known limitation of that release.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import h5py
import numpy as np

from utils.datasets._common import (
    locate_layout_root,
    natural_sort_key,
    read_csv_rows,
    sort_records,
    sorted_files,
)
from utils.datasets.records import DatasetRecord
from utils.errors import ConfigError, DatasetError

logger = logging.getLogger(__name__)

PCAM_LABELS: dict[int, str] = {0: "normal", 1: "tumour"}
EXPECTED_PCAM_LAYOUT = (
    "the Kaggle PCam layout: train/<id>.tif, optional test/<id>.tif and a labels table "
    "matching *labels*.csv with columns id,label (label 0 or 1)"
)
_PATCH_EXTENSIONS = (".tif", ".tiff")


def _labels_tables(folder: Path) -> list[Path]:
    """The ``*labels*.csv`` files of ``folder`` in natural order."""
    return sorted(folder.glob("*labels*.csv"), key=natural_sort_key)


def is_pcam_root(folder: Path) -> bool:
    """Whether ``folder`` holds a ``train/`` folder and a ``*labels*.csv`` table."""
    return (folder / "train").is_dir() and bool(_labels_tables(folder))


def _read_labels(table: Path) -> dict[str, int]:
    """``{patch id: 0 or 1}`` from a Kaggle labels table."""
    labels: dict[str, int] = {}
    for row in read_csv_rows(table, ("id", "label")):
        value = row["label"]
        if value not in ("0", "1"):
            raise DatasetError(
                f"{table.name}: patch {row['id']} has label {value!r}; expected 0 (normal) "
                "or 1 (tumour)."
            )
        labels[row["id"]] = int(value)
    return labels


def _labelled_records(pcam_root: Path, labels: dict[str, int]) -> list[DatasetRecord]:
    """Records of the ``train/`` patches listed in ``labels``; missing files are skipped."""
    records = []
    missing = 0
    for patch_id, raw_label in labels.items():
        image_path = pcam_root / "train" / f"{patch_id}.tif"
        if not image_path.is_file():
            missing += 1
            continue
        records.append(
            DatasetRecord(
                image_path=image_path,
                label=PCAM_LABELS[raw_label],
                group_id=f"pcam:{patch_id}",
                dataset="pcam",
                metadata={"label_raw": raw_label, "split": "train"},
            )
        )
    if missing:
        logger.warning(
            "Skipped %d labelled PCam patch(es) missing from %s", missing, pcam_root / "train"
        )
    return records


def _unlabelled_records(pcam_root: Path) -> list[DatasetRecord]:
    """Records of the ``test/`` patches (no label)."""
    test_folder = pcam_root / "test"
    if not test_folder.is_dir():
        return []
    return [
        DatasetRecord(
            image_path=image_path,
            label=None,
            group_id=f"pcam:{image_path.stem}",
            dataset="pcam",
            metadata={"label_raw": None, "split": "test"},
        )
        for image_path in sorted_files(test_folder, _PATCH_EXTENSIONS)
    ]


def read_pcam(root: Path | str, include_unlabelled: bool = False) -> list[DatasetRecord]:
    """List the patches of a PCam dataset in the Kaggle layout.

    Args:
        root: The folder holding ``train/`` and the labels table, or an ancestor of it up to
            three levels above.
        include_unlabelled: Also return the ``test/`` patches, with label None.

    Returns:
        Records in natural order: ``label`` ``"tumour"`` (1) or ``"normal"`` (0), the raw
        0/1 in ``metadata["label_raw"]``, ``metadata["split"]`` ``"train"`` or ``"test"``,
        ``group_id`` ``"pcam:<id>"`` (the Kaggle release has no patient ids). Labelled
        patches whose file is missing are skipped with a logged warning.

    Raises:
        DatasetError: The folder is missing, empty or not in the layout, the labels table is
            malformed, or no patch was found.
    """
    pcam_root = locate_layout_root(root, is_pcam_root, EXPECTED_PCAM_LAYOUT)
    tables = _labels_tables(pcam_root)
    # Prefer the Kaggle name when several tables match, so extra copies do not win by name.
    table = next((path for path in tables if path.name == "train_labels.csv"), tables[0])
    if len(tables) > 1:
        logger.warning("Several labels tables in %s; using %s", pcam_root, table.name)
    records = _labelled_records(pcam_root, _read_labels(table))
    if include_unlabelled:
        records += _unlabelled_records(pcam_root)
    if not records:
        raise DatasetError(
            f"No PCam patch found in {pcam_root}: none of the ids of {table.name} has a file in "
            f"train/; expected {EXPECTED_PCAM_LAYOUT}."
        )
    return sort_records(records)


def _require_h5_file(path: Path | str) -> Path:
    """Check that an HDF5 file exists, with a hint for the compressed official downloads."""
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"PCam HDF5 file {path} does not exist.")
    if path.suffix == ".gz":
        raise DatasetError(f"{path.name} is gzip-compressed; decompress it (gunzip) first.")
    return path


def _open_h5_dataset(stack: ExitStack, path: Path, key: str) -> h5py.Dataset:
    """Open dataset ``key`` of ``path``, closing the file when ``stack`` closes."""
    try:
        handle = stack.enter_context(h5py.File(path, "r"))
    except OSError as error:
        raise DatasetError(f"{path.name} is not a readable HDF5 file ({error}).") from error
    if key not in handle:
        raise DatasetError(
            f"{path.name} has no dataset {key!r} (found {', '.join(handle.keys()) or 'none'}); "
            "expected the official camelyonpatch_level_2_split_*_x.h5 / _y.h5 files."
        )
    return handle[key]


def iter_pcam_h5(
    x_path: Path | str, y_path: Path | str | None = None, batch_size: int = 1024
) -> Iterator[tuple[np.ndarray, np.ndarray | None]]:
    """Stream batches from the official PCam HDF5 files without loading them whole.

    Arguments and file paths are checked at call time; the files are opened on the first
    batch and closed when the iteration ends.

    Args:
        x_path: ``camelyonpatch_level_2_split_<split>_x.h5`` (dataset ``"x"``, N x 96 x 96 x 3).
        y_path: Matching ``..._y.h5`` (dataset ``"y"``, shape N x 1 x 1 x 1), or None.
        batch_size: Patches per batch (the last batch may be smaller).

    Returns:
        An iterator of ``(images, labels)``: uint8 array (B, 96, 96, 3) and int64 array (B,)
        of 0/1, or None for labels when ``y_path`` is None.

    Raises:
        ConfigError: ``batch_size`` is not a positive integer.
        DatasetError: A file is missing or compressed; while iterating, a file is
            unreadable, lacks its dataset, has the wrong shape, or the two files disagree
            on the number of patches.
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ConfigError(f"batch_size must be a positive integer, got {batch_size!r}.")
    x_file = _require_h5_file(x_path)
    y_file = None if y_path is None else _require_h5_file(y_path)
    return _iter_h5_batches(x_file, y_file, batch_size)


def _iter_h5_batches(
    x_file: Path, y_file: Path | None, batch_size: int
) -> Iterator[tuple[np.ndarray, np.ndarray | None]]:
    """The generator behind :func:`iter_pcam_h5`."""
    with ExitStack() as stack:
        images = _open_h5_dataset(stack, x_file, "x")
        labels = None if y_file is None else _open_h5_dataset(stack, y_file, "y")
        if images.ndim != 4 or images.shape[-1] != 3:
            raise DatasetError(
                f"{x_file.name}: dataset 'x' has shape {images.shape}; expected (N, 96, 96, 3) "
                "RGB patches."
            )
        if labels is not None and labels.shape[0] != images.shape[0]:
            raise DatasetError(
                f"{x_file.name} holds {images.shape[0]} patches but {y_file.name} holds "
                f"{labels.shape[0]} labels; use the x and y files of the same split."
            )
        for start in range(0, images.shape[0], batch_size):
            batch = np.asarray(images[start : start + batch_size], dtype=np.uint8)
            batch_labels = None
            if labels is not None:
                # The official y files are (N, 1, 1, 1); flatten to one label per patch.
                batch_labels = np.asarray(labels[start : start + batch_size]).reshape(-1)
                batch_labels = batch_labels.astype(np.int64)
            yield batch, batch_labels
