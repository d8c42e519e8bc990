"""`prepare log`: a user's own log with custom column names, CSV or Parquet, end to end."""

from __future__ import annotations

import json

import numpy as np
import polars as pl
import pytest

from widedeep.cli import main
from widedeep.data.prepare import prepare_impressions
from widedeep.data.reader import load_dataset_dir, read_columns
from widedeep.data.source import ErrorPolicy, FeedbackLogError, PrepareOptions
from widedeep.data.user_log import CONFIG_FILE, LogConfig, LogSource, prepare_log

ONE_SHARD = {"train": 1, "test": 1}

# A log in the reader's own words: `who` clicked (`clicked`) `sku` at `ts`; `page` is
# context, `dwell` an outcome column that must be ignored.
LOG = """who,sku,ts,clicked,hidden,page,dwell
1,100,2024-05-01 10:00:00,1,0,home,30
2,100,2024-05-01 10:00:00,0,0,home,0
1,101,2024-05-01 10:05:00,0,0,search,1
1,102,2024-05-01 10:05:00,0,1,search,0
1,102,2024-05-01 10:05:00,0,1,search,0
2,101,2024-05-01 11:00:00,1,0,home,12
1,100,2024-05-01 12:00:00,1,0,home,40
"""
CATALOG = """sku,brand,price
100,acme,9.5
101,zeta,20.0
102,acme,
"""


def config(tmp_path, log_name="log.csv", **overrides) -> LogConfig:
    settings = dict(
        logs=[str(tmp_path / log_name)],
        user="who",
        item="sku",
        time="ts",
        label="clicked",
        dislike="hidden",
        context=["page"],
        items=str(tmp_path / "catalog.csv"),
    )
    settings.update(overrides)
    return LogConfig(**settings)


@pytest.fixture
def files(tmp_path):
    (tmp_path / "log.csv").write_text(LOG)
    (tmp_path / "catalog.csv").write_text(CATALOG)
    return tmp_path


def rows(out, split):
    cols = read_columns(
        out,
        split,
        ["who", "sku", "feedback", "click_sku", "unclick_sku", "dislike_sku", "brand", "page"],
    )
    return [
        (int(cols["who"][r]), int(cols["sku"][r]), int(cols["feedback"][r]),
         [int(v) for v in cols["click_sku"][r] if v != -1],
         [int(v) for v in cols["unclick_sku"][r] if v != -1],
         [int(v) for v in cols["dislike_sku"][r] if v != -1])
        for r in range(len(cols["who"]))
    ]  # fmt: skip


def test_custom_columns_and_side_table_hand_computed(files):
    out = files / "out"
    meta = prepare_log(config(files), out, test_fraction=0.2, num_shards=ONE_SHARD)
    # 7 rows, one exact duplicate: 6 impressions, the last round(6 * 0.2) = 1 in test.
    assert meta["impressions"] == 6 and meta["duplicates_dropped"] == 1
    unclick, click, dislike = 0, 1, 2
    assert rows(out, "train") == [
        (1, 100, click, [], [], []),
        (2, 100, unclick, [], [], []),
        (1, 101, unclick, [100], [], []),
        (1, 102, dislike, [100], [101], []),  # same time, earlier line: before
        (2, 101, click, [], [100], []),
    ]
    assert rows(out, "test") == [(1, 100, click, [100], [101], [102])]
    cols = read_columns(out, "train", ["brand", "price", "page"])
    assert cols["brand"].tolist() == [b"acme", b"acme", b"zeta", b"acme", b"zeta"]
    np.testing.assert_allclose(cols["price"], [9.5, 9.5, 20.0, 14.75, 20.0])  # median imputed
    schema, _ = load_dataset_dir(out)
    assert schema.group_key == "who" and schema.target_item_features == ["sku", "brand"]
    assert meta["columns"]["page"] == {
        "role": "context",
        "kind": "categorical",
        "dtype": "string",
        "vocabulary": 2,
    }
    assert meta["columns"]["price"]["kind"] == "numeric"
    assert meta["columns"]["brand"]["role"] == "item table"
    assert meta["ignored_columns"] == ["dwell"]
    assert "dwell" not in schema.input_signature()
    assert json.loads((out / CONFIG_FILE).read_text())["user"] == "who"


