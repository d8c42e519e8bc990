"""The preparation engine: an impression log, columnar, to a dataset directory.

Every loader (the KuaiRand and MovieLens presets, `widedeep.data.user_log` for a
log of your own) reads its files into an `Impressions` table (one array per
column, read by Polars: CSV or Parquet, several files) and its side tables into
`FeatureTable`s; `prepare_impressions` does the rest with whole-array operations
(NumPy), no Python loop over rows:

1. stable sort by `(time, file, line)`: a log may come in any order, ties keep
   file order (for several files: the order they were given, then the line);
2. drop exact duplicates (rows identical in every raw field; compared by a 64-bit
   hash of the row within the same timestamp) and rows whose user or item is not
   in its side table (`on_error` decides: skip and count, or stop naming file and
   line);
3. the split (`split_by="time"`: the last `round(N * test_fraction)` impressions
   in that order; `"user"`: each user's last `round(n_u * test_fraction)`);
4. the causal feedback sequences: for an impression, the user's last `max_length`
   clicked / unclicked / disliked items among the impressions *before* it in that
   order (so a same-timestamp row earlier in the file counts as before; the
   impression itself and everything after it never does), most recent first,
   kept as positions in per-type event tables;
5. the dataset: the side tables and the event tables written once as dataset
   tables (`widedeep.data.tables`), and per impression only its user and item
   rows, its context columns, label, feedback and each sequence's end and count,
   as records chunk by chunk (`chunk_rows` rows at a time); train-only
   vocabularies and quantile boundaries, the schema and `meta.json`. Readers
   gather the side features and sequences back as they parse.

Memory is bounded by `PrepareOptions.memory_limit`, not by the log's length: the
sources yield the log in batches; the engine sorts them into runs of at most the
rows that fit the limit. A log that fits in one run stays in memory; a longer one
is an external sort: the runs are written to a scratch folder (`temp_dir`, by
default beside the output), merged range by range of timestamps, and the sorted
log, the event tables and the split are built from that folder in chunks, with
per-user counters (`running_counts`) instead of whole-log sorts. Side tables and
per-user counters come on top (they grow with the users and items, not the log).
"""

from __future__ import annotations

import bisect
import contextlib
import dataclasses
import glob
import hashlib
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import polars as pl

from widedeep.data.feedback_log import (
    FEEDBACK_TYPES,
    ITEM_HISTORY_FEATURES,
    ITEM_HISTORY_SMOOTHING,
    ErrorPolicy,
    FeatureTable,
    FeedbackLogError,
    FeedbackSource,
    PrepareOptions,
    Progress,
    TrainStatistics,
    numeric_feature,
    read_csv_with_header,
)
from widedeep.data.tables import EVENT_ROW, ColumnChunks, Lookup
from widedeep.directory_lock import directory_lock
from widedeep.safe_output import NoSpaceError, is_out_of_space
from widedeep.schema import FEEDBACK_SEQUENCES, MISSING_INT

__all__ = [
    "Impressions",
    "prepare_impressions",
    "prepare_source",
    "parse_columns",
    "parse_integer_columns",
    "read_log",
    "read_log_batches",
    "line_blocks",
    "log_schema",
    "report_bad_rows",
    "row_hash",
    "RowStore",
    "running_counts",
]

PARQUET_SUFFIXES: tuple[str, ...] = (".parquet", ".pq")

_EPOCH_ORDINAL = 719_163
"""`datetime.date(1970, 1, 1).toordinal()`: Polars dates count days from 1970-01-01."""

CHUNK_ROWS = 65536
"""Rows per chunk handed to the writer (the engine's unit of working memory)."""

USER_TABLE, ITEM_TABLE = "users", "items"
"""The dataset tables of the side features (see `widedeep.data.tables`)."""

USER_ROW, ITEM_ROW = "@user", "@item"
"""The record columns with each impression's row in the user and the item table."""


@dataclass
class Impressions:
    """A batch of a log as columns, one entry per row in file order (the engine sorts it).

    Attributes:
        time: timestamps (any monotone integer unit), int64.
        user: raw user ids, int64.
        item: raw item ids, int64.
        feedback: index into `FEEDBACK_TYPES` per row.
        label: 1 if clicked, else 0.
        file_index: position of each row's file in the source's `logs` (tie-break).
        line: 1-based line of each row in its file (tie-break and messages).
        row_key: uint64 hash of each row's raw fields (exact-duplicate detection).
        context: `{name: values}` of per-impression features (e.g. hour of day).
    """

    time: np.ndarray
    user: np.ndarray
    item: np.ndarray
    feedback: np.ndarray
    label: np.ndarray
    file_index: np.ndarray
    line: np.ndarray
    row_key: np.ndarray
    context: dict[str, np.ndarray] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.time)


BadRows = list[tuple[int, str]]
"""`(line, message)` of malformed rows of one file."""


class _NeedsExactRead(Exception):
    """The fast reader met something only the exact reader can name (a ragged row, a bad value)."""


def read_log(
    path: str, required: Sequence[str], integers: Sequence[str], *, infer_types: bool = True
) -> tuple[pl.DataFrame, BadRows]:
    """Read a whole CSV (with a header) or Parquet file into a frame, validating it.

    Logs are read in batches (`read_log_batches`); this reads a file at once (side
    tables, which grow with the users or items, not with the log).

    Args:
        path: the file (`.parquet` / `.pq` is read as Parquet, anything else as CSV).
        required: columns that must be present (`FeedbackLogError` names the missing).
        integers: columns read as int64; a row whose value is not an integer is malformed.
        infer_types: infer the other CSV columns' types; `False` reads them as strings
            (empty cells as `""`), for the caller to parse (`parse_columns`).

    Returns:
        `(frame, bad)`: every column of the file plus `_line` (1-based line of the
        row; for Parquet, the row number) and `_key` (a uint64 hash of the row's
        raw fields), malformed rows left out and listed in `bad` (line order).
    """
    if infer_types or path.lower().endswith(PARQUET_SUFFIXES):
        return _whole(read_log_batches(path, required, integers), path)
    _check_header(path, required)
    try:
        frame = pl.read_csv(path, infer_schema=False).with_row_index("_line", offset=2)
        columns = [c for c in frame.columns if c != "_line"]
        frame = frame.filter(~pl.all_horizontal(pl.col(c).is_null() for c in columns))
        if _field_counts_differ(path, len(columns), frame.height):
            raise _NeedsExactRead  # Polars pads a short row with empty strings
        frame = frame.with_columns(pl.col(c).fill_null("") for c in columns if c not in integers)
        frame, unparsed = parse_integer_columns(frame, integers)
        if unparsed:
            raise _NeedsExactRead
    except (pl.exceptions.PolarsError, _NeedsExactRead):
        return _whole(_read_csv_exactly(path, required, integers, {}), path)
    frame = frame.with_columns(_line=pl.col("_line").cast(pl.Int64), _key=row_hash(columns))
    return frame, []


