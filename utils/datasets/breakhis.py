"""Reader for BreakHis, the breast cancer histopathology dataset (Spanhol et al. 2016).

Every file name carries its labels:
``SOB_<B|M>_<subtype>-<year>-<patient>-<magnification>-<seq>.png``, e.g.
``SOB_B_TA-14-3411F-40-001.png``. The full release nests the images in
``histology_slides/breast/<class>/SOB/<subtype>/<slide>/<magnification>X/``; the reader walks
any depth.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any, Literal

from utils.datasets._common import is_visible, require_directory, sort_records
from utils.datasets.records import DatasetRecord
from utils.errors import ConfigError, DatasetError

logger = logging.getLogger(__name__)

BREAKHIS_SUBTYPES: dict[str, tuple[str, str]] = {
    "A": ("benign", "adenosis"),
    "F": ("benign", "fibroadenoma"),
    "PT": ("benign", "phyllodes_tumor"),
    "TA": ("benign", "tubular_adenoma"),
    "DC": ("malignant", "ductal_carcinoma"),
    "LC": ("malignant", "lobular_carcinoma"),
    "MC": ("malignant", "mucinous_carcinoma"),
    "PC": ("malignant", "papillary_carcinoma"),
}
BREAKHIS_MAGNIFICATIONS: frozenset[int] = frozenset({40, 100, 200, 400})
BREAKHIS_LABEL_MODES: tuple[str, ...] = ("binary", "subtype")
BREAKHIS_NAME_PATTERN = "SOB_<B|M>_<subtype>-<year>-<patient>-<magnification>-<seq>.png"
EXPECTED_BREAKHIS_LAYOUT = (
    f"image files named {BREAKHIS_NAME_PATTERN} (e.g. SOB_B_TA-14-3411F-40-001.png), at any depth"
)

_CLASS_LETTERS = {"B": "benign", "M": "malignant"}
# The patient part stops at the next dash: "SOB_B_A-14-22549AB-40-001" -> patient "22549AB",
# the year (14) is a separate field even though folder names write "14-22549AB".
_NAME = re.compile(
    r"^SOB_(?P<class_letter>[BM])_(?P<subtype_code>[A-Z]+)-(?P<year>\d+)-(?P<patient_id>[0-9A-Z]+)"
    r"-(?P<magnification>\d+)-(?P<sequence>\d+)\.(?i:png|jpe?g|tiff?)$"
)


def _name_error(name: str, reason: str) -> DatasetError:
    """A DatasetError for a file name that is not a BreakHis name."""
    return DatasetError(
        f"{name!r} is not a BreakHis file name ({reason}); expected {BREAKHIS_NAME_PATTERN}, "
        "e.g. SOB_B_TA-14-3411F-40-001.png."
    )


def parse_breakhis_name(name: str | Path) -> dict[str, Any]:
    """Parse the labels encoded in a BreakHis file name.

    Args:
        name: File name or path, e.g. ``"SOB_B_TA-14-3411F-40-001.png"``.

    Returns:
        ``{"label": "benign", "subtype_code": "TA", "subtype": "tubular_adenoma",
        "year": 14, "patient_id": "3411F", "magnification": 40, "sequence": 1}``.

    Raises:
        DatasetError: The name does not follow the pattern, or its subtype, class letter or
            magnification is not one BreakHis uses.
    """
    name = Path(name).name
    match = _NAME.match(name)
    if match is None:
        raise _name_error(name, "it does not match the pattern")
    subtype_code = match["subtype_code"]
    if subtype_code not in BREAKHIS_SUBTYPES:
        raise _name_error(
            name, f"unknown subtype {subtype_code}; known: {', '.join(BREAKHIS_SUBTYPES)}"
        )
    label, subtype = BREAKHIS_SUBTYPES[subtype_code]
    if _CLASS_LETTERS[match["class_letter"]] != label:
        raise _name_error(name, f"subtype {subtype_code} is {label}, not {match['class_letter']}")
    magnification = int(match["magnification"])
    if magnification not in BREAKHIS_MAGNIFICATIONS:
        raise _name_error(
            name,
            f"magnification {magnification} is not one of "
            f"{', '.join(map(str, sorted(BREAKHIS_MAGNIFICATIONS)))}",
        )
    return {
        "label": label,
        "subtype_code": subtype_code,
        "subtype": subtype,
        "year": int(match["year"]),
        "patient_id": match["patient_id"],
        "magnification": magnification,
        "sequence": int(match["sequence"]),
    }


def patient_group(patient_id: str) -> str:
    """The numeric core of a BreakHis patient id (``"21998AB"`` -> ``"21998"``)."""
    digits = re.match(r"\d+", patient_id)
    return digits.group(0) if digits else patient_id


def is_breakhis_root(folder: Path) -> bool:
    """Whether ``folder`` directly holds at least one BreakHis-named image."""
    return any(_NAME.match(path.name) for path in folder.glob("SOB_*"))


def _breakhis_files(root: Path) -> list[Path]:
    """Every visible ``SOB_*`` file below ``root``, at any depth."""
    return [
        path
        for path in root.rglob("SOB_*")
        if path.is_file() and all(is_visible(Path(part)) for part in path.relative_to(root).parts)
    ]


def _metadata(fields: dict[str, Any]) -> dict[str, Any]:
    """Record metadata: the parsed fields, with the benign/malignant class under ``"class"``.

    ``"label"`` is renamed so it cannot be confused with the record label in subtype mode.
    """
    metadata = {key: value for key, value in fields.items() if key != "label"}
    metadata["class"] = fields["label"]
    return metadata


def read_breakhis(
    root: Path | str, label_mode: Literal["binary", "subtype"] = "binary"
) -> list[DatasetRecord]:
    """List the images of a BreakHis dataset, labelled from their file names.

    Args:
        root: A folder holding BreakHis images at any depth (a flat sample or the full
            ``BreaKHis_v1`` release).
        label_mode: ``"binary"`` for benign/malignant labels, ``"subtype"`` for the eight
            subtypes (``"adenosis"``, ``"ductal_carcinoma"``...).

    Returns:
        One record per image in natural order. ``group_id`` is ``"breakhis:<number>"``,
        the digits of the patient part of the name: suffixes such as ``AB``/``CD``/``EF``
        (``21998AB``, ``21998CD``) mark slides that may come from one patient, so they are
        grouped together to rule out leakage between splits; ``metadata`` holds the parsed fields
        (subtype_code, subtype, year, patient_id, magnification, sequence) and ``class``
        (benign/malignant) whatever the label mode. ``SOB_*`` files whose
        name does not parse are skipped with a logged warning.

    Raises:
        ConfigError: ``label_mode`` is not ``"binary"`` or ``"subtype"``.
        DatasetError: The folder is missing or empty, or holds no BreakHis image.
    """
    if label_mode not in BREAKHIS_LABEL_MODES:
        raise ConfigError(
            f"label_mode must be one of {', '.join(BREAKHIS_LABEL_MODES)}, got {label_mode!r}."
        )
    root = require_directory(root, EXPECTED_BREAKHIS_LAYOUT)
    records = []
    for path in _breakhis_files(root):
        try:
            fields = parse_breakhis_name(path.name)
        except DatasetError as error:
            logger.warning("Skipping %s: %s", path, error)
            continue
        label = fields["label"] if label_mode == "binary" else fields["subtype"]
        records.append(
            DatasetRecord(
                image_path=path,
                label=label,
                group_id=f"breakhis:{patient_group(fields['patient_id'])}",
                dataset="breakhis",
                metadata=_metadata(fields),
            )
        )
    if not records:
        raise DatasetError(
            f"No BreakHis image found in {root}; expected {EXPECTED_BREAKHIS_LAYOUT}."
        )
    return sort_records(records)
