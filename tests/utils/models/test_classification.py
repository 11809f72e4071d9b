from __future__ import annotations

import re
from pathlib import Path

import keras
import numpy as np
import pytest

from utils.errors import ConfigError, ModelError
from utils.models import classification as clf
from utils.models.classification import (
    ADAPTER_LAYER_NAMES,
    CLASSIFIER_BUILDERS,
    DEFAULT_CLASSIFIER_ARCH,
    backbone_layer_names,
    build_classifier,
    build_compact_cnn,
    build_efficientnetb0,
    build_small_vit,
    last_conv_layer_name,
    logits_model,
    penultimate_model,
    set_backbone_trainable,
)

HEAD = ["head_pool", "head_dropout", "logits", "probabilities"]
# Keras's automatic names ("conv2d_3", "dense", ...): no layer of ours may carry one.
AUTO_NAME = re.compile(
    r"^(input_layer|conv2d|depthwise_conv2d|dense|activation|batch_normalization|add|"
    r"concatenate|max_pooling2d|global_average_pooling2d|dropout|layer_normalization|"
    r"multi_head_attention|reshape|rescaling|softmax|reverse_channels)(_\d+)?$"
)
SCRATCH_NAMES = {
    "compact_cnn": re.compile(
        r"^(input_image|stem_(conv|bn|relu)|stage\d_((conv|bn|relu)\d|pool))$"
    ),
    "small_vit": re.compile(
        r"^(input_image|patch_embed|pos_(conv|add)|grid_to_tokens|tokens_to_grid|encoder_norm|"
        r"vit_block\d+_(ln1|ln2|attn|attn_add|mlp_fc1|mlp_fc2|mlp_add))$"
    ),
}
FAST_SHAPES = {
    "efficientnetb0": (32, 32, 1),
    "compact_cnn": (64, 64, 1),
    "small_vit": (64, 64, 1),
}


@pytest.fixture(scope="module")
def fast_models() -> dict[str, keras.Model]:
    keras.utils.set_random_seed(0)
    return {arch: build_classifier(arch, input_shape=shape) for arch, shape in FAST_SHAPES.items()}


def _images(shape: tuple[int, int, int], n: int = 2) -> np.ndarray:
    return np.random.default_rng(0).random((n, *shape), dtype=np.float32)


def _check_probabilities(model: keras.Model, shape: tuple[int, int, int], classes: int) -> None:
    probs = np.asarray(model(_images(shape), training=False))
    assert probs.shape == (2, classes)
    assert probs.dtype == np.float32
    assert np.all(probs >= 0)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-5)


# ----------------------------------------------------------------------------- builders


@pytest.mark.parametrize("arch", sorted(FAST_SHAPES))
def test_fast_builders_output_probabilities(fast_models: dict, arch: str) -> None:
    _check_probabilities(fast_models[arch], FAST_SHAPES[arch], 3)
    assert fast_models[arch].name == arch


def _check_application_model(arch: str, channels: int) -> None:
    model = build_classifier(arch, input_shape=(32, 32, channels), num_classes=2)
    _check_probabilities(model, (32, 32, channels), 2)
    names = [layer.name for layer in model.layers]
    assert len(names) == len(set(names))
    assert names[-4:] == HEAD
    assert ("gray_to_rgb" in names) == (channels == 1)
    assert last_conv_layer_name(model) in backbone_layer_names(model)


def test_efficientnetv2b0_builds() -> None:
    _check_application_model("efficientnetv2b0", 1)


@pytest.mark.slow
@pytest.mark.parametrize("arch", ["resnet50", "vgg19", "convnext_tiny"])
@pytest.mark.parametrize("channels", [1, 3])
def test_big_backbones_build_and_output_probabilities(arch: str, channels: int) -> None:
    _check_application_model(arch, channels)