def test_parquet_input_equals_csv_input(files):
    pl.read_csv(files / "log.csv").write_parquet(files / "log.parquet")
    a = prepare_log(config(files), files / "a", num_shards=ONE_SHARD)
    b = prepare_log(config(files, "log.parquet"), files / "b", num_shards=ONE_SHARD)
    for split in ("train", "test"):
        assert rows(files / "a", split) == rows(files / "b", split)
    assert (files / "a" / "schema.json").read_text() == (files / "b" / "schema.json").read_text()
    assert (
        a["impressions"] == b["impressions"] and a["duplicates_dropped"] == b["duplicates_dropped"]
    )


def test_ties_keep_file_order_across_globbed_files(files):
    (files / "parts").mkdir()
    (files / "parts" / "a.csv").write_text("who,sku,ts,clicked\n1,100,5,1\n")
    (files / "parts" / "b.csv").write_text("who,sku,ts,clicked\n1,101,5,1\n1,102,1,1\n")
    cfg = LogConfig(
        logs=[str(files / "parts" / "*.csv")], user="who", item="sku", time="ts", label="clicked"
    )
    out = files / "out"
    prepare_log(cfg, out, test_fraction=0.0, num_shards=ONE_SHARD)
    # sorted by time: 102 (t=1), then the tie at t=5 in file order a.csv, b.csv
    assert [(r[1], r[3]) for r in rows_plain(out)] == [(102, []), (100, [102]), (101, [100, 102])]


def rows_plain(out):
    cols = read_columns(out, "train", ["sku", "click_sku"])
    return [
        (0, int(cols["sku"][r]), 0, [int(v) for v in cols["click_sku"][r] if v != -1])
        for r in range(len(cols["sku"]))
    ]


def test_time_that_does_not_parse_names_file_and_line(files):
    (files / "log.csv").write_text(LOG.replace("2024-05-01 11:00:00", "yesterday"))
    with pytest.raises(FeedbackLogError, match=r"log.csv, line 7: time column 'ts' does not parse"):
        prepare_log(config(files), files / "out")


def test_unknown_item_and_missing_column_are_one_line_errors(files):
    (files / "catalog.csv").write_text("sku,brand,price\n100,acme,1.0\n101,zeta,2.0\n")
    with pytest.raises(
        FeedbackLogError, match=r"log.csv, line 5: item 102 is not in .*catalog.csv"
    ):
        prepare_log(config(files), files / "out", on_error="stop")
    with pytest.raises(FeedbackLogError, match=r"missing column\(s\) \['when'\]"):
        prepare_log(config(files, time="when"), files / "out")


def test_cli_prepare_log_then_train(files, tmp_path, capsys):
    big = ["who,sku,ts,clicked,page"]
    rng = np.random.default_rng(0)
    for t in range(600):
        user, item = rng.integers(0, 20), rng.integers(0, 15)
        big.append(f"{user},{item},{1000 + t},{int(rng.random() < 0.3 + 0.03 * item)},p{t % 3}")
    (files / "big.csv").write_text("\n".join(big) + "\n")
    out = tmp_path / "data"
    args = ["prepare", "log", "--log", str(files / "big.csv"), "--user", "who", "--item", "sku",
            "--time", "ts", "--label", "clicked", "--context", "page", "--out", str(out), "--max-length", "4"]  # fmt: skip
    assert main(args) == 0
    err = capsys.readouterr().err
    assert "page: context, categorical" in err and "sku: item, categorical" in err
    run = tmp_path / "run"
    train = ["train", "--data", str(out), "--out", str(run), "--epochs", "1", "--batch-size", "128",
             "--logdir", "", "--hidden-units", "8"]  # fmt: skip
    assert main(train) == 0
    metrics = json.loads((run / "metrics.json").read_text())
    # The test split is the last 20% in time (ts >= 1480): metrics over exactly its rows.
    test_clicks = [int(line.split(",")[3]) for line in big[1:] if int(line.split(",")[2]) >= 1480]
    assert metrics["examples"] == len(test_clicks) == 120
    assert metrics["ctr"] == pytest.approx(np.mean(test_clicks))
    # The click rate rises with the item id: one epoch learns some of it (measured AUC
    # 0.616, log loss 0.683 against the constant predictor's 0.693).
    assert metrics["auc"] > 0.56 and np.isfinite(metrics["logloss"])
    assert main(["prepare", "log", "--log", str(files / "big.csv"), "--out", str(out)]) == 2
    assert "needs --user, --item, --time, --label" in capsys.readouterr().err


