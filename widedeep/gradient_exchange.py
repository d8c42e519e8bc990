"""Summing gradients across replicas with fixed-shape collectives, sparse tables as their touched rows.

Under `tf.distribute` every replica holds a full copy of each table and must apply the same
update. The dense way sums every table, whole, across the replicas each step. Here a table's
`tf.IndexedSlices` gradient is sent as what the replica's batch touched: its row indices and
values, padded to a static bound (`rows`, the ids one replica's batch can look up in that
table) and marked by index `-1` where padded. Every replica sends tensors of the same static
shape, so each collective has a shape fixed when the step is traced, never one that depends on
the data. All tables travel in one `all_gather` (each table's indices, bit for bit, and its
rows, in the values' dtype); each replica drops the padding and keeps the rows of every
replica, repeated ids included, as one `tf.IndexedSlices` that the optimizer de-duplicates
(sums) before its sparse update. Dense gradients and tables without a bound take the replica
context's `all_reduce`.

Example:

```python
# Inside a replica function (`strategy.run`, or `fit`'s train step):
grads_and_vars, sent = sum_across_replicas(grads_and_vars, {table.ref(): 2048})
```
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import tensorflow as tf

__all__ = ["Exchanged", "sum_across_replicas", "sparse_exchange_pays"]

_PADDING = -1
"""Index of a padding row: no table has it, so every replica can drop it after the gather."""


@dataclass(frozen=True)
class Exchanged:
    """What one replica sends for one variable in one step.

    Attributes:
        variable_shape: the shape of the variable (a table is `(rows, dim)`).
        rows: the static row bound of a sparse exchange, None for a dense all-reduce.
        shapes: the static shapes of the tensors sent (indices and values, or the dense gradient).
        nbytes: the bytes of those tensors.
    """

    variable_shape: tuple[int, ...]
    rows: int | None
    shapes: tuple[tuple[int, ...], ...]
    nbytes: int


def sparse_exchange_pays(rows: int, variable_shape: Sequence[int]) -> bool:
    """Whether `rows` padded rows and their int64 indices take fewer bytes than the whole variable.

    Args:
        rows: the static bound on the rows one replica sends.
        variable_shape: the table's shape, `(rows, ...)`, float32.

    Returns:
        True when the sparse exchange sends less than the dense one.
    """
    row_size = math.prod(variable_shape[1:])
    return rows * (8 + 4 * row_size) < variable_shape[0] * 4 * row_size


def sum_across_replicas(
    grads_and_vars: Sequence[tuple[Any, Any]], row_bounds: Mapping[Any, int]
) -> tuple[list[tuple[Any, Any]], list[Exchanged]]:
    """Sums each gradient across the replicas, in the replica context.

    Args:
        grads_and_vars: `(gradient, variable)` pairs; a gradient may be None (kept as None), a
            dense tensor, or a `tf.IndexedSlices`.
        row_bounds: `{variable.ref(): rows}`: the variables whose `tf.IndexedSlices` gradient
            is exchanged as at most `rows` rows (any other sparse gradient is made dense). A
            replica whose gradient has more rows fails the step with an `InvalidArgumentError`
            naming the variable.

    Returns:
        The summed `(gradient, variable)` pairs, in order (the sparse sums are `tf.IndexedSlices`
        whose repeated indices the optimizer must add up), and what this replica sent for each
        variable.
    """
    context = tf.distribute.get_replica_context()
    replicas = context.num_replicas_in_sync
    sparse, dense, sent = [], [], []
    for position, (gradient, variable) in enumerate(grads_and_vars):
        if gradient is None:
            continue
        bound = row_bounds.get(variable.ref())
        if isinstance(gradient, tf.IndexedSlices) and bound is not None:
            sparse.append((position, gradient, variable, bound))
        else:
            dense.append((position, tf.convert_to_tensor(gradient), variable))
    summed = list(grads_and_vars)
    if dense:
        totals = context.all_reduce(tf.distribute.ReduceOp.SUM, [g for _, g, _ in dense])
        for (position, gradient, variable), total in zip(dense, totals):
            summed[position] = (total, variable)
            shape = tuple(variable.shape)  # a densified `IndexedSlices` has no static shape
            nbytes = math.prod(shape) * gradient.dtype.size
            sent.append(Exchanged(shape, None, (shape,), nbytes))
    if sparse:
        # One payload of the values' dtype: each table's int64 indices, bit for bit, then its rows.
        dtype = sparse[0][1].values.dtype
        payload, sizes = [], []
        for _, gradient, variable, bound in sparse:
            row_indices, row_values = _padded_rows(gradient, variable, bound)
            packed = tf.reshape(tf.bitcast(row_indices, dtype), [-1])
            payload += [packed, tf.reshape(tf.cast(row_values, dtype), [-1])]
            sizes += [packed.shape[0], row_values.shape.num_elements()]
            shapes = (tuple(row_indices.shape), tuple(row_values.shape))
            nbytes = _nbytes(row_indices) + _nbytes(row_values)
            sent.append(Exchanged(tuple(variable.shape), bound, shapes, nbytes))
        gathered = context.all_gather(tf.concat(payload, 0), axis=0)
        parts = tf.split(tf.reshape(gathered, [replicas, -1]), sizes, axis=1)
        for i, (position, gradient, variable, _) in enumerate(sparse):
            packed, rows = parts[2 * i], parts[2 * i + 1]
            table_indices = tf.bitcast(tf.reshape(packed, [-1, 8 // dtype.size]), tf.int64)
            table_indices = tf.reshape(table_indices, [-1])
            keep = table_indices != _PADDING
            rows = tf.cast(tf.reshape(rows, [-1, *variable.shape[1:]]), gradient.values.dtype)
            summed[position] = (
                tf.IndexedSlices(
                    tf.boolean_mask(rows, keep),
                    tf.cast(tf.boolean_mask(table_indices, keep), gradient.indices.dtype),
                    gradient.dense_shape,
                ),
                variable,
            )
    return summed, sent


def _padded_rows(
    gradient: tf.IndexedSlices, variable: Any, bound: int
) -> tuple[tf.Tensor, tf.Tensor]:
    """The gradient's indices `[bound]` (int64, `-1` where padded) and rows `[bound, ...]`."""
    count = tf.shape(gradient.indices)[0]
    check = tf.debugging.assert_less_equal(
        count,
        bound,
        message=(
            f"sparse gradient exchange: a replica's batch touched more rows of "
            f"{variable.name} {tuple(variable.shape)} than the bound of {bound}"
        ),
    )
    with tf.control_dependencies([check]):
        padding = bound - count
    indices = tf.pad(tf.cast(gradient.indices, tf.int64), [[0, padding]], constant_values=_PADDING)
    values = tf.reshape(gradient.values, [count, *variable.shape[1:]])
    values = tf.pad(values, [[0, padding]] + [[0, 0]] * (len(variable.shape) - 1))
    indices.set_shape([bound])
    values.set_shape([bound, *variable.shape[1:]])
    return indices, values


def _nbytes(tensor: tf.Tensor) -> int:
    return tensor.shape.num_elements() * tensor.dtype.size
