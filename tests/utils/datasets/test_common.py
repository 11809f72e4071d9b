from __future__ import annotations

import logging
from pathlib import Path

import pytest
from PIL import Image

from utils.datasets._common import (
    find_layout_root,
    natural_sort_key,
    normalise_extensions,
    pair_images_with_masks,
    read_csv_rows,
    require_directory,
)
from utils.errors import ConfigError, DatasetError


def test_natural_sort_orders_numbers_by_value() -> None:
    names = ["benign (10).png", "benign (2).png", "Benign (1).png", "benign (2)_mask.png"]
    assert sorted(names, key=natural_sort_key) == [
        "Benign (1).png",
        "benign (2).png",
        "benign (2)_mask.png",
        "benign (10).png",
    ]


def test_natural_sort_accepts_paths_and_mixed_names() -> None:
    paths = [Path("b/x10"), Path("a/x2"), Path("b/x9"), Path("b/y")]
    assert sorted(paths, key=natural_sort_key) == [
        Path("a/x2"),
        Path("b/x9"),
        Path("b/x10"),
        Path("b/y"),
    ]


def test_require_directory_rejects_missing_file_and_empty(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match=r"nowhere does not exist; expected my layout"):
        require_directory(tmp_path / "nowhere", "my layout")
    file_path = tmp_path / "file.txt"
    file_path.write_text("x")
    with pytest.raises(DatasetError, match=r"is a file, not a folder"):
        require_directory(file_path, "my layout")
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / ".DS_Store").write_text("")
    with pytest.raises(DatasetError, match=r"empty is empty; expected my layout"):
        require_directory(tmp_path / "empty", "my layout")


def test_find_layout_root_returns_shallowest_match(tmp_path: Path) -> None:
    for relative in ("a/b/target", "z/target", "a/b/c/d/target"):
        (tmp_path / relative).mkdir(parents=True)

    def is_root(folder: Path) -> bool:
        return (folder / "target").is_dir()

    assert find_layout_root(tmp_path, is_root) == tmp_path / "z"
    assert find_layout_root(tmp_path / "a", is_root) == tmp_path / "a" / "b"
    assert find_layout_root(tmp_path / "a" / "b" / "c", is_root, max_depth=0) is None


def test_pairing_keeps_masks_out_of_images_and_warns_on_orphans(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    for name in ("x (2).png", "x (10).jpg", "x (2)_mask_1.png", "x (2)_mask.png", "y_mask.png"):
        Image.new("L", (2, 2)).save(tmp_path / name)
    (tmp_path / "notes.txt").write_text("not an image")
    with caplog.at_level(logging.WARNING):
        pairs = pair_images_with_masks(tmp_path)
    assert list(pairs) == [tmp_path / "x (2).png", tmp_path / "x (10).jpg"]
    assert pairs[tmp_path / "x (2).png"] == (
        tmp_path / "x (2)_mask.png",
        tmp_path / "x (2)_mask_1.png",
    )
    assert pairs[tmp_path / "x (10).jpg"] == ()
    assert "missing image 'y'" in caplog.text


def test_extensions_are_normalised_and_validated() -> None:
    assert normalise_extensions(["PNG", ".Tif"]) == {".png", ".tif"}
    with pytest.raises(ConfigError, match="non-empty list"):
        normalise_extensions([])
    with pytest.raises(ConfigError, match="non-empty list"):
        normalise_extensions(".png")


def test_csv_rows_are_stripped_and_columns_checked(tmp_path: Path) -> None:
    table = tmp_path / "t.csv"
    table.write_text("\ufeff id , label\n a ,1\n\n")
    assert read_csv_rows(table, ("id", "label")) == [{"id": "a", "label": "1"}]
    with pytest.raises(DatasetError, match=r"t.csv .* lacks the column\(s\) kFold"):
        read_csv_rows(table, ("id", "kFold"))