def test_out_of_core_preparation_equals_in_memory(files):
    # Runs of 3 rows spilled and merged, chunks of 2: the string context column
    # `page` travels as codes through the scratch files and comes back as strings.
    cfg = config(files, users=None)
    in_memory = prepare_log(cfg, files / "a", num_shards=ONE_SHARD)
    options = PrepareOptions(num_shards=ONE_SHARD)
    policy = ErrorPolicy(options.on_error)
    external = prepare_impressions(
        LogSource(cfg, policy), files / "b", options, policy, chunk_rows=2, run_rows=3
    )
    assert external["spilled"] and not in_memory["spilled"]
    assert external["columns"] == in_memory["columns"]
    schema, _ = load_dataset_dir(files / "a")
    names = [*schema.input_signature(), schema.label, schema.feedback]
    for split in ("train", "test"):
        a, b = read_columns(files / "a", split, names), read_columns(files / "b", split, names)
        for name in names:
            np.testing.assert_array_equal(a[name], b[name], err_msg=f"{split}: {name}")
    assert sorted(set(read_columns(files / "b", "train", ["page"])["page"].tolist())) == [
        b"home",
        b"search",
    ]


@pytest.mark.parametrize("chunk_rows", [1, 65536])
def test_item_history_is_causal_and_hand_computed(tmp_path, chunk_rows):
    (tmp_path / "log.csv").write_text(
        "u,i,t,c\n1,100,1,1\n2,100,2,0\n1,101,2,0\n2,100,3,1\n2,100,3,1\n"  # last: a duplicate
    )
    cfg = LogConfig(logs=[str(tmp_path / "log.csv")], user="u", item="i", time="t", label="c")
    options = PrepareOptions(test_fraction=0.25, num_shards=ONE_SHARD, item_history=True)
    policy = ErrorPolicy(options.on_error)
    meta = prepare_impressions(
        LogSource(cfg, policy), tmp_path / "out", options, policy, chunk_rows=chunk_rows
    )
    assert meta["columns"]["item_ctr"]["role"] == "item history"
    names = ["item_log_impressions", "item_ctr"]
    train, test = (read_columns(tmp_path / "out", s, names) for s in ("train", "test"))
    # Strictly before each row (every user's impressions): item 100 shown 0, 1, then 2 times
    # with 1 click; the prior is the log's click rate before the row, (clicks + 1) / (rows + 2).
    shown = [0, 1, 0, 2]
    prior = [1 / 2, 2 / 3, 2 / 4, 2 / 5]
    hits = [0, 1, 0, 1]
    ctr = [(h + 5 * p) / (n + 5) for h, p, n in zip(hits, prior, shown, strict=True)]
    got_impressions = np.concatenate([train["item_log_impressions"], test["item_log_impressions"]])
    np.testing.assert_allclose(got_impressions, np.log1p(shown), rtol=1e-6)
    np.testing.assert_allclose(
        np.concatenate([train["item_ctr"], test["item_ctr"]]), ctr, rtol=1e-6
    )
    default = prepare_log(cfg, tmp_path / "default", num_shards=ONE_SHARD)
    assert "item_ctr" not in default["columns"]  # off unless asked for


@pytest.mark.parametrize("body", ["", "1,100,1,7\n2,100,2,9\n"], ids=["no_rows", "all_bad"])
def test_a_log_without_a_valid_row_is_a_one_line_error(tmp_path, body):
    (tmp_path / "log.csv").write_text("u,i,t,c\n" + body)
    cfg = LogConfig(logs=[str(tmp_path / "log.csv")], user="u", item="i", time="t", label="c")
    with pytest.raises(FeedbackLogError, match="log: no valid impression in the log"):
        prepare_log(cfg, tmp_path / "out")
