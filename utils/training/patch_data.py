"""H&E patch datasets for training and evaluation: PCam (Kaggle layout) and BreakHis.

Both datasets are read with the readers of :mod:`utils.datasets` and decoded once into
the in-memory :class:`~utils.training.arrays.TrainingArrays` the classifier trainer takes
(cached as ``.npz`` like the ultrasound data).

* **PCam**: 96x96 RGB patches, ``normal`` / ``tumour``. Every patch must be exactly
  96x96x3; another size means the folder is not PCam (or was re-exported), and resizing
  it silently would change the magnification the model learns. The Kaggle release has no
  patient or slide ids, so each patch is its own group: PCam cross-validation folds are
  **not** patient-level, and their scores are optimistic for that reason.
* **BreakHis**: 700x460 RGB images, ``benign`` / ``malignant`` or, with ``subtypes``, the
  eight histological subtypes. Groups are the patient numbers parsed from the file names,
  so grouped splits are patient-level. Images are stretched to a square
  ``image_size`` (the same resize :class:`~utils.inference.classifier.LesionClassifier`
  applies at inference, so training and inference agree).
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Final

import numpy as np

from utils.datasets import DatasetRecord, read_breakhis, read_pcam
from utils.datasets.breakhis import BREAKHIS_SUBTYPES
from utils.datasets.pcam import PCAM_LABELS
from utils.errors import ConfigError, DatasetError, ImageDimensionError
from utils.image_io import load_image
from utils.training.arrays import TrainingArrays

LOGGER = logging.getLogger(__name__)

#: Datasets the patch trainer and evaluator read.
PATCH_DATASETS: Final = ("pcam", "breakhis")
#: Side of a PCam patch, in pixels.
PCAM_PATCH_SIDE: Final = 96
#: Default square model input per dataset.
DEFAULT_PATCH_IMAGE_SIZE: Final = {"pcam": PCAM_PATCH_SIDE, "breakhis": 224}

PCAM_CLASSES: Final = tuple(PCAM_LABELS[index] for index in sorted(PCAM_LABELS))
BREAKHIS_BINARY_CLASSES: Final = ("benign", "malignant")
BREAKHIS_SUBTYPE_CLASSES: Final = tuple(subtype for _, subtype in BREAKHIS_SUBTYPES.values())


def check_patch_dataset(dataset: str, subtypes: bool = False) -> None:
    """Reject an unknown dataset name, or ``subtypes`` for a dataset without subtype labels.

    Raises:
        ConfigError: ``dataset`` is not one of :data:`PATCH_DATASETS`, or ``subtypes`` is
            asked of PCam (whose only labels are normal / tumour).
    """
    if dataset not in PATCH_DATASETS:
        raise ConfigError(
            f"Unknown patch dataset {dataset!r}; valid names: {', '.join(PATCH_DATASETS)}."
        )
    if subtypes and dataset != "breakhis":
        raise ConfigError(
            f"--subtypes needs subtype labels, but {dataset} has only "
            f"{' / '.join(PCAM_CLASSES)} labels; subtypes exist for: breakhis."
        )


def patch_class_names(dataset: str, subtypes: bool = False) -> tuple[str, ...]:
    """Class names, in output order, of a patch classifier for ``dataset``.

    Raises:
        ConfigError: See :func:`check_patch_dataset`.
    """
    check_patch_dataset(dataset, subtypes)
    if dataset == "pcam":
        return PCAM_CLASSES
    return BREAKHIS_SUBTYPE_CLASSES if subtypes else BREAKHIS_BINARY_CLASSES


def read_patch_records(
    dataset: str, data_dirs: Sequence[Path | str], *, subtypes: bool = False
) -> list[DatasetRecord]:
    """The labelled records of one or more folders of ``dataset``.

    Raises:
        ConfigError: See :func:`check_patch_dataset`.
        DatasetError: No folder given, or a folder is missing, empty, in another layout,
            or holds no labelled image.
    """
    check_patch_dataset(dataset, subtypes)
    if not data_dirs:
        raise DatasetError(f"No {dataset} folder given; pass at least one --data DIR.")
    records: list[DatasetRecord] = []
    for data_dir in data_dirs:
        if dataset == "pcam":
            found = read_pcam(data_dir)
        else:
            found = read_breakhis(data_dir, label_mode="subtype" if subtypes else "binary")
        labelled = [record for record in found if record.label is not None]
        if not labelled:
            raise DatasetError(f"{data_dir} holds no labelled {dataset} image.")
        LOGGER.info("%s: %d labelled %s images", data_dir, len(labelled), dataset)
        records.extend(labelled)
    return records


def decode_patch(record: DatasetRecord, image_size: int) -> np.ndarray:
    """One record as uint8 ``(image_size, image_size, 3)`` RGB.

    Raises:
        ImageDimensionError: A PCam patch is not 96x96 RGB.
        InvalidImageError: The file cannot be read as an image.
    """
    pixels = load_image(record.image_path).pixels
    if pixels.ndim == 2:
        pixels = np.repeat(pixels[..., None], 3, axis=2)
    if record.dataset == "pcam" and pixels.shape != (PCAM_PATCH_SIDE, PCAM_PATCH_SIDE, 3):
        raise ImageDimensionError(
            f"PCam patch {record.image_path.name} is {pixels.shape[1]}x{pixels.shape[0]} px "
            f"with shape {pixels.shape}; PCam patches must be {PCAM_PATCH_SIDE}x"
            f"{PCAM_PATCH_SIDE} RGB."
        )
    if pixels.shape[:2] != (image_size, image_size):
        # Lazy: utils.pipelines imports TensorFlow; the resize is the one inference uses.
        from utils.resize import resize_image

        pixels = resize_image(pixels, (image_size, image_size))
    return pixels.reshape(image_size, image_size, 3)


def _cache_key(records: Sequence[DatasetRecord], image_size: int) -> str:
    description = json.dumps(
        [[str(r.image_path), r.label, r.group_id] for r in records] + [image_size, "patch-rgb"]
    )
    return hashlib.sha256(description.encode()).hexdigest()[:16]


def load_patch_arrays(
    dataset: str,
    data_dirs: Sequence[Path | str],
    *,
    image_size: int | None = None,
    subtypes: bool = False,
    cache_dir: Path | None = None,
) -> TrainingArrays:
    """Decode every labelled image of ``data_dirs`` once (cached on disk).

    Args:
        dataset: ``"pcam"`` or ``"breakhis"``.
        data_dirs: Folders in that dataset's layout.
        image_size: Square side of the arrays; default per dataset
            (:data:`DEFAULT_PATCH_IMAGE_SIZE`).
        subtypes: BreakHis only: label by the eight subtypes instead of benign/malignant.
        cache_dir: Where to keep ``patches_<key>.npz``; the key covers the records and
            size, so a changed dataset is never served from a stale cache.

    Returns:
        uint8 RGB arrays with labels, groups (patient for BreakHis, patch for PCam),
        sources and dataset names.

    Raises:
        ConfigError: Unknown dataset, ``subtypes`` on PCam, or a bad ``image_size``.
        DatasetError: See :func:`read_patch_records`.
        ImageDimensionError: A PCam patch is not 96x96 RGB.
    """
    check_patch_dataset(dataset, subtypes)
    size = DEFAULT_PATCH_IMAGE_SIZE[dataset] if image_size is None else image_size
    if isinstance(size, bool) or not isinstance(size, int) or not 16 <= size <= 1024:
        raise ConfigError(f"image_size must be an integer from 16 to 1024; received {size!r}.")
    records = read_patch_records(dataset, data_dirs, subtypes=subtypes)
    cache_path = None
    if cache_dir is not None:
        cache_path = Path(cache_dir) / f"patches_{_cache_key(records, size)}.npz"
        if cache_path.exists():
            LOGGER.info("using cached arrays %s", cache_path)
            return TrainingArrays.load(cache_path)
    images = np.empty((len(records), size, size, 3), dtype=np.uint8)
    for index, record in enumerate(records):
        images[index] = decode_patch(record, size)
    arrays = TrainingArrays(
        images=images,
        masks=None,
        labels=[str(record.label) for record in records],
        groups=[record.group_id for record in records],
        sources=[str(record.image_path) for record in records],
        datasets=[record.dataset for record in records],
    )
    if cache_path is not None:
        arrays.save(cache_path)
    return arrays
