"""The `widedeep` command line: simulate | prepare | train | evaluate | export | predict | tune.

User mistakes (a missing directory, a malformed schema, a feature the data
lacks, an unknown flag, an output directory another process is writing into)
print one line on stderr and exit with status 2; a full disk prints one line
naming the output and exits with 1; a training run whose loss becomes NaN or
infinite stops there and exits with 3. Set `WIDEDEEP_DEBUG=1` to see the full
traceback instead.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import inspect
import json
import math
import os
import sys
from collections.abc import Sequence
from typing import Any, NoReturn

EXIT_NO_SPACE = 1
EXIT_USAGE = 2
EXIT_DIVERGED = 3


class UsageError(Exception):
    """A mistake in the command line or its inputs, reported as one line."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{self.prog}: {message} (see '{self.prog} --help')")


def _int_at_least(minimum: int, what: str) -> Any:
    """An argparse `type` for integers >= `minimum`."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}")
        return value

    return parse


_positive_int = _int_at_least(1, "a positive integer")
_non_negative_int = _int_at_least(0, "an integer >= 0")
_memory_limit = _int_at_least(16, "a number of MiB >= 16")


def _fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1), got {text!r}") from None
    if not 0 <= value < 1:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1), got {text!r}")
    return value


def _float_at_least(minimum: float, inclusive: bool) -> Any:
    """An argparse `type` for finite numbers `>= minimum` (`> minimum` unless `inclusive`)."""
    what = f"a number {'>=' if inclusive else '>'} {minimum:g}"

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
        if not math.isfinite(value) or value < minimum or (value == minimum and not inclusive):
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}")
        return value

    return parse


_positive_float = _float_at_least(0.0, inclusive=False)
_non_negative_float = _float_at_least(0.0, inclusive=True)


def _bool(text: str) -> bool:
    """An argparse `type` for `true`/`false` (also 1/0, yes/no, on/off); anything else is an error."""
    value = {"1": True, "true": True, "yes": True, "on": True}.get(text.lower())
    if value is None and text.lower() not in ("0", "false", "no", "off"):
        raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")
    return bool(value)


def _int_list(text: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated integers, got {text!r}"
        ) from None
    if not values or any(v < 1 for v in values):
        raise argparse.ArgumentTypeError(
            f"expected comma-separated positive integers, got {text!r}"
        )
    return values


def _weights(text: str) -> tuple[float, float, float]:
    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected three numbers 'unclick,click,dislike', got {text!r}"
        ) from None
    if len(values) != 3 or any(not (0 <= v < math.inf) for v in values) or not any(values):
        raise argparse.ArgumentTypeError(
            f"expected three non-negative numbers 'unclick,click,dislike', not all 0, got {text!r}"
        )
    return values  # type: ignore[return-value]


def _print_json(payload: dict[str, Any]) -> None:
    print(json.dumps(payload, indent=2, sort_keys=True, default=str))


def _metrics_sentence(metrics: dict[str, Any]) -> str:
    """`test AUC 0.7254, GAUC 0.7168, log loss 0.5257 on 50,000 impressions` (+ the oracle)."""
    text = (
        f"AUC {metrics['auc']:.4f}, GAUC {metrics['gauc']:.4f}, log loss {metrics['logloss']:.4f} "
        f"on {metrics['examples']:,} impressions"
    )
    if "oracle_auc" in metrics:
        text += f" (the simulator's oracle: AUC {metrics['oracle_auc']:.4f})"
    return text


def _train_summary(metrics: dict[str, Any], out: str, logdir: str | None) -> str:
    """The lines `widedeep train` ends with when `--json` is not given."""
    epochs = f"{metrics['epochs_run']} epoch{'s' if metrics['epochs_run'] != 1 else ''}"
    if "best_epoch" in metrics:
        epochs += f", best {metrics['best_epoch']}"
    lines = [
        f"Trained {metrics['model']} ({epochs}) in {metrics['train_seconds']:.0f} s. "
        f"Test {_metrics_sentence(metrics)}.",
        f"Model: {os.path.join(out, 'model.keras')} (metrics.json and config.json beside it; "
        "--json prints the metrics).",
    ]
    if logdir:
        lines.append(f"Training curves: tensorboard --logdir {logdir}")
    return "\n".join(lines)


# ------------------------------------------------------------------ commands
def _cmd_simulate(args: argparse.Namespace) -> None:
    from widedeep.data.simulator import SimulatorConfig, simulate_dataset

    overrides = {
        k: v
        for k, v in vars(args).items()
        if k in SimulatorConfig.__dataclass_fields__ and v is not None
    }
    if "users_per_round" not in overrides and "num_users" in overrides:
        # Users in a round are distinct: small populations get proportionally smaller rounds.
        overrides["users_per_round"] = min(
            SimulatorConfig.users_per_round, max(1, overrides["num_users"] // 4)
        )
    config = SimulatorConfig(**overrides)
    meta = simulate_dataset(args.out, config, progress=True, overwrite=args.overwrite)
    summary = {k: meta[k] for k in ("oracle_auc", "oracle_logloss") if k in meta}
    summary["splits"] = {k: v["examples"] for k, v in meta["splits"].items()}
    summary["out"] = args.out
    if args.json:
        _print_json(summary)
        return
    splits = ", ".join(f"{k} {v:,}" for k, v in summary["splits"].items())
    print(
        f"Simulated {sum(summary['splits'].values()):,} impressions into {args.out} ({splits}); "
        f"the true click probabilities score AUC {summary['oracle_auc']:.4f} on test "
        "(meta.json has the rest)."
    )


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


def _cmd_train(args: argparse.Namespace) -> None:
    from widedeep.distribute import get_strategy
    from widedeep.io import is_out_of_space
    from widedeep.optimizers import OptimizerConfig

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
    _check_data(args.data)
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
        _print_json(metrics)
    else:
        print(_train_summary(metrics, args.out, args.logdir or None))


def _check_data(data_dir: str) -> None:
    from widedeep.data.reader import check_columns, load_dataset_dir
    from widedeep.io import check_tfrecord_file

    schema, meta = load_dataset_dir(data_dir)
    for split, info in meta["splits"].items():
        for name in info["files"]:
            check_tfrecord_file(os.path.join(data_dir, name))
        check_columns(data_dir, split, schema)


RUN_FILES = ("model.keras", "metrics.json", "config.json")
"""Files of a finished (or diverged) run: `train --out` refuses a directory holding one."""


def _run_dir_locks(config: Any, strategy: Any) -> contextlib.ExitStack:
    """Locks `--out` (and a `--backup-dir` outside it) for this run: a second `train` exits 2.

    The workers of a multi-worker cluster share `--out`: each holds a lock of its own.
    """
    from widedeep.distribute import is_chief, worker_id
    from widedeep.io import LOCK_FILE, directory_lock

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

    from widedeep.io import LOCK_FILE, check_writable_dir, remove_path

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


def _cmd_evaluate(args: argparse.Namespace) -> None:
    import keras

    import widedeep  # noqa: F401  (registers the custom objects)
    from widedeep.training import evaluate_model

    if not os.path.isfile(args.model):
        raise UsageError(f"no such model file: {args.model}")
    _check_data(args.data)
    model = keras.models.load_model(args.model)
    metrics = evaluate_model(model, args.data, args.split)
    if args.json:
        _print_json(metrics)
    else:
        print(f"{args.model} on the {args.split} split: {_metrics_sentence(metrics)}.")


def _cmd_export(args: argparse.Namespace) -> None:
    import keras

    import widedeep  # noqa: F401  (registers the custom objects)
    from widedeep.export import export_saved_model

    if not os.path.isfile(args.model):
        raise UsageError(f"no such model file: {args.model}")
    if os.path.exists(args.out) and not args.overwrite:
        raise UsageError(f"{args.out} exists (add --overwrite to replace it)")
    spec = export_saved_model(keras.models.load_model(args.model), args.out, overwrite=True)
    _print_json(
        {
            "out": args.out,
            "signatures": ["serving_default", "serve_examples"],
            "inputs": {k: [s.dtype.name, [d or -1 for d in s.shape]] for k, s in spec.items()},
        }
    )


def _cmd_predict(args: argparse.Namespace) -> None:
    from widedeep.export import is_saved_model, predict_to_file

    if not (os.path.isfile(args.model) or is_saved_model(args.model)):
        raise UsageError(f"no such model: {args.model} (a .keras file or a SavedModel directory)")
    _print_json(
        predict_to_file(
            args.model,
            args.data,
            args.out,
            split=args.split,
            batch_size=args.batch_size,
            progress=True,
        )
    )


def _cmd_prepare(args: argparse.Namespace) -> None:
    options = {
        "max_length": args.max_length,
        "test_fraction": args.test_fraction,
        "split_by": args.split_by,
        "on_error": args.on_error,
        "progress": True,
        "overwrite": args.overwrite,
        "memory_limit": args.memory_limit,
        "temp_dir": args.temp_dir,
        "item_history": args.item_history,
    }
    if args.source == "kuairand":
        from widedeep.data.kuairand import prepare_kuairand

        meta = prepare_kuairand(args.log, args.users, args.videos, args.out, **options)
    elif args.source == "movielens":
        from widedeep.data.movielens import prepare_movielens

        meta = prepare_movielens(args.path, args.out, **options)
    else:
        meta = _prepare_log(args, options)
    if args.json:  # the one-line summary is on stderr already
        _print_json({k: v for k, v in meta.items() if k != "settings"})


_LOG_ROLES = ("user", "item", "time", "label", "dislike", "users", "user_key", "items", "item_key")


def _prepare_log(args: argparse.Namespace, options: dict[str, Any]) -> dict[str, Any]:
    """`prepare log`: roles from --config or from flags (not both), a per-column report on stderr."""
    from widedeep.data.user_log import LogConfig, prepare_log

    flags = {k: getattr(args, k) for k in _LOG_ROLES if getattr(args, k) is not None}
    if args.context:
        flags["context"] = [c for text in args.context for c in text.split(",") if c]
    if args.log:
        flags["logs"] = args.log
    if args.config:
        if flags:
            raise UsageError(
                f"give the column roles in --config or as flags, not both ({sorted(flags)})"
            )
        config = LogConfig.from_file(args.config)
    else:
        missing = [f"--{k}" for k in ("logs", "user", "item", "time", "label") if k not in flags]
        if missing:
            raise UsageError(
                f"prepare log needs {', '.join(missing).replace('--logs', '--log')} (or --config)"
            )
        config = LogConfig(**flags)
    meta = prepare_log(config, args.out, **options)
    for name, entry in meta["columns"].items():
        detail = ", ".join(f"{k}={v}" for k, v in entry.items() if k not in ("role", "kind"))
        print(f"{name}: {entry['role']}, {entry['kind']} ({detail})", file=sys.stderr)
    if meta["ignored_columns"]:
        print(f"ignored: {', '.join(meta['ignored_columns'])}", file=sys.stderr)
    return meta


def _cmd_tune(args: argparse.Namespace) -> None:
    from tuning.search import run_search

    _check_data(args.data)
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
    _print_json(metrics)


# -------------------------------------------------------------------- parser
def _add_model_flags(p: argparse.ArgumentParser) -> None:
    from widedeep.models.dfn import DFN_DEFAULTS
    from widedeep.optimizers import OptimizerConfig

    g = p.add_argument_group("model hyper-parameters")
    g.add_argument("--hidden-units", type=_int_list, help="deep MLP widths, e.g. 128,64")
    g.add_argument("--dropout", type=_fraction, help="in [0, 1)")
    g.add_argument("--embedding-dim", type=_positive_int, help="override every embedding width")
    d = p.add_argument_group("DFN hyper-parameters (--model dfn)")
    for key, default in DFN_DEFAULTS.items():
        flag = "--" + key.replace("_", "-")
        if isinstance(default, bool):
            d.add_argument(
                flag,
                type=_bool,
                metavar="{true,false}",
                help=f"default {str(default).lower()}",
            )
        elif isinstance(default, int):
            d.add_argument(flag, type=_positive_int, help=f"default {default}")
        elif isinstance(default, float):
            d.add_argument(flag, type=_fraction, help=f"default {default}")
        elif isinstance(default, (list, tuple)):
            d.add_argument(flag, type=_int_list, help=f"default {','.join(map(str, default))}")
        else:
            d.add_argument(flag, help=f"default {default}")
    o = p.add_argument_group("optimizers")
    defaults = OptimizerConfig()
    for name, what in (
        ("wide_learning_rate", "FTRL learning rate"),
        ("wide_l1", "FTRL L1 strength"),
        ("wide_l2", "FTRL L2 strength"),
        ("wide_initial_accumulator", "FTRL initial accumulator"),
        ("deep_learning_rate", "Adagrad learning rate"),
        ("deep_initial_accumulator", "Adagrad initial accumulator"),
    ):
        flag = "--" + name.replace("_", "-")
        kind = _positive_float if name.endswith("learning_rate") else _non_negative_float
        o.add_argument(flag, type=kind, help=f"{what} (default {getattr(defaults, name)})")
    p.add_argument(
        "--loss-weights",
        type=_weights,
        metavar="U,C,D",
        help="loss weights of unclick,click,dislike impressions (default 1,1,1; the DFN "
        "paper's: 1,1,10)",
    )


def _defaults_of(owner: Any) -> dict[str, Any]:
    """The defaults of a dataclass's fields or of a function's keyword arguments."""
    if dataclasses.is_dataclass(owner):
        return {
            f.name: f.default
            for f in dataclasses.fields(owner)
            if f.default is not dataclasses.MISSING
        }
    return {
        name: parameter.default
        for name, parameter in inspect.signature(owner).parameters.items()
        if parameter.default is not inspect.Parameter.empty
    }


def _add_option(
    p: argparse.ArgumentParser, defaults: dict[str, Any], name: str, help: str = "", **kwargs: Any
) -> None:
    """`--name`, whose default is `defaults[name]` (its one home), said at the end of its help."""
    default = defaults[name]
    shown = str(default).lower() if isinstance(default, bool) else default
    p.add_argument(
        f"--{name.replace('_', '-')}",
        default=default,
        help=f"{help} (default {shown})" if help else f"default {shown}",
        **kwargs,
    )


def _add_json_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="print the results as JSON instead")


def build_parser() -> argparse.ArgumentParser:
    from tuning.hypermodels import TUNABLE_MODELS
    from tuning.search import TUNERS, run_search
    from widedeep.data.source import PrepareOptions
    from widedeep.distribute import STRATEGIES
    from widedeep.training import MODELS, MONITORS, TrainConfig

    prepare = _defaults_of(PrepareOptions)
    training = _defaults_of(TrainConfig)
    tuning = _defaults_of(run_search)

    parser = _Parser(prog="widedeep", description="Wide & Deep and DFN for CTR prediction.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    p = sub.add_parser("simulate", help="write a simulated dataset with a planted ground truth")
    p.add_argument("--out", required=True, help="dataset directory to create")
    p.add_argument("--seed", type=int)
    p.add_argument("--num-users", type=_positive_int)
    p.add_argument("--num-items", type=_positive_int)
    p.add_argument("--num-impressions", type=_positive_int)
    p.add_argument(
        "--users-per-round", type=_positive_int, help="distinct users shown an item per time step"
    )
    p.add_argument("--max-length", type=_positive_int, help="feedback sequence length L")
    p.add_argument("--overwrite", action="store_true", help="replace an existing dataset in --out")
    _add_json_flag(p)
    p.set_defaults(func=_cmd_simulate)

    p = sub.add_parser(
        "prepare", help="turn a log (yours, KuaiRand or MovieLens) into a dataset directory"
    )
    src = p.add_subparsers(dest="source", required=True, parser_class=_Parser)
    for name in ("kuairand", "movielens", "log"):
        q = src.add_parser(name)
        if name == "log":
            q.add_argument("--config", help="JSON file of the column roles (see LogConfig)")
            q.add_argument(
                "--log", action="append", help="log CSV or Parquet file or glob (repeatable)"
            )
            for role in _LOG_ROLES:
                q.add_argument(f"--{role.replace('_', '-')}", dest=role)
            q.add_argument(
                "--context", action="append", help="context feature columns (comma-separated)"
            )
        elif name == "kuairand":
            q.add_argument(
                "--log", action="append", required=True, help="interaction log CSV (repeatable)"
            )
            q.add_argument("--users", required=True, help="user_features CSV")
            q.add_argument("--videos", required=True, help="video_features_basic CSV")
        else:
            q.add_argument(
                "--path", required=True, help="directory with u.data (100K) or ratings.dat (1M)"
            )
        q.add_argument("--out", required=True)
        _add_option(q, prepare, "max_length", "feedback sequence length", type=_positive_int)
        _add_option(q, prepare, "test_fraction", "last share held out as test", type=_fraction)
        _add_option(q, prepare, "split_by", choices=("time", "user"))
        _add_option(q, prepare, "on_error", choices=("skip", "stop"))
        q.add_argument(
            "--overwrite", action="store_true", help="replace an existing dataset in --out"
        )
        _add_option(
            q,
            prepare,
            "memory_limit",
            "MiB for the log's rows held at once; a longer log is sorted out of core",
            type=_memory_limit,
            metavar="MIB",
        )
        q.add_argument(
            "--temp-dir", help="scratch folder for an out-of-core sort (default: beside --out)"
        )
        _add_option(
            q,
            prepare,
            "item_history",
            "true: add the item's impressions and click rate before each impression as "
            "features (see the README)",
            type=_bool,
        )
        _add_json_flag(q)
        q.set_defaults(func=_cmd_prepare)

    p = sub.add_parser("train", help="train a model on a dataset directory")
    p.add_argument("--data", required=True, help="dataset directory")
    _add_option(p, training, "model", choices=MODELS)
    p.add_argument("--out", required=True, help="run directory for model.keras and metrics.json")
    for name, text, kwargs in (
        ("epochs", "most epochs; early stopping usually ends sooner", {"type": _positive_int}),
        ("batch_size", "", {"type": _positive_int}),
        (
            "steps_per_execution",
            "training steps per call into TensorFlow; callbacks run between calls",
            {"type": _positive_int, "metavar": "STEPS"},
        ),
        ("logdir", "TensorBoard root ('' to disable)", {}),
        ("seed", "", {"type": int}),
        (
            "validation_fraction",
            "share of the train split held out for validation: its last rows by time, or "
            "each user's last rows for a dataset prepared with --split-by user",
            {"type": _fraction},
        ),
        (
            "early_stopping",
            "stop after PATIENCE epochs without a better --monitor and keep the best "
            "epoch's weights; 0 trains every epoch",
            {"type": _non_negative_int, "metavar": "PATIENCE"},
        ),
        (
            "monitor",
            "what early stopping and the best epoch maximise: the validation AUC or GAUC "
            "(per-user AUC weighted by impressions)",
            {"choices": MONITORS},
        ),
        (
            "backup_every",
            "steps between checkpoints inside an epoch; 0: at epoch ends only",
            {"type": _non_negative_int, "metavar": "STEPS"},
        ),
        (
            "cache_mb",
            "keep the parsed training rows in memory across epochs when they take at most "
            "MB MiB; 0 parses the files every epoch; None allows a quarter of this machine's memory",
            {"type": _non_negative_int, "metavar": "MB"},
        ),
    ):
        _add_option(p, training, name, text, **kwargs)
    p.add_argument(
        "--backup-dir",
        help="resumable checkpoints (default <out>/backup): rerun the same command to resume",
    )
    p.add_argument(
        "--overwrite", action="store_true", help="replace a finished run (and any backup) in --out"
    )
    p.add_argument(
        "--deterministic",
        action="store_true",
        help="TensorFlow op determinism (on GPU, needed for a resumed run to end bit-identical)",
    )
    p.add_argument(
        "--warm-start",
        metavar="OLD/model.keras",
        help="start from an earlier model: rows of known keys keep their weights and "
        "optimizer slots, new keys start fresh (same --model and hyper-parameters)",
    )
    _add_option(
        p,
        training,
        "strategy",
        "tf.distribute strategy; multi_worker reads the cluster from TF_CONFIG (see README)",
        choices=STRATEGIES,
    )
    _add_model_flags(p)
    _add_json_flag(p)
    p.set_defaults(func=_cmd_train)

    p = sub.add_parser("tune", help="KerasTuner search over both optimizers and the model shape")
    p.add_argument("--data", required=True, help="dataset directory")
    _add_option(p, tuning, "model", choices=TUNABLE_MODELS)
    _add_option(p, tuning, "tuner", choices=TUNERS)
    _add_option(p, tuning, "max_trials", type=_positive_int)
    p.add_argument("--out", required=True, help="search directory (resumable: rerun to continue)")
    _add_option(p, tuning, "epochs", type=_positive_int)
    _add_option(p, tuning, "batch_size", type=_positive_int)
    _add_option(p, tuning, "seed", type=int)
    _add_option(p, tuning, "logdir", "TensorBoard root ('' to disable)")
    _add_option(p, tuning, "validation_fraction", type=_fraction)
    _add_option(p, tuning, "monitor", "the trials' objective", choices=MONITORS)
    p.add_argument("--overwrite", action="store_true", help="start the search afresh")
    p.add_argument("--no-baseline", action="store_true", help="skip scoring the default settings")
    p.set_defaults(func=_cmd_tune)

    p = sub.add_parser("evaluate", help="exact test metrics of a saved model")
    p.add_argument("--model", required=True, help="a .keras file written by train")
    p.add_argument("--data", required=True)
    p.add_argument("--split", default="test")
    _add_json_flag(p)
    p.set_defaults(func=_cmd_evaluate)

    p = sub.add_parser("export", help="a SavedModel for TensorFlow Serving, from raw features")
    p.add_argument("--model", required=True, help="a .keras file written by train")
    p.add_argument("--out", required=True, help="SavedModel directory, e.g. serving/ctr/1")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    p.set_defaults(func=_cmd_export)

    p = sub.add_parser("predict", help="score every row of a split into a CSV or Parquet file")
    p.add_argument("--model", required=True, help="a .keras file or an exported SavedModel")
    p.add_argument("--data", required=True, help="dataset directory")
    p.add_argument("--split", default="test")
    p.add_argument("--out", required=True, help="output file, .csv or .parquet")
    p.add_argument("--batch-size", type=_positive_int, default=8192)
    p.set_defaults(func=_cmd_predict)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `widedeep` console script."""
    import tensorflow as tf

    from widedeep._native_log import debug_enabled
    from widedeep.data.dataset_format import DatasetError
    from widedeep.io import NoSpaceError, is_out_of_space
    from widedeep.schema import SchemaError

    debug = debug_enabled()
    try:
        args = build_parser().parse_args(argv)
        args.func(args)
    except NoSpaceError as e:
        if debug:
            raise
        print(f"widedeep: error: {e}", file=sys.stderr)
        return EXIT_NO_SPACE
    except (UsageError, SchemaError, DatasetError, FileNotFoundError, ValueError) as e:
        if debug:
            raise
        message = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        print(f"widedeep: error: {message}", file=sys.stderr)
        return EXIT_USAGE
    except tf.errors.DataLossError as e:
        if debug:
            raise
        message = str(e).strip().splitlines()[0]
        print(
            f"widedeep: error: damaged dataset shard (checksum mismatch): {message}",
            file=sys.stderr,
        )
        return EXIT_USAGE
    except KeyboardInterrupt as e:
        print(f"widedeep: {e or 'interrupted'}", file=sys.stderr)
        return 130
    except Exception as e:
        if debug or not is_out_of_space(e):
            raise
        # A write that no `NoSpaceError` names (TensorBoard's event files, Keras internals);
        # TensorFlow's messages read "<file>; No space left on device".
        text = str(e).strip().splitlines()[0] if str(e).strip() else ""
        where = getattr(e, "filename", None) or (text.split("; ")[0] if "; " in text else "")
        where = where or "an output"
        print(
            f"widedeep: error: no space left on device while writing {where}; free space or "
            "choose another --out",
            file=sys.stderr,
        )
        return EXIT_NO_SPACE
    return 0


if __name__ == "__main__":
    sys.exit(main())
