from __future__ import annotations

import logging
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from utils.datasets import load_mask, read_busi
from utils.errors import DatasetError

SHAPE = (6, 8)


def _square(top: int, left: int, size: int = 2) -> np.ndarray:
    mask = np.zeros(SHAPE, dtype=bool)
    mask[top : top + size, left : left + size] = True
    return mask


def _save_mask(path: Path, mask: np.ndarray, mode: str) -> None:
    """Save ``mask`` in a PIL ``mode``, as real BUSI/BUS-BRA masks come in several."""
    image = Image.fromarray((mask * 255).astype(np.uint8), mode="L")
    if mode == "RGBA":
        rgba = np.zeros((*SHAPE, 4), dtype=np.uint8)
        rgba[mask] = (255, 255, 255, 255)
        image = Image.fromarray(rgba, mode="RGBA")
    else:
        image = image.convert(mode)
    image.save(path)


#: Masks of the synthetic BUSI tree: image name -> [(mask suffix, mask, PIL mode)].
BUSI_MASKS: dict[str, list[tuple[str, np.ndarray, str]]] = {
    "benign/benign (1)": [("_mask", _square(0, 0), "1")],
    "benign/benign (2)": [("_mask", _square(0, 0), "L"), ("_mask_1", _square(3, 5), "RGB")],
    "benign/benign (10)": [("_mask", _square(2, 2), "RGBA")],
    "malignant/malignant (1)": [("_mask", _square(1, 1), "P")],
    "normal/normal (1)": [("_mask", np.zeros(SHAPE, dtype=bool), "L")],
    "normal/normal (2)": [],
}


def build_busi(root: Path, classes: tuple[str, ...] = ("benign", "malignant", "normal")) -> Path:
    """Write a tiny BUSI tree under ``root`` and return its class-folder root."""
    for stem, masks in BUSI_MASKS.items():
        if stem.split("/")[0] not in classes:
            continue
        image_path = root / f"{stem}.png"
        image_path.parent.mkdir(parents=True, exist_ok=True)
        Image.new("L", SHAPE[::-1], color=80).save(image_path)
        for suffix, mask, mode in masks:
            _save_mask(root / f"{stem}{suffix}.png", mask, mode)
    return root


def test_busi_records_are_labelled_grouped_and_naturally_sorted(tmp_path: Path) -> None:
    records = read_busi(build_busi(tmp_path))
    assert [record.image_path.relative_to(tmp_path).as_posix() for record in records] == [
        f"{stem}.png" for stem in BUSI_MASKS
    ]
    assert [record.label for record in records] == [stem.split("/")[0] for stem in BUSI_MASKS]
    assert records[2].group_id == "busi:benign:10"
    assert records[2].metadata == {"index": 10}
    assert {record.dataset for record in records} == {"busi"}


def test_busi_masks_of_every_mode_load_and_or_merge(tmp_path: Path) -> None:
    records = {record.image_path.stem: record for record in read_busi(build_busi(tmp_path))}
    for stem, masks in BUSI_MASKS.items():
        record = records[stem.split("/")[1]]
        assert [path.name for path in record.mask_paths] == [
            f"{stem.split('/')[1]}{suffix}.png" for suffix, _, _ in masks
        ]
        expected = np.zeros(SHAPE, dtype=bool)
        for _, mask, _ in masks:
            expected |= mask
        np.testing.assert_array_equal(load_mask(record.mask_paths, shape=SHAPE), expected)
    assert load_mask(records["benign (2)"].mask_paths).sum() == 8  # two 2x2 lesions merged


def test_busi_accepts_an_ancestor_folder_and_a_subset_of_classes(tmp_path: Path) -> None:
    build_busi(tmp_path / "busi" / "Dataset_BUSI_with_GT", classes=("benign", "malignant"))
    records = read_busi(tmp_path / "busi")
    assert Counter(record.label for record in records) == {"benign": 3, "malignant": 1}


def test_busi_skips_files_not_named_like_busi(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    build_busi(tmp_path)
    Image.new("L", (4, 4)).save(tmp_path / "benign" / "copy of benign (1).png")
    Image.new("L", (4, 4)).save(tmp_path / "benign" / "malignant (7).png")
    with caplog.at_level(logging.WARNING):
        records = read_busi(tmp_path)
    assert len(records) == len(BUSI_MASKS)
    assert "copy of benign (1).png" in caplog.text and "malignant (7).png" in caplog.text


def test_busi_rejects_missing_empty_and_foreign_folders(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match=r"does not exist; expected folders benign/"):
        read_busi(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match=r"empty is empty; expected folders benign/"):
        read_busi(tmp_path / "empty")
    # Class folders with other file names are a generic dataset, not BUSI.
    (tmp_path / "other" / "benign").mkdir(parents=True)
    Image.new("L", (4, 4)).save(tmp_path / "other" / "benign" / "img001.png")
    with pytest.raises(DatasetError, match=r"No dataset in the expected layout .* '<class> \(N\)"):
        read_busi(tmp_path / "other")


@pytest.mark.real_data
def test_real_busi_counts(shared_datasets: Path) -> None:
    records = read_busi(shared_datasets / "busi")
    assert len(records) == 622
    assert Counter(record.label for record in records) == {
        "benign": 349,
        "malignant": 167,
        "normal": 106,
    }
    assert len({record.group_id for record in records}) == 622
    assert all(record.mask_paths for record in records)  # normal images ship empty masks
    several = [record for record in records if len(record.mask_paths) > 1]
    assert len(several) == 16
    merged = load_mask(several[0].mask_paths)
    single = [load_mask([path]) for path in several[0].mask_paths]
    np.testing.assert_array_equal(merged, np.logical_or.reduce(single))
