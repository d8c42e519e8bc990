"""The dataset directory: the on-disk format every data source writes and training reads.

Layout of a dataset directory `DIR`:

```
DIR/schema.json                            Schema.save()
DIR/meta.json                              {"source": ..., "format": "widedeep-blocks/1",
                                             "rows_per_record": 256, "splits": {"train":
                                             {"examples": N, "files": [...], "columns": {...}}}}
DIR/train/part-00000-of-00008.tfrecord     tf.train.Example records (blocks of rows)
DIR/test/part-00000-of-00002.tfrecord
DIR/tables/users/age.npy                   optional tables (`widedeep.data.tables`)
```

Each row is one impression. Its columns are every raw input of
`schema.input_signature()`, the label, the feedback code (an index into
`widedeep.schema.FEEDBACK_TYPES`), the group key (the user id) and any extra
column the writer's caller chose to keep (e.g. the simulator's
`true_probability`). A column may instead be a *lookup* (`meta.json`'s
`"lookups"`): read from a table at rows that the records hold, e.g. a user's side
features at the user's row, or a feedback sequence from the user's events (see
`widedeep.data.tables`); readers materialise lookups, so they yield the same
columns either way. `meta.json` is written last, so a directory whose writer
died mid-way has no `meta.json` and is rejected by `load_dataset_dir`.

Records are *blocks* of consecutive rows (`rows_per_record`, 256 by default; the
last block of each `write()` call may be shorter), stored column by column in one
`tf.train.Example`: a scalar column is a list with one value per row, a sequence
column is the concatenation of its rows' items *without* padding (most recent item
first) beside a `<name>/length` list of per-row item counts. Parsing a block costs
about as much as parsing one row-per-record Example, so the reader spends far less
CPU per row; on two cores that CPU is taken from training.

Row order: the writer deals blocks to a split's shards round-robin (block `j` of
the split goes to shard `j % num_shards`). Reading the shards interleaved one
record at a time, in file order, therefore gives back the rows in exactly the
order they were written. `make_dataset(..., shuffle=False)` and `read_columns`
both read that way, so they yield rows in the same, deterministic order, which
lets evaluation align predictions with user ids.

Records are serialised by a vectorised numpy encoder of the `tf.train.Example`
wire format (building protos row by row in Python is far slower). Feature keys are
written in sorted order, so the same rows always give byte-identical files.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import tensorflow as tf

from widedeep.data.tables import (
    Lookup,
    LookupGather,
    load_tables,
    lookups_of,
    table_files,
    write_table,
)
from widedeep.schema import (
    FEEDBACK_TYPES,
    MISSING_INT,
    MISSING_STRING,
    CategoricalFeature,
    NumericFeature,
    Schema,
    SchemaError,
)

__all__ = [
    "DEFAULT_NUM_SHARDS",
    "DatasetError",
    "DatasetWriter",
    "check_columns",
    "column_batches",
    "load_dataset_dir",
    "make_dataset",
    "read_columns",
]

DEFAULT_NUM_SHARDS: dict[str, int] = {"train": 8, "test": 2}
"""Shards per split used when `DatasetWriter` is given no `num_shards`."""

SCHEMA_FILE = "schema.json"
META_FILE = "meta.json"

FORMAT = "widedeep-blocks/2"
"""`meta.json`'s `"format"`: records are blocks of rows, with optional tables (see above)."""

READABLE_FORMATS: tuple[str, ...] = ("widedeep-blocks/1", FORMAT)
"""Formats this version reads (`/1` is `/2` without tables)."""

DEFAULT_ROWS_PER_RECORD = 256
"""Rows per record (block) used when `DatasetWriter` is given no `rows_per_record`."""

LENGTH_SUFFIX = "/length"
"""Suffix of the per-row item counts stored beside a sequence column (`click_item_id/length`)."""

# Column kinds, as stored in a tf.train.Feature.
_INT64, _FLOAT, _BYTES = "int64", "float32", "bytes"


class DatasetError(ValueError):
    """A dataset directory that is missing, incomplete or inconsistent with its schema.

    The message names the directory, file, split or column at fault.
    """


# --------------------------------------------------------------------------------------------
# Vectorised tf.train.Example encoder.
#
# Wire format (a length-delimited field is `tag, varint(length), payload`):
#   Example   { Features features = 1; }
#   Features  { map<string, Feature> feature = 1; }   -> entries { key = 1; value = 2; }
#   Feature   { BytesList bytes_list = 1; FloatList float_list = 2; Int64List int64_list = 3; }
#   Int64List { repeated int64 value = 1 [packed]; }  FloatList { repeated float value = 1 [packed]; }
#   BytesList { repeated bytes value = 1; }
# Every piece of a record is a dense "block": a uint8 matrix [rows, width] and a boolean
# matrix saying which of its bytes are used. The blocks are laid side by side and the used
# bytes are taken in row-major order, which concatenates the pieces row by row (and drops
# the padding of sequences) in one pass of plain array copies.
# --------------------------------------------------------------------------------------------

_Block = tuple[np.ndarray, "np.ndarray | None"]
_ROWS_PER_BATCH = 32_768  # bounds the encoder's working memory


