"""MoNuSeg-layout tiles with their ground-truth nucleus instances, for training and evaluation.

Instance ground truth, in order of preference:

* ``xml_polygons``: the Aperio XML polygons rasterised one label per nucleus
  (:func:`utils.datasets.monuseg.rasterise_aperio_xml`), when the tile has an XML file;
* ``mask_connected_components``: 4-connected components of the binary mask otherwise.
  Touching nuclei that share pixels in the mask become one instance (on the 4 shared
  tiles with both, this gives 10-18 % fewer instances than the polygons), so AJI against
  this ground truth under-rewards a model that separates them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from utils.datasets import DatasetRecord, load_mask
from utils.datasets.monuseg import rasterise_aperio_xml, read_monuseg
from utils.errors import DatasetError
from utils.histo.instances import instances_from_mask
from utils.image_io import load_image

__all__ = ["MASK_INSTANCES", "XML_INSTANCES", "NucleiTiles", "load_instances", "load_nuclei_tiles"]

XML_INSTANCES = "xml_polygons"
MASK_INSTANCES = "mask_connected_components"


@dataclass
class NucleiTiles:
    """Tiles of a MoNuSeg-layout folder with ground-truth instances.

    Attributes:
        images: uint8 (H, W, 3) RGB tiles.
        instances: int32 (H, W) instance label maps.
        names: File stems.
        groups: Patient group ids (one TCGA patient per group).
        truth_kinds: :data:`XML_INSTANCES` or :data:`MASK_INSTANCES` per tile.
    """

    images: list[np.ndarray]
    instances: list[np.ndarray]
    names: list[str]
    groups: list[str]
    truth_kinds: list[str]

    def __len__(self) -> int:
        return len(self.images)

    def subset(self, indices: Sequence[int]) -> NucleiTiles:
        """The tiles at ``indices``."""
        return NucleiTiles(
            *(
                [values[i] for i in indices]
                for values in (
                    self.images,
                    self.instances,
                    self.names,
                    self.groups,
                    self.truth_kinds,
                )
            )
        )


def load_instances(record: DatasetRecord, shape: tuple[int, int]) -> tuple[np.ndarray, str]:
    """Ground-truth instances of one record and where they came from.

    Raises:
        DatasetError: The record has neither an XML annotation nor a mask.
    """
    xml_path = record.metadata.get("annotation_xml")
    if xml_path is not None:
        return rasterise_aperio_xml(xml_path, shape), XML_INSTANCES
    if not record.mask_paths:
        raise DatasetError(
            f"{record.image_path.name} has no Binary_masks/*.png mask and no Annotations/*.xml "
            "file; nucleus evaluation needs one of them."
        )
    return instances_from_mask(load_mask(record.mask_paths, shape=shape)), MASK_INSTANCES


def load_nuclei_tiles(root: Path | str) -> NucleiTiles:
    """Load every tile of a MoNuSeg-layout folder that has ground truth.

    Tiles with neither mask nor XML are skipped.

    Raises:
        DatasetError: The folder is not in the MoNuSeg layout or no tile has ground truth.
    """
    records = [
        record
        for record in read_monuseg(root)
        if record.mask_paths or "annotation_xml" in record.metadata
    ]
    if not records:
        raise DatasetError(
            f"No tile in {root} has a Binary_masks/*.png mask or an Annotations/*.xml file."
        )
    images, instances, kinds = [], [], []
    for record in records:
        image = load_image(record.image_path).pixels
        labels, kind = load_instances(record, image.shape[:2])
        images.append(image)
        instances.append(labels)
        kinds.append(kind)
    return NucleiTiles(
        images=images,
        instances=instances,
        names=[record.image_path.stem for record in records],
        groups=[record.group_id or record.image_path.stem for record in records],
        truth_kinds=kinds,
    )
