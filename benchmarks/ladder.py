"""The ablation ladder from WDL+Seq to DFN: test AUC, GAUC and log loss as DFN's parts are added one at a time.

The first rung is DFN with every part of its own switched off: the three sequences
mean-pooled (each through its projection), no FM, no history features, the deep MLP
at DFN's default dropout (`no_dropout` measures the MLP without it, the old default).
Each next rung adds one part (`PARTS`, in order). A part that
DFN keeps at its defaults (`widedeep.models.dfn.DFN_DEFAULTS` and `build_dfn`'s
dropout) stays on for the rungs above it, so the last kept rung *is* DFN at its
defaults; a part the defaults leave off is measured on top of the rung below it and
then dropped again (`kept: false` in the output). Below the ladder, `wide_deep` and
`wide_deep_seq` for reference, and above it the paper's recipe (`PAPER`), one flag
away from the defaults. Every model is trained with `benchmarks/quality.py`'s
machinery (the CLI defaults, early stopping on validation) once per training seed.
Prints JSON: per rung, its hyper-parameters, per-seed and mean AUC, GAUC and log loss.

    python benchmarks/ladder.py --data data/kuairand-dev --seeds 0,1,2
    python benchmarks/ladder.py --seeds 0 --rungs wide_deep_seq,base,transformers
    python benchmarks/ladder.py --sim num_impressions=3000 --sim num_users=100 --epochs 1 --seeds 0

Without `--data` the simulator's world at its default settings (and any `--sim`
overrides) is simulated under `--workdir`.
"""

from __future__ import annotations

import argparse
import inspect
import json
import os
import sys
import tempfile

from quality import summarise, train_variant
from well_specified import simulator_overrides

from widedeep.data.simulator import SimulatorConfig, simulate_dataset
from widedeep.models.dfn import DFN_DEFAULTS, build_dfn


def _default_dropout(builder: object) -> float:
    return inspect.signature(builder).parameters["dropout"].default


DFN_DROPOUT = _default_dropout(build_dfn)

PARTS: list[tuple[str, dict]] = [
    (
        "transformers",
        {
            "use_click_transformer": True,
            "use_unclick_transformer": True,
            "use_dislike_transformer": True,
        },
    ),
    ("residual_gate", {"residual_gate": True}),
    ("target_pooling", {"pooling": "target"}),
    ("click_aware_attention", {"use_click_aware_attention": True}),
    ("fm", {"use_fm": True}),
    ("history_statistics", {"use_history_statistics": True}),
    ("candidate_history", {"use_candidate_history": True}),
    ("no_dropout", {"dropout": 0.0}),
]
"""DFN's parts in the order the ladder adds them: each rung's name and what it switches on."""

BASE: dict = {
    "use_click_transformer": False,
    "use_unclick_transformer": False,
    "use_dislike_transformer": False,
    "residual_gate": False,
    "pooling": "mean",
    "use_click_aware_attention": False,
    "use_fm": False,
    "use_history_statistics": False,
    "use_candidate_history": False,
    "dropout": DFN_DROPOUT,
}
"""The first rung: every part of `PARTS` off."""

PAPER: dict = {"pooling": "mean", "norm_first": False, "residual_gate": False}
"""The paper's feedback module (mean-pooled post-norm Transformers, no residual gate) on the defaults."""


def _is_default(values: dict) -> bool:
    defaults = {**DFN_DEFAULTS, "dropout": DFN_DROPOUT}
    return all(defaults[key] == value for key, value in values.items())


def rungs() -> list[dict]:
    """Every row of the ladder, in order: `name`, `model`, `hp` and whether the part is `kept`."""
    rows = [
        {"name": "wide_deep", "model": "wide_deep", "hp": {}, "kept": True},
        {"name": "wide_deep_seq", "model": "wide_deep_seq", "hp": {}, "kept": True},
        {"name": "base", "model": "dfn", "hp": dict(BASE), "kept": True},
    ]
    current = dict(BASE)
    for name, values in PARTS:
        kept = _is_default(values)
        rows.append({"name": name, "model": "dfn", "hp": {**current, **values}, "kept": kept})
        if kept:
            current.update(values)
    if not _is_default(current):
        raise AssertionError(f"the kept rungs do not end at DFN's defaults: {current}")
    rows.append({"name": "paper", "model": "dfn", "hp": dict(PAPER), "kept": False})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=None, help="a dataset directory (default: simulate)")
    parser.add_argument("--seeds", default="0,1,2", help="training seeds")
    parser.add_argument("--rungs", default=None, help="comma-separated rung names (default: all)")
    parser.add_argument("--epochs", type=int, default=None, help="default: the CLI default")
    parser.add_argument(
        "--sim",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="simulator setting override (repeatable), e.g. --sim num_impressions=3000",
    )
    parser.add_argument("--workdir", default=None)
    args = parser.parse_args()
    workdir = args.workdir or tempfile.mkdtemp(prefix="widedeep-ladder-")
    rows = rungs()
    if args.rungs:
        wanted = args.rungs.split(",")
        unknown = sorted(set(wanted) - {r["name"] for r in rows})
        if unknown:
            parser.error(f"unknown rungs {unknown}; known: {[r['name'] for r in rows]}")
        rows = [r for r in rows if r["name"] in wanted]
    data = args.data
    if data is None:
        data = os.path.join(workdir, "sim")
        if not os.path.exists(os.path.join(data, "meta.json")):
            simulate_dataset(data, SimulatorConfig(**simulator_overrides(args.sim)))
    seeds = [int(s) for s in args.seeds.split(",")]
    per_seed: dict[str, list[dict]] = {r["name"]: [] for r in rows}
    for seed in seeds:
        for row in rows:
            metrics = train_variant(
                data, workdir, seed, row["name"], row["model"], row["hp"], epochs=args.epochs
            )
            per_seed[row["name"]].append(metrics)
            print(
                f"seed {seed} {row['name']}: auc {metrics['auc']:.4f} gauc {metrics['gauc']:.4f}",
                file=sys.stderr,
                flush=True,
            )
    summary = summarise(per_seed)
    result = {
        "data": data,
        "training_seeds": seeds,
        "rungs": [
            {
                **row,
                **{
                    key: summary[row["name"]][key]
                    for key in (
                        "auc_mean",
                        "auc_spread",
                        "gauc_mean",
                        "gauc_spread",
                        "logloss_mean",
                    )
                },
                "per_seed": [
                    {key: m[key] for key in ("auc", "gauc", "logloss", "best_epoch") if key in m}
                    for m in per_seed[row["name"]]
                ],
            }
            for row in rows
        ],
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
