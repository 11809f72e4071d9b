"""A callback that simulates killing a training run in the middle of an epoch."""

from __future__ import annotations

import keras


class CrashAt(keras.callbacks.Callback):
    """Raises ``KeyboardInterrupt`` after ``batch`` of ``epoch``, like a kill mid-epoch."""

    def __init__(self, epoch: int, batch: int) -> None:
        super().__init__()
        self.epoch, self.batch, self._current = epoch, batch, 0

    def on_epoch_begin(self, epoch, logs=None):
        self._current = epoch

    def on_train_batch_end(self, batch, logs=None):
        if self._current == self.epoch and batch == self.batch:
            raise KeyboardInterrupt("killed mid-epoch")
