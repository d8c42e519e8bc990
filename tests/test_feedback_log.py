"""Unit tests of the loaders' shared pieces (no files beyond tmp_path, no TF)."""

from __future__ import annotations

import datetime
import io
import math
import re

import numpy as np
import polars as pl
import pytest

from widedeep.data.dataset_format import DatasetError
from widedeep.data.feedback_log import (
    ErrorPolicy,
    FeatureTable,
    FeedbackLogError,
    PrepareOptions,
    Progress,
    TrainStatistics,
    categorical_feature,
    num_test,
    parse_int,
    read_csv_with_header,
    read_delimited,
)
from widedeep.data.prepare import parse_columns, read_log


def test_num_test_rounds_half_up():
    assert [num_test(n, 0.2) for n in (0, 1, 2, 3, 5, 7, 8, 10)] == [0, 0, 0, 1, 1, 1, 2, 2]
    assert num_test(4, 0.5) == 2 and num_test(3, 0.5) == 2 and num_test(1, 0.5) == 1
    assert num_test(10, 0.0) == 0


def test_error_policy_stop_raises_a_dataset_error_naming_file_and_line():
    policy = ErrorPolicy("stop")
    with pytest.raises(DatasetError, match=re.escape("log.csv, line 12: bad time")):
        policy.reject("malformed_rows", "log.csv", 12, "bad time")
    assert issubclass(FeedbackLogError, DatasetError)


def test_error_policy_skip_counts_once_and_keeps_examples():
    policy = ErrorPolicy("skip")
    for line in range(2, 10):
        policy.reject("malformed_rows", "log.csv", line, "bad")
    policy.reject("unknown_users", "log.csv", 11, "user 5 is not in users.csv")
    policy.counting = False  # a second pass over the same rows
    policy.reject("malformed_rows", "log.csv", 2, "bad")
    assert policy.report() == {"malformed_rows": 8, "unknown_users": 1}
    assert len(policy.examples["malformed_rows"]) == 5
    assert policy.examples["malformed_rows"][0] == "log.csv, line 2: bad"
    assert "8 malformed rows" in policy.summary() and "1 unknown users" in policy.summary()


def test_read_csv_with_header_reports_missing_columns_and_line_numbers(tmp_path):
    path = tmp_path / "log.csv"
    path.write_text('a,b,c\n1,"x,y",3\n\n4,5,6\n')
    rows = list(read_csv_with_header(path, ["a", "c"]))
    assert [(line, fields) for _, line, fields in rows] == [
        (2, ["1", "x,y", "3"]),
        (4, ["4", "5", "6"]),
    ]
    assert rows[0][0] == {"a": 0, "b": 1, "c": 2}
    with pytest.raises(FeedbackLogError, match=re.escape(f"{path}: missing column(s) ['d']")):
        list(read_csv_with_header(path, ["a", "d"]))
    with pytest.raises(FeedbackLogError, match="cannot read"):
        list(read_csv_with_header(tmp_path / "absent.csv", ["a"]))
    (tmp_path / "empty.csv").write_text("")
    with pytest.raises(FeedbackLogError, match="empty file"):
        list(read_csv_with_header(tmp_path / "empty.csv", ["a"]))


def test_read_delimited_is_latin1_and_numbers_lines(tmp_path):
    path = tmp_path / "movies.dat"
    path.write_bytes("1::Café (1995)::Drama\n\n2::B (1996)::Comedy\n".encode("latin-1"))
    assert list(read_delimited(path, "::")) == [
        (1, ["1", "Café (1995)", "Drama"]),
        (3, ["2", "B (1996)", "Comedy"]),
    ]


def test_parse_int():
    assert parse_int("12") == 12 and parse_int("12.0") == 12
    with pytest.raises(ValueError):
        parse_int("1.5")


def test_parse_columns_by_kind_names_the_first_bad_column():
    frame = pl.DataFrame(
        {
            "_line": [2, 3, 4, 5],
            "n": ["", "nan", " 3.0", "7"],
            "x": ["1.5", "", " 2e3", "abc"],
            "s": [" a ", "b", "", "c"],
            "d": ["2022-04-25", "", "2022-04-26 10:00:00", "2022-13-01"],
        },
        schema_overrides={"_line": pl.Int64},
    )
    kinds = {"n": "optional_int", "x": "optional_float", "s": "string", "d": "date"}
    good, bad = parse_columns(frame, kinds)
    assert good["_line"].to_list() == [2, 3, 4]
    assert good["n"].to_list() == [-1, -1, 3]
    x = good["x"].to_list()
    assert x[0] == 1.5 and math.isnan(x[1]) and x[2] == 2000.0
    assert good["s"].to_list() == ["a", "b", ""]
    d = good["d"].to_list()
    assert d[0] == datetime.date(2022, 4, 25).toordinal() and math.isnan(d[1])
    assert d[2] == datetime.date(2022, 4, 26).toordinal()
    # Row 5 fails in x and in d: the first column of `kinds` is named.
    assert bad == [(5, "unreadable value: x is not a number: 'abc'")]
    _, bad = parse_columns(frame.with_columns(n=pl.lit("1.5")), {"n": "optional_int"})
    assert [line for line, _ in bad] == [2, 3, 4, 5]
    assert bad[0][1] == "unreadable value: n is not an integer: '1.5'"


