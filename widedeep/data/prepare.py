"""The preparation engine: an impression log, columnar, to a dataset directory.

Every source (the KuaiRand and MovieLens presets, `widedeep.data.user_log` for a
log of your own; the contract is `widedeep.data.source`) reads its files into
`Impressions` batches (one array per column, read by Polars through
`widedeep.data.log_reading`: CSV or Parquet, several files) and its side tables
into `FeatureTable`s; `prepare_impressions` does the rest with whole-array
operations (NumPy), no Python loop over rows, in five steps:

1. `_sort`: stable sort by `(time, file, line)`: a log may come in any order, ties
   keep file order (for several files: the order they were given, then the line);
2. `_clean`: drop exact duplicates (rows identical in every raw field; compared
   by a 64-bit hash of the row within the same timestamp) and rows whose user or
   item is not in its side table (`on_error` decides: skip and count, or stop
   naming file and line);
3. `_Split`: the split (`split_by="time"`: the last `round(N * test_fraction)`
   impressions in that order; `"user"`: each user's last `round(n_u * test_fraction)`);
4. `FeedbackSequences`: the causal feedback sequences: for an impression, the
   user's last `max_length` clicked / unclicked / disliked items among the
   impressions *before* it in that order (so a same-timestamp row earlier in the
   file counts as before; the impression itself and everything after it never
   does), most recent first, kept as positions in per-type event tables;
5. the dataset: per impression only its user and item rows, its context columns,
   label, feedback and each sequence's end and count, as records chunk by chunk
   (`_write_records`, `chunk_rows` rows at a time); the side tables and the event
   tables written once as dataset tables (`_write_tables`, see
   `widedeep.data.tables`); train-only vocabularies and quantile boundaries, the
   schema (`_build_schema`) and `meta.json` (`_meta`). Readers gather the side
   features and sequences back as they parse.

Memory is bounded by `PrepareOptions.memory_limit`, not by the log's length: the
sources yield the log in batches; the engine sorts them into runs of at most the
rows that fit the limit. A log that fits in one run stays in memory; a longer one
is an external sort (`widedeep.data.external_sort`): the runs are written to a
scratch folder (`temp_dir`, by default beside the output), merged range by range
of timestamps, and the sorted log, the event tables and the split are built from
that folder in chunks, with per-user counters (`running_counts`) instead of
whole-log sorts. Side tables and per-user counters come on top (they grow with
the users and items, not the log).
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from widedeep.data.causal_history import FeedbackSequences, ItemHistory, running_counts
from widedeep.data.external_sort import (
    RowStore,
    ScratchFolder,
    SortedRun,
    merged,
    sorted_runs,
)
from widedeep.data.progress import Progress
from widedeep.data.source import (
    CHUNK_ROWS,
    FEEDBACK_TYPES,
    ITEM_HISTORY_FEATURES,
    ErrorPolicy,
    FeatureTable,
    FeedbackLogError,
    FeedbackSource,
    PrepareOptions,
    TrainStatistics,
    numeric_feature,
)
from widedeep.data.tables import Lookup
from widedeep.directory_lock import directory_lock
from widedeep.safe_output import NoSpaceError, is_out_of_space
from widedeep.schema import FEEDBACK_SEQUENCES, Schema

if TYPE_CHECKING:
    from widedeep.data.writer import DatasetWriter

__all__ = [
    "prepare_impressions",
    "prepare_source",
    "num_test",
    "running_counts",
]

USER_TABLE, ITEM_TABLE = "users", "items"
"""The dataset tables of the side features (see `widedeep.data.tables`)."""

USER_ROW, ITEM_ROW = "@user", "@item"
"""The record columns with each impression's row in the user and the item table."""


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
    scratch = ScratchFolder(out_dir, options.temp_dir)
    with directory_lock(out_dir, "--out", "prepare"), contextlib.ExitStack() as on_failure:
        scratch.clear_stale()
        try:
            return _prepare(
                source, out_dir, options, policy, chunk_rows, run_rows, scratch, on_failure
            )
        except Exception as error:
            # The dataset writer names itself when the disk fills up; the sort's scratch does not.
            if isinstance(error, NoSpaceError) or not is_out_of_space(error):
                raise
            where, flag = (scratch.parent, "--temp-dir") if scratch.folder else (out_dir, "--out")
            raise NoSpaceError(where, scratch.bytes_needed(source.logs), flag) from error
        finally:
            scratch.remove()


