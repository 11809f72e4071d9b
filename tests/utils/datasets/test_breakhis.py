from __future__ import annotations

import logging
from collections import Counter
from pathlib import Path

import pytest
from PIL import Image

from utils.datasets import parse_breakhis_name, read_breakhis
from utils.errors import ConfigError, DatasetError

#: Relative paths in the nesting of the full release (two patients, two magnifications).
NESTED_FILES = (
    "BreaKHis_v1/histology_slides/breast/benign/SOB/adenosis/SOB_B_A_14-22549AB/40X/"
    "SOB_B_A-14-22549AB-40-001.png",
    "BreaKHis_v1/histology_slides/breast/benign/SOB/adenosis/SOB_B_A_14-22549AB/100X/"
    "SOB_B_A-14-22549AB-100-010.png",
    "BreaKHis_v1/histology_slides/breast/benign/SOB/adenosis/SOB_B_A_14-22549AB/100X/"
    "SOB_B_A-14-22549AB-100-2.png",
    "BreaKHis_v1/histology_slides/breast/malignant/SOB/ductal_carcinoma/SOB_M_DC_14-2523/400X/"
    "SOB_M_DC-14-2523-400-001.png",
)


def build_breakhis(root: Path) -> Path:
    """Write the images of ``NESTED_FILES`` (tiny PNGs) under ``root``."""
    for relative in NESTED_FILES:
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (7, 4)).save(path)
    return root


def test_documented_example_is_parsed() -> None:
    assert parse_breakhis_name("SOB_B_TA-14-3411F-40-001.png") == {
        "label": "benign",
        "subtype_code": "TA",
        "subtype": "tubular_adenoma",
        "year": 14,
        "patient_id": "3411F",
        "magnification": 40,
        "sequence": 1,
    }


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("SOB_B_A-14-22549AB-40-001.png", ("benign", "adenosis", "22549AB", 40, 1)),
        ("SOB_B_PT-14-21998AB-100-033.png", ("benign", "phyllodes_tumor", "21998AB", 100, 33)),
        ("SOB_B_F-14-25197-200-032.png", ("benign", "fibroadenoma", "25197", 200, 32)),
        ("SOB_M_MC-14-10147-400-1.PNG", ("malignant", "mucinous_carcinoma", "10147", 400, 1)),
        ("SOB_M_LC-14-12204-40-001.png", ("malignant", "lobular_carcinoma", "12204", 40, 1)),
        ("x/y/SOB_M_PC-15-190EF-40-015.png", ("malignant", "papillary_carcinoma", "190EF", 40, 15)),
    ],
)
def test_names_are_parsed(name: str, expected: tuple) -> None:
    fields = parse_breakhis_name(name)
    parsed = (fields["label"], fields["subtype"])
    assert (*parsed, fields["patient_id"], fields["magnification"], fields["sequence"]) == expected


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("benign (1).png", "does not match the pattern"),
        ("SOB_B_TA-14-3411F-40.png", "does not match the pattern"),
        ("SOB_B_TA_14-3411F-40-001.png", "does not match the pattern"),
        ("SOB_B_TA-14-3411F-40-001.txt", "does not match the pattern"),
        ("SOB_X_TA-14-3411F-40-001.png", "does not match the pattern"),
        ("SOB_B_XY-14-3411F-40-001.png", "unknown subtype XY"),
        ("SOB_M_TA-14-3411F-40-001.png", "subtype TA is benign, not M"),
        ("SOB_B_TA-14-3411F-50-001.png", "magnification 50 is not one of 40, 100, 200, 400"),
    ],
)
def test_bad_names_are_rejected_with_the_pattern(name: str, reason: str) -> None:
    with pytest.raises(DatasetError, match=rf"{reason}.*expected SOB_<B\|M>_<subtype>-<year>"):
        parse_breakhis_name(name)


def test_nested_release_is_walked_recursively(tmp_path: Path) -> None:
    records = read_breakhis(build_breakhis(tmp_path))
    assert [record.image_path.name for record in records] == [
        "SOB_B_A-14-22549AB-40-001.png",
        "SOB_B_A-14-22549AB-100-2.png",
        "SOB_B_A-14-22549AB-100-010.png",
        "SOB_M_DC-14-2523-400-001.png",
    ]
    assert [record.label for record in records] == ["benign"] * 3 + ["malignant"]
    assert [record.group_id for record in records] == ["breakhis:22549"] * 3 + ["breakhis:2523"]
    assert records[3].metadata == {
        "subtype_code": "DC",
        "subtype": "ductal_carcinoma",
        "year": 14,
        "patient_id": "2523",
        "magnification": 400,
        "sequence": 1,
        "class": "malignant",
    }


def test_subtype_labels(tmp_path: Path) -> None:
    records = read_breakhis(build_breakhis(tmp_path), label_mode="subtype")
    assert [record.label for record in records] == ["adenosis"] * 3 + ["ductal_carcinoma"]
    assert records[0].metadata["class"] == "benign"


def test_bad_label_mode_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"label_mode must be one of binary, subtype"):
        read_breakhis(build_breakhis(tmp_path), label_mode="grade")  # type: ignore[arg-type]


def test_malformed_sob_files_are_skipped(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    root = build_breakhis(tmp_path)
    Image.new("RGB", (2, 2)).save(root / "SOB_B_ZZ-14-1-40-001.png")
    with caplog.at_level(logging.WARNING):
        assert len(read_breakhis(root)) == len(NESTED_FILES)
    assert "unknown subtype ZZ" in caplog.text


def test_folders_without_breakhis_images_are_rejected(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match=r"does not exist; expected image files named SOB_"):
        read_breakhis(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match=r"is empty; expected image files named SOB_"):
        read_breakhis(tmp_path / "empty")
    Image.new("RGB", (2, 2)).save(tmp_path / "slide.png")
    with pytest.raises(DatasetError, match=r"No BreakHis image found in"):
        read_breakhis(tmp_path)


@pytest.mark.real_data
def test_real_breakhis_counts(shared_datasets: Path) -> None:
    records = read_breakhis(shared_datasets / "breakhis_sample")
    assert len(records) == 12
    assert Counter(record.label for record in records) == {"benign": 8, "malignant": 4}
    assert len({record.metadata["subtype"] for record in records}) == 8
    assert len({record.group_id for record in records}) == 9
    assert {record.metadata["magnification"] for record in records} == {40, 100, 200, 400}


def test_slides_with_letter_suffixes_share_one_patient_group() -> None:
    from utils.datasets.breakhis import patient_group

    assert patient_group("21998AB") == patient_group("21998CD") == "21998"
    assert patient_group("3411F") == "3411"
