"""KuaiRand and MovieLens: dataset sizes, feedback counts and test metrics of each model.

Runs the project's loaders (`prepare_kuairand`, `prepare_movielens`) on a folder
of files in the public layout, then trains every model (wide, deep, wide_deep,
dfn by default) with `widedeep.training.train` and prints JSON: per source the
rows, users, items, click / unclick / dislike counts per split, the split, and
per model the test `auc`, `gauc`, `logloss` and training `examples_per_sec`.

On the real files (nothing is downloaded; point it at what you have):

    python benchmarks/real_data.py --kuairand-dir KuaiRand-Pure/data --movielens-dir ml-1m

`--kuairand-dir` must hold `log_standard_*.csv` (all of them are merged by
time; add `--kuairand-random` for `log_random_*.csv` too), one
`user_features_*.csv` and one `video_features_basic_*.csv`. `--movielens-dir`
holds the 100K (`u.data`, `u.user`, `u.item`) or 1M (`ratings.dat`,
`users.dat`, `movies.dat`) files.

Without the real files, `--synthetic N` first writes SYNTHETIC files in those
public layouts (`benchmarks/public_layouts.py`: the project's simulator dressed
up as KuaiRand and MovieLens files, about N impressions each) and runs the same
path on them. That exercises the loaders at scale (parsing, merging, duplicates,
time ordering, sequences, schema statistics); its metrics describe the
simulator's world, NOT KuaiRand or MovieLens, and the JSON says so
(`"synthetic": true`):

    python benchmarks/real_data.py --synthetic 60000 --epochs 2 --markdown table.md

MovieLens is split per user by default (`--movielens-split-by user`: each
user's latest 20% of ratings are the test split): a global time cut leaves most
MovieLens test users with no training history, since users rate in bursts.
KuaiRand uses the global time cut. `cold_test_share` in the JSON is the share
of test impressions whose user has no training impression.
"""

from __future__ import annotations

import argparse
import dataclasses
import glob
import json
import os
import subprocess
import sys
import tempfile
import time
from typing import Any

import keras
import numpy as np
from public_layouts import kuairand_config, movielens_config, write_kuairand, write_movielens

from widedeep.data.kuairand import prepare_kuairand
from widedeep.data.movielens import prepare_movielens
from widedeep.data.reader import load_dataset_dir, read_columns
from widedeep.optimizers import OptimizerConfig
from widedeep.safe_output import atomic_path, write_json
from widedeep.training import MODELS, TrainConfig, train

SOURCES: tuple[str, ...] = ("kuairand", "movielens")
DEFAULT_MODELS: tuple[str, ...] = ("wide", "deep", "wide_deep", "dfn")
FEEDBACK: tuple[str, ...] = ("click", "unclick", "dislike")


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def kuairand_files(folder: str, include_random: bool = False) -> dict[str, Any]:
    """The KuaiRand files of `folder`: `{"logs": [...], "users": path, "videos": path}`.

    Logs are the `log_standard_*.csv` files in name order (then, with
    `include_random`, the `log_random_*.csv` ones): the order breaks time ties.

    Raises:
        FileNotFoundError: no standard log, or not exactly one user / video feature file.
    """
    logs = sorted(glob.glob(os.path.join(folder, "log_standard_*.csv")))
    if include_random:
        logs += sorted(glob.glob(os.path.join(folder, "log_random_*.csv")))
    if not logs:
        raise FileNotFoundError(f"{folder}: no log_standard_*.csv")
    found: dict[str, Any] = {"logs": logs}
    for role, pattern in (
        ("users", "user_features_*.csv"),
        ("videos", "video_features_basic_*.csv"),
    ):
        matches = sorted(glob.glob(os.path.join(folder, pattern)))
        if len(matches) != 1:
            raise FileNotFoundError(
                f"{folder}: expected one {pattern}, found {len(matches)}: {matches}"
            )
        found[role] = matches[0]
    return found


