"""Resumable training: a backup of the whole training state, and the data position to resume at.

`widedeep train` keeps a backup directory (default `<out>/backup`) holding
`tf.train.CheckpointManager` checkpoints of the model's variables, both
optimizers (FTRL and Adagrad, with their slots and iteration counts: the
sparse optimizers create their slots as ordinary optimizer variables) and a JSON
record of everything else the run has decided: the epochs finished, their
validation AUCs, the early-stopping state and the checkpoint of the best epoch's
weights. TensorFlow writes a checkpoint's files before it updates the
`checkpoint` index that names the latest one, so a process killed while saving
leaves the previous checkpoint in charge.

A restore reads every value back, and a checkpoint that does not read (a data
file cut short by a crash or a full disk, a flipped byte, a missing file) gives
way to the one before it: the manager keeps at least two. A save that fills the
disk removes its partial files and raises `widedeep.safe_output.NoSpaceError`.

The position inside the data is the optimizers' iteration count: a resumed run
knows how many steps were applied even when it was stopped between a step and
its callbacks. Every epoch reads its own shuffle of the fit rows, seeded by
`epoch_seed(seed, epoch)`, so a resumed epoch replays the same batches and skips
the ones already trained on. With `tf.config.experimental.enable_op_determinism`
(set by `train`) the resumed run ends with the weights of a run never
interrupted.

Example:

```python
backup = TrainingBackup("runs/wd/backup", model, fingerprint="...")
state = backup.restore()  # None on a fresh start
```
"""

from __future__ import annotations

import contextlib
import glob
import json
import os
import re
import shutil
import sys
from collections.abc import Iterator
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from widedeep.errors import WidedeepError
from widedeep.safe_output import no_space_as_error, remove_path, sync_to_disk, variables_bytes

__all__ = [
    "BackupCallback",
    "BackupDamagedError",
    "BackupMismatchError",
    "ResumableEarlyStopping",
    "TrainingBackup",
    "epoch_seed",
    "global_step",
    "state_variables",
]


class BackupMismatchError(WidedeepError, ValueError):
    """The backup directory holds a run with other settings than the one being started."""


class BackupDamagedError(WidedeepError, ValueError):
    """No checkpoint in the backup directory reads; the message names it and says how to start afresh."""


_UNREADABLE = (tf.errors.OpError, IndexError, AssertionError, ValueError)
"""What TensorFlow raises for a checkpoint that does not read: `DataLossError` (a checksum),
`NotFoundError` (a missing file), `IndexError: Read less bytes than requested` (a data file
cut short), an `AssertionError` for values it lacks, a `ValueError` for a garbled record."""


def epoch_seed(seed: int, epoch: int) -> int:
    """The shuffle seed of one epoch (0-based) of a run with `seed`.

    Args:
        seed: the run's seed.
        epoch: the epoch, from 0.

    Returns:
        A non-negative 31-bit integer, the same in every process.

    Example:

    >>> epoch_seed(0, 0) == epoch_seed(0, 0) != epoch_seed(0, 1)
    True
    """
    return int(np.random.SeedSequence([seed & 0xFFFFFFFF, epoch]).generate_state(1)[0] >> 1)


def global_step(model: keras.Model) -> int:
    """Training steps applied so far: the larger iteration count of the two optimizers.

    A model without a wide branch never steps its wide optimizer (and one without
    trainable deep variables never steps the deep one), so the larger count is
    the number of `train_step`s run.
    """
    return max(
        int(model.wide_optimizer.iterations.numpy()), int(model.deep_optimizer.iterations.numpy())
    )


def state_variables(model: keras.Model) -> list[Any]:
    """The model's variables and its optimizers' (what a backup or a `.keras` file holds).

    Args:
        model: a Keras model, compiled or not (a `WideDeepModel` has two optimizers).

    Returns:
        The variables, each once.
    """
    optimizers = [getattr(model, name, None) for name in ("wide_optimizer", "deep_optimizer")]
    optimizers.append(getattr(model, "optimizer", None))
    found = {id(v): v for v in model.variables}
    for optimizer in optimizers:
        for variable in getattr(optimizer, "variables", None) or []:
            found.setdefault(id(variable), variable)
    return list(found.values())