def _whole(
    batches: Iterable[tuple[pl.DataFrame, BadRows]], path: str
) -> tuple[pl.DataFrame, BadRows]:
    parts = list(batches)
    if not parts:  # a header and no rows
        header = pl.read_csv(path, n_rows=0, infer_schema=False).columns
        empty = pl.DataFrame(schema={c: pl.String for c in header})
        return empty.with_columns(_line=pl.lit(0, pl.Int64), _key=pl.lit(0, pl.UInt64)), []
    frames = [frame for frame, _ in parts]
    return pl.concat(frames, how="vertical_relaxed"), sorted(b for _, rows in parts for b in rows)


def read_log_batches(
    path: str,
    required: Sequence[str],
    integers: Sequence[str],
    *,
    batch_rows: int = CHUNK_ROWS,
) -> Iterator[tuple[pl.DataFrame, BadRows]]:
    """Read a CSV (with a header) or Parquet log in batches of about `batch_rows` rows.

    A CSV file is cut into blocks of whole lines (`line_blocks`), each parsed by
    Polars; a Parquet file is read by Polars batch by batch. Every batch has the same
    columns and types (the CSV's inferred from its first 10,000 rows, `integers` as
    int64), and memory is a batch, whatever the file's size. If
    a batch has a value Polars cannot read as its column's type (or a ragged row),
    the rest of the file, from the first line not yet yielded, goes through the
    exact reader, which names each bad row and yields the good ones with the same
    types.

    Args:
        path: the file (`.parquet` / `.pq` is read as Parquet, anything else as CSV).
        required: columns that must be present (`FeedbackLogError` names the missing).
        integers: columns read as int64; a row whose value is not an integer is malformed.
        batch_rows: rows per batch (memory held while reading).

    Yields:
        `(frame, bad)` in file order: the batch's good rows with every column of the
        file plus `_line` (1-based line; for Parquet, the row number) and `_key`
        (a uint64 hash of the row's raw fields), and its malformed rows as
        `(line, message)` in line order.
    """
    if path.lower().endswith(PARQUET_SUFFIXES):
        yield from _read_parquet(path, required, integers, batch_rows)
        return
    schema = log_schema(path, required, integers)
    header = list(schema)
    done = 1  # the last line yielded
    try:
        for block, first_line, lines in line_blocks(path, batch_rows * _BYTES_PER_ROW):
            frame = pl.read_csv(block, schema=schema)
            if frame.height != lines:  # a quoted line break or an odd line: lines unknown
                raise _NeedsExactRead
            frame = (
                frame.with_row_index("_line", offset=first_line)
                .filter(~pl.all_horizontal(pl.col(c).is_null() for c in header))
                .with_columns(_line=pl.col("_line").cast(pl.Int64), _key=row_hash(header))
            )
            if frame.select(pl.any_horizontal(pl.col(c).is_null().any() for c in integers)).item():
                raise _NeedsExactRead
            if frame.height:
                yield frame, []
            done = first_line + lines - 1
    except (pl.exceptions.PolarsError, _NeedsExactRead):
        yield from _read_csv_exactly(path, required, integers, schema, after=done)


_BYTES_PER_ROW = 64
"""A CSV log is read in blocks of `batch_rows` times this many bytes."""


def line_blocks(
    path: str, block_bytes: int, *, header: bool = True
) -> Iterator[tuple[bytes, int, int]]:
    """A text file as blocks of whole lines: `(header + lines, first line's number, lines)`.

    Blocks end at a line break, so memory is a block, whatever the file's size. With
    `header`, the file's first line starts every block (and is not counted).
    """
    with open(path, "rb") as f:
        first = f.readline() if header else b""
        line = 2 if header else 1
        rest = b""
        while True:
            data = rest + f.read(block_bytes)
            end = data.rfind(b"\n") + 1 if len(data) > len(rest) else len(data)
            if end == 0 and len(data) > len(rest):  # one line longer than a block
                rest = data
                continue
            if not data:
                return
            block, rest = data[:end], data[end:]
            lines = block.count(b"\n") + (not block.endswith(b"\n"))
            yield first + block, line, lines
            line += lines


def log_schema(
    path: str, required: Sequence[str], integers: Sequence[str]
) -> dict[str, pl.DataType]:
    """The columns and types `read_log_batches` yields for a log file (its own columns only).

    CSV types are inferred from the first 10,000 rows (`integers` as int64; every
    column a string if those rows do not parse); `FeedbackLogError` names a missing
    file, an unreadable Parquet file or missing columns.
    """
    if path.lower().endswith(PARQUET_SUFFIXES):
        if not os.path.isfile(path):
            raise FeedbackLogError(f"cannot read {path}: no such file")
        try:
            schema = dict(pl.scan_parquet(path).collect_schema())
        except (pl.exceptions.PolarsError, OSError) as e:
            raise FeedbackLogError(f"{path}: unreadable Parquet file: {e}") from None
        missing = [c for c in required if c not in schema]
        if missing:
            raise FeedbackLogError(
                f"{path}: missing column(s) {missing}; the header has {list(schema)}"
            )
        return {c: pl.Int64 if c in integers else t for c, t in schema.items()}
    header = _check_header(path, required)
    scan = pl.scan_csv(
        path, schema_overrides={c: pl.Int64 for c in integers}, infer_schema_length=10_000
    )
    try:
        return dict(scan.collect_schema())
    except pl.exceptions.PolarsError:
        return {c: pl.Int64 if c in integers else pl.String for c in header}


