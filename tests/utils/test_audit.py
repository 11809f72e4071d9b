"""Tests of the dataset audit: findings on a tiny synthetic BUSI folder, the CLI, real BUSI."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from PIL import Image

from utils.audit import (
    COLOUR_FRACTION_THRESHOLD,
    MIN_MARKS_TO_FLAG,
    audit_dataset,
    colour_overlay_fraction,
    find_caliper_text_marks,
    main,
    write_contact_sheet,
)
from utils.datasets.records import DatasetRecord
from utils.errors import DatasetError
from utils.near_duplicates import DEFAULT_PHASH_THRESHOLD

HEIGHT, WIDTH = 192, 256


def scene(rng: np.random.Generator) -> np.ndarray:
    """A grey ultrasound-like image: coarse random structure plus mild speckle."""
    coarse = rng.uniform(30, 170, size=(6, 6)).astype(np.float32)
    image = cv2.resize(coarse, (WIDTH, HEIGHT), interpolation=cv2.INTER_CUBIC)
    image += rng.normal(0, 5, size=image.shape)
    return image.clip(0, 255).astype(np.uint8)


def lesion_mask(shape: tuple[int, int] = (HEIGHT, WIDTH)) -> np.ndarray:
    mask = np.zeros(shape, dtype=np.uint8)
    cv2.ellipse(mask, (shape[1] // 2, shape[0] // 2), (30, 20), 0, 0, 360, 255, -1)
    return mask


def with_calipers_and_text(image: np.ndarray) -> np.ndarray:
    marked = image.copy()
    for x, y in ((80, 70), (170, 120)):
        cv2.line(marked, (x - 7, y), (x + 7, y), 235, 1)
        cv2.line(marked, (x, y - 7), (x, y + 7), 235, 1)
    cv2.putText(marked, "RT 2", (60, 170), cv2.FONT_HERSHEY_SIMPLEX, 0.6, 235, 2)
    return marked


def with_colour_overlay(image: np.ndarray) -> np.ndarray:
    rgb = np.stack([image] * 3, axis=-1)
    rgb[60:75, 120:140] = (220, 40, 20)  # Doppler-like red patch
    cv2.line(rgb, (40, 150), (200, 150), (230, 220, 0), 1)  # yellow caliper line
    return rgb


def save(array: np.ndarray, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


@pytest.fixture(scope="module")
def busi_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A BUSI-layout folder with one instance of every problem the audit looks for."""
    rng = np.random.default_rng(7)
    root = tmp_path_factory.mktemp("busi") / "Dataset_BUSI_with_GT"
    scenes = [scene(rng) for _ in range(9)]
    noisy = (scenes[1] + rng.normal(6, 6, size=scenes[1].shape)).clip(0, 255).astype(np.uint8)
    images = {
        "benign (1)": scenes[0],
        "malignant (1)": scenes[0].copy(),  # exact duplicate, other label
        "benign (2)": scenes[1],
        "normal (1)": noisy,  # noised, brighter duplicate, other label; has a lesion mask
        "benign (3)": with_colour_overlay(scenes[2]),
        "benign (4)": with_calipers_and_text(scenes[3]),
        "malignant (2)": scenes[4],  # no mask
        "malignant (3)": scenes[5],  # empty mask
        "benign (5)": scenes[6],  # mask of another size
        "benign (6)": scenes[7],  # two masks
        "normal (2)": scenes[8],  # empty mask, as BUSI normal images have
    }
    masks = {
        "malignant (3)_mask": np.zeros((HEIGHT, WIDTH), np.uint8),
        "benign (5)_mask": lesion_mask((100, 120)),
        "benign (6)_mask_1": lesion_mask(),
        "normal (2)_mask": np.zeros((HEIGHT, WIDTH), np.uint8),
    }
    for stem, array in images.items():
        label = stem.split(" ")[0]
        save(array, root / label / f"{stem}.png")
        default_mask = stem not in ("malignant (2)", "malignant (3)", "normal (2)", "benign (5)")
        if default_mask:
            save(lesion_mask(), root / label / f"{stem}_mask.png")
    for stem, array in masks.items():
        save(array, root / stem.split(" ")[0] / f"{stem}.png")
    return root


@pytest.fixture(scope="module")
def report(busi_folder: Path) -> dict[str, Any]:
    from utils.datasets import read_dataset

    return audit_dataset(read_dataset(busi_folder))


def files(entries: list[dict[str, Any]]) -> list[str]:
    return [entry["file"] for entry in entries]