def dataset_summary(data_dir: str, meta: dict[str, Any]) -> dict[str, Any]:
    """Rows, users, items, feedback counts, split and cold-start share of a prepared dataset."""
    schema, _ = load_dataset_dir(data_dir)
    item_column = schema.target_item_features[0]
    columns = {
        split: read_columns(data_dir, split, [schema.group_key, item_column])
        for split in ("train", "test")
    }
    items = np.unique(np.concatenate([c[item_column] for c in columns.values()]))
    train_users = np.unique(columns["train"][schema.group_key])
    test_users = columns["test"][schema.group_key]
    cold = ~np.isin(test_users, train_users)
    counts = {
        split: {name: int(meta["feedback_counts"][split][name]) for name in FEEDBACK}
        for split in ("train", "test")
    }
    counts["total"] = {name: counts["train"][name] + counts["test"][name] for name in FEEDBACK}
    return {
        "rows": int(meta["impressions"]),
        "users": int(meta["users"]),
        "items": int(items.size),
        "feedback_counts": counts,
        "click_rate": counts["total"]["click"] / max(int(meta["impressions"]), 1),
        "split": meta["split"],
        "examples": {split: int(meta["splits"][split]["examples"]) for split in ("train", "test")},
        "test_users": int(np.unique(test_users).size),
        "cold_test_share": float(cold.mean()) if cold.size else 0.0,
        "time_range": meta["time_range"],
        "duplicates_dropped": int(meta["duplicates_dropped"]),
        "skipped": meta["skipped"],
        "imputed": meta["imputed"],
    }


def optimizer_config(overrides: list[str]) -> OptimizerConfig:
    """`OptimizerConfig` defaults with `KEY=VALUE` overrides (e.g. `deep_learning_rate=0.05`)."""
    config = OptimizerConfig()
    known = {f.name for f in dataclasses.fields(OptimizerConfig)}
    for item in overrides:
        key, _, value = item.partition("=")
        if key not in known or not value:
            raise ValueError(
                f"--train {item!r}: expected KEY=VALUE with KEY one of {sorted(known)}"
            )
        setattr(config, key, float(value))
    return config


def code_version() -> dict[str, Any]:
    """The git commit of the checkout and whether `widedeep/` has uncommitted changes."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, check=True
        ).stdout.strip()
        changed = subprocess.run(
            ["git", "status", "--porcelain", "--", "widedeep"],
            cwd=root,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split("\n")
    except (OSError, subprocess.CalledProcessError):
        return {"commit": None}
    return {"commit": commit, "uncommitted": sorted(line[3:] for line in changed if line)}


def train_models(
    data_dir: str, runs_dir: str, models: list[str], args: argparse.Namespace
) -> dict[str, dict[str, Any]]:
    """Trains each model on `data_dir`; returns its test metrics and training speed."""
    results: dict[str, dict[str, Any]] = {}
    for model in models:
        keras.backend.clear_session()
        start = time.perf_counter()
        metrics = train(
            TrainConfig(
                data=data_dir,
                out=os.path.join(runs_dir, model),
                model=model,
                epochs=args.epochs,
                batch_size=args.batch_size,
                seed=args.seed,
                logdir=None,
                optimizer=optimizer_config(args.train),
                verbose=0,
            )
        )
        seconds = time.perf_counter() - start
        results[model] = {
            "auc": metrics["auc"],
            "gauc": metrics["gauc"],
            "logloss": metrics["logloss"],
            "ctr": metrics["ctr"],
            "mean_prediction": metrics["mean_prediction"],
            "examples_per_sec": metrics["examples_per_sec"],
            "train_seconds": metrics["train_seconds"],
            "total_seconds": seconds,
        }
        _log(
            f"  {model}: auc {metrics['auc']:.4f} gauc {metrics['gauc']:.4f} "
            f"logloss {metrics['logloss']:.4f} ({metrics['examples_per_sec']:,.0f} ex/s, {seconds:.0f} s)"
        )
    return results


def run_source(
    source: str, inputs: dict[str, Any], args: argparse.Namespace, models: list[str]
) -> dict[str, Any]:
    """Prepares one source from its files, summarises it and trains the models."""
    data_dir = os.path.join(args.workdir, "data", source)
    split_by = args.kuairand_split_by if source == "kuairand" else args.movielens_split_by
    options: dict[str, Any] = {
        "max_length": args.max_length,
        "test_fraction": args.test_fraction,
        "split_by": split_by,
        "overwrite": True,
        "progress": args.progress,
    }
    start = time.perf_counter()
    if args.reuse and os.path.isfile(os.path.join(data_dir, "meta.json")):
        _, meta = load_dataset_dir(data_dir)
        _log(f"{source}: reusing {data_dir}")
    elif source == "kuairand":
        _log(f"{source}: preparing {len(inputs['logs'])} log(s) into {data_dir}")
        meta = prepare_kuairand(
            inputs["logs"], inputs["users"], inputs["videos"], data_dir, **options
        )
    else:
        _log(f"{source}: preparing {inputs['path']} into {data_dir}")
        meta = prepare_movielens(inputs["path"], data_dir, **options)
    prepare_seconds = time.perf_counter() - start
    summary = dataset_summary(data_dir, meta)
    _log(
        f"{source}: {summary['rows']:,} rows, {summary['users']:,} users, {summary['items']:,} items; "
        f"training {', '.join(models)}"
    )
    result: dict[str, Any] = {
        "files": {k: v for k, v in inputs.items() if k != "generator"},
        "layout": f"movielens-{meta['layout']}" if source == "movielens" else source,
        "prepare_seconds": prepare_seconds,
        **summary,
    }
    if "generator" in inputs:
        result["synthetic"] = True
        result["generator"] = inputs["generator"]
    else:
        result["synthetic"] = False
    result["models"] = train_models(
        data_dir, os.path.join(args.workdir, "runs", source), models, args
    )
    return result


def synthetic_inputs(source: str, args: argparse.Namespace) -> dict[str, Any]:
    """Writes SYNTHETIC files in the source's public layout and returns what the loader reads."""
    folder = os.path.join(args.workdir, "raw", source)
    start = time.perf_counter()
    if source == "kuairand":
        written = write_kuairand(folder, kuairand_config(args.synthetic, seed=args.seed))
        inputs: dict[str, Any] = dict(written["files"])
    else:
        written = write_movielens(
            folder, movielens_config(args.synthetic, seed=args.seed), layout=args.movielens_layout
        )
        inputs = {"path": folder}
    written = {k: v for k, v in written.items() if k != "files"}
    written["seconds"] = time.perf_counter() - start
    inputs["generator"] = written
    _log(
        f"{source}: wrote SYNTHETIC {written['layout']} files ({written['rows']:,} rows) to {folder}"
    )
    return inputs


