"""Serving latency of the exported SavedModel, called through its `serving_default` signature.

Models (untrained: latency does not depend on the weights' values), built from the
dataset's schema and exported with `widedeep.export.export_saved_model`:

* `wide_deep`: `build_wide_deep` at its defaults (8-d embeddings here, MLP 128-64);
* `dfn`: `build_dfn` at `DFN_DEFAULTS` (three Transformers over the feedback sequences);
* `wide_deep_paper`: Wide & Deep at the paper's size, 32-d embeddings and MLP 1024-512-256.

Requests are the first rows of the dataset's test split (tiled when a batch needs more),
as `{name: tf.Tensor}` raw features. Each (model, threads) pair runs in a fresh process,
because TensorFlow fixes its thread pools when it starts: intra-op parallelism = the
thread count, inter-op parallelism = 1. In that process, each batch size gets `--warmup`
untimed calls, then `--requests` timed calls of `signature(**features)["probability"]`
(the result copied to numpy). Printed per configuration: p50 / p99 / mean latency in ms
and throughput (rows per second at the mean latency); the machine's load average before
and after, since a shared machine's other work shows up in the tail.

Usage:
    python benchmarks/serving_latency.py --data DATASET_DIR [--workdir DIR]
        [--batch-sizes 1,50,100,200] [--threads 1,2] [--requests 300] [--warmup 30]
        [--models wide_deep,dfn,wide_deep_paper]
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
import time
from typing import Any

MODELS: dict[str, tuple[str, dict[str, Any]]] = {
    "wide_deep": ("wide_deep", {}),
    "dfn": ("dfn", {}),
    "wide_deep_paper": ("wide_deep", {"embedding_dim": 32, "hidden_units": [1024, 512, 256]}),
}


def _ints(text: str) -> list[int]:
    return [int(v) for v in text.split(",") if v]


def prepare(data: str, workdir: str, models: list[str], rows: int) -> dict[str, str]:
    """Exports each model and writes the request rows; returns `{model: SavedModel dir}`."""
    import numpy as np

    from widedeep.data.reader import load_dataset_dir, read_columns
    from widedeep.export import export_saved_model
    from widedeep.training import build_model

    schema, _ = load_dataset_dir(data)
    columns = read_columns(data, "test", list(schema.input_signature()))
    np.savez(
        os.path.join(workdir, "requests.npz"),
        **{
            k: (v[:rows].astype(str) if v.dtype == object else v[:rows]) for k, v in columns.items()
        },
    )
    out = {}
    for name in models:
        builder, hyperparameters = MODELS[name]
        model = build_model(schema, builder, **hyperparameters)
        out[name] = os.path.join(workdir, name)
        export_saved_model(model, out[name], overwrite=True)
    return out


def worker(args: argparse.Namespace) -> None:
    """Times one SavedModel at one thread count (TensorFlow alone), printing JSON."""
    import numpy as np
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(args.threads[0])
    tf.config.threading.set_inter_op_parallelism_threads(1)
    serve = tf.saved_model.load(args.saved_model).signatures["serving_default"]
    requests = dict(np.load(args.requests_file))
    results = []
    for batch in args.batch_sizes:
        features = {
            k: tf.constant(np.resize(v, (batch, *v.shape[1:]))) for k, v in requests.items()
        }
        for _ in range(args.warmup):
            serve(**features)["probability"].numpy()
        seconds = []
        for _ in range(args.requests):
            start = time.perf_counter()
            serve(**features)["probability"].numpy()
            seconds.append(time.perf_counter() - start)
        ms = np.array(seconds) * 1e3
        results.append(
            {
                "batch_size": batch,
                "p50_ms": float(np.percentile(ms, 50)),
                "p99_ms": float(np.percentile(ms, 99)),
                "mean_ms": float(ms.mean()),
                "rows_per_sec": float(batch / (ms.mean() / 1e3)),
            }
        )
    print(json.dumps(results))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", help="dataset directory (its test split gives the requests)")
    parser.add_argument("--workdir", help="where the SavedModels go (default: a temp dir)")
    parser.add_argument("--batch-sizes", type=_ints, default=[1, 50, 100, 200])
    parser.add_argument("--threads", type=_ints, default=[1, 2])
    parser.add_argument("--requests", type=int, default=300, help="timed calls per batch size")
    parser.add_argument("--warmup", type=int, default=30, help="untimed calls per batch size")
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--saved-model", help=argparse.SUPPRESS)
    parser.add_argument("--requests-file", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args)
        return
    if not args.data:
        parser.error("--data is required")
    models = [m for m in args.models.split(",") if m]
    unknown = sorted(set(models) - set(MODELS))
    if unknown:
        parser.error(f"unknown models {unknown}; known: {sorted(MODELS)}")
    workdir = args.workdir or tempfile.mkdtemp(prefix="serving-latency-")
    os.makedirs(workdir, exist_ok=True)
    exported = prepare(args.data, workdir, models, max(args.batch_sizes))

    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    configurations = []
    for name in models:
        for threads in args.threads:
            load_before = os.getloadavg()[0]
            command = [
                sys.executable,
                __file__,
                "--worker",
                "--saved-model",
                exported[name],
                "--requests-file",
                os.path.join(workdir, "requests.npz"),
                "--threads",
                str(threads),
                "--batch-sizes",
                ",".join(map(str, args.batch_sizes)),
                "--requests",
                str(args.requests),
                "--warmup",
                str(args.warmup),
            ]
            done = subprocess.run(command, capture_output=True, text=True, env=env, check=True)
            for result in json.loads(done.stdout.strip().splitlines()[-1]):
                configurations.append(
                    {
                        "model": name,
                        "intra_op_threads": threads,
                        **result,
                        "load_average_before": load_before,
                        "load_average_after": os.getloadavg()[0],
                    }
                )
    print(
        json.dumps(
            {
                "command": shlex.join(["python", "benchmarks/serving_latency.py", *sys.argv[1:]]),
                "date": datetime.date.today().isoformat(),
                "data": args.data,
                "requests_per_config": args.requests,
                "cpu_count": os.cpu_count(),
                "platform": platform.platform(),
                "configurations": configurations,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
