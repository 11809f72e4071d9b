"""The models behind the API: loaded once, shared by every request, safe under concurrency.

Thread safety: FastAPI runs the (synchronous) endpoints in a thread pool. Each
predictor runs a forward pass compiled and traced once at load
(:func:`utils.inference.compiled.compile_forward`), which concurrent threads may call,
and :class:`~utils.explain.CamExplainer` builds its gradient graphs under its own lock.
A semaphore caps how many model runs proceed at once, so a burst of requests queues
instead of allocating one set of activations per request.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from api.settings import ApiSettings
from utils.errors import ModelError, ModelUnavailableError
from utils.explain import LESION_AREA, CamExplainer
from utils.inference.bundle import available_bundles
from utils.inference.classifier import LesionClassifier
from utils.inference.segmenter import LesionSegmenter
from utils.model_card import load_model_card

__all__ = ["ModelServices"]

logger = logging.getLogger(__name__)


@dataclass
class _Slot:
    """One model: the loaded predictor and its explainer, or why it is unavailable."""

    role: str
    bundle: str
    predictor: LesionSegmenter | LesionClassifier | None = None
    explainer: CamExplainer | None = None
    problem: str | None = None


@dataclass
class ModelServices:
    """The segmenter and the classifier of one app, loaded by :meth:`load`."""

    settings: ApiSettings
    _slots: dict[str, _Slot] = field(default_factory=dict)
    _load_lock: threading.Lock = field(default_factory=threading.Lock)
    _runs: threading.BoundedSemaphore = field(init=False)

    def __post_init__(self) -> None:
        self._runs = threading.BoundedSemaphore(self.settings.max_concurrent)

    def load(self) -> None:
        """Load both models once (idempotent); a missing or broken one is marked unavailable."""
        with self._load_lock:
            if self._slots:
                return
            specs = (
                ("segmenter", self.settings.segmenter_bundle, LesionSegmenter, LESION_AREA),
                ("classifier", self.settings.classifier_bundle, LesionClassifier, 0),
            )
            for role, bundle, predictor_class, warm_target in specs:
                self._slots[role] = self._load_slot(role, bundle, predictor_class, warm_target)

    def _load_slot(self, role: str, bundle: str, predictor_class: Any, warm_target: Any) -> _Slot:
        slot = _Slot(role, bundle)
        if bundle not in available_bundles(self.settings.models_dir):
            slot.problem = f"The {role} bundle {bundle!r} is not installed in the models folder."
            logger.warning("%s", slot.problem)
            return slot
        try:
            predictor = predictor_class.from_bundle(bundle, models_dir=self.settings.models_dir)
            explainer = CamExplainer(predictor.cam_model)
            # Build and trace the default CAM graph now, not in the first request.
            cam_shape = tuple(predictor.cam_model.input_shape[1:])
            explainer.explain(np.zeros(cam_shape, np.float32), warm_target)
        except ModelError as error:
            slot.problem = f"The {role} bundle {bundle!r} cannot be loaded: {error}"
            logger.error("%s", slot.problem)
            return slot
        slot.predictor, slot.explainer = predictor, explainer
        logger.info("Loaded the %s bundle %r.", role, bundle)
        return slot

    def _slot(self, role: str) -> _Slot:
        self.load()
        slot = self._slots[role]
        if slot.predictor is None:
            raise ModelUnavailableError(slot.problem or f"No {role} is installed.")
        return slot

    def segmenter(self) -> tuple[LesionSegmenter, CamExplainer]:
        """The segmenter and its explainer.

        Raises:
            ModelUnavailableError: No usable segmenter bundle is installed.
        """
        slot = self._slot("segmenter")
        return slot.predictor, slot.explainer  # type: ignore[return-value]

    def classifier(self) -> tuple[LesionClassifier, CamExplainer]:
        """The classifier and its explainer.

        Raises:
            ModelUnavailableError: No usable classifier bundle is installed.
        """
        slot = self._slot("classifier")
        return slot.predictor, slot.explainer  # type: ignore[return-value]

    def has(self, role: str) -> bool:
        """Whether the ``"segmenter"`` or ``"classifier"`` is loaded and usable."""
        self.load()
        return self._slots[role].predictor is not None

    def status(self) -> dict[str, dict[str, Any]]:
        """Per model: bundle name, whether it is loaded, and the problem when it is not."""
        self.load()
        return {
            role: {
                "bundle": slot.bundle,
                "loaded": slot.predictor is not None,
                "problem": slot.problem,
            }
            for role, slot in self._slots.items()
        }

    def cards(self) -> list[dict[str, Any]]:
        """The model cards of every complete bundle in the models folder."""
        models_dir = self.settings.models_dir
        cards = []
        for name in available_bundles(models_dir):
            try:
                cards.append(load_model_card(name, models_dir=models_dir))
            except ModelError as error:
                logger.warning("Skipping the model card %r: %s", name, error)
        return cards

    @contextmanager
    def run(self) -> Iterator[None]:
        """Hold one of the ``max_concurrent`` model-run slots."""
        with self._runs:
            yield
