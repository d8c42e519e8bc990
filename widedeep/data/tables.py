"""Tables of a dataset directory: columns the records reference by row instead of storing.

A log's impressions repeat their user's and item's side features, and a user's
feedback sequences are, row after row, the same events shifted by one. A
dataset directory may therefore keep such columns once, in *tables*, and let
each record hold only where to find them:

```
DIR/tables/users/age.npy          one value per user (a table's columns have equal length)
DIR/tables/items/video_id.npy
DIR/tables/click_events/row.npy   per click event, the item's row in `items`, user by user
```

`meta.json` lists the tables (`"tables": {name: {"rows": n, "columns": {column: kind}}}`)
and, under `"lookups"`, each column read from one (`Lookup.to_json`):

* a **scalar** lookup reads `table[column][row]`, `row` a record column, e.g.
  `age = users.age[@user]`;
* a **sequence** lookup reads, for the `j`-th most recent item of a row,
  `table[column][events.row[end - 1 - j]]` for `j < count` (`end` and `count`
  record columns, `events` a table with a `row` column), and the missing value
  for `j >= count`: e.g. `click_video_id`, the items the user clicked before the
  impression, most recent first.

The reader (`widedeep.data.reader`) materialises lookups as it parses, so every
consumer sees the same columns whether they were stored or looked up. A row of
`B` sequence items costs two gathers instead of `B` stored values: what made the
preparation of a log with three 30-long sequences over three item features
write ~290 values per impression.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import tensorflow as tf

from widedeep.errors import WidedeepError

__all__ = [
    "TABLES_DIR",
    "ColumnChunks",
    "Lookup",
    "TableError",
    "LookupGather",
    "load_tables",
    "lookups_of",
    "write_table",
]

TABLES_DIR = "tables"
"""Sub-directory of a dataset directory that holds its tables."""

EVENT_ROW = "row"
"""The column of an events table: per event, the row of the looked-up table."""

_KINDS = {"i": "int64", "u": "int64", "b": "int64", "f": "float32", "S": "bytes"}
_DTYPES = {"int64": np.int64, "float32": np.float32}


class TableError(WidedeepError, ValueError):
    """A table or lookup of a dataset directory that is missing or inconsistent."""


@dataclass(frozen=True)
class Lookup:
    """A column read from a table at rows the records hold (see the module docstring).

    Args:
        table: the table the values come from.
        column: its column.
        row: scalar lookup: the record column holding the table row.
        events: sequence lookup: the events table (its `row` column indexes `table`).
        end: sequence lookup: the record column one past the row's latest event.
        count: sequence lookup: the record column with the row's number of events.
    """

    table: str
    column: str
    row: str | None = None
    events: str | None = None
    end: str | None = None
    count: str | None = None

    def __post_init__(self) -> None:
        scalar = self.row is not None
        sequence = None not in (self.events, self.end, self.count)
        if scalar == sequence or (scalar and (self.events, self.end, self.count) != (None,) * 3):
            raise TableError(
                f"lookup of {self.table}.{self.column}: give either row (a scalar lookup) or "
                f"events, end and count (a sequence lookup). Received: {self}"
            )

    @property
    def is_sequence(self) -> bool:
        return self.row is None

    @property
    def sources(self) -> tuple[str, ...]:
        """The record columns the lookup reads."""
        return (self.row,) if self.row is not None else (self.end, self.count)  # type: ignore[return-value]

    def to_json(self) -> dict[str, str]:
        return {k: v for k, v in asdict(self).items() if v is not None}

    @classmethod
    def from_json(cls, value: Mapping[str, Any]) -> Lookup:
        return cls(**value)


@dataclass(frozen=True)
class ColumnChunks:
    """A table column written chunk by chunk, for one too large to hold at once.

    Attributes:
        rows: its length.
        dtype: the chunks' dtype (integers or floats).
        chunks: a function that yields the column's values in order, as 1-D arrays.
    """

    rows: int
    dtype: Any
    chunks: Callable[[], Iterable[np.ndarray]]

    @property
    def ndim(self) -> int:
        return 1

    def __len__(self) -> int:
        return self.rows


def _kind(values: np.ndarray | ColumnChunks, where: str) -> str:
    kind = _KINDS.get(np.dtype(values.dtype).kind)
    if kind is None or values.ndim != 1:
        raise TableError(
            f"{where}: a table column must be a 1-D array of integers, floats or bytes "
            f"strings. Received: dtype={values.dtype}, shape={values.shape}"
        )
    return kind


def write_table(
    out_dir: str, name: str, columns: Mapping[str, np.ndarray | ColumnChunks]
) -> dict[str, Any]:
    """Writes `columns` (equal-length 1-D arrays) as table `name` of dataset directory `out_dir`.

    Integers are stored as int64, floats as float32, strings as fixed-width bytes
    (`np.bytes_`; encode `str` first); a `ColumnChunks` column is written chunk by
    chunk. Returns the table's `meta.json` entry.
    """
    if not name or not name.replace("_", "").isalnum():
        raise TableError(f"table names must be identifiers. Received: name={name!r}")
    arrays = {
        col: values if isinstance(values, ColumnChunks) else np.asarray(values)
        for col, values in columns.items()
    }
    if not arrays:
        raise TableError(f"table '{name}' has no columns")
    kinds = {
        col: _kind(values, f"table '{name}', column '{col}'") for col, values in arrays.items()
    }
    chunked_bytes = [
        c for c, v in arrays.items() if isinstance(v, ColumnChunks) and kinds[c] == "bytes"
    ]
    if chunked_bytes:
        raise TableError(
            f"table '{name}': columns {chunked_bytes} written in chunks must be numbers"
        )
    rows = {len(values) for values in arrays.values()}
    if len(rows) != 1:
        lengths = {col: len(values) for col, values in arrays.items()}
        raise TableError(f"table '{name}': its columns differ in length: {lengths}")
    folder = os.path.join(out_dir, TABLES_DIR, name)
    os.makedirs(folder, exist_ok=True)
    for col, values in arrays.items():
        if not col or os.sep in col or col.startswith("."):
            raise TableError(f"table '{name}': column name {col!r} is not a file name")
        dtype = _DTYPES.get(kinds[col])
        path = os.path.join(folder, f"{col}.npy")
        if isinstance(values, ColumnChunks):
            with open(path, "wb") as f:
                header = {"descr": np.dtype(dtype).str, "fortran_order": False}
                np.lib.format.write_array_header_1_0(f, {**header, "shape": (values.rows,)})
                written = 0
                for chunk in values.chunks():
                    np.ascontiguousarray(chunk, dtype=dtype).tofile(f)
                    written += len(chunk)
            if written != values.rows:
                raise TableError(
                    f"table '{name}', column '{col}': {written} values written, {values.rows} declared"
                )
        else:
            np.save(path, values if dtype is None else values.astype(dtype))
    return {"rows": rows.pop(), "columns": kinds}


def table_files(out_dir: str) -> list[str]:
    """The table files under `out_dir` (to replace a dataset)."""
    root = os.path.join(out_dir, TABLES_DIR)
    return sorted(
        os.path.join(folder, name)
        for folder, _, names in os.walk(root)
        for name in names
        if name.endswith(".npy")
    )


def lookups_of(meta: Mapping[str, Any]) -> dict[str, Lookup]:
    """`{column: Lookup}` of a dataset directory's `meta.json` (empty when it has none)."""
    return {name: Lookup.from_json(value) for name, value in meta.get("lookups", {}).items()}


