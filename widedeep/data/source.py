"""The source contract: what every log source (KuaiRand, MovieLens, your own log) gives
the preparation engine, and the policies the engine applies to it.

A source (`FeedbackSource`) yields its log as batches of `Impressions` and reads
its user and item side tables into `FeatureTable`s;
`widedeep.data.prepare.prepare_impressions` sorts, cleans, splits, builds the
feedback sequences and writes the dataset directory (see `widedeep.data.dataset_format`),
and hands the source its `TrainStatistics` to build the schema. `PrepareOptions`
are the options every source shares; `ErrorPolicy` applies `on_error` to bad rows
and `FeedbackLogError` is the error a bad input raises.

Policies (the same for every source):

* **Order and ties.** A log may come in any order: impressions are sorted by
  time, equal times keep file order (for several files: the order the files were
  given, then the line). A sequence sees exactly the impressions before it in
  that order, so an event at the same timestamp but earlier in the file counts as
  *before*, the impression itself and everything after it never does.
* **Exact duplicates.** A row identical to an earlier row in every raw field is a
  logging duplicate: it is dropped (neither an impression nor a history event) and
  counted in `meta["duplicates_dropped"]`.
* **Split.** `split_by="time"`: the last `round(N * test_fraction)` impressions in
  (time, file order) go to test, so every test impression is at or after every
  train impression. `split_by="user"`: the last `round(n_u * test_fraction)`
  impressions of each user go to test. Rounding is half up. Test impressions'
  sequences see all earlier feedback, train and test alike (that is what a model
  serving at that moment would have seen). Vocabularies and quantile boundaries
  come from train impressions only; unseen values go to the OOV bucket.
* **Bad input.** A missing file or column always raises `FeedbackLogError`
  naming the file (and the column). A malformed row (a value that does not parse
  names its column and the value), an impression whose user or item is absent
  from the feature files: with `on_error="stop"` raise naming file and line; with
  `on_error="skip"` skip the row, count it in `meta["skipped"]` (with the first
  few locations in `meta["skipped_examples"]`) and print a summary on stderr.
  Skipped rows are neither impressions nor history events. Integers are read by
  one parser (`widedeep.data.log_reading.whole_number`) in every source.
"""

from __future__ import annotations

