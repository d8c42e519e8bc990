"""Unit tests of the external sort's storage (no TF)."""

from __future__ import annotations

import numpy as np
import pytest

from widedeep.data.external_sort import RowStore


@pytest.mark.parametrize("spilled", [False, True])
def test_row_store_reads_back_any_range(tmp_path, spilled):
    store = RowStore()
    rows = np.arange(50)
    for start in range(0, 50, 7):
        chunk = rows[start : start + 7]
        store.append({"a": chunk, "b": (chunk * 0.5).astype(np.float32)})
        if spilled and start == 7:
            store.spill(str(tmp_path / "rows"))  # the rows so far move to files, later ones too
    assert len(store) == 50 and (store.folder is not None) == spilled
    for start, stop in [(0, 50), (3, 4), (6, 22), (49, 80), (50, 60)]:
        got = store.read(start, stop)
        np.testing.assert_array_equal(got["a"], rows[start:stop])
        np.testing.assert_array_equal(got["b"], (rows[start:stop] * 0.5).astype(np.float32))
        assert got["b"].dtype == np.float32
        np.testing.assert_array_equal(store.column("a", start, stop), rows[start:stop])
