"""From dataset folders to grouped in-memory training arrays."""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Sequence
from pathlib import Path

from utils.datasets import DatasetRecord, read_dataset
from utils.errors import DatasetError
from utils.near_duplicates import assign_family_groups
from utils.pipelines import load_examples
from utils.training.arrays import TrainingArrays

LOGGER = logging.getLogger(__name__)


def read_training_records(
    data_dirs: Sequence[Path | str], layout: str = "auto"
) -> list[DatasetRecord]:
    """Read and concatenate several datasets, grouping near-duplicates across all of them.

    Near-duplicate families (perceptual hash) are merged into one group even across
    datasets and labels, so grouped splits never put a twin on both sides.

    Raises:
        DatasetError: A folder is missing, empty or in no recognised layout.
    """
    if not data_dirs:
        raise DatasetError("No dataset folder given; pass at least one --data DIR.")
    records: list[DatasetRecord] = []
    for data_dir in data_dirs:
        found = read_dataset(Path(data_dir), layout=layout)
        LOGGER.info("%s: %d images", data_dir, len(found))
        records.extend(found)
    return assign_family_groups(records)


def _cache_key(
    records: Sequence[DatasetRecord], image_size: int, channels: int, masks: bool
) -> str:
    description = json.dumps(
        [[str(r.image_path), r.label, r.group_id] for r in records] + [image_size, channels, masks]
    )
    return hashlib.sha256(description.encode()).hexdigest()[:16]


def load_training_arrays(
    data_dirs: Sequence[Path | str],
    *,
    image_size: int,
    channels: int = 1,
    with_masks: bool,
    cache_dir: Path | None = None,
) -> TrainingArrays:
    """Decode every image of ``data_dirs`` once at ``image_size`` (cached on disk).

    Args:
        data_dirs: Dataset folders in any recognised layout (BUSI, BUS-BRA...).
        image_size: Square side the images are resized to.
        channels: 1 (grayscale ultrasound) or 3.
        with_masks: Also load the OR-merged masks (segmentation).
        cache_dir: Where to keep ``arrays_<key>.npz``; the key covers the records and
            sizes, so a changed dataset is never served from a stale cache.

    Returns:
        The aligned arrays, labels, groups and sources.
    """
    records = read_training_records(data_dirs)
    if with_masks:
        # Images without a mask file that are not normal cannot be segmentation targets.
        skipped = [r for r in records if not r.has_mask and r.label != "normal"]
        if skipped:
            LOGGER.warning("skipping %d lesion images without a mask", len(skipped))
        records = [r for r in records if r.has_mask or r.label == "normal"]
    cache_path = None
    if cache_dir is not None:
        key = _cache_key(records, image_size, channels, with_masks)
        cache_path = Path(cache_dir) / f"arrays_{key}.npz"
        if cache_path.exists():
            LOGGER.info("using cached arrays %s", cache_path)
            return TrainingArrays.load(cache_path)
    images, masks = load_examples(
        records, (image_size, image_size), channels=channels, with_masks=with_masks, progress=True
    )
    arrays = TrainingArrays(
        images=images,
        masks=masks,
        labels=[str(r.label) for r in records],
        groups=[r.group_id for r in records],
        sources=[str(r.image_path) for r in records],
        datasets=[r.dataset for r in records],
    )
    if cache_path is not None:
        arrays.save(cache_path)
    return arrays
