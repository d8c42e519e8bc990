"""The train/validation carve: which rows of the train split fit and which validate.

The validation rows mirror how the test split was cut (`meta.json`'s `split.by`,
written by `widedeep prepare`):

* a time split (and the simulator, whose test split is the latest impressions)
  validates on the last `fraction` of the train split's rows, which are stored in
  time order: a row range `(fit_stop, total)`;
* a per-user split (`--split-by user`: each user's last impressions are test)
  validates on each user's last `round(n_u * fraction)` training rows (half up,
  as the test split rounds), so that early stopping, the calibration offset and
  the baselines' regularisation are chosen on the users the test scores, not on
  the users who arrived last. A user with fewer than `MIN_VALIDATED_USER_ROWS`
  training rows keeps them all for fitting. The rows are then a sorted array of
  row numbers.

`widedeep train`, `widedeep tune`, the calibration offset, `widedeep.baselines` and
`benchmarks/quality.py` all take their rows from `validation_carve`.

Example:

```python
carve = validation_carve("data/ml", 0.1)
carve.kind, carve.num_fit_rows, carve.num_validation_rows
```
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from widedeep.data.dataset_format import DatasetError
from widedeep.data.reader import Rows, load_dataset_dir, read_columns

__all__ = [
    "CARVES",
    "MIN_VALIDATED_USER_ROWS",
    "ValidationCarve",
    "count_rows",
    "per_user_validation_mask",
    "take_rows",
    "validation_carve",
]

CARVES = ("time", "per_user")
"""Kinds of carve: the last rows by time, or each user's last rows."""

MIN_VALIDATED_USER_ROWS = 5
"""A user with fewer training rows than this keeps them all for fitting (per-user carve)."""


def count_rows(rows: Rows) -> int:
    """How many rows `rows` selects."""
    if isinstance(rows, np.ndarray):
        return len(rows)
    return rows[1] - rows[0]


def take_rows(values: np.ndarray, rows: Rows) -> np.ndarray:
    """`values[rows]` for a row range or an array of row numbers (a view for a range)."""
    if isinstance(rows, np.ndarray):
        return values[rows]
    return values[rows[0] : rows[1]]


@dataclass(frozen=True)
class ValidationCarve:
    """The fit and validation rows of a train split, and how they were chosen.

    Args:
        kind: one of `CARVES`.
        fit_rows: the rows that fit (`Rows`).
        validation_rows: the rows that validate (`Rows`), disjoint from `fit_rows`.
        total: rows of the train split.
    """

    kind: str
    fit_rows: Rows
    validation_rows: Rows
    total: int

    @property
    def num_fit_rows(self) -> int:
        return count_rows(self.fit_rows)

    @property
    def num_validation_rows(self) -> int:
        return count_rows(self.validation_rows)


def per_user_validation_mask(
    users: np.ndarray, fraction: float, min_rows: int = MIN_VALIDATED_USER_ROWS
) -> np.ndarray:
    """Marks each user's last `round(n_u * fraction)` rows (half up) of rows in time order.

    Users with fewer than `min_rows` rows get none; every user keeps at least one
    row unmarked.

    Args:
        users: the user of each row, rows in time order.
        fraction: the share of each user's rows to mark, in `[0, 1)`.
        min_rows: the fewest rows a user must have to get any marked.

    Returns:
        A boolean array, True for the validation rows.

    Example:

    >>> per_user_validation_mask(np.array([7, 8, 7, 7, 7, 7, 8]), 0.2).tolist()
    [False, False, False, False, False, True, False]
    """
    users = np.asarray(users).reshape(-1)
    if not users.size:
        return np.zeros(0, bool)
    _, inverse, counts = np.unique(users, return_inverse=True, return_counts=True)
    inverse = inverse.reshape(-1)
    quota = np.minimum(np.floor(counts * fraction + 0.5).astype(np.int64), counts - 1)
    quota[counts < min_rows] = 0
    order = np.argsort(inverse, kind="stable")
    first = np.cumsum(counts) - counts
    rank = np.empty(len(users), np.int64)
    rank[order] = np.arange(len(users)) - np.repeat(first, counts)
    # rows after this one of the same user, fewer than its quota: one of its last rows
    return counts[inverse] - 1 - rank < quota[inverse]


def validation_carve(
    data_dir: str | os.PathLike,
    fraction: float,
    *,
    meta: Mapping[str, Any] | None = None,
    users: np.ndarray | None = None,
) -> ValidationCarve:
    """The train split's fit and validation rows, carved as its test split was (module docstring).

    Args:
        data_dir: the dataset directory.
        fraction: the validation share, `TrainConfig.validation_fraction`, in `[0, 1)`.
        meta: the directory's `meta.json`, if already read.
        users: the train split's group key column, if already read (per-user carve).

    Returns:
        A `ValidationCarve`: row ranges for a time split, arrays of row numbers for a
        per-user split.

    Raises:
        ValueError: if `fraction` is outside `[0, 1)`.
    """
    if not 0 <= fraction < 1:
        raise ValueError(f"validation_fraction must be in [0, 1). Received: {fraction}")
    data_dir = os.fspath(data_dir)
    if meta is None:
        _, meta = load_dataset_dir(data_dir)
    total = int(meta["splits"]["train"]["examples"])
    if meta.get("split", {}).get("by", "time") != "user":
        valid = int(round(total * fraction))
        return ValidationCarve("time", (0, total - valid), (total - valid, total), total)
    if users is None:
        schema, _ = load_dataset_dir(data_dir)
        users = read_columns(data_dir, "train", [schema.group_key])[schema.group_key]
    if len(users) != total:
        raise DatasetError(
            f"dataset {data_dir}: meta.json says the train split has {total} rows, "
            f"its records hold {len(users)}"
        )
    validation = per_user_validation_mask(users, fraction)
    return ValidationCarve(
        "per_user", np.flatnonzero(~validation), np.flatnonzero(validation), total
    )
