"""The benchmark's input: a built-in example made 500 x 500 and encoded as PNG bytes."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from utils.errors import CorruptImageError
from utils.paths import PROJECT_ROOT

__all__ = ["SIDE", "example_png"]

#: Side of the benchmark image (the issue's 500 x 500).
SIDE = 500
#: An example with a lesion, so the measurements have something to measure.
EXAMPLE = PROJECT_ROOT / "examples" / "malignant_irregular_01.png"


def example_png(path: Path = EXAMPLE, side: int = SIDE) -> bytes:
    """PNG bytes of a built-in example resized to ``side`` x ``side`` grayscale.

    Raises:
        CorruptImageError: The example cannot be read.
    """
    pixels = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    if pixels is None:
        raise CorruptImageError(f"Cannot read the benchmark example {path}.")
    resized = cv2.resize(pixels, (side, side), interpolation=cv2.INTER_AREA)
    ok, encoded = cv2.imencode(".png", np.ascontiguousarray(resized))
    if not ok:  # pragma: no cover - OpenCV encodes any uint8 image as PNG
        raise CorruptImageError("OpenCV could not encode the benchmark image as PNG.")
    return encoded.tobytes()
