"""Unit tests of the preparation engine's pieces (no TF)."""

from __future__ import annotations

import io

import numpy as np
import pytest

from widedeep.data.prepare import Progress, num_test, running_counts


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


def test_num_test_rounds_half_up():
    assert [num_test(n, 0.2) for n in (0, 1, 2, 3, 5, 7, 8, 10)] == [0, 0, 0, 1, 1, 1, 2, 2]
    assert num_test(4, 0.5) == 2 and num_test(3, 0.5) == 2 and num_test(1, 0.5) == 1
    assert num_test(10, 0.0) == 0
    # Per user, as the per-user split asks: 0, 0.5, 1.5 and 2.5 test impressions, halves up.
    np.testing.assert_array_equal(num_test(np.array([0, 1, 3, 5]), 0.5), [0, 1, 2, 3])


def test_progress_prints_rows_per_second():
    stream = io.StringIO()
    progress = Progress("kuairand pass 1/2", True, interval=0.0, stream=stream)
    progress.update(4096)
    progress.done()
    lines = stream.getvalue().splitlines()
    assert lines[0].startswith("kuairand pass 1/2: 4,096 rows") and "rows/s" in lines[0]
    assert lines[-1].endswith("done")
    quiet = io.StringIO()
    Progress("x", False, stream=quiet).done()
    assert quiet.getvalue() == ""
    # Batches of uneven sizes: it looks at the clock whenever the count passes a multiple of 4096.
    uneven = io.StringIO()
    batches = Progress("read", True, interval=0.0, stream=uneven)
    batches.update(3000)
    assert uneven.getvalue() == ""
    batches.update(3000)
    assert uneven.getvalue().startswith("read: 6,000 rows")