class TrainingBackup:
    """The checkpoints of one training run in `directory` (see the module docstring).

    Args:
        directory: the backup directory (created on the first save).
        model: a compiled `WideDeepModel`; its optimizers are built here so that
            their slots exist before a restore.
        fingerprint: a string identifying the run's settings; `restore` refuses a
            backup written under another one.
        max_to_keep: checkpoints kept, at least 2 (older ones are the fallback when
            the newest does not read or holds non-finite weights).
        save_directory: where `save` writes, if not `directory`: a worker other than
            the chief saves (every worker must take part in a save) to a directory of
            its own, and restores from the chief's `directory`.
    """

    def __init__(
        self,
        directory: str,
        model: keras.Model,
        fingerprint: str,
        max_to_keep: int = 3,
        save_directory: str | None = None,
    ) -> None:
        if max_to_keep < 2:
            raise ValueError(
                "max_to_keep must be >= 2 (a damaged newest checkpoint falls back to the one "
                f"before it). Received: max_to_keep={max_to_keep}"
            )
        self.directory = directory
        self.save_directory = save_directory or directory
        self.max_to_keep = max_to_keep
        self.model = model
        self.fingerprint = fingerprint
        model.build_optimizers()
        self._record = tf.Variable("", dtype=tf.string, trainable=False)
        self._checkpoint = tf.train.Checkpoint(
            variables=list(model.variables),  # weights, non-trainable state, seed generators
            wide_optimizer=model.wide_optimizer,
            deep_optimizer=model.deep_optimizer,
            record=self._record,
        )
        self._manager = tf.train.CheckpointManager(
            self._checkpoint, self.save_directory, max_to_keep=max_to_keep, checkpoint_name="state"
        )
        # A manager lists the checkpoints it found at creation and those it saved since: the
        # process that saves must restore through the same one.
        self._restore_manager = (
            self._manager
            if self.save_directory == directory
            else tf.train.CheckpointManager(
                self._checkpoint, directory, max_to_keep=max_to_keep, checkpoint_name="state"
            )
        )
        self._best_checkpoint = tf.train.Checkpoint(variables=list(model.variables))

    # ------------------------------------------------------------------ save
    def _saving(self, prefix: str, variables: list[Any]) -> contextlib.AbstractContextManager:
        """Turns a full disk while writing checkpoint `prefix` into `NoSpaceError`, its files removed."""

        def remove_partial_files() -> None:
            pattern = glob.escape(prefix)
            for path in glob.glob(pattern + ".*") + glob.glob(pattern + "_temp*"):
                remove_path(path)

        return no_space_as_error(
            self.save_directory, lambda: variables_bytes(variables), cleanup=remove_partial_files
        )

    def save(self, record: dict[str, Any]) -> str:
        """Saves the model, both optimizers and `record` (JSON-serialisable) as the latest checkpoint."""
        record = {**record, "fingerprint": self.fingerprint, "global_step": global_step(self.model)}
        self._record.assign(json.dumps(record))
        prefix = os.path.join(self.save_directory, f"state-{record['global_step']}")
        with self._saving(prefix, state_variables(self.model)):
            path = self._manager.save(checkpoint_number=record["global_step"])
            sync_to_disk([self.save_directory])  # on the disk before the run goes on
        return path

    def save_best_weights(self, epoch: int) -> str:
        """Writes the model's weights as the best epoch's (0-based `epoch`); returns the path."""
        prefix = os.path.join(self.save_directory, f"best-epoch-{epoch}")
        with self._saving(prefix, self.model.variables):
            path = self._best_checkpoint.write(prefix)
            sync_to_disk([self.save_directory])
        return path

    def remove_best_weights(self, keep: str | None) -> None:
        """Deletes best-epoch weight files but `keep` and the newest `max_to_keep` epochs' ones.

        Each kept checkpoint names at most one of them, and each newer one is named
        by the checkpoint saved right after it: those are all that a fallback to an
        older checkpoint can need.
        """
        epochs: dict[int, list[str]] = {}
        for path in glob.glob(os.path.join(glob.escape(self.save_directory), "best-epoch-*")):
            match = re.match(r"best-epoch-(\d+)\.", os.path.basename(path))
            if match:
                epochs.setdefault(int(match.group(1)), []).append(path)
        for epoch in sorted(epochs)[: -self.max_to_keep]:
            for path in epochs[epoch]:
                if keep is None or not path.startswith(keep + "."):
                    os.remove(path)

    # --------------------------------------------------------------- restore
    def restore(self) -> dict[str, Any] | None:
        """Restores the newest checkpoint that reads into the model and optimizers; returns its record.

        A checkpoint that does not read (with the best epoch's weights it names) is
        skipped for the one before it, with a line on stderr.

        Returns:
            The record saved with it (plus `global_step`), or None when the
            directory holds no checkpoint.

        Raises:
            BackupMismatchError: if the checkpoint was written under another fingerprint.
            BackupDamagedError: if the directory holds checkpoints and none of them reads.
        """
        return next(self._readable_checkpoints(), None)

    def _candidates(self) -> list[str]:
        """The checkpoint prefixes, newest first (from the files when the index does not read)."""
        listed = self._restore_manager.checkpoints
        if listed:
            return list(reversed(listed))
        numbered = []
        for path in glob.glob(os.path.join(glob.escape(self.directory), "state-*.index")):
            match = re.fullmatch(r"state-(\d+)\.index", os.path.basename(path))
            if match:
                numbered.append((int(match.group(1)), path.removesuffix(".index")))
        return [prefix for _, prefix in sorted(numbered, reverse=True)]

    def _readable_checkpoints(self) -> Iterator[dict[str, Any]]:
        """Restores each checkpoint that reads, newest first, and yields its record."""
        failed: list[str] = []
        for path in self._candidates():
            try:
                record = self._restore(path)
            except BackupMismatchError:
                raise
            except _UNREADABLE as error:
                reason = str(error).strip().splitlines()[0] if str(error).strip() else ""
                failed.append(f"{os.path.basename(path)}: {type(error).__name__} {reason}".strip())
                continue
            if failed:
                print(
                    f"widedeep: backup checkpoint(s) in {self.directory} that do not read "
                    f"({'; '.join(failed)}); resuming from {os.path.basename(path)}",
                    file=sys.stderr,
                    flush=True,
                )
                failed = []
            yield record
        if failed:
            raise BackupDamagedError(
                f"no checkpoint in the backup {self.directory} reads ({'; '.join(failed)}): "
                "add --overwrite to start afresh"
            )

    def _restore(self, path: str) -> dict[str, Any]:
        self._checkpoint.restore(path).assert_existing_objects_matched()
        record = json.loads(self._record.numpy().decode())
        if record.get("fingerprint") != self.fingerprint:
            raise BackupMismatchError(
                f"the backup in {self.directory} belongs to a run with other settings: rerun "
                "with the same flags to resume it, or add --overwrite to start afresh"
            )
        best = record.get("best_checkpoint")
        if best:  # read in full, so that a damaged one rules out this checkpoint here
            reader = tf.train.load_checkpoint(best)
            for name in reader.get_variable_to_shape_map():
                reader.get_tensor(name)
        return record

    def load_best_weights(self, path: str) -> list[np.ndarray]:
        """The weights saved by `save_best_weights` at `path` (the model keeps its own).

        The checkpoint holds every variable, the dropout layers' seed-generator states
        included, which `get_weights` / `set_weights` do not cover: all of them are put
        back, or a resumed run would replay the best epoch's dropout masks.
        """
        current = [v.numpy() for v in self.model.variables]
        self._best_checkpoint.read(path).assert_existing_objects_matched()
        best = self.model.get_weights()
        for variable, value in zip(self.model.variables, current, strict=True):
            variable.assign(value)
        return best

    def restore_last_finite(self) -> dict[str, Any] | None:
        """Restores the newest checkpoint that reads and holds only finite weights; returns its
        record (or None)."""
        with contextlib.suppress(BackupDamagedError):
            for record in self._readable_checkpoints():
                if all(np.isfinite(w).all() for w in self.model.get_weights()):
                    return record
        return None

    def delete(self) -> None:
        """Removes the directory `save` writes to (after the run has written its results).

        A worker that saves elsewhere also removes the chief's `directory` if it left it
        empty (creating its restoring manager made it; on shared storage the chief's
        own files stay).
        """
        shutil.rmtree(self.save_directory, ignore_errors=True)
        if self.save_directory != self.directory:
            with contextlib.suppress(OSError):  # absent, or holding the chief's checkpoints
                os.rmdir(self.directory)


