"""Loading shipped model bundles, and turning images into the input their models expect.

A bundle ``NAME`` is ``NAME.keras`` (the Keras 3 model) plus ``NAME.json`` (its card,
see :mod:`utils.model_card`) side by side. :func:`load_bundle` reads both and checks the
card keys inference relies on:

* every task: ``task`` (``"segmentation"`` or ``"classification"``), ``architecture``
  and ``input_shape`` ``[H, W, C]`` with ``C`` 1 (grayscale) or 3 (RGB);
* segmentation: ``postprocess`` (fields of :class:`~utils.postprocess.PostprocessConfig`);
* classification: ``class_names`` (one per model output, e.g. ``["normal", "benign",
  "malignant"]``) and optionally ``temperature`` (defaults to 1.0).

The image helpers below are shared by the segmenter and the classifier, so both feed
their models exactly what training fed them: ``uint8 / 255`` floats, grayscale via
luminance, resized with :func:`utils.pipelines.resize_image` (area interpolation when
shrinking, bilinear when enlarging).
"""

from __future__ import annotations

import importlib
import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final

import keras
import numpy as np
from PIL import Image

from utils.errors import ImageDimensionError, InvalidImageError, ModelError
from utils.image_io import LoadedImage
from utils.image_quality import texture_threshold
from utils.paths import SAVED_MODELS_DIR
from utils.resize import resize_image

__all__ = [
    "DEFAULT_CLASSIFIER_BUNDLE",
    "DEFAULT_SEGMENTER_BUNDLE",
    "TASKS",
    "ImageLike",
    "as_image_list",
    "available_bundles",
    "card_input_shape",
    "images_for_model",
    "load_bundle",
    "resolve_bundle_paths",
    "to_float_batch",
    "to_gray",
    "validate_card",
]

#: Bundle names the app and the evaluation CLI use when none is given.
DEFAULT_SEGMENTER_BUNDLE: Final = "ultrasound_segmenter"
DEFAULT_CLASSIFIER_BUNDLE: Final = "ultrasound_classifier"

#: Card keys every bundle needs, then the extra keys of each task.
_COMMON_CARD_KEYS: Final = ("task", "architecture", "input_shape")
_TASK_CARD_KEYS: Final[dict[str, tuple[str, ...]]] = {
    "segmentation": ("postprocess",),
    "classification": ("class_names",),
}
TASKS: Final = tuple(_TASK_CARD_KEYS)

_MODEL_SUFFIX: Final = ".keras"
_CARD_SUFFIX: Final = ".json"
#: Modules whose import registers the custom objects of saved TumorLens models.
_CUSTOM_OBJECT_MODULES: Final = (
    "utils.models.classification",
    "utils.models.ensemble",
    "utils.models.losses",
    "utils.models.mask_guided",
)

#: What the inference classes accept as one image.
ImageLike = LoadedImage | np.ndarray


# ----------------------------------------------------------------------------- bundles


def available_bundles(models_dir: Path | str = SAVED_MODELS_DIR) -> list[str]:
    """Names of the complete bundles (``.keras`` with its ``.json`` card) in ``models_dir``."""
    folder = Path(models_dir)
    if not folder.is_dir():
        return []
    return sorted(
        path.stem
        for path in folder.glob(f"*{_MODEL_SUFFIX}")
        if path.with_suffix(_CARD_SUFFIX).is_file()
    )


def _looks_like_path(name_or_path: str | Path) -> bool:
    """A ``Path``, a ``.keras`` file name or anything with a folder part is a path, not a name."""
    if isinstance(name_or_path, Path):
        return True
    return name_or_path.endswith(_MODEL_SUFFIX) or Path(name_or_path).name != name_or_path


