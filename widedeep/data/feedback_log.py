"""Streaming machinery shared by the real-data loaders (KuaiRand, MovieLens).

A loader turns an impression log plus user and item side-feature tables into a
dataset directory (see `widedeep.data.records`): one row per impression with
the user's and the item's features, the impression's context, the label, the
feedback type, and the user's last `max_length` clicked, unclicked and disliked
items *strictly before* the impression.

The pieces here do the source-independent work:

* `FeedbackSource`: what a loader provides: its side-feature tables
  (`FeatureTable`), a re-iterable stream of `Event`s in time order and a schema
  builder.
* `prepare_feedback_dataset`: the two passes over the stream. Pass 1 validates
  every row, drops exact duplicates and counts impressions (overall and per user)
  so the split can be decided. Pass 2 rebuilds the same stream, assigns each
  impression to train or test, builds its feedback sequences from a per-user
  history, writes the records and gathers train-only statistics (vocabularies,
  quantile boundaries) from which the schema is built at the end.

Memory is proportional to the side-feature tables plus `users x 3 x max_length`
item indices (the histories) and a chunk of output rows, never to the log.

Policies (the same for every source):

* **Order and ties.** Impressions are processed in time order; equal times keep
  file order (for several files: the order the files were given, then the line).
  A sequence sees exactly the impressions processed before it, so an event at the
  same timestamp but earlier in the file counts as *before*, the impression itself
  and everything after it never does.
* **Exact duplicates.** A row identical to an earlier row in every raw field is a
  logging duplicate: it is dropped (neither an impression nor a history event) and
  counted in `meta["duplicates_dropped"]`. Identical rows have identical times, so
  only rows sharing the current timestamp are remembered.
* **Split.** `split_by="time"`: the last `round(N * test_fraction)` impressions in
  (time, file order) go to test, so every test impression is at or after every
  train impression. `split_by="user"`: the last `round(n_u * test_fraction)`
  impressions of each user go to test. Rounding is half up. Test impressions'
  sequences see all earlier feedback, train and test alike (that is what a model
  serving at that moment would have seen). Vocabularies and quantile boundaries
  come from train impressions only; unseen values go to the OOV bucket.
* **Bad input.** A missing file or column always raises `FeedbackLogError`
  naming the file (and the column). A malformed row, an impression whose user or
  item is absent from the feature files: with `on_error="stop"` raise naming file
  and line; with `on_error="skip"` skip the row, count it in `meta["skipped"]`
  (with the first few locations in `meta["skipped_examples"]`) and print a summary
  on stderr. Skipped rows are neither impressions nor history events.
* **Time order.** The stream must be in time order. A loader whose files are
  small sorts them in memory (MovieLens); a loader that streams (KuaiRand) checks
  every file and raises, naming the file and line, at the first row that goes
  back in time: sorting a log of arbitrary size within bounded memory is not
  something a loader should do behind your back.
"""

from __future__ import annotations

import abc
import collections
import csv
import heapq
import itertools
import math
import os
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple, TextIO

import numpy as np

from widedeep.data.records import DatasetError
from widedeep.schema import (
    FEEDBACK_TYPES,
    MISSING_INT,
    MISSING_STRING,
    CategoricalFeature,
    CrossFeature,
    NumericFeature,
    Schema,
    SequenceFeature,
)

ON_ERROR_POLICIES: tuple[str, ...] = ("skip", "stop")
SPLIT_BY: tuple[str, ...] = ("time", "user")
SEQUENCE_NAMES: tuple[str, ...] = ("click", "unclick", "dislike")
"""Schema sequence names, in the order DFN reads them (c, u, d); each is a `FEEDBACK_TYPES` entry."""

UNCLICK = FEEDBACK_TYPES.index("unclick")
CLICK = FEEDBACK_TYPES.index("click")
DISLIKE = FEEDBACK_TYPES.index("dislike")

MAX_VOCABULARY_SIZE = 200_000
"""Id features with more distinct train values than this are hashed instead of looked up."""

_MAX_EXAMPLES = 5
_CHUNK_ROWS = 8192
_QUANTILE_SAMPLE = 100_000


class FeedbackLogError(DatasetError):
    """Bad loader input; the message names the file (and the line or column) at fault."""


# ----------------------------------------------------------------------------- options


