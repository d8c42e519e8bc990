"""Reading a dataset directory (`widedeep.data.dataset_format`): validation and whole columns.

`load_dataset_dir` loads and validates the schema and meta, `check_columns` checks
a split's records against a schema, and `read_columns` / `column_batches` read
columns in write order. The record parser and the interleaved read of the shards
are shared with the training pipeline (`widedeep.data.pipeline`).
"""

from __future__ import annotations

import copy
import functools
import json
import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import tensorflow as tf

from widedeep.data.dataset_format import (
    BYTES,
    DEFAULT_ROWS_PER_RECORD,
    FLOAT,
    INT64,
    LENGTH_SUFFIX,
    META_FILE,
    READABLE_FORMATS,
    SCHEMA_FILE,
    DatasetError,
    expected_columns,
)
from widedeep.data.tables import Lookup, LookupGather, load_tables, lookups_of
from widedeep.schema import (
    MISSING_INT,
    CategoricalFeature,
    NumericFeature,
    Schema,
    SchemaError,
)

__all__ = [
    "check_columns",
    "column_batches",
    "compiled_parser",
    "interleaved_records",
    "load_dataset_dir",
    "read_columns",
    "split_files",
]


def load_dataset_dir(data_dir: str | os.PathLike) -> tuple[Schema, dict[str, Any]]:
    """Loads and validates a dataset directory.

    The two files are read and validated once per process while they stay the same
    files (inode, size and modification time): one command asks for the directory
    many times (the pipeline, the column reader, calibration, evaluation). Every call
    checks that the shard files exist and returns its own copies, which a caller may
    change.

    Args:
        data_dir: the dataset directory.

    Returns:
        `(schema, meta)`.

    Raises:
        DatasetError: naming the directory or file that is missing or malformed.
    """
    data_dir = os.fspath(data_dir)
    if not os.path.isdir(data_dir):
        raise DatasetError(f"dataset: no such directory: {data_dir}")
    paths = (os.path.join(data_dir, SCHEMA_FILE), os.path.join(data_dir, META_FILE))
    for path in paths:
        if not os.path.isfile(path):
            raise DatasetError(
                f"dataset {data_dir}: no {os.path.basename(path)} (not a dataset directory, or "
                "its writer did not finish): missing file {path}"
            )
    stats = tuple((s.st_ino, s.st_size, s.st_mtime_ns) for s in map(os.stat, paths))
    schema, meta = _load_dataset_dir(data_dir, stats)
    for split, info in meta["splits"].items():  # shards can go while meta.json stays
        for rel in info["files"]:
            if not os.path.isfile(os.path.join(data_dir, rel)):
                raise DatasetError(
                    f"dataset {data_dir}: split '{split}': missing shard file {os.path.join(data_dir, rel)}"
                )
    return copy.deepcopy(schema), copy.deepcopy(meta)


