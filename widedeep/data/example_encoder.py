"""A chunk of rows as `tf.train.Example` records of the dataset format.

`column_data` normalises the columns that `DatasetWriter.write` receives, and
`encode_records` groups their rows into blocks of `rows_per_record` consecutive rows
(see `widedeep.data.dataset_format`), each serialised as one `tf.train.Example` by
the protobuf library.

Feature keys are laid out in Python's sorted order (`name` before `name/length`), so
the same rows always give byte-identical records. Protobuf's own deterministic
serialisation is not used for that: its order of map keys where one key is a prefix of
another differs between its backends (upb puts `name/length` first, pure Python `name`).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import tensorflow as tf

from widedeep.data.dataset_format import BYTES, FLOAT, INT64, LENGTH_SUFFIX, DatasetError
from widedeep.schema import MISSING_INT, MISSING_STRING

__all__ = ["ColumnData", "column_data", "encode_records"]


class ColumnData:
    """One column of a chunk as a padded matrix `values [rows, width]` and `valid [rows, width]`.

    A scalar column has `width` 1 and `valid` None; a sequence column's `valid` says
    which items are real (the rest is padding).
    """

    def __init__(
        self, name: str, kind: str, scalar: bool, values: np.ndarray, valid: np.ndarray | None
    ):
        self.name, self.kind, self.scalar = name, kind, scalar
        self.values, self.valid = values, valid

    @property
    def num_rows(self) -> int:
        return self.values.shape[0]

    @property
    def signature(self) -> str:
        return self.kind if self.scalar else f"{self.kind}[]"


def _kind_of(dtype: np.dtype, name: str) -> str:
    if dtype == np.bool_ or np.issubdtype(dtype, np.integer):
        return INT64
    if np.issubdtype(dtype, np.floating):
        return FLOAT
    if dtype.kind in "OUS":
        return BYTES
    raise DatasetError(
        f"column '{name}': unsupported dtype {dtype}; use integers, floats or strings"
    )


def _not_padding(values: np.ndarray, kind: str) -> np.ndarray:
    if kind == INT64:
        return values != MISSING_INT
    if kind == FLOAT:
        return ~np.isnan(values)
    if values.dtype.kind == "U":
        return values != MISSING_STRING
    if values.dtype.kind == "S":
        return values != MISSING_STRING.encode()
    return (values != MISSING_STRING) & (values != MISSING_STRING.encode())


def column_data(name: str, column: Any) -> ColumnData:
    """Normalise a column given as a 1-D array, a padded 2-D array or a list of 1-D arrays."""
    ragged = isinstance(column, (list, tuple)) and any(
        isinstance(row, (np.ndarray, list, tuple)) for row in column
    )
    if not ragged:
        array = np.asarray(column)
        if array.ndim not in (1, 2):
            raise DatasetError(
                f"column '{name}': expected a 1-D array (scalars), a 2-D padded array or a list "
                f"of 1-D arrays (sequences). Received: shape={array.shape}"
            )
        kind = _kind_of(array.dtype, name)
        if array.ndim == 1:
            return ColumnData(name, kind, True, array[:, None], None)
        return ColumnData(name, kind, False, array, _not_padding(array, kind))
    rows = [np.asarray(row) for row in column]
    for i, row in enumerate(rows):
        if row.ndim != 1:
            raise DatasetError(f"column '{name}': row {i} is not 1-D. Received: shape={row.shape}")
    dtype = np.result_type(*[r.dtype for r in rows])
    kind = _kind_of(dtype, name)
    counts = np.array([r.size for r in rows], dtype=np.int64)
    width = int(counts.max(initial=0))
    valid = np.arange(width) < counts[:, None]
    values = np.zeros(valid.shape, dtype=object if kind == BYTES else dtype)
    values[valid] = np.concatenate(rows) if rows else []
    return ColumnData(name, kind, False, values, valid)


def _feature(kind: str, values: np.ndarray) -> tf.train.Feature:
    if kind == INT64:  # integers of any width (and booleans) as int64, wrapping like a C cast
        ints = values.astype(np.int64, copy=False).tolist()
        return tf.train.Feature(int64_list=tf.train.Int64List(value=ints))
    if kind == FLOAT:
        floats = values.astype(np.float32, copy=False).tolist()
        return tf.train.Feature(float_list=tf.train.FloatList(value=floats))
    strings = [v.encode() if isinstance(v, str) else bytes(v) for v in values.tolist()]
    return tf.train.Feature(bytes_list=tf.train.BytesList(value=strings))


def _varint(value: int) -> bytes:
    out = bytearray()
    while value >= 0x80:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _example(features: dict[str, tf.train.Feature]) -> bytes:
    """`tf.train.Example(features=tf.train.Features(feature=features))`, keys in sorted order.

    A `Features` map is on the wire its entries back to back, so each entry is serialised
    alone (a one-key map) and the entries are joined in sorted order; the `Example` adds
    one length-delimited field 1 (tag byte 0x0A) around them.
    """
    entries = b"".join(
        tf.train.Features(feature={key: features[key]}).SerializeToString()
        for key in sorted(features)
    )
    return b"\x0a" + _varint(len(entries)) + entries


def encode_records(columns: list[ColumnData], num_rows: int, rows_per_record: int) -> list[bytes]:
    """Serialises a chunk of rows as records of `rows_per_record` consecutive rows.

    Record `j` holds rows `j * rows_per_record ...` (the chunk's last record may be
    shorter). A scalar column becomes one list per record, a value per row; a sequence
    column becomes the concatenation of its rows' items (padding dropped), beside a
    `name/length` list of per-row item counts.

    Args:
        columns: the chunk's columns (`column_data`), each with `num_rows` rows.
        num_rows: rows in the chunk.
        rows_per_record: rows per record.

    Returns:
        The serialised `tf.train.Example` records, in row order.
    """
    records = []
    for start in range(0, num_rows, rows_per_record):
        stop = min(start + rows_per_record, num_rows)
        features = {}
        for column in columns:
            values = column.values[start:stop]
            if column.scalar:
                features[column.name] = _feature(column.kind, values[:, 0])
                continue
            valid = column.valid[start:stop]
            features[column.name] = _feature(column.kind, values[valid])
            features[column.name + LENGTH_SUFFIX] = _feature(INT64, valid.sum(axis=1))
        records.append(_example(features))
    return records