def _prepare(
    source: FeedbackSource,
    out_dir: str,
    options: PrepareOptions,
    policy: ErrorPolicy,
    chunk_rows: int,
    run_rows: int | None,
    scratch: ScratchFolder,
    on_failure: contextlib.ExitStack,
) -> dict[str, Any]:
    """The five steps of the module docstring, one call each."""
    from widedeep.data.writer import DatasetWriter

    started = time.monotonic()
    runs = _sort(source, options, policy, chunk_rows, run_rows, scratch)
    log = _clean(source, runs, options, policy, chunk_rows, scratch)
    del runs
    split = _Split(log, options, source.logs)
    sequences = FeedbackSequences(
        log.per_type, options.max_length, max(log.range_rows, 1), scratch if log.spilled else None
    )
    item_history = ItemHistory(len(source.items)) if options.item_history else None
    stats, dtypes = _train_statistics(source, options.item_history)
    writer = DatasetWriter(
        out_dir, options.num_shards, overwrite=options.overwrite, expected_rows=len(log.rows)
    )
    on_failure.enter_context(writer)  # a failure from here on removes what was written
    records = _write_records(
        source, log, split, sequences, item_history, stats, writer, options.progress, chunk_rows
    )
    del log  # the sorted log's rows: everything below needs only counts and tables
    lookups = _write_tables(source, sequences, writer)
    schema = _build_schema(source, stats, dtypes, records, options)
    meta = _meta(source, options, policy, split, records, schema)
    meta = writer.close(schema, meta, lookups, source.dataset_files())
    if options.progress:
        _print_summary(source, out_dir, policy, records, meta, time.monotonic() - started)
    return meta


# --------------------------------------------------------------------------- 1. sort


def _sort(
    source: FeedbackSource,
    options: PrepareOptions,
    policy: ErrorPolicy,
    chunk_rows: int,
    run_rows: int | None,
    scratch: ScratchFolder,
) -> list[SortedRun]:
    """The source's log as sorted runs (spilled to `scratch` when there is more than one)."""
    progress = Progress(f"{source.name}: read and sort", options.progress)
    batches = (progress.update(len(b)) or b for b in source.impressions(policy, chunk_rows))
    runs = sorted_runs(batches, options.memory_limit * 2**20, run_rows, scratch)
    progress.done()
    return runs


# -------------------------------------------------------------------------- 2. clean


@dataclass
class _CleanLog:
    """The sorted log without duplicates and unknown users or items (step 2's result).

    Attributes:
        rows: the rows in order, with each one's `user_index` and `item_index` (its
            row in the side tables); in memory, or spilled when the sort was.
        per_type: `(len(FEEDBACK_TYPES), users)` impressions of each type per user.
        duplicates_dropped: exact duplicates left out.
        range_rows: rows per range of the merge (the scratch buckets' size).
        spilled: whether the log went through the scratch folder.
    """

    rows: RowStore
    per_type: np.ndarray
    duplicates_dropped: int
    range_rows: int
    spilled: bool

    @property
    def time_range(self) -> list[int]:
        """The first and the last impression's time."""
        n = len(self.rows)
        return [int(self.rows.column("time", 0, 1)[0]), int(self.rows.column("time", n - 1, n)[0])]


def _clean(
    source: FeedbackSource,
    runs: list[SortedRun],
    options: PrepareOptions,
    policy: ErrorPolicy,
    chunk_rows: int,
    scratch: ScratchFolder,
) -> _CleanLog:
    """Merges the runs, keeping the first of exact duplicates (equal row keys within one
    timestamp) and rejecting rows of unknown users or items to `policy`."""
    spilled = scratch.folder is not None
    users, items = source.users, source.items
    n_users = len(users)
    log = RowStore()
    if spilled:
        log.spill(scratch.path("log"))
    per_type = np.zeros((len(FEEDBACK_TYPES), n_users), dtype=np.int64)
    duplicates_dropped = 0
    progress = Progress(f"{source.name}: merge", options.progress and spilled)
    range_rows = runs[0].store.rows if runs else 0
    for rows in merged(runs, max(range_rows, chunk_rows)):
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
        _reject_unknown(policy, users, items, rows, source.logs, unknown_user, unknown_item)
        keep &= ~(unknown_user | unknown_item)
        kept = {name: values[keep] for name, values in rows.items() if name != "row_key"}
        kept["user_index"], kept["item_index"] = user_index[keep], item_index[keep]
        per_type += np.bincount(
            kept["feedback"] * n_users + kept["user_index"], minlength=per_type.size
        ).reshape(per_type.shape)
        log.append(kept)
    progress.done()
    if len(log) == 0:
        raise FeedbackLogError(
            f"{source.name}: no valid impression in the log ({policy.summary()})"
        )
    if policy.counts:
        print(f"{source.name}: {policy.summary()}", file=sys.stderr, flush=True)
    return _CleanLog(log, per_type, duplicates_dropped, range_rows, spilled)


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


# -------------------------------------------------------------------------- 3. split


