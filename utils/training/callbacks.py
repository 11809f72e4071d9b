"""Callbacks shared by every training run: resume, early stopping, logs, best weights."""

from __future__ import annotations

import csv
import time
from pathlib import Path

import keras


def standard_callbacks(
    run_dir: Path,
    *,
    monitor: str | None,
    mode: str = "max",
    patience: int = 10,
    backup_every_steps: int | None = None,
    deadline: float | None = None,
) -> list[keras.callbacks.Callback]:
    """Build the callbacks every training run uses.

    Args:
        run_dir: Folder of this run; receives ``backup/`` (resume state),
            ``best.weights.h5`` and ``history.csv``.
        monitor: Validation metric to watch, e.g. ``"val_dice_coefficient"``; ``None``
            for a final fit on all data (no validation: no checkpointing of the best
            epoch and no early stopping).
        mode: ``"max"`` or ``"min"`` for ``monitor``.
        patience: Epochs without improvement before stopping.
        backup_every_steps: Save the resume state every this many batches, so a run
            killed mid-epoch loses at most that many steps; ``None`` saves per epoch.
        deadline: Optional ``time.time()`` after which training stops at an epoch end.

    Returns:
        The callbacks: resume (BackupAndRestore), best-weights checkpoint, early
        stopping with best-weight restoration, and a CSV log (appended on resume).
    """
    run_dir.mkdir(parents=True, exist_ok=True)
    backup_dir = run_dir / "backup"
    resuming = (backup_dir / "training_metadata.json").exists()
    callbacks: list[keras.callbacks.Callback] = [
        # BackupAndRestore saves weights + optimizer state and the epoch counter;
        # a restarted fit() continues from there instead of from scratch.
        keras.callbacks.BackupAndRestore(
            backup_dir=str(backup_dir),
            save_freq=backup_every_steps or "epoch",
            delete_checkpoint=False,
        ),
        keras.callbacks.CSVLogger(str(run_dir / "history.csv"), append=resuming),
    ]
    if monitor is not None:
        callbacks += [
            keras.callbacks.ModelCheckpoint(
                str(run_dir / "best.weights.h5"),
                monitor=monitor,
                mode=mode,
                save_best_only=True,
                save_weights_only=True,
                # After a resume, only a better epoch than any logged one may
                # overwrite the best checkpoint.
                initial_value_threshold=best_logged_value(run_dir, monitor, mode)
                if resuming
                else None,
            ),
            keras.callbacks.EarlyStopping(
                monitor=monitor, mode=mode, patience=patience, restore_best_weights=True
            ),
        ]
    if deadline is not None:
        callbacks.append(DeadlineStop(deadline))
    return callbacks


def best_logged_value(run_dir: Path, monitor: str, mode: str) -> float | None:
    """Best value of ``monitor`` in ``run_dir/history.csv`` (``None`` when absent)."""
    history = run_dir / "history.csv"
    if not history.exists():
        return None
    with history.open(newline="") as handle:
        values = [
            float(row[monitor])
            for row in csv.DictReader(handle)
            if row.get(monitor) not in (None, "", "NA")
        ]
    if not values:
        return None
    return max(values) if mode == "max" else min(values)


class DeadlineStop(keras.callbacks.Callback):
    """Stop training cleanly at the end of the first epoch that ends after a deadline.

    For machines lent for a fixed time: the run ends with its best checkpoint and
    logs written instead of being killed mid-epoch.

    Args:
        deadline: ``time.time()`` value after which no new epoch starts.
    """

    def __init__(self, deadline: float) -> None:
        super().__init__()
        self.deadline = deadline
        self.stopped_by_deadline = False

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        """Ask the model to stop when the deadline has passed."""
        if time.time() >= self.deadline:
            self.stopped_by_deadline = True
            self.model.stop_training = True
