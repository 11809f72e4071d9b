"""Reading ``--augment NAME=VALUE`` settings into an AugmentConfig."""

from __future__ import annotations

import pytest

from utils.augment_config import AugmentConfig, augment_with_overrides
from utils.errors import ConfigError


def test_settings_are_read_as_the_type_of_each_field() -> None:
    config = augment_with_overrides(
        AugmentConfig(),
        [
            "contrast_range=0.6,1.4",
            "brightness_delta=0.2",
            "enabled=FALSE",
            "fill_mode=reflect",
            "max_rotation_degrees = 5",
        ],
    )
    assert config.contrast_range == (0.6, 1.4)
    assert config.brightness_delta == 0.2
    assert config.enabled is False
    assert config.fill_mode == "reflect"
    assert config.max_rotation_degrees == 5.0
    assert config.speckle_std == AugmentConfig().speckle_std


def test_no_settings_keep_the_base() -> None:
    base = AugmentConfig(speckle_std=0.3)
    assert augment_with_overrides(base, []) == base


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ("speckle_std", "takes NAME=VALUE; received 'speckle_std'"),
        ("speckle_std=", "takes NAME=VALUE"),
        ("gamma=0.5", "'gamma' is not an augmentation setting; valid names are enabled, "),
        ("contrast_range=1.2", "contrast_range takes two numbers as LOW,HIGH; received '1.2'"),
        ("brightness_delta=high", "brightness_delta takes a number; received 'high'"),
        ("enabled=yes", "enabled takes true or false; received 'yes'"),
        ("brightness_delta=5", "brightness_delta must be between 0.0 and 1.0, got 5.0"),
        ("scale_range=1.2,0.8", r"scale_range must be \(low, high\)"),
        ("fill_mode=wrap", "fill_mode 'wrap' is not supported"),
    ],
)
def test_bad_settings_are_refused(setting: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        augment_with_overrides(AugmentConfig(), [setting])
