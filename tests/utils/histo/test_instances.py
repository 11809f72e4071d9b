"""Distance targets and watershed separation of touching nuclei."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage
from skimage.draw import disk

from utils.errors import ConfigError, ImageDimensionError
from utils.evaluation.nuclei import aggregated_jaccard_index
from utils.histo.instances import (
    WatershedConfig,
    distance_target,
    instances_from_mask,
    separate_instances,
    split_touching_nuclei,
)


def _two_touching_discs() -> np.ndarray:
    labels = np.zeros((64, 64), dtype=np.int32)
    labels[disk((32, 22), 10, shape=labels.shape)] = 1
    labels[disk((32, 40), 10, shape=labels.shape)] = 2  # overlaps: shared border
    return labels


def test_instances_from_mask_uses_4_connectivity() -> None:
    mask = np.zeros((6, 6), bool)
    mask[0, 0] = mask[1, 1] = True  # diagonal neighbours: two nuclei
    mask[4:6, 4:6] = True
    labels = instances_from_mask(mask)
    assert labels.dtype == np.int32 and labels.max() == 3


def test_distance_target_dips_between_touching_nuclei() -> None:
    labels = _two_touching_discs()
    target = distance_target(labels, scale=8.0)
    assert target.dtype == np.float32
    assert target.max() == pytest.approx(1.0)
    assert target[labels == 0].max() == 0.0
    # Between the two centres, the border column is at zero distance, the centres high.
    row = target[32]
    border_column = int(np.flatnonzero((labels[32, :-1] == 1) & (labels[32, 1:] == 2))[0])
    assert row[border_column] == 0.0
    assert row[22] > 0.9 and row[40] > 0.9


def test_separate_instances_splits_touching_nuclei_from_perfect_maps() -> None:
    labels = _two_touching_discs()
    foreground = (labels > 0).astype(np.float32)
    predicted = separate_instances(foreground, distance_target(labels, 12.0))
    assert predicted.max() == 2
    assert aggregated_jaccard_index(labels, predicted) > 0.9


def test_small_nuclei_without_markers_are_kept_and_tiny_specks_dropped() -> None:
    foreground = np.zeros((40, 40), np.float32)
    foreground[5:11, 5:11] = 1.0  # 36 px nucleus, too small to reach the marker threshold
    foreground[30:33, 30:33] = 1.0  # 9 px speck, below min_area
    distance = np.zeros_like(foreground)
    predicted = separate_instances(foreground, distance, WatershedConfig(min_area=20))
    assert predicted.max() == 1
    assert (predicted[5:11, 5:11] == 1).all()
    assert predicted[30:33, 30:33].max() == 0


def _overlapping_discs_with_wide_neck() -> tuple[np.ndarray, np.ndarray]:
    """Two nuclei whose predicted distance stays high across a wide neck (no dip to zero)."""
    mask = np.zeros((64, 64), bool)
    mask[disk((32, 22), 10, shape=mask.shape)] = True
    mask[disk((32, 36), 10, shape=mask.shape)] = True
    distance = np.clip(ndimage.distance_transform_edt(mask) / 12.0, 0, 1).astype(np.float32)
    return mask.astype(np.float32), distance


def test_h_maxima_markers_split_nuclei_whose_distance_plateau_merges() -> None:
    foreground, distance = _overlapping_discs_with_wide_neck()
    # The neck's distance (~7 px) is above the 0.4 threshold: one threshold marker.
    threshold = WatershedConfig(marker_method="threshold", marker_threshold=0.4)
    assert separate_instances(foreground, distance, threshold).max() == 1
    predicted = separate_instances(
        foreground, distance, WatershedConfig(marker_method="h_maxima", marker_h=0.06)
    )
    assert predicted.max() == 2
    left, right = predicted[32, 18], predicted[32, 40]
    assert left != right and 0 not in (left, right)


def test_h_maxima_markers_keep_a_round_nucleus_whole() -> None:
    mask = np.zeros((48, 48), bool)
    mask[disk((24, 24), 11, shape=mask.shape)] = True
    distance = np.clip(ndimage.distance_transform_edt(mask) / 12.0, 0, 1).astype(np.float32)
    config = WatershedConfig(marker_method="h_maxima", marker_h=0.06, marker_sigma=1.0)
    assert separate_instances(mask.astype(np.float32), distance, config).max() == 1


def test_config_round_trip_and_validation() -> None:
    config = WatershedConfig(foreground_threshold=0.4, marker_threshold=0.3)
    assert WatershedConfig.from_dict({**config.to_dict(), "unknown": 1}) == config
    with pytest.raises(ConfigError, match="foreground_threshold"):
        WatershedConfig(foreground_threshold=1.5)
    with pytest.raises(ConfigError, match="min_area"):
        WatershedConfig(min_area=0)
    hmax = WatershedConfig(marker_method="h_maxima", marker_h=0.1, marker_sigma=0.0)
    assert WatershedConfig.from_dict(hmax.to_dict()) == hmax
    with pytest.raises(ConfigError, match="marker_method must be one of threshold, h_maxima"):
        WatershedConfig(marker_method="peaks")
    with pytest.raises(ConfigError, match="marker_h must be in"):
        WatershedConfig(marker_h=0.0)
    with pytest.raises(ConfigError, match="marker_sigma must be >= 0; got -1"):
        WatershedConfig(marker_sigma=-1)


def test_cards_without_marker_method_keep_threshold_markers() -> None:
    """Older cards were tuned with threshold markers, whatever the current default is."""
    config = WatershedConfig.from_dict({"foreground_threshold": 0.5, "marker_threshold": 0.3})
    assert config.marker_method == "threshold" and config.marker_threshold == 0.3


def test_bad_maps_raise() -> None:
    with pytest.raises(ImageDimensionError, match="one shape"):
        separate_instances(np.zeros((4, 4)), np.zeros((4, 5)))
    with pytest.raises(ImageDimensionError, match=r"\(H, W\)"):
        instances_from_mask(np.zeros((4, 4, 3)))
    with pytest.raises(ConfigError, match="scale"):
        distance_target(np.zeros((4, 4), int), scale=0)


def test_split_touching_nuclei_separates_discs_merged_in_a_binary_mask() -> None:
    labels = _two_touching_discs()
    assert instances_from_mask(labels > 0).max() == 1  # the mask merges them
    split = split_touching_nuclei(labels > 0)
    assert split.dtype == np.int32 and split.max() == 2
    assert aggregated_jaccard_index(labels, split) > 0.9
    assert ((split > 0) == (labels > 0)).all()  # every mask pixel stays labelled


def test_split_touching_nuclei_keeps_round_and_tiny_nuclei_whole() -> None:
    mask = np.zeros((64, 64), bool)
    mask[disk((20, 20), 9, shape=mask.shape)] = True
    mask[50, 50] = True  # one pixel: no h-maximum deep enough, kept as its own nucleus
    split = split_touching_nuclei(mask)
    assert split.max() == 2
    assert len(np.unique(split[disk((20, 20), 9, shape=mask.shape)])) == 1


def test_split_touching_nuclei_rejects_bad_options() -> None:
    with pytest.raises(ConfigError, match="h must be positive"):
        split_touching_nuclei(np.ones((8, 8), bool), h=0)
    with pytest.raises(ConfigError, match="sigma=-1"):
        split_touching_nuclei(np.ones((8, 8), bool), sigma=-1)
    with pytest.raises(ImageDimensionError, match=r"\(H, W\)"):
        split_touching_nuclei(np.ones((8, 8, 3), bool))
