"""Unit tests of reading log and side-table files (no files beyond tmp_path, no TF)."""

from __future__ import annotations

import datetime
import math
import re

import polars as pl
import pytest

from widedeep.data.log_reading import (
    parse_columns,
    read_csv_with_header,
    read_delimited,
    read_log,
    report_bad_rows,
    whole_number,
)
from widedeep.data.source import ErrorPolicy, FeedbackLogError


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


def test_whole_number_is_the_one_integer_parser():
    text = pl.DataFrame({"x": ["12", " 12.0 ", "-3", "1e3", "1.5", "x", "", "inf", "nan", None]})
    assert text.select(whole_number(pl.col("x")))["x"].to_list() == [
        12, 12, -3, 1000, None, None, None, None, None, None
    ]  # fmt: skip
    floats = pl.DataFrame({"x": [2.0, 1.5, -0.5, math.nan, math.inf, None]})
    parsed = floats.select(whole_number(pl.col("x"), pl.Float64))["x"]
    assert parsed.dtype == pl.Int64 and parsed.to_list() == [2, None, None, None, None, None]
    integers = pl.DataFrame({"x": [7, None]})
    assert integers.select(whole_number(pl.col("x"), pl.Int64))["x"].to_list() == [7, None]
    # Through parse_columns, as every source parses an integer column: a float column of ids
    # (a Parquet file's, say) keeps its whole values and names the others, never truncates.
    frame = pl.DataFrame(
        {"_line": [2, 3, 4], "id": [4.0, 4.5, 5.0]}, schema_overrides={"_line": pl.Int64}
    )
    good, bad = parse_columns(frame, {"id": "int"})
    assert good["id"].to_list() == [4, 5] and bad == [
        (3, "unreadable value: id is not an integer: '4.5'")
    ]


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
