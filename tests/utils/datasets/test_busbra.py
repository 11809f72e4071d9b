from __future__ import annotations

import logging
from collections import Counter
from pathlib import Path

import pytest
from PIL import Image

from utils.datasets import read_busbra
from utils.errors import DatasetError

BUS_DATA = """ID,Case,Histology,Pathology,BIRADS,Device,Width,Height,Side,BBOX
bus_0001-l,1,invasive ductal carcinoma,malignant,5,GE Logiq 7,8,6,left,"[1,2,3,4]"
bus_0001-r,1,invasive ductal carcinoma,malignant,4a,GE Logiq 7,8,6,right,"[0,0,8,6]"
bus_0002-s,2,fibroadenoma,benign,3,Toshiba,8,6,single,"[2, 1, 4, 3]"
bus_0003-s,3,cyst,benign,2,Toshiba,8,6,single,"[1,1,1,1]"
"""
FOLDS_5 = "ID,Pathology,kFold,valid_1\nbus_0001-l,malignant,3,1\nbus_0002-s,benign,5,NaN\n"
FOLDS_10 = "ID,Pathology,kFold\nbus_0001-l,malignant,9\n"


def build_busbra(root: Path, with_table: bool = True) -> Path:
    """Write a tiny BUS-BRA folder; ``bus_0003-s`` is listed but has no image file."""
    (root / "Images").mkdir(parents=True)
    (root / "Masks").mkdir()
    for image_id in ("bus_0001-l", "bus_0001-r", "bus_0002-s"):
        Image.new("L", (8, 6)).save(root / "Images" / f"{image_id}.png")
    for mask_id in ("mask_0001-l", "mask_0001-r"):  # bus_0002-s has no mask
        Image.new("1", (8, 6)).save(root / "Masks" / f"{mask_id}.png")
    if with_table:
        (root / "bus_data.csv").write_text(BUS_DATA)
        (root / "5-fold-cv.csv").write_text(FOLDS_5)
        (root / "10-fold-cv.csv").write_text(FOLDS_10)
    return root


def test_busbra_records_carry_patient_pathology_and_metadata(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    root = build_busbra(tmp_path / "BUS-BRA")
    with caplog.at_level(logging.WARNING):
        records = read_busbra(root)
    assert [record.image_path.name for record in records] == [
        "bus_0001-l.png",
        "bus_0001-r.png",
        "bus_0002-s.png",
    ]
    assert [record.label for record in records] == ["malignant", "malignant", "benign"]
    assert [record.group_id for record in records] == ["bus-bra:1", "bus-bra:1", "bus-bra:2"]
    assert [len(record.mask_paths) for record in records] == [1, 1, 0]
    assert records[0].mask_paths == (root / "Masks" / "mask_0001-l.png",)
    assert records[0].metadata == {
        "case": 1,
        "birads": 5,
        "histology": "invasive ductal carcinoma",
        "device": "GE Logiq 7",
        "side": "left",
        "bbox": [1, 2, 3, 4],
        "width": 8,
        "height": 6,
        "fold_5": 3,
        "fold_10": 9,
    }
    assert records[1].metadata["birads"] == "4a"
    assert "fold_5" not in records[1].metadata
    assert records[2].metadata["bbox"] == [2, 1, 4, 3]
    assert "Skipped 1 BUS-BRA row(s)" in caplog.text and "bus_0003-s" in caplog.text


def test_busbra_accepts_an_ancestor_folder(tmp_path: Path) -> None:
    build_busbra(tmp_path / "data" / "bus-bra")
    assert len(read_busbra(tmp_path / "data")) == 3


def test_busbra_without_table_is_rejected(tmp_path: Path) -> None:
    root = build_busbra(tmp_path / "bus-bra", with_table=False)
    with pytest.raises(DatasetError, match=r"bus-bra has no bus_data.csv"):
        read_busbra(root)


def test_busbra_table_without_required_columns_is_rejected(tmp_path: Path) -> None:
    root = build_busbra(tmp_path / "bus-bra")
    (root / "bus_data.csv").write_text("ID,Pathology\nbus_0001-l,benign\n")
    with pytest.raises(DatasetError, match=r"bus_data.csv .* lacks the column\(s\) Case"):
        read_busbra(root)


def test_busbra_with_no_existing_image_is_rejected(tmp_path: Path) -> None:
    root = build_busbra(tmp_path / "bus-bra")
    (root / "bus_data.csv").write_text(BUS_DATA.splitlines()[0] + "\n" + BUS_DATA.splitlines()[4])
    with pytest.raises(DatasetError, match=r"None of the images listed"):
        read_busbra(root)


def test_busbra_rejects_missing_empty_and_foreign_folders(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match=r"does not exist; expected the BUS-BRA layout"):
        read_busbra(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match=r"is empty; expected the BUS-BRA layout"):
        read_busbra(tmp_path / "empty")
    (tmp_path / "other" / "Images").mkdir(parents=True)
    Image.new("L", (4, 4)).save(tmp_path / "other" / "Images" / "scan.png")
    with pytest.raises(DatasetError, match=r"No dataset in the expected layout"):
        read_busbra(tmp_path / "other")


@pytest.mark.real_data
def test_real_busbra_counts(shared_datasets: Path) -> None:
    records = read_busbra(shared_datasets / "bus-bra")
    assert len(records) == 946
    assert len({record.group_id for record in records}) == 532
    assert Counter(record.label for record in records) == {"benign": 641, "malignant": 305}
    assert all(len(record.mask_paths) == 1 for record in records)
    assert {record.metadata["fold_5"] for record in records} == {1, 2, 3, 4, 5}
    assert {record.metadata["fold_10"] for record in records} == set(range(1, 11))
    assert all(len(record.metadata["bbox"]) == 4 for record in records)
    assert {record.metadata["side"] for record in records} == {"left", "right", "single"}
