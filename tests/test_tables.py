"""Tests of dataset tables: columns the records reference by row (`widedeep.data.tables`)."""

from __future__ import annotations

import numpy as np
import pytest

from tests.test_records import EXPECTED_CLICKS, ROWS, collect, tiny_schema, write_tiny
from widedeep.data.dataset_format import DatasetError
from widedeep.data.pipeline import make_dataset
from widedeep.data.reader import check_columns, load_dataset_dir, read_columns
from widedeep.data.tables import Lookup, TableError
from widedeep.data.writer import DatasetWriter
from widedeep.schema import Schema

# The rows of `ROWS`, with city, item_id and price read from tables and the click
# sequences from an events table. Events (rows of `items`), each row's own run of them in
# time order: row 1 [11], row 2 [11, 10, 12], row 3 [10, 11, 12, 13] after a 13, row 4 [10, 10].
ITEMS = {"item_id": np.array([10, 11, 12, 13]), "price": np.array([9.0, 8.0, 7.0, 6.0])}
CLICK_EVENTS = np.array([1, 1, 0, 2, 3, 0, 1, 2, 3, 0, 0])
RECORDS = {
    "user_id": ROWS["user_id"],
    "@city": np.array([0, 1, 2, 1, 0]),
    "@item": np.array([0, 1, 2, 3, 0]),
    "@click_end": np.array([0, 1, 4, 9, 11]),
    "@click_count": np.array([0, 1, 3, 5, 2]),  # row 3 has 5 earlier clicks, more than L = 3
    "label": ROWS["label"],
    "feedback": ROWS["feedback"],
}
LOOKUPS = {
    "city": Lookup("cities", "city", row="@city"),
    "item_id": Lookup("items", "item_id", row="@item"),
    "price": Lookup("items", "price", row="@item"),
    "click_item_id": Lookup(
        "items", "item_id", events="click_events", end="@click_end", count="@click_count"
    ),
}


def write_with_tables(out_dir, records=RECORDS, events=CLICK_EVENTS, lookups=None, schema=None):
    writer = DatasetWriter(out_dir, {"train": 2, "test": 1}, rows_per_record=2)
    writer.write_table("cities", {"city": np.array([b"paris", b"rome", b""])})
    writer.write_table("items", ITEMS)
    writer.write_table("click_events", {"row": events})
    writer.write("train", records)
    writer.write("test", {name: values[:2] for name, values in records.items()})  # as write_tiny
    return writer.close(
        schema or tiny_schema(), {"source": "test"}, LOOKUPS if lookups is None else lookups
    )


def test_lookups_read_as_the_columns_they_stand_for(tmp_path):
    meta = write_with_tables(tmp_path)
    assert meta["format"] == "widedeep-blocks/2"
    assert meta["tables"]["items"] == {
        "rows": 4,
        "columns": {"item_id": "int64", "price": "float32"},
    }
    assert meta["lookups"]["click_item_id"] == {
        "table": "items",
        "column": "item_id",
        "events": "click_events",
        "end": "@click_end",
        "count": "@click_count",
    }
    # Only the rows are in the records; the values come from the tables.
    assert set(meta["splits"]["train"]["columns"]) == set(RECORDS)
    check_columns(tmp_path, "train")
    names = ["user_id", "city", "item_id", "price", "click_item_id", "label"]
    got = read_columns(tmp_path, "train", names)
    np.testing.assert_array_equal(got["click_item_id"], EXPECTED_CLICKS)  # truncated to L = 3
    np.testing.assert_array_equal(got["city"], [b"paris", b"rome", b"", b"rome", b"paris"])
    np.testing.assert_array_equal(got["item_id"], [10, 11, 12, 13, 10])
    np.testing.assert_array_equal(got["price"], np.float32([9, 8, 7, 6, 9]))
    test = read_columns(tmp_path, "test", ["click_item_id", "item_id"])
    np.testing.assert_array_equal(test["click_item_id"], EXPECTED_CLICKS[:2])
    np.testing.assert_array_equal(test["item_id"], [10, 11])