def _check_header(path: str, required: Sequence[str]) -> list[str]:
    """The CSV file's header; `FeedbackLogError` names a missing file or columns."""
    rows = read_csv_with_header(path, required)
    try:
        index = next(rows, None)
    finally:
        rows.close()
    if index is None:
        return pl.read_csv(path, n_rows=0).columns
    return list(index[0])


def row_hash(columns: Sequence[str]) -> pl.Expr:
    """A uint64 hash of each row's `columns` (exact-duplicate detection).

    The sum, wrapping, of each column's own hash (seeded by its place in name order,
    so a file's column order does not matter): a third of the cost of hashing the
    row as one struct.
    """
    return pl.sum_horizontal(pl.col(c).hash(seed=i) for i, c in enumerate(sorted(columns)))


def _field_counts_differ(path: str, num_columns: int, num_rows: int) -> bool:
    """Whether a CSV file has a row of another field count than its header, or blank lines.

    Counts the separators outside double-quoted fields of each raw line; a file
    whose rows Polars would not map one-to-one onto its non-blank lines counts as
    differing too (the exact reader then names every bad row).
    """
    lines = pl.read_csv(
        path,
        has_header=False,
        separator="\x1f",
        quote_char=None,
        infer_schema=False,
        new_columns=["line"],
    )["line"]
    lines = lines.slice(1).str.strip_chars_end("\r")
    if lines.null_count() or (lines == "").any() or len(lines) != num_rows:
        return True
    fields = lines.str.replace_all('"[^"]*"', "").str.count_matches(",") + 1
    return bool((fields != num_columns).any())


def _read_parquet(
    path: str, required: Sequence[str], integers: Sequence[str], batch_rows: int
) -> Iterator[tuple[pl.DataFrame, BadRows]]:
    columns = list(log_schema(path, required, integers))
    lazy = (
        pl.scan_parquet(path)
        .with_row_index("_line", offset=1)
        .with_columns(_line=pl.col("_line").cast(pl.Int64), _key=row_hash(columns))
    )
    try:
        for frame in lazy.collect_batches(chunk_size=batch_rows):
            yield parse_integer_columns(frame, integers)
    except (pl.exceptions.PolarsError, OSError) as e:
        raise FeedbackLogError(f"{path}: unreadable Parquet file: {e}") from None


def _read_csv_exactly(
    path: str,
    required: Sequence[str],
    integers: Sequence[str],
    schema: dict[str, pl.DataType],
    *,
    after: int = 1,
    batch_rows: int = CHUNK_ROWS,
) -> Iterator[tuple[pl.DataFrame, BadRows]]:
    """The slow, exact reader for a file with bad rows: names each and its problem.

    Reads the rows after line `after`, in batches; `integers` become int64 and the
    columns `schema` types as integers or floats are parsed as such (a value that
    does not parse makes its row bad); the other columns stay strings.
    """
    kinds = {c: "int" for c in integers}
    for name, dtype in schema.items():
        if name not in kinds and dtype.is_integer():
            kinds[name] = "nullable_int"
        elif name not in kinds and dtype.is_float():
            kinds[name] = "nullable_float"
    header: list[str] = []
    bad: BadRows = []
    lines: list[int] = []
    kept: list[list[str]] = []

    def batch() -> tuple[pl.DataFrame, BadRows]:
        data = {name: [row[j] for row in kept] for j, name in enumerate(header)}
        frame = pl.DataFrame(data, schema={name: pl.String for name in header})
        frame = frame.with_columns(_line=pl.Series(lines, dtype=pl.Int64), _key=row_hash(header))
        frame, unparsed = parse_columns(frame, {c: k for c, k in kinds.items() if c in header})
        return frame.select("_line", *header, "_key"), sorted(bad + unparsed)

    for index, line, fields in read_csv_with_header(path, required):
        if not header:
            header = list(index)
        if line <= after:
            continue
        if len(fields) != len(index):
            bad.append((line, f"expected {len(index)} fields, found {len(fields)}"))
        else:
            lines.append(line)
            kept.append(fields)
        if len(kept) + len(bad) >= batch_rows:
            yield batch()
            bad, lines, kept = [], [], []
    if kept or bad:
        yield batch()


def parse_integer_columns(
    frame: pl.DataFrame, integers: Sequence[str]
) -> tuple[pl.DataFrame, BadRows]:
    """`integers` cast to int64 (`"12"` or `"12.0"`); rows where one is not an integer are bad.

    Args:
        frame: with an int64 `_line` column.
        integers: the columns to cast.

    Returns:
        `(frame, bad)`: the good rows with `integers` as int64, and the bad rows'
        `(line, message)` naming the first column that is not an integer.
    """
    return parse_columns(frame, {name: "int" for name in integers})


def _whole_number(text: pl.Expr) -> pl.Expr:
    """`text` (stripped) as int64 when it is an integer written as `"12"` or `"12.0"`, else null."""
    as_int = text.cast(pl.Int64, strict=False)
    as_float = text.cast(pl.Float64, strict=False)
    whole = as_float.is_finite() & (as_float == as_float.floor())
    return pl.when(as_int.is_not_null()).then(as_int).when(whole).then(as_float.cast(pl.Int64))


