from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.utils.wsi.fixtures import SLIDE_H, SLIDE_W, ThresholdNucleiSegmenter
from utils.errors import ConfigError, NoTissueError
from utils.wsi.pipeline import WsiOptions, analyse_slide
from utils.wsi.reader import open_slide
from utils.wsi.scorers import NucleiScorer, load_scorer
from utils.wsi.synthetic import TISSUE_ELLIPSES


@pytest.fixture(scope="module")
def nuclei_result(synthetic_slide: Path):
    scorer = NucleiScorer(ThresholdNucleiSegmenter(tile_px=64, mpp=0.5))
    calls: list[tuple[int, int]] = []
    with open_slide(synthetic_slide) as slide:
        result = analyse_slide(
            slide,
            scorer,
            WsiOptions(threshold=0.12, heatmap_max_side=400),
            progress=lambda *a: calls.append(a),
        )
    return result, calls


def test_progress_reaches_every_scored_tile(nuclei_result) -> None:
    result, calls = nuclei_result
    assert calls[0] == (0, result.tiles_scored)
    assert calls[-1] == (result.tiles_scored, result.tiles_scored)
    assert [done for done, _ in calls] == sorted(done for done, _ in calls)
    assert 0 < result.tiles_scored < result.tiles_total  # background skipped


def test_dense_ellipse_is_the_detected_region(nuclei_result) -> None:
    result, _ = nuclei_result
    assert result.maps.shape == (3, 300, 400)
    cellularity = result.map("cellularity")
    sx, sy = result.tissue.downsample
    (cx1, cy1, *_), (cx2, cy2, *_) = TISSUE_ELLIPSES
    sparse = cellularity[round(cy1 * SLIDE_H / sy), round(cx1 * SLIDE_W / sx)]
    dense = cellularity[round(cy2 * SLIDE_H / sy), round(cx2 * SLIDE_W / sx)]
    assert dense > 2 * sparse  # 5x more nuclei drawn; touching ones merge into one
    assert len(result.summary.regions) >= 1
    top = result.summary.regions[0]
    x, y, w, h = top.bbox
    assert x < cx2 * SLIDE_W < x + w and y < cy2 * SLIDE_H < y + h
    assert 0 < result.summary.burden_percent < 100


def test_results_dict_is_complete(nuclei_result) -> None:
    result, _ = nuclei_result
    data = result.to_dict()
    assert data["slide"]["mpp"] == 0.5 and data["model"] == "threshold_nuclei"
    assert data["tiles"]["scored"] + data["tiles"]["skipped_background"] == data["tiles"]["total"]
    assert set(data["maps"]) == {"cellularity", "nuclear_fraction", "pleomorphism"}
    assert data["maps"]["cellularity"]["unit"] == "nuclei/mm²"
    assert len(data["regions"]) == len(result.summary.regions)
    with pytest.raises(ConfigError, match="No map 'tumour'"):
        result.map("tumour")


def test_classifier_pipeline_uses_the_card_mpp(synthetic_slide: Path, models_dir: Path) -> None:
    scorer = load_scorer("tiny_patch", models_dir=models_dir)
    with open_slide(synthetic_slide) as slide:
        result = analyse_slide(slide, scorer, WsiOptions(heatmap_max_side=200))
    assert result.target_mpp == 2.0
    assert result.options["tile_level0_px"] == 128  # 32 px at 2 µm over 0.5 µm pixels
    probabilities = result.map("p_tumor")[result.tissue.mask]
    assert np.all((probabilities[np.isfinite(probabilities)] >= 0) & (probabilities <= 1))


def test_blank_slide_has_no_tissue(blank_slide: Path, models_dir: Path) -> None:
    scorer = load_scorer("tiny_patch", models_dir=models_dir)
    with open_slide(blank_slide) as slide, pytest.raises(NoTissueError, match="No tissue"):
        analyse_slide(slide, scorer)


def test_no_tile_with_enough_tissue(synthetic_slide: Path) -> None:
    scorer = NucleiScorer(ThresholdNucleiSegmenter(tile_px=64, mpp=0.5))
    with open_slide(synthetic_slide) as slide, pytest.raises(NoTissueError, match="No tile"):
        analyse_slide(slide, scorer, WsiOptions(min_tissue=1.0, target_mpp=8.0))


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (WsiOptions(min_tissue=1.5), "min tissue"),
        (WsiOptions(sigma_um=-1.0), "sigma"),
        (WsiOptions(heatmap_max_side=4), "heatmap side"),
    ],
)
def test_bad_options(synthetic_slide: Path, options: WsiOptions, message: str) -> None:
    scorer = NucleiScorer(ThresholdNucleiSegmenter())
    with open_slide(synthetic_slide) as slide, pytest.raises(ConfigError, match=message):
        analyse_slide(slide, scorer, options)


CMU1 = "wsi/CMU-1-Small-Region.svs"


@pytest.mark.real_data
def test_real_aperio_slide_end_to_end(shared_datasets: Path, models_dir: Path) -> None:
    scorer = load_scorer("tiny_patch", models_dir=models_dir)
    with open_slide(shared_datasets / CMU1) as slide:
        result = analyse_slide(slide, scorer, WsiOptions(threshold=0.0))
    # The tissue strip covers about a third of the 1.1 x 1.5 mm region.
    assert 0.4 < result.summary.tissue_area_mm2 < 0.8
    assert 0 < result.tiles_scored < result.tiles_total
    # Threshold 0 detects all scored tissue: the burden is the scored share of it.
    assert 90 < result.summary.burden_percent <= 100


@pytest.mark.real_data
@pytest.mark.slow
def test_shipped_nuclei_model_on_the_real_slide(shared_datasets: Path) -> None:
    from utils.inference.bundle import available_bundles

    if "nuclei_segmenter" not in available_bundles():
        pytest.skip("the nuclei_segmenter bundle is not installed in saved_models/")
    scorer = load_scorer("nuclei_segmenter")
    with open_slide(shared_datasets / CMU1) as slide:
        result = analyse_slide(slide, scorer)
    stats = result.map_statistics()
    # H&E tissue at 20x-40x holds thousands of nuclei per mm².
    assert 500 < stats["cellularity"]["median"] < 20000
    assert 0.02 < stats["nuclear_fraction"]["median"] < 0.8
