"""`benchmarks/frozen_history.py`: every row of a user reads the sequences of the user's first row."""

from __future__ import annotations

import importlib
import os

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_frozen_columns_copy_each_users_first_sequences_and_leave_the_rest(monkeypatch):
    monkeypatch.syspath_prepend(os.path.join(ROOT, "benchmarks"))
    frozen_history = importlib.import_module("frozen_history")
    columns = {
        "clicks": np.array([[1, 0], [2, 0], [1, 3], [2, 4], [2, 5]]),
        "item": np.array([10, 20, 30, 40, 50]),
    }
    groups = np.array([b"u7", b"u2", b"u7", b"u2", b"u2"], dtype=object)
    frozen = frozen_history.frozen_columns(columns, groups, ["clicks"])
    np.testing.assert_array_equal(frozen["clicks"], [[1, 0], [2, 0], [1, 0], [2, 0], [2, 0]])
    np.testing.assert_array_equal(frozen["item"], columns["item"])
    np.testing.assert_array_equal(columns["clicks"][2], [1, 3])  # the input is not modified
