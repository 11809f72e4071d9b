from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from utils.datasets import load_mask, read_class_folders
from utils.errors import ConfigError, DatasetError


def build_class_folders(root: Path) -> Path:
    """Write ``cats/`` (two images, one with two masks) and ``dogs/`` (one JPEG)."""
    (root / "cats").mkdir(parents=True)
    (root / "dogs").mkdir()
    (root / "empty_class").mkdir()
    Image.new("RGB", (5, 4)).save(root / "cats" / "cat10.png")
    Image.new("RGB", (5, 4)).save(root / "cats" / "cat2.png")
    first = np.zeros((4, 5), dtype=bool)
    first[0, 0] = True
    Image.fromarray(first).save(root / "cats" / "cat2_mask.png")
    Image.fromarray(np.rot90(first, 2).copy()).save(root / "cats" / "cat2_mask_b.png")
    Image.new("RGB", (5, 4)).save(root / "dogs" / "dog1.JPG")
    (root / "dogs" / "notes.txt").write_text("not an image")
    (root / ".hidden").mkdir()
    Image.new("RGB", (5, 4)).save(root / ".hidden" / "x.png")
    return root


def test_every_subfolder_is_a_class_and_masks_are_not_images(tmp_path: Path) -> None:
    records = read_class_folders(build_class_folders(tmp_path))
    assert [(record.label, record.image_path.name) for record in records] == [
        ("cats", "cat2.png"),
        ("cats", "cat10.png"),
        ("dogs", "dog1.JPG"),
    ]
    assert [path.name for path in records[0].mask_paths] == ["cat2_mask.png", "cat2_mask_b.png"]
    assert load_mask(records[0].mask_paths).sum() == 2
    assert records[1].mask_paths == ()
    assert records[0].group_id == "class-folders:cats/cat2"
    assert len({record.group_id for record in records}) == 3


def test_classes_and_extensions_select_what_is_read(tmp_path: Path) -> None:
    root = build_class_folders(tmp_path)
    assert {record.label for record in read_class_folders(root, classes=["dogs"])} == {"dogs"}
    records = read_class_folders(root, extensions=["jpg"])
    assert [record.image_path.name for record in records] == ["dog1.JPG"]


def test_missing_class_folder_is_reported(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match=r"Class folder\(s\) birds not found .* found cats"):
        read_class_folders(build_class_folders(tmp_path), classes=["cats", "birds"])


def test_bad_options_are_config_errors(tmp_path: Path) -> None:
    root = build_class_folders(tmp_path)
    with pytest.raises(ConfigError, match="classes must be a non-empty list"):
        read_class_folders(root, classes=[])
    with pytest.raises(ConfigError, match="classes must be a non-empty list"):
        read_class_folders(root, classes="cats")
    with pytest.raises(ConfigError, match="extensions must be a non-empty list"):
        read_class_folders(root, extensions=[])


def test_folders_without_images_are_rejected(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match=r"does not exist; expected one subfolder per class"):
        read_class_folders(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match=r"is empty; expected one subfolder per class"):
        read_class_folders(tmp_path / "empty")
    (tmp_path / "flat").mkdir()
    Image.new("L", (3, 3)).save(tmp_path / "flat" / "loose.png")
    with pytest.raises(DatasetError, match=r"No images .* found in the class folders"):
        read_class_folders(tmp_path / "flat")
