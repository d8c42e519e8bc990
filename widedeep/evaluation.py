"""Scoring a model on a dataset split: probabilities in row order with labels and users, exact metrics.

`widedeep evaluate`, the end of every training run (calibration and test metrics) and
the validation GAUC callback score through `predictions`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from widedeep.data.reader import Rows, load_dataset_dir, read_split
from widedeep.metrics import ctr_metrics

__all__ = ["evaluate_model", "predict_split", "predictions"]


def predictions(
    model: keras.Model | Callable[[Any], Any], dataset: tf.data.Dataset, group_key: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A model's probabilities on a pipeline's batches, with their labels and group keys.

    Each batch's labels and group keys come with its features, so they stay aligned
    whatever order the pipeline yields.

    Args:
        model: the model (its `predict_on_batch`), or a function of a batch's features
            that returns its probabilities.
        dataset: `(features, label, ...)` batches (`make_dataset`'s `(features, label,
            sample_weight)`) whose features carry `group_key`.
        group_key: the group column.

    Returns:
        `(probabilities, labels, groups)`, 1-D arrays in the pipeline's order.
    """
    predict = model.predict_on_batch if isinstance(model, keras.Model) else model
    parts: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = [
        (
            np.asarray(predict(features), np.float64).reshape(-1),
            label.numpy().reshape(-1).astype(np.int64),
            features[group_key].numpy(),
        )
        for features, label, *_ in dataset
    ]
    if not parts:
        return np.zeros(0), np.zeros(0, np.int64), np.zeros(0, np.int64)
    probabilities, labels, groups = (np.concatenate(column) for column in zip(*parts))
    return probabilities, labels, groups


def evaluate_model(
    model: keras.Model, data_dir: str, split: str = "test", batch_size: int = 4096
) -> dict[str, float]:
    """Exact `auc`, `gauc`, `logloss` (and click rates) of a model on one split."""
    probabilities, labels, groups = predict_split(model, data_dir, split, batch_size=batch_size)
    return ctr_metrics(labels, probabilities, groups)


def predict_split(
    model: keras.Model,
    data_dir: str,
    split: str,
    rows: Rows | None = None,
    batch_size: int = 4096,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A model's probabilities on a split's rows, with their labels and group keys (`predictions`).

    The rows are read in order by `widedeep.data.reader.read_split`.

    Args:
        model: the model.
        data_dir: the dataset directory.
        split: e.g. `"test"`.
        rows: a row range `(start, stop)` or an array of row numbers (`widedeep.data.reader.Rows`)
            to score only those rows of the split.
        batch_size: rows per prediction batch.

    Returns:
        `(probabilities, labels, groups)`, 1-D arrays in the split's row order.
    """
    schema, _ = load_dataset_dir(data_dir)
    features = list(dict.fromkeys([*schema.input_signature(), schema.group_key]))
    label = schema.label
    batches = read_split(data_dir, split, [*features, label], rows=rows, batch_size=batch_size).map(
        lambda columns: ({name: columns[name] for name in features}, columns[label])
    )
    return predictions(model, batches, schema.group_key)
