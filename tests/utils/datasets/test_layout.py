from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from PIL import Image

from tests.utils.datasets.test_breakhis import build_breakhis
from tests.utils.datasets.test_busbra import build_busbra
from tests.utils.datasets.test_busi import build_busi
from tests.utils.datasets.test_class_folder import build_class_folders
from tests.utils.datasets.test_monuseg import build_monuseg
from tests.utils.datasets.test_pcam import build_pcam
from utils.datasets import READERS, detect_layout, read_dataset
from utils.errors import ConfigError, DatasetError

BUILDERS: dict[str, Callable[[Path], Path]] = {
    "busi": build_busi,
    "bus-bra": build_busbra,
    "monuseg": build_monuseg,
    "pcam": build_pcam,
    "breakhis": build_breakhis,
    "class-folders": build_class_folders,
}
EXPECTED_COUNTS = {
    "busi": 6,
    "bus-bra": 3,
    "monuseg": 3,
    "pcam": 2,
    "breakhis": 4,
    "class-folders": 3,
}


def test_every_registered_layout_has_a_builder() -> None:
    assert set(BUILDERS) == set(READERS)


@pytest.mark.parametrize("layout", list(BUILDERS))
def test_each_layout_is_detected_and_read(tmp_path: Path, layout: str) -> None:
    root = BUILDERS[layout](tmp_path / "data")
    assert detect_layout(root) == layout
    records = read_dataset(root)
    assert len(records) == EXPECTED_COUNTS[layout]
    assert records == READERS[layout](root)


@pytest.mark.parametrize("layout", ["busi", "bus-bra", "monuseg", "pcam"])
def test_specific_layouts_are_found_below_the_given_folder(tmp_path: Path, layout: str) -> None:
    BUILDERS[layout](tmp_path / "download" / "extracted")
    assert detect_layout(tmp_path) == layout
    assert len(read_dataset(tmp_path)) == EXPECTED_COUNTS[layout]


def test_deeply_nested_breakhis_release_is_detected(tmp_path: Path) -> None:
    build_breakhis(tmp_path)  # images 8 folders below tmp_path
    assert detect_layout(tmp_path) == "breakhis"
    assert detect_layout(tmp_path / "BreaKHis_v1") == "breakhis"


def test_class_folders_of_breakhis_images_read_as_breakhis(tmp_path: Path) -> None:
    # File names carry patient ids, which the generic reader would lose.
    (tmp_path / "benign").mkdir()
    Image.new("RGB", (4, 4)).save(tmp_path / "benign" / "SOB_B_F-14-9133-40-001.png")
    assert detect_layout(tmp_path) == "breakhis"
    assert read_dataset(tmp_path)[0].group_id == "breakhis:9133"


def test_layout_names_are_normalised_and_options_passed(tmp_path: Path) -> None:
    root = build_breakhis(tmp_path / "data")
    labels = {record.label for record in read_dataset(root, "BreakHis", label_mode="subtype")}
    assert labels == {"adenosis", "ductal_carcinoma"}
    busbra = build_busbra(tmp_path / "bus")
    assert len(read_dataset(busbra, layout="BUS_BRA")) == 3


def test_unknown_layout_name_lists_the_valid_ones(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"Unknown dataset layout 'kaggle'.*auto, busi, bus-bra"):
        read_dataset(tmp_path, layout="kaggle")


def test_unknown_reader_option_is_a_config_error(tmp_path: Path) -> None:
    root = build_busi(tmp_path)
    with pytest.raises(
        ConfigError, match=r"busi reader has no option label_mode.*options are none"
    ):
        read_dataset(root, label_mode="subtype")
    with pytest.raises(ConfigError, match=r"options are classes, extensions"):
        read_dataset(root, layout="class-folders", include_unlabelled=True)


def test_folder_with_several_datasets_is_ambiguous(tmp_path: Path) -> None:
    build_busbra(tmp_path / "bus-bra")
    build_pcam(tmp_path / "pcam")
    with pytest.raises(DatasetError, match=r"holds several datasets \(bus-bra in .*, pcam in"):
        detect_layout(tmp_path)


def test_missing_empty_and_unrecognised_folders_are_rejected(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match=r"does not exist; expected one of the recognised"):
        detect_layout(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match=r"is empty; expected one of the recognised"):
        read_dataset(tmp_path / "empty")
    (tmp_path / "odd" / "sub").mkdir(parents=True)
    (tmp_path / "odd" / "sub" / "readme.txt").write_text("no images")
    with pytest.raises(DatasetError, match=r"not recognised\. Recognised layouts: busi: .*pcam"):
        detect_layout(tmp_path / "odd")


@pytest.mark.real_data
@pytest.mark.parametrize(
    ("folder", "layout"),
    [
        ("busi", "busi"),
        ("busi/Dataset_BUSI_with_GT", "busi"),
        ("bus-bra", "bus-bra"),
        ("monuseg", "monuseg"),
        ("pcam_sample", "pcam"),
        ("breakhis_sample", "breakhis"),
    ],
)
def test_real_layouts_are_detected(shared_datasets: Path, folder: str, layout: str) -> None:
    assert detect_layout(shared_datasets / folder) == layout


@pytest.mark.real_data
def test_real_datasets_folder_is_ambiguous(shared_datasets: Path) -> None:
    with pytest.raises(DatasetError, match="holds several datasets"):
        detect_layout(shared_datasets)