def markdown_table(result: dict[str, Any]) -> str:
    """Two markdown tables (datasets, then models), headed by what data they come from."""
    sources = result["sources"]
    synthetic = any(s["synthetic"] for s in sources.values())
    lines = []
    if synthetic:
        lines.append(
            "SYNTHETIC data in the public layouts (the project's simulator written as KuaiRand / "
            "MovieLens files by `benchmarks/public_layouts.py`), not the real data sets: the numbers "
            "show the loaders and models running end to end, not results on KuaiRand or MovieLens."
        )
    else:
        lines.append("Real files: " + "; ".join(f"{k}: {v['files']}" for k, v in sources.items()))
    lines += [
        "",
        "| Source | Layout | Split | Rows | Users | Items | Click | Unclick | Dislike | Cold test share |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, s in sources.items():
        c = s["feedback_counts"]["total"]
        layout = s["layout"] + (" (synthetic)" if s["synthetic"] else "")
        lines.append(
            f"| {name} | {layout} | {s['split']['by']} | {s['rows']:,} | {s['users']:,} | "
            f"{s['items']:,} | {c['click']:,} | {c['unclick']:,} | {c['dislike']:,} | "
            f"{s['cold_test_share']:.1%} |"
        )
    settings = result["settings"]
    defaults = dataclasses.asdict(OptimizerConfig())
    changed = {k: v for k, v in settings["optimizer"].items() if defaults.get(k) != v}
    optimizer = (
        ", optimizer " + ", ".join(f"{k}={v}" for k, v in changed.items()) if changed else ""
    )
    lines += [
        "",
        f"Test metrics ({settings['epochs']} epochs, batch {settings['batch_size']}, "
        f"L = {settings['max_length']}, seed {settings['seed']}{optimizer}):",
        "",
        "| Source | Model | AUC | GAUC | Logloss | Train examples/s |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for name, s in sources.items():
        for model, m in s["models"].items():
            lines.append(
                f"| {name} | {model} | {m['auc']:.4f} | {m['gauc']:.4f} | {m['logloss']:.4f} | "
                f"{m['examples_per_sec']:,.0f} |"
            )
    return "\n".join(lines) + "\n"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        epilog="See the module docstring for the file layouts and the synthetic option.",
    )
    data = parser.add_argument_group("data (real files, or --synthetic)")
    data.add_argument("--kuairand-dir", help="folder with KuaiRand log/user/video CSV files")
    data.add_argument("--kuairand-random", action="store_true", help="also read log_random_*.csv")
    data.add_argument("--movielens-dir", help="folder with MovieLens 100K or 1M files")
    data.add_argument(
        "--synthetic",
        type=int,
        metavar="N",
        help="write SYNTHETIC files in the public layouts (about N impressions per source) first",
    )
    data.add_argument(
        "--sources", default=",".join(SOURCES), help="with --synthetic: which sources to write"
    )
    data.add_argument("--movielens-layout", choices=("100k", "1m"), default="1m")
    prep = parser.add_argument_group("prepare")
    prep.add_argument("--kuairand-split-by", choices=("time", "user"), default="time")
    prep.add_argument("--movielens-split-by", choices=("time", "user"), default="user")
    prep.add_argument("--test-fraction", type=float, default=0.2)
    prep.add_argument("--max-length", type=int, default=30)
    prep.add_argument("--progress", action="store_true", help="loader progress on stderr")
    fit = parser.add_argument_group("training")
    fit.add_argument("--models", default=",".join(DEFAULT_MODELS))
    fit.add_argument("--epochs", type=int, default=2)
    fit.add_argument("--batch-size", type=int, default=512)
    fit.add_argument("--seed", type=int, default=0)
    fit.add_argument(
        "--train",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="optimizer setting override (repeatable), e.g. --train deep_learning_rate=0.05",
    )
    out = parser.add_argument_group("output")
    out.add_argument("--workdir", help="raw files, datasets and runs (default: a new temp dir)")
    out.add_argument("--reuse", action="store_true", help="reuse datasets already in --workdir")
    out.add_argument("--output", help="also write the JSON here")
    out.add_argument("--markdown", help="write the README tables here")
    return parser


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = build_parser()
    args = parser.parse_args(argv)
    models = [m for m in args.models.split(",") if m]
    unknown = [m for m in models if m not in MODELS]
    if unknown:
        parser.error(f"unknown model(s) {unknown}; choose from {MODELS}")
    if args.synthetic is not None and (args.kuairand_dir or args.movielens_dir):
        parser.error("--synthetic writes its own files; drop --kuairand-dir / --movielens-dir")
    if args.synthetic is None and not (args.kuairand_dir or args.movielens_dir):
        parser.error("give --kuairand-dir and/or --movielens-dir, or --synthetic N")
    try:
        optimizer = optimizer_config(args.train)
    except ValueError as e:
        parser.error(str(e))
    args.workdir = args.workdir or tempfile.mkdtemp(prefix="widedeep-real-data-")

    inputs: dict[str, dict[str, Any]] = {}
    if args.synthetic is not None:
        chosen = [s for s in args.sources.split(",") if s]
        bad = [s for s in chosen if s not in SOURCES]
        if bad:
            parser.error(f"unknown source(s) {bad}; choose from {SOURCES}")
        for source in chosen:
            inputs[source] = synthetic_inputs(source, args)
    else:
        if args.kuairand_dir:
            try:
                inputs["kuairand"] = kuairand_files(args.kuairand_dir, args.kuairand_random)
            except FileNotFoundError as e:
                parser.error(str(e))
        if args.movielens_dir:
            if not os.path.isdir(args.movielens_dir):
                parser.error(f"--movielens-dir {args.movielens_dir}: no such directory")
            inputs["movielens"] = {"path": args.movielens_dir}

    start = time.perf_counter()
    result: dict[str, Any] = {
        "synthetic": args.synthetic is not None,
        "data": (
            "SYNTHETIC files in the public layouts (benchmarks/public_layouts.py), not the real data"
            if args.synthetic is not None
            else "real files in the public layouts"
        ),
        "command": "python benchmarks/real_data.py "
        + " ".join(sys.argv[1:] if argv is None else argv),
        "settings": {
            "models": models,
            "epochs": args.epochs,
            "batch_size": args.batch_size,
            "seed": args.seed,
            "max_length": args.max_length,
            "test_fraction": args.test_fraction,
            "optimizer": dataclasses.asdict(optimizer),
            "workdir": args.workdir,
        },
        "code": code_version(),
        "sources": {},
    }
    for source, source_inputs in inputs.items():
        result["sources"][source] = run_source(source, source_inputs, args, models)
    result["seconds"] = time.perf_counter() - start

    print(json.dumps(result, indent=2))
    if args.output:
        write_json(args.output, result)
    if args.markdown:
        with atomic_path(args.markdown) as tmp, open(tmp, "w") as f:
            f.write(markdown_table(result))
    return result


if __name__ == "__main__":
    main()
