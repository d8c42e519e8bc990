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

Memory: the whole log's key columns, sorted in memory (not out of core), plus the
side tables plus one chunk; the sequences are never materialised.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import polars as pl

from widedeep.data.feedback_log import (
    FEEDBACK_TYPES,
    SEQUENCE_NAMES,
    ErrorPolicy,
    FeedbackLogError,
    FeedbackSource,
    PrepareOptions,
    Progress,
    TrainStatistics,
    read_csv_with_header,
)
from widedeep.data.tables import EVENT_ROW, Lookup
from widedeep.schema import MISSING_INT

__all__ = [
    "Impressions",
    "prepare_impressions",
    "prepare_source",
    "parse_columns",
    "parse_integer_columns",
    "read_log",
    "report_bad_rows",
    "row_hash",
    "sequence_positions",
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
    """A log as columns, one entry per row in file order (the engine sorts it).

    Attributes:
        time: timestamps (any monotone integer unit), int64.
        user: raw user ids, int64.
        item: raw item ids, int64.
        feedback: index into `FEEDBACK_TYPES` per row.
        label: 1 if clicked, else 0.
        file_index: position of each row's file in `paths` (tie-break).
        line: 1-based line of each row in its file (tie-break and messages).
        row_key: uint64 hash of each row's raw fields (exact-duplicate detection).
        paths: the files, in the order given.
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
    paths: list[str]
    context: dict[str, np.ndarray] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.time)

    def take(self, rows: np.ndarray) -> Impressions:
        """The rows at `rows` (indices or a boolean mask), in that order."""
        return Impressions(
            **{
                name: getattr(self, name)[rows]
                for name in ("time", "user", "item", "feedback", "label", "file_index", "line")
            },
            row_key=self.row_key[rows],
            paths=self.paths,
            context={name: values[rows] for name, values in self.context.items()},
        )

    @staticmethod
    def concat(parts: Sequence[Impressions], paths: list[str]) -> Impressions:
        """One table from per-file tables (their `file_index` already set)."""
        context_names = list(parts[0].context) if parts else []

        def cat(values: list[np.ndarray], dtype: Any) -> np.ndarray:
            return np.concatenate(values) if values else np.zeros(0, dtype=dtype)

        return Impressions(
            **{
                name: cat([getattr(p, name) for p in parts], np.int64)
                for name in ("time", "user", "item", "feedback", "label", "file_index", "line")
            },
            row_key=cat([p.row_key for p in parts], np.uint64),
            paths=paths,
            context={n: cat([p.context[n] for p in parts], np.float32) for n in context_names},
        )


BadRows = list[tuple[int, str]]
"""`(line, message)` of malformed rows of one file."""


class _NeedsExactRead(Exception):
    """The fast reader met something only the exact reader can name (a ragged row, a bad value)."""


def read_log(
    path: str, required: Sequence[str], integers: Sequence[str], *, infer_types: bool = True
) -> tuple[pl.DataFrame, BadRows]:
    """Read a CSV (with a header) or Parquet log into a frame, validating it.

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
    if path.lower().endswith(PARQUET_SUFFIXES):
        return _read_parquet(path, required, integers)
    rows = read_csv_with_header(path, required)  # checks the header; names missing columns
    next(rows, None)
    rows.close()
    try:
        if infer_types:
            frame = pl.read_csv(
                path,
                schema_overrides={c: pl.Int64 for c in integers},
                infer_schema_length=10_000,
                try_parse_dates=False,
            )
        else:
            frame = pl.read_csv(path, infer_schema=False)
        frame = frame.with_row_index("_line", offset=2)
        columns = [c for c in frame.columns if c != "_line"]
        frame = frame.filter(~pl.all_horizontal(pl.col(c).is_null() for c in columns))
        if not infer_types:
            if _field_counts_differ(path, len(columns), frame.height):
                raise _NeedsExactRead  # Polars pads a short row with empty strings
            frame = frame.with_columns(
                pl.col(c).fill_null("") for c in columns if c not in integers
            )
            frame, unparsed = parse_integer_columns(frame, integers)
            if unparsed:
                raise _NeedsExactRead
        if frame.select(pl.any_horizontal(pl.col(c).is_null().any() for c in integers)).item():
            raise _NeedsExactRead
    except (pl.exceptions.PolarsError, _NeedsExactRead):
        return _read_csv_exactly(path, required, integers)
    frame = frame.with_columns(_line=pl.col("_line").cast(pl.Int64), _key=row_hash(columns))
    return frame, []


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
    path: str, required: Sequence[str], integers: Sequence[str]
) -> tuple[pl.DataFrame, BadRows]:
    if not os.path.isfile(path):
        raise FeedbackLogError(f"cannot read {path}: no such file")
    try:
        frame = pl.read_parquet(path)
    except (pl.exceptions.PolarsError, OSError) as e:
        raise FeedbackLogError(f"{path}: unreadable Parquet file: {e}") from None
    missing = [c for c in required if c not in frame.columns]
    if missing:
        raise FeedbackLogError(
            f"{path}: missing column(s) {missing}; the header has {frame.columns}"
        )
    columns = list(frame.columns)
    frame = frame.with_row_index("_line", offset=1).with_columns(
        _line=pl.col("_line").cast(pl.Int64), _key=row_hash(columns)
    )
    return parse_integer_columns(frame, integers)


