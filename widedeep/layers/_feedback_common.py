"""Helpers shared by the feedback layers (`FeedbackTransformer`, `ClickAwareAttention`,
`FeedbackInteraction`): masking and argument checks.

Masking convention: a mask is a `[B, L]` tensor, `True` (or non-zero) at valid positions.
Every feedback layer either computes on the valid positions alone, gathered into a packed
`[N, d]` tensor with the batch row of each (`pack_valid`; feedback sequences are mostly
padding, so this is most of the saving), or replaces padded positions by zeros *before* any
computation (`where`, not a multiplication, so even `inf`/`nan` padding cannot leak), masks
attention logits with a large negative number, and pools over valid positions only. Hence no
output depends on the values stored at padded positions, and an all-padding row gives finite
outputs and finite gradients.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import keras
import tensorflow as tf
from keras import ops

from widedeep.errors import UsageError
from widedeep.layers._packing import expand_valid

POOLINGS: tuple[str, ...] = ("mean", "sum", "max", "target")
"""Poolings of `FeedbackTransformer` (and `FeedbackInteraction`) over the valid positions."""


def large_negative(dtype: str) -> float:
    """The logit that masks a position out of a softmax in `dtype`.

    -1e9 overflows float16 to -inf, and a row of -inf gives NaN in softmax.
    """
    return -3e4 if keras.backend.standardize_dtype(dtype) == "float16" else -1e9


def as_bool_mask(mask: Any, values: Any) -> Any:
    """`[B, L]` bool mask (all valid when `mask` is None)."""
    if mask is None:
        return ops.ones(ops.shape(values)[:2], dtype="bool")
    if keras.backend.standardize_dtype(mask.dtype) != "bool":
        mask = ops.greater(mask, 0)
    return mask


def zero_padding(values: Any, mask: Any) -> Any:
    """Replace the items at padded positions of `values` `[B, L, d]` by zeros."""
    return ops.where(ops.expand_dims(mask, -1), values, ops.zeros_like(values))


def pack_valid(values: Any, mask: Any) -> tuple[Any, Any, Any]:
    """The items at the valid positions of `values` `[B, L, d]`, in row-major order.

    Returns:
        `(items [N, d], rows [N], positions [N])`: the `N` valid items, the batch row and
        the sequence position of each (`rows` ascending). Padded items are never read, and
        the gradient with respect to `values` is zero there.
    """
    rows, positions = ops.nonzero(mask)
    shape = ops.shape(values)
    flat = ops.reshape(values, (-1, shape[2]))
    flat_valid = ops.reshape(mask, (-1,))
    flat_index = rows * ops.cast(shape[1], rows.dtype) + positions

    @tf.custom_gradient
    def gather(flat: Any) -> Any:
        def grad(upstream: Any) -> Any:
            # Each position is read once: its gradient is put back in place.
            return expand_valid(upstream, flat_valid)

        return tf.gather(flat, flat_index), grad

    return gather(flat), rows, positions


def unpack(items: Any, mask: Any) -> Any:
    """`pack_valid`'s inverse: packed `items` `[N, d]` back to `[B, L, d]`, zeros at padding."""
    shape = ops.shape(mask)
    dense = expand_valid(items, ops.reshape(mask, (-1,)))
    return ops.reshape(dense, (shape[0], shape[1], ops.shape(items)[-1]))


def row_sum(values: Any, rows: Any, num_rows: Any) -> Any:
    """Sums packed `values` `[N, ...]` per batch row: `[num_rows, ...]`, zeros for no items.

    `rows` must be ascending (as `pack_valid` gives them): a sorted segment sum reduces each
    row's block at once, far cheaper on CPUs than a scatter-add per item.
    """
    summed = tf.math.segment_sum(values, rows)  # [rows[-1] + 1, ...]
    missing = tf.cast(num_rows, tf.int32) - tf.shape(summed)[0]
    padding = tf.concat([[[0, missing]], tf.zeros([tf.rank(values) - 1, 2], tf.int32)], axis=0)
    return tf.pad(summed, padding)


