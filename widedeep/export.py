"""A SavedModel for serving (`widedeep export`) and batch scoring (`widedeep predict`).

The exported SavedModel needs TensorFlow alone (no `widedeep`, no Keras code): the
preprocessing layers (vocabulary lookups, hashing, bucketing, crosses) are part of the
traced graph, so a request carries the raw features exactly as the dataset stores them.
It has two signatures:

* `serving_default`: one keyword argument per raw feature, named and typed as in
  `Schema.input_signature()` -- categorical `int64` or `string` `[B]`, numeric `float32`
  `[B]`, and each sequence input (`click_item_id`, ...) a fixed-length `[B, max_length]`
  tensor, most recent item first, right-padded with the missing value (`-1` for `int64`,
  `""` for `string`; an empty history is all padding). Values outside a vocabulary go
  to the out-of-vocabulary bucket, as in training. Returns `{"probability": [B]}`.
* `serve_examples`: `examples`, a `[B]` string tensor of serialized `tf.train.Example`s,
  one row each (the form TensorFlow Serving's Example-based clients send). A scalar
  categorical feature that an Example lacks reads as the missing value; a numeric
  feature is required; a sequence feature is the row's list of items, most recent
  first (any length: it is truncated or padded to `max_length`; absent means empty).
  Returns `{"probability": [B]}`.

Example:

```python
export_saved_model(keras.models.load_model("run/model.keras"), "serving/1")
serve = tf.saved_model.load("serving/1").signatures["serving_default"]
serve(**features)["probability"]
```
"""

from __future__ import annotations

import contextlib
import csv
import os
import sys
import time
from collections.abc import Mapping
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from widedeep.errors import UsageError, WidedeepError
from widedeep.safe_output import atomic_path, variables_bytes

SERVING_SIGNATURE = "serving_default"
EXAMPLES_SIGNATURE = "serve_examples"
PROBABILITY = "probability"
"""The output key of both signatures."""


class RequestError(WidedeepError, ValueError):
    """A request whose features do not match the model's inputs; the message names the feature."""


def serving_input_spec(model: keras.Model) -> dict[str, tf.TensorSpec]:
    """The raw feature inputs of a model built by this package, as `{name: tf.TensorSpec}`.

    Args:
        model: a model whose inputs are a dict of named `keras.Input`s.

    Returns:
        One spec per input, with a free batch axis: `[None]` for scalar features,
        `[None, max_length]` for sequence inputs.
    """
    inputs = model.input
    if not isinstance(inputs, dict):
        raise UsageError(
            f"the model's inputs must be a dict of named raw features. Received: {type(inputs)}"
        )
    return {
        name: tf.TensorSpec((None, *tensor.shape[1:]), tf.as_dtype(tensor.dtype), name=name)
        for name, tensor in inputs.items()
    }


def signature_input_spec(signature: Any) -> dict[str, tf.TensorSpec]:
    """The `{name: tf.TensorSpec}` keyword inputs of a loaded SavedModel signature."""
    return dict(signature.structured_input_signature[1])


def check_request(features: Mapping[str, Any], spec: Mapping[str, tf.TensorSpec]) -> int:
    """Checks raw features against a model's inputs before they reach TensorFlow.

    Args:
        features: `{name: array-like}`; keys the model does not use are ignored.
        spec: the model's inputs (`serving_input_spec` or `signature_input_spec`).

    Returns:
        The number of rows.

    Raises:
        RequestError: naming the first feature that is missing, of the wrong dtype,
            of the wrong shape (a sequence of the wrong length), or whose row count
            differs from the others'.

    Example:

    >>> check_request({"user_id": np.array([3, 4])}, {"user_id": tf.TensorSpec([None], tf.int64)})
    2
    """
    rows = None
    first = None
    for name, want in spec.items():
        if name not in features:
            raise RequestError(f"request: missing feature '{name}' ({_describe(want)})")
        value = np.asarray(features[name])
        if want.dtype == tf.string:
            typed = value.dtype.kind in "US" or (
                value.dtype.kind == "O"
                and (not value.size or isinstance(value.flat[0], (str, bytes)))
            )
        else:  # exactly the signature's dtype: a SavedModel casts nothing
            typed = value.dtype == want.dtype.as_numpy_dtype
        if not typed:
            raise RequestError(
                f"request: feature '{name}' must be {_describe(want)}; received dtype {value.dtype}"
            )
        if value.ndim != want.shape.rank or any(
            d is not None and d != got for d, got in zip(want.shape[1:], value.shape[1:])
        ):
            what = "sequence length" if want.shape.rank == 2 else "shape"
            raise RequestError(
                f"request: feature '{name}' has the wrong {what}: expected {_describe(want)}, "
                f"received shape {list(value.shape)}"
            )
        if rows is None:
            rows, first = value.shape[0], name
        elif value.shape[0] != rows:
            raise RequestError(
                f"request: feature '{name}' has {value.shape[0]} rows, '{first}' has {rows}"
            )
    return int(rows or 0)


def _describe(spec: tf.TensorSpec) -> str:
    shape = ["batch", *spec.shape[1:]]
    return f"{spec.dtype.name} of shape [{', '.join(map(str, shape))}]"


