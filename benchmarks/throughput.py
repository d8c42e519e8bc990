"""Training throughput of Wide & Deep (and DFN) against stock Keras baselines, printing JSON.

Workload "standard Wide & Deep": 10 categorical fields of 10^4 Zipf-skewed ids (vocabulary
lookups; wide one-hots and 16-d embeddings), 3 pairwise crosses hashed into 10^5 buckets each
(wide only, as in the paper), 5 standardised numeric fields (deep only), MLP 256-128-64, batch
1024. The rows are written once with `DatasetWriter` to a dataset directory; every model takes
the same raw features and runs the same in-model preprocessing.

**The headline, group `user`: the user's `fit` path at the defaults**, each variant a fresh
process of `benchmarks/fit_workload.py`, the variants alternated round by round (`--process-rounds`,
the order rotating), each process's rate the median of its epochs 2 to 4:

* `ours_user_fit`: `build_wide_deep(schema, hidden_units=(256, 128, 64))` at its other defaults
  (MLP dropout included), `WideDeepModel.compile` with `Ftrl(0.05, l1_regularization_strength=1e-3)`
  / `Adagrad(0.05)` and its other defaults, `fit` on an in-memory `tf.data.Dataset`
  (`from_tensor_slices` -> `batch(1024)` -> `prefetch`): what a user's script does.
* `ours_fit_arrays`: the same model, `fit(x, y, batch_size=1024)` on the arrays (the in-memory
  one-liner).
* `tf_keras_legacy_peer`: the fastest peer (g below), as its users feed it.
* `mlp_floor`: the MLP 256-128-64-1 alone (f below).
* `user_pipeline`, `peer_pipeline`, `mlp_pipeline`: each of those input pipelines alone, no
  model (`fit_workload.py`).

The floors bound what any model fed by the user's pipeline can reach on this machine:
`bound.pipeline_alone` is `user_pipeline`'s rate (nothing fed by that pipeline is faster), and
`bound.cpu` is the rate at which the machine's cores would be fully busy with the user's pipeline
plus the MLP's own work (`mlp_floor` less its pipeline), CPU milliseconds per batch each the
median over rounds: a Wide & Deep on that pipeline whose embeddings, wide part, lookups and
optimizers cost nothing, on cores that never wait. Both are given against the peer.

Printed: each variant's rate per round and median, and each variant against the peer as the
ratio of the medians and the median of the per-round ratios (`ours_user_fit` against the peer is
the number the target is set on).

The groups below are diagnostics: tuned or partial paths, all in one process.

Variants of group `standard` (all in one process, interleaved round by round, so machine noise
hits them alike; the first round of each variant is warm-up, tracing included):

* `ours_disk` (a), the project's cached path: `build_wide_deep` + `WideDeepModel.compile()` (sparse FTRL for `wide`, sparse
  Adagrad for the rest, routed `train_step`) + `fit` on `make_dataset(..., shuffle=True)` from
  the dataset directory, read as `widedeep train` reads it: the rows are read and parsed once
  and kept in memory when they fit its default budget (`TrainConfig.cache_mb`; 200k rows of
  this workload take 23 MB), every epoch reshuffles them. End to end.
* `ours_disk_uncached`: the same, reading and parsing the files every epoch (`--cache-mb 0`).
* `stock_memory` (b): the same graph built with `keras.layers.Embedding`, as a plain
  `keras.Model` compiled with ONE stock `keras.optimizers.Adagrad`, `fit` on in-memory numpy
  arrays (`batch_size=1024`, `shuffle=True`).
* `multi_optimizer_memory` (c): the stock-embedding graph as a plain `keras.Model` compiled with
  `keras.optimizers.MultiOptimizer` routing stock `Ftrl` (the `wide` layer) / stock `Adagrad`
  (the rest) under the stock `train_step`, on the same arrays.
* `ours_cached` / `stock_cached` (diagnostics): both models on the *same* pre-parsed batches
  cached in memory (`make_dataset(...).cache()`), so the difference is the train step alone.
* `mlp_floor` (f): the MLP 256-128-64-1 alone, forward + backward + stock Adagrad, on dense
  resident inputs of the deep input's width (10 * 16 + 5 = 165): the compute floor.

Group `small` (d) repeats `ours_disk`, `ours_cached`, `stock_memory`, `stock_cached` with small
tables (crosses hashed into 10^4 buckets; the categorical tables already have 10^4 + 1 rows).
Group `simulated` trains `build_dfn(schema)`, `build_wide_deep(schema)` and
`build_wide_deep(schema, sequence_pooling=True)` (`wide_deep_seq`: W&D plus the sequences'
mean-pooled item embeddings, the cheapest model that reads the feedback sequences; defaults,
our optimizers, `make_dataset` from the dataset directory as `ours_disk` reads it; with
`_uncached`, parsing every epoch) on `simulate_dataset` data of the simulator's default
size (`widedeep simulate`: 250k impressions, 200k for training), and DFN's two stock baselines
as above: `dfn_stock_memory` (stock embeddings, one stock Adagrad, in-memory arrays) and
`dfn_multi_optimizer_memory` (stock `MultiOptimizer` routing stock Ftrl / Adagrad).
`tf_keras_wide_deep_model_memory` (e), in group `standard` when `tf_keras` is importable (the
optional `bench` extra): `tf_keras.experimental.WideDeepModel` with `[Ftrl, Adagrad]` over the
same inputs and preprocessing built from tf-keras layers, `fit` on the in-memory arrays.
`tf_keras_legacy_peer` (g), the fastest peer we know and the one the target is set against:
`tf_keras.experimental.WideDeepModel` with the legacy `Ftrl` / `Adagrad` (TensorFlow's fused
sparse kernels), fed as its users feed it: ids pre-offset into one linear and one embedding
table, crosses precomputed, numerics standardised, in-memory arrays through `tf.data`
(`from_tensor_slices`, `batch`, `prefetch`), no preprocessing in the model (`peer_arrays`).
Ours and the stock graphs build the workload's MLP without dropout, as the peers do.

Group `executions` (not in the default set) runs ours on the cached batches at each
`steps_per_execution` of `EXECUTION_SIZES`, with the ratios to 1.

Each timed unit is one `fit(epochs=1)` over the whole training split. Printed per variant:
`examples_per_sec` (median over timed epochs, end to end: iterator start-up included),
`steady_examples_per_sec` (median over epochs of the rate between the 5th and the last full
batch, from a batch-end callback), `step_ms` (median steady milliseconds per batch) and the raw
per-epoch rates. Ratios compare medians of the same run.

Usage:
    python benchmarks/throughput.py [--groups user,standard,small,simulated,executions]
        [--train-rows 200000] [--rounds 5] [--process-rounds 3] [--sim-impressions 250000] [--workdir DIR]
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import functools
import importlib.util
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from typing import Any

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from fit_workload import (  # noqa: E402  (the workload's one home: it runs under old trees too)
    BATCH_SIZE,
    CROSSED_PAIRS,
    EMBEDDING_DIM,
    HIDDEN_UNITS,
    NUM_CATEGORICAL,
    NUM_NUMERIC,
    STANDARD_CROSS_BUCKETS,
    VOCABULARY_SIZE,
    ZIPF_EXPONENT,
    deep_input_width,
    labels,
    model_inputs,
    peer_arrays,
    standard_columns,
    standard_schema,
)

import widedeep.features  # noqa: E402
import widedeep.layers.wide  # noqa: E402
from widedeep import build_dfn, build_wide_deep  # noqa: E402
from widedeep.data.pipeline import make_dataset  # noqa: E402
from widedeep.data.reader import load_dataset_dir, read_columns  # noqa: E402
from widedeep.data.simulator import SimulatorConfig, simulate_dataset  # noqa: E402
from widedeep.data.training_pipelines import memory_cache_fits  # noqa: E402
from widedeep.data.writer import DatasetWriter  # noqa: E402
from widedeep.layers.mlp import MLP  # noqa: E402
from widedeep.models.two_optimizer_model import WIDE_BRANCH, WideDeepModel  # noqa: E402
from widedeep.schema import Schema  # noqa: E402
from widedeep.training import TrainConfig  # noqa: E402

SMALL_CROSS_BUCKETS = 10**4
STEADY_SKIP = 5  # batches left out at the start of an epoch for the steady rate

TARGETS = {
    "ours_vs_fastest_peer": "1.5 (goal 2)",
    "small_tables_ours_vs_stock": 0.95,
    "dfn_vs_wide_deep_simulated": 1 / 3,
}


# ------------------------------------------------------------------------------------- data


def write_standard_dataset(
    out_dir: str, train_rows: int, seed: int = 0
) -> tuple[Schema, dict[str, np.ndarray]]:
    """Writes the standard workload's train split to `out_dir`; returns its schema and columns."""
    columns = standard_columns(train_rows, seed)
    schema = standard_schema()
    writer = DatasetWriter(out_dir, num_shards={"train": 8}, overwrite=True)
    for start in range(0, train_rows, 100_000):
        writer.write("train", {k: v[start : start + 100_000] for k, v in columns.items()})
    writer.close(schema, {"source": "benchmarks/throughput.py", "seed": seed})
    return schema, columns