def _varint_groups(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Varint bytes of int64 values (negatives as 10-byte two's complement).

    Returns `(groups, sizes)`: `groups[..., k]` is byte `k` of each value's encoding
    and `sizes` (uint8) the number of bytes used.
    """
    v = np.asarray(values)
    if v.dtype != np.uint64:
        v = v.astype(np.int64, copy=False).view(np.uint64)
    largest = int(v.max()) if v.size else 0
    max_size = 1
    while max_size < 10 and largest >= 1 << (7 * max_size):
        max_size += 1
    # Work in the narrowest unsigned type that holds every value.
    for dtype in (np.uint16, np.uint32, np.uint64):
        if largest < 1 << (8 * np.dtype(dtype).itemsize):
            v = v.astype(dtype)
            break
    sizes = np.ones(v.shape, dtype=np.uint8)
    groups = np.empty((*v.shape, max_size), dtype=np.uint8)
    rest = v
    seven, low_bits = v.dtype.type(7), v.dtype.type(0x7F)
    for k in range(max_size):
        groups[..., k] = rest & low_bits
        if k + 1 < max_size:
            rest = rest >> seven
            more = rest > 0
            sizes += more
            groups[..., k] |= more.view(np.uint8) << np.uint8(7)
    return groups, sizes


def _varint_bytes(value: int) -> bytes:
    out = bytearray()
    while value >= 0x80:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _used(sizes: np.ndarray, width: int) -> np.ndarray:
    """`used[..., k] = k < sizes`: the bytes in use of fields of `sizes` bytes padded to `width`."""
    used = np.empty((*sizes.shape, width), dtype=bool)
    for k in range(width):
        np.greater(sizes, k, out=used[..., k])
    return used


def _varint_block(
    values: np.ndarray, present: np.ndarray | None = None
) -> tuple[_Block, np.ndarray]:
    """Block of one varint per row (omitted where not `present`), and its size per row."""
    groups, sizes = _varint_groups(values)
    used = _used(sizes, groups.shape[-1])
    if present is not None:
        used &= present[:, None]
        sizes = sizes * present
    return (groups, used), sizes.astype(np.int64)


def _const_block(data: bytes, present: np.ndarray | None = None) -> _Block:
    block = np.frombuffer(data, dtype=np.uint8)[None, :]
    return block, None if present is None else np.broadcast_to(
        present[:, None], (present.size, block.shape[1])
    )


def _length_delimited(
    tag: int, payload_len: np.ndarray, present: np.ndarray | None = None
) -> tuple[list[_Block], np.ndarray]:
    """Blocks `tag, varint(len)` heading a payload, and the field's total length per row."""
    varint, sizes = _varint_block(payload_len, present)
    total = 1 + sizes + payload_len
    if present is not None:
        total = total * present
    return [_const_block(bytes([tag]), present), varint], total


class _ColumnData:
    """One column of a chunk as a padded matrix `values [rows, width]` and `valid [rows, width]`."""

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

    def rows(self, start: int, stop: int) -> _ColumnData:
        valid = None if self.valid is None else self.valid[start:stop]
        return _ColumnData(self.name, self.kind, self.scalar, self.values[start:stop], valid)


def _kind_of(dtype: np.dtype, name: str) -> str:
    if dtype == np.bool_ or np.issubdtype(dtype, np.integer):
        return _INT64
    if np.issubdtype(dtype, np.floating):
        return _FLOAT
    if dtype.kind in "OUS":
        return _BYTES
    raise DatasetError(
        f"column '{name}': unsupported dtype {dtype}; use integers, floats or strings"
    )


def _not_padding(values: np.ndarray, kind: str) -> np.ndarray:
    if kind == _INT64:
        return values != MISSING_INT
    if kind == _FLOAT:
        return ~np.isnan(values)
    if values.dtype.kind == "U":
        return values != MISSING_STRING
    if values.dtype.kind == "S":
        return values != MISSING_STRING.encode()
    return (values != MISSING_STRING) & (values != MISSING_STRING.encode())


def _column_data(name: str, column: Any) -> _ColumnData:
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
            return _ColumnData(name, kind, True, array[:, None], None)
        return _ColumnData(name, kind, False, array, _not_padding(array, kind))
    rows = [np.asarray(row) for row in column]
    for i, row in enumerate(rows):
        if row.ndim != 1:
            raise DatasetError(f"column '{name}': row {i} is not 1-D. Received: shape={row.shape}")
    dtype = np.result_type(*[r.dtype for r in rows])
    kind = _kind_of(dtype, name)
    counts = np.array([r.size for r in rows], dtype=np.int64)
    valid = _used(counts, int(counts.max(initial=0)))
    values = np.zeros(valid.shape, dtype=object if kind == _BYTES else dtype)
    values[valid] = np.concatenate(rows) if rows else []
    return _ColumnData(name, kind, False, values, valid)


def _value_blocks(column: _ColumnData) -> tuple[_Block, np.ndarray]:
    """The block of a column's values (its list's payload) and the payload length per row."""
    n, width = column.values.shape
    valid = column.valid
    if column.kind == _INT64:
        values = column.values if valid is None else np.where(valid, column.values, 0)
        groups, sizes = _varint_groups(values)
        if valid is not None:
            sizes = sizes * valid
        used = _used(sizes, groups.shape[-1])
        return (groups.reshape(n, -1), used.reshape(n, -1)), sizes.sum(axis=1, dtype=np.int64)
    if column.kind == _FLOAT:
        data = np.ascontiguousarray(column.values, dtype="<f4").view(np.uint8).reshape(n, width * 4)
        if valid is None:
            return (data, None), np.full(n, 4 * width, dtype=np.int64)
        return (data, np.repeat(valid, 4, axis=1)), 4 * valid.sum(axis=1)
    # bytes: each value is a length-delimited field of the BytesList.
    flat_valid = np.ones(n * width, dtype=bool) if valid is None else valid.reshape(-1)
    if column.values.dtype.kind == "S":  # fixed-width bytes: no per-value Python work
        flat = np.ascontiguousarray(column.values.reshape(-1))
        lens = np.char.str_len(flat).astype(np.int64) * flat_valid
        max_len = flat.dtype.itemsize
        payload = (
            flat.view(np.uint8).reshape(-1, max_len)
            if max_len
            else np.zeros((flat.size, 1), np.uint8)
        )
    else:
        encoded = [
            (v.encode() if isinstance(v, str) else bytes(v)) if ok else b""
            for v, ok in zip(column.values.reshape(-1).tolist(), flat_valid.tolist(), strict=True)
        ]
        lens = np.array([len(v) for v in encoded], dtype=np.int64)
        max_len = int(lens.max(initial=0))
        payload = np.zeros((lens.size, max(max_len, 1)), dtype=np.uint8)
        if max_len:
            payload[:, :max_len] = (
                np.array(encoded, dtype=f"S{max_len}").view(np.uint8).reshape(-1, max_len)
            )
    len_groups, len_sizes = _varint_groups(lens)
    data = np.concatenate(
        [np.full((lens.size, 1), 0x0A, dtype=np.uint8), len_groups, payload], axis=1
    )
    used = np.concatenate(
        [
            flat_valid[:, None],
            _used(len_sizes, len_groups.shape[-1]),
            _used(lens, payload.shape[1]),
        ],
        axis=1,
    )
    used &= flat_valid[:, None]
    field_len = (1 + len_sizes.astype(np.int64) + lens) * flat_valid
    return (data.reshape(n, -1), used.reshape(n, -1)), field_len.reshape(n, width).sum(axis=1)


def _column_blocks(column: _ColumnData) -> tuple[list[_Block], np.ndarray]:
    """Blocks of one `Features.feature` map entry per row, and the entry's length per row."""
    values, payload = _value_blocks(column)
    if column.kind == _BYTES:
        list_blocks: list[_Block] = []
        list_len = payload
        feature_tag = 0x0A
    else:
        # A packed repeated field with no values is omitted altogether.
        present = None if column.valid is None else payload > 0
        list_blocks, list_len = _length_delimited(0x0A, payload, present)
        feature_tag = 0x1A if column.kind == _INT64 else 0x12
    feature_blocks, feature_len = _length_delimited(feature_tag, list_len)
    key = column.name.encode()
    key_field = bytes([0x0A]) + _varint_bytes(len(key)) + key + bytes([0x12])
    value_varint, value_sizes = _varint_block(feature_len)
    entry_len = len(key_field) + value_sizes + feature_len
    entry_blocks, entry_total = _length_delimited(0x0A, entry_len)
    blocks = [
        *entry_blocks,
        _const_block(key_field),
        value_varint,
        *feature_blocks,
        *list_blocks,
        values,
    ]
    return blocks, entry_total


def _serialize_rows(columns: list[_ColumnData]) -> tuple[np.ndarray, np.ndarray]:
    num_rows = columns[0].num_rows
    blocks: list[_Block] = []
    features_len = np.zeros(num_rows, dtype=np.int64)
    for column in sorted(columns, key=lambda c: c.name):
        column_blocks, column_len = _column_blocks(column)
        blocks += column_blocks
        features_len += column_len
    example_blocks, total = _length_delimited(0x0A, features_len)
    blocks = example_blocks + blocks
    widths = [math.prod(data.shape[1:]) for data, _ in blocks]
    matrix = np.empty((num_rows, sum(widths)), dtype=np.uint8)
    used = np.empty((num_rows, sum(widths)), dtype=bool)
    at = 0
    for (data, block_used), w in zip(blocks, widths, strict=True):
        if w == 0:
            continue
        matrix[:, at : at + w] = data.reshape(data.shape[0], w)
        used[:, at : at + w] = True if block_used is None else block_used.reshape(num_rows, w)
        at += w
    return matrix[used], total


def _serialize(
    columns: list[_ColumnData], num_records: int, records_per_batch: int
) -> tuple[bytes, np.ndarray]:
    """Serialise records to `tf.train.Example` bytes: one buffer and the end offset of each record.

    Row `i` of every column is record `i`; `records_per_batch` bounds the working memory.
    """
    flats, lens = [], []
    for start in range(0, num_records, records_per_batch):
        stop = min(start + records_per_batch, num_records)
        flat, total = _serialize_rows([c.rows(start, stop) for c in columns])
        flats.append(flat)
        lens.append(total)
    return b"".join(f.tobytes() for f in flats), np.cumsum(np.concatenate(lens))


def _blocks(columns: list[_ColumnData], num_rows: int, rows_per_record: int) -> list[_ColumnData]:
    """Regroups the rows of a chunk into records of `rows_per_record` consecutive rows.

    Record `j` holds rows `j * rows_per_record ...` (the last record of the chunk may be
    shorter). A scalar column becomes one list per record, a value per row; a sequence
    column becomes the concatenation of its rows' items (padding dropped), beside a
    `name/length` column of per-row item counts.
    """
    records = -(-num_rows // rows_per_record)
    padded = records * rows_per_record
    row_valid = np.zeros(padded, dtype=bool)
    row_valid[:num_rows] = True

    def pad(values: np.ndarray) -> np.ndarray:
        if values.shape[0] == padded:
            return values
        fill = np.zeros((padded - values.shape[0], *values.shape[1:]), dtype=values.dtype)
        if values.dtype == object:
            fill[...] = b""
        return np.concatenate([values, fill])

    out = []
    for c in columns:
        if c.scalar:
            values = pad(c.values[:, 0]).reshape(records, rows_per_record)
            out.append(_ColumnData(c.name, c.kind, False, values, row_valid.reshape(records, -1)))
            continue
        valid = c.valid  # sequence columns always carry their validity mask
        width = c.values.shape[1]
        out.append(
            _ColumnData(
                c.name,
                c.kind,
                False,
                pad(c.values).reshape(records, rows_per_record * width),
                pad(valid).reshape(records, rows_per_record * width),
            )
        )
        lengths = pad(valid.sum(axis=1, dtype=np.int64)).reshape(records, rows_per_record)
        out.append(
            _ColumnData(
                c.name + LENGTH_SUFFIX, _INT64, False, lengths, row_valid.reshape(records, -1)
            )
        )
    return out


# --------------------------------------------------------------------------------------------
# Writer.
# --------------------------------------------------------------------------------------------


def _shard_name(index: int, count: int) -> str:
    return f"part-{index:05d}-of-{count:05d}.tfrecord"


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(
        f"meta value of type {type(value).__name__} is not JSON serialisable: {value!r}"
    )


def _expected_columns(schema: Schema) -> dict[str, tuple[str, bool]]:
    """`{column: (kind, scalar)}` for every column a record must carry for `schema`."""
    expected: dict[str, tuple[str, bool]] = {}
    for name, (shape, dtype) in schema.input_signature().items():
        kind = {"int64": _INT64, "string": _BYTES, "float32": _FLOAT}[dtype]
        expected[name] = (kind, shape == ())
    expected.setdefault(schema.label, (_INT64, True))
    expected.setdefault(schema.feedback, (_INT64, True))
    expected.setdefault(schema.group_key, (_INT64, True))
    return expected


class DatasetWriter:
    """Streams rows into a dataset directory of sharded TFRecord files.

    `write()` takes chunks of rows and can be called any number of times per
    split; memory does not grow with the number of rows written. Rows are dealt
    to the split's shards round-robin, row by row, so every shard gets data and
    an interleaved read (see `make_dataset`) returns them in the order written.
    `close()` writes `schema.json` and then `meta.json`; it takes the schema
    because statistics (vocabularies, means, quantiles) may only be known once
    all the data has been seen. Used as a context manager, the writer closes its
    files on exit but writes no `meta.json` unless `close()` was called.

    Args:
        out_dir: the dataset directory; created if needed.
        num_shards: number of shard files per split, e.g. `{"train": 8, "test": 2}`
            (the default).
        overwrite: replace a dataset already in `out_dir` (its `schema.json`,
            `meta.json` and shard files) instead of raising `DatasetError`.

    Example:

    ```python
    writer = DatasetWriter("/tmp/data", num_shards={"train": 4, "test": 1})
    writer.write("train", {"user_id": np.array([3, 5]), "label": np.array([0, 1]), ...})
    writer.write("test", {...})
    meta = writer.close(schema, {"source": "my_logs"})
    ```
    """

    def __init__(
        self,
        out_dir: str | os.PathLike,
        num_shards: Mapping[str, int] | None = None,
        *,
        overwrite: bool = False,
        rows_per_record: int = DEFAULT_ROWS_PER_RECORD,
    ) -> None:
        self.out_dir = os.fspath(out_dir)
        if (
            not isinstance(rows_per_record, int)
            or isinstance(rows_per_record, bool)
            or rows_per_record < 1
        ):
            raise DatasetError(
                f"rows_per_record must be an int >= 1. Received: rows_per_record={rows_per_record!r}"
            )
        self.rows_per_record = rows_per_record
        shards = dict(DEFAULT_NUM_SHARDS if num_shards is None else num_shards)
        if not shards:
            raise DatasetError("num_shards must name at least one split")
        for split, count in shards.items():
            if not isinstance(split, str) or not split or not split.replace("_", "").isalnum():
                raise DatasetError(f"split names must be identifiers. Received: split={split!r}")
            if not isinstance(count, int) or isinstance(count, bool) or count < 1:
                raise DatasetError(
                    f"split '{split}': num_shards must be an int >= 1. Received: {count!r}"
                )
        self.num_shards = shards
        if os.path.exists(self.out_dir) and not os.path.isdir(self.out_dir):
            raise DatasetError(f"cannot write a dataset to {self.out_dir}: it is a file")
        existing = self._existing_files()
        if existing and not overwrite:
            raise DatasetError(
                f"{self.out_dir} already holds a dataset ({existing[0]} ...); "
                "pass overwrite=True to replace it"
            )
        for path in existing:
            os.remove(path)
        os.makedirs(self.out_dir, exist_ok=True)
        self._writers: dict[str, list[Any]] = {}
        self._rows: dict[str, int] = {split: 0 for split in shards}
        self._records: dict[str, int] = {split: 0 for split in shards}
        self._columns: dict[str, dict[str, str]] = {}
        self._tables: dict[str, dict[str, Any]] = {}
        self._closed = False

    def _existing_files(self) -> list[str]:
        if not os.path.isdir(self.out_dir):
            return []
        found = [
            os.path.join(self.out_dir, name)
            for name in (SCHEMA_FILE, META_FILE)
            if os.path.exists(os.path.join(self.out_dir, name))
        ]
        for split in self.num_shards:
            split_dir = os.path.join(self.out_dir, split)
            if os.path.isdir(split_dir):
                found += sorted(
                    os.path.join(split_dir, name)
                    for name in os.listdir(split_dir)
                    if name.startswith("part-") and name.endswith(".tfrecord")
                )
        return found + table_files(self.out_dir)

    def _open(self, split: str) -> list[Any]:
        if split not in self._writers:
            split_dir = os.path.join(self.out_dir, split)
            os.makedirs(split_dir, exist_ok=True)
            count = self.num_shards[split]
            self._writers[split] = [
                tf.io.TFRecordWriter(os.path.join(split_dir, _shard_name(i, count)))
                for i in range(count)
            ]
        return self._writers[split]

    def write(self, split: str, columns: Mapping[str, Any]) -> None:
        """Appends a chunk of rows to `split`.

        Args:
            split: one of the splits named in `num_shards`.
            columns: `{name: values}`, every column with the same number of rows.
                Scalars are 1-D arrays (integers, floats or strings). Sequences are
                2-D arrays `[rows, L]` right-padded with the missing value (`-1`,
                `""`/`b""`, or NaN for floats), or lists of 1-D arrays; missing
                values are dropped, so records hold sequences without padding.
                Every chunk of a split must have the same columns and types.
        """
        if self._closed:
            raise DatasetError(f"{self.out_dir}: the writer is closed")
        if split not in self.num_shards:
            raise DatasetError(
                f"{self.out_dir}: unknown split '{split}'; num_shards names {sorted(self.num_shards)}"
            )
        if not columns:
            raise DatasetError(f"{self.out_dir}: write('{split}', ...) received no columns")
        data = [_column_data(name, values) for name, values in columns.items()]
        num_rows = data[0].num_rows
        for column in data:
            if column.num_rows != num_rows:
                raise DatasetError(
                    f"{self.out_dir}: split '{split}': column '{column.name}' has "
                    f"{column.num_rows} rows, column '{data[0].name}' has {num_rows}"
                )
        signature = {c.name: c.signature for c in data}
        known = self._columns.setdefault(split, signature)
        if known != signature:
            differ = sorted(
                name
                for name in set(known) | set(signature)
                if known.get(name) != signature.get(name)
            )
            raise DatasetError(
                f"{self.out_dir}: split '{split}': columns differ from the earlier chunks in {differ} "
                f"(earlier: {[known.get(n) for n in differ]}, now: {[signature.get(n) for n in differ]})"
            )
        for column in data:
            if LENGTH_SUFFIX in column.name:
                raise DatasetError(
                    f"{self.out_dir}: column '{column.name}': names may not contain "
                    f"'{LENGTH_SUFFIX}' (reserved for sequence lengths)"
                )
        if num_rows == 0:
            return
        blocks = _blocks(data, num_rows, self.rows_per_record)
        records_per_batch = max(1, _ROWS_PER_BATCH // self.rows_per_record)
        buffer, ends = _serialize(blocks, blocks[0].num_rows, records_per_batch)
        writes = [w.write for w in self._open(split)]
        count = len(writes)
        first = self._records[split]
        begin = 0
        for i, end in enumerate(ends.tolist()):
            writes[(first + i) % count](buffer[begin:end])
            begin = end
        self._records[split] = first + len(ends)
        self._rows[split] += num_rows

    def write_table(self, name: str, columns: Mapping[str, Any]) -> None:
        """Writes a table that lookup columns read (see `widedeep.data.tables`).

        Args:
            name: the table's name (an identifier), e.g. `"users"`.
            columns: `{column: 1-D array}`, all of one length: integers, floats or
                fixed-width bytes strings (or a `widedeep.data.tables.ColumnChunks`
                of numbers, written chunk by chunk). An events table has one `row` column.
        """
        if self._closed:
            raise DatasetError(f"{self.out_dir}: the writer is closed")
        if name in self._tables:
            raise DatasetError(f"{self.out_dir}: table '{name}' was already written")
        self._tables[name] = write_table(self.out_dir, name, columns)

    def _check_lookups(self, lookups: Mapping[str, Lookup], expected: Mapping) -> list[str]:
        problems = []
        for name, lookup in lookups.items():
            table = self._tables.get(lookup.table, {}).get("columns", {})
            if lookup.column not in table:
                problems.append(f"{name}: no column '{lookup.column}' in table '{lookup.table}'")
            elif name in expected:
                kind, scalar = expected[name]
                if table[lookup.column] != kind or scalar == lookup.is_sequence:
                    problems.append(
                        f"{name}: expected {kind if scalar else kind + '[]'}, looks up "
                        f"{table[lookup.column]}{'[]' if lookup.is_sequence else ''}"
                    )
            if lookup.is_sequence and lookup.events not in self._tables:
                problems.append(f"{name}: no events table '{lookup.events}'")
        return problems

    def _close_files(self) -> None:
        for writers in self._writers.values():
            for writer in writers:
                writer.close()

    def close(
        self,
        schema: Schema,
        meta: Mapping[str, Any] | None = None,
        lookups: Mapping[str, Lookup] | None = None,
    ) -> dict[str, Any]:
        """Finishes the dataset: closes the shards, writes `schema.json` and `meta.json`.

        Args:
            schema: the dataset's schema (with statistics of the training split).
            meta: anything the caller wants to record (e.g. `"source"`, settings,
                oracle metrics); must be JSON serialisable (numpy scalars are fine).
            lookups: `{column: Lookup}` for the columns read from the tables written
                with `write_table` instead of stored in the records; the records
                must then hold each lookup's row (or end and count) columns.

        Returns:
            The full meta as written: `meta` plus `"splits"`, holding per split
            `"examples"`, `"files"` (relative to the directory) and `"columns"`.

        Raises:
            DatasetError: if a non-empty split lacks a column the schema needs or
                holds it with the wrong type.
        """
        if self._closed:
            raise DatasetError(f"{self.out_dir}: the writer is already closed")
        lookups = dict(lookups or {})
        expected = _expected_columns(schema)
        wrong_lookups = self._check_lookups(lookups, expected)
        if wrong_lookups:
            self._close_files()
            self._closed = True
            raise DatasetError(f"{self.out_dir}: lookups that do not match: {wrong_lookups}")
        sources = {s: (_INT64, True) for lookup in lookups.values() for s in lookup.sources}
        expected = {n: v for n, v in expected.items() if n not in lookups} | sources
        for split, written in self._columns.items():
            if self._rows[split] == 0:
                continue
            missing = sorted(set(expected) - set(written))
            wrong = []
            for name, (kind, scalar) in expected.items():
                got = written.get(name)
                if got is None:
                    continue
                if got.removesuffix("[]") != kind or (scalar and got.endswith("[]")):
                    wrong.append(f"{name}: expected {kind if scalar else kind + '[]'}, wrote {got}")
            if missing or wrong:
                self._close_files()
                self._closed = True
                raise DatasetError(
                    f"{self.out_dir}: split '{split}' does not match the schema: "
                    f"missing columns {missing}; wrong types {wrong}"
                )
        for split in self.num_shards:
            self._open(split)  # an empty split still gets (empty) shard files
        self._close_files()
        self._closed = True
        full_meta: dict[str, Any] = {"source": "unknown", **dict(meta or {})}
        full_meta["format"] = FORMAT
        full_meta["rows_per_record"] = self.rows_per_record
        full_meta["splits"] = {
            split: {
                "examples": self._rows[split],
                "files": [f"{split}/{_shard_name(i, count)}" for i in range(count)],
                "columns": dict(sorted(self._columns.get(split, {}).items())),
            }
            for split, count in self.num_shards.items()
        }
        if self._tables:
            full_meta["tables"] = dict(sorted(self._tables.items()))
            full_meta["lookups"] = {name: lookups[name].to_json() for name in sorted(lookups)}
        schema.save(os.path.join(self.out_dir, SCHEMA_FILE))
        text = json.dumps(full_meta, indent=2, default=_json_default)
        with open(os.path.join(self.out_dir, META_FILE), "w") as f:
            f.write(text + "\n")
        return json.loads(text)

    def __enter__(self) -> DatasetWriter:
        return self

    def __exit__(self, *exc_info: object) -> None:
        if not self._closed:
            self._close_files()
            self._closed = True


# --------------------------------------------------------------------------------------------
# Reading.
# --------------------------------------------------------------------------------------------


def load_dataset_dir(data_dir: str | os.PathLike) -> tuple[Schema, dict[str, Any]]:
    """Loads and validates a dataset directory.

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
    schema_path = os.path.join(data_dir, SCHEMA_FILE)
    meta_path = os.path.join(data_dir, META_FILE)
    for path in (schema_path, meta_path):
        if not os.path.isfile(path):
            raise DatasetError(
                f"dataset {data_dir}: no {os.path.basename(path)} (not a dataset directory, or "
                "its writer did not finish): missing file {path}"
            )
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
        for rel in info["files"]:
            if not os.path.isfile(os.path.join(data_dir, rel)):
                raise DatasetError(
                    f"dataset {data_dir}: split '{split}': missing shard file {os.path.join(data_dir, rel)}"
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


def _split_files(data_dir: str, meta: dict[str, Any], split: str) -> list[str]:
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
        name: {"int64_list": _INT64, "float_list": _FLOAT, "bytes_list": _BYTES}.get(
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
    files = _split_files(data_dir, meta, split)
    path, example = _first_example(data_dir, split, files)
    stored = _stored_kinds(example)
    expected = _expected_columns(schema)
    lookups = lookups_of(meta)
    tables = meta.get("tables", {})
    wrong_lookups = []
    for name, lookup in lookups.items():
        if name in expected:
            kind, scalar = expected.pop(name)
            found = tables[lookup.table]["columns"][lookup.column]
            if found != kind or scalar == lookup.is_sequence:
                wrong_lookups.append(f"{name} (expected {kind}, looks up {found})")
        expected.update({source: (_INT64, True) for source in lookup.sources})
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
    return {_INT64: tf.int64, _FLOAT: tf.float32, _BYTES: tf.string}[kind]


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
                "by widedeep.data.records.DatasetWriter",
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


def _compiled_parser(
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


def _records(
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


def _row_range(ds: tf.data.Dataset, start: int, stop: int) -> tf.data.Dataset:
    """Keeps rows `start <= i < stop` of a dataset of `{column: [rows, ...]}` groups, in order."""

    def count(columns: dict[str, tf.Tensor]) -> tf.Tensor:
        return tf.shape(next(iter(columns.values())), out_type=tf.int64)[0]

    def offsets(offset: tf.Tensor, columns: dict[str, tf.Tensor]):
        return offset + count(columns), (offset, columns)

    start_t, stop_t = tf.constant(start, tf.int64), tf.constant(stop, tf.int64)
    return (
        ds.scan(tf.constant(0, tf.int64), offsets)
        .take_while(lambda offset, columns: offset < stop)
        .filter(lambda offset, columns: offset + count(columns) > start)
        .map(lambda offset, columns: _cut_rows(offset, columns, start_t, stop_t))
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
def _permute_rows(columns: dict[str, tf.Tensor], group_seed: tf.Tensor) -> dict[str, tf.Tensor]:
    """The rows of one group in the random order of `group_seed`."""
    rows = tf.shape(next(iter(columns.values())))[0]
    stateless_seed = tf.stack([group_seed, tf.constant(0, tf.int64)])
    order = tf.random.experimental.stateless_shuffle(tf.range(rows), seed=stateless_seed)
    return {name: tf.gather(values, order) for name, values in columns.items()}


def _shuffled_rows(ds: tf.data.Dataset, seed: int | None, reshuffle: bool) -> tf.data.Dataset:
    """Randomly permutes the rows of each `{column: [rows, ...]}` group.

    One in-tensor permutation per group of parsed records replaces a streaming
    `Dataset.shuffle` buffer, which moves every row through the buffer one element at a
    time. Each group gets its own seed from `Dataset.random`, so a `seed` makes the order
    reproducible while, with `reshuffle`, every epoch (every new iterator) is reshuffled.
    """
    seeds = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=reshuffle)
    return tf.data.Dataset.zip(ds, seeds).map(_permute_rows)


def make_dataset(
    data_dir: str | os.PathLike,
    split: str,
    schema: Schema | None = None,
    *,
    batch_size: int = 256,
    shuffle: bool = False,
    seed: int | None = None,
    repeat: bool = False,
    feedback_weights: Sequence[float] | None = None,
    drop_remainder: bool = False,
    deterministic: bool | None = None,
    shuffle_buffer: int = 10_000,
    num_parallel_reads: int | None = None,
    rows: tuple[int, int] | None = None,
    reshuffle_each_iteration: bool = True,
) -> tf.data.Dataset:
    """A batched `tf.data` pipeline over one split of a dataset directory.

    Yields `(features, label, sample_weight)`: `features` holds exactly the raw
    inputs of `schema.input_signature()` -- categorical `int64`/`tf.string` `[B]`,
    numeric `float32` `[B]`, sequences `[B, max_length]` right-padded with the
    missing value (and truncated to their most recent `max_length` items).
    `label` is `float32 [B, 1]` (the models' output shape); `sample_weight` is
    `feedback_weights[feedback code]`, or 1.0 when `feedback_weights` is None.

    The pipeline reads the shards interleaved (file order shuffled when
    `shuffle`), parses groups of records (about `shuffle_buffer` rows, or a few
    batches without `shuffle`) with one vectorised `tf.io.parse_example`, shuffles
    the rows of each group (one in-tensor permutation, reseeded every epoch),
    re-batches to `batch_size` and prefetches. Without `shuffle`, rows come in the order they were written,
    the same order as `read_columns`. Model-based tf.data autotuning is turned
    off (`AUTOTUNE` settings fall back to TensorFlow's static defaults): its
    per-record bookkeeping cost more CPU than it saved on small machines.

    Args:
        data_dir: the dataset directory.
        split: e.g. `"train"` or `"test"`.
        schema: the schema to parse with; defaults to the directory's own.
        batch_size: rows per batch.
        shuffle: shuffle shard order and rows (windows of `shuffle_buffer` rows).
        seed: seed of the shuffles.
        repeat: repeat indefinitely (reshuffling every epoch when `shuffle`).
        feedback_weights: weights of the feedback types `(unclick, click, dislike)`,
            e.g. `(1, 1, 10)` as in DFN; None gives every example weight 1.
        drop_remainder: drop the last, smaller batch.
        deterministic: whether parallel stages keep their order. Defaults to
            True unless `shuffle` without a `seed`. Always True without `shuffle`.
        shuffle_buffer: rows per shuffle window (rounded up to whole records): a row
            moves within its window of the epoch's interleaved stream.
        num_parallel_reads: shards read in parallel (e.g. `tf.data.AUTOTUNE` for
            remote storage). Defaults to None: the shards are interleaved in one
            thread, the cheapest for local files.
        rows: `(start, stop)` keeps rows `start <= i < stop` in write (time)
            order, e.g. the last tenth of the training period as a validation
            set. The shards are then read in file order and only the rows
            are shuffled (when `shuffle`).
        reshuffle_each_iteration: with `shuffle`, whether every new iterator (a
            new epoch of a dataset iterated several times, or of `repeat`) gets a
            new order. False gives every iterator the order of the first: for a
            dataset built per epoch with its own `seed`, as `widedeep train` does,
            whose iterator may be restarted (Keras starts one to build the model
            under a distribution strategy, then another to train).

    Returns:
        A `tf.data.Dataset` of `(features, label, sample_weight)` batches.

    Raises:
        DatasetError: if the directory, split or a needed column is missing.
    """
    data_dir = os.fspath(data_dir)
    dir_schema, meta = load_dataset_dir(data_dir)
    schema = schema or dir_schema
    files = _split_files(data_dir, meta, split)
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be an int >= 1. Received: batch_size={batch_size!r}")
    weights = None
    if feedback_weights is not None:
        weights = [float(w) for w in feedback_weights]
        if len(weights) != len(FEEDBACK_TYPES) or min(weights) < 0:
            raise ValueError(
                f"feedback_weights must be {len(FEEDBACK_TYPES)} non-negative numbers for "
                f"{FEEDBACK_TYPES}. Received: feedback_weights={feedback_weights!r}"
            )
    if meta["splits"][split].get("examples", 1):
        check_columns(data_dir, split, schema)
    if not shuffle:
        deterministic = True
    elif deterministic is None:
        deterministic = seed is not None
    parallel = num_parallel_reads

    inputs = list(schema.input_signature())
    names = [*inputs, schema.label] + ([schema.feedback] if weights is not None else [])
    parse = _compiled_parser(data_dir, meta, schema, tuple(dict.fromkeys(names)))
    label_name, feedback_name = schema.label, schema.feedback

    def to_example(parsed: dict[str, tf.Tensor]):
        features = {name: parsed[name] for name in inputs}
        # [B, 1], the shape of the models' output: Keras losses reduce the last axis.
        label = tf.cast(parsed[label_name], tf.float32)[:, None]
        if weights is None:
            sample_weight = tf.ones_like(label[:, 0])
        else:
            sample_weight = tf.gather(tf.constant(weights, tf.float32), parsed[feedback_name])
        return features, label, sample_weight

    # Records are parsed in groups of about one shuffle window (or a few batches).
    rows_per_record = int(meta.get("rows_per_record", DEFAULT_ROWS_PER_RECORD))
    window = shuffle_buffer if shuffle else max(batch_size, 4096)
    group = max(1, -(-window // rows_per_record))
    if rows is not None:
        start, stop = rows
        total = int(meta["splits"][split].get("examples", 0))
        if not (isinstance(start, int) and isinstance(stop, int) and 0 <= start <= stop <= total):
            raise ValueError(
                f"rows must be (start, stop) with 0 <= start <= stop <= {total} (rows of split "
                f"'{split}'). Received: rows={rows!r}"
            )
        ds = _records(files, False, None, parallel, True)
        ds = ds.batch(group).map(parse, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        ds = _row_range(ds, start, stop)
    else:
        ds = _records(
            files, shuffle, seed, parallel, deterministic, reshuffle_each_iteration
        ).batch(group)
        ds = ds.map(parse, num_parallel_calls=tf.data.AUTOTUNE, deterministic=deterministic)
    if shuffle:
        ds = _shuffled_rows(ds, seed, reshuffle_each_iteration)
    if repeat:
        ds = ds.repeat()
    # rebatch(n) == unbatch().batch(n), without per-row elements.
    ds = ds.rebatch(batch_size, drop_remainder=drop_remainder)
    if not repeat:
        # TFRecord readers cannot know their length; meta.json does. With it, Keras
        # shows a complete progress bar and does not warn that the data ran out.
        count = int(meta["splits"][split].get("examples", 0))
        if rows is not None:
            count = rows[1] - rows[0]
        batches = count // batch_size if drop_remainder else -(-count // batch_size)
        ds = ds.apply(tf.data.experimental.assert_cardinality(batches))
    ds = ds.map(to_example, num_parallel_calls=tf.data.AUTOTUNE, deterministic=deterministic)
    options = tf.data.Options()
    options.autotune.enabled = False
    return ds.prefetch(tf.data.AUTOTUNE).with_options(options)


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
    _split_files(data_dir, meta, split)  # names a missing split
    columns = list(dict.fromkeys(columns))
    if not meta["splits"][split].get("examples", 1):
        lookups = lookups_of(meta)
        known = [c for c in columns if c in _expected_columns(schema) and c not in lookups]
        spec, padded = _parse_spec(schema, known)
        empty: dict[str, np.ndarray] = {}
        for name in columns:
            if name in lookups:
                lookup = lookups[name]
                kind = meta["tables"][lookup.table]["columns"][lookup.column]
                dtype = object if kind == _BYTES else _tf_dtype(kind).as_numpy_dtype
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
    files = _split_files(data_dir, meta, split)
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
    ds = _records(files, False, None, tf.data.AUTOTUNE, True).batch(group)
    ds = ds.map(parse, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return ds.prefetch(2)
