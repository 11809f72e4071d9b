"""The record type shared by every dataset reader."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class DatasetRecord:
    """One image of a dataset, as every reader returns it.

    Attributes:
        image_path: Path of the image file.
        label: Class name (e.g. ``"benign"``), or ``None`` when unlabelled.
        mask_paths: Paths of the lesion / nuclei masks; several are OR-merged.
            Empty for images without a mask (e.g. BUSI ``normal``).
        group_id: Patient or acquisition group. Images sharing it must never be
            split across train and test. Readers that do not know the patient
            use a per-image id; near-duplicate detection can merge groups later.
        dataset: Short name of the source dataset (``"busi"``, ``"bus-bra"``...).
        metadata: Extra fields (BI-RADS, device, magnification, XML path...).
    """

    image_path: Path
    label: str | None
    mask_paths: tuple[Path, ...] = ()
    group_id: str = ""
    dataset: str = ""
    metadata: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)

    @property
    def has_mask(self) -> bool:
        """Whether at least one mask file belongs to this image."""
        return bool(self.mask_paths)


def labels_of(records: Sequence[DatasetRecord]) -> list[str | None]:
    """Return the labels of ``records`` in order."""
    return [record.label for record in records]


def groups_of(records: Sequence[DatasetRecord]) -> list[str]:
    """Return the group ids of ``records`` in order."""
    return [record.group_id for record in records]
