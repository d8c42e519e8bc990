"""One timed `model.fit` of a fixed workload in this process, as a user's script runs it; prints JSON.

The user's path (issue 31): build the model from a schema at the builders' defaults, compile it
with two optimizers, `fit` an in-memory `tf.data.Dataset` (`from_tensor_slices` -> `batch` ->
`prefetch`) for `--epochs` epochs. The rate is the median examples/s of epochs 2 to the last (the
first traces and compiles); each epoch is timed from `on_epoch_begin` to `on_epoch_end`.

The script uses only widedeep's public API of the oldest tree it is meant to time
(`Schema.from_json`, the feature classes, `build_wide_deep`, `build_dfn`, `WideDeepModel.compile`,
`widedeep.optimizers`), so `benchmarks/regression_guard.py` runs this one file under two trees
(`PYTHONPATH` pointing to each). Variants (`--variant`):

* `wide_deep`: the standard Wide & Deep workload (`standard_schema`, `standard_columns`: 10
  categorical fields of 10^4 Zipf ids, wide one-hots and 16-d embeddings, 3 crosses hashed into
  10^5 buckets in the model, 5 numerics, MLP 256-128-64, batch 1024) built by
  `build_wide_deep(schema, hidden_units=(256, 128, 64))` (its other arguments at their defaults,
  dropout included) and compiled with `Ftrl(0.05, l1_regularization_strength=1e-3)` /
  `Adagrad(0.05)`, the rest of `compile` at its defaults.
* `peer`: the fastest peer known, tf-keras' `WideDeepModel` with the legacy fused `Ftrl` /
  `Adagrad` on the same rows, fed as its users feed it (ids pre-offset into one linear and one
  embedding table, crosses precomputed, numerics standardised; `peer_arrays`).
* `mlp_floor`: the MLP 256-128-64-1 alone (Keras `Dense` layers, stock Adagrad, no dropout) on
  dense inputs of the deep input's width (10 * 16 + 5): the compute floor of the workload.
* `user_pipeline` / `peer_pipeline` / `mlp_pipeline`: no model; the pipeline of the `wide_deep`
  variant (16 columns and the label) / of the peer (3 arrays and the label) / of the MLP floor
  (one dense array and the label) iterated to its end inside a `tf.function`, as Keras' loop
  pulls it. No training path fed by that pipeline can run faster than it, and on a machine of
  few cores its CPU time is taken from the model's: these are the floors that bound the
  `wide_deep` variant.
* `dfn` / `dfn_wide_deep`: `build_dfn(schema)` / `build_wide_deep(schema)` at their defaults,
  `compile()` at its defaults, on the training rows of a dataset directory (`--data`, e.g. the
  simulator's default data), batch 512, read into memory with `load_columns`.

`--input arrays` (wide_deep) passes the arrays to `fit(x, y, batch_size=1024)` instead (Keras
slices whole batches; the documented in-memory one-liner). `--steps-per-execution N` /
`--jit-compile` pass those to `compile` (diagnostics: they are not
the user's defaults).

Usage:
    python benchmarks/fit_workload.py --variant wide_deep [--rows 200000] [--epochs 4]
    python benchmarks/fit_workload.py --variant user_pipeline
    python benchmarks/fit_workload.py --variant dfn --data DIR
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Any

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

BATCH_SIZE = 1024
SIMULATED_BATCH_SIZE = 512
HIDDEN_UNITS = (256, 128, 64)
NUM_CATEGORICAL = 10
VOCABULARY_SIZE = 10**4
NUM_NUMERIC = 5
EMBEDDING_DIM = 16
CROSSED_PAIRS = ((0, 1), (2, 3), (4, 5))
STANDARD_CROSS_BUCKETS = 10**5
ZIPF_EXPONENT = 1.2
WIDE_LEARNING_RATE = 0.05
WIDE_L1 = 1e-3
DEEP_LEARNING_RATE = 0.05
PIPELINES = ("user_pipeline", "peer_pipeline", "mlp_pipeline")
VARIANTS = ("wide_deep", "peer", "mlp_floor", *PIPELINES, "dfn", "dfn_wide_deep")


# ------------------------------------------------------------------------------------- data
def categorical_name(i: int) -> str:
    return f"c{i}"


def numeric_name(i: int) -> str:
    return f"n{i}"


def standard_schema(cross_buckets: int = STANDARD_CROSS_BUCKETS) -> Any:
    """The standard workload's `widedeep.Schema`; `cross_buckets` sizes the three hashed crosses."""
    from widedeep import CategoricalFeature, CrossFeature, NumericFeature, Schema

    return Schema(
        categorical=[
            CategoricalFeature(
                categorical_name(i),
                vocabulary=list(range(VOCABULARY_SIZE)),
                wide=True,
                embedding_dim=EMBEDDING_DIM,
            )
            for i in range(NUM_CATEGORICAL)
        ],
        numeric=[
            NumericFeature(numeric_name(i), mean=0.0, std=1.0, wide=False, deep=True)
            for i in range(NUM_NUMERIC)
        ],
        crosses=[
            CrossFeature(
                f"{categorical_name(a)}_x_{categorical_name(b)}",
                [categorical_name(a), categorical_name(b)],
                hash_buckets=cross_buckets,
                wide=True,
                embedding_dim=None,
            )
            for a, b in CROSSED_PAIRS
        ],
        label="label",
        feedback="feedback",
        group_key="user_id",
    )


