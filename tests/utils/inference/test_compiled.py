from __future__ import annotations

import keras
import numpy as np

from utils.inference.compiled import compile_forward


def test_compiled_forward_matches_eager_call_for_any_batch_size() -> None:
    keras.utils.set_random_seed(0)
    inputs = keras.Input((8, 8, 1), name="image")
    features = keras.layers.Conv2D(2, 3, padding="same", name="conv")(inputs)
    model = keras.Model(inputs, keras.layers.GlobalAveragePooling2D(name="pool")(features))
    forward = compile_forward(model, (8, 8, 1))
    for batch_size in (1, 3):
        batch = np.random.default_rng(batch_size).random((batch_size, 8, 8, 1), dtype=np.float32)
        expected = keras.ops.convert_to_numpy(model(batch, training=False))
        np.testing.assert_allclose(forward(batch), expected, rtol=1e-5, atol=1e-6)
