"""Your own impression log (CSV or Parquet, any column names) to a dataset directory.

`prepare_log` takes the roles of the log's columns (`LogConfig`): which column
is the user, the item, the time and the click label, optionally which marks a
dislike (negative feedback), which are context features of the impression, and
side tables of user and item features with their key columns. It infers each
feature column's type from the files (integers and strings are categorical,
with a train vocabulary or hashed when large; floats are numeric, standardised
and bucketed at train quantiles) and reports what it did with each column in
`meta["columns"]` (and on screen from the CLI). The config is saved beside the
dataset as `prepare_config.json`, so the directory says how it was made.

Feedback: `label` is the click (0 or 1); the feedback type is `dislike` where
the dislike column is non-zero, otherwise `click` if clicked, else `unclick`.
Sequences (click, unclick, dislike) are over the item id and the item table's
categorical columns. Everything else (sorting, ties, duplicates, the split,
leakage rules, bad rows) is the engine's (`widedeep.data.prepare`).

Example:

```python
config = LogConfig(
    logs=["events/*.parquet"], user="uid", item="sku", time="ts", label="clicked",
    context=["hour"], items="catalog.csv", item_key="sku",
)
meta = prepare_log(config, "data/mine")
```
"""

from __future__ import annotations

import dataclasses
import glob
import json
import os
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import polars as pl

from widedeep.data.log_reading import (
    PARQUET_SUFFIXES,
    first_rows,
    log_schema,
    read_log_batches,
    report_bad_rows,
    report_side_table_rows,
    whole_number,
)
from widedeep.data.prepare import prepare_source
from widedeep.data.source import (
    CLICK,
    DISLIKE,
    ITEM_HISTORY_FEATURES,
    UNCLICK,
    ErrorPolicy,
    FeatureTable,
    FeedbackLogError,
    FeedbackSource,
    Impressions,
    PrepareOptions,
    TrainStatistics,
    categorical_feature,
    numeric_feature,
)
from widedeep.schema import MISSING_INT, MISSING_STRING, Schema

__all__ = ["LogConfig", "prepare_log", "CONFIG_FILE"]

CONFIG_FILE = "prepare_config.json"
"""The config a dataset was prepared with, saved in its directory."""


@dataclasses.dataclass(frozen=True)
class LogConfig:
    """Column roles of a user's log and its side tables.

    Args:
        logs: log files or glob patterns (CSV with a header, or `.parquet`); ties in
            time follow this order, then the line.
        user: the user id column (integers).
        item: the item id column (integers).
        time: the time column: integers (any unit) or date-times (ISO text, or a
            Parquet date / timestamp), read as milliseconds since the epoch.
        label: the click column (0 or 1).
        dislike: optional column marking negative feedback (non-zero: dislike).
        context: log columns that are features of the impression (known when it is
            served: hour, page, device, ...). Outcome columns must not be listed.
        users: optional user side table (CSV or Parquet) keyed by `user_key`.
        user_key: the user table's key column (default: `user`).
        items: optional item side table keyed by `item_key`.
        item_key: the item table's key column (default: `item`).
    """

    logs: tuple[str, ...]
    user: str
    item: str
    time: str
    label: str
    dislike: str | None = None
    context: tuple[str, ...] = ()
    users: str | None = None
    user_key: str | None = None
    items: str | None = None
    item_key: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(
            self, "logs", (self.logs,) if isinstance(self.logs, str) else tuple(self.logs)
        )
        object.__setattr__(self, "context", tuple(self.context))
        if not self.logs:
            raise FeedbackLogError("`logs` must name at least one file. Received: logs=()")
        roles = [self.user, self.item, self.time, self.label, self.dislike, *self.context]
        named = [r for r in roles if r is not None]
        if len(set(named)) != len(named):
            raise FeedbackLogError(f"each log column may have one role. Received: {named}")

    @classmethod
    def from_file(cls, path: str | os.PathLike) -> LogConfig:
        """A config from a JSON file holding the constructor's arguments."""
        try:
            with open(path) as f:
                data = json.load(f)
        except (OSError, json.JSONDecodeError) as e:
            raise FeedbackLogError(f"{path}: unreadable config: {e}") from None
        fields = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - fields)
        if unknown:
            raise FeedbackLogError(
                f"{path}: unknown config key(s) {unknown}; known: {sorted(fields)}"
            )
        try:
            return cls(**data)
        except TypeError as e:
            raise FeedbackLogError(f"{path}: {e}") from None

    def to_dict(self) -> dict[str, Any]:
        return {
            k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()
        }


