"""Sparse-aware FTRL and Adagrad: drop-in `keras.optimizers` whose sparse updates touch only batch rows.

The stock Keras 3 optimizers update every row of a variable on every step, even when the gradient is a
`tf.IndexedSlices` that names a few thousand rows of a 10^7-row wide table. The optimizers here keep the
stock constructors, configs and dense formulas, and add a sparse path: repeated ids are summed first
(`tf.unique` and a segment sum), then the stock formula runs on those rows only (FTRL through
TensorFlow's fused `ResourceSparseApplyFtrlV2` kernel, Adagrad as a gather, the formula and two scatters).
Step time then depends on the batch, not on the table size.

Everything that runs between `apply()` and `update_step()` is kept sparse as well: gradients are
de-duplicated before clipping (so `clipnorm`, `clipvalue` and `global_clipnorm` see the same numbers as on
the dense gradient), `loss_scale_factor` unscaling divides the slice values, and `global_clipnorm` is
computed from the slice values. What remains dense by nature: `weight_decay`, `use_ema`, variable
constraints and `gradient_accumulation_steps` each read or write the whole variable, as in stock Keras.

The defaults are the project's, not Keras': FTRL at learning rate 0.05, Adagrad at 0.01 (the DFN
authors' rate), both with an initial accumulator of 1e-6 instead of 0.1, no L1 or L2. The loss is a
batch mean, so the gradient of one id's row is about `1 / batch_size`; against an accumulator of 0.1
such a row moves by a thousandth of the learning rate per step and an id seen a few times never
learns (on a real log, the wide branch then lost to item popularity). With a tiny accumulator both
optimizers take per-coordinate steps of about the learning rate whatever the gradient's scale, as
FTRL and Adagrad intend. L1 cost AUC on the real log. `docs/design-history.md` has the
measurements. The class signatures are where these values are defined; `OptimizerConfig`,
`WideDeepModel.compile` and the CLI read them from there.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any

import keras
import tensorflow as tf

from widedeep import _compat, gradient_exchange

__all__ = ["Adagrad", "Ftrl", "OptimizerConfig", "deduplicate_indexed_slices"]


def deduplicate_indexed_slices(gradient: tf.IndexedSlices) -> tf.IndexedSlices:
    """Sums the slices of repeated indices so that every index appears once.

    An embedding gradient names a row once per occurrence of its id in the batch. Formulas that square
    the gradient (Adagrad, FTRL) must see the summed gradient of a row, as the dense gradient does.

    Args:
        gradient: A `tf.IndexedSlices`, possibly with repeated indices.

    Returns:
        A `tf.IndexedSlices` with unique indices (in order of first appearance) and the same dense value.

    Example:

    >>> g = tf.IndexedSlices(tf.ones((3, 2)), tf.constant([4, 1, 4]), tf.constant([5, 2]))
    >>> d = deduplicate_indexed_slices(g)
    >>> d.indices.numpy().tolist(), d.values.numpy().tolist()
    ([4, 1], [[2.0, 2.0], [1.0, 1.0]])
    """
    unique_indices, positions = tf.unique(gradient.indices)
    summed_values = _segment_sum(gradient.values, positions, tf.shape(unique_indices)[0])
    return tf.IndexedSlices(summed_values, unique_indices, gradient.dense_shape)


def _segment_sum(values: tf.Tensor, positions: tf.Tensor, num_segments: tf.Tensor) -> tf.Tensor:
    """`tf.math.unsorted_segment_sum(values, positions, num_segments)`, the same sums in the same order.

    For float rows of 2 to 31 values the sum runs as `A^T @ values`, `A` the sparse `[N, U]`
    one-hot matrix of `positions`: TensorFlow's sparse-dense matmul kernel adds the rows one
    after another as the segment sum does (bit-identical results), and faster than the segment
    sum kernel for rows of this width (`docs/performance.md`). At 32 values and more that
    kernel switches to a vectorised path that is slower than the segment sum, and for single
    values (the wide tables) it gains nothing.
    """
    width = values.shape[1:].num_elements()
    if values.dtype not in (tf.float32, tf.float64) or width is None or not 2 <= width < 32:
        return tf.math.unsorted_segment_sum(values, positions, num_segments)
    rows = tf.shape(positions, out_type=tf.int64)[0]
    one_hot = tf.SparseTensor(
        tf.stack([tf.range(rows), tf.cast(positions, tf.int64)], axis=1),
        tf.ones([rows], values.dtype),
        tf.stack([rows, tf.cast(num_segments, tf.int64)]),
    )
    summed = tf.sparse.sparse_dense_matmul(one_hot, tf.reshape(values, [-1, width]), adjoint_a=True)
    return tf.reshape(summed, tf.concat([[num_segments], tf.shape(values)[1:]], axis=0))


class _ScalableIndexedSlices(tf.IndexedSlices):
    """`tf.IndexedSlices` that `BaseOptimizer.apply` can unscale (`grad / loss_scale_factor`).

    Plain `tf.IndexedSlices` has no `/` operator, so stock Keras raises a `TypeError` on sparse gradients
    when `loss_scale_factor` is set. Dividing the values keeps the gradient sparse.
    """

    def __truediv__(self, scale: Any) -> tf.IndexedSlices:
        values = self.values / tf.cast(scale, self.values.dtype)
        return tf.IndexedSlices(values, self.indices, self.dense_shape)


def _deduplicate_after_all_reduce(gradient: tf.IndexedSlices) -> tf.IndexedSlices:
    """`apply` has de-duplicated each replica's slices; an all-reduce concatenates them again."""
    if tf.distribute.get_strategy().num_replicas_in_sync > 1:
        return deduplicate_indexed_slices(gradient)
    return gradient


