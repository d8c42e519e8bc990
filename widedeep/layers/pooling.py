"""Masked pooling over a sequence axis."""

from __future__ import annotations

from typing import Any

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="widedeep")
class MaskedMeanPooling(keras.layers.Layer):
    """Mean of the valid positions of a sequence; zeros for a sequence with none.

    Call arguments:
        inputs: `[B, L, D]` item vectors.
        mask: `[B, L]` boolean validity mask.

    Returns:
        `[B, D]`: the mean over valid positions (padded positions never contribute).
    """

    def call(self, inputs: Any, mask: Any = None) -> Any:
        if mask is None:
            return ops.mean(inputs, axis=1)
        weights = ops.expand_dims(ops.cast(mask, inputs.dtype), -1)
        total = ops.sum(ops.where(weights > 0, inputs, 0.0), axis=1)
        count = ops.sum(weights, axis=1)
        return total / ops.maximum(count, 1.0)

    def compute_output_shape(self, input_shape: tuple) -> tuple:
        return (input_shape[0], input_shape[2])

    def compute_mask(self, inputs: Any, mask: Any = None) -> None:
        return None
