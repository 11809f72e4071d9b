from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from utils.errors import DatasetError
from utils.training.arrays import TrainingArrays


def test_save_and_load_round_trip_is_exact(tiny_arrays: TrainingArrays, tmp_path: Path) -> None:
    path = tmp_path / "cache.npz"
    tiny_arrays.save(path)
    loaded = TrainingArrays.load(path)
    np.testing.assert_array_equal(loaded.images, tiny_arrays.images)
    np.testing.assert_array_equal(loaded.masks, tiny_arrays.masks)
    assert loaded.labels == tiny_arrays.labels and loaded.groups == tiny_arrays.groups


def test_jpeg_transport_keeps_masks_exact_and_images_close(
    tiny_arrays: TrainingArrays, tmp_path: Path
) -> None:
    path = tmp_path / "carry.npz"
    tiny_arrays.save(path, jpeg_quality=95)
    loaded = TrainingArrays.load(path)
    np.testing.assert_array_equal(loaded.masks, tiny_arrays.masks)
    error = np.abs(loaded.images.astype(int) - tiny_arrays.images.astype(int)).mean()
    assert error < 6.0


def test_subset_keeps_rows_aligned(tiny_arrays: TrainingArrays) -> None:
    subset = tiny_arrays.subset([3, 1])
    assert subset.sources == ["img3.png", "img1.png"]
    np.testing.assert_array_equal(subset.images[0], tiny_arrays.images[3])


def test_misaligned_arrays_are_rejected(tiny_arrays: TrainingArrays) -> None:
    with pytest.raises(DatasetError, match="misaligned: 24 images"):
        TrainingArrays(
            tiny_arrays.images,
            tiny_arrays.masks,
            tiny_arrays.labels[:3],
            tiny_arrays.groups,
            tiny_arrays.sources,
            tiny_arrays.datasets,
        )


def test_missing_cache_is_reported(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="does not exist"):
        TrainingArrays.load(tmp_path / "nope.npz")


def test_foreign_npz_is_rejected(tmp_path: Path) -> None:
    path = tmp_path / "other.npz"
    np.savez(path, weights=np.zeros(3))
    with pytest.raises(DatasetError, match="not a TumorLens training-array cache"):
        TrainingArrays.load(path)
