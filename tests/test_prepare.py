"""Unit tests of the preparation engine's vectorised pieces (no TF)."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from widedeep.data.feedback_log import ErrorPolicy, FeatureTable, FeedbackLogError
from widedeep.data.prepare import RowStore, read_log, report_bad_rows, running_counts


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


def test_feature_table_indices_are_first_rows_or_minus_one():
    table = FeatureTable("users", "u.csv", [7, 3, 9], {"x": [1, 2, 3]}, {"x": "int64"})
    np.testing.assert_array_equal(table.indices(np.array([3, 8, 7, 9, 9])), [1, -1, 0, 2, 2])


def test_read_log_csv_equals_parquet_and_names_bad_lines(tmp_path):
    good = tmp_path / "log.csv"
    good.write_text("user,item,time,extra\n1,2,30,a\n\n1,3,20,b\n")
    frame, bad = read_log(str(good), ["user", "item", "time"], ["user", "item", "time"])
    assert bad == [] and frame["_line"].to_list() == [2, 4]
    assert frame["time"].to_list() == [30, 20] and frame["time"].dtype == pl.Int64
    parquet = tmp_path / "log.parquet"
    frame.drop("_line", "_key").write_parquet(parquet)
    from_parquet, _ = read_log(str(parquet), ["user", "item", "time"], ["user", "item", "time"])
    assert from_parquet["_line"].to_list() == [1, 2]  # a Parquet "line" is the row number
    assert from_parquet.drop("_line", "_key").equals(frame.drop("_line", "_key"))

    broken = tmp_path / "broken.csv"
    broken.write_text("user,item,time\n1,2,30\n1,x,40\n1,2\n1,2,5.0\n")
    frame, bad = read_log(str(broken), ["user", "item", "time"], ["user", "item", "time"])
    assert frame["_line"].to_list() == [2, 5] and frame["time"].to_list() == [30, 5]
    assert bad == [
        (3, "unreadable value: item is not an integer: 'x'"),
        (4, "expected 3 fields, found 2"),
    ]
    with pytest.raises(FeedbackLogError, match=rf"{broken}, line 3: unreadable value: item"):
        report_bad_rows(ErrorPolicy("stop"), str(broken), bad)
    with pytest.raises(FeedbackLogError, match=r"missing column\(s\) \['label'\]"):
        read_log(str(good), ["user", "label"], [])