@functools.lru_cache(maxsize=8)
def _load_dataset_dir(data_dir: str, stats: tuple) -> tuple[Schema, dict[str, Any]]:
    """`load_dataset_dir`'s reading and validation; `stats` keys the cache."""
    schema_path = os.path.join(data_dir, SCHEMA_FILE)
    meta_path = os.path.join(data_dir, META_FILE)
    try:
        schema = Schema.load(schema_path)
    except SchemaError as e:
        raise DatasetError(f"dataset {data_dir}: invalid schema: {e}") from None
    try:
        with open(meta_path) as f:
            meta = json.load(f)
    except (OSError, json.JSONDecodeError) as e:
        raise DatasetError(f"dataset {data_dir}: cannot read {meta_path}: {e}") from None
    if isinstance(meta, dict) and meta.get("format") not in READABLE_FORMATS:
        raise DatasetError(
            f"dataset {data_dir}: {meta_path} has format {meta.get('format')!r}, this widedeep "
            f"reads {' and '.join(map(repr, READABLE_FORMATS))}: the directory was written by another version; write it again "
            "(widedeep simulate / prepare)"
        )
    splits = meta.get("splits") if isinstance(meta, dict) else None
    if not isinstance(splits, dict) or not splits:
        raise DatasetError(f"dataset {data_dir}: {meta_path} has no 'splits' object")
    for split, info in splits.items():
        if not isinstance(info, dict) or not isinstance(info.get("files"), list):
            raise DatasetError(
                f"dataset {data_dir}: {meta_path}: split '{split}' has no 'files' list"
            )
        examples = info.get("examples")
        if not isinstance(examples, int) or isinstance(examples, bool) or examples < 0:
            raise DatasetError(
                f"dataset {data_dir}: {meta_path}: split '{split}' has no 'examples' count "
                f"(a non-negative integer). Received: examples={examples!r}"
            )
    tables = meta.get("tables", {})
    try:
        lookups = lookups_of(meta)
    except (TypeError, ValueError) as e:
        raise DatasetError(f"dataset {data_dir}: {meta_path}: invalid 'lookups': {e}") from None
    for name, lookup in lookups.items():
        for table, column in ((lookup.table, lookup.column), (lookup.events, "row")):
            if table is not None and column not in tables.get(table, {}).get("columns", {}):
                raise DatasetError(
                    f"dataset {data_dir}: {meta_path}: column '{name}' looks up "
                    f"{table}.{column}, which is not among its tables"
                )
    return schema, meta


def split_files(data_dir: str, meta: dict[str, Any], split: str) -> list[str]:
    """The shard paths of `split`, in file order (`meta` from `load_dataset_dir`).

    Raises:
        DatasetError: naming the splits there are, if `split` is not one of them.
    """
    splits = meta["splits"]
    if split not in splits:
        raise DatasetError(f"dataset {data_dir}: no split '{split}'; it has {sorted(splits)}")
    return [os.path.join(data_dir, rel) for rel in splits[split]["files"]]


def _first_example(data_dir: str, split: str, files: list[str]) -> tuple[str, tf.train.Example]:
    for path in files:
        for record in tf.data.TFRecordDataset(path).take(1):
            return path, tf.train.Example.FromString(record.numpy())
    raise DatasetError(f"dataset {data_dir}: split '{split}' has no records")


def _stored_kinds(example: tf.train.Example) -> dict[str, str]:
    """The columns of a record and their kinds (sequence lengths are not columns)."""
    return {
        name: {"int64_list": INT64, "float_list": FLOAT, "bytes_list": BYTES}.get(
            feature.WhichOneof("kind"), "empty"
        )
        for name, feature in example.features.feature.items()
        if not name.endswith(LENGTH_SUFFIX)
    }


def check_columns(data_dir: str | os.PathLike, split: str, schema: Schema | None = None) -> None:
    """Checks that the records of `split` carry every column `schema` needs.

    Inspects the first record of the split: every raw input of
    `schema.input_signature()`, the label, the feedback column and the group key
    must be present with the right type.

    Args:
        data_dir: the dataset directory.
        split: the split to check, e.g. `"train"`.
        schema: the schema to check against; defaults to the directory's own.

    Raises:
        DatasetError: naming every absent or mistyped column and the file inspected.
    """
    data_dir = os.fspath(data_dir)
    dir_schema, meta = load_dataset_dir(data_dir)
    schema = schema or dir_schema
    files = split_files(data_dir, meta, split)
    path, example = _first_example(data_dir, split, files)
    stored = _stored_kinds(example)
    expected = expected_columns(schema)
    lookups = lookups_of(meta)
    tables = meta.get("tables", {})
    wrong_lookups = []
    for name, lookup in lookups.items():
        if name in expected:
            kind, scalar = expected.pop(name)
            found = tables[lookup.table]["columns"][lookup.column]
            if found != kind or scalar == lookup.is_sequence:
                wrong_lookups.append(f"{name} (expected {kind}, looks up {found})")
        expected.update({source: (INT64, True) for source in lookup.sources})
    missing = [name for name in expected if name not in stored]
    wrong = wrong_lookups + [
        f"{name} (expected {kind}, found {stored[name]})"
        for name, (kind, _) in expected.items()
        if name in stored and stored[name] not in (kind, "empty")
    ]
    if missing or wrong:
        problems = []
        if missing:
            problems.append(f"missing columns {missing}")
        if wrong:
            problems.append(f"mistyped columns {wrong}")
        raise DatasetError(
            f"dataset {data_dir}: split '{split}' does not match the schema: {'; '.join(problems)} "
            f"(inspected the first record of {path}; it has {sorted(stored)})"
        )


