"""Two workers on localhost vs one process: step time and bytes exchanged as the table grows.

A Wide & Deep model with one deep embedding table of `--rows` rows (16-d, Adagrad) next to a
100-position wide table (FTRL) and an MLP, trained with `fit` on the same global batch of
uniformly drawn ids, as one process (`default` strategy) and as two `MultiWorkerMirroredStrategy`
workers over localhost (`TF_CONFIG`, subprocesses). `--exchange sparse` sends each table's
touched rows padded to a static bound (the default path of `WideDeepModel.train_step`);
`--exchange dense` is the exchange before it (every sparse gradient made dense and all-reduced),
forced by leaving `global_batch_size` unset.

Printed per (rows, exchange), as one JSON object:
- `step_ms`: the median of the timed steps' wall times (`fit`, one step per execution), for the
  two workers (worker 0's clock) and for `one_process`;
- `bytes_sent_per_replica`: computed from the static shapes of the tensors each replica hands
  to the collectives per step (`WideDeepModel`'s optimizers record them), and
  `bytes_per_row_touched` (over the rows the replica's batch touched);
- `peak_rss_mb`: each process's peak resident memory (worker 0, and the one process);
- `loopback_bytes_per_step`: measured, the growth of the loopback interface's byte counter
  (`/proc/net/dev`, `lo`) over the timed steps, divided by the steps: everything the workers
  sent each other (both of them, gRPC framing included), plus any other local traffic on a
  shared machine.

Usage:
    python benchmarks/sparse_exchange.py [--rows 10000 1000000 10000000]
        [--exchange sparse dense] [--batch-size 1024] [--steps 30] [--warmup 5]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import socket
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DIM = 16
WIDE_POSITIONS = 100


def _loopback_bytes() -> int:
    with open("/proc/net/dev") as f:
        for line in f:
            name, _, counters = line.partition(":")
            if name.strip() == "lo":
                return int(counters.split()[0])
    return 0


def _worker(spec: dict) -> dict:
    """Trains in this process (under the strategy `spec` names) and returns its measurements."""
    sys.path.insert(0, ROOT)
    from widedeep.distribute import get_strategy, shard_by_batch

    strategy = get_strategy(spec["strategy"])
    import keras
    import numpy as np
    import tensorflow as tf

    from widedeep.layers.embedding import Embedding
    from widedeep.layers.wide import WideLinear
    from widedeep.models.two_optimizer_model import WideDeepModel

    keras.utils.set_random_seed(0)
    rows, batch, steps = spec["rows"], spec["batch_size"], spec["warmup"] + spec["steps"]
    rng = np.random.default_rng(0)
    ids = rng.integers(0, rows, batch * steps).astype("int64")
    category = rng.integers(0, WIDE_POSITIONS, batch * steps).astype("int64")
    label = rng.integers(0, 2, batch * steps).astype("float32")
    with strategy.scope():
        item = keras.Input((), dtype="int64", name="item")
        cat = keras.Input((), dtype="int64", name="category")
        deep = Embedding(rows, DIM, name="embedding_item")(item)
        deep = keras.layers.Dense(32, activation="relu")(deep)
        logit = keras.layers.Add()(
            [WideLinear([WIDE_POSITIONS], name="wide")([cat]), keras.layers.Dense(1)(deep)]
        )
        model = WideDeepModel(
            {"item": item, "category": cat}, keras.layers.Activation("sigmoid")(logit)
        )
        model.compile()
        if spec["exchange"] == "sparse":
            model.global_batch_size = batch
    dataset = tf.data.Dataset.from_tensor_slices(({"item": ids, "category": category}, label))
    dataset = shard_by_batch(dataset.batch(batch)).prefetch(2)

    class Clock(keras.callbacks.Callback):
        def __init__(self) -> None:
            super().__init__()
            self.times, self.loopback = [], []

        def on_train_batch_end(self, step: int, logs: dict | None = None) -> None:
            self.times.append(time.perf_counter())
            if step + 1 == spec["warmup"]:
                self.loopback.append(_loopback_bytes())

        def on_train_end(self, logs: dict | None = None) -> None:
            self.loopback.append(_loopback_bytes())

    clock = Clock()
    model.fit(dataset, epochs=1, verbose=0, callbacks=[clock])
    step_ms = np.diff(clock.times[spec["warmup"] - 1 :]) * 1000
    sent = (model.wide_optimizer.exchanged or []) + (model.deep_optimizer.exchanged or [])
    replicas = strategy.num_replicas_in_sync
    touched = [
        len(np.unique(ids[s : s + batch // replicas]))
        for s in range(spec["warmup"] * batch, steps * batch, batch)
    ]
    return {
        "step_ms": float(np.median(step_ms)),
        "step_ms_min": float(np.min(step_ms)),
        "bytes_sent_per_replica": sum(e.nbytes for e in sent),
        "exchanged": [
            {"variable_shape": e.variable_shape, "rows": e.rows, "shapes": e.shapes} for e in sent
        ],
        "rows_touched_per_replica": float(np.mean(touched)),
        "loopback_bytes_per_step": (clock.loopback[-1] - clock.loopback[0]) / spec["steps"],
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def _run(specs: list[dict], env_per_spec: list[dict]) -> list[dict]:
    procs = [
        subprocess.Popen(
            ["nice", "-n", "10", sys.executable, __file__, "--worker", json.dumps(spec)],
            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", **env},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for spec, env in zip(specs, env_per_spec)
    ]
    results = []
    for proc in procs:
        out, err = proc.communicate()
        if proc.returncode != 0:
            raise RuntimeError(f"worker failed:\n{err[-3000:]}")
        results.append(json.loads(out.strip().splitlines()[-1]))
    return results


def _free_ports(n: int) -> list[int]:
    sockets = [socket.socket() for _ in range(n)]
    for s in sockets:
        s.bind(("localhost", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[10**4, 10**6, 10**7])
    parser.add_argument("--exchange", nargs="+", choices=["sparse", "dense"], default=["sparse"])
    parser.add_argument("--batch-size", type=int, default=1024, help="the global batch")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(_worker(json.loads(args.worker))))
        return
    for rows in args.rows:
        base = {"rows": rows, "batch_size": args.batch_size, "steps": args.steps}
        base["warmup"] = args.warmup
        (single,) = _run([{**base, "strategy": "default", "exchange": "sparse"}], [{}])
        for exchange in args.exchange:
            cluster = {"worker": [f"localhost:{p}" for p in _free_ports(2)]}
            envs = [
                {
                    "TF_CONFIG": json.dumps(
                        {"cluster": cluster, "task": {"type": "worker", "index": i}}
                    )
                }
                for i in range(2)
            ]
            spec = {**base, "strategy": "multi_worker", "exchange": exchange}
            worker, _ = _run([spec, spec], envs)
            print(
                json.dumps(
                    {
                        "rows": rows,
                        "dim": DIM,
                        "global_batch": args.batch_size,
                        "exchange": exchange,
                        "two_workers_step_ms": worker["step_ms"],
                        "two_workers_step_ms_min": worker["step_ms_min"],
                        "one_process_step_ms": single["step_ms"],
                        "one_process_step_ms_min": single["step_ms_min"],
                        "bytes_sent_per_replica": worker["bytes_sent_per_replica"],
                        "rows_touched_per_replica": worker["rows_touched_per_replica"],
                        "bytes_per_row_touched": worker["bytes_sent_per_replica"]
                        / worker["rows_touched_per_replica"],
                        "loopback_bytes_per_step": worker["loopback_bytes_per_step"],
                        "two_workers_peak_rss_mb": worker["peak_rss_mb"],
                        "one_process_peak_rss_mb": single["peak_rss_mb"],
                        "exchanged": worker["exchanged"],
                    }
                ),
                flush=True,
            )


if __name__ == "__main__":
    main()