# ----------------------------------------------------------------------------------- models
class StockEmbedding(keras.layers.Embedding):
    """`keras.layers.Embedding` taking the builders' `valid` argument as a stock user would.

    The stock lookup of every position (a full read of the table, as the stock layer does),
    then zeros where `valid` is False.
    """

    def call(self, inputs: Any, valid: Any = None) -> Any:
        outputs = super().call(inputs)
        if valid is None:
            return outputs
        return keras.ops.where(keras.ops.expand_dims(valid, -1), outputs, 0.0)

    def compute_output_spec(self, inputs: Any, valid: Any = None) -> Any:
        return super().compute_output_spec(inputs)


@contextlib.contextmanager
def stock_embeddings() -> Iterator[None]:
    """Builds with stock embeddings wherever the builders use widedeep's sparse one."""
    patched = (widedeep.features, widedeep.layers.wide)
    saved = [module.Embedding for module in patched]
    try:
        for module in patched:
            module.Embedding = StockEmbedding
        yield
    finally:
        for module, original in zip(patched, saved, strict=True):
            module.Embedding = original


def build_ours(schema: Schema) -> WideDeepModel:
    """(a) Our model: sparse embeddings, sparse FTRL + Adagrad, routed train step.

    Without dropout (the workload's MLP, as every peer here builds it) and with
    `widedeep train`'s `steps_per_execution`.
    """
    model = _standard_wide_deep(schema)
    model.compile(steps_per_execution=TrainConfig.steps_per_execution)
    return model