def test_counts(report) -> None:
    assert report["datasets"] == ["busi"]
    assert report["n_images"] == 11
    assert report["class_counts"] == {"benign": 6, "malignant": 3, "normal": 2}
    assert report["n_groups"] == 11
    assert report["unreadable_images"] == []


def test_exact_and_noised_duplicates_are_cross_label_families(report) -> None:
    duplicates = report["near_duplicates"]
    assert duplicates["threshold"] == DEFAULT_PHASH_THRESHOLD
    assert duplicates["n_families"] == 2
    assert duplicates["n_images_in_families"] == 4
    assert duplicates["n_cross_label_families"] == 2
    assert duplicates["n_groups_after_merging_families"] == 9
    members = [files(family["members"]) for family in duplicates["families"]]
    assert members == [
        ["benign/benign (1).png", "malignant/malignant (1).png"],
        ["benign/benign (2).png", "normal/normal (1).png"],
    ]
    assert [family["labels"] for family in duplicates["families"]] == [
        ["benign", "malignant"],
        ["benign", "normal"],
    ]
    assert duplicates["families"][0]["max_distance"] == 0


def test_each_mask_problem_is_found_once(report) -> None:
    masks = report["masks"]
    assert files(masks["missing_on_lesion_image"]) == ["malignant/malignant (2).png"]
    assert files(masks["empty_on_lesion_image"]) == ["malignant/malignant (3).png"]
    assert files(masks["nonempty_on_normal_image"]) == ["normal/normal (1).png"]
    assert masks["unreadable_mask"] == []
    (mismatch,) = masks["size_mismatch"]
    assert mismatch["file"] == "benign/benign (5).png"
    assert mismatch["mask"] == "benign/benign (5)_mask.png"
    assert mismatch["image_size"] == [WIDTH, HEIGHT]
    assert mismatch["mask_size"] == [120, 100]
    (several,) = masks["several_masks"]
    assert several["file"] == "benign/benign (6).png"
    assert several["n_masks"] == 2
    assert masks["counts"] == {
        "missing_on_lesion_image": 1,
        "empty_on_lesion_image": 1,
        "nonempty_on_normal_image": 1,
        "size_mismatch": 1,
        "several_masks": 1,
        "unreadable_mask": 0,
    }


def test_overlays_flag_only_the_marked_images(report) -> None:
    colour = report["overlays"]["colour"]
    assert files(colour["flagged"]) == ["benign/benign (3).png"]
    assert colour["flagged"][0]["score"] >= COLOUR_FRACTION_THRESHOLD
    marks = report["overlays"]["calipers_text"]
    assert files(marks["flagged"]) == ["benign/benign (4).png"]
    assert marks["flagged"][0]["score"] >= 4  # two crosses and several letters
    scores = {entry["file"]: entry for entry in report["images"]}
    assert scores["benign/benign (1).png"]["colour_fraction"] == 0.0
    assert scores["benign/benign (1).png"]["caliper_text_marks"] == 0


def test_report_is_json_serialisable(report) -> None:
    assert json.loads(json.dumps(report))["n_images"] == 11


def test_colour_fraction_is_zero_for_grey_rgb_and_counts_coloured_pixels() -> None:
    grey = np.full((10, 10, 3), 128, dtype=np.uint8)
    assert colour_overlay_fraction(grey) == 0.0
    grey[0, :5] = (255, 255, 0)
    assert colour_overlay_fraction(grey) == pytest.approx(0.05)


def test_marks_are_found_on_crosses_not_on_plain_speckle(speckle_image) -> None:
    # Pixel-independent speckle may give a stray mark; a flag needs two.
    assert len(find_caliper_text_marks(speckle_image)) < MIN_MARKS_TO_FLAG
    rng = np.random.default_rng(0)
    assert len(find_caliper_text_marks(with_calipers_and_text(scene(rng)))) >= 4


def test_marks_in_logo_corner_and_on_border_are_ignored() -> None:
    image = np.full((HEIGHT, WIDTH), 60, dtype=np.uint8)
    cv2.putText(image, "Q", (4, 20), cv2.FONT_HERSHEY_SIMPLEX, 0.5, 235, 1)  # logo corner
    cv2.line(image, (WIDTH - 1, 80), (WIDTH - 1, 95), 235, 1)  # image border
    assert find_caliper_text_marks(image) == []


def test_large_images_are_downscaled_and_boxes_scaled_back() -> None:
    image = np.full((1500, 2048), 60, dtype=np.uint8)
    cv2.line(image, (1000, 700), (1000, 740), 235, 3)
    cv2.line(image, (980, 720), (1020, 720), 235, 3)
    (box,) = find_caliper_text_marks(image)
    x, y, width, height = box
    assert abs(x - 980) <= 4 and abs(y - 700) <= 4 and 36 <= width <= 46 and 36 <= height <= 46


