"""The record parser: serialized blocks of rows -> `{column: [rows, ...]}` tensors.

One parser serves every reader of a dataset directory (`widedeep.data.reader` and the
training pipeline, `widedeep.data.pipeline`): schema inputs come out as the models take
them (sequences right-padded with the missing value and truncated to `[rows, max_length]`),
lookup columns are read from the directory's tables (`widedeep.data.tables`), and a
record whose columns do not hold one value per row is an error instead of shifted rows.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import tensorflow as tf

from widedeep.data.dataset_format import (
    BYTES,
    FLOAT,
    INT64,
    LENGTH_SUFFIX,
    META_FILE,
    DatasetError,
)
from widedeep.data.tables import Lookup, LookupGather, load_tables, lookups_of
from widedeep.schema import MISSING_INT, CategoricalFeature, NumericFeature, Schema

__all__ = ["compiled_parser", "directory_parser"]

Parser = Callable[[tf.Tensor], dict[str, tf.Tensor]]
"""A function from a vector of serialized records to `{column: [rows, ...]}` tensors."""


def _tf_dtype(kind: str) -> tf.DType:
    return {INT64: tf.int64, FLOAT: tf.float32, BYTES: tf.string}[kind]


def _missing_value(feature: CategoricalFeature) -> int | bytes:
    return feature.missing_value.encode() if feature.dtype == "string" else MISSING_INT


def _parse_spec(
    schema: Schema,
    names: Sequence[str],
    stored: Mapping[str, str] | None = None,
    lookups: Mapping[str, Lookup] | None = None,
) -> tuple[dict[str, Any], dict[str, tuple[Any, int]]]:
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
) -> Parser:
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


_COMPILED_PARSERS: dict[tuple[Any, ...], tuple[Schema, Parser]] = {}


def directory_parser(
    data_dir: str,
    meta: Mapping[str, Any],
    schema: Schema,
    names: Sequence[str],
    stored: Mapping[str, str] | None = None,
) -> Parser:
    """The parser of `names` for the records of `data_dir`, its lookup columns read from its tables.

    Args:
        data_dir: the dataset directory.
        meta: its `meta.json` (`widedeep.data.reader.load_dataset_dir`).
        schema: the schema to parse with.
        names: the columns to parse: schema columns, lookups, or stored columns of `stored`.
        stored: `{column: kind}` of the records, for columns outside the schema.

    Returns:
        A function from a vector of serialized records to `{column: [rows, ...]}`
        tensors, rows in record order.
    """
    lookups = {n: v for n, v in lookups_of(meta).items() if n in names}
    tables = load_tables(data_dir, meta) if lookups else {}
    return _parser(schema, names, stored, lookups, tables)


def compiled_parser(
    data_dir: str, meta: Mapping[str, Any], schema: Schema, names: tuple[str, ...]
) -> Parser:
    """`directory_parser` as one `tf.function`, traced once per `Schema` object, directory and columns.

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
        directory_parser(data_dir, meta, schema, list(names)),
        input_signature=[tf.TensorSpec([None], tf.string)],
    )
    if len(_COMPILED_PARSERS) >= 16:
        _COMPILED_PARSERS.pop(next(iter(_COMPILED_PARSERS)))
    _COMPILED_PARSERS[key] = (schema, parse)
    return parse
