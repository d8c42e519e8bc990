"""Unit tests of the preparation engine's vectorised pieces (no TF)."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from widedeep.data.feedback_log import ErrorPolicy, FeatureTable, FeedbackLogError
from widedeep.data.prepare import read_log, report_bad_rows, sequence_positions


def test_sequence_positions_match_a_per_row_history():
    rng = np.random.default_rng(0)
    group = rng.integers(0, 4, 300)
    feedback = rng.integers(0, 3, 300)
    for code in range(3):
        events, end, count = sequence_positions(group, feedback, code)
        for r in range(len(group)):
            earlier = [q for q in range(r) if group[q] == group[r] and feedback[q] == code]
            got = [int(events[end[r] - 1 - j]) for j in range(count[r])]
            assert got == earlier[::-1]  # most recent first, strictly before row r


def test_sequence_positions_of_an_empty_log():
    events, end, count = sequence_positions(np.zeros(0, int), np.zeros(0, int), 1)
    assert events.size == end.size == count.size == 0


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