def _missing_value(dtype: tf.DType) -> Any:
    return b"" if dtype == tf.string else -1


def _example_parser(spec: Mapping[str, tf.TensorSpec]) -> Any:
    """A function from serialized one-row `tf.train.Example`s `[B]` to raw feature tensors."""
    features: dict[str, Any] = {}
    for name, s in spec.items():
        if s.shape.rank == 2:
            features[name] = tf.io.RaggedFeature(s.dtype, row_splits_dtype=tf.int64)
        elif s.dtype == tf.float32:
            features[name] = tf.io.FixedLenFeature([], s.dtype)
        else:
            features[name] = tf.io.FixedLenFeature(
                [], s.dtype, default_value=_missing_value(s.dtype)
            )

    def parse(examples: tf.Tensor) -> dict[str, tf.Tensor]:
        parsed = tf.io.parse_example(examples, features)
        for name, s in spec.items():
            if s.shape.rank == 2:
                parsed[name] = parsed[name].to_tensor(
                    default_value=_missing_value(s.dtype), shape=[None, s.shape[1]]
                )
        return parsed

    return parse


def export_saved_model(
    model: keras.Model, out: str | os.PathLike, *, overwrite: bool = False
) -> dict[str, tf.TensorSpec]:
    """Writes a SavedModel with the `serving_default` and `serve_examples` signatures.

    Args:
        model: a model built by this package (dict of raw inputs, probability `[B, 1]`).
        out: the SavedModel directory to create (TensorFlow Serving wants it under a
            numeric version directory, e.g. `models/ctr/1`).
        overwrite: replace an existing directory.

    The SavedModel is written beside `out` under a temporary name and renamed
    (`widedeep.safe_output.atomic_path`): `out` appears only complete, and an export that
    fails (a full disk raises `widedeep.safe_output.NoSpaceError`) leaves the previous one.

    Returns:
        The input spec of `serving_default`.

    Raises:
        FileExistsError: if `out` exists and `overwrite` is False.

    Example:

    ```python
    export_saved_model(keras.models.load_model("run/model.keras"), "serving/ctr/1")
    ```
    """
    out = os.fspath(out)
    if os.path.exists(out) and not overwrite:
        raise FileExistsError(f"export: {out} exists (pass overwrite=True to replace it)")
    spec = serving_input_spec(model)
    parse = _example_parser(spec)

    @tf.function(input_signature=[spec])
    def serve(features: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
        return {PROBABILITY: tf.reshape(model(features, training=False), [-1])}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="examples")])
    def serve_examples(examples: tf.Tensor) -> dict[str, tf.Tensor]:
        return serve(parse(examples))  # calls the traced model graph, no second trace

    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint(SERVING_SIGNATURE, serve)
    archive.add_endpoint(EXAMPLES_SIGNATURE, serve_examples)
    parent, created = os.path.dirname(os.path.abspath(out)), []
    while not os.path.exists(parent):
        created.append(parent)
        parent = os.path.dirname(parent)
    for folder in reversed(created):
        os.mkdir(folder)
    try:
        # The variables, plus the traced graphs (of the order of a megabyte).
        with atomic_path(out, lambda: variables_bytes(model.variables) + 2**20) as tmp:
            archive.write_out(tmp, verbose=False)
    except BaseException:
        for folder in created:  # the version directory's parents this call made
            with contextlib.suppress(OSError):
                os.rmdir(folder)
        raise
    return spec


# ------------------------------------------------------------------ batch scoring
def is_saved_model(path: str | os.PathLike) -> bool:
    """Whether `path` is a SavedModel directory."""
    return os.path.isfile(os.path.join(os.fspath(path), "saved_model.pb"))


def load_scorer(path: str | os.PathLike) -> tuple[Any, dict[str, tf.TensorSpec]]:
    """`(score, input_spec)` for a `.keras` file or an exported SavedModel directory.

    `score(features)` maps `{name: tf.Tensor}` raw features to probabilities `[B]`
    (a numpy array). Both kinds of model give the same numbers.

    Raises:
        FileNotFoundError: if `path` is neither a `.keras` file nor a SavedModel directory.
    """
    path = os.fspath(path)
    if is_saved_model(path):
        signature = tf.saved_model.load(path).signatures[SERVING_SIGNATURE]
        spec = signature_input_spec(signature)

        def score_saved_model(features: Mapping[str, tf.Tensor]) -> np.ndarray:
            return signature(**{k: features[k] for k in spec})[PROBABILITY].numpy()

        return score_saved_model, spec
    if os.path.isfile(path) and path.endswith(".keras"):
        from widedeep.models import load_model

        model = load_model(path)
        spec = serving_input_spec(model)
        call = tf.function(
            lambda features: tf.reshape(model(features, training=False), [-1]),
            input_signature=[spec],
        )

        def score_keras(features: Mapping[str, tf.Tensor]) -> np.ndarray:
            return call({k: features[k] for k in spec}).numpy()

        return score_keras, spec
    raise FileNotFoundError(
        f"predict: {path} is neither a .keras file nor a SavedModel directory (saved_model.pb)"
    )


