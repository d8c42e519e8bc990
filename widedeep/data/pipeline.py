"""`make_dataset`: the batched `tf.data` input pipeline over one split of a dataset directory."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Sequence
from typing import Any

import tensorflow as tf

from widedeep.data.dataset_format import DEFAULT_ROWS_PER_RECORD
from widedeep.data.reader import (
    Rows,
    check_columns,
    check_rows,
    interleaved_records,
    load_dataset_dir,
    ordered_groups,
    split_files,
)
from widedeep.data.record_parser import compiled_parser
from widedeep.schema import FEEDBACK_TYPES, Schema

__all__ = [
    "PipelineOptions",
    "available_memory",
    "make_dataset",
    "make_dataset_fn",
    "parsed_bytes",
]

# Bytes of one parsed value by dtype; a `tf.string` element is a 24-byte `tstring`
# (short strings inline) plus its characters, counted here as 32 in all.
_VALUE_BYTES = {"int64": 8, "float32": 4, "string": 32}


def parsed_bytes(schema: Schema, rows: int, extra_columns: Sequence[str] = ()) -> int:
    """Memory of `rows` rows as `make_dataset(..., cache=True)` holds them, parsed.

    Counts every input of `schema.input_signature()` (sequences at `max_length`),
    the label and the feedback code at their parsed width; `extra_columns` count
    8 bytes each.
    """
    per_row = 16 + 8 * len(extra_columns)  # label and feedback code, int64
    for shape, dtype in schema.input_signature().values():
        per_row += _VALUE_BYTES[dtype] * (shape[0] if shape else 1)
    return per_row * rows


def available_memory() -> int | None:
    """Bytes of memory this process may use: the machine's, or its cgroup's limit if lower.

    None where the platform does not say (then nothing is cached by default).
    """
    try:
        memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        return None
    for path in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            with open(path) as f:
                limit = f.read().strip()
        except OSError:
            continue
        if limit.isdigit():
            memory = min(memory, int(limit))
    return memory


@dataclasses.dataclass(frozen=True)
class PipelineOptions:
    """How `make_dataset` and `make_dataset_fn` read, shuffle and batch a split.

    Both functions take these fields as keyword arguments, e.g.
    `make_dataset(data_dir, "train", batch_size=512, shuffle=True, seed=0)`.

    Raises:
        ValueError: if `batch_size` or `feedback_weights` is out of range.
    """

    batch_size: int = 256
    """Rows per batch."""
    shuffle: bool = False
    """Shuffle shard order and rows (windows of `shuffle_buffer` rows)."""
    repeat: bool = False
    """Repeat indefinitely (reshuffling every epoch when `shuffle`)."""
    feedback_weights: Sequence[float] | None = None
    """Weights of the feedback types `(unclick, click, dislike)`, e.g. `(1, 1, 10)` as in
    DFN; None gives every example weight 1."""
    drop_remainder: bool = False
    """Drop the last, smaller batch."""
    deterministic: bool | None = None
    """Whether parallel stages keep their order. Defaults to True unless `shuffle` without
    a `seed`. Always True without `shuffle`."""
    shuffle_buffer: int = 10_000
    """Rows per shuffle window (rounded up to whole records): a row moves within its
    window of the epoch's interleaved stream."""
    num_parallel_reads: int | None = None
    """Shards read in parallel (e.g. `tf.data.AUTOTUNE` for remote storage). None: the
    shards are interleaved in one thread, the cheapest for local files."""
    rows: Rows | None = None
    """`(start, stop)` keeps rows `start <= i < stop` in write (time) order, e.g. the last
    tenth of the training period as a validation set; a sorted 1-D array of distinct row
    numbers keeps those rows, in write order (e.g. each user's last rows,
    `widedeep.data.carve`). The shards are then read in file order and only the rows are
    shuffled (when `shuffle`)."""
    reshuffle_each_iteration: bool = True
    """With `shuffle`, whether every new iterator (a new epoch of a dataset iterated
    several times, or of `repeat`) gets a new order. False gives every iterator the order
    of the first: for a dataset built per epoch with its own `seed`, as `widedeep train`
    does, whose iterator may be restarted (Keras starts one to build the model under a
    distribution strategy, then another to train)."""
    extra_columns: Sequence[str] = ()
    """Stored columns to add to `features` beside the inputs, e.g. the group key, so that
    they travel with their rows (a `WideDeepModel` ignores features it does not use)."""
    cache: bool = False
    """Read and parse the rows once, when the pipeline is made, and keep the parsed
    groups in memory (`Dataset.cache`): every iterator (epoch) then starts from them
    instead of the files. For data that fits in memory (see `parsed_bytes`). With
    `shuffle`, the groups' order replaces the shard order as what is shuffled beside the
    rows (unless `rows` is given: then groups stay in time order, as without `cache`);
    the batches are otherwise those of the uncached pipeline."""

    def __post_init__(self) -> None:
        if not isinstance(self.batch_size, int) or self.batch_size < 1:
            raise ValueError(
                f"batch_size must be an int >= 1. Received: batch_size={self.batch_size!r}"
            )
        if self.feedback_weights is not None:
            weights = [float(w) for w in self.feedback_weights]
            if len(weights) != len(FEEDBACK_TYPES) or min(weights) < 0:
                raise ValueError(
                    f"feedback_weights must be {len(FEEDBACK_TYPES)} non-negative numbers for "
                    f"{FEEDBACK_TYPES}. Received: feedback_weights={self.feedback_weights!r}"
                )