class ResumableEarlyStopping(keras.callbacks.EarlyStopping):
    """`EarlyStopping` on a validation metric whose state survives a restart and several `fit` calls.

    `state()` / `load_state()` carry the patience count and the best epoch and
    value; the best weights themselves are saved by `BackupCallback`. The state
    is reset only by the first `fit`, and the best weights are restored at the
    end of a `fit` only while `restore_at_train_end` is True (a resumed run fits
    the rest of an interrupted epoch first, then the remaining epochs).

    Args:
        patience: epochs without a better `monitor` before stopping.
        monitor: the validation metric to maximise, e.g. `"val_auc"` or `"val_gauc"`.
    """

    def __init__(self, patience: int, monitor: str = "val_auc") -> None:
        super().__init__(monitor=monitor, mode="max", patience=patience, restore_best_weights=True)
        self.restore_at_train_end = True
        self._started = False

    def state(self) -> dict[str, Any]:
        best = None if self.best is None else float(self.best)
        return {"wait": self.wait, "best": best, "best_epoch": self.best_epoch}

    def load_state(self, state: dict[str, Any], best_weights: list[np.ndarray] | None) -> None:
        self.on_train_begin()
        self.wait, self.best, self.best_epoch = state["wait"], state["best"], state["best_epoch"]
        self.best_weights = best_weights

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        if not self._started:
            super().on_train_begin(logs)
            self._started = True

    def on_train_end(self, logs: dict[str, Any] | None = None) -> None:
        if self.restore_at_train_end:
            super().on_train_end(logs)


