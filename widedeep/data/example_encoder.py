"""Vectorised encoder of rows into `tf.train.Example` records of the dataset format.

`encode_records` turns a chunk of columns (`column_data`) into blocks of
`rows_per_record` consecutive rows (see `widedeep.data.dataset_format`) and
serialises them without building a proto per record: building protos row by row in
Python is far slower. Feature keys are written in sorted order, so the same rows
always give byte-identical records.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from widedeep.data.dataset_format import BYTES, FLOAT, INT64, LENGTH_SUFFIX, DatasetError
from widedeep.schema import MISSING_INT, MISSING_STRING

__all__ = ["ColumnData", "column_data", "encode_records"]

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


class ColumnData:
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

    def rows(self, start: int, stop: int) -> ColumnData:
        valid = None if self.valid is None else self.valid[start:stop]
        return ColumnData(self.name, self.kind, self.scalar, self.values[start:stop], valid)


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
    valid = _used(counts, int(counts.max(initial=0)))
    values = np.zeros(valid.shape, dtype=object if kind == BYTES else dtype)
    values[valid] = np.concatenate(rows) if rows else []
    return ColumnData(name, kind, False, values, valid)


def _value_blocks(column: ColumnData) -> tuple[_Block, np.ndarray]:
    """The block of a column's values (its list's payload) and the payload length per row."""
    n, width = column.values.shape
    valid = column.valid
    if column.kind == INT64:
        values = column.values if valid is None else np.where(valid, column.values, 0)
        groups, sizes = _varint_groups(values)
        if valid is not None:
            sizes = sizes * valid
        used = _used(sizes, groups.shape[-1])
        return (groups.reshape(n, -1), used.reshape(n, -1)), sizes.sum(axis=1, dtype=np.int64)
    if column.kind == FLOAT:
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


def _column_blocks(column: ColumnData) -> tuple[list[_Block], np.ndarray]:
    """Blocks of one `Features.feature` map entry per row, and the entry's length per row."""
    values, payload = _value_blocks(column)
    if column.kind == BYTES:
        list_blocks: list[_Block] = []
        list_len = payload
        feature_tag = 0x0A
    else:
        # A packed repeated field with no values is omitted altogether.
        present = None if column.valid is None else payload > 0
        list_blocks, list_len = _length_delimited(0x0A, payload, present)
        feature_tag = 0x1A if column.kind == INT64 else 0x12
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


def _serialize_rows(columns: list[ColumnData]) -> tuple[np.ndarray, np.ndarray]:
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
    columns: list[ColumnData], num_records: int, records_per_batch: int
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


def _blocks(columns: list[ColumnData], num_rows: int, rows_per_record: int) -> list[ColumnData]:
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
            out.append(ColumnData(c.name, c.kind, False, values, row_valid.reshape(records, -1)))
            continue
        valid = c.valid  # sequence columns always carry their validity mask
        width = c.values.shape[1]
        out.append(
            ColumnData(
                c.name,
                c.kind,
                False,
                pad(c.values).reshape(records, rows_per_record * width),
                pad(valid).reshape(records, rows_per_record * width),
            )
        )
        lengths = pad(valid.sum(axis=1, dtype=np.int64)).reshape(records, rows_per_record)
        out.append(
            ColumnData(
                c.name + LENGTH_SUFFIX, INT64, False, lengths, row_valid.reshape(records, -1)
            )
        )
    return out


def encode_records(
    columns: list[ColumnData], num_rows: int, rows_per_record: int
) -> tuple[bytes, np.ndarray]:
    """Serialises a chunk of rows as records of `rows_per_record` consecutive rows.

    Args:
        columns: the chunk's columns (`column_data`), each with `num_rows` rows.
        num_rows: rows in the chunk (at least 1).
        rows_per_record: rows per record; the chunk's last record may be shorter.

    Returns:
        `(buffer, ends)`: the serialised `tf.train.Example` records back to back in
        one buffer, and the end offset of each record in it.
    """
    blocks = _blocks(columns, num_rows, rows_per_record)
    records_per_batch = max(1, _ROWS_PER_BATCH // rows_per_record)
    return _serialize(blocks, blocks[0].num_rows, records_per_batch)