def num_test(n: np.ndarray | int, test_fraction: float) -> np.ndarray:
    """Test impressions among `n` (each of an array): `round(n * test_fraction)`, halves up.

    Example:

    >>> num_test(np.array([3, 5, 10]), 0.5)
    array([2, 3, 5])
    """
    n = np.asarray(n)
    return np.minimum(n, np.floor(n * test_fraction + 0.5).astype(np.int64))


class _Split:
    """Which impressions are test impressions, chunk by chunk of the sorted log.

    `split_by="time"`: the last `num_test(N)` impressions; `"user"`: each user's
    last `num_test(n_u)`, counted with a per-user counter across chunks.
    """

    def __init__(self, log: _CleanLog, options: PrepareOptions, paths: list[str]) -> None:
        n_total = len(log.rows)
        self.by = options.split_by
        self.per_user = log.per_type.sum(axis=0)
        self.n_train = n_total - int(num_test(n_total, options.test_fraction))
        self.train_quota = self.per_user - num_test(self.per_user, options.test_fraction)
        self._user_rows_before = np.zeros(len(self.per_user), dtype=np.int64)
        self.meta: dict[str, Any] = {"by": self.by, "test_fraction": float(options.test_fraction)}
        if self.by == "time" and self.n_train < n_total:
            first_test = log.rows.read(self.n_train, self.n_train + 1)
            self.meta["test_starts_at"] = {
                "time": int(first_test["time"][0]),
                "file": paths[int(first_test["file_index"][0])],
                "line": int(first_test["line"][0]),
            }

    def is_test(self, start: int, user_index: np.ndarray, by_user: np.ndarray) -> np.ndarray:
        """Per row of the chunk starting at row `start`, whether it is a test impression.

        Chunks must come in order (the per-user split counts each user's rows so far).
        """
        if self.by == "time":
            return np.arange(start, start + len(user_index)) >= self.n_train
        every = np.ones(len(user_index), bool)
        rank = running_counts(user_index, every, self._user_rows_before, by_user)
        return rank >= self.train_quota[user_index]


# ----------------------------------------- 4. sequences (widedeep.data.causal_history), 5. dataset


def _train_statistics(
    source: FeedbackSource, item_history: bool
) -> tuple[TrainStatistics, dict[str, str]]:
    """Empty statistics of every written column, and `{column: dtype}` of those columns."""
    history = ITEM_HISTORY_FEATURES if item_history else ()
    dtypes = {**source.column_dtypes(), **dict.fromkeys(history, "float32")}
    categorical = [n for n, d in dtypes.items() if d != "float32" and not _is_sequence(n)]
    numeric = [n for n, d in dtypes.items() if d == "float32"]
    return TrainStatistics(categorical, numeric), dtypes


@dataclass
class _Records:
    """What `_write_records` wrote: the log's facts for meta and the weights of the side tables."""

    impressions: int
    users: int
    time_range: list[int]
    duplicates_dropped: int
    spilled: bool
    feedback_counts: dict[str, np.ndarray]
    train_users: np.ndarray
    train_items: np.ndarray


def _write_records(
    source: FeedbackSource,
    log: _CleanLog,
    split: _Split,
    sequences: FeedbackSequences,
    item_history: ItemHistory | None,
    stats: TrainStatistics,
    writer: DatasetWriter,
    progress_enabled: bool,
    chunk_rows: int,
) -> _Records:
    """Writes one record per impression, chunk by chunk, and counts the log's train columns.

    A record holds the user id, the rows of its user and item in the side tables,
    the context columns, each sequence's end and count, the item history (when
    asked for), the label and the feedback type.
    """
    users, items = source.users, source.items
    n_total = len(log.rows)
    progress = Progress(f"{source.name}: write", progress_enabled)
    train_users = np.zeros(len(users), dtype=np.int64)
    train_items = np.zeros(len(items), dtype=np.int64)
    counts = {split: np.zeros(len(FEEDBACK_TYPES), dtype=np.int64) for split in ("train", "test")}
    log_columns = [*source.context_columns, *(ITEM_HISTORY_FEATURES if item_history else ())]
    for start in range(0, n_total, chunk_rows):
        rows = log.rows.read(start, start + chunk_rows)
        user_index, feedback = rows["user_index"], rows["feedback"]
        by_user = np.argsort(user_index, kind="stable")
        is_test = split.is_test(start, user_index, by_user)
        columns: dict[str, np.ndarray] = {source.user_column: rows["user"]}
        if users.columns:
            columns[USER_ROW] = user_index
        columns[ITEM_ROW] = rows["item_index"]
        for name in source.context_columns:
            columns[name] = source.context_values(name, rows[f"context.{name}"])
        columns.update(sequences.columns(rows, by_user))
        if item_history is not None:
            columns.update(item_history.columns(rows))
        columns["label"] = rows["label"]
        columns["feedback"] = feedback
        for name, mask in (("train", ~is_test), ("test", is_test)):
            if mask.any():
                writer.write(name, _encoded({n: v[mask] for n, v in columns.items()}))
                counts[name] += np.bincount(feedback[mask], minlength=len(FEEDBACK_TYPES))
        train = ~is_test
        # The log's own columns over train rows (chunk by chunk); side-table columns
        # once per user / item in `_build_schema`, weighted by its train impressions.
        stats.update({name: columns[name][train] for name in log_columns})
        train_users += np.bincount(user_index[train], minlength=len(users))
        train_items += np.bincount(rows["item_index"][train], minlength=len(items))
        progress.update(len(user_index))
    progress.done()
    return _Records(
        impressions=n_total,
        users=int(np.count_nonzero(split.per_user)),
        time_range=log.time_range,
        duplicates_dropped=log.duplicates_dropped,
        spilled=log.spilled,
        feedback_counts=counts,
        train_users=train_users,
        train_items=train_items,
    )