def take_rows(values: Any, rows: Any) -> Any:
    """`values[rows]` (per-row values `[B, ...]` to each item), its gradient a `row_sum`."""

    @tf.custom_gradient
    def gather(values: Any) -> Any:
        def grad(upstream: Any) -> Any:
            return row_sum(upstream, rows, tf.shape(values)[0])

        return tf.gather(values, rows), grad

    return gather(values)


def segment_mean(items: Any, rows: Any, num_rows: Any) -> Any:
    """Mean of packed `items` `[N, d]` within each batch row: `[num_rows, d]`, zeros if none."""
    total = row_sum(items, rows, num_rows)
    count = row_sum(ops.ones_like(items[:, :1]), rows, num_rows)
    return total / ops.maximum(count, ops.ones_like(count))


def segment_softmax(
    scores: Any, rows: Any, num_rows: Any, row_scores: Any = None
) -> tuple[Any, Any]:
    """Softmax of packed `scores` `[N, ...]` within each batch row (`rows` `[N]`, ascending).

    With `row_scores` `[num_rows, ...]`, every row has one more candidate (the target),
    always present. A row without items gets no weights (and, with `row_scores`, weight 1
    on its own candidate). The maximum subtracted for stability is held constant: softmax
    does not depend on it.

    Returns:
        `(weights [N, ...], row_weights [num_rows, ...] or None)`.
    """
    top = ops.segment_max(ops.stop_gradient(scores), rows, num_segments=num_rows)
    if row_scores is not None:
        top = ops.maximum(top, ops.stop_gradient(row_scores))
    exp = ops.exp(scores - ops.take(top, rows, axis=0))
    total = row_sum(exp, rows, num_rows)
    row_weights = None
    if row_scores is not None:
        row_exp = ops.exp(row_scores - top)
        total = total + row_exp
        row_weights = row_exp / total
    return exp / take_rows(total, rows), row_weights


def check_positive_int(name: str, value: Any) -> None:
    """Raises `UsageError` (a `ValueError`) naming argument `name` unless `value` is an int >= 1."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise UsageError(f"`{name}` must be a positive int. Received: {name}={value!r}")


def check_rate(name: str, value: Any) -> None:
    """Raises `UsageError` (a `ValueError`) naming argument `name` unless `value` is a rate in `[0, 1)`."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value < 1.0:
        raise UsageError(f"`{name}` must be a float in [0, 1). Received: {name}={value!r}")


def check_units(name: str, value: Any) -> None:
    """Raises `UsageError` (a `ValueError`) naming argument `name` unless `value` is a non-empty sequence.

    The widths themselves are checked by the `MLP` that takes them.
    """
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence) or not value:
        raise UsageError(
            f"`{name}` must be a non-empty list of positive ints. Received: {name}={value!r}"
        )


def check_pooling(pooling: Any) -> None:
    """Raises `UsageError` (a `ValueError`) unless `pooling` is one of `POOLINGS`."""
    if pooling not in POOLINGS:
        raise UsageError(f"`pooling` must be one of {POOLINGS}. Received: pooling={pooling!r}")


def shared_width(
    layer: str,
    query: tuple[str, tuple[int | None, ...]],
    items: tuple[str, tuple[int | None, ...]],
) -> int:
    """The width `d` of a query `[B, d]` and of items `[B, L, d]`, which must agree.

    Args:
        layer: the checking layer's name, for the message.
        query: `(argument name, shape)` of the query, e.g. `("target", target_shape)`.
        items: `(argument name, shape)` of the items, e.g. `("sequence", sequence_shape)`.

    Returns:
        `d`.

    Raises:
        ValueError: naming both arguments and their shapes, if the ranks are not 2 and 3
            or the widths differ or are unknown.
    """
    (query_name, query_shape), (items_name, items_shape) = query, items
    received = (
        f"Received: {query_name}_shape={tuple(query_shape)}, "
        f"{items_name}_shape={tuple(items_shape)}"
    )
    if len(query_shape) != 2 or len(items_shape) != 3:
        raise ValueError(
            f"{layer} expects {query_name} [batch, d] and {items_name} [batch, length, d]. "
            + received
        )
    width = items_shape[-1]
    if width is None or query_shape[-1] != width:
        raise ValueError(
            f"The {query_name} and the {items_name} must have the same known width d. " + received
        )
    return width