def _tf_dtype(kind: str) -> tf.DType:
    return {INT64: tf.int64, FLOAT: tf.float32, BYTES: tf.string}[kind]


def _missing_value(feature: CategoricalFeature) -> int | bytes:
    return feature.missing_value.encode() if feature.dtype == "string" else MISSING_INT


def _parse_spec(
    schema: Schema,
    names: Sequence[str],
    stored: Mapping[str, str] | None = None,
    lookups: Mapping[str, Lookup] | None = None,
):
    """`(parse_example spec, {sequence input: (missing value, max_length)})` for `names`.

    A lookup column adds its record columns (row, or end and count) to the spec.
    """
    spec: dict[str, Any] = {}
    lookups = lookups or {}
    padded: dict[str, tuple[Any, int]] = {}
    scalars = schema.features
    sequence_inputs = {
        s.input_name(item): (schema.feature(item), s.max_length)
        for s in schema.sequences
        for item in s.item_features
    }

    def ragged(dtype: tf.DType) -> tf.io.RaggedFeature:
        return tf.io.RaggedFeature(dtype=dtype, row_splits_dtype=tf.int64)

    for name in names:
        if name in lookups:
            for source in lookups[name].sources:
                spec[source] = ragged(tf.int64)
            if name in sequence_inputs:
                feature, length = sequence_inputs[name]
                padded[name] = (_missing_value(feature), length)
        elif name in sequence_inputs:
            feature, length = sequence_inputs[name]
            spec[name] = ragged(tf.string if feature.dtype == "string" else tf.int64)
            spec[name + LENGTH_SUFFIX] = ragged(tf.int64)
            padded[name] = (_missing_value(feature), length)
        elif name in scalars:
            feature = scalars[name]
            if isinstance(feature, NumericFeature):
                spec[name] = ragged(tf.float32)
            else:
                spec[name] = ragged(tf.string if feature.dtype == "string" else tf.int64)
        elif name in (schema.label, schema.feedback, schema.group_key):
            spec[name] = ragged(tf.int64)
        elif stored is not None and name in stored and stored[name] != "empty":
            spec[name] = ragged(_tf_dtype(stored[name]))
        else:
            raise DatasetError(f"column '{name}' is not in the schema nor in the records")
    return spec, padded