def _read_csv_exactly(
    path: str, required: Sequence[str], integers: Sequence[str]
) -> tuple[pl.DataFrame, BadRows]:
    """The slow, exact reader for a file with bad rows: names each and its problem."""
    bad: BadRows = []
    lines: list[int] = []
    kept: list[list[str]] = []
    header: list[str] = []
    for index, line, fields in read_csv_with_header(path, required):
        if not header:
            header = list(index)
        if len(fields) != len(index):
            bad.append((line, f"expected {len(index)} fields, found {len(fields)}"))
            continue
        lines.append(line)
        kept.append(fields)
    data = {name: [row[j] for row in kept] for j, name in enumerate(header)}
    frame = pl.DataFrame(data, schema={name: pl.String for name in header})
    frame = frame.with_columns(_line=pl.Series(lines, dtype=pl.Int64), _key=row_hash(header))
    frame, unparsed = parse_integer_columns(frame, integers)
    return frame, sorted(bad + unparsed)


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


def reject_rows(
    policy: ErrorPolicy,
    kind: str,
    log: Impressions,
    rows: np.ndarray,
    message: Callable[[int], str],
) -> None:
    """Send the bad `rows` of `log` (indices, in processing order) to `policy` at once.

    With `on_error="stop"` the first one raises; otherwise all are counted and the
    first few kept as examples. `message(row)` describes one row.
    """
    rows = np.asarray(rows)
    if rows.size == 0:
        return
    shown = rows[:1] if policy.on_error == "stop" else rows[:5]
    for r in shown.tolist():
        policy.reject(kind, log.paths[int(log.file_index[r])], int(log.line[r]), message(r))
    if policy.counting and rows.size > shown.size:
        policy.counts[kind] += int(rows.size - shown.size)


