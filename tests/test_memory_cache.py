"""`make_dataset(..., cache=True)` and `widedeep train`'s in-memory cache of parsed rows."""

from __future__ import annotations

import os
import shutil

import numpy as np
import pytest
import tensorflow as tf

from tests.test_records import collect, numbered_rows, tiny_schema
from widedeep.data.pipeline import available_memory, make_dataset, make_dataset_fn, parsed_bytes
from widedeep.data.training_pipelines import memory_cache_fits
from widedeep.data.writer import DatasetWriter
from widedeep.training import TrainConfig, train

N, RECORD_ROWS = 96, 8


@pytest.fixture
def numbered(tmp_path):
    """96 rows numbered by `price`, in records of 8 rows dealt round-robin to 4 shards."""
    rows = numbered_rows(N)
    data = tmp_path / "data"
    writer = DatasetWriter(data, {"train": 4}, rows_per_record=RECORD_ROWS)
    writer.write("train", rows)
    writer.close(tiny_schema(), {})
    return str(data), rows


def _hide_shards(data: str, tmp_path) -> None:
    shutil.move(os.path.join(data, "train"), tmp_path / "moved")


@pytest.mark.parametrize("rows", [(8, 90), None])
@pytest.mark.parametrize("shuffle", [True, False])
def test_cached_batches_equal_the_uncached_ones(numbered, rows, shuffle):
    data, _ = numbered
    kwargs = dict(
        batch_size=5,
        shuffle=shuffle,
        seed=3,
        shuffle_buffer=16,
        rows=rows,
        feedback_weights=(1.0, 2.0, 3.0),
        reshuffle_each_iteration=False,
    )
    if shuffle and rows is None:
        # Without `rows`, the cache shuffles whole groups instead of shards: same rows,
        # the same rows together in each group of 16.
        cached = collect(make_dataset(data, "train", cache=True, **kwargs))
        plain = collect(make_dataset(data, "train", **kwargs))
        np.testing.assert_array_equal(np.sort(cached[0]["price"]), np.arange(N))
        groups = cached[0]["price"].astype(int).reshape(-1, 16) // 16
        assert all(len(set(g)) == 1 for g in groups), groups
        assert sorted(cached[0]["price"]) == sorted(plain[0]["price"])
        return
    cached = collect(make_dataset(data, "train", cache=True, **kwargs))
    plain = collect(make_dataset(data, "train", **kwargs))
    assert cached[0].keys() == plain[0].keys()
    for name in plain[0]:
        np.testing.assert_array_equal(cached[0][name], plain[0][name], err_msg=name)
    np.testing.assert_array_equal(cached[1], plain[1])
    np.testing.assert_array_equal(cached[2], plain[2])


def test_a_cached_pipeline_reads_no_file_after_it_is_built(numbered, tmp_path):
    data, rows = numbered
    epochs = make_dataset_fn(data, "train", batch_size=7, shuffle=True, rows=(0, N), cache=True)
    plain = make_dataset(data, "train", batch_size=7, shuffle=True, seed=1, rows=(0, N))
    _hide_shards(data, tmp_path)
    with pytest.raises(tf.errors.NotFoundError):
        collect(plain)
    orders = []
    for seed in (1, 2, 1):
        features, labels, _ = collect(epochs(seed))
        order = features["price"].astype(int)
        np.testing.assert_array_equal(np.sort(order), np.arange(N))  # every row, once
        np.testing.assert_array_equal(labels, rows["label"][order])  # rows stay whole
        np.testing.assert_array_equal(features["user_id"], rows["user_id"][order])
        orders.append(order.tolist())
    assert orders[0] != orders[1]  # each epoch's seed gives its own order ...
    assert orders[0] == orders[2]  # ... the same one every time


def test_cached_groups_are_reshuffled_each_iteration(numbered):
    data, _ = numbered
    ds = make_dataset(data, "train", batch_size=8, shuffle=True, seed=0, cache=True)
    first, second = (collect(ds)[0]["price"].astype(int) for _ in range(2))
    np.testing.assert_array_equal(np.sort(first), np.arange(N))
    np.testing.assert_array_equal(np.sort(second), np.arange(N))
    assert first.tolist() != second.tolist()
    # The groups themselves move, not only the rows inside them.
    assert (first[:: RECORD_ROWS * 2] // 16).tolist() != list(range(N // 16))


def test_parsed_bytes_counts_every_parsed_value():
    # user_id int64 8 + city string 32 + item_id int64 8 + price float32 4
    # + click_item_id 3 x int64 24 + label and feedback 16 = 92 bytes a row.
    assert parsed_bytes(tiny_schema(), 10) == 920
    assert parsed_bytes(tiny_schema(), 10, extra_columns=["user_id"]) == 1000


def test_the_cache_budget():
    schema = tiny_schema()
    per_mib = 2**20 // 92
    assert memory_cache_fits(schema, per_mib, cache_mb=1)
    assert not memory_cache_fits(schema, per_mib + 1, cache_mb=1)
    assert not memory_cache_fits(schema, 1, cache_mb=0)
    memory = available_memory()
    assert memory is not None and memory > 2**20  # Linux reports it
    assert memory_cache_fits(schema, 1000, cache_mb=None)
    assert not memory_cache_fits(schema, memory // 92, cache_mb=None)  # over a quarter


def test_train_with_and_without_the_cache_sees_the_same_batches(tmp_path):
    from widedeep.cli import main

    data = str(tmp_path / "sim")
    tiny = ["--num-users", "40", "--num-items", "30", "--num-impressions", "1500"]
    assert main(["simulate", "--out", data, "--seed", "4", "--max-length", "3", *tiny]) == 0
    metrics = {}
    for cache_mb in (None, 0):
        config = TrainConfig(
            data=data,
            out=str(tmp_path / f"run{cache_mb}"),
            model="wide_deep",
            epochs=2,
            batch_size=64,
            early_stopping=0,
            logdir=None,
            verbose=0,
            cache_mb=cache_mb,
        )
        metrics[cache_mb] = train(config)
    assert metrics[None]["cached_in_memory"] and not metrics[0]["cached_in_memory"]
    assert metrics[None]["validation_auc"] == metrics[0]["validation_auc"]
    assert metrics[None]["auc"] == metrics[0]["auc"]


def test_a_negative_cache_budget_is_refused(tmp_path):
    with pytest.raises(ValueError, match="cache_mb must be None or >= 0. Received: -1"):
        train(TrainConfig(data=str(tmp_path), out=str(tmp_path / "run"), cache_mb=-1))
