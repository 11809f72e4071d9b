"""Tests of perceptual-hash near-duplicate detection and family grouping."""

from __future__ import annotations

from pathlib import Path

import cv2
import imagehash
import numpy as np
import pytest
from PIL import Image

from utils.datasets.records import DatasetRecord
from utils.errors import ConfigError
from utils.near_duplicates import (
    DEFAULT_PHASH_THRESHOLD,
    FAMILY_GROUP_PREFIX,
    assign_family_groups,
    compute_phashes,
    find_near_duplicate_families,
    hamming_distance_matrix,
    merge_groups,
)


def smooth_scene(rng: np.random.Generator, size: int = 128) -> np.ndarray:
    """A grayscale image with coarse random structure (what phash looks at) plus speckle."""
    coarse = rng.uniform(0, 255, size=(6, 6)).astype(np.float32)
    image = cv2.resize(coarse, (size, size), interpolation=cv2.INTER_CUBIC)
    image += rng.normal(0, 6, size=image.shape)
    return image.clip(0, 255).astype(np.uint8)


def save_png(array: np.ndarray, path: Path) -> Path:
    Image.fromarray(array).save(path)
    return path


def hash_from_bits(bits: list[int]) -> imagehash.ImageHash:
    return imagehash.ImageHash(np.array(bits, dtype=bool).reshape(8, 8))


@pytest.fixture
def scene_files(tmp_path: Path, rng: np.random.Generator) -> list[Path]:
    """Files 0-3 are one scene (copy, noised copy, brighter copy); 4-7 are unrelated scenes."""
    base = smooth_scene(rng)
    noised = (base + rng.normal(0, 8, size=base.shape)).clip(0, 255).astype(np.uint8)
    brighter = (base.astype(np.int16) + 25).clip(0, 255).astype(np.uint8)
    arrays = [base, base.copy(), noised, brighter] + [smooth_scene(rng) for _ in range(4)]
    return [save_png(array, tmp_path / f"img_{index}.png") for index, array in enumerate(arrays)]


def test_compute_phashes_matches_imagehash_on_rgb_and_gray(tmp_path: Path, rng) -> None:
    gray = smooth_scene(rng)
    gray_path = save_png(gray, tmp_path / "gray.png")
    rgb_path = save_png(np.stack([gray] * 3, axis=-1), tmp_path / "rgb.png")
    gray_hash, rgb_hash = compute_phashes([gray_path, rgb_path])
    assert gray_hash == imagehash.phash(Image.open(gray_path))
    assert gray_hash - rgb_hash == 0


def test_compute_phashes_rejects_tiny_hash_size(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="hash_size must be at least 2, got 1"):
        compute_phashes([tmp_path / "x.png"], hash_size=1)


@pytest.mark.parametrize("hash_size", [8, 16])
def test_distance_matrix_matches_imagehash_subtraction(scene_files, hash_size: int) -> None:
    hashes = compute_phashes(scene_files, hash_size=hash_size)
    distances = hamming_distance_matrix(hashes)
    expected = np.array([[first - second for second in hashes] for first in hashes])
    np.testing.assert_array_equal(distances, expected)


def test_distance_matrix_of_nothing_is_empty() -> None:
    assert hamming_distance_matrix([]).shape == (0, 0)


def test_copies_noise_and_brightness_shift_form_one_family(scene_files) -> None:
    families = find_near_duplicate_families(compute_phashes(scene_files))
    assert families == [[0, 1, 2, 3]]


def flipped(bits: list[int], positions: list[int]) -> list[int]:
    return [1 - bit if index in positions else bit for index, bit in enumerate(bits)]


def test_families_are_transitive() -> None:
    base = [1] * 32 + [0] * 32
    bits = [
        [1 - bit for bit in base],  # 64 bits from base
        flipped(base, [0, 1, 32, 33]),  # 4 from base, 2 from item 3
        base,
        flipped(base, [0, 32]),  # 2 from base
    ]
    hashes = [hash_from_bits(item) for item in bits]
    assert hashes[1] - hashes[2] == 4
    # 1 joins 2 through 3 although 1-2 is above the threshold.
    assert find_near_duplicate_families(hashes, threshold=2) == [[1, 2, 3]]
    assert find_near_duplicate_families(hashes, threshold=1) == []


@pytest.mark.parametrize("threshold", [-1, 2.5, True])
def test_bad_threshold_is_a_config_error(threshold) -> None:
    with pytest.raises(ConfigError, match="non-negative integer"):
        find_near_duplicate_families([hash_from_bits([0] * 64)], threshold=threshold)


def test_merge_groups_joins_patients_and_families_transitively() -> None:
    groups = ["p2", "p2", "p1", "p3", "", "p4"]
    # Family links p2 (item 1) with p1 (item 2); the empty group joins p3.
    merged = merge_groups(groups, [[1, 2], [3, 4]])
    assert merged == [
        FAMILY_GROUP_PREFIX + "p1",
        FAMILY_GROUP_PREFIX + "p1",
        FAMILY_GROUP_PREFIX + "p1",
        FAMILY_GROUP_PREFIX + "item:4",
        FAMILY_GROUP_PREFIX + "item:4",
        "p4",
    ]


def test_assign_family_groups_merges_keeps_original_and_is_deterministic(scene_files) -> None:
    records = [
        DatasetRecord(image_path=path, label="benign", group_id=f"busi:benign:{index}")
        for index, path in enumerate(scene_files)
    ]
    assigned = assign_family_groups(records)
    by_path = {record.image_path: record for record in assigned}
    family_ids = {by_path[path].group_id for path in scene_files[:4]}
    assert family_ids == {FAMILY_GROUP_PREFIX + "busi:benign:0"}
    assert [by_path[path].group_id for path in scene_files[4:]] == [
        f"busi:benign:{index}" for index in range(4, 8)
    ]
    assert all(
        record.metadata["original_group_id"] == original.group_id
        for record, original in zip(assigned, records, strict=True)
    )
    reordered = assign_family_groups(records[::-1])
    assert {r.image_path: r.group_id for r in reordered} == {
        r.image_path: r.group_id for r in assigned
    }


def test_assign_family_groups_checks_hash_count(scene_files) -> None:
    records = [DatasetRecord(image_path=path, label=None) for path in scene_files]
    with pytest.raises(ConfigError, match="Got 1 hashes for 8 records"):
        assign_family_groups(records, hashes=compute_phashes(scene_files[:1]))


def test_default_threshold_is_documented_value() -> None:
    assert DEFAULT_PHASH_THRESHOLD == 10


def test_hashes_of_different_sizes_are_a_config_error() -> None:
    mixed = [hash_from_bits([0] * 64), imagehash.ImageHash(np.zeros((16, 16), dtype=bool))]
    with pytest.raises(ConfigError, match=r"same number of bits, got sizes \[64, 256\]"):
        hamming_distance_matrix(mixed)
