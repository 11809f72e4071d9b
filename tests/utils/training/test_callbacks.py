from __future__ import annotations

import json
import time
from pathlib import Path

import keras
import numpy as np
import pytest

from tests.crash import CrashAt
from utils.training.callbacks import DeadlineStop, standard_callbacks


def _model() -> keras.Model:
    keras.utils.set_random_seed(0)
    inputs = keras.Input((4,), name="x")
    outputs = keras.layers.Dense(1, name="y")(inputs)
    model = keras.Model(inputs, outputs)
    model.compile(optimizer=keras.optimizers.SGD(0.01), loss="mse")
    return model


def test_run_killed_mid_epoch_resumes_from_backup(tmp_path: Path) -> None:
    x = np.random.default_rng(0).normal(size=(40, 4)).astype("float32")
    y = x.sum(axis=1, keepdims=True)
    model = _model()
    callbacks = standard_callbacks(tmp_path, monitor=None, backup_every_steps=2)
    with pytest.raises(KeyboardInterrupt):
        model.fit(x, y, batch_size=4, epochs=5, verbose=0, callbacks=[*callbacks, CrashAt(2, 5)])
    state = json.loads((tmp_path / "backup" / "training_metadata.json").read_text())
    assert state["epoch"] == 2  # two full epochs done, the third was interrupted
    saved = (tmp_path / "backup" / "latest.weights.h5").stat().st_mtime

    resumed = _model()
    history = resumed.fit(
        x,
        y,
        batch_size=4,
        epochs=5,
        verbose=0,
        callbacks=standard_callbacks(tmp_path, monitor=None, backup_every_steps=2),
    )
    assert len(history.history["loss"]) == 3  # epochs 3..5 only
    assert history.epoch[0] == 2
    assert (tmp_path / "backup" / "latest.weights.h5").stat().st_mtime >= saved


def test_validation_callbacks_keep_best_weights_and_stop_early(tmp_path: Path) -> None:
    names = [type(c).__name__ for c in standard_callbacks(tmp_path, monitor="val_loss", mode="min")]
    assert names == ["BackupAndRestore", "CSVLogger", "ModelCheckpoint", "EarlyStopping"]


def test_deadline_stops_at_epoch_end(tmp_path: Path) -> None:
    x = np.zeros((8, 4), "float32")
    callbacks = standard_callbacks(tmp_path, monitor=None, deadline=time.time() - 1)
    history = _model().fit(x, x[:, :1], epochs=10, verbose=0, callbacks=callbacks)
    assert len(history.history["loss"]) == 1
    assert any(isinstance(c, DeadlineStop) and c.stopped_by_deadline for c in callbacks)


def test_best_logged_value_reads_history_for_resumed_checkpointing(tmp_path: Path) -> None:
    from utils.training.callbacks import best_logged_value

    assert best_logged_value(tmp_path, "val_loss", "min") is None
    rows = "epoch,val_loss,val_dice\n0,0.9,0.5\n1,0.7,NA\n2,0.8,0.6\n"
    (tmp_path / "history.csv").write_text(rows)
    assert best_logged_value(tmp_path, "val_loss", "min") == 0.7
    assert best_logged_value(tmp_path, "val_dice", "max") == 0.6
