"""`WideDeepModel`: one functional Keras model, two optimizers, one train step."""

from __future__ import annotations

import warnings
from typing import Any

import keras
import tensorflow as tf

from widedeep import _compat, gradient_exchange
from widedeep import optimizers as wd_optimizers

WIDE_BRANCH = "wide"
"""Name of the layer holding the wide (linear) branch; its variables go to the wide optimizer."""

DEFAULT_STEPS_PER_EXECUTION = 16
"""Training steps per call into TensorFlow when `WideDeepModel.compile` is not told otherwise.

One Python round trip and one round of callbacks per 16 steps instead of per step; `fit` of
a user's script and `widedeep train` both get it (`docs/performance.md` has the
measurements). Batch-level callbacks, the NaN stop and mid-epoch backups then act at those
boundaries. With more than one replica Keras' multi-step loop fails (TensorFlow 2.21, Keras
3.15), and `compile` uses 1."""


def _multi_worker(strategy: tf.distribute.Strategy) -> bool:
    """Whether `strategy` is a MultiWorkerMirroredStrategy over more than one worker."""
    if not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return False
    spec = strategy.cluster_resolver.cluster_spec()
    return sum(spec.num_tasks(job) for job in spec.jobs if job in ("chief", "worker")) > 1


def _tree_first(x: Any) -> Any:
    return next(i for i in tf.nest.flatten(x) if i is not None)


