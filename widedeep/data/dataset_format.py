"""The dataset directory: the on-disk format every data source writes and training reads.

This module holds the format's constants, its error and the columns a schema
needs; `widedeep.data.writer.DatasetWriter` writes a directory (records encoded by
`widedeep.data.example_encoder`), `widedeep.data.reader` loads, checks and reads
it, and `widedeep.data.pipeline.make_dataset` feeds it to training.

Layout of a dataset directory `DIR`:

```
DIR/schema.json                            Schema.save()
DIR/meta.json                              {"source": ..., "format": "widedeep-blocks/1",
                                             "rows_per_record": 256, "splits": {"train":
                                             {"examples": N, "files": [...], "columns": {...}}}}
DIR/train/part-00000-of-00008.tfrecord     tf.train.Example records (blocks of rows)
DIR/test/part-00000-of-00002.tfrecord
DIR/tables/users/age.npy                   optional tables (`widedeep.data.tables`)
```

Each row is one impression. Its columns are every raw input of
`schema.input_signature()`, the label, the feedback code (an index into
`widedeep.schema.FEEDBACK_TYPES`), the group key (the user id) and any extra
column the writer's caller chose to keep (e.g. the simulator's
`true_probability`). A column may instead be a *lookup* (`meta.json`'s
`"lookups"`): read from a table at rows that the records hold, e.g. a user's side
features at the user's row, or a feedback sequence from the user's events (see
`widedeep.data.tables`); readers materialise lookups, so they yield the same
columns either way. `meta.json` is written last, atomically, once everything
else is synced to the disk, so a directory whose writer died mid-way has no
`meta.json` and is rejected by `load_dataset_dir` (and replaced by the next writer).

Records are *blocks* of consecutive rows (`rows_per_record`, 256 by default; the
last block of each `write()` call may be shorter), stored column by column in one
`tf.train.Example`: a scalar column is a list with one value per row, a sequence
column is the concatenation of its rows' items *without* padding (most recent item
first) beside a `<name>/length` list of per-row item counts. Parsing a block costs
about as much as parsing one row-per-record Example, so the reader spends far less
CPU per row; on two cores that CPU is taken from training.

Row order: the writer deals blocks to a split's shards round-robin (block `j` of
the split goes to shard `j % num_shards`). Reading the shards interleaved one
record at a time, in file order, therefore gives back the rows in exactly the
order they were written. `widedeep.data.reader.read_split` (under `read_columns`,
evaluation and `widedeep predict`) and `make_dataset(..., shuffle=False)` all read
that way, so they yield rows in the same, deterministic order, which lets
evaluation align predictions with user ids.

Records are built with protobuf's `tf.train.Example`; feature keys are written in
sorted order, so the same rows always give byte-identical files.
"""

from __future__ import annotations

from widedeep.errors import WidedeepError
from widedeep.schema import Schema

__all__ = [
    "BYTES",
    "DEFAULT_ROWS_PER_RECORD",
    "FLOAT",
    "FORMAT",
    "INT64",
    "LENGTH_SUFFIX",
    "META_FILE",
    "READABLE_FORMATS",
    "SCHEMA_FILE",
    "DatasetError",
    "expected_columns",
]

SCHEMA_FILE = "schema.json"
META_FILE = "meta.json"

FORMAT = "widedeep-blocks/2"
"""`meta.json`'s `"format"`: records are blocks of rows, with optional tables (see above)."""

READABLE_FORMATS: tuple[str, ...] = ("widedeep-blocks/1", FORMAT)
"""Formats this version reads (`/1` is `/2` without tables)."""

DEFAULT_ROWS_PER_RECORD = 256
"""Rows per record (block) used when `DatasetWriter` is given no `rows_per_record`."""

LENGTH_SUFFIX = "/length"
"""Suffix of the per-row item counts stored beside a sequence column (`click_item_id/length`)."""

# Column kinds, as stored in a tf.train.Feature.
INT64, FLOAT, BYTES = "int64", "float32", "bytes"


class DatasetError(WidedeepError, ValueError):
    """A dataset directory that is missing, incomplete or inconsistent with its schema.

    The message names the directory, file, split or column at fault.
    """


def expected_columns(schema: Schema) -> dict[str, tuple[str, bool]]:
    """`{column: (kind, scalar)}` for every column a record must carry for `schema`."""
    expected: dict[str, tuple[str, bool]] = {}
    for name, (shape, dtype) in schema.input_signature().items():
        kind = {"int64": INT64, "string": BYTES, "float32": FLOAT}[dtype]
        expected[name] = (kind, shape == ())
    expected.setdefault(schema.label, (INT64, True))
    expected.setdefault(schema.feedback, (INT64, True))
    expected.setdefault(schema.group_key, (INT64, True))
    return expected
