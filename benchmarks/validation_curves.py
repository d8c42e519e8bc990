"""Validation AUC and GAUC by epoch of `widedeep train` runs at the defaults, for `figures.py`.

    python benchmarks/validation_curves.py > benchmarks/results/validation-curves-sim.json
        [--data DIR] [--models wide_deep,wide_deep_seq,dfn] [--seed 0] [--data-seed 0] [--workdir DIR]

Without `--data`, simulates the default world (`widedeep simulate --seed DATA_SEED`). Then
trains each model once with `widedeep train` at its defaults (one command per model, run as
written in the output) and collects each run's `metrics.json`: the validation AUC and GAUC of
every epoch, the best epoch early stopping kept, and the test AUC / GAUC / log loss of that
epoch's weights. Prints JSON with the commands, the date and the machine.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shlex
import subprocess
import sys
import tempfile
from typing import Any


def _widedeep(args: list[str]) -> str:
    """Runs `widedeep ARGS` (this tree's CLI, quietly); returns the command as a user types it."""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    subprocess.run(
        [sys.executable, "-m", "widedeep.cli", *args],
        check=True,
        env=env,
        stdout=subprocess.DEVNULL,
    )
    return shlex.join(["widedeep", *args])


def collect(run_dir: str) -> dict[str, Any]:
    """The per-epoch validation metrics and the test metrics of one `widedeep train` run."""
    with open(os.path.join(run_dir, "metrics.json")) as f:
        metrics = json.load(f)
    return {
        "validation_auc": metrics["validation_auc"],
        "validation_gauc": metrics["validation_gauc"],
        "epochs_run": metrics["epochs_run"],
        "best_epoch": metrics.get("best_epoch"),
        "monitor": metrics.get("monitor"),
        "test": {k: metrics[k] for k in ("auc", "gauc", "logloss")},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--data", default=None, help="a dataset directory instead of simulated data"
    )
    parser.add_argument("--models", default="wide_deep,wide_deep_seq,dfn")
    parser.add_argument("--seed", type=int, default=0, help="training seed")
    parser.add_argument("--data-seed", type=int, default=0, help="simulator seed")
    parser.add_argument("--workdir", default=None, help="default: a temporary directory")
    args = parser.parse_args()
    workdir = args.workdir or tempfile.mkdtemp(prefix="widedeep-curves-")
    commands = []
    data = args.data
    if data is None:
        data = os.path.join(workdir, "sim")
        commands.append(_widedeep(["simulate", "--out", data, "--seed", str(args.data_seed)]))
    runs = {}
    for model in [m for m in args.models.split(",") if m]:
        out = os.path.join(workdir, model)
        train = ["train", "--data", data, "--model", model, "--out", out]
        commands.append(_widedeep([*train, "--seed", str(args.seed), "--logdir", ""]))
        runs[model] = collect(out)
        print(f"{model}: {runs[model]['epochs_run']} epochs", file=sys.stderr, flush=True)
    result = {
        "command": shlex.join(["python", "benchmarks/validation_curves.py", *sys.argv[1:]]),
        "commands": commands,
        "date": datetime.date.today().isoformat(),
        "machine": f"{platform.machine()}, {os.cpu_count()} cpus, load {os.getloadavg()[0]:.1f}",
        "data": data,
        "seed": args.seed,
        "runs": runs,
    }
    if args.data is None:
        result["data_seed"] = args.data_seed
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