@dataclass(frozen=True)
class PrepareOptions:
    """Options shared by every loader (see the module docstring for the policies).

    Args:
        max_length: positions kept per feedback sequence (DFN's L; 30 in the paper).
        test_fraction: fraction of impressions in the test split, in `[0, 1)`.
        split_by: `"time"` (a global time cut) or `"user"` (each user's last impressions).
        progress: print rows/s on stderr while reading.
        on_error: `"skip"` (skip and count bad rows) or `"stop"` (raise at the first one).
        num_shards: shards per split for the dataset writer; `None` keeps its default.
        overwrite: replace a dataset already in the output directory.
    """

    max_length: int = 30
    test_fraction: float = 0.2
    split_by: str = "time"
    progress: bool = False
    on_error: str = "skip"
    num_shards: dict[str, int] | None = None
    overwrite: bool = False

    def __post_init__(self) -> None:
        if (
            isinstance(self.max_length, bool)
            or not isinstance(self.max_length, int)
            or self.max_length < 1
        ):
            raise ValueError(
                f"`max_length` must be an int >= 1. Received: max_length={self.max_length!r}"
            )
        f = self.test_fraction
        if isinstance(f, bool) or not isinstance(f, (int, float)) or not 0 <= f < 1:
            raise ValueError(
                f"`test_fraction` must be a number in [0, 1). Received: test_fraction={f!r}"
            )
        if self.split_by not in SPLIT_BY:
            raise ValueError(
                f"`split_by` must be one of {SPLIT_BY}. Received: split_by={self.split_by!r}"
            )
        if self.on_error not in ON_ERROR_POLICIES:
            raise ValueError(
                f"`on_error` must be one of {ON_ERROR_POLICIES}. Received: on_error={self.on_error!r}"
            )


def num_test(n: int, test_fraction: float) -> int:
    """Number of test impressions among `n`: `round(n * test_fraction)`, halves rounded up."""
    return min(n, int(math.floor(n * test_fraction + 0.5)))


# ------------------------------------------------------------------------ error policy


class ErrorPolicy:
    """Applies `on_error` to bad rows: raise, or skip and count by kind.

    `reject` is called once per bad row with a kind such as `"malformed_rows"` or
    `"unknown_users"`. A pass that re-reads rows already counted runs with
    `counting=False` so nothing is counted twice.
    """

    def __init__(self, on_error: str = "skip") -> None:
        if on_error not in ON_ERROR_POLICIES:
            raise ValueError(
                f"`on_error` must be one of {ON_ERROR_POLICIES}. Received: on_error={on_error!r}"
            )
        self.on_error = on_error
        self.counting = True
        self.counts: collections.Counter[str] = collections.Counter()
        self.examples: dict[str, list[str]] = collections.defaultdict(list)

    def reject(self, kind: str, path: str, line: int, message: str) -> None:
        """Handle one bad row at `path`, `line` (1-based; 0 for a whole-file problem)."""
        where = f"{path}, line {line}" if line else str(path)
        if self.on_error == "stop":
            raise FeedbackLogError(
                f"{where}: {message} (on_error='stop'; use on_error='skip' to skip and count)"
            )
        if not self.counting:
            return
        self.counts[kind] += 1
        if len(self.examples[kind]) < _MAX_EXAMPLES:
            self.examples[kind].append(f"{where}: {message}")

    def report(self) -> dict[str, int]:
        return dict(sorted(self.counts.items()))

    def summary(self) -> str:
        if not self.counts:
            return "no rows skipped"
        parts = ", ".join(
            f"{n:,} {kind.replace('_', ' ')}" for kind, n in sorted(self.counts.items())
        )
        first = "; ".join(examples[0] for examples in self.examples.values())
        return f"skipped {parts} (first: {first})"


# ---------------------------------------------------------------------------- reading


class Event(NamedTuple):
    """One impression as read from a log.

    Attributes:
        time: timestamp (any monotone integer unit).
        user: raw user id.
        item: raw item id.
        feedback: index into `FEEDBACK_TYPES`.
        label: 1 if clicked, else 0.
        context: values of the source's context columns (e.g. hour of day).
        raw: the row's raw fields, for exact-duplicate detection.
        file_index: position of the file in the order files were given (tie-break).
        path: the file, for messages.
        line: 1-based line in `path` (tie-break and messages).
    """

    time: int
    user: int
    item: int
    feedback: int
    label: int
    context: tuple
    raw: tuple
    file_index: int
    path: str
    line: int


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