def resolve_bundle_paths(
    name_or_path: str | Path, *, models_dir: Path | str = SAVED_MODELS_DIR
) -> tuple[Path, Path]:
    """The ``.keras`` file and ``.json`` card of a bundle name or a ``.keras`` path.

    Args:
        name_or_path: A bundle name in ``models_dir`` (``"ultrasound_segmenter"``) or a
            path to a ``.keras`` file whose card is the ``.json`` of the same stem beside it.
        models_dir: Folder of the named bundles.

    Returns:
        ``(model_path, card_path)``, both existing files.

    Raises:
        ModelError: Either file is missing (the message lists the available bundles), or
            the path is not a ``.keras`` file.
    """
    folder = Path(models_dir)
    if _looks_like_path(name_or_path):
        model_path = Path(name_or_path).expanduser()
        if model_path.suffix != _MODEL_SUFFIX:
            raise ModelError(
                f"Model path {model_path} is not a Keras 3 model file; expected a '.keras' "
                "file with its '.json' card beside it."
            )
        listing_dir = model_path.parent
    else:
        model_path = folder / f"{name_or_path}{_MODEL_SUFFIX}"
        listing_dir = folder
    card_path = model_path.with_suffix(_CARD_SUFFIX)
    for path, what in ((model_path, "model file"), (card_path, "model card")):
        if not path.is_file():
            listing = ", ".join(available_bundles(listing_dir)) or "none"
            raise ModelError(
                f"No {what} {path}. Available bundles in {listing_dir}: {listing}. Give a "
                "bundle name or the path of a '.keras' file with its '.json' card beside it."
            )
    return model_path, card_path


def card_input_shape(card: dict[str, Any]) -> tuple[int, int, int]:
    """The card's ``input_shape`` as ``(height, width, channels)``.

    Raises:
        ModelError: It is not three positive integers with 1 or 3 channels.
    """
    shape = card.get("input_shape")
    valid = (
        isinstance(shape, list | tuple)
        and len(shape) == 3
        and all(isinstance(side, int) and not isinstance(side, bool) and side > 0 for side in shape)
        and shape[2] in (1, 3)
    )
    if not valid:
        raise ModelError(
            f"Model card input_shape must be [height, width, channels] with positive "
            f"integers and 1 or 3 channels; got {shape!r}."
        )
    return int(shape[0]), int(shape[1]), int(shape[2])


def _check_class_names(card: dict[str, Any], source: str) -> None:
    names = card["class_names"]
    if (
        not isinstance(names, list)
        or len(names) < 2
        or not all(isinstance(name, str) and name for name in names)
        or len(set(names)) != len(names)
    ):
        raise ModelError(
            f"Model card {source}: class_names must list at least 2 distinct class names; "
            f"got {names!r}."
        )
    temperature = card.get("temperature", 1.0)
    is_number = isinstance(temperature, int | float) and not isinstance(temperature, bool)
    if not is_number or not math.isfinite(temperature) or temperature <= 0:
        raise ModelError(
            f"Model card {source}: temperature must be a positive number; got {temperature!r}."
        )


def validate_card(
    card: dict[str, Any], source: str | None = None, *, task: str | None = None
) -> dict[str, Any]:
    """Check that ``card`` holds the keys inference relies on (see the module docstring).

    Args:
        card: The parsed card.
        source: Where it came from, for error messages (a path); defaults to the card's
            ``name``.
        task: The task the caller needs; ``None`` accepts either.

    Returns:
        ``card`` itself, for chaining.

    Raises:
        ModelError: A key is missing or invalid, or the task is not ``task``.
    """
    if not isinstance(card, dict):
        raise ModelError(
            f"Model card {source or ''} must be a JSON object; got {type(card).__name__}."
        )
    source = source or str(card.get("name", "(unnamed)"))
    card_task = card.get("task")
    if card_task not in _TASK_CARD_KEYS:
        raise ModelError(
            f"Model card {source}: task must be one of {', '.join(TASKS)}; got {card_task!r}."
        )
    missing = [key for key in (*_COMMON_CARD_KEYS, *_TASK_CARD_KEYS[card_task]) if key not in card]
    if missing:
        raise ModelError(
            f"Model card {source} lacks the keys {', '.join(missing)} needed for "
            f"{card_task}; re-export the bundle with utils.model_card.save_model_bundle."
        )
    if task is not None and card_task != task:
        raise ModelError(f"Model {source} is a {card_task} model; a {task} model is needed here.")
    card_input_shape(card)
    if card_task == "segmentation" and not isinstance(card["postprocess"], dict):
        raise ModelError(f"Model card {source}: postprocess must be a JSON object.")
    if card_task == "classification":
        _check_class_names(card, source)
    try:
        texture_threshold(card)
    except ModelError as error:
        raise ModelError(f"Model card {source}: {error}") from error
    return card