def expand_paths(patterns: Sequence[str]) -> list[str]:
    """Files of `patterns` in the order given (a glob's matches sorted by name)."""
    paths: list[str] = []
    for pattern in patterns:
        matches = sorted(glob.glob(pattern)) if glob.has_magic(pattern) else [pattern]
        if not matches:
            raise FeedbackLogError(f"no file matches {pattern}")
        for path in matches:
            if not os.path.isfile(path):
                raise FeedbackLogError(f"no such file: {path}")
            paths.append(path)
    return paths


def _read_table(path: str) -> pl.DataFrame:
    try:
        if path.lower().endswith(PARQUET_SUFFIXES):
            return pl.read_parquet(path)
        return pl.read_csv(path, infer_schema_length=10_000)
    except (pl.exceptions.PolarsError, OSError) as e:
        raise FeedbackLogError(f"{path}: unreadable table: {e}") from None


def _dtype_of(dtype: pl.DataType) -> str:
    if dtype.is_integer() or dtype == pl.Boolean:
        return "int64"
    if dtype.is_float():
        return "float32"
    return "string"


def _column_values(series: pl.Series, dtype: str) -> list[Any]:
    if dtype == "int64":
        return series.cast(pl.Int64).fill_null(MISSING_INT).to_list()
    if dtype == "float32":
        return series.cast(pl.Float64).fill_null(float("nan")).to_list()
    return series.cast(pl.String).fill_null(MISSING_STRING).to_list()


def _side_table(name: str, path: str, key: str, policy: ErrorPolicy) -> FeatureTable:
    """A side table from a file, keyed by its column `key`."""
    frame = _read_table(path)
    if key not in frame.columns:
        raise FeedbackLogError(
            f"{path}: missing key column '{key}'; the header has {frame.columns}"
        )
    frame = frame.with_row_index("_line", offset=2)
    dtype = frame.schema[key]
    keys = frame.select(whole_number(pl.col(key), dtype)).to_series()
    if not (dtype.is_integer() or dtype.is_float() or dtype == pl.String) or keys.null_count():
        at = int(np.flatnonzero(keys.is_null().to_numpy())[0]) if keys.null_count() else 0
        value = "" if frame[key][at] is None else frame[key][at]  # an empty cell
        raise FeedbackLogError(
            f"{path}, line {frame['_line'][at]}: key column '{key}' must hold integers, "
            f"found {value!r}"
        )
    frame, repeated = first_rows(frame.with_columns(keys.alias(key)), key, f"{name} key")
    report_side_table_rows(policy, path, [], repeated)
    frame = frame.drop("_line")
    dtypes = {c: _dtype_of(frame.schema[c]) for c in frame.columns if c != key}
    columns = {c: _column_values(frame[c], d) for c, d in dtypes.items()}
    return FeatureTable(name, path, frame[key].to_list(), columns, dtypes)


