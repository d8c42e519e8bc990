"""Unit tests of the preparation engine's pieces (no TF)."""

from __future__ import annotations

import io

import numpy as np

from widedeep.data.prepare import num_test
from widedeep.data.progress import Progress


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