@tf.function
def _permute_rows(columns: dict[str, tf.Tensor], group_seed: tf.Tensor) -> dict[str, tf.Tensor]:
    """The rows of one group in the random order of `group_seed`."""
    rows = tf.shape(next(iter(columns.values())))[0]
    stateless_seed = tf.stack([group_seed, tf.constant(0, tf.int64)])
    order = tf.random.experimental.stateless_shuffle(tf.range(rows), seed=stateless_seed)
    return {name: tf.gather(values, order) for name, values in columns.items()}


def _shuffled_rows(ds: tf.data.Dataset, seed: int | None, reshuffle: bool) -> tf.data.Dataset:
    """Randomly permutes the rows of each `{column: [rows, ...]}` group.

    One in-tensor permutation per group of parsed records replaces a streaming
    `Dataset.shuffle` buffer, which moves every row through the buffer one element at a
    time. Each group gets its own seed from `Dataset.random`, so a `seed` makes the order
    reproducible while, with `reshuffle`, every epoch (every new iterator) is reshuffled.
    """
    seeds = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=reshuffle)
    return tf.data.Dataset.zip(ds, seeds).map(_permute_rows)


def make_dataset(
    data_dir: str | os.PathLike,
    split: str,
    schema: Schema | None = None,
    *,
    seed: int | None = None,
    **options: Any,
) -> tf.data.Dataset:
    """A batched `tf.data` pipeline over one split of a dataset directory.

    Yields `(features, label, sample_weight)`: `features` holds the raw inputs of
    `schema.input_signature()` (and `extra_columns`, if any) -- categorical `int64`/`tf.string` `[B]`,
    numeric `float32` `[B]`, sequences `[B, max_length]` right-padded with the
    missing value (and truncated to their most recent `max_length` items).
    `label` is `float32 [B, 1]` (the models' output shape); `sample_weight` is
    `feedback_weights[feedback code]`, or 1.0 when `feedback_weights` is None.

    The pipeline reads the shards interleaved (file order shuffled when
    `shuffle`), parses groups of records (about `shuffle_buffer` rows, or a few
    batches without `shuffle`) with one vectorised `tf.io.parse_example`, shuffles
    the rows of each group (one in-tensor permutation, reseeded every epoch),
    re-batches to `batch_size` and prefetches. Without `shuffle`, rows come in the
    order they were written, read as `widedeep.data.reader.read_split` reads them
    (the same order as `read_columns`). Model-based tf.data autotuning is turned
    off (`AUTOTUNE` settings fall back to TensorFlow's static defaults): its
    per-record bookkeeping cost more CPU than it saved on small machines.

    Args:
        data_dir: the dataset directory.
        split: e.g. `"train"` or `"test"`.
        schema: the schema to parse with; defaults to the directory's own.
        seed: seed of the shuffles.
        **options: the fields of `PipelineOptions`: `batch_size`, `shuffle`, `repeat`,
            `feedback_weights`, `drop_remainder`, `deterministic`, `shuffle_buffer`,
            `num_parallel_reads`, `rows`, `reshuffle_each_iteration`, `extra_columns`,
            `cache`.

    Returns:
        A `tf.data.Dataset` of `(features, label, sample_weight)` batches.

    Raises:
        DatasetError: if the directory, split or a needed column is missing.
        ValueError: if an option is out of range.
        TypeError: for a keyword that is not an option.

    Example:

    ```python
    train = make_dataset("data/sim", "train", batch_size=512, shuffle=True, seed=0)
    ```
    """
    return make_dataset_fn(data_dir, split, schema, **options)(seed)


