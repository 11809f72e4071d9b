from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from tests.utils.inference.test_bundle import save_segmenter_bundle
from tests.utils.wsi.fixtures import PATCH_MPP, PATCH_PX, ThresholdNucleiSegmenter
from utils.errors import ConfigError, ModelError
from utils.histo.nuclei import NucleiSegmenter
from utils.wsi.scorers import ClassifierScorer, NucleiScorer, load_scorer


def test_classifier_scorer_maps_the_tumour_probability(models_dir: Path) -> None:
    scorer = load_scorer("tiny_patch", models_dir=models_dir)
    assert isinstance(scorer, ClassifierScorer)
    assert scorer.tile_px == PATCH_PX and scorer.mpp == PATCH_MPP
    assert scorer.detection_map == "p_tumor"
    tiles = np.random.default_rng(0).integers(0, 255, (5, PATCH_PX, PATCH_PX, 3), np.uint8)
    scores = scorer.score(tiles, PATCH_MPP)
    assert scores.shape == (5, 1, 1, 1)
    expected = scorer._classifier.predict_probabilities(tiles)[:, 1]
    assert np.allclose(scores[:, 0, 0, 0], expected)
    assert np.all((scores >= 0) & (scores <= 1))


def test_positive_class_can_be_chosen(models_dir: Path) -> None:
    scorer = load_scorer("tiny_patch", models_dir=models_dir, positive_class="normal")
    assert scorer.detection_map == "p_normal"
    with pytest.raises(ConfigError, match="not a class of tiny_patch; choose one of normal, tumor"):
        load_scorer("tiny_patch", models_dir=models_dir, positive_class="stroma")


def test_model_with_the_wrong_input_size_is_refused(models_dir: Path) -> None:
    with pytest.raises(ModelError, match=r"32 x 32 x 1; whole-slide tiles are square RGB"):
        load_scorer("tiny_gray", models_dir=models_dir)


def test_segmentation_bundle_is_refused(tmp_path: Path) -> None:
    save_segmenter_bundle(tmp_path, "tiny_segmenter")
    with pytest.raises(ModelError, match="segmentation-task bundle"):
        load_scorer("tiny_segmenter", models_dir=tmp_path)


def test_missing_model_lists_what_is_there(models_dir: Path) -> None:
    with pytest.raises(ModelError, match=r"Available bundles.*tiny_patch"):
        load_scorer("nuclei_segmenter", models_dir=models_dir)


def test_nuclei_scorer_counts_cellularity_fraction_and_pleomorphism() -> None:
    scorer = NucleiScorer(ThresholdNucleiSegmenter(tile_px=64, mpp=0.5))
    assert scorer.tile_px == 64 and scorer.mpp == 0.5
    tile = np.full((64, 64, 3), 230, np.uint8)
    tile[2:6, 2:6] = (90, 50, 140)  # 16 px nucleus, top-left cell
    tile[2:10, 20:28] = (90, 50, 140)  # 64 px, second cell
    tile[40:44, 40:44] = (90, 50, 140)  # 16 px, cell (2, 2)
    empty = np.full((64, 64, 3), 230, np.uint8)
    scores = scorer.score(np.stack([tile, empty]), mpp=0.5)
    assert scores.shape == (2, 3, 4, 4)
    cell_mm2 = (16 * 0.5 / 1000) ** 2  # 16-px cells at 0.5 µm/px
    cellularity = scores[0, 0]
    assert cellularity[0, 0] == pytest.approx(1 / cell_mm2)
    assert cellularity[0, 1] == pytest.approx(1 / cell_mm2)
    assert cellularity[2, 2] == pytest.approx(1 / cell_mm2)
    assert cellularity.sum() == pytest.approx(3 / cell_mm2)
    assert scores[0, 1, 0, 0] == pytest.approx(16 / 256)
    assert scores[0, 1, 0, 1] == pytest.approx(64 / 256)
    areas = np.array([16.0, 64.0, 16.0])
    assert np.all(scores[0, 2] == pytest.approx(areas.std() / areas.mean()))
    assert np.all(scores[1, 0] == 0) and np.all(scores[1, 1] == 0)
    assert np.isnan(scores[1, 2]).all()  # no nuclei: no pleomorphism value


def test_nuclei_scorer_refuses_non_rgb_models() -> None:
    segmenter = ThresholdNucleiSegmenter()
    segmenter.input_shape = (64, 64, 1)
    with pytest.raises(ModelError, match="square RGB"):
        NucleiScorer(segmenter)


def test_real_nuclei_interface_through_load_scorer(nuclei_models_dir: Path) -> None:
    scorer = load_scorer("nuclei_segmenter", models_dir=nuclei_models_dir)
    assert isinstance(scorer, NucleiScorer)
    assert scorer.tile_px == 64 and scorer.mpp == PATCH_MPP
    tiles = np.random.default_rng(1).integers(0, 255, (3, 64, 64, 3), np.uint8)
    scores = scorer.score(tiles, PATCH_MPP)
    assert scores.shape == (3, 3, 4, 4)
    fraction = scores[:, 1]
    assert np.all((fraction >= 0) & (fraction <= 1))
    segmenter = scorer._segmenter
    expected = [result.count for result in segmenter.segment_batch(tiles, mpp=PATCH_MPP)]
    cell_mm2 = (16 * PATCH_MPP / 1000) ** 2
    counted = scores[:, 0].sum(axis=(1, 2)) * cell_mm2
    assert np.allclose(counted, expected)


def test_slide_scoring_skips_the_cards_test_time_flips(
    nuclei_models_dir: Path, tmp_path: Path
) -> None:
    for path in nuclei_models_dir.glob("nuclei_segmenter.*"):
        shutil.copy(path, tmp_path / path.name)
    card_path = tmp_path / "nuclei_segmenter.json"
    card = json.loads(card_path.read_text())
    card_path.write_text(json.dumps({**card, "test_time_flips": True}))
    assert NucleiSegmenter.from_bundle("nuclei_segmenter", models_dir=tmp_path).test_time_flips
    scorer = load_scorer("nuclei_segmenter", models_dir=tmp_path)
    assert isinstance(scorer, NucleiScorer) and not scorer._segmenter.test_time_flips