def _standard_wide_deep(schema: Schema) -> WideDeepModel:
    return build_wide_deep(schema, hidden_units=HIDDEN_UNITS, dropout=0.0)


def _stock_graph(schema: Schema, builder: Callable[[Schema], WideDeepModel]) -> keras.Model:
    with stock_embeddings():
        routed = builder(schema)
    return keras.Model(routed.input, routed.output, name=f"stock_{routed.name}")


def build_stock(
    schema: Schema, builder: Callable[[Schema], WideDeepModel] = _standard_wide_deep
) -> keras.Model:
    """(b) The same graph with stock embeddings, a plain `keras.Model` and ONE stock Adagrad."""
    model = _stock_graph(schema, builder)
    model.compile(
        optimizer=keras.optimizers.Adagrad(learning_rate=0.05), loss="binary_crossentropy"
    )
    return model


def build_multi_optimizer(
    schema: Schema, builder: Callable[[Schema], WideDeepModel] = _standard_wide_deep
) -> keras.Model:
    """(c) Stock graph, stock train step, `MultiOptimizer`: stock Ftrl for `wide`, Adagrad else."""
    model = _stock_graph(schema, builder)
    wide = keras.optimizers.Ftrl(learning_rate=0.05, l1_regularization_strength=1e-3)
    deep = keras.optimizers.Adagrad(learning_rate=0.05)
    wide_ids = {id(v) for v in model.get_layer(WIDE_BRANCH).trainable_variables}
    optimizer = keras.optimizers.MultiOptimizer(lambda v: wide if id(v) in wide_ids else deep)
    model.compile(optimizer=optimizer, loss="binary_crossentropy")
    return model


def build_tf_keras(schema: Schema) -> tuple[Any, Any]:
    """(e) `tf_keras.experimental.WideDeepModel` of the same workload, and a tf-keras clock.

    The same raw inputs and preprocessing (vocabulary lookups, hashed crosses, standardised
    numerics) with tf-keras layers; the linear model sums one weight per id and per cross
    bucket, the DNN model is the 16-d embeddings + MLP; compiled with `[Ftrl, Adagrad]`, the
    optimizer pair tf-keras routes to its linear and DNN models.
    """
    import tf_keras as tfk

    inputs = {
        name: tfk.Input(shape=shape, dtype=dtype, name=name)
        for name, (shape, dtype) in schema.input_signature().items()
    }
    index = {
        f.name: tfk.layers.IntegerLookup(
            vocabulary=list(f.vocabulary), num_oov_indices=f.num_oov_buckets
        )(inputs[f.name])
        for f in schema.categorical
    }
    for c in schema.crosses:
        index[c.name] = tfk.layers.HashedCrossing(num_bins=c.hash_buckets)(
            tuple(index[f] for f in c.features)
        )
    cardinality = {f.name: f.cardinality for f in [*schema.categorical, *schema.crosses]}
    wide = [f.name for f in [*schema.categorical, *schema.crosses] if f.wide]
    linear_logit = tfk.layers.Add()(
        [
            tfk.layers.Embedding(cardinality[n], 1, embeddings_initializer="zeros")(index[n])
            for n in wide
        ]
    )
    deep = [
        tfk.layers.Embedding(f.cardinality, f.embedding_dim)(index[f.name])
        for f in schema.categorical
        if f.embedding_dim
    ]
    deep += [
        tfk.layers.Normalization(mean=f.mean, variance=f.std**2)(
            tfk.layers.Reshape((1,))(inputs[f.name])
        )
        for f in schema.numeric
        if f.deep
    ]
    optimizers = [
        tfk.optimizers.Ftrl(learning_rate=0.05, l1_regularization_strength=1e-3),
        tfk.optimizers.Adagrad(learning_rate=0.05),
    ]
    return tf_keras_wide_deep(inputs, linear_logit, deep, optimizers), tf_keras_clock()


def build_tf_keras_legacy(schema: Schema, arrays: dict[str, np.ndarray]) -> tuple[Any, Any]:
    """(g) The fastest peer we know: tf-keras `WideDeepModel` with the *legacy* Ftrl / Adagrad.

    The legacy tf-keras optimizers apply sparse gradients with TensorFlow's fused kernels
    (`ResourceSparseApplyFtrl`, `ResourceSparseApplyAdagradV2`). Inputs are `peer_arrays`: one
    linear table over all ids and crosses (`Embedding(rows, 1)` summed over the fields), one
    16-d embedding table over the categorical ids, the numerics; the MLP as in (a).
    """
    import tf_keras as tfk

    wide_rows = int(arrays["wide_ids"].max()) + 1
    deep_rows = int(arrays["deep_ids"].max()) + 1
    inputs = {
        name: tfk.Input(shape=values.shape[1:], dtype=values.dtype, name=name)
        for name, values in arrays.items()
    }
    weights = tfk.layers.Embedding(wide_rows, 1, embeddings_initializer="zeros")(inputs["wide_ids"])
    linear_logit = tfk.layers.Lambda(lambda w: tf.reduce_sum(w, axis=1))(weights)
    embedded = tfk.layers.Flatten()(
        tfk.layers.Embedding(deep_rows, EMBEDDING_DIM)(inputs["deep_ids"])
    )
    optimizers = [
        tfk.optimizers.legacy.Ftrl(learning_rate=0.05, l1_regularization_strength=1e-3),
        tfk.optimizers.legacy.Adagrad(learning_rate=0.05),
    ]
    model = tf_keras_wide_deep(inputs, linear_logit, [embedded, inputs["numeric"]], optimizers)
    return model, tf_keras_clock()


