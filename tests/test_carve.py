"""The train/validation carve: the last rows by time, or each user's last rows (`widedeep.data.carve`)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tests.test_records import collect, numbered_rows, write_tiny
from widedeep.baselines import run_baselines
from widedeep.data.carve import per_user_validation_mask, validation_carve
from widedeep.data.pipeline import make_dataset, make_dataset_fn
from widedeep.data.reader import read_columns
from widedeep.data.user_log import LogConfig, prepare_log
from widedeep.training import TrainConfig, train


def test_per_user_mask_by_hand():
    # User 7 has 6 rows (quota round(6 * 0.25) = round(1.5) = 2, half up), user 8 has 4
    # (fewer than MIN_VALIDATED_USER_ROWS = 5: none), user 9 has 5 (round(1.25) = 1).
    users = np.array([7, 8, 9, 7, 9, 7, 8, 9, 7, 9, 8, 7, 9, 8, 7])
    mask = per_user_validation_mask(users, 0.25)
    # User 7's rows are 0, 3, 5, 8, 11, 14; user 9's 2, 4, 7, 9, 12.
    assert np.flatnonzero(mask).tolist() == [11, 12, 14]
    # Every user keeps a fit row, even when the quota rounds to all of them.
    assert per_user_validation_mask(np.array([1] * 5), 0.95).tolist() == [False] + [True] * 4
    assert per_user_validation_mask(np.array([], np.int64), 0.1).tolist() == []


# Three users: user 1 (12 impressions), user 2 (4) and user 3 (8, all after the others).
# Split by user with test_fraction 0.2, each keeps its first 10, 3 and 6 rows for training:
# train rows 0-9 are user 1's, 10-12 user 2's, 13-18 user 3's (time order).
@pytest.fixture(scope="module")
def per_user_log(tmp_path_factory):
    root = tmp_path_factory.mktemp("carve")
    lines = ["user,item,ts,click"]
    minute = 0
    for user, count in ((1, 12), (2, 4), (3, 8)):
        for k in range(count):
            lines.append(f"{user},{100 + k % 3},{minute},{(k + user) % 2}")
            minute += 1
    (root / "log.csv").write_text("\n".join(lines) + "\n")
    out = root / "data"
    config = LogConfig([str(root / "log.csv")], "user", "item", "ts", "click")
    prepare_log(config, out, split_by="user", test_fraction=0.2, max_length=3)
    return str(out)


def test_per_user_and_time_carves_pick_different_rows_by_hand(per_user_log):
    users = read_columns(per_user_log, "train", ["user"])["user"]
    assert users.tolist() == [1] * 10 + [2] * 3 + [3] * 6
    carve = validation_carve(per_user_log, 0.25)
    # User 1: round(10 * 0.25) = round(2.5) = 3 rows (half up, as the test split rounds);
    # user 2: 3 rows, fewer than 5: none; user 3: round(6 * 0.25) = round(1.5) = 2.
    assert carve.kind == "per_user"
    assert carve.validation_rows.tolist() == [7, 8, 9, 17, 18]
    assert carve.fit_rows.tolist() == [0, 1, 2, 3, 4, 5, 6, 10, 11, 12, 13, 14, 15, 16]
    assert carve.total == 19
    # The time carve of the same rows: the last round(19 * 0.25) = 5 rows, user 3's only.
    with open(f"{per_user_log}/meta.json") as f:
        meta = json.load(f)
    assert meta["split"]["by"] == "user"
    time_carve = validation_carve(per_user_log, 0.25, meta={**meta, "split": {"by": "time"}})
    assert (time_carve.kind, time_carve.fit_rows, time_carve.validation_rows) == (
        "time",
        (0, 14),
        (14, 19),
    )


def test_pipeline_reads_a_row_subset_across_records(tmp_path):
    # 40 rows in records of 3, read in groups of 2 records: the subset spans groups,
    # skips whole groups and ends before the last one.
    n = 40
    rows = numbered_rows(n)
    write_tiny(tmp_path, rows=rows, chunks=4, rows_per_record=3)
    wanted = np.array([0, 2, 3, 4, 11, 12, 13, 20, 33])
    price = read_columns(tmp_path, "train", ["price"])["price"]
    for cache in (False, True):
        part, labels, _ = collect(
            make_dataset(tmp_path, "train", batch_size=4, rows=wanted, cache=cache)
        )
        np.testing.assert_array_equal(part["price"], price[wanted])
        np.testing.assert_array_equal(
            labels, read_columns(tmp_path, "train", ["label"])["label"][wanted]
        )
        shuffled = make_dataset_fn(
            tmp_path, "train", batch_size=4, shuffle=True, shuffle_buffer=6, rows=wanted,
            cache=cache,
        )  # fmt: skip
        first, _, _ = collect(shuffled(1))
        assert sorted(first["price"].tolist()) == sorted(price[wanted].tolist())
        again, _, _ = collect(shuffled(1))
        np.testing.assert_array_equal(first["price"], again["price"])  # same seed, same order
    assert list(make_dataset(tmp_path, "train", rows=np.array([], np.int64))) == []
    for bad in (np.array([3, 2]), np.array([1, 1]), np.array([n]), np.array([-1, 2])):
        with pytest.raises(ValueError, match="sorted, distinct row numbers"):
            make_dataset(tmp_path, "train", rows=bad)


def test_train_and_baselines_validate_on_each_users_last_rows(per_user_log, tmp_path):
    config = TrainConfig(
        data=per_user_log,
        out=str(tmp_path / "run"),
        epochs=1,
        early_stopping=0,
        validation_fraction=0.25,
        logdir=None,
        verbose=0,
        batch_size=8,
        hyperparameters={"hidden_units": [4]},
    )
    metrics = train(config)
    assert metrics["validation"] == {"carve": "per_user", "rows": 5, "users": 2}
    result = run_baselines(per_user_log, validation_fraction=0.25, c_grid=(1.0,))
    assert result["carve"] == "per_user"
    assert result["rows"] == {"fit": 14, "validation": 5, "test": 5}
