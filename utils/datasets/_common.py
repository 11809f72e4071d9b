"""Helpers shared by every dataset reader: sorting, folder checks, layout search, masks."""

from __future__ import annotations

import csv
import logging
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path

from utils.datasets.records import DatasetRecord
from utils.errors import ConfigError, DatasetError

logger = logging.getLogger(__name__)

#: Image file extensions the generic readers accept (compared case-insensitively).
IMAGE_EXTENSIONS: tuple[str, ...] = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")

#: How many levels below the given folder readers look for their dataset root, so a user
#: can point at ``busi/`` when the images sit in ``busi/Dataset_BUSI_with_GT/``.
DEFAULT_SEARCH_DEPTH = 3

# ``<stem>_mask.png``, ``<stem>_mask_1.png``... The stem is matched lazily so that the
# first ``_mask`` ends it (BUSI: ``benign (4)_mask_1.png`` belongs to ``benign (4)``).
_MASK_NAME = re.compile(r"^(?P<stem>.+?)_mask.*\.png$", re.IGNORECASE)
_DIGITS = re.compile(r"(\d+)")


def natural_sort_key(text: str | Path) -> tuple[tuple[str | int, ...], str]:
    """Sort key that orders embedded numbers by value: ``"a (2)"`` before ``"a (10)"``.

    Args:
        text: A string or path.

    Returns:
        A key usable with ``sorted``; ties fall back to the exact text so the order is total.
    """
    text = Path(text).as_posix() if isinstance(text, Path) else text
    # re.split with a capturing group alternates str, int, str..., so keys compare safely.
    parts = tuple(
        int(part) if index % 2 else part.lower() for index, part in enumerate(_DIGITS.split(text))
    )
    return parts, text


def sort_records(records: Iterable[DatasetRecord]) -> list[DatasetRecord]:
    """Return ``records`` in natural order of their image paths (deterministic)."""
    return sorted(records, key=lambda record: natural_sort_key(record.image_path))


def is_visible(path: Path) -> bool:
    """Whether ``path`` is not hidden (``.DS_Store``, ``.ipynb_checkpoints``, ``__MACOSX``)."""
    return not (path.name.startswith(".") or path.name.startswith("__"))


def sorted_subfolders(folder: Path) -> list[Path]:
    """Visible subfolders of ``folder`` in natural order."""
    return sorted(
        (child for child in folder.iterdir() if child.is_dir() and is_visible(child)),
        key=natural_sort_key,
    )


def sorted_files(folder: Path, extensions: Sequence[str] | None = None) -> list[Path]:
    """Visible files of ``folder`` (optionally only ``extensions``) in natural order."""
    wanted = None if extensions is None else normalise_extensions(extensions)
    return sorted(
        (
            child
            for child in folder.iterdir()
            if child.is_file()
            and is_visible(child)
            and (wanted is None or child.suffix.lower() in wanted)
        ),
        key=natural_sort_key,
    )


def normalise_extensions(extensions: Sequence[str]) -> frozenset[str]:
    """Lower-case extensions with a leading dot: ``["PNG", ".tif"]`` -> ``{".png", ".tif"}``.

    Raises:
        ConfigError: ``extensions`` is empty or a single string instead of a list.
    """
    if isinstance(extensions, str) or not extensions:
        raise ConfigError(
            f"extensions must be a non-empty list such as ['.png', '.jpg'], got {extensions!r}."
        )
    return frozenset(
        extension.lower() if extension.startswith(".") else f".{extension.lower()}"
        for extension in extensions
    )


def require_directory(root: Path | str, expected_layout: str) -> Path:
    """Check that ``root`` is an existing, non-empty folder.

    Args:
        root: Folder given by the user.
        expected_layout: Words describing the layout, used in the error message.

    Returns:
        ``root`` as a :class:`Path`.

    Raises:
        DatasetError: The folder is missing, is a file, or holds nothing visible.
    """
    root = Path(root).expanduser()
    if not root.exists():
        raise DatasetError(f"Dataset folder {root} does not exist; expected {expected_layout}.")
    if not root.is_dir():
        raise DatasetError(
            f"Dataset path {root} is a file, not a folder; expected {expected_layout}."
        )
    if not any(is_visible(child) for child in root.iterdir()):
        raise DatasetError(f"Dataset folder {root} is empty; expected {expected_layout}.")
    return root