def load_tables(data_dir: str, meta: Mapping[str, Any]) -> dict[str, dict[str, np.ndarray]]:
    """The tables of a dataset directory as arrays: `{table: {column: array}}`.

    An events table's rows are checked against the table they index.
    """
    events = {
        lookup.events: lookup.table for lookup in lookups_of(meta).values() if lookup.is_sequence
    }
    tables: dict[str, dict[str, np.ndarray]] = {}
    for name, info in meta.get("tables", {}).items():
        columns = {}
        for col in info["columns"]:
            path = os.path.join(data_dir, TABLES_DIR, name, f"{col}.npy")
            try:
                values = np.load(path, allow_pickle=False)
            except (OSError, ValueError) as e:
                raise TableError(
                    f"dataset {data_dir}: cannot read table file {path}: {e}"
                ) from None
            if len(values) != info["rows"]:
                raise TableError(
                    f"dataset {data_dir}: table file {path} has {len(values)} rows, meta.json "
                    f"says {info['rows']}"
                )
            if name in events:
                size = meta["tables"][events[name]]["rows"]
                if values.size and not (values.min() >= 0 and values.max() < size):
                    raise TableError(
                        f"dataset {data_dir}: table file {path} holds rows outside table "
                        f"'{events[name]}' (0..{size - 1}): found {values.min()}..{values.max()}"
                    )
            columns[col] = values
        tables[name] = columns
    return tables


