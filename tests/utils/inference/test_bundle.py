from __future__ import annotations

import json
from pathlib import Path

import keras
import numpy as np
import pytest
from PIL import Image

from utils.errors import ImageDimensionError, InvalidImageError, ModelError
from utils.image_io import ImageMetadata, LoadedImage
from utils.inference.bundle import (
    as_image_list,
    available_bundles,
    images_for_model,
    load_bundle,
    to_float_batch,
)
from utils.model_card import save_model_bundle
from utils.models.classification import build_classifier
from utils.models.segmentation import build_segmentation_model

CLASS_NAMES = ["normal", "benign", "malignant"]
SEGMENTER_CARD = {
    "task": "segmentation",
    "architecture": "unet",
    "input_shape": [32, 32, 1],
    "version": "test",
    "postprocess": {"threshold": 0.5, "min_component_px": 0},
}
CLASSIFIER_CARD = {
    "task": "classification",
    "architecture": "compact_cnn",
    "input_shape": [32, 32, 1],
    "version": "test",
    "class_names": CLASS_NAMES,
    "temperature": 1.0,
}


# ----------------------------------------------------------------------------- shared builders
# (imported by the segmenter, classifier and evaluate tests)


def save_segmenter_bundle(models_dir: Path, name: str = "tiny_segmenter", **card: object) -> Path:
    keras.utils.set_random_seed(0)
    model = build_segmentation_model("unet", input_shape=(32, 32, 1), base_filters=4, depth=2)
    return save_model_bundle(model, name, {**SEGMENTER_CARD, **card}, models_dir=models_dir)


def save_classifier_bundle(
    models_dir: Path,
    name: str = "tiny_classifier",
    *,
    channels: int = 1,
    class_names: list[str] = CLASS_NAMES,
    **card: object,
) -> Path:
    keras.utils.set_random_seed(0)
    model = build_classifier(
        "compact_cnn", input_shape=(32, 32, channels), num_classes=len(class_names)
    )
    full_card = {
        **CLASSIFIER_CARD,
        "input_shape": [32, 32, channels],
        "class_names": class_names,
        **card,
    }
    return save_model_bundle(model, name, full_card, models_dir=models_dir)


def loaded_image(pixels: np.ndarray, spacing: tuple[float, float] | None = None) -> LoadedImage:
    rgb = np.ascontiguousarray(
        np.repeat(pixels[..., None], 3, axis=2) if pixels.ndim == 2 else pixels
    )
    metadata = ImageMetadata(
        source="test.png",
        format="PNG",
        original_mode="RGB",
        original_bit_depth=8,
        width=rgb.shape[1],
        height=rgb.shape[0],
        pixel_spacing_mm=spacing,
    )
    return LoadedImage(rgb, metadata)


def write_busi_folder(root: Path) -> Path:
    """A tiny BUSI layout: 2 benign, 2 malignant (one with two masks), 1 normal."""
    rng = np.random.default_rng(7)
    cases = {
        "benign": [(40, 48, 1), (36, 52, 1)],
        "malignant": [(44, 44, 2), (38, 50, 1)],
        "normal": [(40, 40, 0)],
    }
    for label, shapes in cases.items():
        folder = root / label
        folder.mkdir(parents=True)
        for index, (height, width, n_masks) in enumerate(shapes, start=1):
            image = rng.integers(0, 256, (height, width), dtype=np.uint8)
            Image.fromarray(image).save(folder / f"{label} ({index}).png")
            masks = [np.zeros((height, width), np.uint8) for _ in range(max(n_masks, 1))]
            for number, mask in enumerate(masks[:n_masks]):
                mask[5 + 10 * number : 15 + 10 * number, 10:25] = 255
            for number, mask in enumerate(masks):
                suffix = "_mask" if number == 0 else f"_mask_{number}"
                Image.fromarray(mask).save(folder / f"{label} ({index}){suffix}.png")
    return root


# ----------------------------------------------------------------------------- load_bundle


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("models")
    save_segmenter_bundle(folder)
    save_classifier_bundle(folder)
    return folder


def test_load_bundle_by_name_and_by_path(models_dir: Path) -> None:
    model, card = load_bundle("tiny_segmenter", models_dir=models_dir)
    assert card["task"] == "segmentation" and card["name"] == "tiny_segmenter"
    assert model.input_shape == (None, 32, 32, 1)
    _, card = load_bundle(models_dir / "tiny_classifier.keras", task="classification")
    assert card["class_names"] == CLASS_NAMES
    _, card = load_bundle(str(models_dir / "tiny_classifier.keras"))
    assert card["architecture"] == "compact_cnn"
    assert available_bundles(models_dir) == ["tiny_classifier", "tiny_segmenter"]


def test_every_module_with_custom_layers_is_imported_before_loading() -> None:
    # A saved model naming a layer whose module was never imported cannot be loaded
    # in a fresh process (the app, the API), even if the tests' own imports hide it.
    from utils.inference import bundle

    root = Path(bundle.__file__).resolve().parents[1]
    registering = {
        ".".join(path.relative_to(root.parent).with_suffix("").parts)
        for path in root.rglob("*.py")
        if "register_keras_serializable" in path.read_text()
    }
    assert registering and registering <= set(bundle._CUSTOM_OBJECT_MODULES)