class _SparseAwareMixin(_compat.ClipGradientsHook, _compat.AllReduceHook):
    """Keeps `tf.IndexedSlices` gradients sparse, unique and correctly clipped up to `update_step`.

    A dense gradient takes the stock `update_step`; a sparse one is de-duplicated once more after a
    cross-replica sum and handed to `_update_rows`, which each optimizer implements.

    Across replicas, once `sparse_exchange_rows` is set (`{variable.ref(): rows}` over the backend
    variables; `WideDeepModel.train_step` sets it), `widedeep.gradient_exchange` sums the
    gradients: those of the variables it names as their touched rows padded to that static
    bound, the others dense. `exchanged` lists what the last traced step sent. Unset, Keras sums
    them.
    """

    sparse_exchange_rows: dict[Any, int] | None = None
    exchanged: list[gradient_exchange.Exchanged] | None = None

    def all_reduce_gradients(self, grads_and_vars: list[Any]) -> list[Any]:
        if self.sparse_exchange_rows is None:
            return super().all_reduce_gradients(grads_and_vars)
        summed, self.exchanged = gradient_exchange.sum_across_replicas(
            grads_and_vars, self.sparse_exchange_rows
        )
        return summed

    def apply(self, grads: list[Any], trainable_variables: list[Any] | None = None) -> None:
        grads = [self._prepare_sparse_gradient(g) for g in grads]
        return super().apply(grads, trainable_variables)

    def _prepare_sparse_gradient(self, gradient: Any) -> Any:
        if not isinstance(gradient, tf.IndexedSlices):
            return gradient
        gradient = deduplicate_indexed_slices(gradient)
        if self.loss_scale_factor is not None:
            gradient = _ScalableIndexedSlices(
                gradient.values, gradient.indices, gradient.dense_shape
            )
        return gradient

    def clip_gradients(self, grads: list[Any]) -> list[Any]:
        # `clipnorm` (tf.clip_by_norm) and `clipvalue` (ops.clip on the values) already keep slices
        # sparse, and are exact because the slices are unique. The stock global norm would densify.
        has_sparse = any(isinstance(g, tf.IndexedSlices) for g in grads)
        if not (has_sparse and self.global_clipnorm and self.global_clipnorm > 0):
            return super().clip_gradients(grads)
        present = [g for g in grads if g is not None]
        squared_norm = tf.add_n(
            [
                tf.reduce_sum(
                    tf.square(
                        tf.cast(g.values if isinstance(g, tf.IndexedSlices) else g, "float32")
                    )
                )
                for g in present
            ]
        )
        norm = tf.sqrt(squared_norm)
        clip_norm = self.global_clipnorm
        # Same expression as keras' `clip_by_global_norm`: NaN scale when the norm is not finite.
        scale = clip_norm * tf.minimum(1.0 / norm, 1.0 / clip_norm) + (norm - norm)

        def _scale(g: Any) -> Any:
            if g is None:
                return None
            if isinstance(g, tf.IndexedSlices):
                values = g.values * tf.cast(scale, g.values.dtype)
                return tf.IndexedSlices(values, g.indices, g.dense_shape)
            return g * tf.cast(scale, g.dtype)

        return [_scale(g) for g in grads]

    def update_step(self, gradient: Any, variable: Any, learning_rate: Any) -> None:
        if not isinstance(gradient, tf.IndexedSlices):
            return super().update_step(gradient, variable, learning_rate)
        gradient = _deduplicate_after_all_reduce(gradient)
        dtype = variable.dtype
        self._update_rows(
            tf.cast(gradient.values, dtype),
            gradient.indices,
            variable,
            tf.cast(learning_rate, dtype),
        )

    def _update_rows(
        self, grad: tf.Tensor, indices: tf.Tensor, variable: Any, lr: tf.Tensor
    ) -> None:
        """Applies the update to the rows `indices` (unique) of `variable` and of its slots."""
        raise NotImplementedError

    @staticmethod
    def _as_tf_variable(variable: Any) -> Any:
        return variable.value if isinstance(variable, keras.Variable) else variable

    def _sparse_rows(self, variable: Any, indices: tf.Tensor) -> tf.Tensor:
        # A ResourceGather reads only `indices`; on the handle, also of a mirrored variable
        # (`tf.gather` would read a mirrored variable whole first).
        handle = self._as_tf_variable(variable).handle
        return tf.raw_ops.ResourceGather(resource=handle, indices=indices, dtype=variable.dtype)

    def _scatter(self, variable: Any, values: tf.Tensor, indices: tf.Tensor) -> None:
        self._as_tf_variable(variable).scatter_update(tf.IndexedSlices(values, indices))