def parse_int(text: str) -> int:
    """Parse an integer written as `"12"` or `"12.0"`; raise `ValueError` otherwise."""
    try:
        return int(text)
    except ValueError:
        try:
            value = float(text)
        except ValueError:
            value = math.nan
        if not value.is_integer():
            raise ValueError(f"not an integer: {text!r}") from None
        return int(value)


def parse_optional_int(text: str) -> int:
    """Like `parse_int`, with an empty or `nan` cell read as `MISSING_INT`."""
    text = text.strip()
    if not text or text.lower() == "nan":
        return MISSING_INT
    return parse_int(text)


def parse_optional_float(text: str) -> float:
    """Parse a float; an empty cell is `nan` (a missing numeric value)."""
    text = text.strip()
    return float(text) if text else math.nan


def merge_by_time(streams: Sequence[Iterable[Event]]) -> Iterator[Event]:
    """Merge time-ordered event streams by (time, file_index, line)."""
    if len(streams) == 1:
        return iter(streams[0])
    return heapq.merge(*streams, key=lambda e: (e.time, e.file_index, e.line))


def check_time_order(events: Iterable[Event]) -> Iterator[Event]:
    """Pass events through, raising `FeedbackLogError` at the first one earlier than its predecessor."""
    previous: Event | None = None
    for event in events:
        if previous is not None and event.time < previous.time:
            raise FeedbackLogError(
                f"{event.path}, line {event.line}: rows are not in time order (time {event.time} after "
                f"{previous.time} at line {previous.line}); this loader streams the log and needs each "
                f"file sorted by time: sort it first with a stable sort on the time column"
            )
        previous = event
        yield event


# ---------------------------------------------------------------------- feature tables


class FeatureTable:
    """Static side features keyed by an integer id, stored column-wise.

    Each column has one extra trailing row holding the missing value, so index
    `len(table)` (`table.missing_index`) gathers missing values: it pads sequences
    and stands in for absent entries.

    Args:
        name: what the table describes, for messages (e.g. `"users"`).
        path: the file it was read from.
        keys: the ids, one per row.
        columns: `{name: values}` with one value per row; `int64` columns use
            `MISSING_INT`, string columns `MISSING_STRING`, float columns `nan`
            for missing values.
        dtypes: `{name: "int64" | "string" | "float32"}`.

    Missing float values are imputed with the column's median over the table
    (0 if the column has no value at all) and counted in `imputed`: a record
    cannot carry "missing" for a scalar float, the model would see NaN. The
    median of a static side-feature file involves no log and no outcome, so it
    leaks nothing.
    """

    def __init__(
        self,
        name: str,
        path: str,
        keys: Sequence[int],
        columns: dict[str, Sequence[Any]],
        dtypes: dict[str, str],
    ) -> None:
        self.name = name
        self.path = str(path)
        self.index: dict[int, int] = {}
        for i, key in enumerate(keys):
            self.index.setdefault(key, i)
        self.size = len(keys)
        self.keys = np.array(keys, dtype=np.int64)
        self.dtypes = dict(dtypes)
        self.columns: dict[str, np.ndarray] = {}
        self.imputed: dict[str, int] = {}
        for col, values in columns.items():
            if len(values) != self.size:
                raise ValueError(f"column {col!r} has {len(values)} values for {self.size} keys")
            dtype = self.dtypes[col]
            if dtype == "int64":
                self.columns[col] = np.array([*values, MISSING_INT], dtype=np.int64)
            elif dtype == "float32":
                array = np.array(values, dtype=np.float64)
                missing = np.isnan(array)
                if missing.any():
                    self.imputed[col] = int(missing.sum())
                    array[missing] = np.median(array[~missing]) if not missing.all() else 0.0
                self.columns[col] = np.append(array, math.nan).astype(np.float32)
            elif dtype == "string":
                self.columns[col] = np.array([*values, MISSING_STRING], dtype=object)
            else:
                raise ValueError(f"column {col!r}: unknown dtype {dtype!r}")

    def __len__(self) -> int:
        return self.size

    @property
    def missing_index(self) -> int:
        return self.size

    def lookup(self, key: int) -> int | None:
        return self.index.get(key)

    def gather(
        self, indices: np.ndarray, names: Iterable[str] | None = None
    ) -> dict[str, np.ndarray]:
        """Column values at `indices` (any shape) for `names` (default: all columns)."""
        names = self.columns if names is None else names
        return {n: self.columns[n][indices] for n in names}