def standard_columns(num_rows: int, seed: int = 0) -> dict[str, np.ndarray]:
    """Synthetic rows: Zipf ids scattered over each vocabulary, normal numerics, a planted label."""
    rng = np.random.default_rng(seed)
    columns: dict[str, np.ndarray] = {}
    logit = np.full(num_rows, -1.5)
    for i in range(NUM_CATEGORICAL):
        ranks = rng.zipf(ZIPF_EXPONENT, size=num_rows) - 1
        ids = rng.permutation(VOCABULARY_SIZE)[ranks % VOCABULARY_SIZE].astype(np.int64)
        columns[categorical_name(i)] = ids
        if i < 3:
            logit += rng.normal(0.0, 0.7, size=VOCABULARY_SIZE)[ids]
    for i in range(NUM_NUMERIC):
        values = rng.normal(size=num_rows).astype(np.float32)
        columns[numeric_name(i)] = values
        logit += 0.2 * values
    label = (rng.random(num_rows) < 1.0 / (1.0 + np.exp(-logit))).astype(np.int64)
    columns["label"] = label
    columns["feedback"] = label  # FEEDBACK_TYPES: 0 unclick, 1 click
    columns["user_id"] = columns[categorical_name(0)]
    return columns


def model_inputs(schema: Any, columns: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {name: columns[name] for name in schema.input_signature()}


def labels(columns: dict[str, np.ndarray], label: str = "label") -> np.ndarray:
    return columns[label].astype(np.float32)[:, None]


def user_dataset(x: Any, y: np.ndarray, batch_size: int) -> tf.data.Dataset:
    """In-memory arrays through `tf.data` as a user's script feeds them."""
    return tf.data.Dataset.from_tensor_slices((x, y)).batch(batch_size).prefetch(tf.data.AUTOTUNE)


def peer_arrays(schema: Any, columns: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The workload as a tf-keras user feeds it: ids pre-offset into one table, crosses precomputed.

    `wide_ids` `[N, fields + crosses]`: every categorical id and every hashed cross, offset so that
    all of them index one linear table; `deep_ids` `[N, fields]`: the categorical ids offset into
    one embedding table; `numeric` `[N, numerics]`: the numerics, already standardised. No lookup,
    hashing or normalisation is left to the model.
    """
    categorical = [f for f in schema.categorical if f.wide or f.embedding_dim]
    ids = [columns[f.name].astype(np.int64) for f in categorical]
    sizes = [len(f.vocabulary) for f in categorical]
    deep = np.stack([i + sum(sizes[:k]) for k, i in enumerate(ids)], axis=1)
    wide = [deep]
    offset = sum(sizes)
    position = {f.name: k for k, f in enumerate(categorical)}
    for c in schema.crosses:
        a, b = (position[name] for name in c.features)
        wide.append(((ids[a] * sizes[b] + ids[b]) % c.hash_buckets + offset)[:, None])
        offset += c.hash_buckets
    numeric = np.stack(
        [(columns[f.name] - f.mean) / f.std for f in schema.numeric if f.deep], axis=1
    ).astype(np.float32)
    return {"wide_ids": np.concatenate(wide, axis=1), "deep_ids": deep, "numeric": numeric}


def deep_input_width(schema: Any) -> int:
    embeddings = sum(f.embedding_dim or 0 for f in [*schema.categorical, *schema.crosses])
    return embeddings + sum(1 for f in schema.numeric if f.deep)


COLUMNS_FILE = "columns.npz"
"""Training columns saved by `export_columns`, read by any tree (formats of dataset directories
change between trees; numpy arrays do not)."""


def export_columns(data_dir: str, out_dir: str) -> None:
    """Writes `data_dir`'s schema and training columns to `out_dir` for `load_columns`."""
    schema, columns = load_columns(data_dir)
    os.makedirs(out_dir, exist_ok=True)
    schema.save(os.path.join(out_dir, "schema.json"))
    np.savez(os.path.join(out_dir, COLUMNS_FILE), **columns)


def load_columns(data_dir: str, split: str = "train") -> tuple[Any, dict[str, np.ndarray]]:
    """A directory's schema and training columns: `COLUMNS_FILE` if present, else the split
    read from a dataset directory with this tree's reader."""
    from widedeep import Schema

    schema = Schema.load(os.path.join(data_dir, "schema.json"))
    if os.path.exists(os.path.join(data_dir, COLUMNS_FILE)):
        with np.load(os.path.join(data_dir, COLUMNS_FILE)) as saved:
            return schema, {name: saved[name] for name in saved.files}
    names = [*schema.input_signature(), schema.label]
    try:
        from widedeep.data.reader import read_columns
    except ImportError:  # trees before widedeep/data/reader.py
        from widedeep.data.records import read_columns
    return schema, read_columns(data_dir, split, names)


# ----------------------------------------------------------------------------------- models
def build_peer(arrays: dict[str, np.ndarray]) -> Any:
    """tf-keras `WideDeepModel` with the legacy (fused-kernel) Ftrl / Adagrad over `peer_arrays`."""
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
    hidden = tfk.layers.Concatenate()([embedded, inputs["numeric"]])
    for units in HIDDEN_UNITS:
        hidden = tfk.layers.Dense(units, activation="relu")(hidden)
    dnn_logit = tfk.layers.Dense(1)(hidden)
    model = tfk.experimental.WideDeepModel(
        tfk.Model(inputs, linear_logit), tfk.Model(inputs, dnn_logit), activation="sigmoid"
    )
    model.compile(
        optimizer=[
            tfk.optimizers.legacy.Ftrl(
                learning_rate=WIDE_LEARNING_RATE, l1_regularization_strength=WIDE_L1
            ),
            tfk.optimizers.legacy.Adagrad(learning_rate=DEEP_LEARNING_RATE),
        ],
        loss="binary_crossentropy",
    )
    return model


def build_mlp_floor(width: int) -> keras.Model:
    inputs = keras.Input((width,))
    hidden = inputs
    for units in HIDDEN_UNITS:
        hidden = keras.layers.Dense(units, activation="relu")(hidden)
    model = keras.Model(inputs, keras.layers.Dense(1, activation="sigmoid")(hidden))
    model.compile(
        optimizer=keras.optimizers.Adagrad(learning_rate=DEEP_LEARNING_RATE),
        loss="binary_crossentropy",
    )
    return model


def mlp_floor_inputs(schema: Any, rows: int, seed: int) -> np.ndarray:
    """The MLP floor's dense inputs, `[rows, deep input width]`."""
    width = deep_input_width(schema)
    return np.random.default_rng(seed).normal(size=(rows, width)).astype("float32")


def compile_settings(args: argparse.Namespace) -> dict[str, Any]:
    """The `compile` arguments given on the command line; none by default (the user's defaults)."""
    settings: dict[str, Any] = {}
    if args.steps_per_execution is not None:
        settings["steps_per_execution"] = args.steps_per_execution
    if args.jit_compile:
        settings["jit_compile"] = True
    return settings


# ---------------------------------------------------------------------------------- timing
def epoch_clock(base: type) -> Any:
    """A callback of `base` (Keras' or tf-keras' `Callback`) recording each epoch's wall time."""

    class EpochClock(base):
        def __init__(self) -> None:
            super().__init__()
            self.seconds: list[float] = []

            self.cpu_seconds: list[float] = []

        def on_epoch_begin(self, epoch: int, logs: Any = None) -> None:
            self._start = time.perf_counter()
            self._cpu = time.process_time()

        def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
            self.seconds.append(time.perf_counter() - self._start)
            self.cpu_seconds.append(time.process_time() - self._cpu)

    return EpochClock()


def time_pipeline(dataset: tf.data.Dataset, epochs: int) -> tuple[list[float], list[float]]:
    """Wall and CPU seconds of each full pass over `dataset`, pulled inside a `tf.function`."""

    @tf.function
    def drain(data: tf.data.Dataset) -> tf.Tensor:
        batches = tf.constant(0)
        for _ in data:
            batches += 1
        return batches

    seconds, cpu_seconds = [], []
    for _ in range(epochs):
        start, cpu = time.perf_counter(), time.process_time()
        drain(dataset)
        seconds.append(time.perf_counter() - start)
        cpu_seconds.append(time.process_time() - cpu)
    return seconds, cpu_seconds


def run(args: argparse.Namespace) -> dict[str, Any]:
    keras.utils.set_random_seed(args.seed)
    if args.variant in ("dfn", "dfn_wide_deep"):
        if not args.data:
            raise SystemExit(f"--variant {args.variant} needs --data (a dataset directory)")
        from widedeep import build_dfn, build_wide_deep

        schema, columns = load_columns(args.data)
        batch_size = SIMULATED_BATCH_SIZE
        model = (build_dfn if args.variant == "dfn" else build_wide_deep)(schema)
        model.compile(**compile_settings(args))
        dataset = user_dataset(
            model_inputs(schema, columns), labels(columns, schema.label), batch_size
        )
        clock = epoch_clock(keras.callbacks.Callback)
    else:
        schema = standard_schema()
        columns = standard_columns(args.rows, args.seed)
        y = labels(columns)
        batch_size = BATCH_SIZE
        if args.variant == "wide_deep":
            import widedeep.optimizers
            from widedeep import build_wide_deep

            model = build_wide_deep(schema, hidden_units=HIDDEN_UNITS)
            model.compile(
                wide_optimizer=widedeep.optimizers.Ftrl(
                    WIDE_LEARNING_RATE, l1_regularization_strength=WIDE_L1
                ),
                deep_optimizer=widedeep.optimizers.Adagrad(DEEP_LEARNING_RATE),
                **compile_settings(args),
            )
            x = model_inputs(schema, columns)
            if args.input == "arrays":
                dataset = {"x": x, "y": y, "batch_size": batch_size}
            else:
                dataset = user_dataset(x, y, batch_size)
            clock = epoch_clock(keras.callbacks.Callback)
        elif args.variant in PIPELINES:
            if args.variant == "user_pipeline":
                x = model_inputs(schema, columns)
            elif args.variant == "peer_pipeline":
                x = peer_arrays(schema, columns)
            else:
                x = mlp_floor_inputs(schema, args.rows, args.seed)
            dataset = user_dataset(x, y, batch_size)
        elif args.variant == "peer":
            import tf_keras as tfk

            arrays = peer_arrays(schema, columns)
            model = build_peer(arrays)
            dataset = user_dataset(arrays, y, batch_size)
            clock = epoch_clock(tfk.callbacks.Callback)
        else:
            model = build_mlp_floor(deep_input_width(schema))
            x = mlp_floor_inputs(schema, args.rows, args.seed)
            dataset = user_dataset(x, y, batch_size)
            clock = epoch_clock(keras.callbacks.Callback)
    rows = (
        args.rows
        if args.variant in ("mlp_floor", "mlp_pipeline")
        else len(next(iter(columns.values())))
    )
    if args.variant in PIPELINES:
        seconds, cpu_seconds = time_pipeline(dataset, args.epochs)
    else:
        fit_data = dataset if isinstance(dataset, dict) else {"x": dataset}
        model.fit(epochs=args.epochs, verbose=0, callbacks=[clock], **fit_data)
        seconds, cpu_seconds = clock.seconds, clock.cpu_seconds
    rates = [rows / s for s in seconds]
    timed = slice(1, None) if len(rates) > 1 else slice(None)
    batches = -(-rows // batch_size)
    return {
        "variant": args.variant,
        "rows": rows,
        "batch_size": batch_size,
        "examples_per_sec": round(float(np.median(rates[timed]))),
        "cpu_ms_per_batch": round(float(np.median(cpu_seconds[timed])) / batches * 1e3, 2),
        "epochs_examples_per_sec": [round(r) for r in rates],
        "input": args.input if args.variant == "wide_deep" else "dataset",
        "compile": compile_settings(args),
        "widedeep": sys.modules["widedeep"].__file__ if "widedeep" in sys.modules else None,
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variant", choices=VARIANTS, default="wide_deep")
    parser.add_argument("--rows", type=int, default=200_000, help="rows of the standard workload")
    parser.add_argument("--epochs", type=int, default=4, help="epoch 1 is warm-up")
    parser.add_argument("--data", default=None, help="dataset directory (dfn, dfn_wide_deep)")
    parser.add_argument(
        "--input",
        choices=("dataset", "arrays"),
        default="dataset",
        help="wide_deep: the user's tf.data pipeline, or the arrays passed to fit (batch_size)",
    )
    parser.add_argument("--steps-per-execution", type=int, default=None)
    parser.add_argument("--jit-compile", action="store_true")
    parser.add_argument("--seed", type=int, default=0)
    result = run(parser.parse_args(argv))
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