class LogSource(FeedbackSource):
    """A user's log as a `FeedbackSource` (see `LogConfig`)."""

    name = "log"

    def __init__(self, config: LogConfig, policy: ErrorPolicy) -> None:
        self.config = config
        self.logs = expand_paths(config.logs)
        self.user_column = config.user
        c = config
        self._integers = [c.user, c.item, c.label, *([c.dislike] if c.dislike else [])]
        self._required = [c.user, c.item, c.time, c.label, *([c.dislike] if c.dislike else [])]
        self._required += list(c.context)
        self._schemas = [log_schema(path, self._required, self._integers) for path in self.logs]
        self.users = self.items = None  # type: ignore[assignment]
        if config.users:
            self.users = _side_table("users", config.users, config.user_key or config.user, policy)
        if config.items:
            self._set_items(
                _side_table("items", config.items, config.item_key or config.item, policy)
            )
        else:
            self.item_features = [config.item]
        names = [
            config.user,
            *(self.users.dtypes if self.users else {}),
            *(self.items.dtypes if self.items else {config.item: "int64"}),
            *config.context,
        ]
        clash = sorted({n for n in names if names.count(n) > 1})
        if clash:
            raise FeedbackLogError(
                f"log: column name(s) {clash} appear in more than one of the log context, users and items; rename them"
            )
        context_dtypes = {}
        for name in config.context:
            found = {_dtype_of(schema[name]) for schema in self._schemas}
            context_dtypes[name] = (
                "string" if "string" in found else "float32" if "float32" in found else "int64"
            )
        self.context_columns = context_dtypes
        self._codes: dict[str, dict[str, int]] = {
            name: {} for name, dtype in context_dtypes.items() if dtype == "string"
        }

    def _set_items(self, table: FeatureTable) -> None:
        # The item id is a feature of the item (target and sequences), stored in its table.
        table.columns[self.config.item] = np.append(table.keys, MISSING_INT)
        table.dtypes[self.config.item] = "int64"
        self.items = table
        self.item_features = [self.config.item] + [
            c for c, d in table.dtypes.items() if c != self.config.item and d != "float32"
        ]

    def impressions(self, policy: ErrorPolicy, batch_rows: int) -> Iterator[Impressions]:
        c = self.config
        seen_users = np.zeros(0, dtype=np.int64)
        seen_items = np.zeros(0, dtype=np.int64)
        for file_index, path in enumerate(self.logs):
            batches = read_log_batches(path, self._required, self._integers, batch_rows=batch_rows)
            for frame, bad in batches:
                wrong = frame.filter(~pl.col(c.label).is_in([0, 1]))
                bad = bad + [
                    (line, f"unreadable value: {c.label} must be 0 or 1, found {v}")
                    for line, v in wrong.select("_line", c.label).iter_rows()
                ]
                frame = frame.filter(pl.col(c.label).is_in([0, 1]))
                time = _time_ms(frame, c.time, path)
                report_bad_rows(policy, path, bad)
                label = frame[c.label].to_numpy().astype(np.int64)
                dislike = (
                    frame[c.dislike].to_numpy() != 0 if c.dislike else np.zeros(len(label), bool)
                )
                user, item = frame[c.user].to_numpy(), frame[c.item].to_numpy()
                if self.users is None:
                    seen_users = np.union1d(seen_users, user)
                if self.items is None:
                    seen_items = np.union1d(seen_items, item)
                yield Impressions(
                    time=time.to_numpy(),
                    user=user,
                    item=item,
                    feedback=np.where(dislike, DISLIKE, np.where(label == 1, CLICK, UNCLICK)),
                    label=label,
                    file_index=np.full(len(label), file_index, dtype=np.int64),
                    line=frame["_line"].to_numpy(),
                    row_key=frame["_key"].to_numpy(),
                    context={name: self._context(frame[name], name) for name in c.context},
                )
        # Without a side table, a table of the ids the log holds.
        if self.users is None:
            self.users = FeatureTable("users", "the users of the log", seen_users.tolist(), {}, {})
        if self.items is None:
            self._set_items(
                FeatureTable("items", "the items of the log", seen_items.tolist(), {}, {})
            )

    def _context(self, series: pl.Series, name: str) -> np.ndarray:
        """A context column as numbers (a string column as codes, see `context_values`)."""
        dtype = self.context_columns[name]
        if dtype == "int64":
            return series.cast(pl.Int64).fill_null(MISSING_INT).to_numpy()
        if dtype == "float32":
            return series.cast(pl.Float64).fill_null(float("nan")).to_numpy().astype(np.float32)
        text = series.cast(pl.String).fill_null(MISSING_STRING)
        codes = self._codes[name]
        for value in text.unique(maintain_order=True).to_list():
            codes.setdefault(value, len(codes))
        return text.replace_strict(codes, return_dtype=pl.Int64).to_numpy()

    def context_values(self, name: str, values: np.ndarray) -> np.ndarray:
        if name not in self._codes:
            return values
        return np.array(list(self._codes[name]), dtype=object)[values]

    def build_schema(self, stats: TrainStatistics, max_length: int) -> Schema:
        dtypes = {
            self.user_column: "int64",
            **self.users.dtypes,
            **self.items.dtypes,
            **self.context_columns,
        }
        ids = {self.user_column, self.config.item}
        categorical = [
            categorical_feature(stats, name, dtype, embedding_dim=16 if name in ids else 8)
            for name, dtype in dtypes.items()
            if dtype != "float32"
        ]
        numeric = [
            numeric_feature(stats, name) for name, dtype in dtypes.items() if dtype == "float32"
        ]
        return self.feedback_schema(categorical, numeric, max_length)

    def dataset_files(self) -> dict[str, Any]:
        return {CONFIG_FILE: self.config.to_dict()}

    def report(self, schema: Schema) -> dict[str, Any]:
        """Per feature column its role, kind and statistics; the log columns given no role."""
        c = self.config
        used = {c.user, c.item, c.time, c.label, c.dislike, *c.context}
        in_log = {n for schema in self._schemas for n in schema}
        return {
            "columns": _describe_columns(schema, self),
            "ignored_columns": sorted(in_log - used),
        }

    def describe(self) -> dict[str, Any]:
        files: dict[str, Any] = {"logs": self.logs}
        files.update({"users": self.config.users} if self.config.users else {})
        files.update({"items": self.config.items} if self.config.items else {})
        return {
            "files": files,
            "feedback_rule": f"label = {self.config.label}; type = dislike if {self.config.dislike} else click if label else unclick"
            if self.config.dislike
            else f"label = {self.config.label}; type = click if label else unclick",
            "config": self.config.to_dict(),
        }


