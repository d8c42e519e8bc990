"""A `Dropout` whose mask costs a fraction of the stock one's random numbers."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import keras
import tensorflow as tf

__all__ = ["Dropout"]


@keras.saving.register_keras_serializable(package="widedeep")
class Dropout(keras.layers.Dropout):
    """Drop-in `keras.layers.Dropout` that draws 8 or 16 random bits per unit instead of a float.

    The stock layer (TensorFlow backend) draws one float32 uniform per unit, i.e. one 32-bit
    Philox output, and on a CPU these random numbers cost more than the matrix product they
    follow. This layer draws the same Philox stream as 32-bit integers and splits each into
    four 8-bit values when `rate` is a multiple of 1/256 (0.5, 0.25, ...), into two 16-bit
    values otherwise. A unit is kept when its value is at least `k = round(rate * 2^bits)`,
    with probability `1 - k / 2^bits`, and scaled by the inverse of that probability: the
    output's expectation equals the input, and the dropped fraction is `rate` to within
    1/131072 (exactly `rate` for multiples of 1/256). The mask is one multiplication, so the
    gradient is the incoming gradient times the same mask.

    Arguments, seeding (`seed`, the layer's `SeedGenerator`), config and `training`
    semantics are those of `keras.layers.Dropout`. With `noise_shape`, or on a backend
    other than TensorFlow, the stock mask is drawn.

    Args:
        rate: fraction of the units to drop, in `[0, 1)`.
        noise_shape: as in `keras.layers.Dropout` (then the stock mask is drawn).
        seed: seed of the layer's random numbers.
        **kwargs: base layer arguments (`name`, `dtype`, ...).

    Example:

    >>> import numpy as np
    >>> layer = Dropout(0.5, seed=1)
    >>> out = layer(np.ones((2, 8), "float32"), training=True)
    >>> sorted(set(np.asarray(out).ravel().tolist())) in ([0.0, 2.0], [0.0], [2.0])
    True
    """

    def __init__(
        self,
        rate: float,
        noise_shape: Sequence[int | None] | None = None,
        seed: int | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(rate, noise_shape=noise_shape, seed=seed, **kwargs)

    def call(self, inputs: Any, training: bool = False) -> Any:
        if not (training and self.rate > 0):
            return inputs
        if self.noise_shape is not None or keras.backend.backend() != "tensorflow":
            return super().call(inputs, training=training)
        bits = self.mask_bits
        levels = 2**bits
        threshold = min(round(self.rate * levels), levels - 1)
        scale = levels / (levels - threshold)
        # Draw [..., ceil(units / per_word)] 32-bit words, split each into `per_word` values.
        per_word = 32 // bits
        shape = tf.shape(inputs)
        units = shape[-1]
        words = tf.random.stateless_uniform(
            tf.concat([shape[:-1], [-(-units // per_word)]], axis=0),
            seed=tf.cast(self.seed_generator.next(), tf.int64),
            minval=None,
            maxval=None,
            dtype=tf.int32,
        )
        values = tf.bitcast(words, tf.uint8 if bits == 8 else tf.uint16)
        values = tf.reshape(values, tf.concat([shape[:-1], [-1]], axis=0))
        if inputs.shape[-1] is None or inputs.shape[-1] % per_word:
            values = values[..., :units]
        mask = tf.where(
            values >= tf.cast(threshold, values.dtype),
            tf.constant(scale, inputs.dtype),
            tf.constant(0.0, inputs.dtype),
        )
        return inputs * mask

    @property
    def mask_bits(self) -> int:
        """Random bits per unit: 8 when `rate` is a multiple of 1/256, else 16."""
        return 8 if float(self.rate * 256).is_integer() else 16