# ---------------------------------------------------------------------------- history


class FeedbackHistory:
    """Per user, the last `max_length` item indices of each feedback type, most recent first.

    Memory is `O(users x len(FEEDBACK_TYPES) x max_length)`.
    """

    def __init__(self, max_length: int) -> None:
        self.max_length = max_length
        self._users: dict[int, tuple[collections.deque[int], ...]] = {}

    def get(self, user: int) -> tuple[collections.deque[int], ...]:
        history = self._users.get(user)
        if history is None:
            history = tuple(collections.deque(maxlen=self.max_length) for _ in FEEDBACK_TYPES)
            self._users[user] = history
        return history

    def add(self, user: int, feedback: int, item: int) -> None:
        self.get(user)[feedback].appendleft(item)

    def sequence(self, user: int, feedback: int) -> list[int]:
        """The user's items of type `feedback` so far, most recent first."""
        return list(self.get(user)[feedback])

    def __len__(self) -> int:
        return len(self._users)


# ------------------------------------------------------------------------- statistics


class TrainStatistics:
    """Vocabularies and numeric statistics accumulated over train rows, chunk by chunk.

    Categorical columns keep exact value counts (memory: distinct values). Numeric
    columns keep exact (weighted) sums for mean / std; their quantile boundaries
    come from the exact weighted values when the column was given with weights (a
    side-table column: bounded by the table), otherwise from a uniform random
    sample of at most `sample_size` rows (a bounded-memory reservoir). Missing
    values (`-1`, `""`, `nan`) are left out of every statistic.
    """

    def __init__(
        self,
        categorical: Iterable[str],
        numeric: Iterable[str],
        *,
        sample_size: int = _QUANTILE_SAMPLE,
        seed: int = 0,
    ) -> None:
        self.counts: dict[str, collections.Counter] = {
            n: collections.Counter() for n in categorical
        }
        self._numeric = list(numeric)
        self._sums = {n: np.zeros(3, dtype=np.float64) for n in self._numeric}
        self._sample = {n: np.empty(0, dtype=np.float64) for n in self._numeric}
        self._keys = {n: np.empty(0, dtype=np.float64) for n in self._numeric}
        self._weighted: dict[str, list[tuple[np.ndarray, np.ndarray]]] = {}
        self._rng = np.random.default_rng(seed)
        self.sample_size = sample_size
        self.rows = 0

    def update(self, columns: dict[str, np.ndarray], weights: np.ndarray | None = None) -> None:
        """Add train rows.

        Args:
            columns: `{name: values}` for some of the tracked columns, one value per
                row; or, with `weights`, one value per entity (e.g. per video).
            weights: how many train rows show each entity (e.g. each video's train
                impressions), so side-table columns are counted without touching
                every row. Entities of weight 0 are not counted at all.
        """
        if weights is None:
            if columns:
                self.rows += len(next(iter(columns.values())))
            weights_or_ones = None
        else:
            weights_or_ones = np.asarray(weights, dtype=np.float64)
        for name, values in columns.items():
            if name in self.counts:
                self._count(name, np.asarray(values), weights_or_ones)
            elif name in self._sums:
                self._add_numeric(name, np.asarray(values, dtype=np.float64), weights_or_ones)

    def _count(self, name: str, values: np.ndarray, weights: np.ndarray | None) -> None:
        if weights is None:
            unique, counts = np.unique(values, return_counts=True)
        else:
            unique, inverse = np.unique(values, return_inverse=True)
            counts = np.rint(np.bincount(inverse.ravel(), weights, minlength=len(unique))).astype(
                np.int64
            )
        counter = self.counts[name]
        for v, c in zip(unique.tolist(), counts.tolist(), strict=True):
            if c and v != MISSING_INT and v != MISSING_STRING:
                counter[v] += c

    def _add_numeric(self, name: str, x: np.ndarray, weights: np.ndarray | None) -> None:
        keep = ~np.isnan(x)
        if weights is not None:
            keep &= weights > 0
            x, w = x[keep], weights[keep]
            self._sums[name] += (w.sum(), (w * x).sum(), (w * x * x).sum())
            self._weighted.setdefault(name, []).append((x, w))
            return
        x = x[keep]
        self._sums[name] += (len(x), x.sum(), np.square(x).sum())
        keys = np.concatenate([self._keys[name], self._rng.random(len(x))])
        sample = np.concatenate([self._sample[name], x])
        if len(sample) > self.sample_size:
            chosen = np.argpartition(keys, self.sample_size)[: self.sample_size]
            keys, sample = keys[chosen], sample[chosen]
        self._keys[name], self._sample[name] = keys, sample

    def vocabulary(self, name: str) -> list[Any]:
        """Train values of `name`, most frequent first (ties by value)."""
        return [v for v, _ in sorted(self.counts[name].items(), key=lambda vc: (-vc[1], vc[0]))]

    def mean_std(self, name: str) -> tuple[float, float]:
        """Train mean and standard deviation (std 1.0 when constant or empty)."""
        n, s, ss = self._sums[name]
        if n == 0:
            return 0.0, 1.0
        mean = s / n
        std = math.sqrt(max(ss / n - mean * mean, 0.0))
        return float(mean), float(std) if std > 1e-9 * max(1.0, abs(mean)) else 1.0

    def boundaries(self, name: str, num_buckets: int) -> list[float]:
        """Up to `num_buckets - 1` distinct quantile boundaries of the train values.

        Quantile `q` is the smallest value whose (weighted) cumulative share reaches
        `q`; duplicates and boundaries equal to the minimum (an empty first bucket)
        are dropped.
        """
        if name in self._weighted:
            x = np.concatenate([v for v, _ in self._weighted[name]])
            w = np.concatenate([w for _, w in self._weighted[name]])
        else:
            x = self._sample[name]
            w = np.ones_like(x)
        if len(x) == 0:
            return []
        order = np.argsort(x, kind="stable")
        x, cumulative = x[order], np.cumsum(w[order])
        targets = np.linspace(0, 1, num_buckets + 1)[1:-1] * cumulative[-1]
        q = x[np.minimum(np.searchsorted(cumulative, targets, side="left"), len(x) - 1)]
        return sorted({float(v) for v in q if v > x[0]})