def _parser(
    schema: Schema,
    names: Sequence[str],
    stored: Mapping[str, str] | None = None,
    lookups: Mapping[str, Lookup] | None = None,
    tables: Mapping[str, Mapping[str, np.ndarray]] | None = None,
):
    """A function from a vector of serialised records to `{column: [rows, ...]}` tensors.

    Rows come in record order; sequences are right-padded with the missing value
    (and truncated) to `[rows, max_length]`. Lookup columns are read from `tables`
    (`widedeep.data.tables.load_tables`).
    """
    lookups = {name: lookups[name] for name in names if name in (lookups or {})}
    spec, padded = _parse_spec(schema, names, stored, lookups)
    record_names = [n for n in names if n not in lookups]
    record_names += [s for n in names if n in lookups for s in lookups[n].sources]
    record_names = list(dict.fromkeys(record_names))
    gather = LookupGather(lookups, tables or {}, padded)

    def parse(serialized: tf.Tensor) -> dict[str, tf.Tensor]:
        parsed = tf.io.parse_example(serialized, spec)
        out = {}
        # Every record holds every column for all of its rows (the writer guarantees it);
        # a record that does not (written by other code, or damaged) must not shift rows
        # between columns, so the row counts are checked against the first column's.
        first = record_names[0]
        rows = tf.size(parsed[first + LENGTH_SUFFIX if first in padded else first].flat_values)
        for name in record_names:
            values = parsed[name].flat_values
            count = values
            if name in padded:
                missing, length = padded[name]
                lengths = parsed[name + LENGTH_SUFFIX].flat_values
                tf.debugging.assert_equal(
                    tf.reduce_sum(lengths),
                    tf.size(values, out_type=lengths.dtype),
                    message=f"dataset records: column '{name}' has a different number of "
                    f"items than its '{name}{LENGTH_SUFFIX}' counts",
                )
                count = lengths
                values = tf.RaggedTensor.from_row_lengths(values, lengths, validate=False)
                values = values.to_tensor(default_value=missing, shape=[None, length])
            tf.debugging.assert_equal(
                tf.size(count),
                rows,
                message=f"dataset records: column '{name}' does not have one value per row "
                f"(compared with column '{first}'); the records are damaged or were not written "
                "by widedeep.data.writer.DatasetWriter",
            )
            out[name] = values
        out.update(gather(out))
        return {name: out[name] for name in names}

    return parse


_COMPILED_PARSERS: dict[tuple[Any, ...], tuple[Schema, Any]] = {}


def _dir_parser(
    data_dir: str,
    meta: Mapping[str, Any],
    schema: Schema,
    names: Sequence[str],
    stored: Mapping[str, str] | None = None,
):
    """`_parser` for the records of `data_dir`, its lookup columns read from its tables."""
    lookups = {n: v for n, v in lookups_of(meta).items() if n in names}
    tables = load_tables(data_dir, meta) if lookups else {}
    return _parser(schema, names, stored, lookups, tables)


def compiled_parser(
    data_dir: str, meta: Mapping[str, Any], schema: Schema, names: tuple[str, ...]
) -> Any:
    """`_dir_parser` as one `tf.function`, traced once per `Schema` object, directory and columns.

    `Dataset.map` traces the Python function it is given every time; the parser of
    a real schema is a few thousand graph operations (seconds), and `widedeep train`
    builds one pipeline per epoch. Mapping a traced `tf.function` instead only adds
    a call to it (and its tables are loaded once). The cache holds the schema
    itself, so its key (the object's id) cannot be reused by another schema while
    the entry lives; the key has the time `meta.json` was written, so a directory
    written again gets a new parser.
    """
    meta_time = os.stat(os.path.join(data_dir, META_FILE)).st_mtime_ns
    key = (id(schema), names, os.path.realpath(data_dir), meta_time)
    cached = _COMPILED_PARSERS.get(key)
    if cached is not None and cached[0] is schema:
        return cached[1]
    parse = tf.function(
        _dir_parser(data_dir, meta, schema, list(names)),
        input_signature=[tf.TensorSpec([None], tf.string)],
    )
    if len(_COMPILED_PARSERS) >= 16:
        _COMPILED_PARSERS.pop(next(iter(_COMPILED_PARSERS)))
    _COMPILED_PARSERS[key] = (schema, parse)
    return parse


def interleaved_records(
    files: list[str],
    shuffle: bool,
    seed: int | None,
    parallel: int | None,
    deterministic: bool,
    reshuffle: bool = True,
):
    """Records of `files` interleaved one at a time, which restores write order when not shuffled.

    `parallel=None` interleaves in the calling thread: on a few cores that costs about half
    the CPU per record of a parallel interleave, whose per-record hand-offs between threads
    dominate for small local records.
    """
    file_ds = tf.data.Dataset.from_tensor_slices(files)
    if shuffle:
        file_ds = file_ds.shuffle(len(files), seed=seed, reshuffle_each_iteration=reshuffle)
    return file_ds.interleave(
        tf.data.TFRecordDataset,
        cycle_length=len(files),
        block_length=1,
        num_parallel_calls=parallel,
        deterministic=deterministic if parallel is not None else None,
    )


