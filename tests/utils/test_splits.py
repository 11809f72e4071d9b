"""Tests of grouped, stratified splits: no patient ever lands on two sides."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from utils.datasets.records import DatasetRecord
from utils.errors import ConfigError
from utils.splits import (
    effective_group_ids,
    grouped_stratified_kfold,
    grouped_train_val_test_split,
    leaked_groups,
    leave_one_dataset_out,
)

LABELS = ("benign", "malignant", "normal")
LABEL_WEIGHTS = (0.55, 0.3, 0.15)
SEEDS = range(8)


def make_records(seed: int, n_groups: int = 150) -> list[DatasetRecord]:
    """Groups of 1-6 images; most groups have one label, a few mix two (cross-label twins)."""
    rng = np.random.default_rng(seed)
    records = []
    for group in range(n_groups):
        label = str(rng.choice(LABELS, p=LABEL_WEIGHTS))
        for image in range(int(rng.integers(1, 7))):
            image_label = str(rng.choice(LABELS)) if rng.random() < 0.05 else label
            records.append(
                DatasetRecord(
                    image_path=Path(f"g{group}_{image}.png"),
                    label=image_label,
                    group_id=f"patient:{group}",
                )
            )
    return records


def label_shares(labels: list[str | None], indices) -> dict[str | None, float]:
    counts = Counter(labels[index] for index in indices)
    return {label: counts[label] / len(indices) for label in set(labels)}


def assert_shares_close(labels, indices, tolerance: float) -> None:
    overall = label_shares(labels, range(len(labels)))
    part = label_shares(labels, indices)
    for label, share in overall.items():
        assert abs(part[label] - share) <= tolerance, (label, part[label], share)


@pytest.mark.parametrize("seed", SEEDS)
def test_kfold_never_splits_a_group_and_covers_every_index_once(seed: int) -> None:
    records = make_records(seed)
    groups = [record.group_id for record in records]
    labels = [record.label for record in records]
    folds = grouped_stratified_kfold(records, n_splits=5, seed=seed)
    assert len(folds) == 5
    all_test = np.concatenate([test for _, test in folds])
    assert sorted(all_test.tolist()) == list(range(len(records)))
    for train, test in folds:
        assert set(train.tolist()).isdisjoint(test.tolist())
        assert len(train) + len(test) == len(records)
        assert leaked_groups(groups, train, test) == set()
        assert_shares_close(labels, test, tolerance=0.1)


@pytest.mark.parametrize("seed", SEEDS)
def test_train_val_test_never_splits_a_group_and_is_stratified(seed: int) -> None:
    records = make_records(seed)
    groups = [record.group_id for record in records]
    labels = [record.label for record in records]
    train, val, test = grouped_train_val_test_split(records, seed=seed)
    assert sorted(train + val + test) == list(range(len(records)))
    assert leaked_groups(groups, train, val, test) == set()
    for indices, fraction in ((train, 0.7), (val, 0.15), (test, 0.15)):
        assert abs(len(indices) / len(records) - fraction) <= 0.03
        assert_shares_close(labels, indices, tolerance=0.06)


def test_train_val_test_honours_custom_fractions() -> None:
    records = make_records(0, n_groups=300)
    _, val, test = grouped_train_val_test_split(
        records, val_fraction=0.1, test_fraction=0.3, seed=3
    )
    n = len(records)
    assert abs(len(val) / n - 0.1) <= 0.02
    assert abs(len(test) / n - 0.3) <= 0.02


def test_splits_are_reproducible_and_depend_on_the_seed() -> None:
    records = make_records(5)
    assert grouped_train_val_test_split(records, seed=1) == grouped_train_val_test_split(
        records, seed=1
    )
    assert grouped_train_val_test_split(records, seed=1) != grouped_train_val_test_split(
        records, seed=2
    )
    first, again = (grouped_stratified_kfold(records, seed=4) for _ in range(2))
    for (train_a, test_a), (train_b, test_b) in zip(first, again, strict=True):
        np.testing.assert_array_equal(train_a, train_b)
        np.testing.assert_array_equal(test_a, test_b)


def test_plain_labels_with_groups_and_none_label() -> None:
    labels = ["benign", None] * 20
    groups = [f"p{index // 2}" for index in range(40)]
    folds = grouped_stratified_kfold(labels, groups, n_splits=4, seed=0)
    for train, test in folds:
        assert leaked_groups(groups, train, test) == set()
    train, val, test = grouped_train_val_test_split(labels, groups, seed=0)
    assert leaked_groups(groups, train, val, test) == set()
    assert sorted(train + val + test) == list(range(40))


def test_empty_group_ids_are_separate_groups() -> None:
    assert effective_group_ids(["a", "", "a", ""]) == ["a", "item:1", "a", "item:3"]
    labels = ["benign"] * 6
    folds = grouped_stratified_kfold(labels, [""] * 6, n_splits=3)
    assert [len(test) for _, test in folds] == [2, 2, 2]


def test_leaked_groups_reports_groups_on_two_sides() -> None:
    assert leaked_groups(["a", "a", "b", "c"], [0, 2], [1, 3]) == {"a"}


@pytest.mark.parametrize("n_splits", [1, 0, -3, 2.0])
def test_kfold_rejects_too_few_splits(n_splits) -> None:
    with pytest.raises(ConfigError, match="n_splits must be an integer of at least 2"):
        grouped_stratified_kfold(make_records(0), n_splits=n_splits)


def test_kfold_rejects_more_splits_than_groups() -> None:
    labels = ["benign", "malignant"] * 3
    groups = ["a", "a", "b", "b", "c", "c"]
    with pytest.raises(ConfigError, match=r"n_splits=4 is more than the 3 groups"):
        grouped_stratified_kfold(labels, groups, n_splits=4)


@pytest.mark.parametrize(
    ("val_fraction", "test_fraction", "message"),
    [
        (0.0, 0.2, "val_fraction must be strictly between 0 and 1, got 0.0"),
        (0.2, 1.0, "test_fraction must be strictly between 0 and 1, got 1.0"),
        (-0.1, 0.2, "val_fraction must be strictly between 0 and 1"),
        (0.5, 0.5, "must be below 1 to leave training data"),
        (0.6, 0.45, "must be below 1 to leave training data"),
    ],
)
def test_train_val_test_rejects_bad_fractions(val_fraction, test_fraction, message) -> None:
    with pytest.raises(ConfigError, match=message):
        grouped_train_val_test_split(
            make_records(0), val_fraction=val_fraction, test_fraction=test_fraction
        )


def test_train_val_test_needs_three_groups() -> None:
    with pytest.raises(ConfigError, match=r"needs at least 3 groups.*got 2"):
        grouped_train_val_test_split(["benign"] * 4, ["a", "a", "b", "b"])


def test_train_val_test_reports_an_empty_part() -> None:
    # A 5% train share of 5 images is a quarter of an image: every group fits val or test better.
    groups = ["big"] * 2 + ["s1", "s2", "s3"]
    with pytest.raises(ConfigError, match="came out empty"):
        grouped_train_val_test_split(["benign"] * 5, groups, val_fraction=0.45, test_fraction=0.5)


@pytest.mark.parametrize("split", [grouped_stratified_kfold, grouped_train_val_test_split])
def test_length_mismatch_and_bad_calls_are_config_errors(split) -> None:
    with pytest.raises(ConfigError, match="Got 3 labels but 2 group ids"):
        split(["benign"] * 3, ["a", "b"])
    with pytest.raises(ConfigError, match="need a groups list"):
        split(["benign"] * 3)
    with pytest.raises(ConfigError, match="records carry their own group_id"):
        split(make_records(0), ["a"])
    with pytest.raises(ConfigError, match="empty dataset"):
        split([])


def test_leave_one_dataset_out_holds_out_each_dataset_whole_in_name_order() -> None:
    datasets = ["busi", "bus-bra", "busi", "bus-bra", "bus-bra", "site-c"]
    folds = leave_one_dataset_out(datasets)
    held_out = [sorted({datasets[i] for i in val}) for _, val in folds]
    assert held_out == [["bus-bra"], ["busi"], ["site-c"]]
    for train, val in folds:
        assert sorted([*train, *val]) == list(range(len(datasets)))
        assert not {datasets[i] for i in train} & {datasets[i] for i in val}


def test_leave_one_dataset_out_needs_two_datasets() -> None:
    with pytest.raises(ConfigError, match=r"at least two datasets; received 1 \(busi\)"):
        leave_one_dataset_out(["busi", "busi"])