def parse_columns(frame: pl.DataFrame, kinds: dict[str, str]) -> tuple[pl.DataFrame, BadRows]:
    """Parse columns by kind; a row where one does not parse is bad.

    Kinds: `"int"` (int64, `"12"` or `"12.0"`); `"optional_int"` (the same, an empty
    or `nan` cell is `MISSING_INT`); `"optional_float"` (float64, an empty cell is nan);
    `"nullable_int"` / `"nullable_float"` (an empty cell is null, as Polars reads it);
    `"string"` (stripped of surrounding whitespace); `"date"` (`YYYY-MM-DD`, anything
    after the 10th character ignored, as the day's `datetime.date.toordinal()` in
    float64; an empty cell is nan).

    Args:
        frame: with an int64 `_line` column; the columns to parse as strings (or, for
            `"int"`, any type castable to int64).
        kinds: `{column: kind}`, in the order their problems are reported.

    Returns:
        `(frame, bad)`: the good rows with the columns parsed, and the bad rows'
        `(line, message)` naming the first column that does not parse.
    """
    parsed = {}
    messages = []
    for name, kind in kinds.items():
        col = pl.col(name)
        string = frame.schema[name] == pl.String
        text = col.str.strip_chars() if string else col
        if kind == "int":
            value = _whole_number(text) if string else col.cast(pl.Int64, strict=False)
            bad, wanted = value.is_null(), "an integer"
        elif kind == "optional_int":
            empty = (text == "") | (text.str.to_lowercase() == "nan")
            value = pl.when(empty).then(pl.lit(MISSING_INT)).otherwise(_whole_number(text))
            bad, wanted = value.is_null(), "an integer"
        elif kind in ("nullable_int", "nullable_float"):
            number = (
                _whole_number(text)
                if kind == "nullable_int"
                else text.cast(pl.Float64, strict=False)
            )
            value = pl.when(text != "").then(number)
            bad = value.is_null() & (text != "")
            wanted = "an integer" if kind == "nullable_int" else "a number"
        elif kind == "string":
            value, bad, wanted = text, pl.lit(False), ""
        elif kind == "date":
            day = text.str.slice(0, 10).str.to_date("%Y-%m-%d", strict=False)
            ordinal = day.cast(pl.Int32).cast(pl.Float64) + float(_EPOCH_ORDINAL)
            value = pl.when(text == "").then(float("nan")).otherwise(ordinal)
            bad, wanted = value.is_null(), "a YYYY-MM-DD date"
        elif kind == "optional_float":
            value = (
                pl.when(text == "")
                .then(float("nan"))
                .otherwise(text.cast(pl.Float64, strict=False))
            )
            bad, wanted = value.is_null(), "a number"
        else:
            raise ValueError(f"unknown column kind {kind!r} for {name!r}")
        shown = col.cast(pl.String).fill_null("")
        message = pl.format(
            "unreadable value: {} is not {}: '{}'", pl.lit(name), pl.lit(wanted), shown
        )
        messages.append(pl.when(bad).then(message))
        parsed[name] = value
    # One flat coalesce: the first column whose value does not parse (a chain of nested
    # when/otherwise over many columns made Polars' planner take minutes).
    reason = pl.coalesce(messages) if messages else pl.lit(None, dtype=pl.String)
    frame = frame.with_columns(_reason=reason).with_columns(**parsed)
    bad_frame = frame.filter(pl.col("_reason").is_not_null())
    bad = list(zip(bad_frame["_line"].to_list(), bad_frame["_reason"].to_list(), strict=True))
    return frame.filter(pl.col("_reason").is_null()).drop("_reason"), bad


def first_rows(frame: pl.DataFrame, key: str, what: str) -> tuple[pl.DataFrame, BadRows]:
    """The first row of each `key` value (file order); the later rows are bad: `(line, message)`.

    `what` names a key value in the message (`"user 7 listed again (first row kept)"`).
    """
    first = pl.col(key).is_first_distinct()
    again = frame.filter(~first)
    bad = [
        (line, f"{what} {value} listed again (first row kept)")
        for line, value in zip(again["_line"].to_list(), again[key].to_list(), strict=True)
    ]
    return frame.filter(first), bad


def report_bad_rows(
    policy: ErrorPolicy, path: str, bad: BadRows, kind: str = "malformed_rows"
) -> None:
    """Send one file's malformed rows to `policy`, in line order (`stop` raises at the first)."""
    for line, message in sorted(bad):
        policy.reject(kind, path, line, message)


def running_counts(
    group: np.ndarray, flag: np.ndarray, carried: np.ndarray, by_group: np.ndarray | None = None
) -> np.ndarray:
    """Per row, how many earlier rows of its group are flagged, chunk after chunk.

    Args:
        group: per row of this chunk, its group (a user's index, `0 <= group <
            len(carried)`), rows in processing order.
        flag: per row, whether it counts (e.g. it is a click).
        carried: per group, the flagged rows of the earlier chunks; updated in place
            to include this chunk's.
        by_group: `np.argsort(group, kind="stable")`, if already known (it is the
            same for every flag of a chunk).

    Returns:
        Per row, the flagged rows of its group strictly before it (earlier chunks
        included).

    Example:

    >>> carried = np.zeros(2, dtype=np.int64)
    >>> running_counts(np.array([0, 0, 1]), np.array([True, True, True]), carried)
    array([0, 1, 0])
    >>> running_counts(np.array([0, 1]), np.array([True, False]), carried)
    array([2, 1])
    """
    n = len(group)
    if by_group is None:
        by_group = np.argsort(group, kind="stable")
    flagged = flag[by_group].astype(np.int64)
    before = np.cumsum(flagged) - flagged  # flagged rows before, in the chunk's group order
    starts = np.ones(n, dtype=bool)
    sorted_group = group[by_group]
    starts[1:] = sorted_group[1:] != sorted_group[:-1]
    group_first = np.maximum.accumulate(np.where(starts, np.arange(n), 0))
    counts = np.empty(n, dtype=np.int64)
    counts[by_group] = before - before[group_first] + carried[sorted_group]
    carried += np.bincount(group[flag], minlength=len(carried))
    return counts


