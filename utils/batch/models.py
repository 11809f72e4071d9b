"""Predictors loaded once per worker process and reused by every chunk it runs.

Dask runs each chunk as a function call in a long-lived worker process; this
module-level cache, keyed by role, models folder and bundle, survives between calls,
so a worker loads each model on its first chunk only. :func:`load_count` lets tests
check that.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from utils.errors import ModelUnavailableError
from utils.explain import CamExplainer
from utils.inference.bundle import available_bundles
from utils.inference.classifier import LesionClassifier
from utils.inference.segmenter import LesionSegmenter

__all__ = ["classifier", "clear", "explainer", "load_count", "require_bundle", "segmenter"]

_cache: dict[tuple[str, str, str], Any] = {}
_loads = 0
_lock = threading.Lock()


def require_bundle(models_dir: Path, bundle: str, role: str) -> None:
    """Fail early, before any work is sent out, when a needed bundle is missing.

    Raises:
        ModelUnavailableError: ``bundle`` is not a complete bundle in ``models_dir``.
    """
    available = available_bundles(models_dir)
    if bundle not in available:
        option = "--" + role.replace("_", "-")
        raise ModelUnavailableError(
            f"The {role} bundle {bundle!r} is not installed in {models_dir} (available: "
            f"{', '.join(available) or 'none'}); install it or pass {option} NAME."
        )


def _cached(key: tuple[str, str, str], load: Any, *, count: bool = True) -> Any:
    global _loads
    with _lock:  # a worker with several threads still loads each model once
        if key not in _cache:
            _cache[key] = load()
            _loads += count
        return _cache[key]


def segmenter(models_dir: Path, bundle: str) -> LesionSegmenter:
    """This process's segmenter from ``models_dir/bundle`` (loaded on first use)."""
    return _cached(
        ("segmenter", str(models_dir), bundle),
        lambda: LesionSegmenter.from_bundle(bundle, models_dir=models_dir),
    )


def classifier(models_dir: Path, bundle: str) -> LesionClassifier:
    """This process's classifier from ``models_dir/bundle`` (loaded on first use)."""
    return _cached(
        ("classifier", str(models_dir), bundle),
        lambda: LesionClassifier.from_bundle(bundle, models_dir=models_dir),
    )


def wsi_scorer(models_dir: Path, bundle: str) -> Any:
    """This process's whole-slide tile scorer (nuclei or classifier bundle), loaded once."""
    from utils.wsi.scorers import load_scorer

    key = ("wsi", str(models_dir), bundle)
    return _cached(key, lambda: load_scorer(bundle, models_dir=models_dir))


def explainer(predictor: LesionSegmenter | LesionClassifier) -> CamExplainer:
    """This process's CAM explainer of a cached predictor's model."""
    key = ("explainer", str(id(predictor.cam_model)), "")
    return _cached(key, lambda: CamExplainer(predictor.cam_model), count=False)


def load_count() -> int:
    """How many model bundles this process has loaded (explainers not counted)."""
    return _loads


def clear() -> None:
    """Forget every cached model (tests; a worker never needs to)."""
    global _loads
    with _lock:
        _cache.clear()
        _loads = 0
