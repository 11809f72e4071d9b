"""Fixtures of the whole-slide tests: small synthetic slides and tiny model bundles.

The models are untrained pipeline fixtures (their scores mean nothing); the tests check
the plumbing: tiles in the right place, averages, areas, files.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np
import pytest
from scipy import ndimage

from utils.model_card import save_model_bundle
from utils.models.classification import build_classifier
from utils.models.nuclei import build_nuclei_model
from utils.wsi.synthetic import write_synthetic_slide

SLIDE_W, SLIDE_H, SLIDE_MPP = 1600, 1200, 0.5
PATCH_PX, PATCH_MPP = 32, 2.0


@pytest.fixture(scope="session")
def slide_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("slides")


@pytest.fixture(scope="session")
def synthetic_slide(slide_dir: Path) -> Path:
    return write_synthetic_slide(slide_dir / "synthetic.tif", SLIDE_W, SLIDE_H, mpp=SLIDE_MPP)


@pytest.fixture(scope="session")
def slide_without_mpp(slide_dir: Path) -> Path:
    return write_synthetic_slide(slide_dir / "no_mpp.tif", 800, 600, mpp=None, levels=2)


@pytest.fixture(scope="session")
def blank_slide(slide_dir: Path) -> Path:
    return write_synthetic_slide(slide_dir / "blank.tif", 800, 600, mpp=0.5, blank=True)


@pytest.fixture(scope="session")
def corrupt_slide(slide_dir: Path, synthetic_slide: Path) -> Path:
    """A TIFF header followed by garbage: the file claims to be a slide."""
    data = synthetic_slide.read_bytes()
    path = slide_dir / "corrupt.svs"
    path.write_bytes(data[:16] + bytes(range(256)) * 8)
    return path


def _save_classifier(models_dir: Path, name: str, shape: tuple[int, int, int], **card) -> None:
    keras.utils.set_random_seed(0)
    model = build_classifier("compact_cnn", input_shape=shape, num_classes=2, base_filters=4)
    full_card = {
        "task": "classification",
        "architecture": "compact_cnn",
        "input_shape": list(shape),
        "class_names": ["normal", "tumor"],
        "version": "test",
        **card,
    }
    save_model_bundle(model, name, full_card, models_dir=models_dir)


@pytest.fixture(scope="session")
def models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Tiny untrained bundles: an RGB patch classifier and a grayscale one (wrong input)."""
    folder = tmp_path_factory.mktemp("models")
    _save_classifier(folder, "tiny_patch", (PATCH_PX, PATCH_PX, 3), mpp=PATCH_MPP)
    _save_classifier(folder, "tiny_gray", (PATCH_PX, PATCH_PX, 1))
    return folder


@pytest.fixture(scope="session")
def nuclei_models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An untrained ``nuclei_segmenter`` bundle (64-px tiles at 2 µm/px) and a tile classifier.

    Loaded through the real ``utils.histo.nuclei.NucleiSegmenter``, so the whole-slide
    code is tested against the real nuclei interface; its maps mean nothing.
    """
    folder = tmp_path_factory.mktemp("nuclei_models")
    keras.utils.set_random_seed(0)
    model = build_nuclei_model("nuclei_unet", input_shape=(64, 64, 3), base_filters=4, depth=2)
    card = {
        "task": "segmentation",
        "subtask": "nuclei_instances",
        "architecture": "nuclei_unet",
        "input_shape": [64, 64, 3],
        "postprocess": {},
        "training_mpp": PATCH_MPP,
        "version": "test",
    }
    save_model_bundle(model, "nuclei_segmenter", card, models_dir=folder)
    _save_classifier(folder, "tiny_patch", (PATCH_PX, PATCH_PX, 3), mpp=PATCH_MPP)
    return folder


@dataclass
class FakeNucleiResult:
    foreground: np.ndarray
    instances: np.ndarray
    count: int


class ThresholdNucleiSegmenter:
    """A stand-in with the NucleiSegmenter interface: dark purple blobs are nuclei.

    Deterministic and exact on the synthetic slide's flat-coloured nuclei, so the
    scorer's arithmetic can be checked against known counts.
    """

    def __init__(self, tile_px: int = 64, mpp: float = 0.5) -> None:
        self.input_shape = (tile_px, tile_px, 3)
        self.card = {"name": "threshold_nuclei", "mpp": mpp, "input_shape": [tile_px] * 2 + [3]}

    def segment_batch(self, tiles: np.ndarray, mpp: float | None = None) -> list[FakeNucleiResult]:
        results = []
        for tile in tiles:
            foreground = tile[..., 1] < 100
            instances, count = ndimage.label(foreground)
            results.append(FakeNucleiResult(foreground, instances, count))
        return results
