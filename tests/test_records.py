"""Tests of the dataset directory: writer, tf.data pipeline, column reads and validation."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import tensorflow as tf

from widedeep.data.dataset_format import DatasetError
from widedeep.data.pipeline import PipelineOptions, make_dataset, make_dataset_fn
from widedeep.data.reader import check_columns, load_dataset_dir, read_columns, read_split
from widedeep.data.writer import DatasetWriter
from widedeep.schema import CategoricalFeature, NumericFeature, Schema, SequenceFeature

L = 3


def tiny_schema() -> Schema:
    return Schema(
        categorical=[
            CategoricalFeature("user_id", vocabulary=[1, 2, 3]),
            CategoricalFeature("city", dtype="string", vocabulary=["paris", "rome"]),
            CategoricalFeature("item_id", vocabulary=[10, 11, 12, 13], embedding_dim=4),
        ],
        numeric=[NumericFeature("price", mean=2.5, std=1.0)],
        sequences=[SequenceFeature("click", ["item_id"], max_length=L)],
        target_item_features=["item_id"],
    )


# Rows: an empty, a short, a full and an over-long click sequence.
ROWS = {
    "user_id": np.array([1, 2, 3, 1, 2]),
    "city": np.array(["paris", "rome", "", "rome", "paris"], dtype=object),
    "item_id": np.array([10, 11, 12, 13, 10]),
    "price": np.array([1.5, 2.0, 3.25, 4.0, 0.5], dtype=np.float32),
    "click_item_id": [
        np.array([], dtype=np.int64),
        np.array([11]),
        np.array([12, 10, 11]),
        np.array([13, 12, 11, 10, 13]),
        np.array([10, 10]),
    ],
    "label": np.array([0, 1, 0, 1, 0]),
    "feedback": np.array([0, 1, 2, 1, 0]),
    "true_probability": np.array([0.1, 0.9, 0.2, 0.8, 0.3], dtype=np.float32),
}
EXPECTED_CLICKS = np.array(
    [[-1, -1, -1], [11, -1, -1], [12, 10, 11], [13, 12, 11], [10, 10, -1]], dtype=np.int64
)


def write_tiny(
    out_dir, rows=ROWS, num_shards=None, chunks=1, schema=None, rows_per_record=256
) -> dict:
    writer = DatasetWriter(
        out_dir, num_shards or {"train": 2, "test": 1}, rows_per_record=rows_per_record
    )
    n = len(rows["label"])
    bounds = np.linspace(0, n, chunks + 1).astype(int)
    for start, stop in zip(bounds[:-1], bounds[1:], strict=True):
        chunk = {
            k: (v[start:stop] if isinstance(v, np.ndarray) else v[start:stop])
            for k, v in rows.items()
        }
        writer.write("train", chunk)
    writer.write("test", {k: v[:2] for k, v in rows.items()})
    return writer.close(schema or tiny_schema(), {"source": "test", "note": np.float32(1.5)})


def numbered_rows(n: int, seed: int = 0) -> dict:
    """`n` random rows of `tiny_schema()`, numbered 0 .. n-1 by their `price`."""
    rng = np.random.default_rng(seed)
    return {
        "user_id": rng.integers(1, 4, n),
        "city": rng.choice(["paris", "rome"], n).astype(object),
        "item_id": rng.integers(10, 14, n),
        "price": np.arange(n, dtype=np.float32),
        "click_item_id": [rng.integers(10, 14, int(k)) for k in rng.integers(0, 4, n)],
        "label": rng.integers(0, 2, n),
        "feedback": rng.integers(0, 3, n),
    }


def collect(ds: tf.data.Dataset):
    features, labels, weights = {}, [], []
    for x, y, w in ds:
        for k, v in x.items():
            features.setdefault(k, []).append(v.numpy())
        labels.append(y.numpy()[:, 0])
        weights.append(w.numpy())
    return (
        {k: np.concatenate(v) for k, v in features.items()},
        np.concatenate(labels),
        np.concatenate(weights),
    )


def test_round_trip_values_padding_truncation_and_weights(tmp_path):
    meta = write_tiny(tmp_path)
    assert meta["source"] == "test" and meta["note"] == 1.5
    assert meta["splits"]["train"]["examples"] == 5
    assert meta["splits"]["train"]["files"] == [
        "train/part-00000-of-00002.tfrecord",
        "train/part-00001-of-00002.tfrecord",
    ]
    assert meta["splits"]["test"]["examples"] == 2
    assert json.loads((tmp_path / "meta.json").read_text()) == meta

    ds = make_dataset(tmp_path, "train", batch_size=2, feedback_weights=(1, 1, 10))
    features, labels, weights = collect(ds)
    assert set(features) == set(tiny_schema().input_signature())
    np.testing.assert_array_equal(features["user_id"], ROWS["user_id"])
    assert features["city"].tolist() == [b"paris", b"rome", b"", b"rome", b"paris"]
    np.testing.assert_array_equal(features["price"], ROWS["price"])
    np.testing.assert_array_equal(features["click_item_id"], EXPECTED_CLICKS)
    np.testing.assert_array_equal(labels, [0.0, 1.0, 0.0, 1.0, 0.0])
    np.testing.assert_array_equal(weights, [1.0, 1.0, 10.0, 1.0, 1.0])  # the dislike weighs 10

    x, y, w = next(iter(make_dataset(tmp_path, "train", batch_size=4)))
    assert x["click_item_id"].shape == (4, L) and x["click_item_id"].dtype == tf.int64
    assert x["city"].dtype == tf.string and x["price"].dtype == tf.float32
    assert y.dtype == tf.float32
    np.testing.assert_array_equal(w.numpy(), np.ones(4))


def test_padded_2d_input_and_streaming_chunks_preserve_order(tmp_path):
    rows = dict(ROWS)
    rows["click_item_id"] = np.array(
        [
            [-1, -1, -1, -1, -1],
            [11, -1, -1, -1, -1],
            [12, 10, 11, -1, -1],
            [13, 12, 11, 10, 13],
            [10, 10, -1, -1, -1],
        ]
    )
    write_tiny(tmp_path, rows, num_shards={"train": 3, "test": 1}, chunks=3, rows_per_record=1)
    features, labels, _ = collect(make_dataset(tmp_path, "train", batch_size=3))
    np.testing.assert_array_equal(features["click_item_id"], EXPECTED_CLICKS)
    np.testing.assert_array_equal(features["item_id"], ROWS["item_id"])
    # Every shard got records (dealt round-robin).
    sizes = [
        sum(1 for _ in tf.data.TFRecordDataset(str(p)))
        for p in sorted((tmp_path / "train").iterdir())
    ]
    assert sizes == [2, 2, 1]


def test_records_are_blocks_of_consecutive_rows_dealt_round_robin(tmp_path):
    meta = write_tiny(tmp_path, num_shards={"train": 2, "test": 1}, rows_per_record=2)
    assert meta["format"] == "widedeep-blocks/2" and meta["rows_per_record"] == 2
    shards = sorted((tmp_path / "train").iterdir())
    records = [
        [
            tf.train.Example.FromString(r.numpy()).features.feature
            for r in tf.data.TFRecordDataset(str(p))
        ]
        for p in shards
    ]
    # Rows 0-1 and 4 (records 0 and 2) in shard 0, rows 2-3 (record 1) in shard 1.
    assert [[list(f["user_id"].int64_list.value) for f in shard] for shard in records] == [
        [[1, 2], [2]],
        [[3, 1]],
    ]
    first = records[0][0]
    assert [v.decode() for v in first["city"].bytes_list.value] == ["paris", "rome"]
    assert list(first["click_item_id"].int64_list.value) == [11]  # row 0 empty, row 1 [11]
    assert list(first["click_item_id/length"].int64_list.value) == [0, 1]
    # Read back: write order, and any row range across record boundaries.
    features, labels, _ = collect(make_dataset(tmp_path, "train", batch_size=2))
    np.testing.assert_array_equal(features["click_item_id"], EXPECTED_CLICKS)
    for start, stop in [(1, 4), (0, 5), (4, 5), (2, 3)]:
        part, _, _ = collect(make_dataset(tmp_path, "train", batch_size=2, rows=(start, stop)))
        np.testing.assert_array_equal(part["user_id"], ROWS["user_id"][start:stop])
        np.testing.assert_array_equal(part["click_item_id"], EXPECTED_CLICKS[start:stop])
    assert list(make_dataset(tmp_path, "train", rows=(3, 3))) == []


def test_row_ranges_over_records_of_different_sizes(tmp_path):
    # Three write() calls of 1, 2 and 2 rows in records of up to 2 rows, read in groups of
    # one record (shuffle windows of 2 rows): a range is found by counting each group's
    # rows, so records of unequal sizes must not shift it.
    write_tiny(tmp_path, chunks=3, rows_per_record=2)
    for start in range(5):
        for stop in range(start + 1, 6):
            ds = make_dataset(
                tmp_path,
                "train",
                batch_size=2,
                shuffle=True,
                seed=0,
                shuffle_buffer=2,
                rows=(start, stop),
            )
            part, labels, _ = collect(ds)
            order = np.argsort(part["price"])
            np.testing.assert_array_equal(part["price"][order], np.sort(ROWS["price"][start:stop]))
            expected = np.argsort(ROWS["price"][start:stop]) + start
            np.testing.assert_array_equal(part["user_id"][order], ROWS["user_id"][expected])
            np.testing.assert_array_equal(part["click_item_id"][order], EXPECTED_CLICKS[expected])
            np.testing.assert_array_equal(labels[order], ROWS["label"][expected])


def test_writer_checks_the_schema_columns(tmp_path):
    rows = {k: v for k, v in ROWS.items() if k not in ("city", "price")}
    writer = DatasetWriter(tmp_path, {"train": 1})
    writer.write("train", rows)
    with pytest.raises(DatasetError, match=r"missing columns \['city', 'price'\]"):
        writer.close(tiny_schema(), {})
    writer = DatasetWriter(tmp_path, {"train": 1}, overwrite=True)
    writer.write("train", {**ROWS, "city": np.arange(5)})
    with pytest.raises(DatasetError, match=r"city: expected bytes, wrote int64"):
        writer.close(tiny_schema(), {})


def write_unequal_records(path) -> tuple[int, dict[str, np.ndarray]]:
    """103 rows in records of 17 (the last 1) over 4 shards; `true_probability` is the row number."""
    rng = np.random.default_rng(0)
    n = 103
    rows = {
        "user_id": rng.integers(1, 4, n),
        "city": rng.choice(["paris", "rome"], n).astype(object),
        "item_id": rng.integers(10, 14, n),
        "price": rng.random(n).astype(np.float32),
        "click_item_id": [rng.integers(10, 14, int(k)) for k in rng.integers(0, 6, n)],
        "label": rng.integers(0, 2, n),
        "feedback": rng.integers(0, 3, n),
        "true_probability": np.arange(n, dtype=np.float32),
    }
    writer = DatasetWriter(path, {"train": 4})
    for start in range(0, n, 17):
        writer.write("train", {k: v[start : start + 17] for k, v in rows.items()})
    writer.close(tiny_schema(), {})
    return n, rows


def test_read_columns_matches_make_dataset_order(tmp_path):
    n, rows = write_unequal_records(tmp_path)
    columns = read_columns(
        tmp_path, "train", ["true_probability", "user_id", "label", "click_item_id"]
    )
    # Reading gives back the write order ...
    np.testing.assert_array_equal(columns["true_probability"], np.arange(n))
    np.testing.assert_array_equal(columns["user_id"], rows["user_id"])
    # ... and the same order as the (unshuffled) pipeline.
    features, labels, _ = collect(make_dataset(tmp_path, "train", batch_size=10))
    np.testing.assert_array_equal(columns["user_id"], features["user_id"])
    np.testing.assert_array_equal(columns["label"], labels)
    np.testing.assert_array_equal(columns["click_item_id"], features["click_item_id"])
    with pytest.raises(DatasetError, match="no columns \\['nope'\\]"):
        read_columns(tmp_path, "train", ["nope"])


def test_read_split_reads_the_chosen_rows_in_order_in_exact_batches(tmp_path):
    n, _ = write_unequal_records(tmp_path)
    names = ["true_probability", "click_item_id"]
    clicks = read_columns(tmp_path, "train", ["click_item_id"])["click_item_id"]
    chosen = [(None, np.arange(n)), ((20, 90), np.arange(20, 90)), ((33, 34), np.array([33]))]
    chosen.append((np.array([0, 16, 17, 50, 101, 102]), np.array([0, 16, 17, 50, 101, 102])))
    for rows, expected in chosen:
        for group_rows in (1, 8192):  # groups of one record, and all records in one group
            batches = list(
                read_split(tmp_path, "train", names, rows=rows, batch_size=8, group_rows=group_rows)
            )
            sizes = [len(batch["true_probability"]) for batch in batches]
            assert sizes == [8] * (len(expected) // 8) + [len(expected) % 8] * bool(
                len(expected) % 8
            )
            read = np.concatenate([batch["true_probability"] for batch in batches])
            np.testing.assert_array_equal(read, expected)
            read = np.concatenate([batch["click_item_id"] for batch in batches])
            np.testing.assert_array_equal(read, clicks[expected])
    # Without batch_size, a batch is a group of whole records (17 rows each here).
    sizes = [len(b["true_probability"]) for b in read_split(tmp_path, "train", names, group_rows=1)]
    assert sizes == [17] * 6 + [1]
    assert list(read_split(tmp_path, "train", names, rows=np.array([], np.int64))) == []
    with pytest.raises(ValueError, match="rows must be"):
        read_split(tmp_path, "train", names, rows=(5, n + 1))
    with pytest.raises(ValueError, match="sorted, distinct"):
        read_split(tmp_path, "train", names, rows=np.array([3, 2]))


def test_shuffle_is_seeded_and_a_permutation(tmp_path):
    # 96 rows numbered by `price`, in records of 8 rows dealt round-robin to 4 shards;
    # shuffle windows of one record.
    n, window = 96, 8
    rows = numbered_rows(n)
    writer = DatasetWriter(tmp_path, {"train": 4}, rows_per_record=window)
    writer.write("train", rows)
    writer.close(tiny_schema(), {})

    def shuffled(seed):
        ds = make_dataset(
            tmp_path, "train", batch_size=5, shuffle=True, seed=seed, shuffle_buffer=window
        )
        features, labels, _ = collect(ds)
        order = features["price"].astype(int)
        # Whole rows move: every column of a row stays with its row number.
        np.testing.assert_array_equal(features["user_id"], rows["user_id"][order])
        np.testing.assert_array_equal(labels, rows["label"][order])
        np.testing.assert_array_equal(
            features["click_item_id"][:, 0],
            [r[0] if r.size else -1 for r in (rows["click_item_id"][i] for i in order)],
        )
        return order

    order = shuffled(5)  # (seed 3 happens to keep the 4 shards in order)
    np.testing.assert_array_equal(shuffled(5), order)  # seeded
    np.testing.assert_array_equal(np.sort(order), np.arange(n))  # a permutation
    assert not np.array_equal(shuffled(4), order)  # the seed matters
    # Rows are shuffled within records: few neighbours keep their written order (a record's
    # 8 rows in written order would keep 7 of every 8).
    assert np.mean(np.diff(order) == 1) < 0.4
    # Shard order is shuffled too: the records (windows) leave their written order.
    records = order[::window] // window
    np.testing.assert_array_equal(order // window, np.repeat(records, window))
    assert not np.array_equal(records, np.arange(n // window))
    ds = make_dataset(tmp_path, "train", batch_size=2, repeat=True, drop_remainder=True)
    assert sum(1 for _ in ds.take(60)) == 60  # beyond the 48 batches of one pass


def test_reshuffle_each_iteration_false_repeats_the_first_order(tmp_path):
    from widedeep.cli import main

    data = str(tmp_path / "sim")
    assert (
        main(
            [
                "simulate",
                "--out",
                data,
                "--seed",
                "1",
                "--num-users",
                "30",
                "--num-items",
                "20",
                "--num-impressions",
                "600",
                "--max-length",
                "3",
            ]
        )
        == 0
    )

    def orders(**kwargs):
        ds = make_dataset(
            data, "train", batch_size=32, shuffle=True, seed=5, shuffle_buffer=64, **kwargs
        )
        return [collect(ds)[0]["user_id"].tolist() for _ in range(2)]

    # Keras restarts a dataset's iterator under a distribution strategy: a per-epoch
    # pipeline must give the restarted iterator the same rows in the same order.
    fixed = orders(reshuffle_each_iteration=False)
    assert fixed[0] == fixed[1]
    again = orders(reshuffle_each_iteration=True)
    assert again[0] != again[1]  # the default reshuffles every iteration ...
    assert sorted(again[0]) == sorted(again[1]) == sorted(fixed[0])  # ... the same rows


def test_pipeline_options_are_checked_before_reading(tmp_path):
    write_tiny(tmp_path)
    with pytest.raises(ValueError, match="batch_size must be an int >= 1. Received: batch_size=0"):
        make_dataset(tmp_path, "train", batch_size=0)
    with pytest.raises(ValueError, match="feedback_weights must be 3 non-negative numbers"):
        make_dataset_fn(tmp_path, "train", feedback_weights=(1, -1, 1))
    with pytest.raises(ValueError, match="feedback_weights must be 3 non-negative numbers"):
        make_dataset(tmp_path, "train", feedback_weights=(1, 1))
    with pytest.raises(TypeError, match="shuffle_bufer"):
        make_dataset(tmp_path, "train", shuffle_bufer=10)  # a misspelt option is not ignored
    # Both functions take the same options, with PipelineOptions' defaults.
    defaults = PipelineOptions()
    assert (defaults.batch_size, defaults.shuffle, defaults.cache) == (256, False, False)
    x, _, _ = collect(make_dataset_fn(tmp_path, "train", batch_size=2, rows=(1, 4))(None))
    np.testing.assert_array_equal(x["price"], ROWS["price"][1:4])


def test_missing_column_is_named(tmp_path):
    rows = {k: v for k, v in ROWS.items() if k != "item_id"}
    writer = DatasetWriter(tmp_path, {"train": 1})
    writer.write("train", rows)
    writer.close(Schema(categorical=[tiny_schema().categorical[0]]), {})
    with pytest.raises(DatasetError, match=r"missing columns \['item_id'\]") as info:
        check_columns(tmp_path, "train", tiny_schema())
    assert "part-00000-of-00001.tfrecord" in str(info.value)


def test_missing_dir_meta_and_shard_raise_dataset_error(tmp_path):
    with pytest.raises(DatasetError, match="no such directory"):
        load_dataset_dir(tmp_path / "absent")
    with pytest.raises(DatasetError, match="no such directory"):
        make_dataset(tmp_path / "absent", "train")
    write_tiny(tmp_path)
    schema, meta = load_dataset_dir(tmp_path)
    assert schema == tiny_schema()
    with pytest.raises(DatasetError, match="no split 'valid'"):
        make_dataset(tmp_path, "valid")
    os.remove(tmp_path / "train" / "part-00001-of-00002.tfrecord")
    with pytest.raises(DatasetError, match="missing shard file .*part-00001-of-00002"):
        load_dataset_dir(tmp_path)
    os.remove(tmp_path / "meta.json")
    with pytest.raises(DatasetError, match="meta.json"):
        load_dataset_dir(tmp_path)


def test_writer_validates_input(tmp_path):
    writer = DatasetWriter(tmp_path, {"train": 1})
    with pytest.raises(DatasetError, match="unknown split 'test'"):
        writer.write("test", ROWS)
    with pytest.raises(DatasetError, match="column 'label' has 2 rows"):
        writer.write("train", {"user_id": np.array([1, 2, 3]), "label": np.array([0, 1])})
    writer.write("train", ROWS)
    with pytest.raises(DatasetError, match=r"columns differ .*\['price'\]"):
        writer.write("train", {**ROWS, "price": ROWS["price"].astype(np.int64)})
    writer.close(tiny_schema(), {})
    with pytest.raises(DatasetError, match="already holds a dataset"):
        DatasetWriter(tmp_path, {"train": 1})


def test_writing_is_deterministic(tmp_path):
    write_tiny(tmp_path / "a")
    write_tiny(tmp_path / "b")
    for rel in [
        "train/part-00000-of-00002.tfrecord",
        "train/part-00001-of-00002.tfrecord",
        "test/part-00000-of-00001.tfrecord",
    ]:
        assert (tmp_path / "a" / rel).read_bytes() == (tmp_path / "b" / rel).read_bytes()


def shard_records(path) -> list[bytes]:
    return [r.numpy() for r in tf.data.TFRecordDataset(str(path))]


def test_records_parse_back_to_the_written_values(tmp_path):
    # Large, negative and unsigned ints, booleans, multi-byte lengths, floats of both
    # widths (NaN, -0.0), unicode and bytes strings, padded and ragged sequences; records
    # of 2 rows, so parse_example's values are every row's values in row order.
    big = np.array([2**64 - 1, 0, 2**63, 7], dtype=np.uint64)
    rows = {
        "user_id": np.array([1, -1, 2**62, 3]),
        "city": np.array(["é" * 100, "", "rome", "x" * 300], dtype=object),
        "item_id": np.array([10, 11, 12, 13]),
        "price": np.array([np.pi, -0.0, 1e30, np.nan], dtype=np.float32),
        "click_item_id": [
            np.arange(200),
            np.array([], dtype=np.int64),
            np.array([-5]),
            np.array([2**40]),
        ],
        "label": np.array([0, 1, 1, 0]),
        "feedback": np.array([0, 1, 1, 0]),
        "flag": np.array([True, False, True, True]),
        "big": big,
        "code": np.array([b"ab", b"", b"\x00z", b"c"], dtype="S3"),
        "score": np.array([0.1, -2.5, 1 / 3, 3.0]),
        "tags": np.array([["α", "b"], ["", ""], ["c", ""], ["d", "e"]]),
    }
    writer = DatasetWriter(tmp_path, {"train": 1}, rows_per_record=2)
    writer.write("train", rows)
    writer.close(tiny_schema(), {})
    records = shard_records(tmp_path / "train" / "part-00000-of-00001.tfrecord")
    assert len(records) == 2
    spec = {
        **{k: tf.io.VarLenFeature(tf.int64) for k in ["user_id", "item_id", "flag", "big"]},
        **{k: tf.io.VarLenFeature(tf.string) for k in ["city", "code", "tags"]},
        **{k: tf.io.VarLenFeature(tf.float32) for k in ["price", "score"]},
        "click_item_id": tf.io.VarLenFeature(tf.int64),
        "click_item_id/length": tf.io.VarLenFeature(tf.int64),
        "tags/length": tf.io.VarLenFeature(tf.int64),
    }
    parsed = {k: v.values.numpy() for k, v in tf.io.parse_example(records, spec).items()}
    np.testing.assert_array_equal(parsed["user_id"], rows["user_id"])
    np.testing.assert_array_equal(parsed["item_id"], rows["item_id"])
    np.testing.assert_array_equal(parsed["flag"], [1, 0, 1, 1])
    np.testing.assert_array_equal(parsed["big"], big.view(np.int64))  # two's complement
    assert [v.decode() for v in parsed["city"]] == rows["city"].tolist()
    assert parsed["code"].tolist() == [b"ab", b"", b"\x00z", b"c"]
    assert [v.decode() for v in parsed["tags"]] == ["α", "b", "c", "d", "e"]  # padding dropped
    np.testing.assert_array_equal(parsed["tags/length"], [2, 0, 1, 2])
    # Bit for bit: -0.0 keeps its sign, NaN stays NaN, float64 is rounded to float32.
    np.testing.assert_array_equal(parsed["price"].view(np.int32), rows["price"].view(np.int32))
    np.testing.assert_array_equal(parsed["score"], rows["score"].astype(np.float32))
    np.testing.assert_array_equal(parsed["click_item_id"], np.concatenate(rows["click_item_id"]))
    np.testing.assert_array_equal(parsed["click_item_id/length"], [200, 0, 1, 1])


def feature_entry(key: bytes, feature: bytes) -> bytes:
    """One `Features.feature` map entry on the wire (fields under 128 bytes)."""
    body = b"\x0a" + bytes([len(key)]) + key + b"\x12" + bytes([len(feature)]) + feature
    return b"\x0a" + bytes([len(body)]) + body


def test_records_have_pinned_bytes_with_keys_in_sorted_order(tmp_path):
    # Datasets are compared byte for byte across versions, so the exact bytes are pinned:
    # keys in Python's order ("c" before "c/length"; protobuf's upb backend would put
    # "c/length" first), an empty sequence as an empty int64_list ("1a 00").
    # Feature wire bytes: int64_list is field 3 (0x1a), float_list 2 (0x12), bytes_list 1
    # (0x0a), each holding its values as field 1 (0x0a; ints and floats packed).
    with DatasetWriter(tmp_path, {"train": 1}, rows_per_record=1) as writer:  # no meta.json
        writer.write(
            "train",
            {
                "s": np.array(["x", ""], dtype=object),
                "c": [np.array([300]), np.array([], dtype=np.int64)],
                "f": np.array([0.5, 1.0], dtype=np.float32),
                "a": np.array([1, -1]),
            },
        )
    first = [
        feature_entry(b"a", bytes.fromhex("1a 03 0a 01 01")),
        feature_entry(b"c", bytes.fromhex("1a 04 0a 02 ac 02")),  # varint(300) = ac 02
        feature_entry(b"c/length", bytes.fromhex("1a 03 0a 01 01")),
        feature_entry(b"f", bytes.fromhex("12 06 0a 04 00 00 00 3f")),  # 0.5 little-endian
        feature_entry(b"s", bytes.fromhex("0a 03 0a 01 78")),
    ]
    second = [
        feature_entry(b"a", bytes.fromhex("1a 0c 0a 0a" + "ff" * 9 + "01")),  # -1: 10 bytes
        feature_entry(b"c", bytes.fromhex("1a 00")),
        feature_entry(b"c/length", bytes.fromhex("1a 03 0a 01 00")),
        feature_entry(b"f", bytes.fromhex("12 06 0a 04 00 00 80 3f")),
        feature_entry(b"s", bytes.fromhex("0a 02 0a 00")),
    ]
    expected = [
        b"\x0a" + bytes([len(b"".join(entries))]) + b"".join(entries) for entries in (first, second)
    ]
    assert shard_records(tmp_path / "train" / "part-00000-of-00001.tfrecord") == expected


def test_a_record_missing_a_column_is_an_error_naming_it(tmp_path):
    write_tiny(tmp_path, num_shards={"train": 1, "test": 1}, rows_per_record=2)
    shard = str(tmp_path / "train" / "part-00000-of-00001.tfrecord")
    records = [r.numpy() for r in tf.data.TFRecordDataset(shard)]
    # A damaged second record: 'price' lost, so its rows would shift against the others.
    damaged = tf.train.Example.FromString(records[1])
    del damaged.features.feature["price"]
    with tf.io.TFRecordWriter(shard) as writer:
        writer.write(records[0])
        writer.write(damaged.SerializeToString())
        writer.write(records[2])
    with pytest.raises(
        tf.errors.InvalidArgumentError,
        match=r"column .{1,3}price.{1,3} does not have one value per row",
    ):
        collect(make_dataset(tmp_path, "train", batch_size=2))