class BackupCallback(keras.callbacks.Callback):
    """Saves a `TrainingBackup` every `save_every` steps and at the end of every epoch.

    Put it after the callbacks whose decisions it records (`ResumableEarlyStopping`,
    the NaN stop), so that an epoch's checkpoint includes them.

    Args:
        backup: where to save.
        steps_per_epoch: batches in one epoch.
        save_every: steps between mid-epoch checkpoints (0: at epoch ends only); with
            `steps_per_execution > 1`, at the end of the execution that passes each
            multiple.
        record: the run's record so far (`epochs_done`, `history`, ...), updated in place.
        early_stopping: the early-stopping callback whose state to keep, if any.
    """

    def __init__(
        self,
        backup: TrainingBackup,
        steps_per_epoch: int,
        save_every: int,
        record: dict[str, Any],
        early_stopping: ResumableEarlyStopping | None = None,
    ) -> None:
        super().__init__()
        self.backup = backup
        self.steps_per_epoch = steps_per_epoch
        self.save_every = save_every
        self.record = record
        self.early_stopping = early_stopping
        self.diverged = False
        self._saved_at = 0

    def _epoch_step(self) -> int:
        return global_step(self.model) - self.record["epochs_done"] * self.steps_per_epoch

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self._saved_at = self._epoch_step()

    def on_train_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        # With `steps_per_execution > 1` this runs once per execution, so save at the
        # first call past each multiple of `save_every`.
        step = self._epoch_step()
        loss = (logs or {}).get("loss")
        if loss is not None and not np.isfinite(float(loss)):
            self.diverged = True  # the NaN stop ends the fit; nothing after this is saved
        if self.diverged or not self.save_every or step >= self.steps_per_epoch:
            return
        if step // self.save_every > self._saved_at // self.save_every:
            self.backup.save(self.record)
            self._saved_at = step

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        if self.diverged:
            return
        logs = logs or {}
        history = self.record["history"]
        for key, value in logs.items():
            history.setdefault(key, []).append(float(value))
        self.record["epochs_done"] = epoch + 1
        self.record["stopped"] = bool(self.model.stop_training)
        previous_best = self.record.get("best_checkpoint")
        if self.early_stopping is not None:
            stopper = self.early_stopping
            self.record["early_stopping"] = stopper.state()
            if stopper.best_epoch == epoch and stopper.best_weights is not None:
                self.record["best_checkpoint"] = self.backup.save_best_weights(epoch)
        self.backup.save(self.record)
        if self.record.get("best_checkpoint") != previous_best:
            self.backup.remove_best_weights(keep=self.record["best_checkpoint"])

    def save_now(self) -> bool:
        """Saves the current position if it lies inside an epoch (on Ctrl-C); returns whether it did."""
        step = self._epoch_step()
        if self.diverged or not 0 < step < self.steps_per_epoch:
            return False
        self.backup.save(self.record)
        return True


