"""Unit tests of the source contract: error policy, feature tables, train statistics, options."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest

from widedeep.data.dataset_format import DatasetError
from widedeep.data.source import (
    ErrorPolicy,
    FeatureTable,
    FeedbackLogError,
    PrepareOptions,
    TrainStatistics,
    categorical_feature,
)


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


def test_feature_table_indices_are_first_rows_or_minus_one():
    table = FeatureTable("users", "u.csv", [7, 3, 9], {"x": [1, 2, 3]}, {"x": "int64"})
    np.testing.assert_array_equal(table.indices(np.array([3, 8, 7, 9, 9])), [1, -1, 0, 2, 2])
