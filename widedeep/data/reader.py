"""Reading a dataset directory (`widedeep.data.dataset_format`): checks and rows in order.

`load_dataset_dir` loads and validates the schema and meta, `check_columns` checks
a split's records against a schema and `check_tfrecord_file` a shard's framing.
`read_split` is the one ordered reader of a split (whole or some of its rows, in
write order); `read_columns` reads whole columns through it. The training pipeline
(`widedeep.data.pipeline`) reads in order with the same `ordered_groups`.
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
from widedeep.data.record_parser import Parser, compiled_parser, directory_parser
from widedeep.data.tables import lookups_of
from widedeep.errors import WidedeepError
from widedeep.schema import Schema, SchemaError

__all__ = [
    "DamagedFileError",
    "Rows",
    "check_columns",
    "check_rows",
    "check_tfrecord_file",
    "interleaved_records",
    "load_dataset_dir",
    "ordered_groups",
    "read_columns",
    "read_split",
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


def split_files(data_dir: str, meta: Mapping[str, Any], split: str) -> list[str]:
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


class DamagedFileError(WidedeepError, ValueError):
    """An input file that is truncated or otherwise not in its format; the message names it."""


def check_tfrecord_file(path: str | os.PathLike) -> None:
    """Checks that a TFRecord file is a whole sequence of records (catches truncated shards).

    Walks the record headers (an 8-byte length and a 4-byte checksum before each
    payload) without reading the payloads, so it costs one seek per record. A
    file cut short, or with a length that points past its end, is reported;
    a flipped byte inside a payload is caught later by TensorFlow's checksums.

    Args:
        path: the TFRecord file.

    Raises:
        DamagedFileError: one line naming the file and the byte offset of the damage.
    """
    path = os.fspath(path)
    size = os.path.getsize(path)
    offset = 0
    with open(path, "rb") as f:
        while offset < size:
            header = f.read(12)
            if len(header) < 12:
                raise DamagedFileError(
                    f"damaged shard {path}: truncated record header at byte {offset} "
                    f"(the file has {size} bytes); write the dataset again"
                )
            length = int.from_bytes(header[:8], "little")
            end = offset + 12 + length + 4
            if end > size:
                raise DamagedFileError(
                    f"damaged shard {path}: the record at byte {offset} needs {length} bytes but "
                    f"the file ends at byte {size} (truncated); write the dataset again"
                )
            f.seek(end)
            offset = end


# ------------------------------------------------------------------ reading rows in order
Rows = tuple[int, int] | np.ndarray
"""Rows of a split: a range `(start, stop)`, or a sorted 1-D array of distinct row numbers."""


def check_rows(rows: Rows | None, total: int, split: str) -> int:
    """Checks a choice of rows against a split of `total` rows; returns how many it keeps.

    Args:
        rows: a range `(start, stop)` with `0 <= start <= stop <= total`, a sorted 1-D
            integer array of distinct row numbers in `[0, total)`, or None for every row.
        total: the split's rows.
        split: its name, for the message.

    Returns:
        The number of rows chosen.

    Raises:
        ValueError: naming what is wrong with `rows`.
    """
    if rows is None:
        return total
    if isinstance(rows, np.ndarray):
        if not (
            rows.ndim == 1
            and np.issubdtype(rows.dtype, np.integer)
            and (not rows.size or (rows[0] >= 0 and rows[-1] < total))
            and bool(np.all(np.diff(rows) > 0))
        ):
            raise ValueError(
                f"rows as an array must hold sorted, distinct row numbers in [0, {total}) (rows "
                f"of split '{split}'). Received: an array of shape {rows.shape}, dtype "
                f"{rows.dtype}"
            )
        return len(rows)
    start, stop = rows
    if not (isinstance(start, int) and isinstance(stop, int) and 0 <= start <= stop <= total):
        raise ValueError(
            f"rows must be (start, stop) with 0 <= start <= stop <= {total} (rows of split "
            f"'{split}'). Received: rows={rows!r}"
        )
    return stop - start


def _group_offsets(records: tf.data.Dataset, count: Any) -> tf.data.Dataset:
    """`(offset, rows, group)` per group of serialized records: its first row number and rows.

    Each group's rows are counted with `count` (a parser of one scalar column, cheap).
    """

    def counted(group: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        return tf.shape(next(iter(count(group).values())), out_type=tf.int64)[0], group

    def offsets(offset: tf.Tensor, element: tuple[tf.Tensor, tf.Tensor]):
        rows, group = element
        return offset + rows, (offset, rows, group)

    return records.map(counted).scan(tf.constant(0, tf.int64), offsets)


def _row_range(
    records: tf.data.Dataset, parse: Any, count: Any, start: int, stop: int
) -> tf.data.Dataset:
    """Rows `start <= i < stop`, in order, from a dataset of groups of serialized records.

    Only the groups that hold rows of the range are parsed with `parse`, and reading
    stops after the last of them.
    """
    start_t, stop_t = tf.constant(start, tf.int64), tf.constant(stop, tf.int64)
    return (
        _group_offsets(records, count)
        .take_while(lambda offset, rows, group: offset < stop)
        .filter(lambda offset, rows, group: offset + rows > start)
        .map(
            lambda offset, rows, group: _cut_rows(offset, parse(group), start_t, stop_t),
            num_parallel_calls=tf.data.AUTOTUNE,
            deterministic=True,
        )
    )


def _row_subset(
    records: tf.data.Dataset, parse: Any, count: Any, selected: np.ndarray
) -> tf.data.Dataset:
    """The rows marked in the boolean `selected` (one entry per row), in order.

    As `_row_range`: only the groups that hold a marked row are parsed, and reading
    stops after the last of them.
    """
    marked = np.flatnonzero(selected)
    last = int(marked[-1]) if len(marked) else -1
    mask = tf.constant(selected, tf.bool)
    return (
        _group_offsets(records, count)
        .take_while(lambda offset, rows, group: offset <= last)
        .filter(lambda offset, rows, group: tf.reduce_any(mask[offset : offset + rows]))
        .map(
            lambda offset, rows, group: _keep_rows(parse(group), mask[offset : offset + rows]),
            num_parallel_calls=tf.data.AUTOTUNE,
            deterministic=True,
        )
    )


# The per-column steps below are module-level `tf.function`s: traced once per column
# layout, so that every later pipeline over the same columns (one per training epoch)
# only adds a call to them instead of re-creating their operations.
@tf.function
def _cut_rows(
    offset: tf.Tensor, columns: dict[str, tf.Tensor], start: tf.Tensor, stop: tf.Tensor
) -> dict[str, tf.Tensor]:
    """Rows `start - offset <= i < stop - offset` of one group that begins at row `offset`."""
    count = tf.shape(next(iter(columns.values())), out_type=tf.int64)[0]
    lo = tf.maximum(start - offset, 0)
    hi = tf.minimum(stop - offset, count)
    return {name: values[lo:hi] for name, values in columns.items()}


@tf.function
def _keep_rows(columns: dict[str, tf.Tensor], keep: tf.Tensor) -> dict[str, tf.Tensor]:
    """The rows of one group where `keep` is True."""
    return {name: tf.boolean_mask(values, keep) for name, values in columns.items()}


def interleaved_records(
    files: list[str],
    shuffle: bool,
    seed: int | None,
    parallel: int | None,
    deterministic: bool,
    reshuffle: bool = True,
) -> tf.data.Dataset:
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


def ordered_groups(
    data_dir: str,
    meta: Mapping[str, Any],
    schema: Schema,
    split: str,
    parse: Parser,
    *,
    group: int,
    rows: Rows | None = None,
    parallel: int | None = None,
) -> tf.data.Dataset:
    """Parsed groups of `group` records of a split, in write order, holding only `rows`.

    The ordered read under `read_split` and `make_dataset(..., shuffle=False)` (or with
    `rows`). With `rows`, each group's rows are counted with a parser of the label alone
    and only the groups that hold chosen rows are parsed with `parse`; reading stops
    after the last of them.

    Args:
        data_dir: the dataset directory.
        meta: its `meta.json`.
        schema: the schema (its label counts rows).
        split: the split.
        parse: the record parser (`widedeep.data.record_parser`).
        group: records per group.
        rows: the rows to keep, already checked with `check_rows`; None keeps all.
        parallel: shards read in parallel (`interleaved_records`).

    Returns:
        A `tf.data.Dataset` of `{column: [rows, ...]}` groups.
    """
    files = split_files(data_dir, meta, split)
    records = interleaved_records(files, False, None, parallel, True).batch(group)
    if rows is None:
        return records.map(parse, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    count = compiled_parser(data_dir, meta, schema, (schema.label,))
    if isinstance(rows, np.ndarray):
        selected = np.zeros(int(meta["splits"][split]["examples"]), bool)
        selected[rows] = True
        return _row_subset(records, parse, count, selected)
    return _row_range(records, parse, count, *rows)


def read_split(
    data_dir: str | os.PathLike,
    split: str,
    columns: Sequence[str],
    *,
    rows: Rows | None = None,
    batch_size: int | None = None,
    group_rows: int = 8192,
) -> tf.data.Dataset:
    """The rows of a split in write order, as `{column: tensor}` batches.

    The one ordered reader of a split: `read_columns`, evaluation and calibration
    (`widedeep.evaluation.predict_split`) and `widedeep predict`
    (`widedeep.export.predict_to_file`) read through it, and `make_dataset` reads the
    same way without `shuffle`, so all of them see the rows in one order. A split of
    any size is read in bounded memory, a group of whole records at a time.

    Schema inputs come as `make_dataset` gives them (sequences padded to
    `[n, max_length]`, strings as `tf.string`); other columns (label, feedback, group
    key, extras such as `true_probability`) must be scalars.

    Args:
        data_dir: the dataset directory.
        split: e.g. `"test"`.
        columns: the column names.
        rows: only these rows: a range `(start, stop)` or a sorted array of row numbers
            (`Rows`, e.g. `widedeep.data.carve.validation_carve`'s).
        batch_size: rows per batch (the last one may be smaller). None: each batch is
            one group of whole records, the cheapest to read.
        group_rows: about how many rows are parsed at a time (rounded to whole records).

    Returns:
        A `tf.data.Dataset` of `{name: tf.Tensor}` batches.

    Raises:
        DatasetError: naming the split, or the columns absent from the records.
        ValueError: if `rows` or `batch_size` is out of range.

    Example:

    ```python
    for batch in read_split("data/sim", "test", ["user_id", "label"], batch_size=4096):
        ...
    ```
    """
    data_dir = os.fspath(data_dir)
    schema, meta = load_dataset_dir(data_dir)
    files = split_files(data_dir, meta, split)
    if batch_size is not None and (not isinstance(batch_size, int) or batch_size < 1):
        raise ValueError(f"batch_size must be an int >= 1. Received: batch_size={batch_size!r}")
    check_rows(rows, meta["splits"][split]["examples"], split)
    columns = list(dict.fromkeys(columns))
    stored = None
    if meta["splits"][split]["examples"]:
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
    parse = directory_parser(data_dir, meta, schema, columns, stored)
    group = max(1, group_rows // int(meta.get("rows_per_record", DEFAULT_ROWS_PER_RECORD)))
    ds = ordered_groups(
        data_dir, meta, schema, split, parse, group=group, rows=rows, parallel=tf.data.AUTOTUNE
    )
    if batch_size is not None:
        ds = ds.rebatch(batch_size)
    return ds.prefetch(2)


def read_columns(
    data_dir: str | os.PathLike, split: str, columns: Sequence[str]
) -> dict[str, np.ndarray]:
    """Reads whole columns of a split, in the order `make_dataset(..., shuffle=False)` yields rows.

    Schema inputs read as `make_dataset` gives them (sequences padded to
    `[N, max_length]`, defaults for missing scalars); other columns (label,
    feedback, group key, extras such as `true_probability`) must be scalars.
    Strings come back as `bytes` objects. The columns are read with `read_split`.

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
    if not meta["splits"][split]["examples"]:
        # No record says what an extra column holds: those come back as empty floats.
        known = [c for c in columns if c in expected_columns(schema) or c in lookups_of(meta)]
        spec = read_split(data_dir, split, known).element_spec if known else {}
        return {
            name: np.zeros((0, *spec[name].shape[1:]), spec[name].dtype.as_numpy_dtype)
            if name in spec
            else np.zeros(0)
            for name in columns
        }
    chunks: dict[str, list[np.ndarray]] = {c: [] for c in columns}
    for batch in read_split(data_dir, split, columns):
        for name in columns:
            chunks[name].append(batch[name].numpy())
    return {name: np.concatenate(parts) for name, parts in chunks.items()}
