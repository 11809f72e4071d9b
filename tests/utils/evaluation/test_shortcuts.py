from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from tests.utils.inference.test_bundle import (
    loaded_image,
    save_classifier_bundle,
    save_segmenter_bundle,
)
from tests.utils.test_audit import scene, with_calipers_and_text
from utils.errors import ConfigError
from utils.evaluate import main
from utils.evaluation.shortcuts import (
    ShortcutRow,
    mark_mask,
    measure_shortcuts,
    remove_marks,
    summarise_shortcuts,
)
from utils.explain import CamExplainer
from utils.inference.classifier import LesionClassifier
from utils.inference.segmenter import LesionSegmenter


@pytest.fixture
def marked() -> np.ndarray:
    return with_calipers_and_text(scene(np.random.default_rng(0)))


def test_mark_mask_covers_the_crosses_and_nothing_on_plain_tissue(marked: np.ndarray) -> None:
    marks = mark_mask(marked)
    assert marks[70, 80] and marks[120, 170]  # centres of the two crosses
    assert 0.005 < marks.mean() < 0.2
    assert not mark_mask(scene(np.random.default_rng(0)), dilation_px=0)[70, 80]


def test_dilation_grows_the_mask(marked: np.ndarray) -> None:
    assert mark_mask(marked, dilation_px=4).sum() > mark_mask(marked, dilation_px=0).sum()


@pytest.mark.parametrize(
    ("grey", "dilation", "message"),
    [
        (np.zeros((8, 8, 3), np.uint8), 1, r"2-D uint8 grey image; received uint8 \(8, 8, 3\)"),
        (np.zeros((8, 8), np.float32), 1, r"2-D uint8 grey image; received float32"),
        (np.zeros((8, 8), np.uint8), -1, "dilation_px must be >= 0; received -1"),
    ],
)
def test_mark_mask_rejects_bad_input(grey: np.ndarray, dilation: int, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        mark_mask(grey, dilation)


def test_removing_marks_restores_the_tissue_level(marked: np.ndarray) -> None:
    marks = mark_mask(marked)
    cleaned = remove_marks(marked, marks)
    original = scene(np.random.default_rng(0))
    error_before = np.abs(marked.astype(int) - original)[marks].mean()
    error_after = np.abs(cleaned.astype(int) - original)[marks].mean()
    assert error_after < error_before / 3
    np.testing.assert_array_equal(cleaned[~marks], marked[~marks])


def test_remove_marks_rejects_a_mask_of_another_size(marked: np.ndarray) -> None:
    with pytest.raises(ConfigError, match=r"marks \(4, 4\) must match"):
        remove_marks(marked, np.zeros((4, 4), bool))


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory):
    models_dir = tmp_path_factory.mktemp("models")
    save_segmenter_bundle(models_dir)
    save_classifier_bundle(models_dir)
    segmenter = LesionSegmenter.from_bundle("tiny_segmenter", models_dir=models_dir)
    classifier = LesionClassifier.from_bundle("tiny_classifier", models_dir=models_dir)
    return (
        models_dir,
        (segmenter, CamExplainer(segmenter.model)),
        (
            classifier,
            CamExplainer(classifier.model),
        ),
    )


def test_measure_shortcuts_fills_every_field_for_both_models(marked: np.ndarray, models) -> None:
    _, segmenter, classifier = models
    row = measure_shortcuts(
        loaded_image(marked), "a.png", segmenter=segmenter, classifier=classifier
    )
    assert row is not None
    assert 0.0 <= row.segmenter_cam_on_marks <= 1.0
    assert 0.0 <= row.classifier_cam_on_marks <= 1.0
    assert 0.0 <= row.segmenter_dice_after_removal <= 1.0
    assert row.classifier_class in ("normal", "benign", "malignant")
    assert -1.0 <= row.classifier_probability_change <= 1.0
    assert row.mark_area_fraction == pytest.approx(mark_mask(marked).mean())


def test_images_without_marks_are_skipped(models) -> None:
    _, segmenter, _ = models
    plain = np.full((64, 64), 90, np.uint8)
    assert measure_shortcuts(loaded_image(plain), "p.png", segmenter=segmenter) is None


def test_summary_enrichment_and_flip_rate() -> None:
    rows = [
        ShortcutRow("a", 10, 0.1, 0.4, 1.0, 0.3, "benign", "benign", 0.1),
        ShortcutRow("b", 10, 0.1, 0.1, 0.5, 0.1, "benign", "malignant", -0.3),
    ]
    summary = summarise_shortcuts(rows, n_scanned=5)
    assert summary["n_with_marks"] == 2 and summary["n_scanned"] == 5
    assert summary["segmenter"]["enrichment"] == pytest.approx(2.5)
    assert summary["segmenter"]["share_of_images_cam_enriched_over_2x"] == 0.5
    assert summary["segmenter"]["mean_dice_before_vs_after_removal"] == 0.75
    assert summary["segmenter"]["share_changed_dice_below_0_9"] == 0.5
    assert summary["classifier"]["class_flip_rate_after_removal"] == 0.5
    assert summary["classifier"]["mean_abs_probability_change"] == pytest.approx(0.2)


def test_summary_without_a_classifier_says_so() -> None:
    rows = [ShortcutRow("a", 10, 0.1, 0.4, 1.0)]
    summary = summarise_shortcuts(rows, n_scanned=1)
    assert summary["classifier"] is None and summary["segmenter"] is not None


def test_summary_rejects_fewer_scanned_than_rows() -> None:
    with pytest.raises(ConfigError, match=r"n_scanned \(0\) cannot be below the rows \(1\)"):
        summarise_shortcuts([ShortcutRow("a", 1, 0.1)], n_scanned=0)


def _busi_folder(root: Path, marked: np.ndarray) -> Path:
    folder = root / "Dataset_BUSI_with_GT" / "benign"
    folder.mkdir(parents=True)
    for index in range(3):
        Image.fromarray(marked).save(folder / f"benign ({index + 1}).png")
        mask = np.zeros_like(marked)
        cv2.circle(mask, (120, 100), 20, 255, -1)
        Image.fromarray(mask).save(folder / f"benign ({index + 1})_mask.png")
    return root


def test_cli_writes_a_report(marked: np.ndarray, models, tmp_path: Path, monkeypatch) -> None:
    models_dir, _, _ = models
    data = _busi_folder(tmp_path / "busi", marked)
    out = tmp_path / "shortcuts.json"
    code = main(
        [
            "shortcuts",
            "--data",
            str(data),
            "--json",
            str(out),
            "--segmenter",
            str(models_dir / "tiny_segmenter.keras"),
            "--classifier",
            "none",
            "--limit",
            "2",
        ]
    )
    assert code == 0
    report = json.loads(out.read_text())
    assert report["n_with_marks"] == 2 and report["classifier"] is None
    assert report["models"]["segmenter"]


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--limit", "0"], "--limit must be a positive integer; got 0"),
        (["--segmenter", "none", "--classifier", "none"], "both 'none': nothing to measure"),
    ],
)
def test_cli_bad_options_exit_2(tmp_path: Path, capsys, extra: list[str], message: str) -> None:
    code = main(["shortcuts", "--data", str(tmp_path), "--json", str(tmp_path / "o.json"), *extra])
    assert code == 2
    assert message in capsys.readouterr().err