# ----------------------------------------------------------------- schema helpers


def categorical_feature(
    stats: TrainStatistics,
    name: str,
    dtype: str,
    *,
    embedding_dim: int | None = 8,
    wide: bool = True,
    max_vocabulary_size: int = MAX_VOCABULARY_SIZE,
    hashed: bool = False,
) -> CategoricalFeature:
    """A categorical feature from train statistics.

    A vocabulary of the train values (most frequent first, one OOV bucket), or, when
    `hashed` or when there are more than `max_vocabulary_size` distinct values,
    hashing into a power of two at least twice the number of distinct train values
    (at least 1024). A feature with no train value at all hashes into one bucket.
    """
    vocabulary = stats.vocabulary(name)
    if vocabulary and not hashed and len(vocabulary) <= max_vocabulary_size:
        return CategoricalFeature(
            name, dtype=dtype, vocabulary=vocabulary, wide=wide, embedding_dim=embedding_dim
        )
    buckets = 1 if not vocabulary else max(1024, 1 << (2 * len(vocabulary) - 1).bit_length())
    return CategoricalFeature(
        name, dtype=dtype, hash_buckets=buckets, wide=wide, embedding_dim=embedding_dim
    )


def numeric_feature(
    stats: TrainStatistics, name: str, *, num_buckets: int = 10, wide: bool = True
) -> NumericFeature:
    """A standardised numeric feature with train quantile boundaries (wide if there are any)."""
    mean, std = stats.mean_std(name)
    boundaries = stats.boundaries(name, num_buckets) or None
    return NumericFeature(
        name, mean=mean, std=std, boundaries=boundaries, wide=wide and boundaries is not None
    )


def cross_feature(
    name: str,
    features: Sequence[CategoricalFeature | NumericFeature],
    *,
    max_buckets: int = 1 << 16,
) -> CrossFeature:
    """A wide cross sized at twice the product of its features' cardinalities, capped."""
    product = math.prod(f.cardinality for f in features)
    buckets = int(min(max_buckets, max(16, 2 * product)))
    return CrossFeature(name, [f.name for f in features], hash_buckets=buckets, wide=True)


def feedback_sequences(item_features: Sequence[str], max_length: int) -> list[SequenceFeature]:
    """The three DFN sequences over `item_features`."""
    return [SequenceFeature(name, list(item_features), max_length) for name in SEQUENCE_NAMES]


# ----------------------------------------------------------------------------- source