def test_a_dataset_with_tables_trains_on_what_the_stored_one_gives(tmp_path):
    stored = {**ROWS, "price": ITEMS["price"][RECORDS["@item"]].astype(np.float32)}
    write_tiny(tmp_path / "stored", rows=stored)
    write_with_tables(tmp_path / "tables")
    for split in ("train", "test"):
        a = collect(
            make_dataset(tmp_path / "stored", split, batch_size=2, feedback_weights=(1, 1, 10))
        )
        b = collect(
            make_dataset(tmp_path / "tables", split, batch_size=2, feedback_weights=(1, 1, 10))
        )
        assert a[0].keys() == b[0].keys()
        for name in a[0]:
            np.testing.assert_array_equal(a[0][name], b[0][name], err_msg=name)
        np.testing.assert_array_equal(a[1], b[1])
        np.testing.assert_array_equal(a[2], b[2])


def test_a_shorter_schema_truncates_looked_up_sequences(tmp_path):
    write_with_tables(tmp_path)
    short = tiny_schema().to_dict()
    short["sequences"][0]["max_length"] = 2
    features, _, _ = collect(make_dataset(tmp_path, "train", Schema.from_dict(short), batch_size=5))
    np.testing.assert_array_equal(features["click_item_id"], EXPECTED_CLICKS[:, :2])


def test_no_events_of_a_type_gives_empty_sequences(tmp_path):
    records = {
        **RECORDS,
        "@click_end": np.zeros(5, np.int64),
        "@click_count": np.zeros(5, np.int64),
    }
    write_with_tables(tmp_path, records=records, events=np.zeros(0, np.int64))
    got = read_columns(tmp_path, "train", ["click_item_id"])["click_item_id"]
    np.testing.assert_array_equal(got, np.full((5, 3), -1))


def test_writer_names_a_lookup_that_does_not_match(tmp_path):
    with pytest.raises(DatasetError, match=r"click_item_id: no column 'video_id' in table 'items'"):
        write_with_tables(
            tmp_path / "a",
            lookups={**LOOKUPS, "click_item_id": Lookup("items", "video_id", row="@item")},
        )
    with pytest.raises(DatasetError, match=r"item_id: expected int64, looks up float32"):
        write_with_tables(
            tmp_path / "b", lookups={**LOOKUPS, "item_id": Lookup("items", "price", row="@item")}
        )
    with pytest.raises(DatasetError, match=r"missing columns \['@city'\]"):
        write_with_tables(
            tmp_path / "c", records={k: v for k, v in RECORDS.items() if k != "@city"}
        )
    with pytest.raises(TableError, match="either row"):
        Lookup("items", "item_id", row="@item", end="@click_end")


def test_reader_names_damaged_tables(tmp_path):
    write_with_tables(tmp_path / "a", events=np.array([1, 1, 0, 2, 3, 0, 1, 2, 7, 0, 0]))
    with pytest.raises(TableError, match=r"click_events/row.npy holds rows outside table 'items'"):
        read_columns(tmp_path / "a", "train", ["click_item_id"])
    write_with_tables(tmp_path / "b")
    np.save(tmp_path / "b" / "tables" / "items" / "price.npy", np.zeros(3))
    with pytest.raises(TableError, match=r"items/price.npy has 3 rows, meta.json says 4"):
        read_columns(tmp_path / "b", "train", ["price"])
    (tmp_path / "b" / "tables" / "items" / "price.npy").unlink()
    with pytest.raises(TableError, match=r"cannot read table file .*items/price.npy"):
        read_columns(tmp_path / "b", "train", ["price"])


def test_overwrite_removes_the_old_tables(tmp_path):
    write_with_tables(tmp_path)
    write_tiny(tmp_path / "x")  # a dataset without tables, written over the one with them:
    writer = DatasetWriter(tmp_path, {"train": 2, "test": 1}, overwrite=True)
    writer.write("train", ROWS)
    writer.close(tiny_schema())
    assert not list((tmp_path / "tables").rglob("*.npy"))
    _, meta = load_dataset_dir(tmp_path)
    assert "tables" not in meta
    np.testing.assert_array_equal(
        read_columns(tmp_path, "train", ["click_item_id"])["click_item_id"], EXPECTED_CLICKS
    )
