"""Masked pooling over a sequence axis."""

from __future__ import annotations

from typing import Any

import keras
from keras import ops


def masked_mean(values: Any, mask: Any) -> Any:
    """Mean of `values` `[B, L, d]` over the valid positions of `mask` `[B, L]`; zeros if none.

    Padded positions are replaced by zeros before summing, so even NaN or infinite
    padding never reaches the result or its gradient.
    """
    mask = ops.cast(mask, "bool")
    values = ops.where(ops.expand_dims(mask, -1), values, ops.zeros_like(values))
    count = ops.sum(ops.cast(mask, values.dtype), axis=1, keepdims=True)
    return ops.sum(values, axis=1) / ops.maximum(count, ops.ones_like(count))


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
        return masked_mean(inputs, mask)

    def compute_output_shape(self, input_shape: tuple) -> tuple:
        return (input_shape[0], input_shape[2])

    def compute_mask(self, inputs: Any, mask: Any = None) -> None:
        return None
