"""Reader for BUS-BRA, the Brazilian breast ultrasound dataset (Gómez-Flores et al. 2023).

Layout: ``Images/bus_XXXX-{l,r,s}.png``, ``Masks/mask_XXXX-{l,r,s}.png``, ``bus_data.csv``
(one row per image: ID, Case = patient, Histology, Pathology, BIRADS, Device, Width, Height,
Side, BBOX) and optional cross-validation folds ``5-fold-cv.csv`` / ``10-fold-cv.csv``.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any

from utils.datasets._common import locate_layout_root, read_csv_rows, sort_records
from utils.datasets.records import DatasetRecord
from utils.errors import DatasetError

logger = logging.getLogger(__name__)

BUSBRA_TABLE = "bus_data.csv"
EXPECTED_BUSBRA_LAYOUT = (
    "the BUS-BRA layout: Images/bus_XXXX-l.png, Masks/mask_XXXX-l.png and bus_data.csv "
    "with columns ID, Case, Pathology, BIRADS, Device, Side, BBOX"
)

_REQUIRED_COLUMNS = ("ID", "Case", "Pathology")
_FOLD_TABLE = re.compile(r"^(?P<folds>\d+)-fold-cv\.csv$", re.IGNORECASE)
_INTEGER = re.compile(r"-?\d+")


def is_busbra_root(folder: Path) -> bool:
    """Whether ``folder`` holds ``bus_data.csv`` or an ``Images/`` folder of ``bus_*.png``."""
    if (folder / BUSBRA_TABLE).is_file():
        return True
    images = folder / "Images"
    return images.is_dir() and next(images.glob("bus_*.png"), None) is not None


def _int_or_text(value: str) -> int | str | None:
    """``"4"`` -> 4; other non-empty text kept as is (BI-RADS can be ``"4a"``); ``""`` -> None."""
    if not value:
        return None
    return int(value) if _INTEGER.fullmatch(value) else value


def parse_bbox(text: str) -> list[int] | None:
    """Parse a BUS-BRA bounding box ``"[91,24,103,79]"`` (x, y, width, height) into ints."""
    numbers = [int(number) for number in _INTEGER.findall(text)]
    return numbers or None


def _read_folds(busbra_root: Path) -> dict[str, dict[str, int | str | None]]:
    """Fold assignments per image ID: ``{"bus_0001-l": {"fold_5": 3, "fold_10": 9}}``."""
    folds: dict[str, dict[str, int | str | None]] = {}
    for table in sorted(busbra_root.glob("*-fold-cv.csv")):
        match = _FOLD_TABLE.match(table.name)
        if match is None:
            continue
        key = f"fold_{int(match['folds'])}"
        for row in read_csv_rows(table, ("ID", "kFold")):
            folds.setdefault(row["ID"], {})[key] = _int_or_text(row["kFold"])
    return folds


def _metadata(row: dict[str, str], folds: dict[str, int | str | None]) -> dict[str, Any]:
    """The metadata of one ``bus_data.csv`` row (missing columns give None)."""
    return {
        "case": _int_or_text(row["Case"]),
        "birads": _int_or_text(row.get("BIRADS", "")),
        "histology": row.get("Histology") or None,
        "device": row.get("Device") or None,
        "side": row.get("Side") or None,
        "bbox": parse_bbox(row.get("BBOX", "")),
        "width": _int_or_text(row.get("Width", "")),
        "height": _int_or_text(row.get("Height", "")),
        **folds,
    }


def read_busbra(root: Path | str) -> list[DatasetRecord]:
    """List the images of a BUS-BRA dataset with their masks and clinical data.

    Args:
        root: The BUS-BRA folder (holding ``bus_data.csv``, ``Images/``, ``Masks/``) or an
            ancestor of it up to three levels above.

    Returns:
        One record per row of ``bus_data.csv`` whose image exists, in natural order.
        ``label`` is the Pathology column (``"benign"``/``"malignant"``), ``group_id``
        ``"bus-bra:<Case>"`` (Case is the patient), ``mask_paths`` the one mask when present,
        ``metadata`` holds case, birads, histology, device, side, bbox (x, y, w, h ints),
        width, height and ``fold_5`` / ``fold_10`` from the fold tables when present.
        Rows whose image file is missing are skipped with a logged warning.

    Raises:
        DatasetError: The folder is missing, empty, not in the BUS-BRA layout, lacks
            ``bus_data.csv`` or its required columns, or no listed image exists.
    """
    busbra_root = locate_layout_root(root, is_busbra_root, EXPECTED_BUSBRA_LAYOUT)
    table = busbra_root / BUSBRA_TABLE
    if not table.is_file():
        raise DatasetError(
            f"BUS-BRA folder {busbra_root} has no {BUSBRA_TABLE}; it gives each image's "
            f"patient (Case) and pathology. Expected {EXPECTED_BUSBRA_LAYOUT}."
        )
    folds = _read_folds(busbra_root)
    records: list[DatasetRecord] = []
    missing_images: list[str] = []
    for row in read_csv_rows(table, _REQUIRED_COLUMNS):
        image_id = row["ID"]
        image_path = busbra_root / "Images" / f"{image_id}.png"
        if not image_path.is_file():
            missing_images.append(image_id)
            continue
        mask_path = busbra_root / "Masks" / f"{image_id.replace('bus_', 'mask_', 1)}.png"
        records.append(
            DatasetRecord(
                image_path=image_path,
                label=row["Pathology"].lower() or None,
                mask_paths=(mask_path,) if mask_path.is_file() else (),
                group_id=f"bus-bra:{row['Case']}",
                dataset="bus-bra",
                metadata=_metadata(row, folds.get(image_id, {})),
            )
        )
    if missing_images:
        logger.warning(
            "Skipped %d BUS-BRA row(s) whose image is missing in %s: %s",
            len(missing_images),
            busbra_root / "Images",
            ", ".join(missing_images[:10]) + (" ..." if len(missing_images) > 10 else ""),
        )
    if not records:
        raise DatasetError(
            f"None of the images listed in {table} exists in {busbra_root / 'Images'}; "
            f"expected {EXPECTED_BUSBRA_LAYOUT}."
        )
    return sort_records(records)
