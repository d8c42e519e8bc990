"""`widedeep prepare log` on a log with one bad value: a one-line error naming file, line and column.

One value that does not parse in the column of each role (user, item, time, label,
dislike, context), with `--on-error stop`: the CLI exits with 2 and prints one
line, `widedeep: error: <file>, line <n>: ...`, naming the column and the value,
and no traceback. Each role twice: the bad value in a short log, where Polars
infers the column's type with the bad value in view (a text time column, say),
and past the first 10,000 rows, where the type was inferred without it and the
exact reader takes over. A context column holds any type, so a short log's "bad"
context value only makes the column text: the context case is the long log's.
"""

from __future__ import annotations

import re

import pytest

from widedeep.cli import main
from widedeep.data.source import FeedbackLogError
from widedeep.data.user_log import LogConfig, prepare_log

HEADER = "who,sku,ts,clicked,hidden,hour"
COLUMN = {"user": "who", "item": "sku", "time": "ts", "label": "clicked", "dislike": "hidden"}
COLUMN["context"] = "hour"
LONG = 10_050  # rows: past the 10,000 Polars infers the types from
BAD_ROW = {"short": 3, "long": 10_030}  # 0-based data row: lines 5 and 10,032


def write_log(path, rows: int, role: str, bad_row: int, bad_value: str) -> int:
    """A log of `rows` rows whose `role` column holds `bad_value` at `bad_row`; its line."""
    lines = [HEADER]
    for r in range(rows):
        values = {"who": r % 7, "sku": r % 5, "ts": 1000 + r, "clicked": r % 2, "hidden": 0}
        values["hour"] = r % 24
        if r == bad_row:
            values[COLUMN[role]] = bad_value
        lines.append(",".join(str(values[c]) for c in HEADER.split(",")))
    path.write_text("\n".join(lines) + "\n")
    return bad_row + 2  # the header is line 1


def prepare_args(log, out) -> list[str]:
    return ["prepare", "log", "--log", str(log), "--user", "who", "--item", "sku", "--time", "ts",
            "--label", "clicked", "--dislike", "hidden", "--context", "hour", "--out", str(out),
            "--on-error", "stop"]  # fmt: skip


CASES = [
    (length, role, value)
    for length in ("short", "long")
    for role, value in (
        ("user", "u7"),
        ("item", "1.5"),
        ("time", "noon"),
        ("label", "yes"),
        ("label", "2"),
        ("dislike", "?"),
        ("context", "x9"),
    )
    if not (length == "short" and role == "context")
]


@pytest.mark.parametrize(("length", "role", "value"), CASES)
def test_a_bad_value_is_a_one_line_error_naming_file_line_and_column(
    tmp_path, capsys, length, role, value
):
    log = tmp_path / "log.csv"
    line = write_log(log, 12 if length == "short" else LONG, role, BAD_ROW[length], value)
    assert main(prepare_args(log, tmp_path / "out")) == 2
    captured = capsys.readouterr()
    errors = [text for text in captured.err.splitlines() if text.startswith("widedeep: error:")]
    assert len(errors) == 1 and "Traceback" not in captured.err
    error = errors[0]
    assert error.startswith(f"widedeep: error: {log}, line {line}: "), error
    assert re.search(rf"\b{COLUMN[role]}\b", error.split(": ", 2)[2]), error  # the column
    assert repr(value) in error or f"found {value}" in error, error  # and the value
    assert not (tmp_path / "out").exists()  # nothing left behind


def test_the_api_raises_the_same_error_in_one_line(tmp_path):
    log = tmp_path / "log.csv"
    line = write_log(log, 12, "time", 3, "noon")
    config = LogConfig([str(log)], user="who", item="sku", time="ts", label="clicked")
    with pytest.raises(FeedbackLogError) as error:
        prepare_log(config, tmp_path / "out", on_error="stop")
    message = str(error.value)
    assert "\n" not in message
    assert message.startswith(
        f"{log}, line {line}: time column 'ts' does not parse as a time: 'noon'"
    )


def test_an_empty_time_is_named_too(tmp_path):
    log = tmp_path / "log.csv"
    line = write_log(log, 12, "time", 5, "")
    config = LogConfig([str(log)], user="who", item="sku", time="ts", label="clicked")
    with pytest.raises(
        FeedbackLogError,
        match=rf"{re.escape(str(log))}, line {line}: time column 'ts' does not parse as a time: ''",
    ):
        prepare_log(config, tmp_path / "out", on_error="stop")


@pytest.mark.parametrize("table", ["users", "items"])
@pytest.mark.parametrize("bad_key", ["u9", "", "2.5"])
def test_a_side_table_key_that_is_not_an_integer_is_named(tmp_path, capsys, table, bad_key):
    log = tmp_path / "log.csv"
    write_log(log, 12, "user", -1, "")
    side = tmp_path / f"{table}.csv"
    key = "who" if table == "users" else "sku"
    side.write_text(f"{key},colour\n1,red\n{bad_key},blue\n3.0,green\n")  # 3.0 is 3
    assert main([*prepare_args(log, tmp_path / "out"), f"--{table}", str(side)]) == 2
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert error == (
        f"widedeep: error: {side}, line 3: key column '{key}' must hold integers, found "
        + repr(float(bad_key) if bad_key == "2.5" else bad_key)
    )
