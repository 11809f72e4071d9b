"""Patient-grouped, label-stratified data splits.

Every split here keeps all images of one ``group_id`` (patient, or near-duplicate
family after :func:`utils.near_duplicates.assign_family_groups`) on one side, so no
test image has a twin in training. Records with an empty ``group_id`` are their own
group; a ``None`` label is a stratum of its own.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from utils.datasets.records import DatasetRecord
from utils.errors import ConfigError

Fold = tuple[np.ndarray, np.ndarray]

#: How cross-validation forms folds: ``grouped`` k folds over patient groups, or
#: ``dataset``: one fold per dataset, holding that whole dataset out (another hospital).
CV_SPLITS = ("grouped", "dataset")


def leave_one_dataset_out(datasets: Sequence[str]) -> list[Fold]:
    """Folds that each hold out every image of one dataset.

    Datasets come in sorted name order, so the folds are the same on every run. A
    dataset's patients never appear in another dataset, so groups are never split.

    Args:
        datasets: Dataset name per item.

    Returns:
        One ``(train_idx, val_idx)`` per dataset.

    Raises:
        ConfigError: Fewer than two datasets.
    """
    names = sorted(set(datasets))
    if len(names) < 2:
        raise ConfigError(
            f"Leave-one-dataset-out needs images from at least two datasets; received "
            f"{len(names)} ({', '.join(names) or 'none'}). Pass --data once per dataset."
        )
    array = np.asarray(datasets)
    return [(np.flatnonzero(array != name), np.flatnonzero(array == name)) for name in names]


def effective_group_ids(group_ids: Sequence[str]) -> list[str]:
    """Give every item with an empty group id a group of its own.

    Args:
        group_ids: Group id per item; ``""`` means unknown.

    Returns:
        Group ids where each empty one became the unique ``"item:<index>"``.
    """
    return [group or f"item:{index}" for index, group in enumerate(group_ids)]


def _encode(values: Sequence[object]) -> np.ndarray:
    """Map values (``None`` included) to integer codes in order of first appearance."""
    codes: dict[object, int] = {}
    return np.array([codes.setdefault(value, len(codes)) for value in values], dtype=np.int64)


def _labels_and_groups(
    data: Sequence[DatasetRecord] | Sequence[str | None], groups: Sequence[str] | None
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Resolve the two calling conventions into label codes, group codes and group ids."""
    if not data:
        raise ConfigError("Cannot split an empty dataset: got 0 records or labels.")
    records = [item for item in data if isinstance(item, DatasetRecord)]
    if records and len(records) != len(data):
        raise ConfigError("Got a mix of records and plain labels; pass one kind only.")
    if records:
        if groups is not None:
            raise ConfigError(
                "Got records and a separate groups list; records carry their own group_id, "
                "pass groups only with plain labels."
            )
        labels: list[object] = [record.label for record in records]
        group_ids = [record.group_id for record in records]
    else:
        if groups is None:
            raise ConfigError("Plain labels need a groups list of the same length.")
        labels, group_ids = list(data), list(groups)
    if len(labels) != len(group_ids):
        raise ConfigError(
            f"Got {len(labels)} labels but {len(group_ids)} group ids; need one group per label."
        )
    group_ids = effective_group_ids(group_ids)
    return _encode(labels), _encode(group_ids), group_ids


def grouped_stratified_kfold(
    data: Sequence[DatasetRecord] | Sequence[str | None],
    groups: Sequence[str] | None = None,
    *,
    n_splits: int = 5,
    seed: int = 0,
) -> list[Fold]:
    """Split into k folds that never cut a group and roughly keep label proportions.

    Args:
        data: Either records (labels and groups are read from them) or plain labels.
        groups: Group id per label; only with plain labels.
        n_splits: Number of folds, at least 2 and at most the number of groups.
        seed: Random seed of the group shuffling.

    Returns:
        ``n_splits`` pairs ``(train_indices, test_indices)``; every index is in exactly
        one test fold.

    Raises:
        ConfigError: Bad ``n_splits``, empty input, or mismatched lengths.
    """
    label_codes, group_codes, _ = _labels_and_groups(data, groups)
    n_groups = int(group_codes.max()) + 1
    if isinstance(n_splits, bool) or not isinstance(n_splits, int) or n_splits < 2:
        raise ConfigError(f"n_splits must be an integer of at least 2, got {n_splits!r}.")
    if n_splits > n_groups:
        raise ConfigError(
            f"n_splits={n_splits} is more than the {n_groups} groups (patients); "
            "every fold needs at least one whole group."
        )
    # Imported here: scikit-learn takes seconds to import, and the audit CLI needs none of it.
    from sklearn.model_selection import StratifiedGroupKFold

    splitter = StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=seed)
    placeholder = np.zeros(len(label_codes))
    return [
        (train.astype(np.int64), test.astype(np.int64))
        for train, test in splitter.split(placeholder, label_codes, group_codes)
    ]