def peer_dataset(arrays: dict[str, np.ndarray], y: np.ndarray) -> tf.data.Dataset:
    """In-memory arrays through `tf.data`, as the peer's users feed them."""
    return (
        tf.data.Dataset.from_tensor_slices((arrays, y)).batch(BATCH_SIZE).prefetch(tf.data.AUTOTUNE)
    )


def tf_keras_wide_deep(
    inputs: Any, linear_logit: Any, deep: list[Any], optimizers: list[Any]
) -> Any:
    """`tf_keras.experimental.WideDeepModel`: the linear logit, and the MLP over `deep`."""
    import tf_keras as tfk

    hidden = tfk.layers.Concatenate()(deep)
    for units in HIDDEN_UNITS:
        hidden = tfk.layers.Dense(units, activation="relu")(hidden)
    dnn_logit = tfk.layers.Dense(1)(hidden)
    model = tfk.experimental.WideDeepModel(
        tfk.Model(inputs, linear_logit), tfk.Model(inputs, dnn_logit), activation="sigmoid"
    )
    model.compile(optimizer=optimizers, loss="binary_crossentropy")
    return model


def tf_keras_clock() -> Any:
    """A `BatchClock` for tf-keras models (which take only tf-keras callbacks)."""
    import tf_keras as tfk

    class Clock(tfk.callbacks.Callback):
        on_train_begin = BatchClock.on_train_begin
        on_train_batch_end = BatchClock.on_train_batch_end

    clock = Clock()
    clock.times = []
    return clock


# ---------------------------------------------------------------------------------- timing
class BatchClock(keras.callbacks.Callback):
    """Records the time at the end of every training batch of the last `fit`."""

    def __init__(self) -> None:
        super().__init__()
        self.times: list[tuple[int, float]] = []

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        self.times = []

    def on_train_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        # With steps_per_execution > 1 this runs once per execution, `batch` its last step.
        self.times.append((batch, time.perf_counter()))


@dataclasses.dataclass
class Epoch:
    """One timed pass: examples, wall seconds, and the steady per-batch seconds (or None)."""

    examples: int
    seconds: float
    steady_batch_seconds: float | None
    first_batch_seconds: float | None = None
    after_last_batch_seconds: float | None = None
    cpu_seconds: float | None = None


def steady_batch_seconds(times: list[tuple[int, float]], full_batches: int) -> float | None:
    """Mean seconds per batch from the first clock tick at or after batch `STEADY_SKIP` to the
    last one within the full batches; `times` holds `(batch index, time)` ticks."""
    ticks = [(b, t) for b, t in times if STEADY_SKIP <= b < full_batches]
    if len(ticks) < 2 or ticks[-1][0] - ticks[0][0] < 5:
        return None
    return (ticks[-1][1] - ticks[0][1]) / (ticks[-1][0] - ticks[0][0])


def epoch_of(
    examples: int,
    start: float,
    end: float,
    times: list[tuple[int, float]],
    full_batches: int,
    cpu_seconds: float | None = None,
) -> Epoch:
    return Epoch(
        examples,
        end - start,
        steady_batch_seconds(times, full_batches),
        times[0][1] - start if times else None,
        end - times[-1][1] if times else None,
        cpu_seconds,
    )


def fit_runner(
    model: Any, examples: int, clock: Any = None, **fit_kwargs: Any
) -> Callable[[], Epoch]:
    """A timed one-epoch `model.fit(**fit_kwargs)` (batches of `fit_kwargs["batch_size"]`).

    `clock` is a `BatchClock`, or one of `tf_keras`'s callback class for a `tf_keras` model.
    """
    clock = clock or BatchClock()
    full_batches = examples // fit_kwargs.get("batch_size", BATCH_SIZE)

    def run() -> Epoch:
        cpu, start = time.process_time(), time.perf_counter()
        model.fit(epochs=1, verbose=0, callbacks=[clock], **fit_kwargs)
        end = time.perf_counter()
        cpu = time.process_time() - cpu
        return epoch_of(examples, start, end, clock.times, full_batches, cpu)

    return run


def our_dataset(
    data_dir: str, schema: Schema, batch_size: int = BATCH_SIZE, cache: bool | None = None
) -> tf.data.Dataset:
    """The shuffled training split as `widedeep train` reads it (`cache=None`): parsed once
    and kept in memory when it fits the default budget, or parsed every epoch (`cache=False`)."""
    if cache is None:
        _, meta = load_dataset_dir(data_dir)
        rows = int(meta["splits"]["train"]["examples"])
        cache = memory_cache_fits(schema, rows, TrainConfig.cache_mb)
    return make_dataset(data_dir, "train", schema, batch_size=batch_size, shuffle=True, cache=cache)