def test_registry_and_default() -> None:
    assert DEFAULT_CLASSIFIER_ARCH == "efficientnetb0"
    assert set(CLASSIFIER_BUILDERS) == {
        "efficientnetb0",
        "efficientnetv2b0",
        "resnet50",
        "vgg19",
        "convnext_tiny",
        "small_vit",
        "compact_cnn",
    }
    assert CLASSIFIER_BUILDERS[DEFAULT_CLASSIFIER_ARCH] is build_efficientnetb0


def test_unknown_arch_lists_valid_names() -> None:
    with pytest.raises(ConfigError, match="efficientnetb0") as info:
        build_classifier("efficientnet-b9")
    assert "compact_cnn" in str(info.value) and "efficientnet-b9" in str(info.value)


def test_unknown_option_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="patch_size"):
        build_classifier("compact_cnn", input_shape=(32, 32, 1), patch_size=8)


@pytest.mark.parametrize(
    ("builder", "kwargs", "message"),
    [
        (build_compact_cnn, {"input_shape": (32, 32, 2)}, "1-channel"),
        (build_compact_cnn, {"input_shape": (32, 32)}, "height, width, channels"),
        (build_compact_cnn, {"num_classes": 1}, "num_classes"),
        (build_compact_cnn, {"dropout": 1.0}, "dropout"),
        (build_compact_cnn, {"base_filters": 0}, "base_filters"),
        (build_efficientnetb0, {"input_shape": (16, 16, 1)}, "at least 32"),
        (build_small_vit, {"input_shape": (40, 40, 1)}, "divisible by patch_size"),
        (build_small_vit, {"input_shape": (None, None, 1)}, "known input height"),
        (build_small_vit, {"embed_dim": 30, "num_heads": 4}, "divisible by num_heads"),
        (build_compact_cnn, {"weights": 3}, "weights must be"),
    ],
)
def test_invalid_options(builder, kwargs: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        builder(**kwargs)


@pytest.mark.parametrize("builder", [build_compact_cnn, build_small_vit])
def test_imagenet_refused_for_scratch_models(builder) -> None:
    with pytest.raises(ConfigError, match="No ImageNet weights"):
        builder(input_shape=(32, 32, 1), weights="imagenet")


def test_parameter_counts_of_scratch_models() -> None:
    assert 500_000 <= build_compact_cnn(input_shape=(224, 224, 1)).count_params() <= 1_000_000
    assert 300_000 <= build_small_vit(input_shape=(224, 224, 1)).count_params() <= 1_000_000


# ----------------------------------------------------------------------------- layer names


@pytest.mark.parametrize("arch", sorted(SCRATCH_NAMES))
def test_scratch_models_name_every_layer(fast_models: dict, arch: str) -> None:
    names = [layer.name for layer in fast_models[arch].layers]
    assert len(names) == len(set(names))
    assert names[-4:] == HEAD
    assert not [name for name in names if AUTO_NAME.match(name)]
    assert not [name for name in names[:-4] if not SCRATCH_NAMES[arch].match(name)]


def test_application_model_adds_only_named_adapters(fast_models: dict) -> None:
    model = fast_models["efficientnetb0"]
    names = [layer.name for layer in model.layers]
    assert len(names) == len(set(names))
    assert names[:3] == ["input_image", "gray_to_rgb", "scale_to_255"]
    assert names[-4:] == HEAD
    assert set(names) - set(backbone_layer_names(model)) == {
        "input_image",
        "gray_to_rgb",
        "scale_to_255",
        *HEAD,
    }
    # The backbone is inlined, not nested: its layers are the model's own.
    assert not any(isinstance(layer, keras.Model) for layer in model.layers)
    assert "block1a_dwconv" in names


def test_rgb_input_skips_gray_to_rgb() -> None:
    model = build_compact_cnn(input_shape=(32, 32, 3))
    _check_probabilities(model, (32, 32, 3), 3)
    effnet = build_efficientnetb0(input_shape=(32, 32, 3), num_classes=2)
    assert "gray_to_rgb" not in [layer.name for layer in effnet.layers]
    _check_probabilities(effnet, (32, 32, 3), 2)


# ----------------------------------------------------------------------------- preprocessing


def _preprocessing_model(preprocess) -> keras.Model:
    inputs = keras.Input((8, 8, 3))
    return keras.Model(inputs, preprocess(inputs))


def test_caffe_preprocessing_matches_keras_applications() -> None:
    images = _images((8, 8, 3))
    ours = np.asarray(_preprocessing_model(clf._caffe_preprocess)(images))
    reference = keras.applications.resnet50.preprocess_input(images * 255.0)
    np.testing.assert_allclose(ours, reference, atol=1e-3)
    assert {"rgb_to_bgr", "caffe_mean_subtract"} <= ADAPTER_LAYER_NAMES


def test_reverse_channels_survives_keras_save_and_load(tmp_path: Path) -> None:
    model = _preprocessing_model(clf._caffe_preprocess)
    path = tmp_path / "caffe.keras"
    model.save(path)
    reloaded = keras.saving.load_model(path)
    images = _images((8, 8, 3))
    np.testing.assert_allclose(np.asarray(reloaded(images)), np.asarray(model(images)), atol=1e-5)


# ----------------------------------------------------------------------------- helpers


@pytest.mark.parametrize("arch", sorted(FAST_SHAPES))
def test_logits_model_matches_log_probabilities(fast_models: dict, arch: str) -> None:
    model = fast_models[arch]
    images = _images(FAST_SHAPES[arch], n=3)
    logits = np.asarray(logits_model(model)(images), dtype=np.float64)
    log_probs = np.log(np.asarray(model(images), dtype=np.float64))
    difference = log_probs - logits
    # log softmax(z) = z - logsumexp(z): a constant per row.
    np.testing.assert_allclose(difference, difference[:, :1].repeat(3, axis=1), atol=1e-4)


def test_logits_model_rejects_foreign_model() -> None:
    inputs = keras.Input((4,))
    foreign = keras.Model(inputs, keras.layers.Dense(2, name="out")(inputs))
    with pytest.raises(ModelError, match="logits"):
        logits_model(foreign)
    with pytest.raises(ModelError, match="has no 'logits' layer; it was not built by"):
        penultimate_model(foreign)


def test_penultimate_model_gives_what_the_logits_layer_reads(fast_models: dict) -> None:
    model = next(iter(fast_models.values()))
    images = np.random.default_rng(0).uniform(0, 1, (2, *model.input_shape[1:]))
    features = np.asarray(penultimate_model(model)(images.astype(np.float32)))
    logits = np.asarray(model.get_layer("logits")(features))
    np.testing.assert_allclose(logits, np.asarray(logits_model(model)(images)), atol=1e-4)


@pytest.mark.parametrize(
    ("arch", "expected", "grid"),
    [
        ("efficientnetb0", "top_activation", 1),
        ("compact_cnn", "stage4_relu2", 4),
        ("small_vit", "tokens_to_grid", 4),
    ],
)
def test_last_conv_layer_feeds_grad_cam(fast_models: dict, arch: str, expected: str, grid: int):
    model = fast_models[arch]
    assert last_conv_layer_name(model) == expected
    tap = keras.Model(model.input, [model.get_layer(expected).output, model.output])
    features, probs = tap(_images(FAST_SHAPES[arch]))
    assert features.shape[:3] == (2, grid, grid)
    assert probs.shape == (2, 3)


def test_set_backbone_trainable_two_phases() -> None:
    model = build_compact_cnn(input_shape=(32, 32, 1))
    head_weights = {id(w) for w in model.get_layer("logits").weights}

    assert set_backbone_trainable(model, False) == 0
    assert {id(w) for w in model.trainable_weights} == head_weights

    n_unfrozen = set_backbone_trainable(model, True)
    batchnorms = [
        layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)
    ]
    convs = [layer for layer in model.layers if isinstance(layer, keras.layers.Conv2D)]
    assert n_unfrozen == len(convs)
    assert all(layer.trainable for layer in convs)
    assert batchnorms and not any(layer.trainable for layer in batchnorms)
    assert model.get_layer("logits").trainable

    set_backbone_trainable(model, True, fine_tune_from=0.5)
    backbone = backbone_layer_names(model)
    half = len(backbone) // 2
    assert not any(model.get_layer(name).trainable for name in backbone[:half])
    assert model.get_layer("stage4_conv2").trainable

    set_backbone_trainable(model, True, freeze_batchnorm=False)
    assert all(layer.trainable for layer in batchnorms)


