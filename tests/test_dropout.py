"""Dropout: the kept fraction, the scale, the gradient and the seed stream of the cheap mask."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

from widedeep.layers.dropout import Dropout


@pytest.mark.parametrize(
    ("rate", "bits", "kept_scale"),
    [(0.5, 8, 2.0), (0.25, 8, 4 / 3), (0.3, 16, 65536 / (65536 - 19661))],
)
def test_drops_rate_of_the_units_and_keeps_the_expectation(rate, bits, kept_scale):
    layer = Dropout(rate, seed=3)
    assert layer.mask_bits == bits
    inputs = np.ones((2000, 130), "float32")  # 130 units: not a multiple of 4 or 2 per word
    outputs = np.asarray(layer(inputs, training=True))
    kept = outputs != 0
    np.testing.assert_allclose(outputs[kept], kept_scale, rtol=1e-6)
    # 260,000 units: the dropped fraction's standard error is under 0.001.
    assert abs((~kept).mean() - rate) < 0.004
    assert abs(outputs.mean() - 1.0) < 0.01
    # Rows and columns are not correlated: every column drops about `rate` of its rows.
    assert np.abs((~kept).mean(axis=0) - rate).max() < 0.06


def test_identity_outside_training_and_new_masks_each_call():
    layer = Dropout(0.5, seed=1)
    inputs = np.arange(1, 49, dtype="float32").reshape(6, 8)
    np.testing.assert_array_equal(layer(inputs, training=False), inputs)
    first, second = (np.asarray(layer(inputs, training=True)) for _ in range(2))
    assert (first != second).any()


def test_gradient_is_the_same_mask():
    layer = Dropout(0.5, seed=2)
    inputs = tf.constant(np.random.default_rng(0).normal(size=(16, 12)).astype("float32"))
    with tf.GradientTape() as tape:
        tape.watch(inputs)
        outputs = layer(inputs, training=True)
    gradient = tape.gradient(outputs, inputs).numpy()
    np.testing.assert_allclose(gradient, np.where(outputs.numpy() != 0, 2.0, 0.0))


def test_same_seed_same_masks_and_config_round_trip():
    inputs = np.ones((4, 32), "float32")
    masks = [np.asarray(Dropout(0.5, seed=7)(inputs, training=True)) for _ in range(2)]
    np.testing.assert_array_equal(*masks)
    restored = Dropout.from_config(Dropout(0.3, seed=7, name="d").get_config())
    assert (restored.rate, restored.seed, restored.name) == (0.3, 7, "d")
    assert keras.saving.get_registered_object("widedeep>Dropout") is Dropout