class FeedbackSource(abc.ABC):
    """What a loader provides to `prepare_feedback_dataset`.

    Attributes:
        name: the source's name, for messages and meta (e.g. `"kuairand"`).
        users: user side features keyed by user id (the user id itself is written
            from the event as the column `user_column`).
        items: item side features keyed by item id, including the item id column.
        user_column: name of the user id column (also the schema's group key).
        item_features: item-table columns describing an item, in the order the
            schema's `target_item_features` and every sequence use.
        context_columns: `{name: dtype}` of the per-impression `Event.context` values.
    """

    name: str
    users: FeatureTable
    items: FeatureTable
    user_column: str = "user_id"
    item_features: Sequence[str]
    context_columns: dict[str, str]

    @abc.abstractmethod
    def events(self, policy: ErrorPolicy) -> Iterator[Event]:
        """A fresh stream of the log's impressions in (time, file order), bad rows sent to `policy`."""

    @abc.abstractmethod
    def build_schema(self, stats: TrainStatistics, max_length: int) -> Schema:
        """The schema, from train statistics of every written column."""

    def describe(self) -> dict[str, Any]:
        """Source-specific facts for meta.json (files, layout, ...)."""
        return {}

    def column_dtypes(self) -> dict[str, str]:
        """`{column: dtype}` of every feature column written per impression."""
        dtypes = {self.user_column: "int64"}
        dtypes.update(self.users.dtypes)
        dtypes.update(self.items.dtypes)
        dtypes.update(self.context_columns)
        for seq in SEQUENCE_NAMES:
            for f in self.item_features:
                dtypes[f"{seq}_{f}"] = self.items.dtypes[f]
        return dtypes


# ------------------------------------------------------------------------------ passes


class Progress:
    """Rows/s on stderr, at most every `interval` seconds, when enabled."""

    def __init__(
        self, label: str, enabled: bool, *, interval: float = 2.0, stream: TextIO | None = None
    ):
        self.label = label
        self.enabled = enabled
        self.interval = interval
        self.stream = stream if stream is not None else sys.stderr
        self.rows = 0
        self._start = self._last = time.monotonic()

    def update(self, rows: int = 1) -> None:
        self.rows += rows
        if self.enabled and not self.rows & 0xFFF:
            now = time.monotonic()
            if now - self._last >= self.interval:
                self._last = now
                self._print(now)

    def done(self) -> None:
        if self.enabled:
            self._print(time.monotonic(), final=True)

    def _print(self, now: float, final: bool = False) -> None:
        elapsed = max(now - self._start, 1e-9)
        end = " done" if final else ""
        print(
            f"{self.label}: {self.rows:,} rows, {self.rows / elapsed:,.0f} rows/s{end}",
            file=self.stream,
            flush=True,
        )


def _clean_events(
    source: FeedbackSource, policy: ErrorPolicy, progress: Progress, duplicates: list[int]
) -> Iterator[tuple[Event, int, int]]:
    """Time-order check, exact-duplicate drop and side-table lookup over `source.events`.

    Yields `(event, user_index, item_index)`; `duplicates[0]` counts dropped duplicates.
    """
    window_time: int | None = None
    window: set[tuple] = set()
    previous: Event | None = None
    user_index, item_index = source.users.index.get, source.items.index.get
    for event in source.events(policy):
        progress.update()
        if previous is not None and event.time < previous.time:
            raise FeedbackLogError(
                f"{event.path}, line {event.line}: time {event.time} is before time {previous.time} "
                f"of {previous.path}, line {previous.line}; events must come in time order"
            )
        previous = event
        if event.time != window_time:
            window_time, window = event.time, set()
        if event.raw in window:
            duplicates[0] += 1
            continue
        window.add(event.raw)
        u = user_index(event.user)
        if u is None:
            policy.reject(
                "unknown_users",
                event.path,
                event.line,
                f"user {event.user} is not in {source.users.path}",
            )
            continue
        i = item_index(event.item)
        if i is None:
            policy.reject(
                "unknown_items",
                event.path,
                event.line,
                f"item {event.item} is not in {source.items.path}",
            )
            continue
        yield event, u, i


