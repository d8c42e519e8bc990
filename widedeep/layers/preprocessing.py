"""Small preprocessing layers that Keras does not ship in the form we need."""

from __future__ import annotations

from typing import Any

import keras
import tensorflow as tf


@keras.saving.register_keras_serializable(package="widedeep")
class HashedCross(keras.layers.Layer):
    """Hashes the cross product of two or more integer index features into buckets.

    Unlike `keras.layers.HashedCrossing`, which takes exactly two features, this
    layer takes any number; it uses `tf.sparse.cross_hashed` (FarmHash
    fingerprints of the concatenated values), so the bucket of a combination does
    not depend on the batch and is stable across saves and processes.

    Args:
        num_bins: number of hash buckets.

    Call arguments:
        inputs: a list of at least two int tensors of identical shape `[B]`.

    Returns:
        An `int64` tensor of shape `[B]` with values in `[0, num_bins)`.

    Example:

    ```python
    cross = HashedCross(num_bins=64)
    cross([np.array([1, 2]), np.array([3, 3])])
    ```
    """

    def __init__(self, num_bins: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if not isinstance(num_bins, int) or num_bins < 1:
            raise ValueError(f"`num_bins` must be an int >= 1. Received: num_bins={num_bins}")
        self.num_bins = num_bins

    def call(self, inputs: list[tf.Tensor]) -> tf.Tensor:
        if len(inputs) < 2:
            raise ValueError(f"HashedCross needs at least two inputs. Received: {len(inputs)}")
        columns = [tf.reshape(tf.cast(x, tf.int64), [-1, 1]) for x in inputs]
        crossed = tf.sparse.cross_hashed(columns, num_buckets=self.num_bins)
        return tf.reshape(tf.sparse.to_dense(crossed), tf.shape(inputs[0]))

    def compute_output_shape(self, input_shape: list[tuple]) -> tuple:
        return tuple(input_shape[0])

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "num_bins": self.num_bins}


@keras.saving.register_keras_serializable(package="widedeep")
class Standardize(keras.layers.Layer):
    """`(x - mean) / std` with fixed statistics, turning a `[B]` input into `[B, 1]`.

    Args:
        mean: the training mean.
        std: the training standard deviation (> 0).
    """

    def __init__(self, mean: float = 0.0, std: float = 1.0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if not std > 0:
            raise ValueError(f"`std` must be > 0. Received: std={std}")
        self.mean = float(mean)
        self.std = float(std)

    def call(self, inputs: tf.Tensor) -> tf.Tensor:
        x = tf.cast(tf.reshape(inputs, [-1, 1]), self.compute_dtype)
        return (x - self.mean) / self.std

    def compute_output_shape(self, input_shape: tuple) -> tuple:
        return (input_shape[0], 1)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "mean": self.mean, "std": self.std}
