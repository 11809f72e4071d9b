"""What every bundle-backed predictor shares: card checks, one compiled forward, loading."""

from __future__ import annotations

import hashlib
from functools import cached_property
from pathlib import Path
from typing import Any, ClassVar, Self

import keras
import numpy as np

from utils.errors import ConfigError
from utils.inference.bundle import card_input_shape, load_bundle, validate_card
from utils.inference.compiled import compile_forward
from utils.paths import SAVED_MODELS_DIR


def weights_fingerprint(model: keras.Model) -> str:
    """A short SHA-256 of a model's weights (shapes and values), to tell two models apart."""
    digest = hashlib.sha256()
    for weights in model.get_weights():
        array = np.ascontiguousarray(weights, dtype=np.float32)
        digest.update(str(array.shape).encode())
        digest.update(array.tobytes())
    return digest.hexdigest()[:16]


class BundlePredictor:
    """Base of :class:`LesionSegmenter` and :class:`LesionClassifier`.

    Subclasses set :attr:`TASK`, :attr:`DEFAULT_BUNDLE` and :attr:`DEFAULT_BATCH_SIZE`, and
    may override :meth:`_network` to compile a different head (e.g. the logits).
    """

    TASK: ClassVar[str]
    DEFAULT_BUNDLE: ClassVar[str]
    DEFAULT_BATCH_SIZE: ClassVar[int]

    def __init__(
        self,
        model: keras.Model,
        card: dict[str, Any],
        *,
        batch_size: int | None = None,
        warm_up: bool = True,
    ) -> None:
        """Check the card and compile the forward pass once.

        Args:
            model: The bundle's model, taking (N, H, W, C) floats in [0, 1].
            card: Its model card (see :mod:`utils.inference.bundle`).
            batch_size: Images per forward pass (default: the subclass's).
            warm_up: Trace the compiled function now, so the first image is not slow.

        Raises:
            ModelError: The card is not a valid card of this predictor's task.
            ConfigError: ``batch_size`` is not a positive integer.
        """
        batch_size = self.DEFAULT_BATCH_SIZE if batch_size is None else batch_size
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ConfigError(f"batch_size must be a positive integer; got {batch_size!r}.")
        self.card = validate_card(card, task=self.TASK)
        self.model = model
        self.input_shape = card_input_shape(card)
        self.batch_size = batch_size
        self._forward = compile_forward(self._network(model), self.input_shape)
        if warm_up:
            self._forward(np.zeros((1, *self.input_shape), dtype=np.float32))

    def _network(self, model: keras.Model) -> keras.Model:
        """The model whose forward pass is compiled (the model itself by default)."""
        return model

    @property
    def cam_model(self) -> keras.Model:
        """The model a CAM explains (the model itself unless a subclass says otherwise)."""
        return self.model

    @cached_property
    def weights_fingerprint(self) -> str:
        """:func:`weights_fingerprint` of the model (computed once)."""
        return weights_fingerprint(self.model)

    @classmethod
    def from_bundle(
        cls,
        name_or_path: str | Path,
        *,
        models_dir: Path | str = SAVED_MODELS_DIR,
        **options: Any,
    ) -> Self:
        """Load a bundle by name or ``.keras`` path (see :func:`load_bundle`).

        Args:
            name_or_path: Bundle name in ``models_dir`` or a ``.keras`` path.
            models_dir: Folder of the named bundles.
            **options: ``batch_size`` and ``warm_up`` of the constructor.

        Raises:
            ModelError: The bundle is missing, invalid or of another task.
        """
        model, card = load_bundle(name_or_path, models_dir=models_dir, task=cls.TASK)
        return cls(model, card, **options)

    @classmethod
    def default(cls, **options: Any) -> Self:
        """The shipped bundle of this task."""
        return cls.from_bundle(cls.DEFAULT_BUNDLE, **options)
