"""Tests of utils.explain: CAMs that localise the evidence and fail the right sanity checks."""

from __future__ import annotations

import keras
import numpy as np
import pytest
from scipy.stats import spearmanr

from utils.errors import ConfigError, ImageDimensionError, InvalidImageError, ModelError
from utils.explain import (
    CAM_METHODS,
    CamExplainer,
    cam_mass_inside,
    compute_cam,
    explainer_for,
    list_target_layers,
    overlay_heatmap,
)
from utils.explain_targets import default_target_layer
from utils.models.classification import build_classifier, last_conv_layer_name, logits_model
from utils.models.segmentation import build_segmentation_model

SIZE = 32
# The evidence lives in the top-left quadrant: a quarter of the image.
REGION = np.zeros((SIZE, SIZE), dtype=bool)
REGION[: SIZE // 2, : SIZE // 2] = True
POSITIVE = 1


def _blob_images(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Noise images; label 1 iff a bright Gaussian blob sits in the top-left quadrant."""
    images = rng.uniform(0.0, 0.5, size=(n, SIZE, SIZE, 1)).astype(np.float32)
    labels = np.arange(n) % 2
    yy, xx = np.mgrid[:SIZE, :SIZE]
    for index in np.flatnonzero(labels):
        row, col = rng.integers(3, SIZE // 2 - 3, size=2)
        blob = 0.5 * np.exp(-((yy - row) ** 2 + (xx - col) ** 2) / (2 * 3.0**2))
        images[index, ..., 0] = np.clip(images[index, ..., 0] + blob, 0.0, 1.0)
    return images, labels


def _tiny_cnn() -> keras.Model:
    """A small named CNN with the classifiers' head; its last feature map is 8x8."""
    inputs = keras.Input((SIZE, SIZE, 1), name="input_image")
    x = keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="conv1")(inputs)
    x = keras.layers.MaxPooling2D(name="pool1")(x)
    x = keras.layers.Conv2D(16, 3, padding="same", activation="relu", name="conv2")(x)
    x = keras.layers.MaxPooling2D(name="pool2")(x)
    x = keras.layers.Conv2D(16, 3, padding="same", activation="relu", name="conv3")(x)
    x = keras.layers.GlobalAveragePooling2D(name="head_pool")(x)
    logits = keras.layers.Dense(2, name="logits")(x)
    outputs = keras.layers.Softmax(name="probabilities")(logits)
    return keras.Model(inputs, outputs, name="tiny_cnn")


def _accuracy(model: keras.Model, images: np.ndarray, labels: np.ndarray) -> float:
    return float(np.mean(model.predict(images, verbose=0).argmax(axis=1) == labels))


@pytest.fixture(scope="module")
def trained() -> tuple[keras.Model, np.ndarray, float]:
    """The tiny CNN trained on blob images, test positives and its test accuracy."""
    keras.utils.set_random_seed(7)
    rng = np.random.default_rng(7)
    train_x, train_y = _blob_images(rng, 512)
    val_x, val_y = _blob_images(rng, 64)
    test_x, test_y = _blob_images(rng, 64)
    model = _tiny_cnn()
    model.compile(keras.optimizers.Adam(3e-3), loss="sparse_categorical_crossentropy")
    # A GAP network can sit at chance for a few epochs, so train until it has learnt.
    for _ in range(6):
        model.fit(train_x, train_y, batch_size=32, epochs=4, verbose=0)
        if _accuracy(model, val_x, val_y) > 0.95:
            break
    return model, test_x[test_y == POSITIVE][:12], _accuracy(model, test_x, test_y)


@pytest.fixture(scope="module")
def segmenter() -> keras.Model:
    return build_segmentation_model("unet", input_shape=(SIZE, SIZE, 1), base_filters=4, depth=2)


@pytest.fixture(scope="module")
def compact_cnn() -> keras.Model:
    keras.utils.set_random_seed(3)
    return build_classifier("compact_cnn", input_shape=(SIZE, SIZE, 1), num_classes=2)


@pytest.fixture
def image(rng: np.random.Generator) -> np.ndarray:
    return rng.uniform(0.0, 1.0, size=(SIZE, SIZE, 1)).astype(np.float32)


def _rank_correlation(first: np.ndarray, second: np.ndarray) -> float:
    """Spearman correlation of two maps; 0 when one is constant (it ranks nothing)."""
    if np.ptp(first) == 0 or np.ptp(second) == 0:
        return 0.0
    return float(spearmanr(first.ravel(), second.ravel()).statistic)


def _mean_mass_inside(explainer: CamExplainer, images: np.ndarray, method: str) -> float:
    cams = [explainer.explain(image, POSITIVE, method=method) for image in images]
    return float(np.mean([cam_mass_inside(cam, REGION) for cam in cams]))


# ----------------------------------------------------------------------------- trust


def test_tiny_classifier_learns_the_blob_task(trained: tuple) -> None:
    assert trained[2] > 0.9


@pytest.mark.parametrize("method", CAM_METHODS)
def test_cam_puts_its_mass_on_the_evidence(trained: tuple, method: str) -> None:
    model, positives, _ = trained
    # Uniform maps would put 0.25 of their mass in the quadrant.
    assert _mean_mass_inside(CamExplainer(model), positives, method) > 0.5


@pytest.mark.parametrize("method", CAM_METHODS)
def test_cam_passes_model_randomisation_check(trained: tuple, method: str) -> None:
    """Adebayo et al. (2018): a CAM must change when the weights are re-initialised."""
    model, positives, _ = trained
    keras.utils.set_random_seed(11)
    randomised = keras.models.clone_model(model)  # Same graph, fresh initial weights.
    trained_explainer, random_explainer = CamExplainer(model), CamExplainer(randomised)
    correlations = [
        _rank_correlation(
            trained_explainer.explain(image, POSITIVE, method=method),
            random_explainer.explain(image, POSITIVE, method=method),
        )
        for image in positives
    ]
    assert np.mean(correlations) < 0.5
    trained_mass = _mean_mass_inside(trained_explainer, positives, method)
    assert _mean_mass_inside(random_explainer, positives, method) < trained_mass - 0.2


@pytest.mark.filterwarnings("ignore:Please import `zoom`:DeprecationWarning")
@pytest.mark.parametrize("method", ["gradcam", "gradcam++"])
def test_cam_matches_tf_keras_vis_reference(trained: tuple, method: str) -> None:
    from tf_keras_vis.gradcam import Gradcam
    from tf_keras_vis.gradcam_plus_plus import GradcamPlusPlus

    model, positives, _ = trained
    reference_class = Gradcam if method == "gradcam" else GradcamPlusPlus
    reference = reference_class(logits_model(model), clone=False)
    for image in positives[:3]:
        expected = reference(
            lambda logits: logits[:, POSITIVE],
            image[None],
            penultimate_layer="conv3",
            seek_penultimate_conv_layer=False,
            expand_cam=False,
            normalize_cam=False,
        )[0]
        cam = CamExplainer(model).explain(image, POSITIVE, method=method, upsample=False)
        expected = np.asarray(expected)
        np.testing.assert_allclose(cam, expected / expected.max(), atol=1e-4)


def test_all_zero_cam_stays_zero_without_nan() -> None:
    inputs = keras.Input((8, 8, 1), name="input_image")
    features = keras.layers.Conv2D(2, 1, kernel_initializer="zeros", name="features")(inputs)
    pooled = keras.layers.GlobalAveragePooling2D(name="head_pool")(features)
    logits = keras.layers.Dense(2, kernel_initializer="zeros", name="logits")(pooled)
    model = keras.Model(inputs, keras.layers.Softmax(name="probabilities")(logits))
    for method in CAM_METHODS:
        cam = compute_cam(model, np.full((8, 8, 1), 0.5, np.float32), target=0, method=method)
        assert cam.shape == (8, 8)
        assert not np.any(cam)


def test_default_target_is_the_predicted_class(trained: tuple) -> None:
    model, positives, _ = trained
    explainer = CamExplainer(model)
    predicted = int(model.predict(positives[:1], verbose=0)[0].argmax())
    np.testing.assert_array_equal(
        explainer.explain(positives[0]), explainer.explain(positives[0], predicted)
    )


# ----------------------------------------------------------------------------- segmenter


@pytest.mark.parametrize(
    "layer_name", [None, "enc1_relu2", "bottleneck_relu2", "dec2_relu2", "dec1_relu2"]
)
@pytest.mark.parametrize("method", CAM_METHODS)
def test_segmenter_lesion_area_cam(
    segmenter: keras.Model, image: np.ndarray, layer_name: str | None, method: str
) -> None:
    cam = compute_cam(segmenter, image, layer_name=layer_name, target="lesion_area", method=method)
    assert cam.shape == (SIZE, SIZE)
    assert cam.dtype == np.float32
    assert np.all(np.isfinite(cam))
    assert cam.min() >= 0.0
    assert cam.max() <= 1.0


def test_default_layers(segmenter: keras.Model, compact_cnn: keras.Model) -> None:
    assert default_target_layer(segmenter) == "bottleneck_relu2"
    assert default_target_layer(compact_cnn) == last_conv_layer_name(compact_cnn)
    resunet = build_segmentation_model("attention_resunet", input_shape=(16, 16, 1), depth=2)
    assert default_target_layer(resunet) == "bottleneck_out_relu"


def test_list_target_layers_is_spatial_and_ordered(
    segmenter: keras.Model, compact_cnn: keras.Model
) -> None:
    names = list_target_layers(segmenter)
    assert names[0] == "enc1_conv1"
    assert names[-2:] == ["seg_logits", "seg_probs"]
    assert names.index("bottleneck_relu2") < names.index("dec1_relu2")
    classifier_names = list_target_layers(compact_cnn)
    assert "input_image" not in classifier_names
    assert classifier_names[-1] == last_conv_layer_name(compact_cnn)
    model_layers = [layer.name for layer in compact_cnn.layers]
    assert classifier_names == sorted(classifier_names, key=model_layers.index)
    assert all(len(compact_cnn.get_layer(name).output.shape) == 4 for name in classifier_names)


# ----------------------------------------------------------------------------- bad input


def test_unknown_layer_lists_valid_layers(compact_cnn: keras.Model, image: np.ndarray) -> None:
    with pytest.raises(ConfigError, match=r"'no_such_layer'.*valid layers.*stage4_relu2"):
        compute_cam(compact_cnn, image, layer_name="no_such_layer", target=0)
    with pytest.raises(ConfigError, match="valid layers"):  # Not spatial: no CAM.
        compute_cam(compact_cnn, image, layer_name="logits", target=0)


def test_unknown_method(compact_cnn: keras.Model, image: np.ndarray) -> None:
    with pytest.raises(ConfigError, match=r"'lime'.*gradcam, gradcam\+\+, scorecam"):
        compute_cam(compact_cnn, image, target=0, method="lime")


@pytest.mark.parametrize("target", [2, -1, True, 1.0, "lesion_area"])
def test_bad_classifier_target(compact_cnn: keras.Model, image: np.ndarray, target: object) -> None:
    with pytest.raises(ConfigError, match="class index from 0 to 1"):
        compute_cam(compact_cnn, image, target=target)


def test_bad_segmenter_target(segmenter: keras.Model, image: np.ndarray) -> None:
    with pytest.raises(ConfigError, match="lesion_area"):
        compute_cam(segmenter, image, target=0)


@pytest.mark.parametrize("shape", [(16, 16, 1), (SIZE, SIZE, 3), (1, SIZE, SIZE, 1), (SIZE,)])
def test_wrong_image_shape(compact_cnn: keras.Model, shape: tuple) -> None:
    with pytest.raises(ImageDimensionError, match=r"shape \(32, 32, 1\)"):
        compute_cam(compact_cnn, np.zeros(shape, np.float32), target=0)


def test_image_must_be_float_in_unit_range(compact_cnn: keras.Model) -> None:
    with pytest.raises(InvalidImageError, match="to_float_batch"):
        compute_cam(compact_cnn, np.zeros((SIZE, SIZE, 1), np.uint8), target=0)
    with pytest.raises(InvalidImageError, match=r"\[0, 1\]"):
        compute_cam(compact_cnn, np.full((SIZE, SIZE, 1), 255.0, np.float32), target=0)


def test_grayscale_image_without_channel_axis(compact_cnn: keras.Model, image: np.ndarray) -> None:
    np.testing.assert_array_equal(
        compute_cam(compact_cnn, image[..., 0], target=1), compute_cam(compact_cnn, image, target=1)
    )


def test_model_with_other_output_is_refused() -> None:
    inputs = keras.Input((8, 8, 1))
    model = keras.Model(inputs, keras.layers.Reshape((64, 1))(inputs))
    with pytest.raises(ModelError, match="classifier output"):
        CamExplainer(model)


# ----------------------------------------------------------------------------- caching


def test_explainer_builds_each_sub_model_once(compact_cnn: keras.Model, image: np.ndarray) -> None:
    explainer = CamExplainer(compact_cnn)
    first = explainer.explain(image, 0)
    graph = explainer._layer_graph(explainer.default_layer)
    second = explainer.explain(image, 0)
    explainer.explain(image, 1, method="gradcam++")  # Another class: same graph, no retrace.
    np.testing.assert_array_equal(first, second)
    assert explainer.submodel_builds == 1
    assert explainer._layer_graph(explainer.default_layer) is graph
    assert graph.activations_and_gradients.experimental_get_tracing_count() == 1
    explainer.explain(image, 0, layer_name="stage3_relu2")
    assert explainer.submodel_builds == 2


def test_compute_cam_reuses_the_shared_explainer(
    compact_cnn: keras.Model, image: np.ndarray
) -> None:
    explainer = explainer_for(compact_cnn)
    builds = explainer.submodel_builds
    compute_cam(compact_cnn, image, target=0, layer_name="stage2_relu2")
    compute_cam(compact_cnn, image, target=1, layer_name="stage2_relu2")
    assert explainer_for(compact_cnn) is explainer
    assert explainer.submodel_builds == builds + 1


# ----------------------------------------------------------------------------- helpers


def test_overlay_heatmap_shapes_and_blending(rng: np.random.Generator) -> None:
    gray = rng.integers(0, 256, size=(40, 50), dtype=np.uint8)
    heatmap = rng.uniform(size=(10, 12)).astype(np.float32)  # Resized to the image size.
    overlay = overlay_heatmap(gray, heatmap)
    assert overlay.shape == (40, 50, 3)
    assert overlay.dtype == np.uint8
    rgb = np.repeat(gray[..., None], 3, axis=2)
    np.testing.assert_array_equal(overlay_heatmap(gray[..., None], heatmap), overlay)
    np.testing.assert_array_equal(overlay_heatmap(rgb, heatmap), overlay)
    np.testing.assert_array_equal(overlay_heatmap(rgb, heatmap, alpha=0.0), rgb)
    hot = overlay_heatmap(rgb, np.ones((40, 50), np.float32), alpha=1.0)
    np.testing.assert_array_equal(hot[0, 0], [128, 0, 0])  # JET's top is dark red.


def test_overlay_heatmap_rejects_bad_input() -> None:
    gray = np.zeros((8, 8), np.uint8)
    with pytest.raises(ConfigError, match="alpha"):
        overlay_heatmap(gray, np.zeros((8, 8)), alpha=1.5)
    with pytest.raises(InvalidImageError, match="uint8"):
        overlay_heatmap(gray.astype(np.float32), np.zeros((8, 8)))
    with pytest.raises(ImageDimensionError, match="2-D"):
        overlay_heatmap(gray, np.zeros((8, 8, 3)))


def test_cam_mass_inside_is_exact() -> None:
    heatmap = np.zeros((4, 4))
    heatmap[0, 0], heatmap[0, 1], heatmap[3, 3] = 1.0, 2.0, 1.0
    region = np.zeros((4, 4), dtype=bool)
    region[:2, :2] = True
    assert cam_mass_inside(heatmap, region) == pytest.approx(0.75)
    assert cam_mass_inside(heatmap, np.ones((4, 4), np.uint8)) == pytest.approx(1.0)
    assert cam_mass_inside(np.zeros((4, 4)), region) == 0.0


def test_cam_mass_inside_rejects_bad_input() -> None:
    with pytest.raises(ImageDimensionError, match="same shape"):
        cam_mass_inside(np.ones((4, 4)), np.ones((4, 5), bool))
    with pytest.raises(InvalidImageError, match="non-negative"):
        cam_mass_inside(-np.ones((4, 4)), np.ones((4, 4), bool))


def test_xla_gradients_fall_back_to_the_plain_graph_when_xla_cannot_compile() -> None:
    import tensorflow as tf

    from utils.explain import _XlaWithFallback

    calls = []

    def xla(*args: object) -> str:
        calls.append("xla")
        raise tf.errors.UnimplementedError(None, None, "no XLA kernel")

    def plain(*args: object) -> str:
        calls.append("plain")
        return "cam"

    fallback = _XlaWithFallback(xla, plain)
    assert fallback(1, 2) == "cam"
    assert fallback(1, 2) == "cam"
    assert calls == ["xla", "plain", "plain"]  # XLA is not retried
