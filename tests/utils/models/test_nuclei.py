"""Nuclei model builders: shapes, names, registry and bad options."""

from __future__ import annotations

import numpy as np
import pytest

from utils.errors import ConfigError
from utils.models.nuclei import NUCLEI_BUILDERS, build_nuclei_model


@pytest.mark.parametrize("arch", sorted(NUCLEI_BUILDERS))
def test_builders_give_two_maps_in_unit_range(arch: str) -> None:
    model = build_nuclei_model(arch, input_shape=(32, 32, 3), base_filters=4, depth=2)
    out = np.asarray(model(np.random.default_rng(0).random((2, 32, 32, 3), dtype=np.float32)))
    assert out.shape == (2, 32, 32, 2)
    assert out.min() >= 0.0 and out.max() <= 1.0
    names = [layer.name for layer in model.layers]
    assert len(names) == len(set(names))
    for name in ("input_image", "full_conv1", "stem_conv1", "fg_probs", "dist_map", "nuclei_maps"):
        assert name in names
    assert model.name == arch


def test_size_agnostic_model_runs_on_other_sizes() -> None:
    model = build_nuclei_model(input_shape=(None, None, 3), base_filters=4, depth=2)
    assert model(np.zeros((1, 48, 64, 3), np.float32)).shape == (1, 48, 64, 2)


def test_unknown_arch_lists_valid_names() -> None:
    with pytest.raises(ConfigError, match="valid names: nuclei_resunet, nuclei_unet"):
        build_nuclei_model("vgg")


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"input_shape": (32, 32, 1)}, "RGB input"),
        ({"input_shape": (30, 32, 3)}, "multiple of 16"),
        ({"num_classes": 2}, "one foreground class"),
        ({"base_filters": 0}, "base_filters"),
        ({"depth": 0}, "depth"),
        ({"dropout": 1.0}, "dropout"),
        ({"kernel": 5}, "Invalid options"),
    ],
)
def test_bad_options_raise(options: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        build_nuclei_model(**{"input_shape": (32, 32, 3), **options})