def cached_batches(data_dir: str, schema: Schema) -> tf.data.Dataset:
    """The split's parsed batches, cached in memory (no shuffling), cache filled here.

    Filling the cache with one full pass up front matters: Keras stops an epoch after the
    dataset's known cardinality without reaching end-of-sequence, which would leave the cache
    unfinished and re-read from disk every epoch.
    """
    dataset = make_dataset(data_dir, "train", schema, batch_size=BATCH_SIZE).cache()
    for _ in dataset:
        pass
    return dataset


def mlp_floor_runner(width: int, examples: int, seed: int = 0) -> Callable[[], Epoch]:
    """(f) MLP fwd + bwd + stock Adagrad over resident dense batches, in a Python loop."""
    mlp = MLP(hidden_units=list(HIDDEN_UNITS), output_units=1, name="mlp_floor")
    optimizer = keras.optimizers.Adagrad(learning_rate=0.05)
    rng = np.random.default_rng(seed)
    x = tf.constant(rng.normal(size=(examples, width)).astype(np.float32))
    y = tf.constant((rng.random((examples, 1)) < 0.3).astype(np.float32))
    batches = [
        (x[i : i + BATCH_SIZE], y[i : i + BATCH_SIZE]) for i in range(0, examples, BATCH_SIZE)
    ]
    mlp(batches[0][0])
    optimizer.build(mlp.trainable_variables)

    @tf.function(jit_compile=False, reduce_retracing=True)
    def step(features: tf.Tensor, target: tf.Tensor) -> tf.Tensor:
        with tf.GradientTape() as tape:
            probability = tf.sigmoid(mlp(features, training=True))
            loss = tf.reduce_mean(keras.losses.binary_crossentropy(target, probability))
        grads = tape.gradient(loss, mlp.trainable_variables)
        optimizer.apply(grads, mlp.trainable_variables)
        return loss

    full_batches = examples // BATCH_SIZE

    def run() -> Epoch:
        times = []
        cpu, start = time.process_time(), time.perf_counter()
        loss = None
        for batch, (features, target) in enumerate(batches):
            loss = step(features, target)
            times.append((batch, time.perf_counter()))
        float(loss)
        end = time.perf_counter()
        cpu = time.process_time() - cpu
        return epoch_of(examples, start, end, times, full_batches, cpu)

    return run


def interleave(
    runners: dict[str, Callable[[], Epoch]], rounds: int, batch_size: int = BATCH_SIZE
) -> dict[str, list[Epoch]]:
    """Runs every runner once per round, rotating the order; round 0 is warm-up and dropped."""
    names = list(runners)
    epochs: dict[str, list[Epoch]] = {name: [] for name in names}
    for r in range(rounds):
        shift = r % len(names)
        for name in names[shift:] + names[:shift]:
            epoch = runners[name]()
            if r > 0:
                epochs[name].append(epoch)
            steady = epoch.steady_batch_seconds
            print(
                f"[round {r}] {name}: {epoch.examples / epoch.seconds:,.0f} ex/s, steady "
                f"{(batch_size / steady) if steady else float('nan'):,.0f}, first batch "
                f"{(epoch.first_batch_seconds or 0) * 1000:.0f} ms, after last "
                f"{(epoch.after_last_batch_seconds or 0) * 1000:.0f} ms",
                file=sys.stderr,
                flush=True,
            )
    return epochs


