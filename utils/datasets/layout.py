"""Recognising which dataset layout a folder holds, and reading it with the right reader."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from utils.datasets._common import DEFAULT_SEARCH_DEPTH, iter_folder_levels, require_directory
from utils.datasets.breakhis import EXPECTED_BREAKHIS_LAYOUT, is_breakhis_root, read_breakhis
from utils.datasets.busbra import EXPECTED_BUSBRA_LAYOUT, is_busbra_root, read_busbra
from utils.datasets.busi import EXPECTED_BUSI_LAYOUT, is_busi_root, read_busi
from utils.datasets.class_folder import (
    EXPECTED_CLASS_FOLDERS_LAYOUT,
    is_class_folders_root,
    read_class_folders,
)
from utils.datasets.monuseg import EXPECTED_MONUSEG_LAYOUT, is_monuseg_root, read_monuseg
from utils.datasets.pcam import EXPECTED_PCAM_LAYOUT, is_pcam_root, read_pcam
from utils.datasets.records import DatasetRecord
from utils.errors import ConfigError, DatasetError

Reader = Callable[..., list[DatasetRecord]]

#: Registry of layout name -> reader; ``read_dataset`` dispatches through it.
READERS: dict[str, Reader] = {
    "busi": read_busi,
    "bus-bra": read_busbra,
    "monuseg": read_monuseg,
    "pcam": read_pcam,
    "breakhis": read_breakhis,
    "class-folders": read_class_folders,
}

LAYOUT_DESCRIPTIONS: dict[str, str] = {
    "busi": EXPECTED_BUSI_LAYOUT,
    "bus-bra": EXPECTED_BUSBRA_LAYOUT,
    "monuseg": EXPECTED_MONUSEG_LAYOUT,
    "pcam": EXPECTED_PCAM_LAYOUT,
    "breakhis": EXPECTED_BREAKHIS_LAYOUT,
    "class-folders": EXPECTED_CLASS_FOLDERS_LAYOUT,
}

#: The full BreakHis release nests images 7 folders deep
#: (``BreaKHis_v1/histology_slides/breast/benign/SOB/adenosis/<slide>/40X/``).
_BREAKHIS_SEARCH_DEPTH = 8


@dataclass(frozen=True)
class _RootTest:
    """How to recognise the root folder of one specific layout, and how deep to look for it."""

    is_root: Callable[[Path], bool]
    max_depth: int = DEFAULT_SEARCH_DEPTH


# Specific layouts only: "class-folders" matches almost any folder of folders, so it is the
# fallback, tried on the given folder itself when none of these is found.
_SPECIFIC_LAYOUTS: dict[str, _RootTest] = {
    "bus-bra": _RootTest(is_busbra_root),
    "busi": _RootTest(is_busi_root),
    "monuseg": _RootTest(is_monuseg_root),
    "pcam": _RootTest(is_pcam_root),
    "breakhis": _RootTest(is_breakhis_root, _BREAKHIS_SEARCH_DEPTH),
}


def _recognised_layouts_text() -> str:
    """Every layout with its description, for error messages."""
    return "; ".join(f"{name}: {text}" for name, text in LAYOUT_DESCRIPTIONS.items())


def _find_specific_layouts(root: Path) -> dict[str, Path]:
    """The specific layouts found at the shallowest level below ``root`` that has any.

    Returns:
        ``{layout name: its root folder}``; empty when none is found. Several entries mean
        ``root`` holds several datasets side by side.
    """
    deepest = max(test.max_depth for test in _SPECIFIC_LAYOUTS.values())
    for depth, level in enumerate(iter_folder_levels(root, deepest)):
        found: dict[str, Path] = {}
        for name, test in _SPECIFIC_LAYOUTS.items():
            if depth > test.max_depth:
                continue
            folder = next((folder for folder in level if test.is_root(folder)), None)
            if folder is not None:
                found[name] = folder
        if found:
            return found
    return {}


def detect_layout(root: Path | str) -> str:
    """Recognise the dataset layout of a folder.

    The specific layouts (BUS-BRA, BUSI, MoNuSeg, PCam, BreakHis) are searched in the folder
    and a few levels below it (deeper for BreakHis, whose release nests images); the generic
    class-folders layout is the fallback, tested on the folder itself.

    Args:
        root: The dataset folder.

    Returns:
        One of ``"busi"``, ``"bus-bra"``, ``"monuseg"``, ``"pcam"``, ``"breakhis"``,
        ``"class-folders"``.

    Raises:
        DatasetError: The folder is missing or empty, holds several datasets side by side,
            or is in no recognised layout (the message lists them).
    """
    folder = require_directory(
        root, f"one of the recognised layouts ({_recognised_layouts_text()})"
    )
    found = _find_specific_layouts(folder)
    if len(found) > 1:
        listing = ", ".join(f"{name} in {path}" for name, path in found.items())
        raise DatasetError(
            f"{folder} holds several datasets ({listing}); choose one of those folders or "
            "name the layout."
        )
    if found:
        return next(iter(found))
    if is_class_folders_root(folder):
        return "class-folders"
    raise DatasetError(
        f"The dataset layout of {folder} is not recognised. Recognised layouts: "
        f"{_recognised_layouts_text()}."
    )


def _normalise_layout_name(layout: str) -> str:
    """``"BUS_BRA"`` -> ``"bus-bra"``; unknown names raise ConfigError."""
    name = str(layout).strip().lower().replace("_", "-")
    if name != "auto" and name not in READERS:
        raise ConfigError(
            f"Unknown dataset layout {layout!r}; valid names are auto, {', '.join(READERS)}."
        )
    return name


def _check_options(layout: str, reader: Reader, options: dict[str, Any]) -> None:
    """Raise ConfigError when ``options`` holds an argument ``reader`` does not take."""
    accepted = list(inspect.signature(reader).parameters)[1:]  # the first one is root
    unknown = [option for option in options if option not in accepted]
    if unknown:
        raise ConfigError(
            f"The {layout} reader has no option {', '.join(unknown)}; its options are "
            f"{', '.join(accepted) or 'none'}."
        )


def read_dataset(root: Path | str, layout: str = "auto", **options: Any) -> list[DatasetRecord]:
    """Read any supported dataset folder into records.

    Args:
        root: The dataset folder.
        layout: ``"auto"`` to detect it with :func:`detect_layout`, or one of ``READERS``
            (``"busi"``, ``"bus-bra"``, ``"monuseg"``, ``"pcam"``, ``"breakhis"``,
            ``"class-folders"``; ``_`` and upper case are accepted).
        **options: Passed to the reader (e.g. ``label_mode="subtype"`` for BreakHis,
            ``include_unlabelled=True`` for PCam, ``classes=[...]`` for class folders).

    Returns:
        The reader's records, in natural order.

    Raises:
        ConfigError: Unknown layout name or an option the reader does not take.
        DatasetError: The folder is missing, empty or not in the (detected) layout.
    """
    name = _normalise_layout_name(layout)
    if name == "auto":
        name = detect_layout(root)
    reader = READERS[name]
    _check_options(name, reader, options)
    return reader(root, **options)