def make_dataset_fn(
    data_dir: str | os.PathLike,
    split: str,
    schema: Schema | None = None,
    **options: Any,
) -> Callable[[int | None], tf.data.Dataset]:
    """`make_dataset` as a function of the shuffle seed, for one pipeline per epoch.

    `make_dataset_fn(...)(seed)` is `make_dataset(..., seed=seed)`. With `cache`,
    the rows are read and parsed once, when this is called, and every pipeline
    the function returns starts from the same parsed groups in memory: each
    epoch gets its own seed without reading the files again, as `widedeep train`
    does. The arguments are those of `make_dataset` (the options are
    `PipelineOptions`' fields).
    """
    opts = PipelineOptions(**options)
    data_dir = os.fspath(data_dir)
    dir_schema, meta = load_dataset_dir(data_dir)
    schema = schema or dir_schema
    files = split_files(data_dir, meta, split)
    rows, shuffle, batch_size = opts.rows, opts.shuffle, opts.batch_size
    weights = None
    if opts.feedback_weights is not None:
        weights = [float(w) for w in opts.feedback_weights]
    total = int(meta["splits"][split]["examples"])
    if total:
        check_columns(data_dir, split, schema)
    count = check_rows(rows, total, split)

    inputs = list(dict.fromkeys([*schema.input_signature(), *opts.extra_columns]))
    names = [*inputs, schema.label] + ([schema.feedback] if weights is not None else [])
    parse = compiled_parser(data_dir, meta, schema, tuple(dict.fromkeys(names)))
    label_name, feedback_name = schema.label, schema.feedback

    def to_example(parsed: dict[str, tf.Tensor]):
        features = {name: parsed[name] for name in inputs}
        # [B, 1], the shape of the models' output: Keras losses reduce the last axis.
        label = tf.cast(parsed[label_name], tf.float32)[:, None]
        if weights is None:
            sample_weight = tf.ones_like(label[:, 0])
        else:
            sample_weight = tf.gather(tf.constant(weights, tf.float32), parsed[feedback_name])
        return features, label, sample_weight

    # Records are parsed in groups of about one shuffle window (or a few batches).
    rows_per_record = int(meta.get("rows_per_record", DEFAULT_ROWS_PER_RECORD))
    window = opts.shuffle_buffer if shuffle else max(batch_size, 4096)
    group = max(1, -(-window // rows_per_record))

    def parsed_groups(shuffle_files: bool, seed: int | None, ordered: bool) -> tf.data.Dataset:
        if rows is not None or not shuffle_files:
            return ordered_groups(
                data_dir,
                meta,
                schema,
                split,
                parse,
                group=group,
                rows=rows,
                parallel=opts.num_parallel_reads,
            )
        ds = interleaved_records(
            files, True, seed, opts.num_parallel_reads, ordered, opts.reshuffle_each_iteration
        ).batch(group)
        return ds.map(parse, num_parallel_calls=tf.data.AUTOTUNE, deterministic=ordered)

    cached = None
    if opts.cache:
        cached = parsed_groups(False, None, True).cache()
        for _ in cached:  # fills the cache now, so that no iterator stops it half-way
            pass

    def pipeline(seed: int | None) -> tf.data.Dataset:
        ordered = (
            True
            if not shuffle
            else (seed is not None if opts.deterministic is None else opts.deterministic)
        )
        if cached is None:
            ds = parsed_groups(shuffle, seed, ordered)
        elif shuffle and rows is None:
            groups = max(1, -(-count // (group * rows_per_record)))
            ds = cached.shuffle(
                groups, seed=seed, reshuffle_each_iteration=opts.reshuffle_each_iteration
            )
        else:
            ds = cached
        if shuffle:
            ds = _shuffled_rows(ds, seed, opts.reshuffle_each_iteration)
        if opts.repeat:
            ds = ds.repeat()
        # rebatch(n) == unbatch().batch(n), without per-row elements.
        ds = ds.rebatch(batch_size, drop_remainder=opts.drop_remainder)
        if not opts.repeat:
            # TFRecord readers cannot know their length; meta.json does. With it, Keras
            # shows a complete progress bar and does not warn that the data ran out.
            batches = count // batch_size if opts.drop_remainder else -(-count // batch_size)
            ds = ds.apply(tf.data.experimental.assert_cardinality(batches))
        ds = ds.map(to_example, num_parallel_calls=tf.data.AUTOTUNE, deterministic=ordered)
        options = tf.data.Options()
        options.autotune.enabled = False
        return ds.prefetch(tf.data.AUTOTUNE).with_options(options)

    return pipeline
