"""Fit orchestration: model choice, optimizers, strategy, checkpoints, calibration, run files.

`train()` is what `widedeep train` runs; it is also the shortest path from a
dataset directory to a trained model in Python:

```python
from widedeep.training import TrainConfig, train
metrics = train(TrainConfig(data="data/sim", out="runs/wd", model="wide_deep"))
```
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
import time
from dataclasses import dataclass, field
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from widedeep import checkpointing, distribute
from widedeep.callbacks import OptimizerLogger, StopOnNonFiniteLoss, ValidationGAUC
from widedeep.data.carve import ValidationCarve, take_rows, validation_carve
from widedeep.data.reader import Rows, load_dataset_dir, read_columns
from widedeep.data.training_pipelines import (
    fit_dataset_fn,
    memory_cache_fits,
    validation_dataset,
)
from widedeep.evaluation import evaluate_model, predict_split
from widedeep.layers.calibration import fit_logit_offset
from widedeep.models.dfn import build_dfn
from widedeep.models.two_optimizer_model import DEFAULT_STEPS_PER_EXECUTION, WideDeepModel
from widedeep.models.wide_deep import CALIBRATION, build_wide_deep
from widedeep.optimizers import OptimizerConfig
from widedeep.safe_output import atomic_path, check_writable_dir, variables_bytes, write_json
from widedeep.schema import FEEDBACK_TYPES, Schema

MODELS = ("wide_deep", "wide", "deep", "wide_deep_seq", "dfn")
"""Model names understood by `build_model` and the CLI."""

PAPER_FEEDBACK_WEIGHTS = (1.0, 1.0, 10.0)
"""The DFN paper's loss weights `(unclick, click, dislike)`: `--loss-weights 1,1,10`."""

MONITORS = ("val_auc", "val_gauc")
"""What early stopping, the best epoch and `tune` can maximise (`TrainConfig.monitor`): the
validation AUC, or the validation GAUC (per-user AUC weighted by impressions, computed each
epoch by `widedeep.callbacks.ValidationGAUC`)."""

DEFAULT_FEEDBACK_WEIGHTS = {"dfn": (1.0, 1.0, 1.0)}
"""Loss weights `(unclick, click, dislike)` per model; others weigh every impression 1.

DFN's default weighs every impression 1, not the paper's 1 : 1 : 10: over three seeds
the paper's weights scored a lower test AUC on the simulator and on a MovieLens-layout world
with 17% dislikes, and the same on the KuaiRand dev log, where dislikes are 0.07% of
impressions (the measurements are in `docs/results.md`).

They are relative weights: `train` rescales them to a mean of 1 over the fit rows
(`normalize_feedback_weights`), so they never change the effective learning rate.
"""