def _time_ms(frame: pl.DataFrame, column: str, path: str) -> pl.Series:
    """The time column as int64: integers as they are, dates and date-times in ms since the epoch.

    Integers are read by the integer parser of every column (`whole_number`). A text
    column (Polars reads a column as text when one value is neither an integer nor a
    date) is read as integers or as ISO date-times, whichever more of its values are.
    A value that is neither, or an empty one, raises `FeedbackLogError` naming the
    file, its line and the column.
    """
    series = frame[column]
    if series.dtype == pl.Date or isinstance(series.dtype, pl.Datetime):
        times = series.cast(pl.Datetime("ms")).dt.epoch("ms")
    elif series.dtype.is_numeric() or series.dtype == pl.String:
        times = frame.select(whole_number(pl.col(column), series.dtype)).to_series()
        if series.dtype == pl.String:
            try:
                dates = series.str.to_datetime(strict=False, time_unit="ms").dt.epoch("ms")
            except pl.exceptions.PolarsError:  # no value looks like a date-time
                dates = pl.Series(column, [None] * len(series), dtype=pl.Int64)
            if dates.null_count() <= times.null_count():
                times = dates
    else:
        times = pl.Series(column, [None] * len(series), dtype=pl.Int64)
    failed = times.is_null()
    if failed.any():
        at = int(np.flatnonzero(failed.to_numpy())[0])
        value = "" if series[at] is None else series[at]  # an empty cell
        raise FeedbackLogError(
            f"{path}, line {frame['_line'][at]}: time column '{column}' does not parse as a time: "
            f"{value!r} (integers, or ISO date-times such as 2024-05-01 13:45:00)"
        )
    return times.cast(pl.Int64)


def _describe_columns(schema: Schema, source: LogSource) -> dict[str, dict[str, Any]]:
    role = {source.user_column: "user", source.config.item: "item"}
    role.update({c: "context" for c in source.context_columns})
    role.update({c: "item history" for c in ITEM_HISTORY_FEATURES})
    role.update({c: "user table" for c in source.users.dtypes})
    role.update({c: "item table" for c in source.items.dtypes if c != source.config.item})
    report: dict[str, dict[str, Any]] = {}
    for f in schema.categorical:
        entry: dict[str, Any] = {
            "role": role.get(f.name, "?"),
            "kind": "categorical",
            "dtype": f.dtype,
        }
        if f.vocabulary is not None:
            entry["vocabulary"] = len(f.vocabulary)
        else:
            entry["hash_buckets"] = f.hash_buckets
        report[f.name] = entry
    for f in schema.numeric:
        report[f.name] = {
            "role": role.get(f.name, "?"),
            "kind": "numeric",
            "mean": f.mean,
            "std": f.std,
            "quantile_boundaries": len(f.boundaries or []),
        }
    return report


def prepare_log(
    config: LogConfig,
    out_dir: str | os.PathLike,
    **options: Any,
) -> dict[str, Any]:
    """Writes a dataset directory from a log of your own (see the module docstring).

    Args:
        config: the column roles and side tables.
        out_dir: the dataset directory to write.
        **options: any field of `PrepareOptions` (e.g. `max_length`, `split_by`,
            `on_error`); its docstring gives each one's meaning and default.

    Returns:
        The dataset's meta (also in `out_dir/meta.json`), with `columns`: per
        feature column its role, kind (categorical / numeric) and statistics, and
        `ignored_columns`: the log columns given no role.

    Raises:
        FeedbackLogError: (a `DatasetError`) naming the file, line or column at fault.

    Example:

    ```python
    meta = prepare_log(LogConfig(["log.csv"], "user", "item", "ts", "click"), "data/mine")
    ```
    """
    return prepare_source(
        lambda policy: LogSource(config, policy), out_dir, PrepareOptions(**options)
    )
