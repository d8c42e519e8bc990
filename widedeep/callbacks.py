"""The Keras callbacks of a training run: validation GAUC, divergence stop, optimizer logs.

`widedeep train` and the `tune` hypermodels add them to `fit`; any Keras training
loop of a `WideDeepModel` can use them.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from widedeep.evaluation import predictions
from widedeep.metrics import gauc
from widedeep.models.two_optimizer_model import WideDeepModel

__all__ = ["OptimizerLogger", "StopOnNonFiniteLoss", "ValidationGAUC"]


class StopOnNonFiniteLoss(keras.callbacks.Callback):
    """Stops `fit` at the first step whose loss is NaN or infinite, and remembers where.

    Keras' `TerminateOnNaN` stops too, but says nothing a user can act on;
    `widedeep.training.train` turns `diverged_at` into a `TrainingDivergedError` naming the epoch,
    the step and the likely causes.
    """

    def __init__(self) -> None:
        super().__init__()
        self.diverged_at: tuple[int, int] | None = None
        self._epoch = 0

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self._epoch = epoch

    def on_train_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        loss = (logs or {}).get("loss")
        if loss is not None and not np.isfinite(float(loss)):
            self.diverged_at = (self._epoch + 1, batch + 1)
            self.model.stop_training = True


class OptimizerLogger(keras.callbacks.Callback):
    """Writes both optimizers' learning rates and iteration counts to TensorBoard each epoch."""

    def __init__(self, logdir: str) -> None:
        super().__init__()
        self._writer = tf.summary.create_file_writer(os.path.join(logdir, "optimizers"))

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        model: WideDeepModel = self.model
        with self._writer.as_default():
            for branch, opt in (("wide", model.wide_optimizer), ("deep", model.deep_optimizer)):
                tf.summary.scalar(
                    f"{branch}_learning_rate",
                    float(keras.ops.convert_to_numpy(opt.learning_rate)),
                    step=epoch,
                )
                tf.summary.scalar(f"{branch}_iterations", int(opt.iterations.numpy()), step=epoch)
        self._writer.flush()


class ValidationGAUC(keras.callbacks.Callback):
    """Adds `val_gauc`, the exact GAUC of the validation rows, to every epoch's logs.

    Put it first among the callbacks: the later ones (early stopping, TensorBoard,
    backups, `History`) then see `val_gauc` beside Keras' own `val_auc`. Each epoch
    costs one prediction pass over the validation rows.

    Args:
        validation_data: the validation pipeline of
            `widedeep.data.training_pipelines.validation_dataset` (its
            features carry `group_key`).
        group_key: the column whose values are the groups (users).
    """

    def __init__(self, validation_data: tf.data.Dataset, group_key: str) -> None:
        super().__init__()
        self.validation_data = validation_data
        self.group_key = group_key
        self._forward: Callable[[Any], Any] | None = None

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        if logs is None:
            return
        if self._forward is None:
            # The model's own forward pass on this process's rows: `predict_on_batch` would
            # split each batch across the replicas and, with several workers, gather every
            # worker's rows (twice the labels' length with two workers).
            model = self.model
            self._forward = tf.function(
                lambda features: model(features, training=False), reduce_retracing=True
            )
        probabilities, labels, groups = predictions(
            self._forward, self.validation_data, self.group_key
        )
        finite = np.isfinite(probabilities).all()  # a diverged epoch: the NaN stop reports it
        logs["val_gauc"] = gauc(labels, probabilities, groups) if finite else float("nan")
