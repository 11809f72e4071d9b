"""Augmentation settings shared by every training back end.

Kept free of TensorFlow so that a machine running Keras on JAX (no ``tf.data``) can
read the same settings; :mod:`utils.augment` implements them in ``tf.data`` and
:mod:`utils.training.feeds` with Keras preprocessing layers.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, fields, replace
from typing import Final

from utils.errors import ConfigError

#: How areas outside the source image are filled after rotation, zoom-out or shift.
FILL_MODES: Final = ("constant", "reflect", "nearest")


@dataclass(frozen=True)
class AugmentConfig:
    """Augmentation settings; defaults suit B-mode breast ultrasound.

    Attributes:
        enabled: Master switch. When False the augment functions return their inputs.
        horizontal_flip_prob: Probability of a left-right mirror. 0.5 because the
            lateral direction carries no meaning: lesions occur on either side and probe
            orientation is arbitrary.
        vertical_flip_prob: Probability of an up-down mirror. 0.0 because the vertical
            axis is depth: skin and near field are at the top, and posterior acoustic
            shadowing or enhancement below a lesion is a diagnostic cue (shadowing
            suggests malignancy). Flipping would put the shadow above the lesion, which
            no scanner produces.
        max_rotation_degrees: Rotation drawn uniformly from ``[-max, max]``. 10 degrees
            mimics probe tilt; larger angles break the depth direction.
        scale_range: Zoom factor range; > 1 enlarges the content. ``(0.9, 1.1)`` mimics
            depth / zoom settings of different scanners.
        max_translation: Shift drawn uniformly up to this fraction of the image height /
            width in each direction. 0.05 keeps lesions in view.
        brightness_delta: Offset drawn from ``[-delta, delta]`` and added to the [0, 1]
            image; mimics overall gain.
        contrast_range: Factor range for scaling deviations from the image mean; mimics
            dynamic range / time-gain compensation settings.
        speckle_std: Largest standard deviation of multiplicative speckle noise. Each
            image draws its std uniformly from ``[0, speckle_std]`` and is multiplied
            pixel-wise by log-normal noise of mean 1 (positive and right-skewed like
            gamma-distributed speckle intensity). 0 disables it.
        elastic_probability: Probability of a smooth elastic warp, which mimics tissue
            compression by the probe.
        elastic_alpha: Peak displacement of the elastic warp as a fraction of the shorter
            image side (0.02 is about 5 px at 256x256).
        elastic_sigma: Smoothness of the warp: gaussian sigma of the displacement noise
            as a fraction of the image side. Larger gives broader, gentler bends.
        fill_mode: How pixels that come from outside the image are filled, identically in
            image and mask: ``"constant"`` (zero: black image, background mask; the
            default, as ultrasound already has black areas outside the imaged sector),
            ``"reflect"`` or ``"nearest"`` (edge pixel repeated).
    """

    enabled: bool = True
    horizontal_flip_prob: float = 0.5
    vertical_flip_prob: float = 0.0
    max_rotation_degrees: float = 10.0
    scale_range: tuple[float, float] = (0.9, 1.1)
    max_translation: float = 0.05
    brightness_delta: float = 0.1
    contrast_range: tuple[float, float] = (0.8, 1.2)
    speckle_std: float = 0.1
    elastic_probability: float = 0.3
    elastic_alpha: float = 0.02
    elastic_sigma: float = 0.08
    fill_mode: str = "constant"

    def __post_init__(self) -> None:
        # Lists from YAML/JSON configs become tuples, so the config stays hashable.
        for name in ("scale_range", "contrast_range"):
            value = getattr(self, name)
            if not isinstance(value, tuple | list) or len(value) != 2:
                raise ConfigError(
                    f"AugmentConfig.{name} must be a (low, high) pair, got {value!r}."
                )
            object.__setattr__(self, name, (float(value[0]), float(value[1])))
        for name in ("horizontal_flip_prob", "vertical_flip_prob", "elastic_probability"):
            _check_range(name, getattr(self, name), 0.0, 1.0)
        _check_range("max_rotation_degrees", self.max_rotation_degrees, 0.0, 180.0)
        _check_range("max_translation", self.max_translation, 0.0, 0.5)
        _check_range("brightness_delta", self.brightness_delta, 0.0, 1.0)
        _check_range("speckle_std", self.speckle_std, 0.0, 1.0)
        _check_range("elastic_alpha", self.elastic_alpha, 0.0, 0.25)
        _check_range("elastic_sigma", self.elastic_sigma, 0.01, 0.25)
        _check_pair("scale_range", self.scale_range, 0.1, 10.0)
        _check_pair("contrast_range", self.contrast_range, 0.0, 10.0)
        if self.fill_mode not in FILL_MODES:
            raise ConfigError(
                f"AugmentConfig.fill_mode {self.fill_mode!r} is not supported; "
                f"allowed: {', '.join(FILL_MODES)}."
            )

    @property
    def uses_elastic(self) -> bool:
        """Whether the elastic warp can ever be applied (lets the graph skip it)."""
        return self.elastic_probability > 0.0 and self.elastic_alpha > 0.0


def _check_range(name: str, value: float, low: float, high: float) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ConfigError(f"AugmentConfig.{name} must be a number, got {value!r}.")
    if not low <= value <= high:
        raise ConfigError(f"AugmentConfig.{name} must be between {low} and {high}, got {value}.")


def _check_pair(name: str, pair: tuple[float, float], low: float, high: float) -> None:
    first, second = pair
    if not (low <= first <= second <= high):
        raise ConfigError(
            f"AugmentConfig.{name} must be (low, high) with {low} <= low <= high <= {high}, "
            f"got {pair}."
        )


def _parse_setting(name: str, text: str, default: object) -> object:
    """``text`` read as the type of the setting's default (bool, number, pair, string)."""
    if isinstance(default, bool):
        if text.lower() not in ("true", "false"):
            raise ConfigError(f"--augment {name} takes true or false; received {text!r}.")
        return text.lower() == "true"
    try:
        if isinstance(default, tuple):
            parts = [float(part) for part in text.split(",")]
            if len(parts) != 2:
                raise ValueError
            return (parts[0], parts[1])
        if isinstance(default, int | float):
            return float(text)
    except ValueError:
        shape = "two numbers as LOW,HIGH" if isinstance(default, tuple) else "a number"
        raise ConfigError(f"--augment {name} takes {shape}; received {text!r}.") from None
    return text


def augment_with_overrides(base: AugmentConfig, settings: Sequence[str]) -> AugmentConfig:
    """``base`` with ``NAME=VALUE`` settings (as given to ``--augment``) applied.

    Values are read as the type of the setting: ``true``/``false``, a number, ``LOW,HIGH``
    for the ranges, or a word for ``fill_mode``; the result is validated as usual.

    Raises:
        ConfigError: A setting is not ``NAME=VALUE``, names no setting, or its value is
            of the wrong type or out of range.
    """
    names = [field.name for field in fields(AugmentConfig)]
    changes: dict[str, object] = {}
    for setting in settings:
        name, equals, text = setting.partition("=")
        name = name.strip()
        if not equals or not text.strip():
            raise ConfigError(f"--augment takes NAME=VALUE; received {setting!r}.")
        if name not in names:
            raise ConfigError(
                f"--augment {name!r} is not an augmentation setting; valid names are "
                f"{', '.join(names)}."
            )
        changes[name] = _parse_setting(name, text.strip(), getattr(base, name))
    return replace(base, **changes)
