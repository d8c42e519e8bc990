"""Reading log and side-table files: CSV (with a header, or delimited) and Parquet, in blocks.

A log is read in batches whatever its size (`read_log_batches`): a CSV file is cut
into blocks of whole lines (`line_blocks`) that Polars parses; a file Polars cannot
map row for row (a ragged row, a value that does not parse as its column's type)
goes, from its first line not yet read, through the exact reader, which names each
bad row. Every batch carries each row's 1-based `_line` and a hash of its raw
fields (`_key`, see `row_hash`). Values are parsed by kind (`parse_columns`): one
integer parser (`whole_number`: `"12"` or `"12.0"`) serves every integer column
of every source. Bad rows come back as `(line, message)` (`BadRows`), the message
naming the column; `report_bad_rows` hands them to the `ErrorPolicy`.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Iterable, Iterator, Sequence
from typing import TextIO

import polars as pl

from widedeep.data.source import CHUNK_ROWS, ErrorPolicy, FeedbackLogError
from widedeep.schema import MISSING_INT

PARQUET_SUFFIXES: tuple[str, ...] = (".parquet", ".pq")

_EPOCH_ORDINAL = 719_163
"""`datetime.date(1970, 1, 1).toordinal()`: Polars dates count days from 1970-01-01."""


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


def whole_number(value: pl.Expr, dtype: pl.DataType = pl.String) -> pl.Expr:
    """`value` as int64 where it holds an integer, else null: the integer parser of every source.

    Text (stripped of surrounding whitespace) is an integer when it is written as
    `"12"` or `"12.0"`; a float when it is whole (`12.0`, not `12.5`); integer and
    boolean columns are integers as they are.

    Args:
        value: the values, of type `dtype`.
        dtype: the Polars type of `value`.

    Example:

    >>> frame = pl.DataFrame({"x": [" 12", "12.0", "12.5", "x", ""]})
    >>> frame.select(whole_number(pl.col("x")))["x"].to_list()
    [12, 12, None, None, None]
    """
    if dtype.is_float():
        return pl.when(value.is_finite() & (value == value.floor())).then(value.cast(pl.Int64))
    if dtype != pl.String:
        return value.cast(pl.Int64, strict=False)
    text = value.str.strip_chars()
    as_int, as_float = text.cast(pl.Int64, strict=False), text.cast(pl.Float64, strict=False)
    whole = as_float.is_finite() & (as_float == as_float.floor())
    return pl.when(as_int.is_not_null()).then(as_int).when(whole).then(as_float.cast(pl.Int64))


def parse_columns(frame: pl.DataFrame, kinds: dict[str, str]) -> tuple[pl.DataFrame, BadRows]:
    """Parse columns by kind; a row where one does not parse is bad.

    Kinds: `"int"` (int64 by `whole_number`: `"12"` or `"12.0"`, or a whole float, or
    an integer column as it is); `"optional_int"` (the same for text, an empty
    or `nan` cell is `MISSING_INT`); `"optional_float"` (float64, an empty cell is nan);
    `"nullable_int"` / `"nullable_float"` (an empty cell is null, as Polars reads it);
    `"string"` (stripped of surrounding whitespace); `"date"` (`YYYY-MM-DD`, anything
    after the 10th character ignored, as the day's `datetime.date.toordinal()` in
    float64; an empty cell is nan).

    Args:
        frame: with an int64 `_line` column; the columns to parse as strings (or, for
            `"int"`, of any numeric type).
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
            value = whole_number(col, frame.schema[name])
            bad, wanted = value.is_null(), "an integer"
        elif kind == "optional_int":
            empty = (text == "") | (text.str.to_lowercase() == "nan")
            value = pl.when(empty).then(pl.lit(MISSING_INT)).otherwise(whole_number(text))
            bad, wanted = value.is_null(), "an integer"
        elif kind in ("nullable_int", "nullable_float"):
            number = (
                whole_number(text)
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


def report_side_table_rows(
    policy: ErrorPolicy, path: str, malformed: BadRows, repeated: BadRows
) -> None:
    """Send a side table's malformed rows and repeated keys to `policy`, together in line order."""
    problems = [(line, "malformed_feature_rows", message) for line, message in malformed]
    problems += [(line, "duplicate_feature_rows", message) for line, message in repeated]
    for line, kind, message in sorted(problems):
        policy.reject(kind, path, line, message)


def open_text(path: str | os.PathLike, encoding: str = "utf-8") -> TextIO:
    """Open a text file for reading; a missing or unreadable file raises `FeedbackLogError`."""
    try:
        return open(path, encoding=encoding, newline="")
    except OSError as e:
        raise FeedbackLogError(f"cannot read {path}: {e.strerror}") from None


def read_csv_with_header(
    path: str | os.PathLike, required: Sequence[str], *, encoding: str = "utf-8"
) -> Iterator[tuple[dict[str, int], int, list[str]]]:
    """Yield `(column_index, line, fields)` for each data row of a CSV file with a header.

    Raises `FeedbackLogError` naming the file and the columns if `required` columns
    are absent. `line` is the 1-based line of the row (the header is line 1).
    """
    with open_text(path, encoding) as f:
        reader = csv.reader(f)
        try:
            header = next(reader)
        except StopIteration:
            raise FeedbackLogError(f"{path}: empty file (expected a header row)") from None
        except (csv.Error, UnicodeDecodeError) as e:
            raise FeedbackLogError(f"{path}, line 1: unreadable header: {e}") from None
        header = [h.strip().lstrip("\ufeff") for h in header]
        missing = [c for c in required if c not in header]
        if missing:
            raise FeedbackLogError(f"{path}: missing column(s) {missing}; the header has {header}")
        index = {name: i for i, name in enumerate(header)}
        while True:
            try:
                fields = next(reader)
            except StopIteration:
                return
            except (csv.Error, UnicodeDecodeError) as e:
                raise FeedbackLogError(
                    f"{path}, line {reader.line_num}: unreadable row: {e}"
                ) from None
            if fields:
                yield index, reader.line_num, fields


def read_delimited(
    path: str | os.PathLike, separator: str, *, encoding: str = "latin-1"
) -> Iterator[tuple[int, list[str]]]:
    """Yield `(line, fields)` for each non-blank line of a headerless, `separator`-delimited file."""
    with open_text(path, encoding) as f:
        for line_number, line in enumerate(f, start=1):
            line = line.rstrip("\r\n")
            if line.strip():
                yield line_number, line.split(separator)