def read_columns(
    data_dir: str | os.PathLike, split: str, columns: Sequence[str]
) -> dict[str, np.ndarray]:
    """Reads whole columns of a split, in the order `make_dataset(..., shuffle=False)` yields rows.

    Schema inputs read as `make_dataset` gives them (sequences padded to
    `[N, max_length]`, defaults for missing scalars); other columns (label,
    feedback, group key, extras such as `true_probability`) must be scalars.
    Strings come back as `bytes` objects.

    Args:
        data_dir: the dataset directory.
        split: e.g. `"test"`.
        columns: the column names.

    Returns:
        `{name: np.ndarray}` with one entry (row) per record.

    Raises:
        DatasetError: naming the columns absent from the records.
    """
    data_dir = os.fspath(data_dir)
    schema, meta = load_dataset_dir(data_dir)
    split_files(data_dir, meta, split)  # names a missing split
    columns = list(dict.fromkeys(columns))
    if not meta["splits"][split].get("examples", 1):
        lookups = lookups_of(meta)
        known = [c for c in columns if c in expected_columns(schema) and c not in lookups]
        spec, padded = _parse_spec(schema, known)
        empty: dict[str, np.ndarray] = {}
        for name in columns:
            if name in lookups:
                lookup = lookups[name]
                kind = meta["tables"][lookup.table]["columns"][lookup.column]
                dtype = object if kind == BYTES else _tf_dtype(kind).as_numpy_dtype
                shape = schema.input_signature()[name][0] if lookup.is_sequence else ()
                empty[name] = np.zeros((0, *shape), dtype=dtype)
            elif name not in spec:
                empty[name] = np.zeros(0)
            else:
                dtype = spec[name].dtype.as_numpy_dtype
                shape = (0, padded[name][1]) if name in padded else (0,)
                empty[name] = np.zeros(shape, dtype=object if dtype is object else dtype)
        return empty
    chunks: dict[str, list[np.ndarray]] = {c: [] for c in columns}
    for batch in column_batches(data_dir, split, columns):
        for name in columns:
            chunks[name].append(batch[name].numpy())
    return {name: np.concatenate(parts) for name, parts in chunks.items()}


def column_batches(
    data_dir: str | os.PathLike, split: str, columns: Sequence[str], rows: int = 8192
) -> tf.data.Dataset:
    """Streams columns of a non-empty split as `{name: [about rows, ...]}` groups, in write order.

    The rows come as `read_columns` returns them (sequences padded to
    `[n, max_length]`, strings as `tf.string`), a group of whole records (about
    `rows` rows) at a time, so a split of any size is read in bounded memory.

    Args:
        data_dir: the dataset directory.
        split: e.g. `"test"`.
        columns: the column names.
        rows: about how many rows each group holds (rounded to whole records).

    Returns:
        A `tf.data.Dataset` of `{name: tf.Tensor}` groups.

    Raises:
        DatasetError: naming the columns absent from the records, or if the split is empty.
    """
    data_dir = os.fspath(data_dir)
    schema, meta = load_dataset_dir(data_dir)
    files = split_files(data_dir, meta, split)
    columns = list(dict.fromkeys(columns))
    path, example = _first_example(data_dir, split, files)
    stored = _stored_kinds(example)
    lookups = lookups_of(meta)
    absent = [
        c
        for c in columns
        if not (c in stored or (c in lookups and set(lookups[c].sources) <= set(stored)))
    ]
    if absent:
        raise DatasetError(
            f"dataset {data_dir}: split '{split}': no columns {absent} in the records "
            f"(first record of {path} has {sorted(stored)})"
        )
    parse = _dir_parser(data_dir, meta, schema, columns, stored)
    group = max(1, rows // int(meta.get("rows_per_record", DEFAULT_ROWS_PER_RECORD)))
    ds = interleaved_records(files, False, None, tf.data.AUTOTUNE, True).batch(group)
    ds = ds.map(parse, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return ds.prefetch(2)
