"""Is an ultrasound image smoother than the images the models learnt from?

Both ultrasound models read speckle texture. Measured with ``python -m utils.evaluate
--smooth`` (segmenter card: ``robustness_smoothing``), images blurred by a Gaussian of
1.6% of their width make the classifier lean towards "malignant" and the segmenter draw
masks on normal tissue, while the unfamiliar-image flag of :mod:`utils.familiarity`
stays silent on most of them. Strong speckle reduction on the scanner, or a small image
that was enlarged, gives such images. This module measures the texture directly:

* :func:`texture_index`: the standard deviation of the Laplacian of the image, resized to
  96 x 96 grey like the models' input, divided by the image's own standard deviation (so
  brightness and contrast do not matter, only how much fine structure there is);
* :func:`fit_texture_reference`: the index's percentiles over the training images, which
  ``python -m utils.image_quality`` writes into a bundle's card as ``input_texture``;
* :func:`assess_texture`: an image is *too smooth* below the training images' 1st
  percentile.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import cv2
import numpy as np

from utils.errors import ConfigError, InvalidImageError, ModelError, TumorLensError
from utils.resize import resize_image

__all__ = [
    "CARD_KEY",
    "TEXTURE_SIZE",
    "TextureAssessment",
    "assess_texture",
    "fit_texture_reference",
    "texture_index",
    "texture_threshold",
]

#: Side of the square grey image the index is computed on (the models' input size).
TEXTURE_SIZE: Final = 96
#: Card field holding the training images' percentiles.
CARD_KEY: Final = "input_texture"
#: Percentile of the training images below which an image is flagged.
FLAG_PERCENTILE: Final = 1
_PERCENTILES: Final = (1, 5, 25, 50, 75, 95, 99)


def texture_index(gray: np.ndarray) -> float:
    """Fine-structure content of a grey image: std(Laplacian) / std(image) at 96 px.

    Args:
        gray: uint8 (H, W) grey image of any size.

    Returns:
        The index (0.0 for a flat image). Typical B-mode images lie around 1; the same
        images blurred by 1.6% of their width lie below 0.3.

    Raises:
        InvalidImageError: ``gray`` is not a non-empty uint8 (H, W) array.
    """
    array = np.asarray(gray)
    if array.dtype != np.uint8 or array.ndim != 2 or min(array.shape) < 1:
        raise InvalidImageError(
            f"texture_index needs a uint8 (H, W) grey image; received dtype {array.dtype} "
            f"and shape {array.shape}."
        )
    small = resize_image(array, (TEXTURE_SIZE, TEXTURE_SIZE)).astype(np.float32)
    spread = float(small.std())
    if spread == 0.0:
        return 0.0
    return float(cv2.Laplacian(small, cv2.CV_32F).std() / spread)


@dataclass(frozen=True)
class TextureAssessment:
    """How one image's texture compares with the training images'.

    Attributes:
        index: The image's :func:`texture_index`.
        threshold: The training images' 1st percentile of the index.
        too_smooth: ``index`` is below ``threshold``.
    """

    index: float
    threshold: float
    too_smooth: bool


def fit_texture_reference(indices: Sequence[float]) -> dict[str, Any]:
    """Card-ready percentiles of the training images' texture indices.

    Raises:
        ConfigError: Fewer than 100 indices, or one is not a finite number.
    """
    values = np.asarray(indices, dtype=np.float64)
    if values.ndim != 1 or values.size < 100 or not np.all(np.isfinite(values)):
        raise ConfigError(
            "A texture reference needs at least 100 finite indices of training images; "
            f"received {values.size}."
        )
    return {
        "statistic": "std(Laplacian) / std(image) of the image as 96 x 96 grey",
        "n": int(values.size),
        "flag_below_percentile": FLAG_PERCENTILE,
        "percentiles": {
            f"p{q:02d}": round(float(np.percentile(values, q)), 4) for q in _PERCENTILES
        },
    }


def texture_threshold(card: Mapping[str, Any]) -> float | None:
    """The card's flagging threshold (``input_texture``'s 1st percentile); ``None`` without one.

    Bundle loading calls it too, so a malformed reference fails there, not mid-analysis.

    Raises:
        ModelError: The card's ``input_texture`` is malformed.
    """
    reference = card.get(CARD_KEY)
    if reference is None:
        return None
    try:
        return float(reference["percentiles"][f"p{FLAG_PERCENTILE:02d}"])
    except (KeyError, TypeError, ValueError) as error:
        raise ModelError(
            f"The card's {CARD_KEY!r} must hold percentiles.p{FLAG_PERCENTILE:02d}; "
            f"received {reference!r}."
        ) from error


def assess_texture(gray: np.ndarray, card: Mapping[str, Any]) -> TextureAssessment | None:
    """Compare an image's texture with the card's ``input_texture``; ``None`` without one.

    Raises:
        InvalidImageError: ``gray`` is not a uint8 (H, W) image.
        ModelError: The card's ``input_texture`` is malformed.
    """
    threshold = texture_threshold(card)
    if threshold is None:
        return None
    index = texture_index(gray)
    return TextureAssessment(index=index, threshold=threshold, too_smooth=index < threshold)


# ----------------------------------------------------------------------------- CLI


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m utils.image_quality --data DIR [--data DIR ...] --bundle NAME``.

    Computes the texture index of every image of the training folders and writes the
    percentiles into the bundle's card (``input_texture``). Exit status 2 on bad input.
    """
    from utils.datasets import read_dataset
    from utils.image_io import load_image
    from utils.inference.bundle import to_gray
    from utils.model_card import update_model_card
    from utils.paths import SAVED_MODELS_DIR

    parser = argparse.ArgumentParser(prog="python -m utils.image_quality", description=__doc__)
    parser.add_argument("--data", type=Path, action="append", required=True, help="repeatable")
    parser.add_argument("--bundle", default="ultrasound_segmenter", help="card to write")
    parser.add_argument("--models-dir", type=Path, default=SAVED_MODELS_DIR)
    args = parser.parse_args(argv)
    try:
        records = [record for folder in args.data for record in read_dataset(folder)]
        indices = [texture_index(to_gray(load_image(record.image_path))) for record in records]
        reference = fit_texture_reference(indices)
        update_model_card(args.bundle, {CARD_KEY: reference}, models_dir=args.models_dir)
    except TumorLensError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"{args.bundle}: {CARD_KEY} from {reference['n']} images: {reference['percentiles']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
