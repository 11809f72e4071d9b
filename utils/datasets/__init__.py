"""Dataset readers: every supported layout read into :class:`DatasetRecord` lists.

Use :func:`read_dataset` with ``layout="auto"`` to read any supported folder, or call a
reader directly. Masks are listed, not loaded: merge them with :func:`load_mask`.
"""

from utils.datasets.breakhis import parse_breakhis_name, read_breakhis
from utils.datasets.busbra import read_busbra
from utils.datasets.busi import read_busi
from utils.datasets.class_folder import read_class_folders
from utils.datasets.layout import READERS, detect_layout, read_dataset
from utils.datasets.masks import binarise_mask_image, load_mask
from utils.datasets.monuseg import aperio_xml_to_mask, rasterise_aperio_xml, read_monuseg
from utils.datasets.pcam import iter_pcam_h5, read_pcam
from utils.datasets.records import DatasetRecord, groups_of, labels_of

__all__ = [
    "READERS",
    "DatasetRecord",
    "aperio_xml_to_mask",
    "binarise_mask_image",
    "detect_layout",
    "groups_of",
    "iter_pcam_h5",
    "labels_of",
    "load_mask",
    "parse_breakhis_name",
    "rasterise_aperio_xml",
    "read_breakhis",
    "read_busbra",
    "read_busi",
    "read_class_folders",
    "read_dataset",
    "read_monuseg",
    "read_pcam",
]
