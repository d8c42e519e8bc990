"""The learnable ceiling on simulated data: a model with the simulator's own functional form.

Fits `widedeep.learnable_ceiling.WellSpecifiedModel` (the simulator's click logit
with every number learned from the training split; see that module) for each seed
and reports its test AUC at the best validation epoch beside the oracle's: an
estimate of what any model can learn from this many impressions.

    python benchmarks/well_specified.py --seeds 0,1,2
    python benchmarks/well_specified.py --sim num_impressions=1000000 --seeds 0
    python benchmarks/well_specified.py --learn users --seeds 0   # item side known exactly

Prints JSON. `benchmarks/quality.py --models ...,well_specified` trains it beside
the library's models on the same data and seeds.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from typing import Any

import numpy as np

from widedeep.data.simulator import SimulatorConfig, simulate
from widedeep.learnable_ceiling import fit_well_specified


def simulator_overrides(items: list[str]) -> dict[str, Any]:
    """`["key=value", ...]` (values in JSON) -> `SimulatorConfig` keyword overrides."""
    overrides: dict[str, Any] = {}
    fields = {f.name for f in dataclasses.fields(SimulatorConfig)}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or key not in fields:
            raise SystemExit(f"--sim {item!r}: expected KEY=VALUE with KEY a SimulatorConfig field")
        overrides[key] = json.loads(value)
    return overrides


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="0,1,2", help="training seeds")
    parser.add_argument("--data-seed", type=int, default=0, help="simulator seed")
    parser.add_argument(
        "--sim",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="simulator setting override (repeatable), e.g. --sim num_impressions=1000000",
    )
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument(
        "--learn",
        choices=("all", "users"),
        default="all",
        help="'users': a diagnostic that knows every item-side number and learns the users only",
    )
    args = parser.parse_args()
    overrides = {"seed": args.data_seed, **simulator_overrides(args.sim)}
    config = SimulatorConfig(**overrides)
    columns = simulate(config)
    runs = [
        fit_well_specified(
            config, seed=int(s), epochs=args.epochs, learn=args.learn, columns=columns
        )
        for s in args.seeds.split(",")
    ]
    aucs = np.array([r["auc"] for r in runs])
    print(
        json.dumps(
            {
                "settings": overrides,
                "learn": args.learn,
                "oracle_auc": runs[0]["oracle_auc"],
                "auc_mean": float(aucs.mean()),
                "auc_spread": float(aucs.max() - aucs.min()),
                "per_seed": [{k: v for k, v in r.items() if k != "history"} for r in runs],
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
