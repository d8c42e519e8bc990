"""`widedeep evaluate`, `widedeep export` and `widedeep predict`: the commands on a saved model."""

from __future__ import annotations

import argparse
import os

from widedeep.cli.data_commands import check_data
from widedeep.cli.report import metrics_sentence, print_json
from widedeep.errors import UsageError


def cmd_evaluate(args: argparse.Namespace) -> None:
    """`widedeep evaluate`: the exact metrics of a `.keras` model on one split."""
    from widedeep.evaluation import evaluate_model
    from widedeep.models import load_model

    if not os.path.isfile(args.model):
        raise UsageError(f"no such model file: {args.model}")
    check_data(args.data)
    model = load_model(args.model)
    metrics = evaluate_model(model, args.data, args.split)
    if args.json:
        print_json(metrics)
    else:
        print(f"{args.model} on the {args.split} split: {metrics_sentence(metrics)}.")


def cmd_export(args: argparse.Namespace) -> None:
    """`widedeep export`: a SavedModel for serving, and its inputs as JSON."""
    from widedeep.export import export_saved_model
    from widedeep.models import load_model

    if not os.path.isfile(args.model):
        raise UsageError(f"no such model file: {args.model}")
    if os.path.exists(args.out) and not args.overwrite:
        raise UsageError(f"{args.out} exists (add --overwrite to replace it)")
    spec = export_saved_model(load_model(args.model), args.out, overwrite=True)
    print_json(
        {
            "out": args.out,
            "signatures": ["serving_default", "serve_examples"],
            "inputs": {k: [s.dtype.name, [d or -1 for d in s.shape]] for k, s in spec.items()},
        }
    )


def cmd_predict(args: argparse.Namespace) -> None:
    """`widedeep predict`: one probability per row of a split, into a CSV or Parquet file."""
    from widedeep.export import is_saved_model, predict_to_file

    if not (os.path.isfile(args.model) or is_saved_model(args.model)):
        raise UsageError(f"no such model: {args.model} (a .keras file or a SavedModel directory)")
    print_json(
        predict_to_file(
            args.model,
            args.data,
            args.out,
            split=args.split,
            batch_size=args.batch_size,
            progress=True,
        )
    )
