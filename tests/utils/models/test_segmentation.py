from __future__ import annotations

import re
from pathlib import Path

import keras
import numpy as np
import pytest

from utils.errors import ConfigError
from utils.models.losses import SEGMENTATION_METRICS, DiceBCELoss
from utils.models.segmentation import (
    DEFAULT_SEGMENTATION_ARCH,
    SEGMENTATION_BUILDERS,
    build_attention_resunet,
    build_segmentation_model,
    build_unet,
)
from utils.postprocess import dice_score

SMALL = {"input_shape": (64, 64, 1), "base_filters": 4, "depth": 3}
ARCHS = sorted(SEGMENTATION_BUILDERS)

# Names Keras gives layers that were not named explicitly ("conv2d_3", "add", ...).
AUTO_NAME = re.compile(
    r"^(input_layer|conv2d|conv2d_transpose|dense|activation|batch_normalization|add|multiply|"
    r"concatenate|max_pooling2d|up_sampling2d|spatial_dropout2d|dropout)(_\d+)?$"
)
# Every layer must follow the documented naming scheme.
NAME_SCHEME = re.compile(
    r"^(input_image|(enc|dec|att)\d+_[a-z0-9_]+|bottleneck_[a-z0-9_]+|seg_(logits|probs))$"
)


@pytest.fixture(scope="module")
def small_models() -> dict[str, keras.Model]:
    keras.utils.set_random_seed(0)
    return {arch: build_segmentation_model(arch, **SMALL) for arch in ARCHS}


@pytest.fixture(scope="module")
def batch() -> np.ndarray:
    return np.random.default_rng(0).random((2, 64, 64, 1), dtype=np.float32)


@pytest.mark.parametrize("arch", ARCHS)
def test_output_shape_and_range(small_models: dict, batch: np.ndarray, arch: str) -> None:
    probs = np.asarray(small_models[arch].predict_on_batch(batch))
    assert probs.shape == (2, 64, 64, 1)
    assert probs.dtype == np.float32
    assert np.all((probs >= 0) & (probs <= 1))


@pytest.mark.parametrize("arch", ARCHS)
def test_layer_names_unique_explicit_and_descriptive(small_models: dict, arch: str) -> None:
    names = [layer.name for layer in small_models[arch].layers]
    assert len(names) == len(set(names))
    assert not [name for name in names if AUTO_NAME.match(name)]
    assert not [name for name in names if not NAME_SCHEME.match(name)]
    assert names[-2:] == ["seg_logits", "seg_probs"]
    assert small_models[arch].name == arch


def test_architectures_differ_as_documented(small_models: dict) -> None:
    def names(arch: str) -> set[str]:
        return {layer.name for layer in small_models[arch].layers}

    assert not any(name.startswith("att") for name in names("unet") | names("resunet"))
    assert not any(name.endswith("_proj") for name in names("unet"))
    assert {"enc1_proj", "enc1_add", "dec1_add"} <= names("resunet")
    expected_gates = {f"att{level}_gate" for level in (1, 2, 3)}
    assert expected_gates | {"att3_sigmoid"} <= names("attention_resunet")


def test_grad_cam_can_tap_any_named_layer(small_models: dict, batch: np.ndarray) -> None:
    model = small_models["attention_resunet"]
    tap = keras.Model(
        model.inputs, [model.get_layer("att2_gate").output, model.get_layer("seg_logits").output]
    )
    gated, logits = tap.predict_on_batch(batch)
    assert gated.shape == (2, 32, 32, 8)
    assert logits.shape == (2, 64, 64, 1)


def test_sigmoid_is_float32_under_mixed_precision() -> None:
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy("mixed_float16")
    try:
        model = build_unet(input_shape=(32, 32, 1), base_filters=2, depth=2)
    finally:
        keras.config.set_dtype_policy(previous)
    assert model.get_layer("seg_logits").compute_dtype == "float16"
    assert model.get_layer("seg_probs").compute_dtype == "float32"
    assert keras.backend.standardize_dtype(model.outputs[0].dtype) == "float32"


def test_dynamic_input_size() -> None:
    model = build_attention_resunet(input_shape=(None, None, 1), base_filters=2, depth=2)
    for height, width in ((32, 32), (16, 48)):
        probs = model.predict_on_batch(np.zeros((1, height, width, 1), np.float32))
        assert probs.shape == (1, height, width, 1)


def test_multiple_classes_and_channels() -> None:
    model = build_unet(input_shape=(16, 16, 3), num_classes=2, base_filters=2, depth=2)
    assert model.output_shape == (None, 16, 16, 2)