def _validate_fractions(val_fraction: float, test_fraction: float) -> None:
    for name, value in (("val_fraction", val_fraction), ("test_fraction", test_fraction)):
        if not 0.0 < value < 1.0:
            raise ConfigError(f"{name} must be strictly between 0 and 1, got {value}.")
    if val_fraction + test_fraction >= 1.0:
        raise ConfigError(
            f"val_fraction + test_fraction must be below 1 to leave training data, got "
            f"{val_fraction} + {test_fraction} = {val_fraction + test_fraction}."
        )


def _assign_groups_greedily(
    group_label_counts: np.ndarray, targets: np.ndarray, order: np.ndarray
) -> np.ndarray:
    """Put each group in the split whose per-label counts it brings closest to target.

    Args:
        group_label_counts: (n_groups, n_labels) images of each label in each group.
        targets: (n_parts, n_labels) wanted images of each label in each part.
        order: Order in which groups are placed.

    Returns:
        Part index of every group.
    """
    current = np.zeros_like(targets)
    assignment = np.empty(len(group_label_counts), dtype=np.int64)
    for group in order:
        counts = group_label_counts[group]
        # Change of the squared distance to target if the group joined each part.
        cost = ((current + counts - targets) ** 2 - (current - targets) ** 2).sum(axis=1)
        part = int(np.argmin(cost))
        assignment[group] = part
        current[part] += counts
    return assignment


def grouped_train_val_test_split(
    data: Sequence[DatasetRecord] | Sequence[str | None],
    groups: Sequence[str] | None = None,
    *,
    val_fraction: float = 0.15,
    test_fraction: float = 0.15,
    seed: int = 0,
) -> tuple[list[int], list[int], list[int]]:
    """Split into train / validation / test without cutting groups, stratified by label.

    Groups are placed one at a time, largest first (ties in a seeded random order),
    into the part whose per-label image counts they bring closest to
    ``fraction * label count``. This hits the fractions much more precisely than
    carving folds, and keeps each part's label mix close to the whole.

    Args:
        data: Either records (labels and groups are read from them) or plain labels.
        groups: Group id per label; only with plain labels.
        val_fraction: Wanted share of images in validation, in (0, 1).
        test_fraction: Wanted share of images in test, in (0, 1).
        seed: Random seed of the group order.

    Returns:
        Sorted index lists ``(train, val, test)``; together they cover every index once.

    Raises:
        ConfigError: Fractions out of range, fewer than 3 groups, empty input,
            mismatched lengths, or a part left empty because groups are too large.
    """
    _validate_fractions(val_fraction, test_fraction)
    label_codes, group_codes, _ = _labels_and_groups(data, groups)
    n_groups = int(group_codes.max()) + 1
    if n_groups < 3:
        raise ConfigError(
            f"A train/val/test split needs at least 3 groups (patients), got {n_groups}."
        )
    n_labels = int(label_codes.max()) + 1
    group_label_counts = np.zeros((n_groups, n_labels), dtype=np.float64)
    np.add.at(group_label_counts, (group_codes, label_codes), 1.0)
    fractions = np.array([1.0 - val_fraction - test_fraction, val_fraction, test_fraction])
    targets = fractions[:, None] * np.bincount(label_codes, minlength=n_labels)[None, :]
    shuffled = np.random.default_rng(seed).permutation(n_groups)
    sizes = group_label_counts.sum(axis=1)
    order = shuffled[np.argsort(-sizes[shuffled], kind="stable")]
    part_of_item = _assign_groups_greedily(group_label_counts, targets, order)[group_codes]
    train, val, test = (np.flatnonzero(part_of_item == part).tolist() for part in range(3))
    parts = {"train": train, "val": val, "test": test}
    empty = [name for name, indices in parts.items() if not indices]
    if empty:
        raise ConfigError(
            f"The {', '.join(empty)} part came out empty: {n_groups} groups are too few or "
            "too unequal for these fractions; use larger fractions or more data."
        )
    return train, val, test


def leaked_groups(group_ids: Sequence[str], *index_sets: Sequence[int]) -> set[str]:
    """Return the group ids that occur in more than one of ``index_sets``.

    Args:
        group_ids: Group id per item (empty = own group).
        *index_sets: Disjoint index lists, e.g. train and test.

    Returns:
        Group ids found on two sides or more; empty when the split is clean.
    """
    resolved = effective_group_ids(group_ids)
    seen: dict[str, int] = {}
    leaked: set[str] = set()
    for side, indices in enumerate(index_sets):
        for index in indices:
            group = resolved[int(index)]
            if seen.setdefault(group, side) != side:
                leaked.add(group)
    return leaked
