"""The external sort: a log of any length in (time, file, line) order, in bounded memory.

The engine hands `sorted_runs` the source's batches; it cuts them into runs of the
rows that fit the memory limit, each sorted in memory (`SortedRun`). One run stays
in memory; from the second on, every run is spilled to a `ScratchFolder` as raw
column files (`RowStore`). `merged` reads the runs back range by range of
timestamps and yields the rows in order. `EventTable` is the same idea for the
feedback events: filled by position, in memory or in buckets on disk.
"""

from __future__ import annotations

import bisect
import glob
import hashlib
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator

import numpy as np

from widedeep.data.source import CHUNK_ROWS, Impressions


class ScratchFolder:
    """The scratch folder of one dataset's out-of-core sort, made on first use.

    It goes under `temp_dir` (default: beside the output directory, which has room
    for the dataset) and is named after the dataset, so that a run holding the
    dataset's lock can clear what a killed run left (`clear_stale`).

    Args:
        out_dir: the dataset directory being written.
        temp_dir: where the folder goes; `None` for beside `out_dir`.
    """

    def __init__(self, out_dir: str, temp_dir: str | None = None) -> None:
        self.parent = temp_dir or os.path.dirname(os.path.abspath(out_dir))
        key = hashlib.sha1(os.path.abspath(out_dir).encode()).hexdigest()[:12]
        self.prefix = f".widedeep-prepare-{key}-"
        self.folder: str | None = None

    def path(self, name: str) -> str:
        """`name` inside the folder, making the folder if it is not there yet."""
        if self.folder is None:
            os.makedirs(self.parent, exist_ok=True)
            self.folder = tempfile.mkdtemp(prefix=self.prefix, dir=self.parent)
        return os.path.join(self.folder, name)

    def clear_stale(self) -> None:
        """Removes the folders an earlier, killed run for the same dataset left."""
        for stale in glob.glob(os.path.join(glob.escape(self.parent), self.prefix + "*")):
            shutil.rmtree(stale, ignore_errors=True)

    @staticmethod
    def bytes_needed(logs: list[str]) -> int:
        """About the most the folder holds while these logs are sorted out of core.

        At the peak the sorted runs and the merged log are both on disk, about 2.5
        times a CSV log's bytes.
        """
        return int(2.5 * sum(os.path.getsize(path) for path in logs if os.path.isfile(path)))

    def remove(self) -> None:
        if self.folder is not None:
            shutil.rmtree(self.folder, ignore_errors=True)


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


class SortedRun:
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


def merged(runs: list[SortedRun], range_rows: int) -> Iterator[dict[str, np.ndarray]]:
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


class EventTable:
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


_WORKING_COPIES = 8
"""A run's rows are held about this many times over while it is sorted or merged: with it,
peak memory above the imports stayed under limits of 256 MiB and more; below that, the fixed
costs of the side tables and Polars dominate (`docs/performance.md`)."""


def _columns_of(batch: Impressions) -> dict[str, np.ndarray]:
    columns = {name: getattr(batch, name) for name in _ROW_FIELDS}
    columns.update({f"context.{name}": values for name, values in batch.context.items()})
    return columns


_ROW_FIELDS = ("time", "user", "item", "feedback", "label", "file_index", "line", "row_key")


def sorted_runs(
    batches: Iterable[Impressions],
    memory_limit_bytes: int,
    run_rows: int | None,
    scratch: ScratchFolder,
) -> list[SortedRun]:
    """The log's batches as sorted runs of `run_rows` rows (default: as many as fit the limit).

    One run stays in memory; from the second on, every run is spilled to `scratch`.
    """
    runs: list[SortedRun] = []
    buffer: list[dict[str, np.ndarray]] = []
    buffered = 0

    def flush() -> None:
        nonlocal buffer, buffered
        columns = {name: np.concatenate([b[name] for b in buffer]) for name in buffer[0]}
        buffer, buffered = [], 0
        runs.append(SortedRun(columns, min(_SPARSE, max(run_rows // 16, 1))))
        if len(runs) > 1:
            for k, run in enumerate(runs):
                if run.store.folder is None:
                    run.store.spill(scratch.path(f"run-{k}"))

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