import abc
import collections
import math
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from widedeep.data.dataset_format import DatasetError
from widedeep.schema import (
    FEEDBACK_SEQUENCES,
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

ITEM_HISTORY_FEATURES: tuple[str, ...] = ("item_log_impressions", "item_ctr")
"""The item's history strictly before an impression (every user's, in the engine's order):
`log1p(impressions)` and its click rate `(clicks + 5 * prior) / (impressions + 5)`, `prior`
being the log's click rate before the impression, `(clicks + 1) / (impressions + 2)`. The
same rule as the sequences: what a counter in the serving system knows at that moment."""
ITEM_HISTORY_SMOOTHING = 5.0
"""Pseudo-impressions at the prior in `item_ctr`."""

UNCLICK = FEEDBACK_TYPES.index("unclick")
CLICK = FEEDBACK_TYPES.index("click")
DISLIKE = FEEDBACK_TYPES.index("dislike")

MAX_VOCABULARY_SIZE = 200_000
"""Id features with more distinct train values than this are hashed instead of looked up."""

_MAX_EXAMPLES = 5
_QUANTILE_SAMPLE = 100_000
CHUNK_ROWS = 65536
"""Rows per batch the engine asks a source for, and per chunk it hands the dataset writer
(the engine's unit of working memory)."""


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
        memory_limit: MiB for the log's rows held at once while sorting and writing
            (side tables and per-user counters come on top); a log that does not fit
            is sorted out of core through a scratch folder.
        temp_dir: where that scratch folder goes (default: beside the output
            directory, which has room for the dataset; deleted at the end).
        item_history: add the item's history before each impression as two numeric
            features (`ITEM_HISTORY_FEATURES`). Off by default: on the KuaiRand dev log
            they lifted LR + history statistics' test AUC but neither W&D's nor DFN's
            validation peak (three seeds each; `docs/results.md`).
    """

    max_length: int = 30
    test_fraction: float = 0.2
    split_by: str = "time"
    progress: bool = False
    on_error: str = "skip"
    num_shards: dict[str, int] | None = None
    overwrite: bool = False
    memory_limit: int = 256
    temp_dir: str | None = None
    item_history: bool = False

    def __post_init__(self) -> None:
        _check_int("memory_limit", self.memory_limit, 16, " (MiB)")
        _check_int("max_length", self.max_length, 1)
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


def _check_int(name: str, value: Any, minimum: int, unit: str = "") -> None:
    """Raises `ValueError` naming option `name` unless `value` is an int >= `minimum`."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"`{name}` must be an int >= {minimum}{unit}. Received: {name}={value!r}")


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
        self.size = len(keys)
        self.keys = np.array(keys, dtype=np.int64)
        self._rows: np.ndarray | None = None  # built by `indices`
        self.dtypes = dict(dtypes)
        self.columns: dict[str, np.ndarray] = {}
        self.imputed: dict[str, int] = {}
        for col, values in columns.items():
            if len(values) != self.size:
                raise ValueError(f"column {col!r} has {len(values)} values for {self.size} keys")
            dtype = self.dtypes[col]
            if dtype == "int64":
                self.columns[col] = np.append(np.asarray(values, dtype=np.int64), MISSING_INT)
            elif dtype == "float32":
                array = np.array(values, dtype=np.float64)
                missing = np.isnan(array)
                if missing.any():
                    self.imputed[col] = int(missing.sum())
                    array[missing] = np.median(array[~missing]) if not missing.all() else 0.0
                self.columns[col] = np.append(array, math.nan).astype(np.float32)
            elif dtype == "string":
                self.columns[col] = np.append(np.asarray(values, dtype=object), MISSING_STRING)
            else:
                raise ValueError(f"column {col!r}: unknown dtype {dtype!r}")

    def __len__(self) -> int:
        return self.size

    @property
    def missing_index(self) -> int:
        return self.size

    def lookup(self, key: int) -> int | None:
        """The row of `key` (the first row listing it), None if absent."""
        row = int(self.indices(np.array([key]))[0])
        return None if row < 0 else row

    def indices(self, keys: np.ndarray) -> np.ndarray:
        """Row of each of `keys` (the first row listing it), `-1` where it is absent.

        Ids in a compact range (at most 4 slots per row, plus a million) are looked
        up in a dense array of rows, others by binary search.
        """
        keys = np.asarray(keys, dtype=np.int64)
        if not self.size:
            return np.full(keys.shape, -1, dtype=np.int64)
        low, high = int(self.keys.min()), int(self.keys.max())
        if high - low < 4 * self.size + 1_000_000:
            if self._rows is None:
                unique, first = np.unique(self.keys, return_index=True)
                self._rows = np.full(high - low + 2, -1, dtype=np.int64)  # last slot: absent
                self._rows[unique - low] = first
            at = keys - low
            return self._rows[np.where((at < 0) | (at > high - low), high - low + 1, at)]
        order = np.argsort(self.keys, kind="stable")
        sorted_keys = self.keys[order]
        at = np.minimum(np.searchsorted(sorted_keys, keys), len(order) - 1)
        return np.where(sorted_keys[at] == keys, order[at], -1).astype(np.int64)

    def gather(
        self, indices: np.ndarray, names: Iterable[str] | None = None
    ) -> dict[str, np.ndarray]:
        """Column values at `indices` (any shape) for `names` (default: all columns)."""
        names = self.columns if names is None else names
        return {n: self.columns[n][indices] for n in names}


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


# ----------------------------------------------------------------------------- source


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


class FeedbackSource(abc.ABC):
    """What a loader provides to `widedeep.data.prepare.prepare_impressions`.

    Attributes:
        name: the source's name, for messages and meta (e.g. `"kuairand"`).
        users: user side features keyed by user id (the user id itself is written
            from the log as the column `user_column`).
        items: item side features keyed by item id, including the item id column.
        user_column: name of the user id column (also the schema's group key).
        item_features: item-table columns describing an item, in the order the
            schema's `target_item_features` and every sequence use.
        context_columns: `{name: dtype}` of the per-impression `Impressions.context` columns.
        logs: the log files, in the order given (`Impressions.file_index` points here).
    """

    name: str
    users: FeatureTable
    items: FeatureTable
    user_column: str = "user_id"
    item_features: Sequence[str]
    context_columns: dict[str, str]

    logs: list[str]

    @abc.abstractmethod
    def impressions(self, policy: ErrorPolicy, batch_rows: int) -> Iterator[Impressions]:
        """The log's impressions in file order, in batches of about `batch_rows` rows.

        Malformed rows go to `policy`. `users` and `items` are complete once the
        batches are: a source may build a table from the ids it reads.
        """

    def context_values(self, name: str, values: np.ndarray) -> np.ndarray:
        """Context column `name` as written, from its values in `Impressions.context`.

        `Impressions.context` holds numbers only; a source with a string column keeps
        codes there and turns them back into strings here.
        """
        return values

    @abc.abstractmethod
    def build_schema(self, stats: TrainStatistics, max_length: int) -> Schema:
        """The schema, from train statistics of every written column (see `feedback_schema`)."""

    def feedback_schema(
        self,
        categorical: list[CategoricalFeature],
        numeric: list[NumericFeature],
        max_length: int,
        crosses: Sequence[CrossFeature] = (),
    ) -> Schema:
        """The schema of a source with these scalar features.

        Every source's schema has the three DFN sequences (`FEEDBACK_SEQUENCES`, each
        `max_length` long) over `item_features`, which also describe the target item,
        and groups impressions by `user_column`.

        Args:
            categorical: the categorical features.
            numeric: the numeric features.
            max_length: positions per feedback sequence.
            crosses: the crossed features.

        Returns:
            The `Schema`.
        """
        return Schema(
            categorical=categorical,
            numeric=numeric,
            crosses=list(crosses),
            sequences=[
                SequenceFeature(name, list(self.item_features), max_length)
                for name in FEEDBACK_SEQUENCES
            ],
            group_key=self.user_column,
            target_item_features=list(self.item_features),
        )

    def describe(self) -> dict[str, Any]:
        """Source-specific facts for meta.json (files, layout, ...)."""
        return {}

    def report(self, schema: Schema) -> dict[str, Any]:
        """Facts for meta.json that need the finished schema (e.g. what was done with each column)."""
        return {}

    def dataset_files(self) -> dict[str, Any]:
        """Other JSON files for the dataset directory, `{file name: payload}`, written before meta.json."""
        return {}

    def column_dtypes(self) -> dict[str, str]:
        """`{column: dtype}` of every feature column written per impression."""
        dtypes = {self.user_column: "int64"}
        dtypes.update(self.users.dtypes)
        dtypes.update(self.items.dtypes)
        dtypes.update(self.context_columns)
        for seq in FEEDBACK_SEQUENCES:
            for f in self.item_features:
                dtypes[f"{seq}_{f}"] = self.items.dtypes[f]
        return dtypes