class RowStore:
    """Rows as NumPy columns, appended chunk by chunk and read back by row range.

    Held in memory, or, once `spill(folder)` was called, in one raw file per column
    under `folder`, read back with plain file reads (no memory map, so the pages
    read do not stay in the process).
    """

    def __init__(self) -> None:
        self.rows = 0
        self.folder: str | None = None
        self._chunks: list[dict[str, np.ndarray]] = []
        self._starts: list[int] = []
        self._dtypes: dict[str, np.dtype] = {}

    def __len__(self) -> int:
        return self.rows

    def append(self, columns: dict[str, np.ndarray]) -> None:
        """Adds rows (`{name: 1-D array}`, every chunk the same names and dtypes)."""
        n = len(next(iter(columns.values())))
        if not n:
            return
        if not self._dtypes:
            self._dtypes = {name: values.dtype for name, values in columns.items()}
        if self.folder is None:
            self._chunks.append(columns)
            self._starts.append(self.rows)
        else:
            for name, values in columns.items():
                with open(os.path.join(self.folder, name), "ab") as f:
                    np.ascontiguousarray(values, dtype=self._dtypes[name]).tofile(f)
        self.rows += n

    def spill(self, folder: str) -> None:
        """Moves the rows to files under `folder` (a new, empty folder); later rows go there too."""
        os.makedirs(folder)
        chunks, self._chunks, self._starts = self._chunks, [], []
        self.folder, self.rows = folder, 0
        for chunk in chunks:
            self.append(chunk)

    def read(self, start: int, stop: int) -> dict[str, np.ndarray]:
        """Rows `start:stop` as `{name: array}`."""
        stop = min(stop, self.rows)
        n = max(stop - start, 0)
        if self.folder is not None:
            return {
                name: np.fromfile(
                    os.path.join(self.folder, name),
                    dtype=dtype,
                    count=n,
                    offset=start * dtype.itemsize,
                )
                for name, dtype in self._dtypes.items()
            }
        first = max(bisect.bisect_right(self._starts, start) - 1, 0)
        pieces = []
        for chunk, at in zip(self._chunks[first:], self._starts[first:], strict=True):
            if at >= stop:
                break
            pieces.append({name: v[max(start - at, 0) : stop - at] for name, v in chunk.items()})
        if len(pieces) == 1:
            return pieces[0]
        return {
            name: np.concatenate([p[name] for p in pieces]) if pieces else np.zeros(0, dtype)
            for name, dtype in self._dtypes.items()
        }

    def column(self, name: str, start: int, stop: int) -> np.ndarray:
        """One column's rows `start:stop`."""
        if self.folder is None:
            return self.read(start, stop)[name]
        dtype = self._dtypes[name]
        return np.fromfile(
            os.path.join(self.folder, name),
            dtype=dtype,
            count=max(min(stop, self.rows) - start, 0),
            offset=start * dtype.itemsize,
        )


_SPARSE = 1024
"""Every how many rows (at most) a sorted run keeps its time in memory, to cut the merge's ranges."""


class _Run:
    """A sorted run of the log (by time, file, line), with a sparse index of its times."""

    def __init__(self, columns: dict[str, np.ndarray], sparse: int) -> None:
        order = np.lexsort((columns["line"], columns["file_index"], columns["time"]))
        self.store = RowStore()
        self.store.append({name: values[order] for name, values in columns.items()})
        self.step = sparse
        self.sparse = columns["time"][order][::sparse].copy()

    def position(self, time: int) -> int:
        """How many of the run's rows are earlier than `time`."""
        j = int(np.searchsorted(self.sparse, time, side="left"))
        if j == 0:
            return 0
        lo = (j - 1) * self.step  # sparse[j-1] < time <= sparse[j]
        window = self.store.column("time", lo, min(j * self.step, len(self.store)))
        return lo + int(np.searchsorted(window, time, side="left"))