def test_defaults() -> None:
    assert DEFAULT_SEGMENTATION_ARCH == "attention_resunet"
    assert DEFAULT_SEGMENTATION_ARCH in SEGMENTATION_BUILDERS


# --- configuration errors ----------------------------------------------------------------


def test_unknown_arch_lists_valid_names() -> None:
    with pytest.raises(ConfigError, match=r"'vgg'.*attention_resunet, resunet, unet"):
        build_segmentation_model("vgg")


def test_unknown_option_raises_config_error() -> None:
    with pytest.raises(ConfigError, match=r"filters.*allowed options: input_shape"):
        build_segmentation_model("unet", filters=8)


def test_indivisible_input_size_raises() -> None:
    with pytest.raises(ConfigError, match=r"input height 250 is not divisible by 16 \(2\*\*depth"):
        build_unet(input_shape=(250, 256, 1), depth=4)
    with pytest.raises(ConfigError, match="input width 36 is not divisible by 8"):
        build_unet(input_shape=(64, 36, 1), depth=3)


@pytest.mark.parametrize(
    ("options", "pattern"),
    [
        ({"input_shape": (64, 64)}, r"input_shape must be \(height, width, channels\)"),
        ({"depth": 0}, "depth must be an integer from 1 to 6; received 0"),
        ({"base_filters": 0}, "base_filters must be a positive integer; received 0"),
        ({"num_classes": -1}, "num_classes"),
        ({"dropout": 1.0}, r"dropout must be in \[0, 1\); received 1.0"),
        ({"input_shape": (64, 64, 0)}, "input channels"),
        ({"input_shape": (64.0, 64, 1)}, "input height must be a positive integer or None"),
        ({"input_shape": 64}, "input_shape must be"),
    ],
)
def test_bad_options_raise(options: dict, pattern: str) -> None:
    with pytest.raises(ConfigError, match=pattern):
        build_segmentation_model("resunet", **options)


# --- persistence and training ------------------------------------------------------------


# The unbuilt optimizer of a never-trained model has no variables to restore.
@pytest.mark.filterwarnings("ignore:Skipping variable loading for optimizer")
def test_save_and_reload_gives_identical_predictions(tmp_path: Path) -> None:
    model = build_attention_resunet(input_shape=(32, 32, 1), base_filters=2, depth=2)
    model.compile(optimizer="adam", loss=DiceBCELoss(bce_weight=0.5), metrics=SEGMENTATION_METRICS)
    x = np.random.default_rng(1).random((2, 32, 32, 1), dtype=np.float32)
    path = tmp_path / "seg.keras"
    model.save(path)
    reloaded = keras.saving.load_model(path)  # no custom_objects: everything is registered
    np.testing.assert_allclose(reloaded.predict_on_batch(x), model.predict_on_batch(x), atol=1e-6)
    assert isinstance(reloaded.loss, DiceBCELoss)
    assert reloaded.loss.get_config()["bce_weight"] == 0.5


def disks_on_noise(count: int, size: int, rng: np.random.Generator) -> tuple[np.ndarray, ...]:
    yy, xx = np.mgrid[:size, :size]
    images = rng.normal(0.3, 0.1, (count, size, size, 1))
    masks = np.zeros((count, size, size, 1), np.float32)
    for index in range(count):
        cy, cx = rng.integers(9, size - 9, 2)
        radius = rng.integers(4, 8)
        disk = (yy - cy) ** 2 + (xx - cx) ** 2 <= radius**2
        masks[index, disk, 0] = 1.0
        images[index, disk, 0] += 0.5
    return np.clip(images, 0, 1).astype(np.float32), masks


def test_tiny_model_overfits_synthetic_disks() -> None:
    keras.utils.set_random_seed(0)
    images, masks = disks_on_noise(4, 32, np.random.default_rng(0))
    model = build_attention_resunet(input_shape=(32, 32, 1), base_filters=8, depth=2, dropout=0.0)
    # Graph tracing dominates 25 tiny steps: momentum SGD (one slot variable per weight)
    # traces far faster than Adam, and XLA compilation would only add to it.
    optimizer = keras.optimizers.SGD(0.1, momentum=0.9)
    model.compile(optimizer=optimizer, loss=DiceBCELoss(), jit_compile=False)
    model.fit(images, masks, batch_size=4, epochs=25, verbose=0)
    probs = model.predict_on_batch(images)
    dices = [dice_score(p[..., 0] >= 0.5, m[..., 0]) for p, m in zip(probs, masks, strict=True)]
    assert np.mean(dices) > 0.8, dices