class TrainingDivergedError(RuntimeError):
    """The training loss became NaN or infinite; the message names the epoch and step."""


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C stopped `train`; the message says whether a checkpoint was saved and how to resume."""


def normalize_feedback_weights(
    weights: tuple[float, float, float], counts: np.ndarray | list[int]
) -> tuple[float, float, float]:
    """Rescales per-type loss weights so that their mean over the rows is 1.

    With `n_t` rows of feedback type `t` and weights `w_t`, returns
    `w_t * N / sum_t(n_t * w_t)`. The ratios stay as given (1 : 1 : 10 stays
    1 : 1 : 10), but the loss, and so every gradient step, keeps the scale of an
    unweighted loss: a log where dislikes are common no longer multiplies the
    learning rate.

    Args:
        weights: `(unclick, click, dislike)` weights, non-negative.
        counts: rows of each type, in `FEEDBACK_TYPES` order.

    Returns:
        The rescaled weights (the input unchanged when no row has a positive weight).

    Example:

    >>> normalize_feedback_weights((1.0, 1.0, 10.0), [6, 2, 2])
    (0.35714285714285715, 0.35714285714285715, 3.5714285714285716)
    """
    counts = np.asarray(counts, dtype=np.float64)
    if counts.shape != (len(FEEDBACK_TYPES),):
        raise ValueError(
            f"counts must hold one number per feedback type {FEEDBACK_TYPES}. Received: {counts}"
        )
    total = float(np.dot(counts, np.asarray(weights, dtype=np.float64)))
    if total <= 0:
        return tuple(float(w) for w in weights)  # type: ignore[return-value]
    scale = counts.sum() / total
    return tuple(float(w) * scale for w in weights)  # type: ignore[return-value]


@dataclass
class TrainConfig:
    """Everything `train()` needs; recorded as `config.json` in the run directory.

    `early_stopping=N > 0` stops after `N` epochs without a better `monitor` (one of
    `MONITORS`) and keeps the weights of the best epoch (`epochs` is then the most
    epochs); it needs a validation split. The optimizers keep their last epoch's state
    (Keras' `EarlyStopping` restores weights only).

    The run is resumable: every `backup_every` steps and at each epoch's end the
    whole training state is checkpointed in `resolved_backup_dir()` (see
    `widedeep.checkpointing`); `train` with the same config continues from there
    and ends with the weights of an uninterrupted run. The backup is deleted once
    the results are written.
    """

    data: str
    out: str
    model: str = "wide_deep"
    epochs: int = 10
    batch_size: int = 512
    steps_per_execution: int = DEFAULT_STEPS_PER_EXECUTION
    """Training steps per call into TensorFlow (`WideDeepModel.compile`, whose default this
    is). With more than one replica (`strategy`) Keras' multi-step loop fails, and `train`
    uses 1."""
    logdir: str | None = "logs"
    seed: int = 0
    validation_fraction: float = 0.1
    early_stopping: int = 2
    monitor: str = "val_auc"
    """What early stopping and the best epoch maximise, one of `MONITORS`."""
    hyperparameters: dict[str, Any] = field(default_factory=dict)
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    feedback_weights: tuple[float, float, float] | None = None
    verbose: int | str = "auto"
    backup_dir: str | None = None
    backup_every: int = 1000
    deterministic: bool = False
    cache_mb: int | None = None
    """Keep the parsed training rows in memory across epochs (read and parse the files
    once) when they take at most this many MiB (`widedeep.data.pipeline.parsed_bytes`);
    None: up to `widedeep.data.training_pipelines.DEFAULT_CACHE_MEMORY_FRACTION` of this
    machine's memory; 0: read and parse the files every epoch. The batches are the same
    either way; the cache saves training time (`docs/performance.md`)."""
    warm_start: str | None = None
    """An earlier run's `model.keras` to start from (see `widedeep.warm_start`)."""
    strategy: str = "default"
    """One of `widedeep.distribute.STRATEGIES`: `"mirrored"` trains on this machine's
    devices, `"multi_worker"` on the cluster of `TF_CONFIG` (only the chief writes
    files). With more than one replica, steps run one per execution and each table's
    gradient is exchanged as the rows the batch touched (`docs/guides/distributed.md`)."""

    def resolved_backup_dir(self) -> str:
        """Where the resumable checkpoints live: `backup_dir`, by default `<out>/backup`."""
        return self.backup_dir or os.path.join(self.out, "backup")

    def resolved_feedback_weights(self) -> tuple[float, float, float] | None:
        if self.feedback_weights is not None:
            return tuple(self.feedback_weights)
        return DEFAULT_FEEDBACK_WEIGHTS.get(self.model)


def build_model(schema: Schema, model: str, **hyperparameters: Any) -> WideDeepModel:
    """Builds one of `MODELS` from a schema and hyper-parameters (uncompiled)."""
    if model == "wide_deep_seq":
        return build_wide_deep(schema, sequence_pooling=True, **hyperparameters)
    if model in ("wide_deep", "wide", "deep"):
        return build_wide_deep(schema, branches=model, **hyperparameters)
    if model == "dfn":
        return build_dfn(schema, **hyperparameters)
    raise ValueError(f"unknown model {model!r}; choose one of {MODELS}")


def compile_model(
    model: WideDeepModel,
    optimizer: OptimizerConfig | None = None,
    steps_per_execution: int | None = None,
) -> WideDeepModel:
    """Compiles with the two optimizers, binary cross-entropy and streaming AUC / log loss."""
    wide, deep = (optimizer or OptimizerConfig()).make()
    model.compile(
        wide_optimizer=wide,
        deep_optimizer=deep,
        loss="binary_crossentropy",
        steps_per_execution=steps_per_execution,
        metrics=[
            keras.metrics.AUC(name="auc", num_thresholds=1000),
            keras.metrics.BinaryCrossentropy(name="logloss"),
        ],
    )
    return model


def calibrate(model: keras.Model, data_dir: str, rows: Rows) -> float:
    """Sets the model's `calibration` offset to minimise the unweighted log loss on train rows.

    Args:
        model: a model built by this package (it has a `LogitOffset` named `calibration`).
        data_dir: the dataset directory.
        rows: the rows of the train split to calibrate on (`widedeep.data.carve.Rows`).

    Returns:
        The offset now in the model (see `widedeep.layers.calibration.fit_logit_offset`).
    """
    layer = model.get_layer(CALIBRATION)
    layer.offset.assign(0.0)
    probabilities, labels, _ = predict_split(model, data_dir, "train", rows=rows)
    offset = fit_logit_offset(probabilities, labels)
    layer.offset.assign(offset)
    return offset


def train(config: TrainConfig) -> dict[str, Any]:
    """Trains `config.model` on `config.data` and writes the run directory.

    The run directory gets `model.keras`, `config.json` (model, hyper-parameters,
    optimizer settings, the loss weights as given and as normalised to mean 1) and
    `metrics.json` (exact test metrics plus `examples_per_sec` of training,
    `epochs_run`, `best_epoch` by `monitor`, the per-epoch `validation_auc` and
    `validation_gauc`, the `validation`
    carve and the `calibration_offset`; see `finish_run`). TensorBoard logs go to
    `config.logdir/<run name>`: loss and AUC per epoch for train and validation
    (`validation_fraction` of the train split, carved as its test split was:
    `widedeep.data.carve`), both optimizers' learning rates, and weight histograms.

    Under `config.strategy="multi_worker"` every worker trains; only the chief
    evaluates and writes files.

    Returns:
        The test metrics written to `metrics.json`; `{}` on a worker other than the
        chief.
    """
    if config.steps_per_execution < 1:
        raise ValueError(
            f"steps_per_execution must be >= 1. Received: {config.steps_per_execution}"
        )
    if config.cache_mb is not None and config.cache_mb < 0:
        raise ValueError(f"cache_mb must be None or >= 0. Received: {config.cache_mb}")
    if config.early_stopping < 0:
        raise ValueError(f"early_stopping must be >= 0. Received: {config.early_stopping}")
    if config.monitor not in MONITORS:
        raise ValueError(f"monitor must be one of {MONITORS}. Received: {config.monitor!r}")
    if config.early_stopping and not config.validation_fraction:
        raise ValueError(
            "early_stopping needs a validation split: validation_fraction is 0; set it > 0 "
            "or turn early stopping off"
        )
    keras.utils.set_random_seed(config.seed)
    if config.deterministic:
        # Same seeds and batches give the same weights only with deterministic kernels; the
        # CPU kernels used here are, several GPU ones (scatter-adds, segment sums) are not.
        tf.config.experimental.enable_op_determinism()
    schema, meta = load_dataset_dir(config.data)
    strategy = distribute.get_strategy(config.strategy)
    chief = distribute.is_chief(strategy)
    steps_per_execution = config.steps_per_execution
    if strategy.num_replicas_in_sync > 1 and steps_per_execution > 1:
        # Keras' multi-step loop runs each step inside a `tf.cond` (to stop at the end of the
        # data), and a replica step that calls `merge_call` (every collective does, on CPU
        # and with MultiWorkerMirroredStrategy) fails there: "You must feed a value for
        # placeholder tensor ... while/cond/Placeholder" (TF 2.21, Keras 3.15.1;
        # keras-team/keras#19246, open).
        print(
            f"--strategy {config.strategy}: {strategy.num_replicas_in_sync} replicas run one "
            f"step per execution (--steps-per-execution {steps_per_execution} is for one replica)",
            file=sys.stderr,
            flush=True,
        )
        steps_per_execution = 1
    with strategy.scope():
        model = compile_model(
            build_model(schema, config.model, **config.hyperparameters),
            config.optimizer,
            steps_per_execution,
        )
        model.build_optimizers()
        model.global_batch_size = config.batch_size
    warm_started = None
    if config.warm_start:
        from widedeep.warm_start import warm_start

        warm_started = warm_start(model, config.warm_start, schema)

    carve = validation_carve(config.data, config.validation_fraction, meta=meta)
    fit_rows = carve.num_fit_rows
    requested_weights = weights = config.resolved_feedback_weights()
    if weights is not None:
        feedback = read_columns(config.data, "train", [schema.feedback])[schema.feedback]
        counts = np.bincount(take_rows(feedback, carve.fit_rows), minlength=len(FEEDBACK_TYPES))
        weights = normalize_feedback_weights(weights, counts)

    cache = memory_cache_fits(schema, carve.total, config.cache_mb)
    reading = time.perf_counter()  # with `cache`, the rows are read and parsed here
    fit_pipeline = fit_dataset_fn(
        config.data,
        schema,
        carve.fit_rows,
        batch_size=config.batch_size,
        feedback_weights=weights,
        cache=cache,
    )

    def epoch_dataset(epoch: int) -> tf.data.Dataset:
        return distribute.shard_by_batch(fit_pipeline(checkpointing.epoch_seed(config.seed, epoch)))

    valid_ds = validation_dataset(
        config.data, schema, carve.validation_rows, feedback_weights=weights, cache=cache
    )
    if valid_ds is not None:
        valid_ds = distribute.shard_by_batch(valid_ds)
    reading = time.perf_counter() - reading
    steps_per_epoch = -(-fit_rows // config.batch_size)

    check_writable_dir(config.out, "--out")
    backup_dir = config.resolved_backup_dir()
    task_type, task_id = distribute.worker_id(strategy)
    backup = checkpointing.TrainingBackup(
        backup_dir,
        model,
        fingerprint=_fingerprint(config),
        save_directory=None if chief else f"{backup_dir}-{task_type}-{task_id}",
    )
    record = backup.restore() or {"epochs_done": 0, "history": {}}
    divergence = StopOnNonFiniteLoss()
    callbacks: list[keras.callbacks.Callback] = [divergence]
    if valid_ds is not None:
        callbacks.insert(0, ValidationGAUC(valid_ds, schema.group_key))
    run_logdir = None
    if config.logdir and chief:
        run_name = f"{os.path.basename(os.path.normpath(config.out))}-{config.model}-{time.strftime('%Y%m%d-%H%M%S')}"
        run_logdir = record.setdefault("logdir_run", os.path.join(config.logdir, run_name))
        callbacks += [
            keras.callbacks.TensorBoard(run_logdir, histogram_freq=1),
            OptimizerLogger(run_logdir),
        ]
    early_stopping = None
    if config.early_stopping:
        early_stopping = checkpointing.ResumableEarlyStopping(
            config.early_stopping, monitor=config.monitor
        )
        if "early_stopping" in record:
            best = record.get("best_checkpoint")
            early_stopping.load_state(
                record["early_stopping"], backup.load_best_weights(best) if best else None
            )
        callbacks.append(early_stopping)
    saver = checkpointing.BackupCallback(
        backup, steps_per_epoch, config.backup_every, record, early_stopping
    )
    callbacks.append(saver)
    if not record["epochs_done"] and not checkpointing.global_step(model):
        backup.save(record)  # a last good state exists before the first step
    start_step = checkpointing.global_step(model)
    start = time.perf_counter()
    try:
        checkpointing.fit_resumable(
            model,
            epoch_dataset,
            validation_data=valid_ds,
            epochs=config.epochs,
            steps_per_epoch=steps_per_epoch,
            record=record,
            callbacks=callbacks,
            early_stopping=early_stopping,
            verbose=config.verbose,
        )
    except KeyboardInterrupt:
        saver.save_now()
        raise TrainingInterrupted(
            f"interrupted at step {checkpointing.global_step(model)}; the training state is "
            f"saved in {backup.directory}: rerun the same command to resume"
        ) from None
    seconds = time.perf_counter() - start + reading
    if divergence.diverged_at is not None:
        epoch = record["epochs_done"] + 1
        step = checkpointing.global_step(model) - record["epochs_done"] * steps_per_epoch
        _write_last_good_model(config, backup, record, (epoch, step), weights, chief)
    if not chief:
        backup.delete()
        return {}
    if task_type is not None:  # one of several workers
        model = _local_copy(model, config.out)

    history = record["history"]
    steps_run = checkpointing.global_step(model) - start_step
    extra: dict[str, Any] = {
        "examples_per_sec": fit_rows * steps_run / steps_per_epoch / seconds,
        "train_seconds": seconds,
        "cached_in_memory": cache,
        "epochs_run": record["epochs_done"],
    }
    if config.early_stopping:
        extra["monitor"] = config.monitor
        extra["best_epoch"] = int(np.argmax(history[config.monitor])) + 1
    extra["validation_auc"] = history.get("val_auc", [])
    extra["validation_gauc"] = history.get("val_gauc", [])
    extra["model"] = config.model
    if warm_started is not None:
        extra["warm_start"] = {"from": config.warm_start, "tables": warm_started}
    metrics = finish_run(model, config.data, meta, config.out, carve, extra)
    record = dataclasses.asdict(config)
    record["feedback_weights"] = requested_weights
    record["normalized_feedback_weights"] = weights
    record["logdir_run"] = run_logdir
    write_json(os.path.join(config.out, "config.json"), record)
    backup.delete()
    return metrics


def finish_run(
    model: keras.Model,
    data_dir: str,
    meta: dict[str, Any],
    out_dir: str,
    carve: ValidationCarve,
    extra: dict[str, Any],
) -> dict[str, Any]:
    """Calibrates a trained model, scores it on the test split and writes it with its metrics.

    The end of every training run (`train`, and `tuning.search.run_search`'s retrain):
    one logit offset fitted without weights on the validation rows (the fit rows when
    there are none, see `calibrate`), the exact test metrics of `evaluate_model` merged
    with `extra`, the carve (`"validation": {"carve", "rows", "users"}`: its kind, and
    the validation rows and their users) and the simulator's oracle when `meta` has it,
    then `out_dir/model.keras` and `out_dir/metrics.json`.

    Args:
        model: the trained model.
        data_dir: its dataset directory.
        meta: the directory's `meta.json`.
        out_dir: the run directory.
        carve: the fit and validation rows of the train split (`widedeep.data.carve`).
        extra: training statistics to record beside the test metrics.

    Returns:
        The metrics written to `metrics.json`.
    """
    # The offset removes the bias of unequal loss weights and the drift of the click rate
    # between the fit rows and the latest ones. It moves no ranking (AUC and GAUC unchanged);
    # test log loss fell in 11 of 12 runs at equal weights (dev log, simulator, MovieLens
    # layout; docs/design-history.md).
    validated = carve.num_validation_rows > 0
    offset = calibrate(model, data_dir, carve.validation_rows if validated else carve.fit_rows)
    schema, _ = load_dataset_dir(data_dir)
    users = read_columns(data_dir, "train", [schema.group_key])[schema.group_key]
    validation = {
        "carve": carve.kind,
        "rows": carve.num_validation_rows,
        "users": int(len(np.unique(take_rows(users, carve.validation_rows)))),
    }
    metrics = {
        **evaluate_model(model, data_dir, "test"),
        **extra,
        "validation": validation,
        "calibration_offset": offset,
    }
    for key in ("oracle_auc", "oracle_logloss"):
        if key in meta:
            metrics[key] = meta[key]
    save_model(model, os.path.join(out_dir, "model.keras"))
    write_json(os.path.join(out_dir, "metrics.json"), metrics)
    return metrics


def save_model(model: keras.Model, path: str) -> None:
    """`model.save(path)`, atomically: a crash while saving leaves the previous file intact, and a
    full disk raises `widedeep.safe_output.NoSpaceError`."""
    size = variables_bytes(checkpointing.state_variables(model))
    with atomic_path(path, size) as tmp:
        model.save(tmp)


def _local_copy(model: keras.Model, directory: str) -> keras.Model:
    """The trained model on this process alone, for evaluation outside the cluster's strategy.

    Under `MultiWorkerMirroredStrategy` a `predict` would split the rows across the
    workers; the chief scores every row itself on a copy made through a `.keras` file.
    """
    path = os.path.join(directory, f".model-{os.getpid()}.keras")
    try:
        model.save(path)
        return keras.models.load_model(path)
    finally:
        if os.path.exists(path):
            os.remove(path)


def _fingerprint(config: TrainConfig) -> str:
    """The settings a backup must share with the run resuming it (not where files go)."""
    settings = dataclasses.asdict(config)
    for key in ("out", "logdir", "verbose", "backup_dir", "backup_every", "steps_per_execution"):
        settings.pop(key)
    return json.dumps(settings, sort_keys=True)


def _write_last_good_model(
    config: TrainConfig,
    backup: checkpointing.TrainingBackup,
    record: dict[str, Any],
    diverged_at: tuple[int, int],
    weights: tuple[float, float, float] | None,
    chief: bool,
) -> None:
    """Saves the newest finite checkpoint as `model.keras`, records the divergence, and raises.

    Other workers than the chief write nothing.
    """
    epoch, step = diverged_at
    message = (
        f"the training loss became NaN or infinite at epoch {epoch}, step {step}: lower the "
        f"learning rates (--wide-learning-rate {config.optimizer.wide_learning_rate}, "
        f"--deep-learning-rate {config.optimizer.deep_learning_rate}) or the loss weights "
        f"(--loss-weights, now {weights})"
    )
    if not chief:
        backup.delete()
        raise TrainingDivergedError(message)
    good = backup.restore_last_finite()
    diverged: dict[str, Any] = {"epoch": epoch, "step": step, "message": message}
    if good is not None:
        save_model(backup.model, os.path.join(config.out, "model.keras"))
        diverged["model_saved_at"] = {
            "epoch": good["epochs_done"],
            "global_step": good["global_step"],
        }
        message += (
            f"; model.keras holds the last finite weights (after {good['global_step']} steps)"
        )
    write_json(
        os.path.join(config.out, "metrics.json"),
        {"model": config.model, "diverged": diverged, "epochs_run": record["epochs_done"]},
    )
    backup.delete()
    raise TrainingDivergedError(message)
