"""`widedeep train` and `widedeep tune`: the commands that fit models on a dataset directory."""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import os
import sys
from typing import Any

from widedeep.cli.data_commands import check_data
from widedeep.cli.report import EXIT_DIVERGED, metrics_sentence, print_json
from widedeep.errors import UsageError


def cmd_train(args: argparse.Namespace) -> None:
    """`widedeep train`: a model, its metrics and config in `--out` (exit 3 if it diverges)."""
    from widedeep.distribute import get_strategy
    from widedeep.optimizers import OptimizerConfig
    from widedeep.safe_output import is_out_of_space

    strategy = get_strategy(args.strategy)  # multi_worker: before TensorFlow runs any op
    from widedeep.training import TrainConfig, TrainingDivergedError, train

    optimizer = OptimizerConfig(
        **{
            k: getattr(args, k)
            for k in OptimizerConfig.__dataclass_fields__
            if getattr(args, k) is not None
        }
    )
    given = {
        f.name: getattr(args, f.name) for f in dataclasses.fields(TrainConfig) if f.name in args
    }
    config = TrainConfig(
        **given,
        hyperparameters=_hyperparameters(args),
        optimizer=optimizer,
        feedback_weights=args.loss_weights,
    )
    if args.warm_start and not os.path.isfile(args.warm_start):
        raise UsageError(f"--warm-start: no such model file: {args.warm_start}")
    if args.early_stopping and not args.validation_fraction:
        raise UsageError(
            "--early-stopping needs a validation split: --validation-fraction is 0 "
            "(add --early-stopping 0 to train every epoch without one)"
        )
    check_data(args.data)
    with _run_dir_locks(config, strategy):
        _prepare_run_dir(config, args.overwrite)
        try:
            metrics = train(config)
        except TrainingDivergedError as e:
            print(f"widedeep: training diverged: {e}", file=sys.stderr)
            raise SystemExit(EXIT_DIVERGED) from None
        except Exception as e:
            if is_out_of_space(e):  # results half written: the backup resumes the rerun
                for name in RUN_FILES:
                    with contextlib.suppress(FileNotFoundError):
                        os.remove(os.path.join(config.out, name))
            raise
    if not metrics:  # a worker other than the chief of a multi-worker cluster
        print("widedeep: training done; the chief worker writes the model and the metrics")
        return
    if args.json:
        print_json(metrics)
    else:
        print(_train_summary(metrics, args.out, args.logdir or None))


def _hyperparameters(args: argparse.Namespace) -> dict[str, Any]:
    from widedeep.models.dfn import DFN_DEFAULTS

    hp: dict[str, Any] = {}
    if args.hidden_units is not None:
        hp["hidden_units"] = args.hidden_units
    if args.dropout is not None:
        hp["dropout"] = args.dropout
    if args.embedding_dim is not None:
        hp["embedding_dim"] = args.embedding_dim
    if args.model == "dfn":
        for key in DFN_DEFAULTS:
            value = getattr(args, key, None)
            if value is not None:
                hp[key] = value
    else:
        dfn_only = [k for k in DFN_DEFAULTS if getattr(args, k, None) is not None and k not in hp]
        if dfn_only:
            raise UsageError(f"--{dfn_only[0].replace('_', '-')} applies to --model dfn only")
    return hp


def _train_summary(metrics: dict[str, Any], out: str, logdir: str | None) -> str:
    """The lines `widedeep train` ends with when `--json` is not given."""
    epochs = f"{metrics['epochs_run']} epoch{'s' if metrics['epochs_run'] != 1 else ''}"
    if "best_epoch" in metrics:
        epochs += f", best {metrics['best_epoch']}"
    lines = [
        f"Trained {metrics['model']} ({epochs}) in {metrics['train_seconds']:.0f} s. "
        f"Test {metrics_sentence(metrics)}.",
        f"Model: {os.path.join(out, 'model.keras')} (metrics.json and config.json beside it; "
        "--json prints the metrics).",
    ]
    if logdir:
        lines.append(f"Training curves: tensorboard --logdir {logdir}")
    return "\n".join(lines)


RUN_FILES = ("model.keras", "metrics.json", "config.json")
"""Files of a finished (or diverged) run: `train --out` refuses a directory holding one."""


def _run_dir_locks(config: Any, strategy: Any) -> contextlib.ExitStack:
    """Locks `--out` (and a `--backup-dir` outside it) for this run: a second `train` exits 2.

    The workers of a multi-worker cluster share `--out`: each holds a lock of its own.
    """
    from widedeep.directory_lock import LOCK_FILE, directory_lock
    from widedeep.distribute import is_chief, worker_id

    stack = contextlib.ExitStack()
    with stack:
        if is_chief(strategy):
            stack.enter_context(directory_lock(config.out, "--out", "train"))
            backup = os.path.abspath(config.resolved_backup_dir())
            if os.path.dirname(backup) != os.path.abspath(config.out):
                stack.enter_context(directory_lock(backup, "--backup-dir", "train"))
        else:
            task_type, task_id = worker_id(strategy)
            lock_file = LOCK_FILE.replace(".lock", f"-{task_type}-{task_id}.lock")
            stack.enter_context(directory_lock(config.out, "--out", "train", lock_file))
        return stack.pop_all()


def _prepare_run_dir(config: Any, overwrite: bool) -> None:
    """Refuses an `--out` with a finished run (unless `--overwrite`) and unwritable outputs.

    A run directory holding only a backup is a run to resume, not to refuse;
    `--overwrite` deletes the backup as well, so training starts afresh.
    """

    from widedeep.directory_lock import LOCK_FILE
    from widedeep.safe_output import check_writable_dir, remove_path

    found = [name for name in RUN_FILES if os.path.exists(os.path.join(config.out, name))]
    if found and not overwrite:
        raise UsageError(
            f"--out {config.out} already holds a run ({', '.join(found)}): choose another "
            "directory or add --overwrite"
        )
    check_writable_dir(config.out, "--out")
    if overwrite:
        for name in found:
            os.remove(os.path.join(config.out, name))
        backup = config.resolved_backup_dir()
        for name in os.listdir(backup) if os.path.isdir(backup) else ():
            if name != LOCK_FILE:  # this run's lock, when the backup is outside --out
                remove_path(os.path.join(backup, name))
    check_writable_dir(config.resolved_backup_dir(), "--backup-dir")
    if config.logdir:
        check_writable_dir(config.logdir, "--logdir")


def cmd_tune(args: argparse.Namespace) -> None:
    """`widedeep tune`: a KerasTuner search, then the best settings retrained (`tuning.run_search`)."""
    from tuning.search import run_search

    check_data(args.data)
    metrics = run_search(
        args.data,
        args.out,
        model=args.model,
        tuner=args.tuner,
        max_trials=args.max_trials,
        epochs=args.epochs,
        batch_size=args.batch_size,
        seed=args.seed,
        logdir=args.logdir or None,
        validation_fraction=args.validation_fraction,
        monitor=args.monitor,
        overwrite=args.overwrite,
        evaluate_defaults=not args.no_baseline,
        verbose=2,
    )
    print_json(metrics)
