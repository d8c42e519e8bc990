"""Honest baselines of a dataset directory: constant, item popularity, one-hot LR, LR + history.

Fits on the train split's fit rows and picks each baseline's hyper-parameter on
its last `--validation-fraction` (the rows `widedeep train` validates on), then
prints the test `auc`, `gauc`, `logloss` of every baseline as JSON (see
`widedeep.baselines.run_baselines`):

    python benchmarks/baselines.py --data data/kr
    python benchmarks/baselines.py --data data/kr --features user_id,video_id
"""

from __future__ import annotations

import argparse
import json

from widedeep.baselines import run_baselines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help="the dataset directory")
    parser.add_argument(
        "--validation-fraction",
        type=float,
        default=0.1,
        help="last fraction of the train split that validates (as widedeep train)",
    )
    parser.add_argument(
        "--features",
        default=None,
        help="comma-separated features of the logistic regressions (default: all categorical "
        "plus bucketised numeric)",
    )
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    features = [f for f in args.features.split(",") if f] if args.features is not None else None
    result = run_baselines(
        args.data,
        validation_fraction=args.validation_fraction,
        features=features,
        seed=args.seed,
    )
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
