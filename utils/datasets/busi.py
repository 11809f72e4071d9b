"""Reader for BUSI, the Breast Ultrasound Images dataset (Al-Dhabyani et al. 2020).

Layout: ``<class>/<class> (N).png`` with masks ``<class> (N)_mask.png`` and, for images with
several lesions, ``<class> (N)_mask_1.png``, ``_mask_2.png``... (merged at load time).
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

from utils.datasets._common import locate_layout_root, pair_images_with_masks, sort_records
from utils.datasets.records import DatasetRecord

logger = logging.getLogger(__name__)

BUSI_CLASSES: tuple[str, ...] = ("benign", "malignant", "normal")
EXPECTED_BUSI_LAYOUT = (
    "folders benign/, malignant/, normal/ (at least one of them) holding images named "
    "'<class> (N).png' and masks '<class> (N)_mask.png' (the BUSI layout)"
)

_IMAGE_NAME = re.compile(r"^(?P<label>[a-z]+) \((?P<index>\d+)\)\.png$", re.IGNORECASE)


def _class_folders(folder: Path) -> list[Path]:
    """The BUSI class subfolders present in ``folder``, in ``BUSI_CLASSES`` order."""
    by_name = {child.name.lower(): child for child in folder.iterdir() if child.is_dir()}
    return [by_name[name] for name in BUSI_CLASSES if name in by_name]


def is_busi_root(folder: Path) -> bool:
    """Whether ``folder`` directly holds BUSI class folders with BUSI-named images.

    Checking the file names, not just the folder names, keeps a generic
    ``benign/ malignant/`` class-folder dataset from being mistaken for BUSI.
    """
    return any(
        _IMAGE_NAME.match(child.name) is not None
        for class_folder in _class_folders(folder)
        for child in class_folder.iterdir()
    )


def read_busi(root: Path | str) -> list[DatasetRecord]:
    """List the images of a BUSI dataset with their masks.

    Args:
        root: The folder holding ``benign/``, ``malignant/``, ``normal/`` (any subset), or
            an ancestor of it up to three levels above (e.g. ``busi/`` holding
            ``Dataset_BUSI_with_GT/``).

    Returns:
        One record per image in natural order (``benign (2)`` before ``benign (10)``).
        ``label`` is the class folder name, ``mask_paths`` every mask file of the image
        (BUSI ``normal`` images come with empty masks, kept as they are), ``group_id``
        ``"busi:<class>:<N>"`` because BUSI publishes no patient ids, and
        ``metadata["index"]`` the number N.

    Raises:
        DatasetError: The folder is missing, empty or not in the BUSI layout.
    """
    busi_root = locate_layout_root(root, is_busi_root, EXPECTED_BUSI_LAYOUT)
    records: list[DatasetRecord] = []
    for class_folder in _class_folders(busi_root):
        label = class_folder.name.lower()
        for image_path, mask_paths in pair_images_with_masks(class_folder, (".png",)).items():
            match = _IMAGE_NAME.match(image_path.name)
            if match is None or match["label"].lower() != label:
                logger.warning(
                    "Skipping %s: not named '%s (N).png' like BUSI images", image_path, label
                )
                continue
            index = int(match["index"])
            records.append(
                DatasetRecord(
                    image_path=image_path,
                    label=label,
                    mask_paths=mask_paths,
                    group_id=f"busi:{label}:{index}",
                    dataset="busi",
                    metadata={"index": index},
                )
            )
    return sort_records(records)