def sequence_positions(
    group: np.ndarray, feedback: np.ndarray, code: int, by_group: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Where each row's earlier same-group events of type `code` are, vectorised.

    Args:
        group: per row, its user (any integers), rows in processing order.
        feedback: per row, its feedback code.
        code: the feedback type of the sequence.
        by_group: `np.argsort(group, kind="stable")`, if already known (it is the
            same for every feedback type).

    Returns:
        `(events, end, count)`: `events` lists the rows of type `code` grouped by
        user, each user's in processing order; row `r`'s `j`-th most recent earlier
        event of that type is `events[end[r] - 1 - j]` for `j < count[r]`.

    Example:

    >>> events, end, count = sequence_positions(
    ...     np.array([0, 0, 1, 0]), np.array([1, 1, 1, 0]), code=1)
    >>> [events[end[3] - 1 - j] for j in range(count[3])]  # row 3 sees rows 1, 0
    [1, 0]
    """
    n = len(group)
    if by_group is None:
        by_group = np.argsort(group, kind="stable")
    is_code = feedback[by_group] == code
    before = np.cumsum(is_code, dtype=np.int64) - is_code  # events of the type before, globally
    starts = np.ones(n, dtype=bool)
    if n:
        sorted_group = group[by_group]
        starts[1:] = sorted_group[1:] != sorted_group[:-1]
    group_first = np.maximum.accumulate(np.where(starts, np.arange(n), 0))
    end = np.empty(n, dtype=np.int64)
    count = np.empty(n, dtype=np.int64)
    end[by_group] = before
    count[by_group] = before - before[group_first]
    return by_group[is_code], end, count


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
    return prepare_impressions(source, source.impressions(policy), out_dir, options, policy)


def _num_test(n: np.ndarray, test_fraction: float) -> np.ndarray:
    return np.minimum(n, np.floor(n * test_fraction + 0.5).astype(np.int64))


def prepare_impressions(
    source: FeedbackSource,
    log: Impressions,
    out_dir: str | os.PathLike,
    options: PrepareOptions,
    policy: ErrorPolicy,
    *,
    chunk_rows: int = CHUNK_ROWS,
) -> dict[str, Any]:
    """Sort, clean, split, build the sequences of and write `log` (see the module docstring).

    Args:
        source: the loader: its side tables (`users`, `items`), `item_features`,
            `context_columns`, schema builder and `describe()`.
        log: the impressions, in file order.
        out_dir: the dataset directory to write.
        options: the shared options.
        policy: the error policy the loader used while reading (its skipped rows are
            reported too).
        chunk_rows: rows per chunk handed to the writer (bounds working memory).

    Returns:
        The meta written to `meta.json`: `source`, `files`, `split` (with the first
        test impression for a time split), `impressions`, `users`, `time_range`,
        `feedback_counts` per split, `duplicates_dropped`, `imputed`, `skipped`
        (counts by kind), `skipped_examples` and the writer's `splits`.
    """
    from widedeep.data.records import DatasetWriter

    L = options.max_length
    progress = Progress(f"{source.name}: sort", options.progress)
    order = np.lexsort((log.line, log.file_index, log.time))
    log = log.take(order)
    progress.update(len(log))
    progress.done()

    # Exact duplicates: equal row keys within one timestamp, the first one kept.
    n_read = len(log)
    by_key = np.lexsort((np.arange(n_read), log.row_key, log.time))
    same = np.zeros(n_read, dtype=bool)
    same[1:] = (log.time[by_key][1:] == log.time[by_key][:-1]) & (
        log.row_key[by_key][1:] == log.row_key[by_key][:-1]
    )
    duplicate = np.zeros(n_read, dtype=bool)
    duplicate[by_key] = same
    log = log.take(~duplicate)
    duplicates_dropped = int(duplicate.sum())

    users, items = source.users, source.items
    user_index = users.indices(log.user)
    item_index = items.indices(log.item)
    unknown_user = user_index < 0
    unknown_item = ~unknown_user & (item_index < 0)
    bad = np.flatnonzero(unknown_user | unknown_item)
    # One pass in processing order, so `stop` raises at the first bad row of either kind.
    first_user = bad[unknown_user[bad]]
    first_item = bad[unknown_item[bad]]
    if policy.on_error == "stop" and bad.size:
        first = bad[:1]
        first_user, first_item = first[unknown_user[first]], first[unknown_item[first]]
    reject_rows(
        policy,
        "unknown_users",
        log,
        first_user,
        lambda r: f"user {log.user[r]} is not in {users.path}",
    )
    reject_rows(
        policy,
        "unknown_items",
        log,
        first_item,
        lambda r: f"item {log.item[r]} is not in {items.path}",
    )
    valid = ~(unknown_user | unknown_item)
    log = log.take(valid)
    user_index, item_index = user_index[valid], item_index[valid]
    n_total = len(log)
    if n_total == 0:
        raise FeedbackLogError(
            f"{source.name}: no valid impression in the log ({policy.summary()})"
        )
    if policy.counts:
        print(f"{source.name}: {policy.summary()}", file=sys.stderr, flush=True)

    by_user = np.argsort(user_index, kind="stable")  # each user's rows, in processing order
    # The split.
    if options.split_by == "time":
        n_train = n_total - int(_num_test(np.array(n_total), options.test_fraction))
        is_test = np.arange(n_total) >= n_train
    else:
        per_user = np.bincount(user_index, minlength=len(users))
        first_of_user = np.concatenate([[0], np.cumsum(per_user)[:-1]])
        rank = np.empty(n_total, dtype=np.int64)
        rank[by_user] = np.arange(n_total) - first_of_user[user_index[by_user]]
        is_test = rank >= (per_user - _num_test(per_user, options.test_fraction))[user_index]
    split_meta: dict[str, Any] = {
        "by": options.split_by,
        "test_fraction": float(options.test_fraction),
    }
    if options.split_by == "time" and n_train < n_total:
        split_meta["test_starts_at"] = {
            "time": int(log.time[n_train]),
            "file": log.paths[int(log.file_index[n_train])],
            "line": int(log.line[n_train]),
        }

    # Where each impression's sequences are: the records hold positions in per-type event
    # tables, which the reader gathers (see `widedeep.data.tables`).
    positions = [
        sequence_positions(user_index, log.feedback, FEEDBACK_TYPES.index(name), by_user)
        for name in SEQUENCE_NAMES
    ]

    dtypes = source.column_dtypes()
    categorical = [n for n, d in dtypes.items() if d != "float32" and not _is_sequence(n)]
    numeric = [n for n, d in dtypes.items() if d == "float32"]
    stats = TrainStatistics(categorical, numeric)
    writer = DatasetWriter(out_dir, options.num_shards, overwrite=options.overwrite)
    progress = Progress(f"{source.name}: write", options.progress)

    # Side features and sequences are lookups: tables written once, rows in the records.
    lookups: dict[str, Lookup] = {}
    for table, row, columns in (
        (USER_TABLE, USER_ROW, users.columns),
        (ITEM_TABLE, ITEM_ROW, items.columns),
    ):
        if columns:
            writer.write_table(table, _encoded(columns))
            lookups.update({name: Lookup(table, name, row=row) for name in columns})
    for name, (events, _, _) in zip(SEQUENCE_NAMES, positions, strict=True):
        writer.write_table(f"{name}_events", {EVENT_ROW: item_index[events]})
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

    def chunk_columns(rows: np.ndarray) -> dict[str, np.ndarray]:
        columns: dict[str, np.ndarray] = {source.user_column: log.user[rows]}
        if users.columns:
            columns[USER_ROW] = user_index[rows]
        columns[ITEM_ROW] = item_index[rows]
        for name in source.context_columns:
            columns[name] = log.context[name][rows]
        for name, (_, end, count) in zip(SEQUENCE_NAMES, positions, strict=True):
            columns[f"@{name}_end"] = end[rows]
            columns[f"@{name}_count"] = np.minimum(count[rows], L)
        columns["label"] = log.label[rows]
        columns["feedback"] = log.feedback[rows]
        return columns

    train_rows = np.flatnonzero(~is_test)
    for split, rows in (("train", train_rows), ("test", np.flatnonzero(is_test))):
        for start in range(0, len(rows), chunk_rows):
            chunk = rows[start : start + chunk_rows]
            writer.write(split, _encoded(chunk_columns(chunk)))
            progress.update(len(chunk))
    progress.done()

    # The log's own columns over all train rows at once (the same statistics as chunk by
    # chunk); side-table columns once per user / item, weighted by its train impressions.
    stats.update({name: log.context[name][train_rows] for name in source.context_columns})
    train_users = np.bincount(user_index[train_rows], minlength=len(users))
    train_items = np.bincount(item_index[train_rows], minlength=len(items))
    stats.update(
        {source.user_column: users.keys, **users.gather(np.arange(len(users)))}, train_users
    )
    stats.update(items.gather(np.arange(len(items))), train_items)
    schema = source.build_schema(stats, L)
    expected = set(dtypes) | {schema.label, schema.feedback, schema.group_key}
    declared = set(schema.input_signature()) | {schema.label, schema.feedback, schema.group_key}
    if declared != expected:
        raise AssertionError(
            f"{source.name} schema inputs differ from written columns: "
            f"missing {sorted(expected - declared)}, extra {sorted(declared - expected)}"
        )
    counts = {
        split: np.bincount(log.feedback[mask], minlength=len(FEEDBACK_TYPES)).tolist()
        for split, mask in (("train", ~is_test), ("test", is_test))
    }
    meta = {
        "source": source.name,
        **source.describe(),
        "max_length": L,
        "split": split_meta,
        "impressions": n_total,
        "users": int(np.unique(user_index).size),
        "time_range": [int(log.time[0]), int(log.time[-1])],
        "feedback_counts": {
            split: dict(zip(FEEDBACK_TYPES, c, strict=True)) for split, c in counts.items()
        },
        "duplicates_dropped": duplicates_dropped,
        "imputed": {
            f"{table.name}.{col}": n for table in (users, items) for col, n in table.imputed.items()
        },
        "skipped": policy.report(),
        "skipped_examples": {k: list(v) for k, v in policy.examples.items()},
        "on_error": options.on_error,
        **source.report(schema),
    }
    return writer.close(schema, meta, lookups)


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
    return any(name.startswith(f"{s}_") for s in SEQUENCE_NAMES)