def test_missing_bundle_lists_the_available_ones(models_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(ModelError, match=r"No model file .*Available .*tiny_classifier, tiny_seg"):
        load_bundle("ultrasound_segmenter", models_dir=models_dir)
    with pytest.raises(ModelError, match=r"Available bundles in .*: none"):
        load_bundle(tmp_path / "absent.keras")
    with pytest.raises(ModelError, match="not a Keras 3 model file"):
        load_bundle(tmp_path / "weights.h5")


def test_corrupt_keras_file_is_a_model_error_naming_the_path(
    models_dir: Path, tmp_path: Path
) -> None:
    (tmp_path / "broken.keras").write_bytes(b"PK\x03\x04 truncated zip")
    (tmp_path / "broken.json").write_text((models_dir / "tiny_segmenter.json").read_text())
    with pytest.raises(ModelError, match=r"broken\.keras cannot be loaded"):
        load_bundle(tmp_path / "broken.keras")


def test_missing_card_keys_and_bad_values_are_model_errors(
    models_dir: Path, tmp_path: Path
) -> None:
    card = json.loads((models_dir / "tiny_segmenter.json").read_text())
    model_bytes = (models_dir / "tiny_segmenter.keras").read_bytes()

    def write(name: str, **changes: object) -> Path:
        (tmp_path / f"{name}.keras").write_bytes(model_bytes)
        changed = {key: value for key, value in {**card, **changes}.items() if value is not None}
        (tmp_path / f"{name}.json").write_text(json.dumps(changed))
        return tmp_path / f"{name}.keras"

    with pytest.raises(ModelError, match="lacks the keys postprocess"):
        load_bundle(write("no_postprocess", postprocess=None))
    with pytest.raises(ModelError, match="lacks the keys architecture, input_shape"):
        load_bundle(write("no_shape", architecture=None, input_shape=None))
    with pytest.raises(ModelError, match="task must be one of"):
        load_bundle(write("no_task", task=None))
    with pytest.raises(ModelError, match="input_shape must be"):
        load_bundle(write("bad_shape", input_shape=[32, 32, 2]))
    with pytest.raises(ModelError, match=r"takes inputs of shape \[32, 32, 1\]"):
        load_bundle(write("wrong_size", input_shape=[64, 64, 1]))
    with pytest.raises(ModelError, match="a classification model is needed"):
        load_bundle(write("segmenter", task="segmentation"), task="classification")
    (tmp_path / "not_json.keras").write_bytes(model_bytes)
    (tmp_path / "not_json.json").write_text("{oops")
    with pytest.raises(ModelError, match="cannot be read as JSON"):
        load_bundle(tmp_path / "not_json.keras")


def test_classifier_card_must_match_the_outputs(models_dir: Path, tmp_path: Path) -> None:
    card = json.loads((models_dir / "tiny_classifier.json").read_text())
    (tmp_path / "two.keras").write_bytes((models_dir / "tiny_classifier.keras").read_bytes())
    (tmp_path / "two.json").write_text(json.dumps({**card, "class_names": ["benign", "malignant"]}))
    with pytest.raises(ModelError, match="3 outputs but its card lists 2 class_names"):
        load_bundle(tmp_path / "two.keras")
    (tmp_path / "two.json").write_text(json.dumps({**card, "temperature": 0}))
    with pytest.raises(ModelError, match="temperature must be a positive number"):
        load_bundle(tmp_path / "two.keras")


# ----------------------------------------------------------------------------- image helpers


def test_images_for_model_converts_channels_and_resizes() -> None:
    rgb = np.zeros((10, 20, 3), np.uint8)
    rgb[..., 0] = 255  # pure red: luminance 76 (ITU-R 601)
    gray = np.full((64, 48), 200, np.uint8)
    batch = images_for_model([rgb, gray, loaded_image(gray)], (16, 16, 1))
    assert batch.shape == (3, 16, 16, 1) and batch.dtype == np.uint8
    assert batch[0].max() == batch[0].min() == 76
    assert (batch[1] == 200).all() and (batch[2] == 200).all()
    colour = images_for_model([gray[..., None], rgb], (8, 8, 3))
    assert colour.shape == (2, 8, 8, 3)
    assert (colour[0] == 200).all() and (colour[1, ..., 0] == 255).all()


def test_to_float_batch_scales_and_validates() -> None:
    batch = to_float_batch(np.full((2, 8, 8), 255, np.uint8), (8, 8, 1))
    assert batch.shape == (2, 8, 8, 1) and batch.dtype == np.float32 and batch.max() == 1.0
    assert to_float_batch(np.zeros((1, 8, 8, 3), np.uint8), (8, 8, 1)).shape == (1, 8, 8, 1)
    with pytest.raises(ImageDimensionError, match="at the model size"):
        to_float_batch(np.zeros((1, 9, 8), np.uint8), (8, 8, 1))
    with pytest.raises(InvalidImageError, match="uint8"):
        to_float_batch(np.zeros((1, 8, 8), np.float32), (8, 8, 1))


def test_as_image_list_rejects_ambiguous_and_bad_arrays() -> None:
    assert len(as_image_list(np.zeros((5, 6), np.uint8))) == 1
    assert len(as_image_list(np.zeros((4, 5, 6), np.uint8))) == 4
    assert len(as_image_list(np.zeros((4, 5, 6, 1), np.uint8))) == 4
    with pytest.raises(ImageDimensionError, match=r"for a single \(H, W, C\) image pass \[image\]"):
        as_image_list(np.zeros((5, 6, 3), np.uint8))
    with pytest.raises(InvalidImageError, match="uint8"):
        images_for_model([np.zeros((5, 6), np.float64)], (8, 8, 1))
    with pytest.raises(ImageDimensionError, match="zero dimension"):
        images_for_model([np.zeros((0, 6), np.uint8)], (8, 8, 1))
