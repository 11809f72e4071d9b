from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from utils.errors import ConfigError, ImageDimensionError
from utils.evaluation.panels import (
    PREDICTION_COLOUR,
    TRUTH_COLOUR,
    PanelCase,
    overlay_mask,
    render_segmentation_panels,
    save_segmentation_panels,
)


def _case(height: int, width: int, title: str = "") -> PanelCase:
    truth = np.zeros((height, width), bool)
    truth[10:30, 10:30] = True
    predicted = np.zeros((height, width), bool)
    predicted[15:35, 12:32] = True
    return PanelCase(np.full((height, width), 90, np.uint8), truth, predicted, title)


def test_overlay_fills_and_outlines_the_mask() -> None:
    mask = np.zeros((40, 40), bool)
    mask[10:30, 10:30] = True
    drawn = overlay_mask(np.zeros((40, 40), np.uint8), mask, TRUTH_COLOUR)
    assert drawn.shape == (40, 40, 3) and drawn.dtype == np.uint8
    assert tuple(drawn[20, 20]) == tuple(round(0.3 * c) for c in TRUTH_COLOUR)
    assert tuple(drawn[10, 20]) == TRUTH_COLOUR  # outline
    assert not drawn[0, 0].any()
    outline_only = overlay_mask(
        np.zeros((40, 40, 3), np.uint8), mask, PREDICTION_COLOUR, fill=False
    )
    assert not outline_only[20, 20].any()
    with pytest.raises(ImageDimensionError, match="differs from image shape"):
        overlay_mask(np.zeros((40, 41), np.uint8), mask, TRUTH_COLOUR)


def test_panel_has_one_row_per_case_and_three_tiles(tmp_path: Path) -> None:
    figure = render_segmentation_panels(
        [_case(40, 80, "Best"), _case(60, 60, "Worst")], tile_height=64
    )
    # widest tile: 80 px wide image at 64 px height -> 128 px, three columns plus margins
    assert figure.size[0] == 3 * 128 + 4 * 8
    assert figure.size[1] > 2 * 64
    path = save_segmentation_panels([_case(40, 40)], tmp_path / "figs" / "cases.png")
    with Image.open(path) as saved:
        assert saved.format == "PNG" and saved.mode == "RGB"


def test_panel_rejects_bad_input() -> None:
    with pytest.raises(ConfigError, match="at least one case"):
        render_segmentation_panels([])
    bad = PanelCase(
        np.zeros((10, 10), np.uint8), np.zeros((10, 11), bool), np.zeros((10, 10), bool)
    )
    with pytest.raises(ImageDimensionError, match="true_mask shape"):
        render_segmentation_panels([bad])
    with pytest.raises(ImageDimensionError, match="uint8"):
        render_segmentation_panels(
            [PanelCase(np.zeros((10, 10)), np.zeros((10, 10), bool), np.zeros((10, 10), bool))]
        )
