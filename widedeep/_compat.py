"""The private Keras APIs that widedeep uses, and only those, in one place.

Everything else in `widedeep` uses public APIs (`tuning`'s one private KerasTuner API is in
`tuning/_compat.py`). Each item below says why no public API serves and the versions it was
checked against: Keras 3.14.0 to 3.15.1 (with TensorFlow 2.18.1 and 2.21.0), which cover the
range pinned in `pyproject.toml`. A Keras upgrade that breaks one of them breaks it here, and
the test suite names which.
"""

from __future__ import annotations

import math
from typing import Any

import keras
import tensorflow as tf

__all__ = [
    "AllReduceHook",
    "ClipGradientsHook",
    "FirstReplicaSymbolicBuild",
    "inputs_per_example",
    "slot_owners",
    "slot_variable",
]


class FirstReplicaSymbolicBuild:
    """`keras.Model` mixin: builds the metrics under a strategy from the first replica's batch.

    `Model.fit` and `evaluate` first build the model, metrics and loss symbolically from one batch
    in the private `_maybe_symbolic_build`. Under a `tf.distribute` strategy Keras averages the
    replicas' batches with `strategy.reduce("MEAN")`, which fails on string features (there is
    no AddN for strings). Shapes and dtypes are all the symbolic build needs, so this takes the
    first replica's batch instead. No public hook runs at that point of `fit`. Checked: Keras
    3.14.0 to 3.15.1 (the epoch iterator yields step numbers, then the data iterator, last).
    """

    def _maybe_symbolic_build(self, iterator: Any = None, data_batch: Any = None) -> None:
        if self._distribute_strategy is None or iterator is None:
            return super()._maybe_symbolic_build(iterator=iterator, data_batch=data_batch)
        strategy = self.distribute_strategy
        for *_, replica_iterator in iterator:
            data_batch = tf.nest.map_structure(
                lambda v: (
                    strategy.experimental_local_results(v)[0]
                    if isinstance(v, tf.distribute.DistributedValues)
                    else v
                ),
                next(replica_iterator),
            )
            break
        with strategy.scope():
            self._symbolic_build(data_batch=data_batch)


class ClipGradientsHook:
    """Optimizer mixin: routes the private `_clip_gradients` step of `apply` to `clip_gradients`.

    `BaseOptimizer.apply` unscales the gradients, then clips them with the private
    `_clip_gradients` before `update_step`; no public method sits between the two, so an optimizer
    that clips `tf.IndexedSlices` without densifying them must override it. Subclasses override
    `clip_gradients` instead; its default is the stock clipping. Checked: Keras 3.14.0 to 3.15.1
    call `self._clip_gradients(grads)` in `apply`, after unscaling and before `update_step`.
    """

    def _clip_gradients(self, grads: list[Any]) -> list[Any]:
        return self.clip_gradients(grads)

    def clip_gradients(self, grads: list[Any]) -> list[Any]:
        """Clips the unscaled gradients by `clipnorm`, `global_clipnorm` or `clipvalue`."""
        return super()._clip_gradients(grads)


class AllReduceHook:
    """Optimizer mixin: routes Keras' private cross-replica sum `_all_reduce_sum_gradients` to `all_reduce_gradients`.

    Under a `tf.distribute` strategy the TensorFlow backend's `apply` sums the gradients across
    the replicas in the private `_all_reduce_sum_gradients`, after clipping and before
    `update_step`, with `ReplicaContext.all_reduce`; that sends a `tf.IndexedSlices` through
    TensorFlow's all-gather whose size depends on the data. Keras 3 has no public switch here
    (tf-keras' `experimental_aggregate_gradients` and `skip_gradients_aggregation` are gone),
    so an optimizer that exchanges its sparse gradients another way must override it.
    Subclasses override `all_reduce_gradients`; its default is the stock sum. Checked: Keras
    3.15.1 calls `self._all_reduce_sum_gradients(grads_and_vars)` in `_backend_update_step`,
    in the replica context, with the backend variables (`keras.Variable.value`).
    """

    def _all_reduce_sum_gradients(self, grads_and_vars: list[Any]) -> list[Any]:
        return self.all_reduce_gradients(grads_and_vars)

    def all_reduce_gradients(self, grads_and_vars: list[Any]) -> list[Any]:
        """Sums the `(gradient, variable)` pairs across the replicas (replica context)."""
        return super()._all_reduce_sum_gradients(grads_and_vars)


def inputs_per_example(layer: keras.layers.Layer) -> int | None:
    """How many values of one example `layer` receives as its first argument, over all its calls.

    For a layer that looks up one row of a table per id (`widedeep.layers.Embedding`, the wide
    branch's `WideLinear`) this bounds the rows one example touches. Keras 3 keeps a layer's
    calls in a functional model only in the private `_inbound_nodes` (the public `layer.input`
    refuses a layer called more than once, as shared embedding tables are). Checked: Keras
    3.15.1 (`Node.arguments.args`).

    Args:
        layer: a layer of a built functional model.

    Returns:
        The sum over its calls of the first argument's values per example (a list argument
        counts each tensor), or None when the layer has no call or a dimension is unknown.
    """
    total = 0
    for node in layer._inbound_nodes:
        if not node.arguments.args:
            return None
        for tensor in keras.tree.flatten(node.arguments.args[0]):
            dims = tuple(tensor.shape)[1:]
            if any(d is None for d in dims):
                return None
            total += math.prod(dims)
    return total or None


def slot_variable(
    optimizer: keras.optimizers.Optimizer, slots: str, variable: keras.Variable
) -> keras.Variable:
    """The slot of `variable` in the built `optimizer`'s per-variable slot list `slots`.

    Keras 3 optimizers have no public slot accessor (tf-keras' `get_slot` is gone); they keep one
    list per slot kind (`_accumulators`, FTRL's `_linears`) indexed by `_get_variable_index`.
    Checked: Keras 3.14.0 to 3.15.1.

    Args:
        optimizer: a built Keras optimizer that trains `variable`.
        slots: the slot kind without its underscore, e.g. `"accumulators"` or `"linears"`.
        variable: one of the variables the optimizer was built on.

    Returns:
        The slot variable.
    """
    return getattr(optimizer, f"_{slots}")[optimizer._get_variable_index(variable)]


_SLOT_LISTS = ("_accumulators", "_linears", "_momentums", "_velocities")
"""Per-variable slot lists of the stock Keras optimizers (ours: accumulators, FTRL's linears)."""


def slot_owners(optimizer: keras.optimizers.Optimizer) -> dict[int, keras.Variable]:
    """`{id(slot variable): model variable}` for the per-variable slots of a built optimizer.

    `optimizer.variables` lists the slots without saying whose they are, and the slot names
    follow no documented scheme; the private `_trainable_variables` and slot lists pair them.
    Checked: Keras 3.14.0 to 3.15.1.

    Args:
        optimizer: a built Keras optimizer.

    Returns:
        The model variable each slot belongs to, keyed by the slot's `id`.
    """
    owners: dict[int, keras.Variable] = {}
    variables = list(optimizer._trainable_variables)
    for attribute in _SLOT_LISTS:
        for variable, slot in zip(variables, getattr(optimizer, attribute, None) or []):
            if slot is not None:
                owners[id(slot)] = variable
    return owners