@pytest.mark.parametrize("fraction", [-0.1, 1.0, "half"])
def test_set_backbone_trainable_rejects_bad_fraction(fraction) -> None:
    model = build_compact_cnn(input_shape=(32, 32, 1))
    with pytest.raises(ConfigError, match="fine_tune_from"):
        set_backbone_trainable(model, True, fine_tune_from=fraction)


def test_mixed_precision_keeps_float32_outputs() -> None:
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        model = build_compact_cnn(input_shape=(32, 32, 1))
    finally:
        keras.mixed_precision.set_global_policy("float32")
    assert model.get_layer("stage1_conv1").compute_dtype == "float16"
    assert model.get_layer("logits").compute_dtype == "float32"
    assert model.get_layer("probabilities").compute_dtype == "float32"
    _check_probabilities(model, (32, 32, 1), 3)


# ----------------------------------------------------------------------------- weights


def test_missing_weights_file_names_the_path(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere.weights.h5"
    with pytest.raises(ModelError, match=re.escape(str(missing))):
        build_compact_cnn(input_shape=(32, 32, 1), weights=str(missing))


def test_unreadable_weights_file(tmp_path: Path) -> None:
    junk = tmp_path / "junk.weights.h5"
    junk.write_text("not hdf5")
    with pytest.raises(ModelError, match="not a readable HDF5"):
        build_compact_cnn(input_shape=(32, 32, 1), weights=junk)


def test_whole_model_weights_round_trip(tmp_path: Path) -> None:
    keras.utils.set_random_seed(1)
    source = build_compact_cnn(input_shape=(32, 32, 1))
    path = tmp_path / "cnn.weights.h5"
    source.save_weights(path)
    loaded = build_compact_cnn(input_shape=(32, 32, 1), weights=path)
    for expected, actual in zip(source.get_weights(), loaded.get_weights(), strict=True):
        np.testing.assert_array_equal(expected, actual)


def test_weights_of_another_architecture_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "vit.weights.h5"
    build_small_vit(input_shape=(32, 32, 1)).save_weights(path)
    with pytest.raises(ModelError, match="does not match architecture 'compact_cnn'"):
        build_compact_cnn(input_shape=(32, 32, 1), weights=path)


def test_weights_with_other_shapes_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "cnn3.weights.h5"
    build_compact_cnn(input_shape=(32, 32, 1), num_classes=3).save_weights(path)
    with pytest.raises(ModelError, match="does not match architecture 'compact_cnn'"):
        build_compact_cnn(input_shape=(32, 32, 1), num_classes=2, weights=path)


def test_backbone_weights_file_loads_into_backbone(tmp_path: Path) -> None:
    keras.utils.set_random_seed(2)
    backbone = keras.applications.EfficientNetB0(
        include_top=False, weights=None, input_shape=(32, 32, 3)
    )
    path = tmp_path / "efficientnetb0_notop.weights.h5"
    backbone.save_weights(path)
    model = build_efficientnetb0(input_shape=(32, 32, 1), weights=str(path))
    # Backbone variables come first in the model, then the head's.
    for expected, actual in zip(backbone.get_weights(), model.get_weights(), strict=False):
        np.testing.assert_array_equal(expected, actual)
    with pytest.raises(ModelError, match="does not match architecture 'compact_cnn'"):
        build_compact_cnn(input_shape=(32, 32, 1), weights=path)
