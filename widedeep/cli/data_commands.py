"""`widedeep simulate` and `widedeep prepare`: the commands that write a dataset directory."""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from widedeep.cli.report import print_json
from widedeep.errors import UsageError


def cmd_simulate(args: argparse.Namespace) -> None:
    """`widedeep simulate`: a simulated dataset directory, and a sentence (or JSON) about it."""
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
        print_json(summary)
        return
    splits = ", ".join(f"{k} {v:,}" for k, v in summary["splits"].items())
    oracle = (
        f"the true click probabilities score AUC {summary['oracle_auc']:.4f} on test"
        if summary.get("oracle_auc") is not None
        else "the test split has no impressions, so it has no oracle AUC"
    )
    print(
        f"Simulated {sum(summary['splits'].values()):,} impressions into {args.out} ({splits}); "
        f"{oracle} (meta.json has the rest)."
    )


def cmd_prepare(args: argparse.Namespace) -> None:
    """`widedeep prepare kuairand | movielens | log`: a dataset directory from a log."""
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
        print_json({k: v for k, v in meta.items() if k != "settings"})


LOG_ROLES = ("user", "item", "time", "label", "dislike", "users", "user_key", "items", "item_key")


def _prepare_log(args: argparse.Namespace, options: dict[str, Any]) -> dict[str, Any]:
    """`prepare log`: roles from --config or from flags (not both), a per-column report on stderr."""
    from widedeep.data.user_log import LogConfig, prepare_log

    flags = {k: getattr(args, k) for k in LOG_ROLES if getattr(args, k) is not None}
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


def check_data(data_dir: str) -> None:
    """Refuses a dataset directory whose meta, schema, shards or columns do not read."""
    from widedeep.data.reader import check_columns, check_tfrecord_file, load_dataset_dir

    schema, meta = load_dataset_dir(data_dir)
    for split, info in meta["splits"].items():
        for name in info["files"]:
            check_tfrecord_file(os.path.join(data_dir, name))
        check_columns(data_dir, split, schema)