def _read_card(card_path: Path) -> dict[str, Any]:
    try:
        return json.loads(card_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ModelError(f"Model card {card_path} cannot be read as JSON: {error}") from error


def _read_model(model_path: Path) -> keras.Model:
    # Importing the model modules registers their custom layers, losses and metrics, so
    # load_model finds them without a custom_objects argument.
    for module in _CUSTOM_OBJECT_MODULES:
        importlib.import_module(module)
    try:
        # compile=False: inference needs no optimizer, loss or metrics, and skipping
        # them makes loading faster and immune to training-only objects.
        return keras.saving.load_model(model_path, compile=False)
    except Exception as error:  # Keras raises many types for damaged or foreign files.
        raise ModelError(
            f"Model file {model_path} cannot be loaded ({type(error).__name__}: {error}). "
            "It may be damaged or truncated, or saved by an incompatible Keras version."
        ) from error


def _check_model_matches_card(model: keras.Model, card: dict[str, Any], source: str) -> None:
    """The model's input and output sizes must agree with the card."""
    expected = card_input_shape(card)
    actual = tuple(model.input_shape[1:]) if len(model.inputs) == 1 else None
    if actual is None or len(actual) != 3:
        raise ModelError(f"Model {source} must take one (H, W, C) image input.")
    if any(got is not None and got != want for got, want in zip(actual, expected, strict=True)):
        raise ModelError(
            f"Model {source} takes inputs of shape {list(actual)} but its card says "
            f"input_shape {list(expected)}."
        )
    if card["task"] == "classification" and model.output_shape[-1] != len(card["class_names"]):
        raise ModelError(
            f"Model {source} has {model.output_shape[-1]} outputs but its card lists "
            f"{len(card['class_names'])} class_names."
        )


def load_bundle(
    name_or_path: str | Path,
    *,
    models_dir: Path | str = SAVED_MODELS_DIR,
    task: str | None = None,
) -> tuple[keras.Model, dict[str, Any]]:
    """Load a model and its card.

    Caching is left to the caller (the app wraps this in ``st.cache_resource``); one
    call reads two files and builds the model once.

    Args:
        name_or_path: Bundle name in ``models_dir`` or path of a ``.keras`` file (its card
            is the same stem with ``.json``).
        models_dir: Folder of the named bundles.
        task: Require this card task (``"segmentation"`` or ``"classification"``).

    Returns:
        ``(model, card)``; the model is not compiled.

    Raises:
        ModelError: A file is missing, the card lacks a key or is invalid, the ``.keras``
            file cannot be loaded, or model and card disagree.
    """
    model_path, card_path = resolve_bundle_paths(name_or_path, models_dir=models_dir)
    card = validate_card(_read_card(card_path), str(card_path), task=task)
    model = _read_model(model_path)
    _check_model_matches_card(model, card, str(model_path))
    return model, card


# ----------------------------------------------------------------------------- images


def _as_pixels(image: ImageLike) -> np.ndarray:
    """The uint8 (H, W) or (H, W, 3) pixels of a loaded image or an array."""
    if isinstance(image, LoadedImage):
        return image.pixels
    pixels = np.asarray(image)
    if pixels.ndim == 3 and pixels.shape[2] == 1:
        pixels = pixels[..., 0]
    if pixels.ndim not in (2, 3) or (pixels.ndim == 3 and pixels.shape[2] != 3):
        raise ImageDimensionError(
            f"An image must be (H, W) grayscale or (H, W, 3) RGB; got shape {pixels.shape}."
        )
    if 0 in pixels.shape:
        raise ImageDimensionError(f"An image has a zero dimension: shape {pixels.shape}.")
    if pixels.dtype != np.uint8:
        raise InvalidImageError(
            f"Images must be uint8 (0-255), as utils.image_io.load_image returns them; got "
            f"{pixels.dtype}."
        )
    return pixels


def to_gray(image: ImageLike) -> np.ndarray:
    """The image as (H, W) uint8 luminance (ITU-R 601, as :attr:`LoadedImage.gray`).

    Raises:
        ImageDimensionError: The array is not (H, W), (H, W, 1) or (H, W, 3).
        InvalidImageError: The array is not uint8.
    """
    if isinstance(image, LoadedImage):
        return image.gray
    pixels = _as_pixels(image)
    if pixels.ndim == 2:
        return pixels
    # Pillow's "L" conversion is what LoadedImage.gray reproduces, so both paths agree.
    return np.asarray(Image.fromarray(pixels).convert("L"))


def _to_channels(image: ImageLike, channels: int) -> np.ndarray:
    """(H, W, channels) uint8: luminance for 1 channel, RGB (gray replicated) for 3."""
    if channels == 1:
        return to_gray(image)[..., None]
    pixels = _as_pixels(image)
    return np.repeat(pixels[..., None], 3, axis=2) if pixels.ndim == 2 else pixels


def as_image_list(images: ImageLike | Sequence[ImageLike]) -> list[ImageLike]:
    """Normalise "one image or several" to a list of images.

    A :class:`LoadedImage` or a 2-D array is one image; a sequence is several; a 3-D
    array is a batch (N, H, W) and a 4-D array a batch (N, H, W, C).

    Raises:
        ImageDimensionError: A 3-D array ends in 1 or 3 (one (H, W, C) image, which
            would otherwise be read as H images of W x C pixels), or has another rank.
    """
    if isinstance(images, LoadedImage):
        return [images]
    if isinstance(images, np.ndarray):
        if images.ndim == 2:
            return [images]
        if images.ndim == 3 and images.shape[2] in (1, 3):
            raise ImageDimensionError(
                f"Got one array of shape {images.shape}: for a single (H, W, C) image pass "
                "[image]; for a grayscale batch pass (N, H, W) or (N, H, W, 1)."
            )
        if images.ndim not in (3, 4):
            raise ImageDimensionError(
                f"Expected images as (N, H, W) or (N, H, W, C) arrays; got shape {images.shape}."
            )
    return list(images)


def images_for_model(images: Sequence[ImageLike], input_shape: tuple[int, int, int]) -> np.ndarray:
    """Convert and resize images of any size into one uint8 batch for a model.

    Args:
        images: Loaded images or uint8 (H, W), (H, W, 1) or (H, W, 3) arrays.
        input_shape: The model's ``(height, width, channels)``.

    Returns:
        uint8 array (N, height, width, channels).

    Raises:
        ImageDimensionError: An array has an unusable shape.
        InvalidImageError: An array is not uint8.
    """
    height, width, channels = input_shape
    batch = np.empty((len(images), height, width, channels), dtype=np.uint8)
    for index, image in enumerate(images):
        resized = resize_image(_to_channels(image, channels), (height, width))
        # cv2.resize drops a trailing axis of size 1.
        batch[index] = resized.reshape(height, width, channels)
    return batch


def to_float_batch(images: np.ndarray, input_shape: tuple[int, int, int]) -> np.ndarray:
    """A uint8 batch already at the model size as the float32 [0, 1] input it was trained on.

    Args:
        images: uint8 (N, H, W) or (N, H, W, C) with C 1 or 3; converted to the model's
            channel count when it differs.
        input_shape: The model's ``(height, width, channels)``.

    Returns:
        float32 (N, height, width, channels) in [0, 1].

    Raises:
        ImageDimensionError: The batch is not at the model's height and width.
        InvalidImageError: The batch is not uint8.
    """
    batch = np.asarray(images)
    if batch.ndim == 3:
        batch = batch[..., None]
    if batch.ndim != 4 or batch.shape[1:3] != input_shape[:2] or batch.shape[3] not in (1, 3):
        raise ImageDimensionError(
            f"Expected a uint8 batch (N, {input_shape[0]}, {input_shape[1]}) or (N, "
            f"{input_shape[0]}, {input_shape[1]}, 1 or 3) at the model size; got shape "
            f"{batch.shape}. Use images_for_model to resize images of other sizes."
        )
    if batch.dtype != np.uint8:
        raise InvalidImageError(f"Model input batches must be uint8 (0-255); got {batch.dtype}.")
    if batch.shape[3] != input_shape[2]:
        batch = images_for_model(list(batch), input_shape)
    return batch.astype(np.float32) / np.float32(255.0)