def test_unreadable_image_is_reported_not_raised(tmp_path: Path, rng) -> None:
    good, broken = tmp_path / "good.png", tmp_path / "broken.png"
    save(scene(rng), good)
    broken.write_bytes(b"\x89PNG\r\n\x1a\n not really")
    records = [DatasetRecord(image_path=path, label="benign") for path in (good, broken)]
    result = audit_dataset(records)
    assert files(result["unreadable_images"]) == ["broken.png"]
    # Mask checks skip the unreadable image; the readable one has no mask at all.
    assert files(result["masks"]["missing_on_lesion_image"]) == ["good.png"]


def test_empty_dataset_is_a_dataset_error() -> None:
    with pytest.raises(DatasetError, match="no images to audit"):
        audit_dataset([])


def test_contact_sheet_is_written(report, tmp_path: Path) -> None:
    path = write_contact_sheet(report, tmp_path / "sheet.png")
    with Image.open(path) as sheet:
        assert sheet.width > 500 and sheet.height > 200


def test_contact_sheet_without_findings(tmp_path: Path, rng) -> None:
    save(scene(rng), tmp_path / "one.png")
    result = audit_dataset([DatasetRecord(image_path=tmp_path / "one.png", label=None)])
    assert write_contact_sheet(result, tmp_path / "sheet.png").is_file()


def test_cli_writes_report_and_sheet(busi_folder: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "audit"
    assert main([str(busi_folder), "--out", str(out), "--phash-threshold", "4"]) == 0
    written = json.loads((out / "audit.json").read_text())
    assert written["near_duplicates"]["threshold"] == 4
    assert (out / "contact_sheet.png").is_file()
    printed = capsys.readouterr().out
    assert "11 images" in printed and "2 cross-label" in printed


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["{missing}"], "does not exist"),
        (["{plain}"], "not recognised"),
        (["{plain}", "--layout", "dicom"], "Unknown dataset layout 'dicom'"),
        (["{plain}", "--phash-threshold", "-1"], "non-negative integer"),
    ],
)
def test_cli_bad_input_exits_2_with_message(
    tmp_path: Path, busi_folder: Path, capsys, arguments: list[str], message: str
) -> None:
    plain = tmp_path / "plain"
    plain.mkdir()
    (plain / "notes.txt").write_text("not a dataset")
    paths = {"missing": tmp_path / "missing", "plain": plain}
    if "--phash-threshold" in arguments:
        paths["plain"] = busi_folder
    argv = [argument.format(**paths) for argument in arguments]
    assert main([*argv, "--out", str(tmp_path / "out")]) == 2
    assert message in capsys.readouterr().err


@pytest.mark.real_data
@pytest.mark.slow
def test_audit_of_real_busi(shared_datasets: Path, tmp_path: Path) -> None:
    assert main([str(shared_datasets / "busi"), "--out", str(tmp_path)]) == 0
    result = json.loads((tmp_path / "audit.json").read_text())
    assert result["class_counts"] == {"benign": 349, "malignant": 167, "normal": 106}
    duplicates = result["near_duplicates"]
    assert duplicates["n_families"] >= 80
    assert duplicates["n_cross_label_families"] >= 5
    cross = {
        frozenset(member["file"] for member in duplicates["families"][number]["members"])
        for number in duplicates["cross_label_families"]
    }
    assert frozenset({"benign/benign (433).png", "malignant/malignant (145).png"}) in cross
    assert result["masks"]["counts"]["several_masks"] == 16
    assert result["masks"]["counts"]["missing_on_lesion_image"] == 0
    colour = files(result["overlays"]["colour"]["flagged"])
    assert "benign/benign (277).png" in colour and len(colour) >= 8
    assert result["overlays"]["calipers_text"]["n_flagged"] >= 100


@pytest.mark.real_data
def test_monuseg_audit_reports_xml_agreement_and_skips_overlay_checks(shared_datasets) -> None:
    from utils.audit import audit_dataset
    from utils.datasets import read_monuseg

    records = [
        r for r in read_monuseg(shared_datasets / "monuseg") if "annotation_xml" in r.metadata
    ]
    report = audit_dataset(records)
    agreement = report["annotation_xml_vs_mask"]
    assert agreement["n_images"] == 4
    assert agreement["mean_dice"] >= 0.998
    assert report["overlays"]["applicable"] is False
