"""The wide branch: a generalised linear model over sparse one-hot features."""

from __future__ import annotations

from typing import Any

import keras
import tensorflow as tf

from widedeep.layers.embedding import Embedding


@keras.saving.register_keras_serializable(package="widedeep")
class WideLinear(keras.layers.Layer):
    """Linear logit over one-hot encoded categorical, bucketised and crossed features.

    `logit = bias + sum_f w[offset_f + index_f]`: each input is an integer index
    into its own feature's one-hot space; all features share one weight table
    (one row per one-hot position), so a step gathers and updates only the rows
    the batch touches. The table starts at zero, the usual start of FTRL-trained
    linear models (and the condition under which sparse FTRL equals dense FTRL).

    Args:
        cardinalities: number of one-hot positions of each input feature, in input order.

    Call arguments:
        inputs: list of int tensors `[B]`, one per feature, values in `[0, cardinality)`.

    Returns:
        The wide logit, `[B, 1]`.

    References:
        Cheng et al., "Wide & Deep Learning for Recommender Systems", DLRS 2016.
    """

    def __init__(self, cardinalities: list[int], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if not cardinalities or any(not isinstance(c, int) or c < 1 for c in cardinalities):
            raise ValueError(
                f"`cardinalities` must be a non-empty list of ints >= 1. Received: cardinalities={cardinalities}"
            )
        self.cardinalities = list(cardinalities)
        offsets = [0]
        for c in self.cardinalities[:-1]:
            offsets.append(offsets[-1] + c)
        self._offsets = offsets
        self.table = Embedding(
            sum(self.cardinalities), 1, embeddings_initializer="zeros", name="weights"
        )

    def build(self, input_shape: list[tuple]) -> None:
        self.table.build((None, len(self.cardinalities)))
        self.bias = self.add_weight(name="bias", shape=(1,), initializer="zeros")

    def call(self, inputs: list[tf.Tensor]) -> tf.Tensor:
        if len(inputs) != len(self.cardinalities):
            raise ValueError(
                f"WideLinear expects {len(self.cardinalities)} inputs. Received: {len(inputs)}"
            )
        ids = tf.stack(
            [tf.cast(x, "int64") + offset for x, offset in zip(inputs, self._offsets)], axis=1
        )
        weights = self.table(ids)  # [B, F, 1]
        return tf.reduce_sum(weights, axis=1) + self.bias

    def compute_output_shape(self, input_shape: list[tuple]) -> tuple:
        return (input_shape[0][0], 1)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "cardinalities": self.cardinalities}
