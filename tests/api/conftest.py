"""Fixtures of the API tests: tiny model bundles, apps over them, and test images."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from api.settings import ApiSettings
from tests.utils.inference.test_bundle import save_classifier_bundle, save_segmenter_bundle

SEGMENTER = "ultrasound_segmenter"
CLASSIFIER = "ultrasound_classifier"


@pytest.fixture(scope="session")
def tiny_models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A models folder with a tiny (untrained) segmenter and classifier bundle."""
    models_dir = tmp_path_factory.mktemp("api_models")
    save_segmenter_bundle(models_dir, SEGMENTER)
    save_classifier_bundle(models_dir, CLASSIFIER)
    return models_dir


@pytest.fixture(scope="session")
def segmenter_only_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A models folder with the tiny segmenter alone (no classifier installed)."""
    models_dir = tmp_path_factory.mktemp("api_models_segmenter_only")
    save_segmenter_bundle(models_dir, SEGMENTER)
    return models_dir


def make_client(models_dir: Path, **settings: object) -> TestClient:
    """A test client of an app over ``models_dir`` (enter it to run the lifespan)."""
    return TestClient(create_app(ApiSettings(models_dir=models_dir, **settings)))


@pytest.fixture(scope="session")
def client(tiny_models_dir: Path) -> Iterator[TestClient]:
    """The app over both tiny models, started (lifespan run) once for the session."""
    with make_client(tiny_models_dir) as started:
        yield started


def png_bytes(pixels: np.ndarray) -> bytes:
    """PNG-encoded bytes of a uint8 array."""
    return cv2.imencode(".png", pixels)[1].tobytes()


@pytest.fixture(scope="session")
def lesion_png() -> bytes:
    """A 48 x 64 speckle image with a dark oval, as PNG bytes."""
    rng = np.random.default_rng(7)
    image = rng.gamma(2.0, 50.0, size=(48, 64)).clip(0, 255)
    yy, xx = np.mgrid[:48, :64]
    image[((yy - 24) / 10) ** 2 + ((xx - 32) / 14) ** 2 <= 1] *= 0.25
    return png_bytes(image.astype(np.uint8))
