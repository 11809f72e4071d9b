from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.utils.wsi.fixtures import SLIDE_H, SLIDE_W
from utils.errors import NoTissueError
from utils.wsi.reader import open_slide
from utils.wsi.synthetic import TISSUE_ELLIPSES
from utils.wsi.tissue import detect_tissue


def _ellipses(height: int, width: int) -> np.ndarray:
    yy, xx = np.mgrid[:height, :width]
    truth = np.zeros((height, width), bool)
    for cx, cy, rx, ry, _ in TISSUE_ELLIPSES:
        truth |= ((xx / width - cx) / rx) ** 2 + ((yy / height - cy) / ry) ** 2 <= 1
    return truth


def test_detects_the_tissue_ellipses(synthetic_slide: Path) -> None:
    with open_slide(synthetic_slide) as slide:
        thumb = slide.thumbnail(400)
    tissue = detect_tissue(thumb, (SLIDE_W / 400, SLIDE_H / 300))
    truth = _ellipses(300, 400)
    iou = (tissue.mask & truth).sum() / (tissue.mask | truth).sum()
    assert iou > 0.95
    assert tissue.fraction == pytest.approx(truth.mean(), rel=0.05)
    # 1600 x 1200 px at 0.5 µm/px is 0.48 mm²; the ellipses cover their share of it.
    assert tissue.area_mm2(0.5) == pytest.approx(0.48 * truth.mean(), rel=0.05)


def test_fills_holes_and_drops_dust() -> None:
    image = np.full((200, 200, 3), 235, np.uint8)
    image[40:160, 40:160] = (220, 120, 180)  # tissue
    image[90:110, 90:110] = 235  # a lumen: still tissue for the burden
    image[5:7, 5:7] = (150, 40, 120)  # a speck of dust
    tissue = detect_tissue(image, (1.0, 1.0))
    assert tissue.mask[100, 100]
    assert not tissue.mask[5, 5]
    assert tissue.fraction_in(40, 40, 120, 120) == pytest.approx(1.0, abs=0.02)
    assert tissue.fraction_in(0, 0, 30, 30) == 0.0


@pytest.mark.parametrize(
    "image",
    [
        np.full((100, 100, 3), 240, np.uint8),
        np.zeros((100, 100, 3), np.uint8),
        np.random.default_rng(0)
        .integers(225, 240, (100, 100, 1))
        .repeat(3, axis=2)
        .astype(np.uint8),
    ],
    ids=["white", "black", "grey-noise"],
)
def test_no_tissue_is_a_clear_error(image: np.ndarray) -> None:
    with pytest.raises(NoTissueError, match="No tissue found"):
        detect_tissue(image, (1.0, 1.0))


def test_dust_alone_is_no_tissue() -> None:
    image = np.full((300, 300, 3), 235, np.uint8)
    image[5:7, 5:7] = (150, 40, 120)
    with pytest.raises(NoTissueError, match="specks"):
        detect_tissue(image, (1.0, 1.0))
