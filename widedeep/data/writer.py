"""`DatasetWriter`: streams rows into a dataset directory (`widedeep.data.dataset_format`)."""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np
import tensorflow as tf

from widedeep.data.dataset_format import (
    DEFAULT_ROWS_PER_RECORD,
    FORMAT,
    INT64,
    LENGTH_SUFFIX,
    META_FILE,
    SCHEMA_FILE,
    DatasetError,
    expected_columns,
)
from widedeep.data.example_encoder import column_data, encode_records
from widedeep.data.tables import TABLES_DIR, ColumnChunks, Lookup, table_files, write_table
from widedeep.safe_output import no_space_as_error, sync_to_disk, write_json
from widedeep.schema import Schema

__all__ = ["DEFAULT_NUM_SHARDS", "DatasetWriter"]

DEFAULT_NUM_SHARDS: dict[str, int] = {"train": 8, "test": 2}
"""Shards per split used when `DatasetWriter` is given no `num_shards`."""


def _shard_name(index: int, count: int) -> str:
    return f"part-{index:05d}-of-{count:05d}.tfrecord"


_RECORD_OVERHEAD = 16
"""Bytes a TFRecord adds to each record (length, two checksums)."""


def _table_bytes(columns: Mapping[str, Any]) -> int:
    return sum(
        v.rows * np.dtype(v.dtype).itemsize if isinstance(v, ColumnChunks) else np.asarray(v).nbytes
        for v in columns.values()
    )


