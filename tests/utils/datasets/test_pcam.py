from __future__ import annotations

import logging
from collections import Counter
from pathlib import Path

import h5py
import numpy as np
import pytest
from PIL import Image

from utils.datasets import iter_pcam_h5, read_pcam
from utils.errors import ConfigError, DatasetError

MOCK_LABELS = ",id,label\n0,patch_b,0\n1,patch_a,1\n2,patch_gone,1\n"


def build_pcam(
    root: Path, labels_csv: str = MOCK_LABELS, name: str = "mock_train_labels.csv"
) -> Path:
    """Write a Kaggle-layout PCam folder: 2 labelled patches (1 listed id has no file), 1 test."""
    (root / "train").mkdir(parents=True)
    (root / "test").mkdir()
    for patch_id in ("patch_a", "patch_b", "patch_unlisted"):
        Image.new("RGB", (4, 4)).save(root / "train" / f"{patch_id}.tif")
    Image.new("RGB", (4, 4)).save(root / "test" / "patch_t.tif")
    (root / name).write_text(labels_csv)
    return root


def test_pcam_labels_come_from_the_csv(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    root = build_pcam(tmp_path / "pcam")
    with caplog.at_level(logging.WARNING):
        records = read_pcam(tmp_path)  # an ancestor folder is accepted
    assert [(record.image_path.stem, record.label) for record in records] == [
        ("patch_a", "tumour"),
        ("patch_b", "normal"),
    ]
    assert records[0].metadata == {"label_raw": 1, "split": "train"}
    assert records[0].group_id == "pcam:patch_a"
    assert records[0].image_path == root / "train" / "patch_a.tif"
    assert "Skipped 1 labelled PCam patch" in caplog.text


def test_unlabelled_test_patches_are_optional(tmp_path: Path) -> None:
    build_pcam(tmp_path)
    records = read_pcam(tmp_path, include_unlabelled=True)
    assert [record.label for record in records] == [None, "tumour", "normal"]
    assert records[0].metadata == {"label_raw": None, "split": "test"}


def test_kaggle_labels_table_is_read(tmp_path: Path) -> None:
    build_pcam(tmp_path, "id,label\npatch_a,0\n", name="train_labels.csv")
    (tmp_path / "old_labels.csv").write_text("id,label\npatch_a,1\n")
    assert [record.label for record in read_pcam(tmp_path)] == ["normal"]


def test_bad_pcam_folders_and_tables_are_rejected(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match=r"does not exist; expected the Kaggle PCam layout"):
        read_pcam(tmp_path / "missing")
    (tmp_path / "no_csv" / "train").mkdir(parents=True)
    with pytest.raises(DatasetError, match=r"No dataset .* \*labels\*.csv"):
        read_pcam(tmp_path / "no_csv")
    build_pcam(tmp_path / "bad_label", ",id,label\n0,patch_a,2\n")
    with pytest.raises(DatasetError, match=r"patch patch_a has label '2'; expected 0"):
        read_pcam(tmp_path / "bad_label")
    build_pcam(tmp_path / "no_match", "id,label\nother,1\n")
    with pytest.raises(DatasetError, match=r"No PCam patch found"):
        read_pcam(tmp_path / "no_match")


def _write_h5(path: Path, key: str, data: np.ndarray) -> Path:
    with h5py.File(path, "w") as handle:
        handle.create_dataset(key, data=data)
    return path


def test_pcam_h5_is_streamed_in_batches(tmp_path: Path, rng: np.random.Generator) -> None:
    images = rng.integers(0, 256, size=(5, 96, 96, 3), dtype=np.uint8)
    labels = np.array([0, 1, 1, 0, 1], dtype=np.uint8).reshape(5, 1, 1, 1)
    x_path = _write_h5(tmp_path / "camelyonpatch_level_2_split_valid_x.h5", "x", images)
    y_path = _write_h5(tmp_path / "camelyonpatch_level_2_split_valid_y.h5", "y", labels)
    batches = list(iter_pcam_h5(x_path, y_path, batch_size=2))
    assert [batch.shape for batch, _ in batches] == [(2, 96, 96, 3), (2, 96, 96, 3), (1, 96, 96, 3)]
    np.testing.assert_array_equal(np.concatenate([batch for batch, _ in batches]), images)
    streamed = np.concatenate([batch_labels for _, batch_labels in batches])
    assert streamed.dtype == np.int64 and streamed.tolist() == [0, 1, 1, 0, 1]
    assert all(batch_labels is None for _, batch_labels in iter_pcam_h5(x_path))


def test_pcam_h5_errors(tmp_path: Path) -> None:
    x_path = _write_h5(tmp_path / "x.h5", "x", np.zeros((3, 96, 96, 3), np.uint8))
    with pytest.raises(ConfigError, match="batch_size must be a positive integer"):
        iter_pcam_h5(x_path, batch_size=0)
    with pytest.raises(DatasetError, match=r"missing_x.h5 does not exist"):
        iter_pcam_h5(tmp_path / "missing_x.h5")
    gz_path = tmp_path / "x.h5.gz"
    gz_path.write_bytes(b"\x1f\x8b")
    with pytest.raises(DatasetError, match=r"gzip-compressed; decompress it"):
        iter_pcam_h5(gz_path)
    short_y = _write_h5(tmp_path / "y.h5", "y", np.zeros((2, 1, 1, 1), np.uint8))
    with pytest.raises(DatasetError, match=r"x.h5 holds 3 patches but y.h5 holds 2 labels"):
        list(iter_pcam_h5(x_path, short_y))
    with pytest.raises(DatasetError, match=r"y.h5 has no dataset 'x' \(found y\)"):
        list(iter_pcam_h5(short_y))
    gray = _write_h5(tmp_path / "gray.h5", "x", np.zeros((3, 96, 96), np.uint8))
    with pytest.raises(DatasetError, match=r"expected \(N, 96, 96, 3\)"):
        list(iter_pcam_h5(gray))
    not_h5 = tmp_path / "fake.h5"
    not_h5.write_text("not hdf5")
    with pytest.raises(DatasetError, match=r"fake.h5 is not a readable HDF5 file"):
        list(iter_pcam_h5(not_h5))


@pytest.mark.real_data
def test_real_pcam_counts(shared_datasets: Path) -> None:
    records = read_pcam(shared_datasets / "pcam_sample")
    assert len(records) == 15
    assert Counter(record.label for record in records) == {"normal": 10, "tumour": 5}
    with_test = read_pcam(shared_datasets / "pcam_sample", include_unlabelled=True)
    assert len(with_test) == 26
    assert sum(record.label is None for record in with_test) == 11
