"""Unit tests of the per-group running counts behind the sequences and the item history (no TF)."""

from __future__ import annotations

import numpy as np
import pytest

from widedeep.data.causal_history import running_counts


@pytest.mark.parametrize("chunk", [1, 7, 300])
def test_running_counts_chunk_by_chunk_match_a_per_row_count(chunk):
    rng = np.random.default_rng(0)
    group = rng.integers(0, 4, 300)
    flag = rng.random(300) < 0.4
    carried = np.zeros(4, dtype=np.int64)
    counts = np.concatenate(
        [
            running_counts(group[s : s + chunk], flag[s : s + chunk], carried)
            for s in range(0, 300, chunk)
        ]
    )
    expected = [sum(flag[q] for q in range(r) if group[q] == group[r]) for r in range(300)]
    np.testing.assert_array_equal(counts, expected)  # strictly before row r, earlier chunks too
    np.testing.assert_array_equal(carried, np.bincount(group[flag], minlength=4))


def test_running_counts_of_an_empty_chunk():
    carried = np.array([2, 5])
    assert running_counts(np.zeros(0, int), np.zeros(0, bool), carried).size == 0
    np.testing.assert_array_equal(carried, [2, 5])
