"""Small preprocessing layers that Keras does not ship in the form we need."""

from __future__ import annotations

import math
from typing import Any

import keras
import tensorflow as tf


@keras.saving.register_keras_serializable(package="widedeep")
class HashedCross(keras.layers.Layer):
    """Crosses two or more integer index features into `num_bins` buckets.

    Unlike `keras.layers.HashedCrossing`, which takes exactly two features, this
    layer takes any number, and it crosses *exactly* when it can: given the
    inputs' `cardinalities` and `prod(cardinalities) <= num_bins`, the bucket is
    the mixed-radix number `(...(x_1 * c_2 + x_2) * c_3 + ...)`, one bucket per
    combination and no collisions. Otherwise the bucket is the FarmHash64
    fingerprint (`tf.fingerprint`) of the row of int64 indices, modulo
    `num_bins`: stable across batches, saves and processes (on little-endian
    machines, i.e. x86 and ARM). Both are a few element-wise ops on dense tensors.

    Args:
        num_bins: number of buckets.
        cardinalities: the number of values of each input, in input order, if
            known (indices must then lie in `[0, cardinality)`).

    Call arguments:
        inputs: a list of at least two int tensors of identical shape `[B]`.

    Returns:
        An `int64` tensor of shape `[B]` with values in `[0, num_bins)`.

    Example:

    ```python
    cross = HashedCross(num_bins=64, cardinalities=[4, 8])  # 32 <= 64: exact
    cross([np.array([1, 2]), np.array([3, 3])])  # [1 * 8 + 3, 2 * 8 + 3] = [11, 19]
    ```
    """

    def __init__(
        self, num_bins: int, cardinalities: list[int] | None = None, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        if not isinstance(num_bins, int) or num_bins < 1:
            raise ValueError(f"`num_bins` must be an int >= 1. Received: num_bins={num_bins}")
        if cardinalities is not None and (
            len(cardinalities) < 2
            or any(isinstance(c, bool) or not isinstance(c, int) or c < 1 for c in cardinalities)
        ):
            raise ValueError(
                "`cardinalities` must be None or a list of at least two ints >= 1. "
                f"Received: cardinalities={cardinalities}"
            )
        self.num_bins = num_bins
        self.cardinalities = None if cardinalities is None else list(cardinalities)

    @property
    def exact(self) -> bool:
        """Whether every combination of values has its own bucket."""
        return self.cardinalities is not None and math.prod(self.cardinalities) <= self.num_bins

    def call(self, inputs: list[tf.Tensor]) -> tf.Tensor:
        if len(inputs) < 2:
            raise ValueError(f"HashedCross needs at least two inputs. Received: {len(inputs)}")
        if self.cardinalities is not None and len(inputs) != len(self.cardinalities):
            raise ValueError(
                f"HashedCross has {len(self.cardinalities)} cardinalities but received "
                f"{len(inputs)} inputs"
            )
        columns = [tf.cast(x, tf.int64) for x in inputs]
        if self.exact:
            key = columns[0]
            for x, c in zip(columns[1:], self.cardinalities[1:]):
                key = key * c + x
            return key
        fingerprint = tf.bitcast(tf.fingerprint(tf.stack(columns, axis=-1)), tf.int64)
        positive = tf.bitwise.bitwise_and(fingerprint, tf.constant(2**63 - 1, tf.int64))
        return tf.math.floormod(positive, self.num_bins)

    def compute_output_shape(self, input_shape: list[tuple]) -> tuple:
        return tuple(input_shape[0])

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "num_bins": self.num_bins,
            "cardinalities": self.cardinalities,
        }


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