def test_feature_table_missing_row_and_median_imputation():
    table = FeatureTable(
        "videos",
        "videos.csv",
        keys=[5, 9, 7],
        columns={"tag": [1, -1, 3], "kind": ["a", "", "b"], "duration": [1.0, math.nan, 5.0]},
        dtypes={"tag": "int64", "kind": "string", "duration": "float32"},
    )
    assert table.lookup(9) == 1 and table.lookup(4) is None
    assert table.imputed == {"duration": 1}
    # Both ways of finding rows (a dense array for compact ids, binary search for sparse
    # ones): the first row of a repeated key, -1 for an absent one, below or above the range.
    for keys in ([5, 9, 7, 9, 12], [5, 9, 7, 9, 10**15]):
        keyed = FeatureTable("t", "t.csv", keys, {}, {})
        queries = np.array([9, 7, 5, keys[-1], 4, 6, 10**15 + 1, -3])
        np.testing.assert_array_equal(keyed.indices(queries), [1, 2, 0, 4, -1, -1, -1, -1])
    assert FeatureTable("t", "t.csv", [], {}, {}).indices(np.array([1])).tolist() == [-1]
    got = table.gather(np.array([[0, table.missing_index], [2, 1]]))
    np.testing.assert_array_equal(got["tag"], [[1, -1], [3, -1]])
    assert got["kind"].tolist() == [["a", ""], ["b", ""]]
    np.testing.assert_array_equal(got["duration"][1], [5.0, 3.0])  # 3.0: median of 1 and 5


def test_train_statistics_vocabulary_moments_and_quantiles():
    stats = TrainStatistics(["tag", "kind"], ["x"], sample_size=50, seed=1)
    x = np.arange(1000, dtype=np.float32)
    tags = np.resize([3, 3, 3, -1, 1, 2, 2, 5], 1000)  # counts 375, 250, 125, 125 (and -1)
    kinds = np.resize(["b", "a", ""], 1000)
    for chunk in np.split(np.arange(1000), 4):
        stats.update({"tag": tags[chunk], "kind": kinds[chunk], "x": x[chunk]})
    assert stats.rows == 1000
    assert stats.vocabulary("tag") == [3, 2, 1, 5]  # most frequent first, ties by value; no -1
    assert stats.vocabulary("kind") == ["b", "a"]  # "" (missing) left out
    mean, std = stats.mean_std("x")
    assert mean == pytest.approx(499.5) and std == pytest.approx(np.std(x))
    boundaries = stats.boundaries("x", 4)
    assert len(boundaries) == 3 and boundaries == sorted(boundaries)
    assert all(abs(b - q) < 150 for b, q in zip(boundaries, (250, 500, 750), strict=True))
    assert len(stats._sample["x"]) == 50  # the reservoir stays bounded


def test_categorical_feature_hashes_large_or_empty_vocabularies():
    stats = TrainStatistics(["id", "none"], [])
    stats.update({"id": np.arange(3000), "none": np.full(3000, -1)})
    assert categorical_feature(stats, "id", "int64").vocabulary[:2] == [0, 1]
    hashed = categorical_feature(stats, "id", "int64", max_vocabulary_size=100)
    assert hashed.hash_buckets == 8192 and hashed.vocabulary is None
    assert categorical_feature(stats, "none", "int64").hash_buckets == 1


def test_prepare_options_validate():
    assert PrepareOptions().test_fraction == 0.2 and PrepareOptions().split_by == "time"
    for kwargs, name in (
        ({"max_length": 0}, "max_length"),
        ({"test_fraction": -0.1}, "test_fraction"),
        ({"test_fraction": 1}, "test_fraction"),
        ({"split_by": "item"}, "split_by"),
        ({"on_error": "warn"}, "on_error"),
    ):
        with pytest.raises(ValueError, match=rf"{name}.*Received"):
            PrepareOptions(**kwargs)


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


def test_train_statistics_weighted_by_train_impressions():
    # Side-table columns are given once per entity with its number of train impressions.
    stats = TrainStatistics(["tag"], ["duration"])
    stats.update(
        {"tag": np.array([7, 8, 9, -1]), "duration": np.array([1.0, 2.0, 10.0, 4.0])},
        weights=np.array([3, 1, 0, 2]),  # tag 9 / duration 10 only in test: no weight
    )
    assert stats.vocabulary("tag") == [7, 8]
    mean, std = stats.mean_std("duration")
    x = np.array([1.0, 1.0, 1.0, 2.0, 4.0, 4.0])
    assert mean == pytest.approx(x.mean()) and std == pytest.approx(x.std())
    assert stats.boundaries("duration", 3) == [
        2.0
    ]  # tertiles of x: 1.0 (dropped: the minimum), 2.0


def test_read_log_as_strings_sends_a_ragged_file_to_the_exact_reader(tmp_path):
    # Polars pads a short row with empty strings; the separator count outside quotes catches it.
    clean = tmp_path / "clean.csv"
    clean.write_text('id,tag,name\n1,"3,4",a\n2,5,\n')
    frame, bad = read_log(str(clean), ["id", "tag"], ["id"], infer_types=False)
    assert (
        bad == []
        and frame["tag"].to_list() == ["3,4", "5"]
        and frame["name"].to_list() == ["a", ""]
    )
    short = tmp_path / "short.csv"
    short.write_text('id,tag,name\n1,"3,4",a\n2,5\n3,6,c\n')
    frame, bad = read_log(str(short), ["id", "tag"], ["id"], infer_types=False)
    assert bad == [(3, "expected 3 fields, found 2")]
    assert frame["id"].to_list() == [1, 3] and frame["_line"].to_list() == [2, 4]
