"""MLP: a numpy forward pass with the layer's own weights, options and config."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from widedeep.layers.mlp import MLP


@pytest.fixture(autouse=True)
def _seed():
    keras.utils.set_random_seed(0)


def relu(x: np.ndarray) -> np.ndarray:
    return np.maximum(x, 0.0)


def test_matches_numpy_forward_pass():
    mlp = MLP(hidden_units=[5, 3], output_units=2)
    inputs = np.random.default_rng(0).normal(size=(4, 6)).astype("float32")
    outputs = mlp(inputs)
    w0, b0 = (v.numpy() for v in (mlp.hidden_layers[0].kernel, mlp.hidden_layers[0].bias))
    w1, b1 = (v.numpy() for v in (mlp.hidden_layers[1].kernel, mlp.hidden_layers[1].bias))
    wo, bo = (v.numpy() for v in (mlp.output_layer.kernel, mlp.output_layer.bias))
    expected = relu(relu(inputs @ w0 + b0) @ w1 + b1) @ wo + bo
    np.testing.assert_allclose(outputs, expected, rtol=1e-5, atol=1e-6)


def test_without_projection_returns_last_hidden_layer():
    mlp = MLP(hidden_units=[8, 4], activation="tanh")
    outputs = mlp(np.ones((2, 3), dtype="float32"))
    assert outputs.shape == (2, 4)
    assert mlp.output_layer is None
    assert np.all(np.abs(outputs) <= 1.0)  # tanh is the last operation


def test_applies_to_the_last_axis_of_3d_inputs():
    mlp = MLP(hidden_units=[4], output_units=1)
    inputs = np.random.default_rng(1).normal(size=(2, 5, 3)).astype("float32")
    outputs = mlp(inputs).numpy()
    assert outputs.shape == (2, 5, 1)
    row_by_row = np.stack([mlp(inputs[:, i]).numpy() for i in range(5)], axis=1)
    np.testing.assert_allclose(outputs, row_by_row, rtol=1e-6, atol=1e-6)


def test_output_activation():
    mlp = MLP(hidden_units=[], output_units=1, output_activation="sigmoid")
    inputs = np.random.default_rng(2).normal(size=(3, 2)).astype("float32")
    outputs = mlp(inputs).numpy()
    w, b = mlp.output_layer.kernel.numpy(), mlp.output_layer.bias.numpy()
    np.testing.assert_allclose(outputs, 1 / (1 + np.exp(-(inputs @ w + b))), rtol=1e-5)


def test_batch_norm_in_inference_uses_moving_statistics():
    mlp = MLP(hidden_units=[3], use_batch_norm=True)
    inputs = np.random.default_rng(3).normal(size=(4, 2)).astype("float32")
    outputs = mlp(inputs, training=False).numpy()
    dense = mlp.hidden_layers[0]
    assert dense.bias is None  # batch norm's shift replaces the bias
    epsilon = mlp.batch_norms[0].epsilon
    # Fresh moving statistics: mean 0, variance 1, gamma 1, beta 0.
    expected = relu(inputs @ dense.kernel.numpy() / np.sqrt(1.0 + epsilon))
    np.testing.assert_allclose(outputs, expected, rtol=1e-5, atol=1e-6)


def test_dropout_only_in_training():
    mlp = MLP(hidden_units=[64], dropout=0.5)
    inputs = np.ones((8, 4), dtype="float32")
    np.testing.assert_array_equal(mlp(inputs, training=False), mlp(inputs, training=False))
    assert not np.allclose(mlp(inputs, training=True), mlp(inputs, training=False))


def test_equal_layers_start_from_different_kernels():
    mlp = MLP(hidden_units=[4, 4, 4])
    mlp(np.zeros((1, 4), dtype="float32"))
    kernels = [layer.kernel.numpy() for layer in mlp.hidden_layers[1:]]
    assert not np.allclose(kernels[0], kernels[1])


def test_config_round_trip_gives_same_outputs():
    mlp = MLP(hidden_units=[4, 2], dropout=0.1, use_batch_norm=True, output_units=1, name="deep")
    inputs = np.random.default_rng(4).normal(size=(3, 5)).astype("float32")
    outputs = mlp(inputs)
    clone = MLP.from_config(mlp.get_config())
    clone(inputs)
    clone.set_weights(mlp.get_weights())
    assert clone.get_config() == mlp.get_config()
    np.testing.assert_allclose(clone(inputs), outputs, rtol=1e-6)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"hidden_units": "32"}, "hidden_units"),
        ({"hidden_units": [32, 0]}, "hidden_units"),
        ({"hidden_units": []}, "at least one layer"),
        ({"hidden_units": [8], "output_units": 0}, "output_units"),
        ({"hidden_units": [8], "dropout": 1.0}, "dropout"),
    ],
)
def test_rejects_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        MLP(**kwargs)
