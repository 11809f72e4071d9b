"""In-memory training arrays: decoded once, cached as ``.npz``, carried to a GPU box.

Ultrasound datasets here hold ~1,600 images, so decoding and resizing them once and
keeping uint8 arrays in memory is far cheaper than decoding per epoch. The cache file
also lets a machine without the dataset readers' dependencies (e.g. a JAX GPU box
without TensorFlow) train on exactly the same examples.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from utils.errors import DatasetError


@dataclass
class TrainingArrays:
    """Decoded examples of one or more datasets, aligned by index.

    Attributes:
        images: uint8 array (N, H, W, C).
        masks: uint8 {0, 1} array (N, H, W, 1), or ``None`` for classification-only data.
        labels: Class name per image.
        groups: Patient / near-duplicate-family group per image (never split across folds).
        sources: Image path per image, for reports.
        datasets: Source dataset name per image (``"busi"``, ``"bus-bra"``...).
    """

    images: np.ndarray
    masks: np.ndarray | None
    labels: list[str]
    groups: list[str]
    sources: list[str]
    datasets: list[str]

    def __post_init__(self) -> None:
        count = len(self.images)
        lengths = {len(self.labels), len(self.groups), len(self.sources), len(self.datasets)}
        if lengths != {count} or (self.masks is not None and len(self.masks) != count):
            raise DatasetError(
                f"Training arrays are misaligned: {count} images but label/group/source "
                f"lengths {sorted(lengths)}."
            )

    def __len__(self) -> int:
        return len(self.images)

    def subset(self, indices: Sequence[int] | np.ndarray) -> TrainingArrays:
        """Return the examples at ``indices`` (copies of the arrays)."""
        index = np.asarray(indices, dtype=np.int64)
        return TrainingArrays(
            images=self.images[index],
            masks=None if self.masks is None else self.masks[index],
            labels=[self.labels[i] for i in index],
            groups=[self.groups[i] for i in index],
            sources=[self.sources[i] for i in index],
            datasets=[self.datasets[i] for i in index],
        )

    def save(self, path: Path, *, jpeg_quality: int | None = None) -> None:
        """Write the arrays and their metadata to one compressed ``.npz`` file.

        Args:
            path: Output ``.npz`` path.
            jpeg_quality: Store images as JPEG of this quality instead of lossless
                arrays. Only for moving a cache to a machine with a transfer limit
                (speckle barely compresses losslessly); masks always stay lossless.
        """
        path.parent.mkdir(parents=True, exist_ok=True)
        metadata = {
            "labels": self.labels,
            "groups": self.groups,
            "sources": self.sources,
            "datasets": self.datasets,
        }
        arrays = {"metadata": np.array(json.dumps(metadata))}
        if jpeg_quality is None:
            arrays["images"] = self.images
        else:
            arrays.update(_encode_jpeg(self.images, jpeg_quality))
        if self.masks is not None:
            # Bit-packing cuts the mask payload 8x; masks are strictly {0, 1}.
            arrays["masks_packed"] = np.packbits(self.masks.astype(bool).ravel())
            arrays["masks_shape"] = np.array(self.masks.shape)
        np.savez_compressed(path, **arrays)

    @classmethod
    def load(cls, path: Path) -> TrainingArrays:
        """Read arrays written by :meth:`save`.

        Raises:
            DatasetError: The file is missing or not a TumorLens array cache.
        """
        if not Path(path).is_file():
            raise DatasetError(f"Training-array cache {path} does not exist.")
        with np.load(path, allow_pickle=False) as data:
            if "metadata" not in data or not ({"images", "jpeg_bytes"} & set(data)):
                raise DatasetError(
                    f"{path} is not a TumorLens training-array cache (keys: {sorted(data)})."
                )
            metadata = json.loads(str(data["metadata"]))
            masks = None
            if "masks_packed" in data:
                shape = tuple(int(v) for v in data["masks_shape"])
                masks = np.unpackbits(data["masks_packed"], count=int(np.prod(shape)))
                masks = masks.reshape(shape)
            images = data["images"] if "images" in data else _decode_jpeg(data)
            return cls(images=images, masks=masks, **metadata)


def _encode_jpeg(images: np.ndarray, quality: int) -> dict[str, np.ndarray]:
    import cv2

    encoded = [
        cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])[1].ravel()
        for image in images
    ]
    return {
        "jpeg_bytes": np.concatenate(encoded),
        "jpeg_offsets": np.cumsum([0] + [len(chunk) for chunk in encoded]),
        "jpeg_shape": np.array(images.shape),
    }


def _decode_jpeg(data: np.lib.npyio.NpzFile) -> np.ndarray:
    import cv2

    shape = tuple(int(v) for v in data["jpeg_shape"])
    flag = cv2.IMREAD_GRAYSCALE if shape[-1] == 1 else cv2.IMREAD_COLOR_RGB
    payload, offsets = data["jpeg_bytes"], data["jpeg_offsets"]
    images = np.empty(shape, dtype=np.uint8)
    for index in range(shape[0]):
        decoded = cv2.imdecode(payload[offsets[index] : offsets[index + 1]], flag)
        images[index] = decoded.reshape(shape[1:])
    return images