def _write_tables(
    source: FeedbackSource, sequences: FeedbackSequences, writer: DatasetWriter
) -> dict[str, Lookup]:
    """Writes the side tables and the event tables; the lookups that gather them back.

    Side features and sequences are lookups: tables written once, rows in the records.
    """
    lookups: dict[str, Lookup] = {}
    for table, row, columns in (
        (USER_TABLE, USER_ROW, source.users.columns),
        (ITEM_TABLE, ITEM_ROW, source.items.columns),
    ):
        if columns:
            writer.write_table(table, _encoded(columns))
            lookups.update({name: Lookup(table, name, row=row) for name in columns})
    lookups.update(sequences.write(writer, ITEM_TABLE, list(source.item_features)))
    return lookups


def _build_schema(
    source: FeedbackSource,
    stats: TrainStatistics,
    dtypes: dict[str, str],
    records: _Records,
    options: PrepareOptions,
) -> Schema:
    """The source's schema from the train statistics, side-table columns weighted by their
    train impressions; checked against the columns written."""
    users, items = source.users, source.items
    stats.update(
        {source.user_column: users.keys, **users.gather(np.arange(len(users)))},
        records.train_users,
    )
    stats.update(items.gather(np.arange(len(items))), records.train_items)
    schema = source.build_schema(stats, options.max_length)
    history = ITEM_HISTORY_FEATURES if options.item_history else ()
    schema = dataclasses.replace(
        schema, numeric=[*schema.numeric, *(numeric_feature(stats, n) for n in history)]
    )
    expected = set(dtypes) | {schema.label, schema.feedback, schema.group_key}
    declared = set(schema.input_signature()) | {schema.label, schema.feedback, schema.group_key}
    if declared != expected:
        raise AssertionError(
            f"{source.name} schema inputs differ from written columns: "
            f"missing {sorted(expected - declared)}, extra {sorted(declared - expected)}"
        )
    return schema


def _meta(
    source: FeedbackSource,
    options: PrepareOptions,
    policy: ErrorPolicy,
    split: _Split,
    records: _Records,
    schema: Schema,
) -> dict[str, Any]:
    """The dataset's `meta.json` (the writer adds `splits`)."""
    tables = (source.users, source.items)
    return {
        "source": source.name,
        **source.describe(),
        "max_length": options.max_length,
        "split": split.meta,
        "impressions": records.impressions,
        "users": records.users,
        "time_range": records.time_range,
        "feedback_counts": {
            name: dict(zip(FEEDBACK_TYPES, c.tolist(), strict=True))
            for name, c in records.feedback_counts.items()
        },
        "duplicates_dropped": records.duplicates_dropped,
        "imputed": {f"{t.name}.{col}": n for t in tables for col, n in t.imputed.items()},
        "skipped": policy.report(),
        "skipped_examples": {k: list(v) for k, v in policy.examples.items()},
        "on_error": options.on_error,
        "spilled": records.spilled,
        **source.report(schema),
    }


def _print_summary(
    source: FeedbackSource,
    out_dir: str,
    policy: ErrorPolicy,
    records: _Records,
    meta: dict[str, Any],
    seconds: float,
) -> None:
    """The one-line summary on stderr."""
    n_total = records.impressions
    train, test = (int(c.sum()) for c in records.feedback_counts.values())
    print(
        f"{source.name}: {n_total:,} impressions of {meta['users']:,} users "
        f"(train {train:,}, test {test:,}), {records.duplicates_dropped:,} duplicates dropped"
        f"{', ' + policy.summary() if policy.counts else ''}; "
        f"{'sorted out of core, ' if records.spilled else ''}{seconds:.1f} s "
        f"({n_total / max(seconds, 1e-9):,.0f} impressions/s); written to {out_dir}",
        file=sys.stderr,
        flush=True,
    )


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