class _EndFitAfterOneEpoch(keras.callbacks.Callback):
    """Ends a `fit` after its first epoch; remembers whether another callback had stopped it.

    Put it last: at the epoch's end the earlier callbacks (early stopping, the NaN stop)
    have already decided (Keras ends an epoch stopped inside it with `on_epoch_end` too).
    """

    def __init__(self) -> None:
        super().__init__()
        self.stopped_by_others = False

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self.stopped_by_others = bool(self.model.stop_training)
        self.model.stop_training = True


def fit_resumable(
    model: keras.Model,
    epoch_dataset: Any,
    *,
    validation_data: tf.data.Dataset | None,
    epochs: int,
    steps_per_epoch: int,
    record: dict[str, Any],
    callbacks: list[keras.callbacks.Callback],
    early_stopping: ResumableEarlyStopping | None,
    verbose: int | str,
) -> None:
    """Runs `model.fit` from the position in `record` (restored by `TrainingBackup`) to `epochs`.

    One `fit` per epoch, over that epoch's own pipeline: Keras ends a
    multi-step execution (`steps_per_execution > 1`) early only where the data
    ends, so an epoch's end must be its pipeline's end (with `steps_per_epoch`
    over one long pipeline, Keras 3.15 runs whole executions past the epoch's
    last step). An epoch interrupted after `k` of its steps is finished with its
    first `k` batches skipped. The early-stopping state carries over from one
    `fit` to the next; the best epoch's weights are restored once, at the end.

    Args:
        model: the compiled model, with the restored state.
        epoch_dataset: a function from an epoch (0-based) to that epoch's training pipeline.
        validation_data: the validation pipeline, or None.
        epochs: the most epochs.
        steps_per_epoch: batches in each epoch's pipeline.
        record: the backup record (`epochs_done`, `stopped`).
        callbacks: the callbacks of every `fit`.
        early_stopping: the early-stopping callback among `callbacks`, if any.
        verbose: as in `fit`.
    """
    one_epoch = _EndFitAfterOneEpoch()
    fit = dict(
        validation_data=validation_data,
        callbacks=[*callbacks, one_epoch],
        verbose=verbose,
        shuffle=False,
    )
    if early_stopping is not None:
        early_stopping.restore_at_train_end = False
    if not record.get("stopped"):
        for epoch in range(record["epochs_done"], epochs):
            data = epoch_dataset(epoch)
            step = global_step(model) - epoch * steps_per_epoch
            if step:
                data = data.skip(step)
            # `epochs=epochs` so that the progress bar reads "Epoch 3/10"; the callback
            # ends the fit after this one epoch.
            model.fit(data, initial_epoch=epoch, epochs=epochs, **fit)
            if one_epoch.stopped_by_others:
                break
    if early_stopping is not None:
        early_stopping.restore_at_train_end = True
        early_stopping.set_model(model)  # no `fit` ran when the run had finished its epochs
        early_stopping.on_train_end()  # the best epoch's weights, as after an uninterrupted fit
