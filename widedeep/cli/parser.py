"""The `widedeep` command's argument parser: its subcommands and their flags."""

from __future__ import annotations

import argparse

from widedeep.cli.data_commands import LOG_ROLES, cmd_prepare, cmd_simulate
from widedeep.cli.flags import (
    Parser,
    add_json_flag,
    add_model_flags,
    add_option,
    boolean,
    defaults_of,
    fraction,
    memory_limit,
    non_negative_int,
    positive_int,
)
from widedeep.cli.model_commands import cmd_evaluate, cmd_export, cmd_predict
from widedeep.cli.train_commands import cmd_train, cmd_tune


def build_parser() -> argparse.ArgumentParser:
    from tuning.hypermodels import TUNABLE_MODELS
    from tuning.search import TUNERS, run_search
    from widedeep.data.source import PrepareOptions
    from widedeep.distribute import STRATEGIES
    from widedeep.training import MODELS, MONITORS, TrainConfig

    prepare = defaults_of(PrepareOptions)
    training = defaults_of(TrainConfig)
    tuning = defaults_of(run_search)

    parser = Parser(prog="widedeep", description="Wide & Deep and DFN for CTR prediction.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=Parser)

    p = sub.add_parser("simulate", help="write a simulated dataset with a planted ground truth")
    p.add_argument("--out", required=True, help="dataset directory to create")
    p.add_argument("--seed", type=int)
    p.add_argument("--num-users", type=positive_int)
    p.add_argument("--num-items", type=positive_int)
    p.add_argument("--num-impressions", type=positive_int)
    p.add_argument(
        "--users-per-round", type=positive_int, help="distinct users shown an item per time step"
    )
    p.add_argument("--max-length", type=positive_int, help="feedback sequence length L")
    p.add_argument("--overwrite", action="store_true", help="replace an existing dataset in --out")
    add_json_flag(p)
    p.set_defaults(func=cmd_simulate)

    p = sub.add_parser(
        "prepare", help="turn a log (yours, KuaiRand or MovieLens) into a dataset directory"
    )
    src = p.add_subparsers(dest="source", required=True, parser_class=Parser)
    for name in ("kuairand", "movielens", "log"):
        q = src.add_parser(name)
        if name == "log":
            q.add_argument("--config", help="JSON file of the column roles (see LogConfig)")
            q.add_argument(
                "--log", action="append", help="log CSV or Parquet file or glob (repeatable)"
            )
            for role in LOG_ROLES:
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
        add_option(q, prepare, "max_length", "feedback sequence length", type=positive_int)
        add_option(q, prepare, "test_fraction", "last share held out as test", type=fraction)
        add_option(q, prepare, "split_by", choices=("time", "user"))
        add_option(q, prepare, "on_error", choices=("skip", "stop"))
        q.add_argument(
            "--overwrite", action="store_true", help="replace an existing dataset in --out"
        )
        add_option(
            q,
            prepare,
            "memory_limit",
            "MiB for the log's rows held at once; a longer log is sorted out of core",
            type=memory_limit,
            metavar="MIB",
        )
        q.add_argument(
            "--temp-dir", help="scratch folder for an out-of-core sort (default: beside --out)"
        )
        add_option(
            q,
            prepare,
            "item_history",
            "true: add the item's impressions and click rate before each impression as "
            "features (docs/guides/prepare-your-log.md, Item history)",
            type=boolean,
        )
        add_json_flag(q)
        q.set_defaults(func=cmd_prepare)

    p = sub.add_parser("train", help="train a model on a dataset directory")
    p.add_argument("--data", required=True, help="dataset directory")
    add_option(p, training, "model", choices=MODELS)
    p.add_argument("--out", required=True, help="run directory for model.keras and metrics.json")
    for name, text, kwargs in (
        ("epochs", "most epochs; early stopping usually ends sooner", {"type": positive_int}),
        ("batch_size", "", {"type": positive_int}),
        (
            "steps_per_execution",
            "training steps per call into TensorFlow; callbacks run between calls",
            {"type": positive_int, "metavar": "STEPS"},
        ),
        ("logdir", "TensorBoard root ('' to disable)", {}),
        ("seed", "", {"type": int}),
        (
            "validation_fraction",
            "share of the train split held out for validation: its last rows by time, or "
            "each user's last rows for a dataset prepared with --split-by user",
            {"type": fraction},
        ),
        (
            "early_stopping",
            "stop after PATIENCE epochs without a better --monitor and keep the best "
            "epoch's weights; 0 trains every epoch",
            {"type": non_negative_int, "metavar": "PATIENCE"},
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
            {"type": non_negative_int, "metavar": "STEPS"},
        ),
        (
            "cache_mb",
            "keep the parsed training rows in memory across epochs when they take at most "
            "MB MiB; 0 parses the files every epoch; None allows a quarter of this machine's memory",
            {"type": non_negative_int, "metavar": "MB"},
        ),
    ):
        add_option(p, training, name, text, **kwargs)
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
    add_option(
        p,
        training,
        "strategy",
        "tf.distribute strategy; multi_worker reads the cluster from TF_CONFIG (docs/guides/distributed.md)",
        choices=STRATEGIES,
    )
    add_model_flags(p)
    add_json_flag(p)
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("tune", help="KerasTuner search over both optimizers and the model shape")
    p.add_argument("--data", required=True, help="dataset directory")
    add_option(p, tuning, "model", choices=TUNABLE_MODELS)
    add_option(p, tuning, "tuner", choices=TUNERS)
    add_option(p, tuning, "max_trials", type=positive_int)
    p.add_argument("--out", required=True, help="search directory (resumable: rerun to continue)")
    add_option(p, tuning, "epochs", type=positive_int)
    add_option(p, tuning, "batch_size", type=positive_int)
    add_option(p, tuning, "seed", type=int)
    add_option(p, tuning, "logdir", "TensorBoard root ('' to disable)")
    add_option(p, tuning, "validation_fraction", type=fraction)
    add_option(p, tuning, "monitor", "the trials' objective", choices=MONITORS)
    p.add_argument("--overwrite", action="store_true", help="start the search afresh")
    p.add_argument("--no-baseline", action="store_true", help="skip scoring the default settings")
    p.set_defaults(func=cmd_tune)

    p = sub.add_parser("evaluate", help="exact test metrics of a saved model")
    p.add_argument("--model", required=True, help="a .keras file written by train")
    p.add_argument("--data", required=True)
    p.add_argument("--split", default="test")
    add_json_flag(p)
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("export", help="a SavedModel for TensorFlow Serving, from raw features")
    p.add_argument("--model", required=True, help="a .keras file written by train")
    p.add_argument("--out", required=True, help="SavedModel directory, e.g. serving/ctr/1")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("predict", help="score every row of a split into a CSV or Parquet file")
    p.add_argument("--model", required=True, help="a .keras file or an exported SavedModel")
    p.add_argument("--data", required=True, help="dataset directory")
    p.add_argument("--split", default="test")
    p.add_argument("--out", required=True, help="output file, .csv or .parquet")
    p.add_argument("--batch-size", type=positive_int, default=8192)
    p.set_defaults(func=cmd_predict)
    return parser