class DatasetWriter:
    """Streams rows into a dataset directory of sharded TFRecord files.

    `write()` takes chunks of rows and can be called any number of times per
    split; memory does not grow with the number of rows written. Rows are dealt
    to the split's shards round-robin, row by row, so every shard gets data and
    an interleaved read (see `make_dataset`) returns them in the order written.
    `close()` syncs the shards and tables to the disk, then writes `schema.json`
    and, last, `meta.json` (atomically): a directory holds a dataset only once
    `meta.json` is there. `close()` takes the schema because statistics
    (vocabularies, means, quantiles) may only be known once all the data has
    been seen. Used as a context manager, the writer closes its files on exit
    but writes no `meta.json` unless `close()` was called; when the block
    raises, it removes every file it wrote (`abort`).

    When the disk fills up, whatever the writer wrote is removed and a
    `widedeep.safe_output.NoSpaceError` names the directory and about how much the
    dataset needs (from the bytes per row so far and `expected_rows`).

    Args:
        out_dir: the dataset directory; created if needed.
        num_shards: number of shard files per split, e.g. `{"train": 8, "test": 2}`
            (the default).
        overwrite: replace a dataset already in `out_dir` (its `schema.json`,
            `meta.json` and shard files) instead of raising `DatasetError`. The
            files of an unfinished dataset (no `meta.json`) are replaced either way.
        rows_per_record: rows encoded in each TFRecord record.
        expected_rows: about how many rows will be written in all, for the size
            estimate when the disk fills up.

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
        expected_rows: int | None = None,
    ) -> None:
        self.out_dir = os.fspath(out_dir)
        self.expected_rows = expected_rows
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
        # Files without a meta.json are what a killed writer left: no dataset, nothing to keep.
        if existing and not overwrite and os.path.exists(os.path.join(self.out_dir, META_FILE)):
            raise DatasetError(
                f"{self.out_dir} already holds a dataset ({existing[0]} ...); "
                "pass overwrite=True to replace it"
            )
        for path in existing:
            os.remove(path)
        os.makedirs(self.out_dir, exist_ok=True)
        self._written: list[str] = []  # files and folders created, in order (for `abort`)
        self._record_bytes = self._table_bytes = 0
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

    def _created(self, path: str) -> str:
        if not os.path.exists(path):
            self._written.append(path)
        return path

    def estimated_bytes(self) -> int:
        """About how many bytes the finished dataset takes (the records extrapolated to
        `expected_rows` at the bytes per row so far, plus the tables)."""
        rows = sum(self._rows.values())
        records = self._record_bytes
        if self.expected_rows and rows:
            records = records * max(self.expected_rows, rows) // rows
        return records + self._table_bytes

    @contextlib.contextmanager
    def _no_space(self) -> Iterator[None]:
        with no_space_as_error(self.out_dir, self.estimated_bytes, cleanup=self.abort):
            yield

    def _open(self, split: str) -> list[Any]:
        if split not in self._writers:
            split_dir = self._created(os.path.join(self.out_dir, split))
            os.makedirs(split_dir, exist_ok=True)
            count = self.num_shards[split]
            self._writers[split] = []
            for i in range(count):
                path = self._created(os.path.join(split_dir, _shard_name(i, count)))
                self._writers[split].append(tf.io.TFRecordWriter(path))
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
        data = [column_data(name, values) for name, values in columns.items()]
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
        records = encode_records(data, num_rows, self.rows_per_record)
        self._record_bytes += sum(map(len, records)) + _RECORD_OVERHEAD * len(records)
        self._rows[split] += num_rows
        with self._no_space():
            writes = [w.write for w in self._open(split)]
            count = len(writes)
            first = self._records[split]
            for i, record in enumerate(records):
                writes[(first + i) % count](record)
        self._records[split] = first + len(records)

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
        self._table_bytes += _table_bytes(columns)
        folder = self._created(os.path.join(self.out_dir, TABLES_DIR))
        folder = self._created(os.path.join(folder, name))
        for column in columns:
            self._created(os.path.join(folder, f"{column}.npy"))
        with self._no_space():
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
        writers = [w for split in self._writers.values() for w in split]
        self._writers = {}
        for writer in writers:
            writer.close()

    def abort(self) -> None:
        """Closes the files and removes everything this writer wrote (no `meta.json` was).

        Called when the writing fails (the disk is full, the process is interrupted,
        the data do not match the schema); the directory is left as it was found,
        less the dataset that `overwrite` replaced.
        """
        with contextlib.suppress(Exception):  # flushing into a full disk fails again
            self._close_files()
        self._writers = {}
        self._closed = True
        for path in reversed(self._written):
            with contextlib.suppress(OSError):
                if os.path.isdir(path):
                    os.rmdir(path)  # only if empty: it may hold files that are not ours
                else:
                    os.remove(path)
        self._written = []

    def close(
        self,
        schema: Schema,
        meta: Mapping[str, Any] | None = None,
        lookups: Mapping[str, Lookup] | None = None,
        files: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Finishes the dataset: closes and syncs the shards, writes `schema.json`, then `meta.json`.

        Args:
            schema: the dataset's schema (with statistics of the training split).
            meta: anything the caller wants to record (e.g. `"source"`, settings,
                oracle metrics); must be JSON serialisable (numpy scalars are fine).
            lookups: `{column: Lookup}` for the columns read from the tables written
                with `write_table` instead of stored in the records; the records
                must then hold each lookup's row (or end and count) columns.
            files: other JSON files of the dataset, `{file name: payload}` (e.g. the
                column roles of `prepare log`), written before `meta.json`.

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
        expected = expected_columns(schema)
        wrong_lookups = self._check_lookups(lookups, expected)
        if wrong_lookups:
            self._close_files()
            self._closed = True
            raise DatasetError(f"{self.out_dir}: lookups that do not match: {wrong_lookups}")
        sources = {s: (INT64, True) for lookup in lookups.values() for s in lookup.sources}
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
        with self._no_space():
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
        folders = [os.path.join(self.out_dir, split) for split in self.num_shards]
        if self._tables:
            folders.append(os.path.join(self.out_dir, TABLES_DIR))
        with self._no_space():
            # Everything meta.json lists reaches the disk before meta.json appears.
            sync_to_disk(folders)
            for name, payload in {**dict(files or {}), SCHEMA_FILE: schema.to_dict()}.items():
                write_json(self._created(os.path.join(self.out_dir, name)), payload)
            text = write_json(self._created(os.path.join(self.out_dir, META_FILE)), full_meta)
        self._written = []  # the dataset is complete: nothing to remove any more
        return json.loads(text)

    def __enter__(self) -> DatasetWriter:
        return self

    def __exit__(self, exc_type: type | None, *exc_info: object) -> None:
        if exc_type is not None:
            self.abort()
        elif not self._closed:
            self._close_files()
            self._closed = True
