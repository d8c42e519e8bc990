"""The pipelines of a training run: its fit rows shuffled per epoch, its validation rows in order.

`widedeep train` and `widedeep tune` read the train split through these, over the
rows of its train/validation carve (`widedeep.data.carve`); `memory_cache_fits`
decides whether the parsed rows are kept in memory across epochs
(`widedeep.training.TrainConfig.cache_mb`).

Example:

```python
from widedeep.data.carve import validation_carve
from widedeep.data.training_pipelines import training_datasets

carve = validation_carve("data/sim", 0.1)
train, validation = training_datasets(
    "data/sim", None, carve.fit_rows, carve.validation_rows,
    batch_size=512, seed=0, feedback_weights=None,
)
```
"""

from __future__ import annotations

from collections.abc import Callable

import tensorflow as tf

from widedeep.data.carve import count_rows
from widedeep.data.pipeline import available_memory, make_dataset, make_dataset_fn, parsed_bytes
from widedeep.data.reader import Rows, load_dataset_dir
from widedeep.schema import Schema

__all__ = [
    "DEFAULT_CACHE_MEMORY_FRACTION",
    "fit_dataset_fn",
    "memory_cache_fits",
    "training_datasets",
    "validation_dataset",
]

DEFAULT_CACHE_MEMORY_FRACTION = 0.25
"""The share of this machine's memory that parsed training rows may take by default
(`widedeep.training.TrainConfig.cache_mb`)."""


def training_datasets(
    data_dir: str,
    schema: Schema | None,
    fit_rows: Rows,
    validation_rows: Rows,
    *,
    batch_size: int,
    seed: int,
    feedback_weights: tuple[float, float, float] | None,
    validation_batch_size: int = 4096,
    cache: bool = False,
) -> tuple[tf.data.Dataset, tf.data.Dataset | None]:
    """`(train, validation)` pipelines over two sets of rows of the train split (`widedeep.data.carve`).

    The fit rows are shuffled with `seed`; the validation pipeline is `None` when
    `validation_rows` is empty. With `cache`, both hold their parsed rows in memory.
    """
    train = fit_dataset_fn(
        data_dir,
        schema,
        fit_rows,
        batch_size=batch_size,
        feedback_weights=feedback_weights,
        cache=cache,
    )(seed)
    validation = validation_dataset(
        data_dir,
        schema,
        validation_rows,
        batch_size=validation_batch_size,
        feedback_weights=feedback_weights,
        cache=cache,
    )
    return train, validation


def fit_dataset_fn(
    data_dir: str,
    schema: Schema | None,
    rows: Rows,
    *,
    batch_size: int,
    feedback_weights: tuple[float, float, float] | None,
    cache: bool = False,
) -> Callable[[int], tf.data.Dataset]:
    """A function from a seed to one epoch's training pipeline over `rows` of the train split.

    Every iterator of a pipeline yields the same order: under a distribution
    strategy Keras iterates once to build the model and again to train, and a
    resumed epoch must see the batches of the interrupted one. With `cache`, the
    rows are parsed once, here, for every epoch.
    """
    return make_dataset_fn(
        data_dir,
        "train",
        schema,
        batch_size=batch_size,
        shuffle=True,
        feedback_weights=feedback_weights,
        rows=rows,
        reshuffle_each_iteration=False,
        cache=cache,
    )


def validation_dataset(
    data_dir: str,
    schema: Schema | None,
    rows: Rows,
    *,
    batch_size: int = 4096,
    feedback_weights: tuple[float, float, float] | None,
    cache: bool = False,
) -> tf.data.Dataset | None:
    """The validation pipeline over `rows` of the train split, in order; None when empty.

    Its features carry the group key too, for `ValidationGAUC`.
    """
    if not count_rows(rows):
        return None
    schema = schema or load_dataset_dir(data_dir)[0]
    return make_dataset(
        data_dir,
        "train",
        schema,
        batch_size=batch_size,
        feedback_weights=feedback_weights,
        rows=rows,
        cache=cache,
        extra_columns=[schema.group_key],
    )


def memory_cache_fits(schema: Schema, rows: int, cache_mb: int | None) -> bool:
    """Whether `rows` parsed rows of `schema` fit the memory budget of `widedeep.training.TrainConfig.cache_mb`."""
    if cache_mb is None:
        memory = available_memory()
        if memory is None:
            return False
        budget = memory * DEFAULT_CACHE_MEMORY_FRACTION
    else:
        budget = cache_mb * 2**20
    return 0 < parsed_bytes(schema, rows) <= budget
