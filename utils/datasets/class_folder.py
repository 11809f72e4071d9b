"""Reader for the generic "one folder per class" layout used by most image datasets.

Layout: ``<root>/<class>/<image>`` with optional masks next to their image, named
``<image stem>_mask*.png``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from utils.datasets._common import (
    IMAGE_EXTENSIONS,
    normalise_extensions,
    pair_images_with_masks,
    require_directory,
    sort_records,
    sorted_files,
    sorted_subfolders,
)
from utils.datasets.records import DatasetRecord
from utils.errors import ConfigError, DatasetError

EXPECTED_CLASS_FOLDERS_LAYOUT = (
    "one subfolder per class (e.g. benign/, malignant/) holding the images directly, "
    "with optional masks named '<image>_mask.png'"
)


def is_class_folders_root(folder: Path) -> bool:
    """Whether at least one subfolder of ``folder`` holds image files directly."""
    return any(sorted_files(child, IMAGE_EXTENSIONS) for child in sorted_subfolders(folder))


def _select_class_folders(root: Path, classes: Sequence[str] | None) -> list[Path]:
    """The class folders to read: all subfolders, or exactly ``classes`` in that order."""
    available = sorted_subfolders(root)
    if classes is None:
        return available
    if isinstance(classes, str) or not classes:
        raise ConfigError(
            f"classes must be a non-empty list of folder names such as ['benign', 'malignant'], "
            f"got {classes!r}."
        )
    by_name = {folder.name: folder for folder in available}
    missing = [name for name in classes if name not in by_name]
    if missing:
        raise DatasetError(
            f"Class folder(s) {', '.join(missing)} not found in {root}; "
            f"found {', '.join(by_name) or 'no subfolders'}."
        )
    return [by_name[name] for name in classes]


def read_class_folders(
    root: Path | str,
    classes: Sequence[str] | None = None,
    extensions: Sequence[str] = IMAGE_EXTENSIONS,
) -> list[DatasetRecord]:
    """List the images of a dataset stored as one folder per class.

    Args:
        root: Folder whose subfolders are the classes.
        classes: Class folders to read, in this order; ``None`` reads every visible subfolder.
        extensions: Image file extensions to accept (case-insensitive).

    Returns:
        One record per image in natural order. ``label`` is the folder name, ``mask_paths``
        the sibling ``<stem>_mask*.png`` files (never listed as images themselves),
        ``group_id`` ``"class-folders:<class>/<stem>"`` (no patient ids are known).

    Raises:
        DatasetError: The folder is missing or empty, a requested class folder is missing,
            or no class folder holds an image.
        ConfigError: ``classes`` or ``extensions`` is empty or not a list.
    """
    root = require_directory(root, EXPECTED_CLASS_FOLDERS_LAYOUT)
    wanted_extensions = normalise_extensions(extensions)
    records = [
        DatasetRecord(
            image_path=image_path,
            label=class_folder.name,
            mask_paths=mask_paths,
            group_id=f"class-folders:{class_folder.name}/{image_path.stem}",
            dataset="class-folders",
        )
        for class_folder in _select_class_folders(root, classes)
        for image_path, mask_paths in pair_images_with_masks(class_folder, extensions).items()
    ]
    if not records:
        raise DatasetError(
            f"No images ({', '.join(sorted(wanted_extensions))}) found in the class folders of "
            f"{root}; expected {EXPECTED_CLASS_FOLDERS_LAYOUT}."
        )
    return sort_records(records)
