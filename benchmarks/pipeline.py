"""Input-pipeline throughput of `make_dataset` alone, against training throughput, printing JSON.

Two dataset directories:

* `standard`: the standard Wide & Deep workload of `benchmarks/throughput.py` (10 Zipf
  categorical ids, 5 numerics, a label; batch 1024), written with `DatasetWriter`;
* `simulated`: `simulate_dataset` data (default `SimulatorConfig`, 250k impressions, of which
  200k train): 6 scalar ids, a numeric and three 30-long sequences (click, unclick, dislike)
  of `[item_id, item_category]`, read as 6 ragged columns padded to `[B, 30]`; batch 512.

"Pipeline" iterates `make_dataset(dir, "train", batch_size=B, shuffle=True)` to the end in a
Python loop without a model: shards read, record blocks parsed, rows shuffled, re-batched,
prefetched.
"Training" is `fit` of one epoch of our models (our FTRL + Adagrad, routed train step) on the
same pipeline, over the first `--train-rows` rows of the split (a rate is a rate; DFN epochs on
the full split would take minutes on 2 cores). Both are measured in the same process,
interleaved round by round (round 0 is warm-up), so that the ratio pipeline / training is
taken under the same machine load. Target: pipeline >= 5x training.

Prints, per dataset: `pipeline_examples_per_sec` (median), each model's
`train_examples_per_sec` (median) and `pipeline_over_training` ratios, plus raw per-round rates.

With `--data DIR` (repeatable), the dataset directories given instead (batch 512, DFN and
W&D at their defaults), every runner of every directory interleaved in the same rounds: e.g.
one log prepared by two versions, side by side.

Usage:
    python benchmarks/pipeline.py [--standard-rows 200000] [--sim-impressions 250000]
        [--train-rows 40000] [--rounds 4] [--workdir DIR]
    python benchmarks/pipeline.py --data DIR_A --data DIR_B [--train-rows 40000] [--rounds 4]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from throughput import HIDDEN_UNITS, write_standard_dataset  # noqa: E402

from widedeep import build_dfn, build_wide_deep  # noqa: E402
from widedeep.data.pipeline import make_dataset  # noqa: E402
from widedeep.data.reader import load_dataset_dir  # noqa: E402
from widedeep.data.simulator import SimulatorConfig, simulate_dataset  # noqa: E402

PIPELINE_TARGET = 5.0


def pipeline_runner(data_dir: str, batch_size: int) -> Callable[[], float]:
    """Examples per second of one full pass over the shuffled, parsed, batched train split."""
    dataset = make_dataset(data_dir, "train", batch_size=batch_size, shuffle=True)

    def run() -> float:
        examples = 0
        start = time.perf_counter()
        for _, label, _ in dataset:
            examples += int(label.shape[0])
        return examples / (time.perf_counter() - start)

    return run


def training_runner(
    model: keras.Model, data_dir: str, batch_size: int, rows: int
) -> Callable[[], float]:
    """Examples per second of one `fit` epoch over the first `rows` rows of the train split."""
    _, meta = load_dataset_dir(data_dir)
    rows = min(rows, int(meta["splits"]["train"]["examples"]))
    dataset = make_dataset(data_dir, "train", batch_size=batch_size, shuffle=True, rows=(0, rows))

    def run() -> float:
        start = time.perf_counter()
        model.fit(dataset, epochs=1, verbose=0)
        return rows / (time.perf_counter() - start)

    return run


def interleave(runners: dict[str, Callable[[], float]], rounds: int) -> dict[str, list[float]]:
    """Runs every runner once per round (order rotated); round 0 is warm-up and dropped."""
    names = list(runners)
    rates: dict[str, list[float]] = {name: [] for name in names}
    for r in range(rounds):
        shift = r % len(names)
        for name in names[shift:] + names[:shift]:
            rate = runners[name]()
            print(f"[round {r}] {name}: {rate:,.0f} ex/s", file=sys.stderr, flush=True)
            if r > 0:
                rates[name].append(rate)
    return rates


def _runners(
    data_dir: str, batch_size: int, models: dict[str, keras.Model], train_rows: int
) -> dict[str, Callable[[], float]]:
    runners = {"pipeline": pipeline_runner(data_dir, batch_size)}
    for name, model in models.items():
        model.compile()
        runners[f"train_{name}"] = training_runner(model, data_dir, batch_size, train_rows)
    return runners


def _summary(
    data_dir: str, batch_size: int, models: dict[str, keras.Model], rates: dict[str, list[float]]
) -> dict[str, Any]:
    medians = {name: float(np.median(values)) for name, values in rates.items()}
    pipeline = medians["pipeline"]
    result: dict[str, Any] = {
        "batch_size": batch_size,
        "train_rows": int(load_dataset_dir(data_dir)[1]["splits"]["train"]["examples"]),
        "pipeline_examples_per_sec": round(pipeline),
    }
    for name in models:
        result[f"train_{name}_examples_per_sec"] = round(medians[f"train_{name}"])
        result[f"pipeline_over_train_{name}"] = round(pipeline / medians[f"train_{name}"], 2)
    result["rounds_examples_per_sec"] = {k: [round(v) for v in vs] for k, vs in rates.items()}
    return result


def measure(
    data_dir: str, batch_size: int, models: dict[str, keras.Model], train_rows: int, rounds: int
) -> dict[str, Any]:
    rates = interleave(_runners(data_dir, batch_size, models, train_rows), rounds)
    return _summary(data_dir, batch_size, models, rates)


def measure_dirs(
    data_dirs: list[str], train_rows: int, rounds: int, batch_size: int = 512
) -> dict[str, Any]:
    """`measure` for several directories, all their runners interleaved in the same rounds."""
    runners: dict[str, Callable[[], float]] = {}
    models: dict[str, dict[str, keras.Model]] = {}
    for i, data_dir in enumerate(data_dirs):
        schema, _ = load_dataset_dir(data_dir)
        models[data_dir] = {"dfn": build_dfn(schema), "wide_deep": build_wide_deep(schema)}
        for name, run in _runners(data_dir, batch_size, models[data_dir], train_rows).items():
            runners[f"{i}:{name}"] = run
    rates = interleave(runners, rounds)
    return {
        data_dir: _summary(
            data_dir,
            batch_size,
            models[data_dir],
            {k.split(":", 1)[1]: v for k, v in rates.items() if k.startswith(f"{i}:")},
        )
        for i, data_dir in enumerate(data_dirs)
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", default="standard,simulated")
    parser.add_argument("--standard-rows", type=int, default=200_000)
    parser.add_argument("--sim-impressions", type=int, default=SimulatorConfig().num_impressions)
    parser.add_argument(
        "--train-rows", type=int, default=40_000, help="rows per timed training epoch"
    )
    parser.add_argument("--rounds", type=int, default=4, help="passes per runner, first is warm-up")
    parser.add_argument("--workdir", default=None, help="default: a temporary directory")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data", action="append", help="a dataset directory (repeatable)")
    args = parser.parse_args(argv)
    datasets = [d for d in args.datasets.split(",") if d]
    keras.utils.set_random_seed(args.seed)
    results: dict[str, Any] = {
        "setup": {
            "rounds": args.rounds,
            "warmup_rounds": 1,
            "target_pipeline_over_training": PIPELINE_TARGET,
            "tensorflow": tf.__version__,
            "keras": keras.__version__,
            "machine": f"{platform.machine()}, {os.cpu_count()} cpus, load {os.getloadavg()[0]:.1f}",
        }
    }
    if args.data:
        results["data"] = measure_dirs(args.data, args.train_rows, args.rounds)
        datasets = []
    with tempfile.TemporaryDirectory(prefix="widedeep-pipeline-") as tmp:
        workdir = args.workdir or tmp
        if "standard" in datasets:
            data_dir = os.path.join(workdir, "standard")
            schema, _ = write_standard_dataset(data_dir, args.standard_rows, args.seed)
            model = build_wide_deep(schema, hidden_units=HIDDEN_UNITS)
            results["standard"] = measure(
                data_dir, 1024, {"wide_deep": model}, args.train_rows, args.rounds
            )
        if "simulated" in datasets:
            data_dir = os.path.join(workdir, "simulated")
            config = dataclasses.replace(
                SimulatorConfig(seed=args.seed), num_impressions=args.sim_impressions
            )
            simulate_dataset(data_dir, config, overwrite=True)
            schema, _ = load_dataset_dir(data_dir)
            models = {"dfn": build_dfn(schema), "wide_deep": build_wide_deep(schema)}
            results["simulated"] = measure(data_dir, 512, models, args.train_rows, args.rounds)
            results["simulated"]["sequences"] = {s.name: s.max_length for s in schema.sequences}
    results["setup"]["load_at_end"] = round(os.getloadavg()[0], 1)
    print(json.dumps(results, indent=2))
    return results


if __name__ == "__main__":
    main()
