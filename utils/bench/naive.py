"""The seeds' pattern, as the baseline: ``model.predict`` and a Grad-CAM object per call.

Same image, same layers and the same post-processing and measurements as the fast path
(:func:`utils.analysis.analyse_ultrasound`); only the model calls differ:
``keras.Model.predict`` builds a data adapter and a step function on every call, and
``tf_keras_vis.gradcam.Gradcam`` clones the model and runs it eagerly on every call.
The classifier makes one plain prediction (the fast path also runs 8 test-time
augmentation passes for its uncertainty, so the baseline does *less* work).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import cv2
import keras
import numpy as np

from utils.image_io import load_image
from utils.inference.bundle import images_for_model, to_float_batch
from utils.measurements import measure_lesion_or_none
from utils.postprocess import PostprocessConfig, postprocess_mask

__all__ = ["NaiveModels", "naive_analysis"]


@dataclass(frozen=True)
class NaiveModels:
    """The plain Keras models and what the baseline needs from their cards."""

    segmenter: keras.Model
    segmenter_shape: tuple[int, int, int]
    segmenter_layer: str
    postprocess: PostprocessConfig
    classifier: keras.Model | None = None
    classifier_shape: tuple[int, int, int] | None = None
    classifier_layer: str | None = None


def _gradcam(model: keras.Model, score: Any, batch: np.ndarray, layer: str) -> np.ndarray:
    """tf-keras-vis Grad-CAM, constructed for this one call as the seeds did."""
    from tf_keras_vis.gradcam import Gradcam

    return np.asarray(
        Gradcam(model)(score, batch, penultimate_layer=layer, seek_penultimate_conv_layer=False)
    )[0]


def naive_analysis(png: bytes, models: NaiveModels) -> dict[str, Any]:
    """Decode, segment, measure, classify and explain one image the seeds' way."""
    import tensorflow as tf

    image = load_image(png)
    gray = image.gray
    shape = models.segmenter_shape
    batch = to_float_batch(images_for_model([gray], shape), shape)
    probabilities = models.segmenter.predict(batch, verbose=0)[0, ..., 0]
    full_size = cv2.resize(probabilities, gray.shape[::-1], interpolation=cv2.INTER_LINEAR)
    mask = postprocess_mask(np.clip(full_size, 0.0, 1.0), models.postprocess)
    measurements = measure_lesion_or_none(mask, gray, image.metadata.pixel_spacing_mm)
    segmenter_cam = _gradcam(
        models.segmenter,
        lambda output: tf.reduce_sum(output, axis=[1, 2, 3]),
        batch,
        models.segmenter_layer,
    )
    result: dict[str, Any] = {"measurements": measurements, "segmenter_cam": segmenter_cam}
    if models.classifier is not None and models.classifier_shape is not None:
        from tf_keras_vis.utils.scores import CategoricalScore

        class_batch = to_float_batch(
            images_for_model([image], models.classifier_shape), models.classifier_shape
        )
        probabilities = models.classifier.predict(class_batch, verbose=0)[0]
        predicted = int(np.argmax(probabilities))
        result["classifier_cam"] = _gradcam(
            models.classifier,
            CategoricalScore([predicted]),
            class_batch,
            str(models.classifier_layer),
        )
        result["predicted"] = predicted
    return result
