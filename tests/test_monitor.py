"""Early stopping and the best epoch on `val_auc` or `val_gauc` (`TrainConfig.monitor`)."""

from __future__ import annotations

import glob
import json
import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from tests.test_carve import per_user_log  # noqa: F401  (fixture)
from widedeep.checkpointing import ResumableEarlyStopping
from widedeep.data.carve import validation_carve
from widedeep.evaluation import predict_split
from widedeep.metrics import gauc
from widedeep.models.wide_deep import CALIBRATION
from widedeep.training import TrainConfig, train

# val_auc peaks at epoch 2 (index 1) and val_gauc at epoch 4 (index 3); patience 2.
HISTORY = [
    {"val_auc": 0.70, "val_gauc": 0.60},
    {"val_auc": 0.74, "val_gauc": 0.61},
    {"val_auc": 0.73, "val_gauc": 0.62},
    {"val_auc": 0.72, "val_gauc": 0.64},
    {"val_auc": 0.71, "val_gauc": 0.63},
    {"val_auc": 0.70, "val_gauc": 0.63},
]


@pytest.mark.parametrize(
    "monitor, best_epoch, stopped_after", [("val_auc", 1, 3), ("val_gauc", 3, 5)]
)
def test_early_stopping_follows_the_monitor_through_a_hand_made_history(
    monitor, best_epoch, stopped_after
):
    model = keras.Sequential([keras.Input((1,)), keras.layers.Dense(1)])
    stopper = ResumableEarlyStopping(2, monitor=monitor)
    model.stop_training = False  # as `fit` sets it
    stopper.set_model(model)
    stopper.on_train_begin()
    for epoch, logs in enumerate(HISTORY):
        model.layers[0].bias.assign([float(epoch)])  # the weights say which epoch they are
        stopper.on_epoch_end(epoch, dict(logs))
        if model.stop_training:
            break
    # By hand: the best epoch is the argmax of the monitored metric, and training stops
    # `patience` epochs later, with that epoch's weights restored.
    assert stopper.best_epoch == best_epoch
    assert epoch == stopped_after
    stopper.on_train_end()
    assert float(model.layers[0].bias.numpy()[0]) == best_epoch


def test_train_on_val_gauc_keeps_its_argmax_epoch_and_logs_it(per_user_log, tmp_path):  # noqa: F811
    config = TrainConfig(
        data=per_user_log,
        out=str(tmp_path / "run"),
        epochs=4,
        early_stopping=4,
        monitor="val_gauc",
        validation_fraction=0.25,
        logdir=str(tmp_path / "logs"),
        verbose=0,
        batch_size=4,
        hyperparameters={"hidden_units": [8]},
    )
    config.optimizer.deep_learning_rate = 0.5
    metrics = train(config)
    history = metrics["validation_gauc"]
    assert len(history) == metrics["epochs_run"] == 4
    assert metrics["monitor"] == "val_gauc"
    assert metrics["best_epoch"] == int(np.argmax(history)) + 1
    # The saved model holds the best epoch's weights: the GAUC of its validation rows is the
    # recorded one (without the calibration offset fitted after training, which can saturate
    # the probabilities of so few rows into ties).
    model = keras.models.load_model(os.path.join(config.out, "model.keras"))
    model.get_layer(CALIBRATION).offset.assign(0.0)
    carve = validation_carve(per_user_log, 0.25)
    p, labels, users = predict_split(model, per_user_log, "train", rows=carve.validation_rows)
    assert gauc(labels, p, users) == pytest.approx(history[metrics["best_epoch"] - 1], abs=1e-9)
    # TensorBoard gets it beside the validation AUC.
    with open(os.path.join(config.out, "config.json")) as f:
        run_dir = json.load(f)["logdir_run"]
    logged = {}
    for path in glob.glob(os.path.join(run_dir, "validation", "events.out.tfevents.*")):
        for event in tf.compat.v1.train.summary_iterator(path):
            for value in event.summary.value:
                if value.tag == "epoch_gauc":
                    logged[event.step] = float(tf.make_ndarray(value.tensor))
    assert [logged[step] for step in sorted(logged)] == pytest.approx(history, abs=1e-6)