def iter_folder_levels(root: Path, max_depth: int) -> Iterator[list[Path]]:
    """Yield the folders below ``root`` level by level: ``[root]``, its subfolders, ...

    Args:
        root: Starting folder (depth 0).
        max_depth: Deepest level yielded.

    Yields:
        One list of folders per depth, each in natural order; stops early when a level is empty.
    """
    level = [root]
    for _ in range(max_depth + 1):
        if not level:
            return
        yield level
        level = [child for folder in level for child in sorted_subfolders(folder)]


def find_layout_root(
    root: Path, is_layout_root: Callable[[Path], bool], max_depth: int = DEFAULT_SEARCH_DEPTH
) -> Path | None:
    """Return the shallowest folder at or below ``root`` that ``is_layout_root`` accepts.

    Args:
        root: Folder given by the user.
        is_layout_root: Predicate recognising the root folder of one layout.
        max_depth: How many levels below ``root`` to search.

    Returns:
        The first match in breadth-first, natural order, or ``None``.
    """
    for level in iter_folder_levels(root, max_depth):
        for folder in level:
            if is_layout_root(folder):
                return folder
    return None


def locate_layout_root(
    root: Path | str,
    is_layout_root: Callable[[Path], bool],
    expected_layout: str,
    max_depth: int = DEFAULT_SEARCH_DEPTH,
) -> Path:
    """Like :func:`find_layout_root`, but validates ``root`` and raises when nothing matches.

    Raises:
        DatasetError: ``root`` is missing or empty, or no folder below it has the layout.
    """
    folder = require_directory(root, expected_layout)
    found = find_layout_root(folder, is_layout_root, max_depth)
    if found is None:
        raise DatasetError(
            f"No dataset in the expected layout was found in {folder} or up to {max_depth} "
            f"levels below it; expected {expected_layout}."
        )
    return found


def mask_owner_stem(path: Path) -> str | None:
    """Stem of the image a mask file belongs to (``"x (1)_mask_2.png"`` -> ``"x (1)"``), or None."""
    match = _MASK_NAME.match(path.name)
    return match["stem"] if match else None


def pair_images_with_masks(
    folder: Path, extensions: Sequence[str] = IMAGE_EXTENSIONS
) -> dict[Path, tuple[Path, ...]]:
    """Pair the images of one folder with their sibling ``<stem>_mask*.png`` files.

    Mask files are never returned as images. Masks whose image is missing are skipped with a
    warning (a dangling mask is useless and usually a copy mistake).

    Args:
        folder: Folder holding images and masks side by side.
        extensions: Image extensions to accept (masks are always PNG).

    Returns:
        ``{image_path: mask_paths}`` in natural order; masks in natural order too
        (``_mask``, ``_mask_1``, ``_mask_2``...).
    """
    wanted = normalise_extensions(extensions)
    images: list[Path] = []
    masks: dict[str, list[Path]] = {}
    for path in sorted_files(folder):
        owner = mask_owner_stem(path)
        if owner is not None:
            masks.setdefault(owner, []).append(path)
        elif path.suffix.lower() in wanted:
            images.append(path)
    image_stems = {image.stem for image in images}
    for owner, paths in masks.items():
        if owner not in image_stems:
            logger.warning(
                "Skipping %d mask(s) of missing image %r in %s", len(paths), owner, folder
            )
    return {image: tuple(masks.get(image.stem, ())) for image in images}


def read_csv_rows(path: Path, required_columns: Sequence[str]) -> list[dict[str, str]]:
    """Read a CSV file into one dict per row, checking that the needed columns exist.

    Column names are stripped of spaces; a leading unnamed index column (as pandas writes
    it) is kept under the key ``""`` and harmless.

    Args:
        path: The CSV file.
        required_columns: Columns the caller needs.

    Returns:
        The rows, values stripped of surrounding spaces.

    Raises:
        DatasetError: A required column is missing.
    """
    # utf-8-sig: spreadsheet exports often start with a byte-order mark.
    with path.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.reader(handle)
        header = [name.strip() for name in next(reader, [])]
        missing = [column for column in required_columns if column not in header]
        if missing:
            raise DatasetError(
                f"{path.name} in {path.parent} lacks the column(s) {', '.join(missing)}; "
                f"expected columns {', '.join(required_columns)}, "
                f"found {', '.join(header) or 'none'}."
            )
        return [
            {name: value.strip() for name, value in zip(header, row, strict=False)}
            for row in reader
            if any(value.strip() for value in row)
        ]