def _median_ms(values: list[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return round(float(np.median(present)) * 1000, 1) if present else None


def summarise(epochs: list[Epoch], batch_size: int) -> dict[str, Any]:
    rates = [e.examples / e.seconds for e in epochs]
    steady = [e.steady_batch_seconds for e in epochs if e.steady_batch_seconds is not None]
    return {
        "examples_per_sec": round(float(np.median(rates))),
        "steady_examples_per_sec": round(float(np.median([batch_size / s for s in steady])))
        if steady
        else None,
        "step_ms": round(float(np.median(steady)) * 1000, 2) if steady else None,
        "first_batch_ms": _median_ms([e.first_batch_seconds for e in epochs]),
        "after_last_batch_ms": _median_ms([e.after_last_batch_seconds for e in epochs]),
        "cpu_us_per_example": round(
            float(np.median([e.cpu_seconds / e.examples * 1e6 for e in epochs if e.cpu_seconds])),
            2,
        )
        if any(e.cpu_seconds for e in epochs)
        else None,
        "epochs_examples_per_sec": [round(r) for r in rates],
    }


def ratio(results: dict[str, dict[str, Any]], a: str, b: str, key: str) -> float | None:
    if a not in results or b not in results or not results[a][key] or not results[b][key]:
        return None
    return round(results[a][key] / results[b][key], 3)


# ---------------------------------------------------------------------------------- groups
def user_path_bound(result: dict[str, Any]) -> dict[str, Any]:
    """The fastest rate the user's path could reach here, from the floors measured in `result`.

    `pipeline_alone`: the user's pipeline drained with no model. `cpu`: every core busy with the
    user's pipeline plus the MLP floor's own work (its CPU per batch less its pipeline's), i.e.
    a model that costs what the MLP alone costs, on cores that never wait. Each also as a
    multiple of the peer's median rate.
    """
    cores = len(os.sched_getaffinity(0))
    pipeline = result["user_pipeline"]["cpu_ms_per_batch"]
    mlp = result["mlp_floor"]["cpu_ms_per_batch"] - result["mlp_pipeline"]["cpu_ms_per_batch"]
    bound: dict[str, Any] = {
        "cores": cores,
        "pipeline_alone": result["user_pipeline"]["median"],
        "cpu_ms_per_batch": {"user_pipeline": pipeline, "mlp_alone": round(mlp, 2)},
        "cpu": round(cores * BATCH_SIZE / (pipeline + mlp) * 1e3),
    }
    if PEER in result:
        peer = result[PEER]["median"]
        bound["vs_peer"] = {
            "pipeline_alone": round(bound["pipeline_alone"] / peer, 3),
            "cpu": round(bound["cpu"] / peer, 3),
        }
    return bound


USER_VARIANTS: dict[str, list[str]] = {
    "ours_user_fit": ["--variant", "wide_deep"],
    "ours_fit_arrays": ["--variant", "wide_deep", "--input", "arrays"],
    "tf_keras_legacy_peer": ["--variant", "peer"],
    "mlp_floor": ["--variant", "mlp_floor"],
    "user_pipeline": ["--variant", "user_pipeline"],
    "peer_pipeline": ["--variant", "peer_pipeline"],
    "mlp_pipeline": ["--variant", "mlp_pipeline"],
}
"""Group `user`: `fit_workload.py` arguments of each variant (one fresh process each)."""

PEER = "tf_keras_legacy_peer"


def run_user(train_rows: int, rounds: int) -> dict[str, Any]:
    """The user's path and its references, fresh processes alternated round by round."""
    script = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fit_workload.py")
    names = [n for n in USER_VARIANTS if n != PEER or importlib.util.find_spec("tf_keras")]
    rates: dict[str, list[float]] = {name: [] for name in names}
    cpu_ms: dict[str, list[float]] = {name: [] for name in names}
    for r in range(rounds):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            command = [sys.executable, script, *USER_VARIANTS[name], "--rows", str(train_rows)]
            out = subprocess.run(command, capture_output=True, text=True, check=False)
            if out.returncode != 0:
                raise SystemExit(f"{name} failed:\n{out.stderr[-3000:]}")
            measured = json.loads(out.stdout.strip().splitlines()[-1])
            rates[name].append(measured["examples_per_sec"])
            cpu_ms[name].append(measured["cpu_ms_per_batch"])
            print(
                f"[user, round {r}] {name}: {rates[name][-1]:,.0f} ex/s",
                file=sys.stderr,
                flush=True,
            )
    result: dict[str, Any] = {
        name: {
            "examples_per_sec": [round(v) for v in values],
            "median": round(float(np.median(values))),
            "cpu_ms_per_batch": round(float(np.median(cpu_ms[name])), 2),
        }
        for name, values in rates.items()
    }
    result["bound"] = user_path_bound(result)
    if PEER in rates:
        peer = rates[PEER]
        result["vs_peer"] = {
            name: {
                "ratio_of_medians": round(float(np.median(values) / np.median(peer)), 3),
                "median_of_round_ratios": round(
                    float(np.median([a / b for a, b in zip(values, peer, strict=True)])), 3
                ),
            }
            for name, values in rates.items()
            if name != PEER
        }
    return result


def run_standard(data_dir: str, columns: dict[str, np.ndarray], rounds: int) -> dict[str, Any]:
    schema, meta = load_dataset_dir(data_dir)
    n = int(meta["splits"]["train"]["examples"])
    x, y = model_inputs(schema, columns), labels(columns)
    ours, stock = build_ours(schema), build_stock(schema)
    memory = {"x": x, "y": y, "batch_size": BATCH_SIZE, "shuffle": True}
    cached = cached_batches(data_dir, schema)
    runners = {
        "ours_disk": fit_runner(ours, n, x=our_dataset(data_dir, schema)),
        "ours_disk_uncached": fit_runner(ours, n, x=our_dataset(data_dir, schema, cache=False)),
        "ours_cached": fit_runner(ours, n, x=cached),
        "stock_memory": fit_runner(stock, n, **memory),
        "stock_cached": fit_runner(stock, n, x=cached),
        "multi_optimizer_memory": fit_runner(build_multi_optimizer(schema), n, **memory),
        "mlp_floor": mlp_floor_runner(deep_input_width(schema), n),
    }
    if importlib.util.find_spec("tf_keras") is not None:
        tf_keras_model, tf_keras_clock = build_tf_keras(schema)
        runners["tf_keras_wide_deep_model_memory"] = fit_runner(
            tf_keras_model, n, clock=tf_keras_clock, **memory
        )
        arrays = peer_arrays(schema, columns)
        peer, peer_clock = build_tf_keras_legacy(schema, arrays)
        runners["tf_keras_legacy_peer"] = fit_runner(
            peer, n, clock=peer_clock, x=peer_dataset(arrays, y)
        )
    results = {name: summarise(e, BATCH_SIZE) for name, e in interleave(runners, rounds).items()}
    ratios = {}
    for key in ("examples_per_sec", "steady_examples_per_sec"):
        ratios[key] = {
            "ours_disk / tf_keras_legacy_peer (fastest peer; target >= 1.5, goal 2)": ratio(
                results, "ours_disk", "tf_keras_legacy_peer", key
            ),
            "ours_disk_uncached / tf_keras_legacy_peer": ratio(
                results, "ours_disk_uncached", "tf_keras_legacy_peer", key
            ),
            "ours_disk / stock_memory": ratio(results, "ours_disk", "stock_memory", key),
            "ours_cached / stock_cached": ratio(results, "ours_cached", "stock_cached", key),
            "ours_disk / ours_cached": ratio(results, "ours_disk", "ours_cached", key),
            "ours_disk / multi_optimizer_memory": ratio(
                results, "ours_disk", "multi_optimizer_memory", key
            ),
            "multi_optimizer_memory / stock_memory": ratio(
                results, "multi_optimizer_memory", "stock_memory", key
            ),
            "ours_disk / tf_keras_wide_deep_model_memory": ratio(
                results, "ours_disk", "tf_keras_wide_deep_model_memory", key
            ),
            "ours_disk / mlp_floor": ratio(results, "ours_disk", "mlp_floor", key),
        }
    return {
        "rows": n,
        "wide_rows": NUM_CATEGORICAL * (VOCABULARY_SIZE + 1)
        + len(CROSSED_PAIRS) * STANDARD_CROSS_BUCKETS,
        "deep_input_width": deep_input_width(schema),
        "variants": results,
        "ratios": ratios,
    }


EXECUTION_SIZES = (1, 4, 16, 64)


def run_executions(data_dir: str, rounds: int) -> dict[str, Any]:
    """Group `executions`: ours on cached batches at each `steps_per_execution` in `EXECUTION_SIZES`."""
    schema, meta = load_dataset_dir(data_dir)
    n = int(meta["splits"]["train"]["examples"])
    cached = cached_batches(data_dir, schema)
    runners = {}
    for size in EXECUTION_SIZES:
        model = _standard_wide_deep(schema)
        model.compile(steps_per_execution=size)
        runners[f"steps_per_execution_{size}"] = fit_runner(model, n, x=cached)
    results = {name: summarise(e, BATCH_SIZE) for name, e in interleave(runners, rounds).items()}
    return {
        "rows": n,
        "variants": results,
        "ratios_to_1": {
            name: ratio(results, name, "steps_per_execution_1", "examples_per_sec")
            for name in results
        },
    }


def run_small(data_dir: str, columns: dict[str, np.ndarray], rounds: int) -> dict[str, Any]:
    schema = standard_schema(cross_buckets=SMALL_CROSS_BUCKETS)
    _, meta = load_dataset_dir(data_dir)
    n = int(meta["splits"]["train"]["examples"])
    ours, stock = build_ours(schema), build_stock(schema)
    cached = cached_batches(data_dir, schema)
    runners = {
        "ours_disk": fit_runner(ours, n, x=our_dataset(data_dir, schema)),
        "ours_cached": fit_runner(ours, n, x=cached),
        "stock_memory": fit_runner(
            stock,
            n,
            x=model_inputs(schema, columns),
            y=labels(columns),
            batch_size=BATCH_SIZE,
            shuffle=True,
        ),
        "stock_cached": fit_runner(stock, n, x=cached),
    }
    results = {name: summarise(e, BATCH_SIZE) for name, e in interleave(runners, rounds).items()}
    ratios = {}
    for key in ("examples_per_sec", "steady_examples_per_sec"):
        ratios[key] = {
            "ours_cached / stock_cached (train step alone; target >= 0.95)": ratio(
                results, "ours_cached", "stock_cached", key
            ),
            "ours_disk / stock_memory (end to end; target >= 0.95)": ratio(
                results, "ours_disk", "stock_memory", key
            ),
        }
    return {
        "rows": n,
        "cross_buckets": SMALL_CROSS_BUCKETS,
        "variants": results,
        "ratios": ratios,
    }


def run_simulated(
    workdir: str, impressions: int, batch_size: int, rounds: int, seed: int = 0
) -> dict[str, Any]:
    data_dir = os.path.join(workdir, "simulated")
    config = dataclasses.replace(SimulatorConfig(seed=seed), num_impressions=impressions)
    start = time.perf_counter()
    simulate_dataset(data_dir, config, overwrite=True)
    simulate_seconds = time.perf_counter() - start
    schema, meta = load_dataset_dir(data_dir)
    n = int(meta["splits"]["train"]["examples"])
    runners = {}
    builders = {
        "dfn": build_dfn,
        "wide_deep": build_wide_deep,
        # The cheapest model that reads the feedback: W&D plus the sequences' mean-pooled
        # item embeddings (BST's WDL+Seq), a floor for any model over the sequences.
        "wide_deep_seq": functools.partial(build_wide_deep, sequence_pooling=True),
    }
    for name, builder in builders.items():
        model = builder(schema)
        model.compile(steps_per_execution=TrainConfig.steps_per_execution)
        clock = BatchClock()
        for suffix, cache in (("", None), ("_uncached", False)):
            if suffix and name == "wide_deep_seq":
                continue
            dataset = our_dataset(data_dir, schema, batch_size, cache)

            def run(model: keras.Model = model, dataset: Any = dataset, clock: BatchClock = clock):
                cpu, start = time.process_time(), time.perf_counter()
                model.fit(dataset, epochs=1, verbose=0, callbacks=[clock])
                end = time.perf_counter()
                cpu = time.process_time() - cpu
                return epoch_of(n, start, end, clock.times, n // batch_size, cpu)

            runners[name + suffix] = run
    # DFN's stock baselines, as for the standard workload: in-memory arrays, stock embeddings.
    columns = read_columns(data_dir, "train", [*schema.input_signature(), schema.label])
    memory = {
        "x": {name: columns[name] for name in schema.input_signature()},
        "y": columns[schema.label].astype("float32")[:, None],
        "batch_size": batch_size,
        "shuffle": True,
    }
    for name, build in (
        ("dfn_stock_memory", build_stock),
        ("dfn_multi_optimizer_memory", build_multi_optimizer),
    ):
        runners[name] = fit_runner(build(schema, build_dfn), n, **memory)
    epochs = interleave(runners, rounds, batch_size)
    results = {name: summarise(e, batch_size) for name, e in epochs.items()}
    return {
        "train_rows": n,
        "batch_size": batch_size,
        "sequence_length": config.max_length,
        "simulate_seconds": round(simulate_seconds, 1),
        "variants": results,
        "ratios": {
            "dfn / wide_deep": ratio(results, "dfn", "wide_deep", "examples_per_sec"),
            "dfn / wide_deep (steady)": ratio(
                results, "dfn", "wide_deep", "steady_examples_per_sec"
            ),
            "dfn_uncached / wide_deep_uncached": ratio(
                results, "dfn_uncached", "wide_deep_uncached", "examples_per_sec"
            ),
            "wide_deep_seq / wide_deep": ratio(
                results, "wide_deep_seq", "wide_deep", "examples_per_sec"
            ),
            "dfn / wide_deep_seq": ratio(results, "dfn", "wide_deep_seq", "examples_per_sec"),
            "dfn / dfn_stock_memory": ratio(results, "dfn", "dfn_stock_memory", "examples_per_sec"),
            "dfn / dfn_multi_optimizer_memory": ratio(
                results, "dfn", "dfn_multi_optimizer_memory", "examples_per_sec"
            ),
        },
    }


def tf_keras_status() -> str:
    if importlib.util.find_spec("tf_keras") is None:
        return "skipped: tf-keras not installed (pip install -e '.[bench]')"
    import tf_keras

    return f"measured in group standard (tf-keras {tf_keras.__version__})"


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--groups", default="user,standard,small,simulated", help="also: executions"
    )
    parser.add_argument("--train-rows", type=int, default=200_000)
    parser.add_argument(
        "--rounds", type=int, default=5, help="epochs per variant, first is warm-up"
    )
    parser.add_argument(
        "--sim-impressions",
        type=int,
        default=SimulatorConfig.num_impressions,
        help="default: the simulator's default data (widedeep simulate)",
    )
    parser.add_argument(
        "--process-rounds", type=int, default=3, help="group user: fresh processes per variant"
    )
    parser.add_argument("--sim-batch-size", type=int, default=512)
    parser.add_argument("--workdir", default=None, help="default: a temporary directory")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    groups = [g for g in args.groups.split(",") if g]
    unknown = sorted(set(groups) - {"user", "standard", "small", "simulated", "executions"})
    if unknown:
        parser.error(f"unknown groups {unknown}")
    keras.utils.set_random_seed(args.seed)
    results: dict[str, Any] = {
        "setup": {
            "batch_size": BATCH_SIZE,
            "hidden_units": list(HIDDEN_UNITS),
            "categorical": f"{NUM_CATEGORICAL} x vocabulary {VOCABULARY_SIZE}, zipf({ZIPF_EXPONENT})",
            "crosses": f"{len(CROSSED_PAIRS)} pairwise, {STANDARD_CROSS_BUCKETS} buckets, wide only",
            "numeric": NUM_NUMERIC,
            "embedding_dim": EMBEDDING_DIM,
            "rounds": args.rounds,
            "warmup_rounds": 1,
            "tensorflow": tf.__version__,
            "keras": keras.__version__,
            "machine": f"{platform.machine()}, {os.cpu_count()} cpus, load {os.getloadavg()[0]:.1f}",
        },
        "targets": TARGETS,
        "tf_keras_wide_deep_model": tf_keras_status(),
    }
    if "user" in groups:
        results["user"] = run_user(args.train_rows, args.process_rounds)
        results["headline"] = results["user"].get("vs_peer", {}).get("ours_user_fit")
    with tempfile.TemporaryDirectory(prefix="widedeep-throughput-") as tmp:
        workdir = args.workdir or tmp
        if {"standard", "small", "executions"} & set(groups):
            data_dir = os.path.join(workdir, "standard")
            start = time.perf_counter()
            _, columns = write_standard_dataset(data_dir, args.train_rows, args.seed)
            results["setup"]["write_seconds"] = round(time.perf_counter() - start, 1)
            if "standard" in groups:
                results["standard"] = run_standard(data_dir, columns, args.rounds)
            if "small" in groups:
                results["small_tables"] = run_small(data_dir, columns, args.rounds)
            if "executions" in groups:
                results["executions"] = run_executions(data_dir, args.rounds)
        if "simulated" in groups:
            results["simulated"] = run_simulated(
                workdir, args.sim_impressions, args.sim_batch_size, args.rounds, args.seed
            )
    results["setup"]["load_at_end"] = round(os.getloadavg()[0], 1)
    print(json.dumps(results, indent=2))
    return results


if __name__ == "__main__":
    main()