def _dtype_key(values: np.ndarray) -> str:
    return "bytes" if values.dtype.kind in "SU" else values.dtype.str


class LookupGather:
    """Materialises a parser's lookup columns from the tables, in few TensorFlow operations.

    Lookups that share their record columns share the work: the scalar lookups
    through one row column gather one `[rows, k]` matrix per dtype (the side
    table's columns stacked once, here), and the sequence lookups of one
    sequence compute their event positions once and gather the item table's
    stacked columns once per dtype, from a copy of the table with one extra row
    that holds each column's missing value, where the positions past a row's
    events point. Same values as reading each column alone, a few operations
    instead of a few per column.

    Args:
        lookups: `{column: Lookup}`, the columns to materialise.
        tables: `load_tables`' arrays.
        padded: `{sequence column: (missing value, length)}` for the sequence lookups.
    """

    def __init__(
        self,
        lookups: Mapping[str, Lookup],
        tables: Mapping[str, Mapping[str, np.ndarray]],
        padded: Mapping[str, tuple[Any, int]],
    ) -> None:
        scalar: dict[tuple[str, str], dict[str, list[str]]] = {}
        sequence: dict[tuple[str, str, str, str, int], dict[str, list[str]]] = {}
        for name, lookup in lookups.items():
            values = tables[lookup.table][lookup.column]
            if lookup.is_sequence:
                key = (lookup.table, lookup.events, lookup.end, lookup.count, padded[name][1])
                groups = sequence.setdefault(key, {})
            else:
                groups = scalar.setdefault((lookup.table, lookup.row), {})
            groups.setdefault(_dtype_key(values), []).append(name)

        def rows_of(table: str) -> int:
            return len(next(iter(tables[table].values())))

        def stacked(names: list[str], extra: list[Any] | None = None) -> tf.Tensor:
            """The columns of `names` as one `[rows (+ 1), k]` constant (bytes widen to the longest)."""
            columns = [tables[lookups[n].table][lookups[n].column] for n in names]
            stack = np.stack(columns, axis=1)
            if extra is not None:
                row = [np.asarray(v, dtype=c.dtype) for v, c in zip(extra, columns, strict=True)]
                stack = np.concatenate([stack, np.stack(row)[None]], axis=0)
            return tf.constant(stack)

        self._scalar = [
            (table, row, rows_of(table), [(names, stacked(names)) for names in groups.values()])
            for (table, row), groups in scalar.items()
        ]
        self._sequence = []
        for (table, events, end, count, length), groups in sequence.items():
            # The stacks get one more row, each column's missing value: the padding's row.
            parts = [
                (names, stacked(names, [padded[n][0] for n in names])) for names in groups.values()
            ]
            rows = tables[events][EVENT_ROW].astype(np.int64)
            padded_events = tf.constant(np.append(rows, np.int64(rows_of(table))))
            self._sequence.append((events, end, count, length, len(rows), padded_events, parts))

    def __call__(self, parsed: Mapping[str, tf.Tensor]) -> dict[str, tf.Tensor]:
        """`{column: values}` for parsed record columns `{name: [rows]}`: `[rows]` or `[rows, L]`."""
        out: dict[str, tf.Tensor] = {}
        for table, row, size, parts in self._scalar:
            rows = parsed[row]
            tf.debugging.assert_less(
                rows,
                tf.constant(size, tf.int64),
                message=f"dataset records: column '{row}' points past the end of table '{table}'",
            )
            for names, stack in parts:
                out.update(zip(names, tf.unstack(tf.gather(stack, rows), len(names), axis=1)))
        for events, end_name, count_name, length, size, padded_events, parts in self._sequence:
            end, count = parsed[end_name], parsed[count_name]
            tf.debugging.assert_less_equal(
                end,
                tf.constant(size, tf.int64),
                message=f"dataset records: column '{end_name}' points past the end of table "
                f"'{events}'",
            )
            tf.debugging.assert_less_equal(
                count,
                end,
                message=f"dataset records: column '{count_name}' counts more events than "
                f"'{end_name}' leaves",
            )
            offsets = tf.range(length, dtype=tf.int64)[None, :]
            at = tf.where(offsets < count[:, None], end[:, None] - 1 - offsets, size)
            # [n, L] item rows; past a row's events, the missing values' row.
            rows = tf.gather(padded_events, at)
            for names, stack in parts:
                out.update(zip(names, tf.unstack(tf.gather(stack, rows), len(names), axis=2)))
        return out
