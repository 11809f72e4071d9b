"""Figure panels of segmentation cases: image | ground truth | prediction.

Drawn with OpenCV (mask outlines and fills) and Pillow (text), since matplotlib is not a
dependency. Each row of a figure is one case; the ground truth is green, the prediction
orange (Okabe & Ito colour-blind-safe palette), and the prediction tile repeats the
ground-truth outline so the two can be compared at a glance.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageDraw, ImageFont

from utils.errors import ConfigError, ImageDimensionError

__all__ = ["PanelCase", "overlay_mask", "render_segmentation_panels", "save_segmentation_panels"]

TRUTH_COLOUR = (0, 158, 115)  # bluish green
PREDICTION_COLOUR = (213, 94, 0)  # vermillion
_BACKGROUND = (255, 255, 255)
_TEXT = (20, 20, 20)
_COLUMN_TITLES = ("Image", "Ground truth", "Prediction")
_MARGIN = 8
_TITLE_HEIGHT = 22
_FONT_SIZE = 14


@dataclass(frozen=True, eq=False)
class PanelCase:
    """One row of a panel figure.

    Attributes:
        image: uint8 (H, W) grayscale or (H, W, 3) RGB image.
        true_mask: Boolean (H, W) ground truth.
        predicted_mask: Boolean (H, W) prediction.
        title: Caption of the row, e.g. ``"Best: benign (12).png, Dice 0.93"``.
    """

    image: np.ndarray
    true_mask: np.ndarray
    predicted_mask: np.ndarray
    title: str = ""


def _to_rgb(image: np.ndarray) -> np.ndarray:
    image = np.asarray(image)
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[..., 0]
    if (
        image.dtype != np.uint8
        or image.ndim not in (2, 3)
        or (image.ndim == 3 and image.shape[2] != 3)
    ):
        raise ImageDimensionError(
            f"Panel images must be uint8 (H, W) or (H, W, 3); got {image.dtype} {image.shape}."
        )
    return cv2.cvtColor(image, cv2.COLOR_GRAY2RGB) if image.ndim == 2 else image.copy()


def overlay_mask(
    image: np.ndarray,
    mask: np.ndarray,
    colour: tuple[int, int, int],
    *,
    alpha: float = 0.3,
    thickness: int = 2,
    fill: bool = True,
) -> np.ndarray:
    """Draw a mask on an image as a translucent fill and a solid outline.

    Args:
        image: uint8 (H, W) or (H, W, 3) image.
        mask: Boolean (H, W) mask of the same size.
        colour: RGB colour.
        alpha: Opacity of the fill.
        thickness: Outline width in pixels.
        fill: Draw the fill; otherwise only the outline.

    Returns:
        A new uint8 (H, W, 3) RGB image.

    Raises:
        ImageDimensionError: Bad image type or mismatched sizes.
    """
    canvas = _to_rgb(image)
    mask = np.asarray(mask, dtype=bool)
    if mask.shape != canvas.shape[:2]:
        raise ImageDimensionError(
            f"Mask shape {mask.shape} differs from image shape {canvas.shape[:2]}."
        )
    if fill and mask.any():
        tint = np.asarray(colour, dtype=np.float32)
        blended = canvas[mask].astype(np.float32) * (1.0 - alpha) + tint * alpha
        canvas[mask] = np.round(blended).astype(np.uint8)
    contours, _ = cv2.findContours(
        mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE
    )
    cv2.drawContours(canvas, contours, -1, colour, thickness, lineType=cv2.LINE_AA)
    return canvas


def _resize_mask(mask: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    # Nearest neighbour keeps the mask binary.
    resized = cv2.resize(np.asarray(mask, np.uint8), size, interpolation=cv2.INTER_NEAREST)
    return resized > 0


def _scaled(case: PanelCase, tile_height: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The case's image and masks resized to ``tile_height`` rows, aspect ratio kept."""
    image = _to_rgb(case.image)
    height, width = image.shape[:2]
    for name, mask in (("true_mask", case.true_mask), ("predicted_mask", case.predicted_mask)):
        if np.shape(mask) != (height, width):
            raise ImageDimensionError(
                f"Panel {name} shape {np.shape(mask)} differs from image shape {(height, width)}."
            )
    size = (max(1, round(width * tile_height / height)), tile_height)
    interpolation = cv2.INTER_AREA if tile_height < height else cv2.INTER_LINEAR
    return (
        cv2.resize(image, size, interpolation=interpolation),
        _resize_mask(case.true_mask, size),
        _resize_mask(case.predicted_mask, size),
    )


def _row_tiles(case: PanelCase, tile_height: int) -> list[np.ndarray]:
    image, truth, predicted = _scaled(case, tile_height)
    prediction = overlay_mask(image, predicted, PREDICTION_COLOUR)
    prediction = overlay_mask(prediction, truth, TRUTH_COLOUR, thickness=1, fill=False)
    return [image, overlay_mask(image, truth, TRUTH_COLOUR), prediction]


def render_segmentation_panels(
    cases: Sequence[PanelCase], *, tile_height: int = 256
) -> Image.Image:
    """Draw one row per case: image | ground truth | prediction, with titles.

    Args:
        cases: The rows, top to bottom.
        tile_height: Height of every tile in pixels; widths keep each image's aspect.

    Returns:
        The figure as an RGB Pillow image.

    Raises:
        ConfigError: No case, or a tile height below 16 px.
        ImageDimensionError: A case's image and masks do not match.
    """
    if not cases:
        raise ConfigError("A segmentation panel needs at least one case.")
    if tile_height < 16:
        raise ConfigError(f"tile_height must be at least 16 pixels; got {tile_height}.")
    rows = [_row_tiles(case, tile_height) for case in cases]
    column_widths = [max(row[column].shape[1] for row in rows) for column in range(3)]
    width = sum(column_widths) + _MARGIN * 4
    row_height = _TITLE_HEIGHT + tile_height + _MARGIN
    figure = Image.new(
        "RGB", (width, _TITLE_HEIGHT + _MARGIN + row_height * len(rows)), _BACKGROUND
    )
    draw = ImageDraw.Draw(figure)
    font = ImageFont.load_default(size=_FONT_SIZE)
    lefts = [_MARGIN + sum(column_widths[:column]) + _MARGIN * column for column in range(3)]
    for left, title in zip(lefts, _COLUMN_TITLES, strict=True):
        draw.text((left, _MARGIN // 2), title, fill=_TEXT, font=font)
    for index, (case, tiles) in enumerate(zip(cases, rows, strict=True)):
        top = _TITLE_HEIGHT + _MARGIN + index * row_height
        draw.text((_MARGIN, top), case.title, fill=_TEXT, font=font)
        for left, tile in zip(lefts, tiles, strict=True):
            figure.paste(Image.fromarray(tile), (left, top + _TITLE_HEIGHT))
    return figure


def save_segmentation_panels(
    cases: Sequence[PanelCase], path: Path | str, *, tile_height: int = 256
) -> Path:
    """Render :func:`render_segmentation_panels` and save it as a PNG.

    Args:
        cases: The rows, top to bottom.
        path: Output file; its folder is created if needed.
        tile_height: Height of every tile in pixels.

    Returns:
        ``path`` as a :class:`Path`.

    Raises:
        ConfigError: No case, or a tile height below 16 px.
        ImageDimensionError: A case's image and masks do not match.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    render_segmentation_panels(cases, tile_height=tile_height).save(path, format="PNG")
    return path
