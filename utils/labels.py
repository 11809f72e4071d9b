"""Class names of the ultrasound tasks and their integer encoding (TensorFlow-free).

Kept apart from :mod:`utils.pipelines` (which needs TensorFlow) so that training on a
JAX-only machine and the inference code can use the same encoding.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

import numpy as np

from utils.errors import ConfigError

#: The ultrasound classifier's classes, in output (index) order.
ULTRASOUND_CLASSES: Final[tuple[str, ...]] = ("normal", "benign", "malignant")


def encode_labels(
    labels: Sequence[str | None], class_names: Sequence[str] = ULTRASOUND_CLASSES
) -> np.ndarray:
    """Turn class names into class indices (position in ``class_names``).

    Args:
        labels: One class name per example.
        class_names: The allowed names, in index order.

    Returns:
        int64 array of shape ``(N,)``.

    Raises:
        ConfigError: A label is not in ``class_names`` (or is ``None``), or
            ``class_names`` is empty or has duplicates.
    """
    if not class_names or len(set(class_names)) != len(class_names):
        raise ConfigError(
            f"class_names must be non-empty and without duplicates, got {list(class_names)}."
        )
    index_of = {name: index for index, name in enumerate(class_names)}
    unknown = sorted({str(label) for label in labels if label not in index_of})
    if unknown:
        raise ConfigError(
            f"Unknown class label(s) {', '.join(map(repr, unknown))}; "
            f"allowed: {', '.join(class_names)}."
        )
    return np.array([index_of[label] for label in labels], dtype=np.int64)