class _CsvWriter:
    def __init__(self, path: str, columns: list[str]) -> None:
        self._file = open(path, "w", newline="")  # noqa: SIM115 (closed in close())
        self._writer = csv.writer(self._file)
        self._writer.writerow(columns)

    def write(self, batch: dict[str, np.ndarray]) -> None:
        values = [
            [v.decode() for v in column] if column.dtype == object else column.tolist()
            for column in batch.values()
        ]
        self._writer.writerows(zip(*values))

    def close(self) -> None:
        self._file.close()


class _ParquetWriter:
    def __init__(self, path: str, columns: list[str]) -> None:
        import pyarrow
        import pyarrow.parquet

        self._pa = pyarrow
        self._path = path
        self._columns = columns
        self._writer: Any = None
        self._parquet = pyarrow.parquet

    def write(self, batch: dict[str, np.ndarray]) -> None:
        table = self._pa.table(
            {k: (v.astype(str) if v.dtype == object else v) for k, v in batch.items()}
        )
        if self._writer is None:
            self._writer = self._parquet.ParquetWriter(self._path, table.schema)
        self._writer.write_table(table)

    def close(self) -> None:
        if self._writer is None:  # no rows: an empty file with the right columns
            empty = {c: self._pa.array([], self._pa.float32()) for c in self._columns}
            self._parquet.write_table(self._pa.table(empty), self._path)
        else:
            self._writer.close()


def _writer_type(path: str) -> type[_CsvWriter | _ParquetWriter]:
    if path.endswith(".parquet"):
        return _ParquetWriter
    if path.endswith(".csv"):
        return _CsvWriter
    raise UsageError(f"predict: --out must end in .csv or .parquet. Received: {path}")


def predict_to_file(
    model: str | os.PathLike,
    data_dir: str | os.PathLike,
    out: str | os.PathLike,
    *,
    split: str = "test",
    batch_size: int = 8192,
    progress: bool = False,
) -> dict[str, Any]:
    """Scores every row of a split and writes one output row per input row, in input order.

    The output has the split's group key (the user), its first target item feature
    (the item id) when the schema has one, and `probability`; CSV or Parquet by the
    extension of `out` (Parquet needs `pyarrow`). Rows are read, scored and written a
    group of about `batch_size` at a time.

    Args:
        model: a `.keras` file or a SavedModel directory written by `export_saved_model`.
        data_dir: the dataset directory.
        out: the `.csv` or `.parquet` file to write.
        split: the split to score.
        batch_size: about how many rows are scored at once.
        progress: print the rows done, every few seconds, on stderr.

    Returns:
        `{"rows": n, "out": out, "columns": [...], "seconds": s}`.

    Raises:
        RequestError: if the data lack a feature the model needs, or hold it with
            another dtype or sequence length (the message names the feature).

    Example:

    ```python
    predict_to_file("run/model.keras", "data/day2", "scores.csv", split="test")
    ```
    """
    from widedeep.data.reader import load_dataset_dir, read_split

    data_dir, out = os.fspath(data_dir), os.fspath(out)
    schema, meta = load_dataset_dir(data_dir)
    if split not in meta["splits"]:
        raise UsageError(
            f"predict: dataset {data_dir} has no split '{split}'; it has {sorted(meta['splits'])}"
        )
    keys = [schema.group_key] + schema.target_item_features[:1]
    keys = list(dict.fromkeys(keys))
    score, spec = load_scorer(model)
    writer_type = _writer_type(out)
    total = int(meta["splits"][split].get("examples", 0))
    known = set(schema.input_signature())
    missing = sorted(name for name in spec if name not in known)
    if missing:
        raise RequestError(
            f"predict: dataset {data_dir} lacks the features {missing} that the model needs"
        )
    columns = list(dict.fromkeys([*spec, *keys]))
    start = last = time.perf_counter()
    done = 0

    def needed() -> int:  # the bytes per row so far, for every row
        per_row = os.path.getsize(tmp) / done if done and os.path.exists(tmp) else 32
        return int(per_row * max(total, done))

    # Written under a temporary name and renamed once complete: a failed run leaves no
    # file that looks like predictions.
    with atomic_path(out, needed) as tmp:
        writer = writer_type(tmp, [*keys, PROBABILITY])
        try:
            for batch in read_split(data_dir, split, columns, group_rows=batch_size):
                if done == 0:
                    check_request({k: batch[k].numpy() for k in spec}, spec)
                probabilities = score(batch)
                writer.write({**{k: batch[k].numpy() for k in keys}, PROBABILITY: probabilities})
                done += len(probabilities)
                if progress and time.perf_counter() - last > 5:
                    last = time.perf_counter()
                    rate = done / (last - start)
                    print(f"predict: {done}/{total} rows ({rate:.0f} rows/s)", file=sys.stderr)
        finally:
            writer.close()
    seconds = time.perf_counter() - start
    if progress:
        print(f"predict: {done}/{total} rows in {seconds:.1f} s", file=sys.stderr)
    return {"rows": done, "out": out, "columns": [*keys, PROBABILITY], "seconds": seconds}
