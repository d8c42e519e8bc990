"""An `Embedding` whose lookup reads only the rows it is asked for."""

from __future__ import annotations

from typing import Any

import keras
import tensorflow as tf

from widedeep.distribute import local_variable
from widedeep.layers._packing import expand_valid

__all__ = ["Embedding"]


def _check_valid(inputs: Any, valid: Any) -> None:
    """Raises `ValueError` unless `valid` is None or has the ids' shape."""
    if valid is not None and not tf.TensorShape(valid.shape).is_compatible_with(inputs.shape):
        raise ValueError(
            f"`valid` must have the shape of the ids. Received: inputs.shape={inputs.shape}, "
            f"valid.shape={valid.shape}"
        )


@keras.saving.register_keras_serializable(package="widedeep")
class Embedding(keras.layers.Embedding):
    """Drop-in `keras.layers.Embedding` with a sparse (gather) lookup.

    The stock layer calls `ops.take(self.embeddings, ids)`, which with the TensorFlow backend first
    converts the whole table to a tensor. For a 10^7-row wide table that is a full-table read every
    step, and it makes the table's gradient flow through a dense read. This layer gathers directly on
    the underlying resource variable (`tf.gather` on a `tf.Variable` is a `ResourceGather`), so only the
    requested rows are read and the gradient with respect to the table is a `tf.IndexedSlices` naming
    those rows, which `widedeep.optimizers.Ftrl` / `Adagrad` apply without touching other rows.

    Arguments, weights, masking (`mask_zero`), config and checkpoints are those of
    `keras.layers.Embedding`; outputs are identical. Negative ids wrap around like the stock layer's
    (`-1` is the last row). Where a sparse gather does not apply (LoRA enabled, quantized layers, a
    stateless scope, a backend other than TensorFlow) the stock lookup is used.

    Args:
        input_dim: Integer, the number of rows (vocabulary or hash-bucket count).
        output_dim: Integer, the embedding dimension.
        embeddings_initializer: Initializer of the table. Defaults to `"uniform"`; wide (FTRL) tables
            should use `"zeros"`.
        embeddings_regularizer: Regularizer applied to the table.
        embeddings_constraint: Constraint applied to the table after each update.
        mask_zero: Whether id `0` is padding to be masked.
        weights: Optional initial table, a list with one `(input_dim, output_dim)` array.
        lora_rank: Optional LoRA rank, as in `keras.layers.Embedding`.
        lora_alpha: Optional LoRA scale, as in `keras.layers.Embedding`.
        **kwargs: Base layer arguments (`name`, `dtype`, `trainable`, ...).

    Example:

    >>> import widedeep.layers.embedding as embedding
    >>> wide = embedding.Embedding(10**6, 1, embeddings_initializer="zeros")
    >>> ids = tf.constant([[3, 17], [3, 999_999]], dtype="int64")
    >>> with tf.GradientTape() as tape:
    ...     loss = tf.reduce_sum(wide(ids))
    >>> grad = tape.gradient(loss, wide.trainable_variables)[0]
    >>> isinstance(grad, tf.IndexedSlices), grad.indices.numpy().tolist()
    (True, [3, 17, 3, 999999])
    """

    def __init__(
        self,
        input_dim: int,
        output_dim: int,
        embeddings_initializer: Any = "uniform",
        embeddings_regularizer: Any = None,
        embeddings_constraint: Any = None,
        mask_zero: bool = False,
        weights: Any = None,
        lora_rank: int | None = None,
        lora_alpha: float | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(
            input_dim=input_dim,
            output_dim=output_dim,
            embeddings_initializer=embeddings_initializer,
            embeddings_regularizer=embeddings_regularizer,
            embeddings_constraint=embeddings_constraint,
            mask_zero=mask_zero,
            weights=weights,
            lora_rank=lora_rank,
            lora_alpha=lora_alpha,
            **kwargs,
        )

    def call(self, inputs: Any, valid: Any = None) -> Any:
        """Looks up `inputs`; with `valid`, only the valid positions, zeros elsewhere.

        Args:
            inputs: integer ids of any shape `S`.
            valid: optional bool tensor of shape `S`, `True` where an id is present (e.g. the
                non-padded positions of a sequence). The rows of the other positions are
                zeros, and they are neither read nor in the gradient: a sequence that is
                mostly padding costs the lookup and the sparse update of its items only.

        Returns:
            `S + (output_dim,)` embeddings.
        """
        _check_valid(inputs, valid)
        table = self._resource_table()
        if table is None or isinstance(inputs, tf.SparseTensor):
            outputs = super().call(inputs)
            if valid is not None:
                keep = tf.expand_dims(tf.cast(valid, tf.bool), -1)
                outputs = tf.where(keep, outputs, tf.zeros_like(outputs))
            return outputs
        if inputs.dtype not in (tf.int32, tf.int64):
            inputs = tf.cast(inputs, tf.int32)
        if valid is None:
            return tf.cast(tf.nn.embedding_lookup(table, self._wrapped(inputs)), self.compute_dtype)
        # The valid positions' ids, looked up and put back in place: the gradient names
        # those rows only.
        flat_valid = tf.reshape(tf.cast(valid, tf.bool), [-1])
        ids = tf.boolean_mask(tf.reshape(inputs, [-1]), flat_valid)
        rows = tf.nn.embedding_lookup(table, self._wrapped(ids))
        outputs = expand_valid(rows, flat_valid)
        shape = tf.concat([tf.shape(inputs), [self.output_dim]], axis=0)
        return tf.cast(tf.reshape(outputs, shape), self.compute_dtype)

    def _wrapped(self, ids: tf.Tensor) -> tf.Tensor:
        """Negative ids wrap around, as `ops.take` does in the TensorFlow backend."""
        return tf.where(ids < 0, ids + tf.cast(self.input_dim, ids.dtype), ids)

    def compute_output_spec(self, inputs: Any, valid: Any = None) -> Any:
        _check_valid(inputs, valid)
        return super().compute_output_spec(inputs)

    def _resource_table(self) -> tf.Variable | None:
        """The table as a `tf.Variable` to gather from, or None where only the stock lookup works."""
        if keras.backend.backend() != "tensorflow" or self.lora_enabled:
            return None
        if self.quantization_mode is not None:
            return None
        table = self._embeddings.value
        return local_variable(table) if isinstance(table, tf.Variable) else None
