"""Step time of stock Keras FTRL / Adagrad vs widedeep's sparse-aware ones, as the table grows.

One step = embedding lookup of a (256, 20) batch of Zipf-distributed ids + sum loss + gradient +
`optimizer.apply`, all inside one `tf.function`. "stock" is `keras.layers.Embedding` +
`keras.optimizers.{Ftrl,Adagrad}`; "widedeep" is `widedeep.layers.embedding.Embedding` +
`widedeep.optimizers.{Ftrl,Adagrad}`; "raw_tf_floor" is the issue's floor, a raw `tf.Variable` with a
resource gather and an SGD scatter update. All run in the same process, in alternating blocks of 25
steps, so machine noise hits them alike. Prints JSON: median (and minimum) milliseconds per step for
each (optimizer, rows), and the ratio of the largest table's step time to the 10^4-row table's; the
minimum is the less noise-sensitive figure on a shared machine.

Usage:
    python benchmarks/optimizer_step.py [--steps 50] [--warmup 5] [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from collections.abc import Callable

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from widedeep import optimizers as sparse_optimizers  # noqa: E402
from widedeep.layers.embedding import Embedding as SparseEmbedding  # noqa: E402

BATCH_SIZE = 256
IDS_PER_ROW = 20
CASES = {
    # optimizer name -> (embedding dim, table sizes, embeddings initializer)
    "Ftrl": (1, [10**4, 10**6, 10**7], "zeros"),
    "Adagrad": (16, [10**4, 10**6], "uniform"),
}


def zipf_batches(rows: int, count: int, seed: int = 0) -> list[tf.Tensor]:
    """`count` int64 id batches of shape (256, 20): Zipf(1.1) ranks scattered over the table."""
    rng = np.random.default_rng(seed)
    permutation_seed = rng.integers(1, 2**31)
    batches = []
    for _ in range(count):
        ranks = rng.zipf(1.1, size=(BATCH_SIZE, IDS_PER_ROW)).astype(np.int64)
        # Hash ranks onto rows so that popular ids are not all at the top of the table.
        ids = (ranks * 2_654_435_761 + permutation_seed) % rows
        batches.append(tf.constant(ids, dtype=tf.int64))
    return batches


def make_step(layer: keras.layers.Layer, optimizer: keras.Optimizer) -> Callable:
    @tf.function(jit_compile=False)
    def step(ids: tf.Tensor) -> tf.Tensor:
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(layer(ids))
        grads = tape.gradient(loss, layer.trainable_variables)
        optimizer.apply(grads, layer.trainable_variables)
        return loss

    return step


def time_side_by_side(
    steps: dict[str, Callable],
    batches: list[tf.Tensor],
    warmup: int,
    measured: int,
    block: int = 25,
) -> dict[str, list[float]]:
    """Milliseconds of each measured step of each step function, run in alternating blocks.

    Blocks rather than single interleaved steps: a stock step streams the whole table (and its
    slots: 120 MB for FTRL at 10^7 rows) through the caches, so the first sparse steps after a
    stock block start cold. With blocks of 5 those cold steps were a fifth of the samples and
    moved the median at 10^7 rows (FTRL ours 1.43 -> 2.72 ms, the raw floor 1.03 -> 2.00 ms);
    blocks of 25 keep them out of the median, which is what a training loop (our step after our
    step) sees.
    """
    for step in steps.values():
        for i in range(warmup):
            step(batches[i % len(batches)]).numpy()
    timings: dict[str, list[float]] = {name: [] for name in steps}
    for first in range(0, measured, block):
        for name, step in steps.items():
            for i in range(first, min(first + block, measured)):
                ids = batches[i % len(batches)]
                start = time.perf_counter()
                step(ids).numpy()
                timings[name].append((time.perf_counter() - start) * 1000.0)
    return timings


def make_floor_step(rows: int, dim: int) -> Callable:
    """The issue's floor: a raw `tf.Variable`, resource gather, plain SGD scatter update."""
    table = tf.Variable(tf.zeros((rows, dim)))

    @tf.function(jit_compile=False)
    def step(ids: tf.Tensor) -> tf.Tensor:
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(tf.gather(table, ids))
        grad = tape.gradient(loss, table)
        table.scatter_sub(tf.IndexedSlices(grad.values * 0.05, grad.indices))
        return loss

    return step


def build(
    optimizer_name: str, rows: int, dim: int, initializer: str
) -> dict[str, tuple[keras.layers.Layer, keras.Optimizer]]:
    variants = {
        "stock": (keras.layers.Embedding, getattr(keras.optimizers, optimizer_name)),
        "widedeep": (SparseEmbedding, getattr(sparse_optimizers, optimizer_name)),
    }
    built = {}
    for name, (layer_cls, optimizer_cls) in variants.items():
        layer = layer_cls(rows, dim, embeddings_initializer=initializer)
        layer.build()
        built[name] = (layer, optimizer_cls(learning_rate=0.05))
    return built


def run(steps: int, warmup: int, quick: bool) -> dict:
    results: dict = {
        "setup": {
            "batch_size": BATCH_SIZE,
            "ids_per_row": IDS_PER_ROW,
            "id_distribution": "zipf(1.1), hashed onto rows",
            "steps": steps,
            "warmup": warmup,
            "tensorflow": tf.__version__,
            "keras": keras.__version__,
            "machine": f"{platform.machine()}, {os.cpu_count()} cpus",
            "devices": [d.name for d in tf.config.list_logical_devices()],
        },
        "median_ms": {},
        "min_ms": {},
        "ratio_largest_to_1e4": {},
        "ratio_largest_to_1e4_of_min": {},
    }
    for optimizer_name, (dim, sizes, initializer) in CASES.items():
        if quick:
            sizes = [sizes[0], sizes[1]]
        key = f"{optimizer_name} Embedding(N, {dim})"
        medians: dict[str, dict[str, float]] = {}
        minima: dict[str, dict[str, float]] = {}
        for rows in sizes:
            variants = build(optimizer_name, rows, dim, initializer)
            step_fns = {name: make_step(*pair) for name, pair in variants.items()}
            step_fns["raw_tf_floor"] = make_floor_step(rows, dim)
            batches = zipf_batches(rows, count=16)
            timings = time_side_by_side(step_fns, batches, warmup, steps)
            medians[f"{rows:.0e}"] = {n: round(float(np.median(t)), 3) for n, t in timings.items()}
            minima[f"{rows:.0e}"] = {n: round(float(np.min(t)), 3) for n, t in timings.items()}
            del variants, step_fns
        results["median_ms"][key] = medians
        results["min_ms"][key] = minima
        for field, per_size in (("", medians), ("_of_min", minima)):
            smallest, largest = per_size[f"{sizes[0]:.0e}"], per_size[f"{sizes[-1]:.0e}"]
            results["ratio_largest_to_1e4" + field][f"{key}, N={sizes[-1]:.0e}"] = {
                name: round(largest[name] / smallest[name], 2) for name in smallest
            }
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=50, help="measured steps per variant")
    parser.add_argument("--warmup", type=int, default=5, help="unmeasured steps (incl. tracing)")
    parser.add_argument("--quick", action="store_true", help="skip the largest table sizes")
    args = parser.parse_args()
    print(json.dumps(run(args.steps, args.warmup, args.quick), indent=2))


if __name__ == "__main__":
    main()