@keras.saving.register_keras_serializable(package="widedeep")
class WideDeepModel(_compat.FirstReplicaSymbolicBuild, keras.Model):
    """A functional model whose `wide` branch trains with one optimizer and the rest with another.

    Build it functionally (the builders `widedeep.build_wide_deep` and
    `widedeep.build_dfn` do this from a schema) so that the layer named `"wide"`
    holds the linear part; every other trainable variable (embeddings, the deep
    MLP, an FM, the feedback module) is *deep*. `train_step` computes one loss
    under one `tf.GradientTape` and sends the wide gradients to `wide_optimizer`
    (FTRL by default, as in the Wide & Deep paper) and the others to
    `deep_optimizer` (Adagrad by default). Each optimizer is built on its own
    variables only, so neither holds a slot for the other's variables.

    Because only `train_step` is overridden, plain `fit`, `evaluate`,
    `predict`, every Keras callback, `tf.distribute` strategies and KerasTuner
    work unchanged. `model.optimizer` is the deep optimizer (the one Keras
    callbacks such as `ReduceLROnPlateau` adjust); `model.wide_optimizer` is the
    other one. Saving to `.keras` stores both optimizers with their slots and
    iteration counts.

    Inputs are a dict of raw features. Keys the model does not use (labels, ids)
    are ignored; a missing key raises a `ValueError` naming the feature.

    Example:

    ```python
    model = widedeep.build_wide_deep(schema)
    model.compile()  # `widedeep.optimizers.Ftrl()` and `Adagrad()`, the CLI's defaults
    model.fit(train_ds, validation_data=valid_ds, epochs=3)
    ```
    """

    # ------------------------------------------------------------- inputs
    def call(self, inputs: Any, training: bool | None = None, mask: Any = None) -> Any:
        # Keras names a missing feature itself; keys the model does not use are dropped.
        if isinstance(inputs, dict) and isinstance(self.input, dict):
            inputs = {k: v for k, v in inputs.items() if k in self.input}
        return super().call(inputs, training=training, mask=mask)

    # ----------------------------------------------------------- variables
    @property
    def has_wide_branch(self) -> bool:
        return any(layer.name == WIDE_BRANCH for layer in self.layers)

    @property
    def wide_variables(self) -> list[keras.Variable]:
        """Trainable variables of the `wide` branch (trained by `wide_optimizer`)."""
        if not self.has_wide_branch:
            return []
        return list(self.get_layer(WIDE_BRANCH).trainable_variables)

    @property
    def deep_variables(self) -> list[keras.Variable]:
        """Every other trainable variable (trained by `deep_optimizer`)."""
        wide = {id(v) for v in self.wide_variables}
        return [v for v in self.trainable_variables if id(v) not in wide]

    # ------------------------------------------------------------ compile
    def compile(
        self,
        wide_optimizer: keras.optimizers.Optimizer | str | dict | None = None,
        deep_optimizer: keras.optimizers.Optimizer | str | dict | None = None,
        loss: Any = "binary_crossentropy",
        metrics: Any = None,
        weighted_metrics: Any = None,
        run_eagerly: bool = False,
        steps_per_execution: int | None = None,
        jit_compile: bool | str = False,
        **kwargs: Any,
    ) -> None:
        """Configures the model for training with one optimizer per branch.

        Args:
            wide_optimizer: optimizer of the `wide` branch. Defaults to
                `widedeep.optimizers.Ftrl()`, at the project's defaults (those of
                `widedeep.optimizers.OptimizerConfig` and the CLI).
            deep_optimizer: optimizer of every other variable. Defaults to
                `widedeep.optimizers.Adagrad()`, likewise.
            loss: the loss; sample weights (e.g. per feedback type) are honoured.
            steps_per_execution: training steps per call into TensorFlow, as in
                `keras.Model.compile`. Defaults to `DEFAULT_STEPS_PER_EXECUTION` on one
                replica and to 1 under a strategy with more replicas.
            metrics: as in `keras.Model.compile`.
            weighted_metrics: as in `keras.Model.compile`.
            run_eagerly: as in `keras.Model.compile`.
            jit_compile: as in `keras.Model.compile`.
            **kwargs: none is accepted (`optimizer` raises `ValueError`, anything else
                `TypeError`); the parameter exists to name those mistakes.
        """
        if "optimizer" in kwargs:
            raise ValueError(
                "WideDeepModel.compile takes `wide_optimizer` and `deep_optimizer`, not `optimizer`. "
                f"Received: optimizer={kwargs['optimizer']!r}"
            )
        if kwargs:
            raise TypeError(f"unexpected compile arguments: {sorted(kwargs)}")
        wide_optimizer = keras.optimizers.get(
            wide_optimizer if wide_optimizer is not None else wd_optimizers.Ftrl()
        )
        deep_optimizer = keras.optimizers.get(
            deep_optimizer if deep_optimizer is not None else wd_optimizers.Adagrad()
        )
        if wide_optimizer is deep_optimizer:
            raise ValueError(
                "wide_optimizer and deep_optimizer must be two different optimizer objects"
            )
        if steps_per_execution is None:
            single = self.distribute_strategy.num_replicas_in_sync == 1
            steps_per_execution = DEFAULT_STEPS_PER_EXECUTION if single else 1
        settings = {
            "loss": loss,
            "metrics": metrics,
            "weighted_metrics": weighted_metrics,
            "run_eagerly": run_eagerly,
            "steps_per_execution": steps_per_execution,
            "jit_compile": jit_compile,
        }
        super().compile(optimizer=deep_optimizer, auto_scale_loss=False, **settings)
        self.wide_optimizer = wide_optimizer
        self.deep_optimizer = deep_optimizer
        self._compile_arguments = {
            "wide_optimizer": wide_optimizer,
            "deep_optimizer": deep_optimizer,
            **settings,
        }
        if self.built:
            self.build_optimizers()

    def build_optimizers(self) -> None:
        """Creates each optimizer's slots on its own variable group (idempotent)."""
        if not self.wide_optimizer.built:
            self.wide_optimizer.build(self.wide_variables)
        if not self.deep_optimizer.built:
            self.deep_optimizer.build(self.deep_variables)

    def get_compile_config(self) -> dict[str, Any]:
        """The arguments of `compile`, both optimizers included, serialized for saving."""
        if not self.compiled:
            return {}
        return keras.saving.serialize_keras_object(self._compile_arguments)

    def compile_from_config(self, config: dict[str, Any]) -> None:
        config = keras.saving.deserialize_keras_object(config)
        self.compile(**config)
        # Optimizers must exist with their slots before `load_model` restores
        # their state; an unbuilt optimizer silently drops it.
        if self.built:
            self.build_optimizers()

    # ---------------------------------------------------------- training
    def train_step(self, data: Any) -> dict[str, Any]:
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        wide_variables = self.wide_variables
        deep_variables = self.deep_variables
        with tf.GradientTape() as tape:
            y_pred = self(x, training=True)
            loss = self.compute_loss(
                x=x, y=y, y_pred=y_pred, sample_weight=sample_weight, training=True
            )
            # Keras' losses divide by the number of replicas (the replicas' gradients are
            # summed); the tracker logs the undivided loss, as `keras.Model.train_step` does.
            self._loss_metric().update_state(
                loss * tf.distribute.get_strategy().num_replicas_in_sync,
                sample_weight=tf.shape(_tree_first(x))[0],
            )
        gradients = tape.gradient(loss, wide_variables + deep_variables)
        if self.distribute_strategy.num_replicas_in_sync > 1:
            gradients = self._cross_replica_gradients(x, gradients, wide_variables, deep_variables)
        wide_gradients = gradients[: len(wide_variables)]
        deep_gradients = gradients[len(wide_variables) :]
        if wide_variables:
            self.wide_optimizer.apply_gradients(zip(wide_gradients, wide_variables))
        if deep_variables:
            self.deep_optimizer.apply_gradients(zip(deep_gradients, deep_variables))
        if not (wide_variables or deep_variables):
            warnings.warn("The model does not have any trainable weights.", stacklevel=2)
        return self._reducible_logs(self.compute_metrics(x, y, y_pred, sample_weight=sample_weight))

    global_batch_size: int | None = None
    """The most rows a global batch has (`fit`'s batch size), with more than one replica.

    It bounds the rows each replica's sparse gradients can touch, which sizes their exchange
    (see `_cross_replica_gradients`). `widedeep.training.train` sets it from `batch_size`.
    None: the bound comes from the batch's static shape where it has one (a dataset batched
    with `drop_remainder=True`); without either, sparse gradients are all-reduced dense."""

    def _cross_replica_gradients(
        self,
        x: Any,
        gradients: list[Any],
        wide_variables: list[keras.Variable],
        deep_variables: list[keras.Variable],
    ) -> list[Any]:
        """Readies the gradients for the sum across replicas that each optimizer's `apply` runs.

        A table's `tf.IndexedSlices` stays sparse where its optimizer exchanges touched rows
        (`widedeep.optimizers`, through `sparse_exchange_rows`) and a static bound on those
        rows is known and sends fewer bytes than the table: the rows of one replica's batch
        times the ids one example looks up in the table (`_compat.inputs_per_example` of the
        layer that owns it). Every other sparse gradient is made dense: TensorFlow's own
        all-gather of `IndexedSlices`, whose size depends on the data, failed in `fit` with
        "Shape mismatch in the collective instance" (TF 2.21, Keras 3.15). Rows a replica did
        not touch then get a zero gradient, which leaves FTRL's and Adagrad's state unchanged.
        """
        replica_rows = _tree_first(x).shape[0]
        if replica_rows is None and self.global_batch_size:
            replicas = self.distribute_strategy.num_replicas_in_sync
            replica_rows = -(-self.global_batch_size // replicas)
        owners = {id(v): layer for layer in self.layers for v in layer.trainable_variables}
        groups = (
            (self.wide_optimizer, wide_variables, gradients[: len(wide_variables)]),
            (self.deep_optimizer, deep_variables, gradients[len(wide_variables) :]),
        )
        result = []
        for optimizer, variables, group in groups:
            exchanges_rows = hasattr(optimizer, "sparse_exchange_rows")
            bounds = {}
            for gradient, variable in zip(group, variables):
                if isinstance(gradient, tf.IndexedSlices):
                    rows = None
                    owner = owners.get(id(variable))
                    per_example = owner and _compat.inputs_per_example(owner)
                    if exchanges_rows and replica_rows and per_example:
                        rows = replica_rows * per_example
                    if rows and gradient_exchange.sparse_exchange_pays(rows, variable.shape):
                        bounds[variable.value.ref()] = rows
                    else:
                        gradient = tf.convert_to_tensor(gradient)
                result.append(gradient)
            if exchanges_rows:
                optimizer.sparse_exchange_rows = bounds
        return result

    def _loss_metric(self) -> keras.metrics.Metric:
        """The compiled model's loss tracker, the metric `fit` logs as `loss`."""
        return next(m for m in self.metrics if m.name == "loss")

    def test_step(self, data: Any) -> dict[str, Any]:
        return self._reducible_logs(super().test_step(data))

    def _reducible_logs(self, logs: dict[str, Any]) -> dict[str, Any]:
        # Keras (3.15) reduces a step's logs across the workers of a multi-worker
        # MultiWorkerMirroredStrategy with `strategy.reduce("MEAN", value, axis=0)`, which
        # fails on the scalar metric results ("Invalid reduction dimension 0 for input with
        # 0 dimensions"). As `[1]` tensors they reduce to the scalar mean over the
        # replicas, which is what Keras computes for the other strategies.
        if not _multi_worker(self.distribute_strategy):
            return logs
        return tf.nest.map_structure(lambda v: tf.reshape(v, [1]) if v.shape.rank == 0 else v, logs)