def _merged(runs: list[_Run], range_rows: int) -> Iterator[dict[str, np.ndarray]]:
    """The runs' rows in (time, file, line) order, in ranges of about `range_rows` rows.

    The ranges are cut at timestamps, so the rows of one timestamp are in one
    range (exact duplicates share theirs).
    """
    if not runs:  # no valid row was read
        return
    pooled = np.sort(np.concatenate([run.sparse for run in runs]))
    step = max(range_rows // runs[0].step, 1)
    cuts = np.unique(pooled[step::step])
    cursor = [0] * len(runs)
    for cut in [*cuts.tolist(), None]:
        parts = []
        for k, run in enumerate(runs):
            stop = len(run.store) if cut is None else run.position(cut)
            if stop > cursor[k]:
                parts.append(run.store.read(cursor[k], stop))
                cursor[k] = stop
        if len(parts) == 1:  # one run's rows: already in order
            yield parts[0]
            continue
        if not parts:
            continue
        columns = {name: np.concatenate([p[name] for p in parts]) for name in parts[0]}
        order = np.lexsort((columns["line"], columns["file_index"], columns["time"]))
        yield {name: values[order] for name, values in columns.items()}


class _EventTable:
    """An event table filled by position (`put`), read back in order (`chunks`).

    In memory, or under a scratch folder as buckets of `bucket_rows` positions
    (each a file of `(position, value)` pairs), when the table may not fit.
    """

    def __init__(self, rows: int, folder: str | None, bucket_rows: int) -> None:
        self.rows, self.folder, self.bucket_rows = rows, folder, bucket_rows
        self._values = np.zeros(rows if folder is None else 0, dtype=np.int64)
        if folder is not None:
            os.makedirs(folder)

    def put(self, positions: np.ndarray, values: np.ndarray) -> None:
        if self.folder is None:
            self._values[positions] = values
            return
        if not len(positions):
            return
        bucket = positions // self.bucket_rows
        order = np.argsort(bucket, kind="stable")
        bucket, pairs = bucket[order], np.stack([positions[order], values[order]], axis=1)
        cuts = np.flatnonzero(np.diff(bucket)) + 1
        for b, part in zip(bucket[np.r_[0, cuts]].tolist(), np.split(pairs, cuts), strict=True):
            if len(part):
                with open(os.path.join(self.folder, str(b)), "ab") as f:
                    part.astype(np.int64).tofile(f)

    def chunks(self) -> Iterator[np.ndarray]:
        if self.folder is None:
            yield self._values
            return
        for start in range(0, self.rows, self.bucket_rows):
            size = min(self.bucket_rows, self.rows - start)
            values = np.zeros(size, dtype=np.int64)
            path = os.path.join(self.folder, str(start // self.bucket_rows))
            if os.path.exists(path):
                pairs = np.fromfile(path, dtype=np.int64).reshape(-1, 2)
                values[pairs[:, 0] - start] = pairs[:, 1]
            yield values


def prepare_source(
    make_source: Callable[[ErrorPolicy], FeedbackSource],
    out_dir: str | os.PathLike,
    options: PrepareOptions,
) -> dict[str, Any]:
    """Build a loader's source (it reads its side tables with the error policy) and prepare it.

    Args:
        make_source: the loader's source, given the error policy for its bad rows.
        out_dir: the dataset directory to write.
        options: the shared options.

    Returns:
        The meta written to `meta.json` (see `prepare_impressions`).
    """
    policy = ErrorPolicy(options.on_error)
    source = make_source(policy)
    return prepare_impressions(source, out_dir, options, policy)


def _num_test(n: np.ndarray, test_fraction: float) -> np.ndarray:
    return np.minimum(n, np.floor(n * test_fraction + 0.5).astype(np.int64))


_WORKING_COPIES = 8
"""A run's rows are held about this many times over while it is sorted or merged (measured on
2.2M and 4.4M rows: peak RSS above the ~650 MiB of imports stayed under the limit at 256-1024
MiB; at 64-128 MiB about 200-300 MiB of fixed costs, the side tables and Polars, dominate)."""


def _columns_of(batch: Impressions) -> dict[str, np.ndarray]:
    columns = {name: getattr(batch, name) for name in _ROW_FIELDS}
    columns.update({f"context.{name}": values for name, values in batch.context.items()})
    return columns


_ROW_FIELDS = ("time", "user", "item", "feedback", "label", "file_index", "line", "row_key")


def _sorted_runs(
    batches: Iterable[Impressions],
    memory_limit_bytes: int,
    run_rows: int | None,
    scratch: Callable[[], str],
) -> list[_Run]:
    """The log's batches as sorted runs of `run_rows` rows (default: as many as fit the limit).

    One run stays in memory; from the second on, every run is spilled to a folder
    made by `scratch()`.
    """
    runs: list[_Run] = []
    buffer: list[dict[str, np.ndarray]] = []
    buffered = 0

    def flush() -> None:
        nonlocal buffer, buffered
        columns = {name: np.concatenate([b[name] for b in buffer]) for name in buffer[0]}
        buffer, buffered = [], 0
        runs.append(_Run(columns, min(_SPARSE, max(run_rows // 16, 1))))
        if len(runs) > 1:
            for k, run in enumerate(runs):
                if run.store.folder is None:
                    run.store.spill(os.path.join(scratch(), f"run-{k}"))

    for batch in batches:
        columns, n = _columns_of(batch), len(batch)
        if n and not run_rows:
            row_bytes = sum(v.dtype.itemsize for v in columns.values())
            run_rows = max(memory_limit_bytes // (row_bytes * _WORKING_COPIES), CHUNK_ROWS)
        while n:
            take = min(run_rows - buffered, n)
            buffer.append({name: values[:take] for name, values in columns.items()})
            columns = {name: values[take:] for name, values in columns.items()}
            buffered, n = buffered + take, n - take
            if buffered == run_rows:
                flush()
    if buffer:
        flush()
    return runs


def prepare_impressions(
    source: FeedbackSource,
    out_dir: str | os.PathLike,
    options: PrepareOptions,
    policy: ErrorPolicy,
    *,
    chunk_rows: int = CHUNK_ROWS,
    run_rows: int | None = None,
) -> dict[str, Any]:
    """Sort, clean, split, build the sequences of and write a source's log (see the module docstring).

    Args:
        source: the loader: its log in batches (`impressions`), side tables
            (`users`, `items`), `item_features`, `context_columns`, schema builder
            and `describe()`.
        out_dir: the dataset directory to write.
        options: the shared options (`memory_limit` bounds the rows held at once).
        policy: the error policy the loader used while reading (its skipped rows are
            reported too).
        chunk_rows: rows per chunk handed to the writer.
        run_rows: rows per sorted run (default: as many as `options.memory_limit`
            allows); a log longer than one run is sorted out of core.

    Returns:
        The meta written to `meta.json`: `source`, `files`, `split` (with the first
        test impression for a time split), `impressions`, `users`, `time_range`,
        `feedback_counts` per split, `duplicates_dropped`, `imputed`, `skipped`
        (counts by kind), `skipped_examples`, `spilled` (whether the log went
        through the scratch folder) and the writer's `splits`.
    """
    out_dir = os.fspath(out_dir)
    scratch_dir: list[str] = []
    scratch_parent = options.temp_dir or os.path.dirname(os.path.abspath(out_dir))
    # Named after the dataset, so that a run holding its lock can clear what a killed one left.
    key = hashlib.sha1(os.path.abspath(out_dir).encode()).hexdigest()[:12]
    scratch_prefix = f".widedeep-prepare-{key}-"

    def scratch() -> str:
        if not scratch_dir:
            os.makedirs(scratch_parent, exist_ok=True)
            scratch_dir.append(tempfile.mkdtemp(prefix=scratch_prefix, dir=scratch_parent))
        return scratch_dir[0]

    def scratch_bytes() -> int:
        # At the peak the sorted runs and the merged log are both on disk, about 2.5 times
        # a CSV log's bytes (17.5 MB for the 7.1 MB KuaiRand dev log at --memory-limit 16).
        logs = sum(os.path.getsize(path) for path in source.logs if os.path.isfile(path))
        return int(2.5 * logs)

    with directory_lock(out_dir, "--out", "prepare"), contextlib.ExitStack() as on_failure:
        for stale in glob.glob(os.path.join(glob.escape(scratch_parent), scratch_prefix + "*")):
            shutil.rmtree(stale, ignore_errors=True)
        try:
            return _prepare(
                source,
                out_dir,
                options,
                policy,
                chunk_rows,
                run_rows,
                scratch,
                scratch_dir,
                on_failure,
            )
        except Exception as error:
            # The dataset writer names itself when the disk fills up; the sort's scratch does not.
            if isinstance(error, NoSpaceError) or not is_out_of_space(error):
                raise
            where, flag = (scratch_parent, "--temp-dir") if scratch_dir else (out_dir, "--out")
            raise NoSpaceError(where, scratch_bytes(), flag) from error
        finally:
            if scratch_dir:
                shutil.rmtree(scratch_dir[0], ignore_errors=True)


def _prepare(
    source: FeedbackSource,
    out_dir: str,
    options: PrepareOptions,
    policy: ErrorPolicy,
    chunk_rows: int,
    run_rows: int | None,
    scratch: Callable[[], str],
    scratch_dir: list[str],
    on_failure: contextlib.ExitStack,
) -> dict[str, Any]:
    from widedeep.data.writer import DatasetWriter

    L = options.max_length
    started = time.monotonic()
    limit = options.memory_limit * 2**20
    progress = Progress(f"{source.name}: read and sort", options.progress)
    batches = (progress.update(len(b)) or b for b in source.impressions(policy, chunk_rows))
    runs = _sorted_runs(batches, limit, run_rows, scratch)
    progress.done()
    spilled = bool(scratch_dir)
    paths = source.logs
    users, items = source.users, source.items
    n_users = len(users)

    # Merge: exact duplicates (equal row keys within one timestamp, the first kept) and
    # rows of unknown users or items dropped; the sorted log kept (or spilled) with
    # each row's user and item index, and per-user counts of every feedback type.
    log = RowStore()
    if spilled:
        log.spill(os.path.join(scratch(), "log"))
    per_type = np.zeros((len(FEEDBACK_TYPES), n_users), dtype=np.int64)
    duplicates_dropped = 0
    progress = Progress(f"{source.name}: merge", options.progress and spilled)
    range_rows = runs[0].store.rows if runs else 0
    for rows in _merged(runs, max(range_rows, chunk_rows)):
        progress.update(len(rows["time"]))
        n = len(rows["time"])
        by_key = np.lexsort((np.arange(n), rows["row_key"], rows["time"]))
        same = np.zeros(n, dtype=bool)
        same[1:] = (rows["time"][by_key][1:] == rows["time"][by_key][:-1]) & (
            rows["row_key"][by_key][1:] == rows["row_key"][by_key][:-1]
        )
        keep = np.ones(n, dtype=bool)
        keep[by_key] = ~same
        duplicates_dropped += int(n - keep.sum())
        user_index = users.indices(rows["user"])
        item_index = items.indices(rows["item"])
        unknown_user = keep & (user_index < 0)
        unknown_item = keep & ~unknown_user & (item_index < 0)
        _reject_unknown(policy, users, items, rows, paths, unknown_user, unknown_item)
        keep &= ~(unknown_user | unknown_item)
        kept = {name: values[keep] for name, values in rows.items() if name != "row_key"}
        kept["user_index"], kept["item_index"] = user_index[keep], item_index[keep]
        per_type += np.bincount(
            kept["feedback"] * n_users + kept["user_index"], minlength=per_type.size
        ).reshape(per_type.shape)
        log.append(kept)
    progress.done()
    del runs
    n_total = len(log)
    if n_total == 0:
        raise FeedbackLogError(
            f"{source.name}: no valid impression in the log ({policy.summary()})"
        )
    if policy.counts:
        print(f"{source.name}: {policy.summary()}", file=sys.stderr, flush=True)

    # The split.
    per_user = per_type.sum(axis=0)
    n_train = n_total - int(_num_test(np.array(n_total), options.test_fraction))
    train_quota = per_user - _num_test(per_user, options.test_fraction)
    split_meta: dict[str, Any] = {
        "by": options.split_by,
        "test_fraction": float(options.test_fraction),
    }
    if options.split_by == "time" and n_train < n_total:
        first_test = log.read(n_train, n_train + 1)
        split_meta["test_starts_at"] = {
            "time": int(first_test["time"][0]),
            "file": paths[int(first_test["file_index"][0])],
            "line": int(first_test["line"][0]),
        }

    # Where each impression's sequences are: the records hold positions in per-type event
    # tables (each user's events in order, user after user), which the reader gathers
    # (see `widedeep.data.tables`).
    codes = [FEEDBACK_TYPES.index(name) for name in FEEDBACK_SEQUENCES]
    offsets = [np.concatenate([[0], np.cumsum(per_type[c])[:-1]]) for c in codes]
    events = [
        _EventTable(
            int(per_type[c].sum()),
            os.path.join(scratch(), f"events-{name}") if spilled else None,
            max(range_rows, 1),
        )
        for c, name in zip(codes, FEEDBACK_SEQUENCES, strict=True)
    ]
    carried = [np.zeros(n_users, dtype=np.int64) for _ in codes]
    user_rows_before = np.zeros(n_users, dtype=np.int64)  # for the per-user split

    item_history = list(ITEM_HISTORY_FEATURES if options.item_history else ())
    dtypes = {**source.column_dtypes(), **dict.fromkeys(item_history, "float32")}
    item_shown = np.zeros(len(items), dtype=np.int64)
    item_clicked = np.zeros(len(items), dtype=np.int64)
    log_seen = log_clicked = 0
    categorical = [n for n, d in dtypes.items() if d != "float32" and not _is_sequence(n)]
    numeric = [n for n, d in dtypes.items() if d == "float32"]
    stats = TrainStatistics(categorical, numeric)
    writer = DatasetWriter(
        out_dir, options.num_shards, overwrite=options.overwrite, expected_rows=n_total
    )
    on_failure.enter_context(writer)  # a failure from here on removes what was written
    progress = Progress(f"{source.name}: write", options.progress)
    train_users = np.zeros(n_users, dtype=np.int64)
    train_items = np.zeros(len(items), dtype=np.int64)
    counts = {split: np.zeros(len(FEEDBACK_TYPES), dtype=np.int64) for split in ("train", "test")}
    for start in range(0, n_total, chunk_rows):
        rows = log.read(start, start + chunk_rows)
        user_index, feedback = rows["user_index"], rows["feedback"]
        by_user = np.argsort(user_index, kind="stable")
        if options.split_by == "time":
            is_test = np.arange(start, start + len(user_index)) >= n_train
        else:
            every = np.ones(len(user_index), bool)
            rank = running_counts(user_index, every, user_rows_before, by_user)
            is_test = rank >= train_quota[user_index]
        columns: dict[str, np.ndarray] = {source.user_column: rows["user"]}
        if users.columns:
            columns[USER_ROW] = user_index
        columns[ITEM_ROW] = rows["item_index"]
        for name in source.context_columns:
            columns[name] = source.context_values(name, rows[f"context.{name}"])
        for k, (name, code) in enumerate(zip(FEEDBACK_SEQUENCES, codes, strict=True)):
            is_event = feedback == code
            count = running_counts(user_index, is_event, carried[k], by_user)
            end = offsets[k][user_index] + count
            events[k].put(end[is_event], rows["item_index"][is_event])
            columns[f"@{name}_end"] = end
            columns[f"@{name}_count"] = np.minimum(count, L)
        if item_history:
            item_index, clicked = rows["item_index"], rows["label"] == 1
            by_item = np.argsort(item_index, kind="stable")
            shown = running_counts(item_index, np.ones(len(item_index), bool), item_shown, by_item)
            hits = running_counts(item_index, clicked, item_clicked, by_item)
            log_hits = log_clicked + np.cumsum(clicked) - clicked
            prior = (log_hits + 1.0) / (log_seen + np.arange(len(clicked)) + 2.0)
            log_seen, log_clicked = log_seen + len(clicked), log_clicked + int(clicked.sum())
            a = ITEM_HISTORY_SMOOTHING
            columns["item_log_impressions"] = np.log1p(shown).astype(np.float32)
            columns["item_ctr"] = ((hits + a * prior) / (shown + a)).astype(np.float32)
        columns["label"] = rows["label"]
        columns["feedback"] = feedback
        for split, mask in (("train", ~is_test), ("test", is_test)):
            if mask.any():
                writer.write(split, _encoded({n: v[mask] for n, v in columns.items()}))
                counts[split] += np.bincount(feedback[mask], minlength=len(FEEDBACK_TYPES))
        train = ~is_test
        # The log's own columns over train rows (chunk by chunk); side-table columns
        # once per user / item below, weighted by its train impressions.
        stats.update(
            {name: columns[name][train] for name in [*source.context_columns, *item_history]}
        )
        train_users += np.bincount(user_index[train], minlength=n_users)
        train_items += np.bincount(rows["item_index"][train], minlength=len(items))
        progress.update(len(user_index))
    progress.done()
    time_range = [
        int(log.column("time", 0, 1)[0]),
        int(log.column("time", n_total - 1, n_total)[0]),
    ]
    del log

    # Side features and sequences are lookups: tables written once, rows in the records.
    lookups: dict[str, Lookup] = {}
    for table, row, columns in (
        (USER_TABLE, USER_ROW, users.columns),
        (ITEM_TABLE, ITEM_ROW, items.columns),
    ):
        if columns:
            writer.write_table(table, _encoded(columns))
            lookups.update({name: Lookup(table, name, row=row) for name in columns})
    for name, table in zip(FEEDBACK_SEQUENCES, events, strict=True):
        writer.write_table(
            f"{name}_events", {EVENT_ROW: ColumnChunks(table.rows, np.int64, table.chunks)}
        )
        lookups.update(
            {
                f"{name}_{f}": Lookup(
                    ITEM_TABLE,
                    f,
                    events=f"{name}_events",
                    end=f"@{name}_end",
                    count=f"@{name}_count",
                )
                for f in source.item_features
            }
        )

    stats.update({source.user_column: users.keys, **users.gather(np.arange(n_users))}, train_users)
    stats.update(items.gather(np.arange(len(items))), train_items)
    schema = source.build_schema(stats, L)
    schema = dataclasses.replace(
        schema, numeric=[*schema.numeric, *(numeric_feature(stats, n) for n in item_history)]
    )
    expected = set(dtypes) | {schema.label, schema.feedback, schema.group_key}
    declared = set(schema.input_signature()) | {schema.label, schema.feedback, schema.group_key}
    if declared != expected:
        raise AssertionError(
            f"{source.name} schema inputs differ from written columns: "
            f"missing {sorted(expected - declared)}, extra {sorted(declared - expected)}"
        )
    meta = {
        "source": source.name,
        **source.describe(),
        "max_length": L,
        "split": split_meta,
        "impressions": n_total,
        "users": int(np.count_nonzero(per_user)),
        "time_range": time_range,
        "feedback_counts": {
            split: dict(zip(FEEDBACK_TYPES, c.tolist(), strict=True)) for split, c in counts.items()
        },
        "duplicates_dropped": duplicates_dropped,
        "imputed": {
            f"{table.name}.{col}": n for table in (users, items) for col, n in table.imputed.items()
        },
        "skipped": policy.report(),
        "skipped_examples": {k: list(v) for k, v in policy.examples.items()},
        "on_error": options.on_error,
        "spilled": spilled,
        **source.report(schema),
    }
    meta = writer.close(schema, meta, lookups, source.dataset_files())
    if options.progress:
        seconds = time.monotonic() - started
        train, test = (int(c.sum()) for c in counts.values())
        print(
            f"{source.name}: {n_total:,} impressions of {meta['users']:,} users "
            f"(train {train:,}, test {test:,}), {duplicates_dropped:,} duplicates dropped"
            f"{', ' + policy.summary() if policy.counts else ''}; "
            f"{'sorted out of core, ' if spilled else ''}{seconds:.1f} s "
            f"({n_total / max(seconds, 1e-9):,.0f} impressions/s); written to {out_dir}",
            file=sys.stderr,
            flush=True,
        )
    return meta


def _reject_unknown(
    policy: ErrorPolicy,
    users: FeatureTable,
    items: FeatureTable,
    rows: dict[str, np.ndarray],
    paths: list[str],
    unknown_user: np.ndarray,
    unknown_item: np.ndarray,
) -> None:
    """Reports one range's rows of unknown users or items, in processing order."""
    bad = np.flatnonzero(unknown_user | unknown_item)
    if policy.on_error == "stop":
        bad = bad[:1]  # `stop` raises at the first bad row of either kind
    for kind, unknown, table, column in (
        ("unknown_users", unknown_user, users, "user"),
        ("unknown_items", unknown_item, items, "item"),
    ):
        found = bad[unknown[bad]]
        shown = found[:1] if policy.on_error == "stop" else found[:5]
        for r in shown.tolist():
            policy.reject(
                kind,
                paths[int(rows["file_index"][r])],
                int(rows["line"][r]),
                f"{column} {rows[column][r]} is not in {table.path}",
            )
        if policy.counting and found.size > shown.size:
            policy.counts[kind] += int(found.size - shown.size)


def _encoded(columns: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """String (object) columns as fixed-width UTF-8 bytes, which the writer encodes without a loop."""
    return {
        name: np.array([v.encode() for v in values.ravel().tolist()], dtype="S").reshape(
            values.shape
        )
        if values.dtype == object
        else values
        for name, values in columns.items()
    }


def _is_sequence(name: str) -> bool:
    return any(name.startswith(f"{s}_") for s in FEEDBACK_SEQUENCES)