class _ChunkBuffer:
    """Rows of one split waiting to be written, as plain lists (cheap appends per row).

    `rows` holds one tuple per impression: `(user_index, item_index, user_id, label,
    feedback, context, click_items, unclick_items, dislike_items)`, the item tuples
    most recent first; `padded_sequences` turns them into `[rows, L]` arrays at once.
    """

    def __init__(self, capacity: int, max_length: int, pad: int) -> None:
        self.capacity = capacity
        self.max_length = max_length
        self.pad = pad
        self.rows: list[tuple] = []

    def padded_sequences(self, field: int) -> np.ndarray:
        items = [row[field] for row in self.rows]
        lengths = np.fromiter(map(len, items), dtype=np.int64, count=len(items))
        flat = np.fromiter(
            itertools.chain.from_iterable(items), dtype=np.int64, count=int(lengths.sum())
        )
        out = np.full((len(items), self.max_length), self.pad, dtype=np.int64)
        out[np.arange(self.max_length) < lengths[:, None]] = flat
        return out


def prepare_feedback_dataset(
    source: FeedbackSource,
    out_dir: str | os.PathLike,
    options: PrepareOptions,
    *,
    policy: ErrorPolicy | None = None,
    chunk_rows: int = _CHUNK_ROWS,
) -> dict[str, Any]:
    """Run both passes over `source` and write the dataset directory `out_dir`.

    Args:
        source: the loader's tables, event stream and schema builder.
        out_dir: the dataset directory to write.
        options: the shared options.
        policy: the error policy the source already used while reading its side
            tables, so their skipped rows are reported too; default: a fresh one.
        chunk_rows: rows per chunk handed to the writer.

    Returns:
        The meta written to `meta.json`: `source`, `files`, `split` (with the first
        test impression for a time split), `impressions`, `users`, `time_range`,
        `feedback_counts` per split, `duplicates_dropped`, `imputed`, `skipped`
        (counts by kind), `skipped_examples` and the writer's `splits`.
    """
    from widedeep.data.records import DatasetWriter

    L = options.max_length
    policy = policy if policy is not None else ErrorPolicy(options.on_error)

    # Pass 1: validate, count, find the split.
    progress = Progress(f"{source.name} pass 1/2", options.progress)
    duplicates = [0]
    per_user: collections.Counter[int] = collections.Counter()
    n_total = 0
    first_time = last_time = None
    for event, _, _ in _clean_events(source, policy, progress, duplicates):
        n_total += 1
        per_user[event.user] += 1
        if first_time is None:
            first_time = event.time
        last_time = event.time
    progress.done()
    if n_total == 0:
        raise FeedbackLogError(
            f"{source.name}: no valid impression in the log ({policy.summary()})"
        )
    skipped = policy.report()
    examples = {k: list(v) for k, v in policy.examples.items()}
    duplicates_dropped = duplicates[0]
    if policy.counts:
        print(f"{source.name}: {policy.summary()}", file=sys.stderr, flush=True)

    if options.split_by == "time":
        n_train_total = n_total - num_test(n_total, options.test_fraction)
        test_from_user: dict[int, int] = {}
    else:
        n_train_total = -1
        test_from_user = {u: n - num_test(n, options.test_fraction) for u, n in per_user.items()}

    # Pass 2: sequences, records and train statistics.
    policy.counting = False
    dtypes = source.column_dtypes()
    categorical = [n for n, d in dtypes.items() if d != "float32" and not _is_sequence(n)]
    numeric = [n for n, d in dtypes.items() if d == "float32"]
    stats = TrainStatistics(categorical, numeric)
    writer = DatasetWriter(out_dir, options.num_shards, overwrite=options.overwrite)
    pad = source.items.missing_index
    buffers = {split: _ChunkBuffer(chunk_rows, L, pad) for split in ("train", "test")}
    by_time = options.split_by == "time"
    sequence_codes = [FEEDBACK_TYPES.index(name) for name in SEQUENCE_NAMES]
    history = FeedbackHistory(L)
    seen_per_user: collections.Counter[int] = collections.Counter()
    feedback_counts = {split: [0] * len(FEEDBACK_TYPES) for split in ("train", "test")}
    cut: dict[str, Any] | None = None
    ordinal = 0
    progress = Progress(f"{source.name} pass 2/2", options.progress)

    # Side-table columns are counted per user / per item (train impressions of
    # each) and turned into statistics once at the end: no per-row work.
    train_user_counts = np.zeros(len(source.users) + 1, dtype=np.int64)
    train_item_counts = np.zeros(len(source.items) + 1, dtype=np.int64)

    def flush(split: str) -> None:
        nonlocal train_user_counts, train_item_counts
        buf = buffers[split]
        if buf.rows:
            columns, user_index, item_index = _chunk_columns(source, buf)
            if split == "train":
                train_user_counts += np.bincount(user_index, minlength=len(train_user_counts))
                train_item_counts += np.bincount(item_index, minlength=len(train_item_counts))
                stats.update({name: columns[name] for name in source.context_columns})
            writer.write(split, columns)
            buf.rows = []

    for event, u, i in _clean_events(source, policy, progress, [0]):
        if by_time:
            is_test = ordinal >= n_train_total
            if is_test and cut is None:
                cut = {"time": event.time, "file": event.path, "line": event.line}
        else:
            is_test = seen_per_user[event.user] >= test_from_user[event.user]
            seen_per_user[event.user] += 1
        ordinal += 1
        split = "test" if is_test else "train"
        buf = buffers[split]
        user_history = history.get(u)
        clicks, unclicks, dislikes = (tuple(user_history[code]) for code in sequence_codes)
        buf.rows.append(
            (
                u,
                i,
                event.user,
                event.label,
                event.feedback,
                event.context,
                clicks,
                unclicks,
                dislikes,
            )
        )
        feedback_counts[split][event.feedback] += 1
        if len(buf.rows) == buf.capacity:
            flush(split)
        user_history[event.feedback].appendleft(i)
    flush("train")
    flush("test")
    progress.done()
    if ordinal != n_total:
        raise FeedbackLogError(
            f"{source.name}: pass 2 read {ordinal} impressions, pass 1 read {n_total}; "
            f"did the input files change while preparing?"
        )

    users, items = source.users, source.items
    stats.update(
        {source.user_column: users.keys, **users.gather(np.arange(len(users)))},
        train_user_counts[:-1],
    )
    stats.update(items.gather(np.arange(len(items))), train_item_counts[:-1])
    schema = source.build_schema(stats, L)
    expected = set(dtypes) | {schema.label, schema.feedback, schema.group_key}
    declared = set(schema.input_signature()) | {schema.label, schema.feedback, schema.group_key}
    if declared != expected:
        raise AssertionError(
            f"{source.name} schema inputs differ from written columns: "
            f"missing {sorted(expected - declared)}, extra {sorted(declared - expected)}"
        )
    split_meta: dict[str, Any] = {
        "by": options.split_by,
        "test_fraction": float(options.test_fraction),
    }
    if cut is not None:
        split_meta["test_starts_at"] = cut
    meta = {
        "source": source.name,
        **source.describe(),
        "max_length": L,
        "split": split_meta,
        "impressions": n_total,
        "users": len(per_user),
        "time_range": [first_time, last_time],
        "feedback_counts": {
            split: dict(zip(FEEDBACK_TYPES, counts, strict=True))
            for split, counts in feedback_counts.items()
        },
        "duplicates_dropped": duplicates_dropped,
        "imputed": {
            f"{table.name}.{col}": n
            for table in (source.users, source.items)
            for col, n in table.imputed.items()
        },
        "skipped": skipped,
        "skipped_examples": examples,
        "on_error": options.on_error,
    }
    return writer.close(schema, meta)


def _is_sequence(name: str) -> bool:
    return any(name.startswith(f"{s}_") for s in SEQUENCE_NAMES)


def _chunk_columns(
    source: FeedbackSource, buf: _ChunkBuffer
) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]:
    """The chunk's columns for the writer, and its rows' user and item table indices."""
    rows = buf.rows
    user_index, item_index, user_id, label, feedback = (
        np.array([row[k] for row in rows], dtype=np.int64) for k in range(5)
    )
    columns: dict[str, np.ndarray] = {source.user_column: user_id}
    columns.update(source.users.gather(user_index))
    columns.update(source.items.gather(item_index))
    for j, (name, dtype) in enumerate(source.context_columns.items()):
        columns[name] = np.array([row[5][j] for row in rows], dtype=_NUMPY_DTYPES[dtype])
    for k, name in enumerate(SEQUENCE_NAMES):
        seq = buf.padded_sequences(6 + k)
        for f in source.item_features:
            columns[f"{name}_{f}"] = source.items.columns[f][seq]
    columns["label"] = label
    columns["feedback"] = feedback
    return columns, user_index, item_index


_NUMPY_DTYPES: dict[str, Callable | type] = {
    "int64": np.int64,
    "float32": np.float32,
    "string": object,
}