@keras.saving.register_keras_serializable(package="widedeep")
class Ftrl(_SparseAwareMixin, keras.optimizers.Ftrl):
    r"""FTRL-Proximal whose sparse updates touch only the rows in the batch.

    A drop-in for `keras.optimizers.Ftrl`: same arguments, slots (`accumulator`, `linear`) and config,
    with the project's defaults (see the module docstring) for the learning rate and the initial
    accumulator. A dense gradient takes the stock update. A `tf.IndexedSlices` gradient (an embedding or a
    wide table read with a gather, e.g. `widedeep.layers.Embedding`) is de-duplicated, and the stock
    formula is applied to those rows of the variable and both slots, in place, by TensorFlow's fused
    `ResourceSparseApplyFtrlV2` kernel (the same operations in the same order per row):

    ```python
    g = g + 2 * l2_shrinkage * w
    n_new = n + g_raw ** 2
    z = z + g - (n_new ** -lr_power - n ** -lr_power) / lr * w
    w = (clip(z, -l1, l1) - z) / (n_new ** -lr_power / lr + 2 * (l2 + beta / (2 * lr)))
    n = n_new
    ```

    For the rows in the batch the same operations run in the same order as in the stock update, whatever
    the initial values. Rows outside the batch are left alone, whereas the stock dense update rewrites every
    row as `w = (clip(z) - z) / quadratic`. The two agree on untouched rows when `w` is consistent with
    its slots, and always for a zero-initialised table (the FTRL convention, used for our wide tables):
    a never-touched row has `z = 0`, so the dense rewrite gives `w = 0` too. They differ, by design, when
    (a) the table has a non-zero initialiser (stock zeroes every untouched row on the first step; this
    optimizer keeps them), (b) the learning rate changes between steps (stock recomputes `w` of every
    previously touched row with the new `lr`), or (c) `l2_shrinkage_regularization_strength > 0` (stock
    shrinks every previously touched row each step; here shrinkage acts on the active rows only, as the
    Keras docstring describes for sparse inputs and as TensorFlow's `SparseApplyFtrlV2` does).

    Args:
        learning_rate: A float, a `keras.optimizers.schedules.LearningRateSchedule`, or a callable
            taking no arguments. Defaults to `0.05`.
        learning_rate_power: A float `<= 0`; how the per-coordinate learning rate decays. Defaults to
            `-0.5`.
        initial_accumulator_value: The starting value of the accumulators, `>= 0`. Defaults to `1e-6`.
        l1_regularization_strength: A float `>= 0`. Defaults to `0.0`.
        l2_regularization_strength: A float `>= 0` (the stabilising L2 of the paper). Defaults to `0.0`.
        l2_shrinkage_regularization_strength: A float `>= 0`; an L2 penalty added to the loss, applied
            to the active rows only on the sparse path. Defaults to `0.0`.
        beta: A float, the `beta` of the paper. Defaults to `0.0`.
        **kwargs: The base optimizer arguments of `keras.optimizers.Ftrl` (`weight_decay`, `clipnorm`,
            `clipvalue`, `global_clipnorm`, `use_ema`, `ema_momentum`, `ema_overwrite_frequency`,
            `loss_scale_factor`, `gradient_accumulation_steps`, `name`).

    Example:

    >>> import widedeep.optimizers
    >>> optimizer = widedeep.optimizers.Ftrl(learning_rate=0.05, l1_regularization_strength=0.01)
    >>> table = keras.Variable(tf.zeros((10, 1)))  # a zero-initialised wide table
    >>> g = tf.IndexedSlices(tf.ones((3, 1)), tf.constant([2, 2, 7]), tf.constant([10, 1]))
    >>> optimizer.apply([g], [table])
    >>> table.numpy().ravel().nonzero()[0].tolist()
    [2, 7]

    References:
        - [McMahan et al., 2013. Ad Click Prediction: a View from the Trenches](
          https://research.google.com/pubs/archive/41159.pdf)
    """

    def __init__(
        self,
        learning_rate: float | Any = 0.05,
        learning_rate_power: float = -0.5,
        initial_accumulator_value: float = 1e-6,
        l1_regularization_strength: float = 0.0,
        l2_regularization_strength: float = 0.0,
        l2_shrinkage_regularization_strength: float = 0.0,
        beta: float = 0.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(
            learning_rate=learning_rate,
            learning_rate_power=learning_rate_power,
            initial_accumulator_value=initial_accumulator_value,
            l1_regularization_strength=l1_regularization_strength,
            l2_regularization_strength=l2_regularization_strength,
            l2_shrinkage_regularization_strength=l2_shrinkage_regularization_strength,
            beta=beta,
            **kwargs,
        )

    def _update_rows(
        self, grad: tf.Tensor, indices: tf.Tensor, variable: Any, lr: tf.Tensor
    ) -> None:
        dtype = variable.dtype
        accumulator_var = _compat.slot_variable(self, "accumulators", variable)
        linear_var = _compat.slot_variable(self, "linears", variable)

        # TensorFlow's fused kernel runs, per unique row, the operations of
        # keras.optimizers.Ftrl.update_step in the same order (beta folded into l2, as
        # in tf-keras), reading and writing the variable and both slots in place.
        tf.raw_ops.ResourceSparseApplyFtrlV2(
            var=self._as_tf_variable(variable).handle,
            accum=self._as_tf_variable(accumulator_var).handle,
            linear=self._as_tf_variable(linear_var).handle,
            grad=grad,
            indices=indices,
            lr=lr,
            l1=tf.cast(self.l1_regularization_strength, dtype),
            l2=tf.cast(self.l2_regularization_strength, dtype)
            + tf.cast(self.beta, dtype) / (2 * lr),
            l2_shrinkage=tf.cast(self.l2_shrinkage_regularization_strength, dtype),
            lr_power=tf.cast(self.learning_rate_power, dtype),
            use_locking=False,
        )


@keras.saving.register_keras_serializable(package="widedeep")
class Adagrad(_SparseAwareMixin, keras.optimizers.Adagrad):
    r"""Adagrad whose sparse updates touch only the rows in the batch.

    A drop-in for `keras.optimizers.Adagrad`: same arguments, slot (`accumulator`) and config, with the
    project's defaults (see the module docstring) for the learning rate and the initial accumulator.
    A dense gradient takes the stock update. A `tf.IndexedSlices` gradient is de-duplicated and the stock
    formula (epsilon inside the square root, added to the already-updated accumulator) runs on the rows
    in the batch only:

    ```python
    n = n + g ** 2
    w = w - lr * g / sqrt(n + epsilon)
    ```

    Rows outside the batch have a zero gradient, so the stock dense update leaves them unchanged as
    well: the sparse path equals the dense one for any initialisation and any learning-rate schedule.

    Args:
        learning_rate: A float, a `keras.optimizers.schedules.LearningRateSchedule`, or a callable
            taking no arguments. Defaults to `0.01`.
        initial_accumulator_value: The starting value of the accumulators, `>= 0`. Defaults to `1e-6`.
        epsilon: A small constant for numerical stability. Defaults to `1e-7`.
        **kwargs: The base optimizer arguments of `keras.optimizers.Adagrad` (`weight_decay`,
            `clipnorm`, `clipvalue`, `global_clipnorm`, `use_ema`, `ema_momentum`,
            `ema_overwrite_frequency`, `loss_scale_factor`, `gradient_accumulation_steps`, `name`).

    Example:

    >>> import widedeep.optimizers
    >>> optimizer = widedeep.optimizers.Adagrad(learning_rate=0.05)
    >>> table = keras.Variable(tf.zeros((10, 4)))
    >>> g = tf.IndexedSlices(tf.ones((2, 4)), tf.constant([3, 3]), tf.constant([10, 4]))
    >>> optimizer.apply([g], [table])
    >>> (table.numpy().any(axis=1)).nonzero()[0].tolist()
    [3]

    References:
        - [Duchi et al., 2011. Adaptive Subgradient Methods for Online Learning and Stochastic
          Optimization](https://jmlr.org/papers/v12/duchi11a.html)
    """

    def __init__(
        self,
        learning_rate: float | Any = 0.01,
        initial_accumulator_value: float = 1e-6,
        epsilon: float = 1e-7,
        **kwargs: Any,
    ) -> None:
        super().__init__(
            learning_rate=learning_rate,
            initial_accumulator_value=initial_accumulator_value,
            epsilon=epsilon,
            **kwargs,
        )

    def _update_rows(
        self, grad: tf.Tensor, indices: tf.Tensor, variable: Any, lr: tf.Tensor
    ) -> None:
        dtype = variable.dtype
        accumulator_var = _compat.slot_variable(self, "accumulators", variable)

        accumulator = self._sparse_rows(accumulator_var, indices) + tf.square(grad)
        self._scatter(accumulator_var, accumulator, indices)
        delta = (lr * grad) / tf.sqrt(accumulator + tf.cast(self.epsilon, dtype))
        self._as_tf_variable(variable).scatter_sub(tf.IndexedSlices(delta, indices))


def _default(optimizer_cls: type, argument: str) -> float:
    """The default of `argument` in `optimizer_cls`'s constructor."""
    return inspect.signature(optimizer_cls).parameters[argument].default


@dataclass
class OptimizerConfig:
    """Settings of the two optimizers (FTRL for wide, Adagrad for deep), as the CLI takes them.

    Each default is the matching default of `Ftrl` or `Adagrad` (the project's defaults: the
    module docstring says why), read from their signatures so that the two cannot drift apart.
    """

    wide_learning_rate: float = _default(Ftrl, "learning_rate")
    wide_l1: float = _default(Ftrl, "l1_regularization_strength")
    wide_l2: float = _default(Ftrl, "l2_regularization_strength")
    wide_initial_accumulator: float = _default(Ftrl, "initial_accumulator_value")
    deep_learning_rate: float = _default(Adagrad, "learning_rate")
    deep_initial_accumulator: float = _default(Adagrad, "initial_accumulator_value")

    def make(self) -> tuple[Ftrl, Adagrad]:
        """A new `(Ftrl, Adagrad)` pair at these settings."""
        wide = Ftrl(
            learning_rate=self.wide_learning_rate,
            l1_regularization_strength=self.wide_l1,
            l2_regularization_strength=self.wide_l2,
            initial_accumulator_value=self.wide_initial_accumulator,
        )
        deep = Adagrad(
            learning_rate=self.deep_learning_rate,
            initial_accumulator_value=self.deep_initial_accumulator,
        )
        return wide, deep
