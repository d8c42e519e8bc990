"""Tests of `widedeep.baselines` against oracles computed by hand from the written rows."""

from __future__ import annotations

import math

import numpy as np
import pytest

from widedeep.baselines import history_statistics, popularity_scores, run_baselines
from widedeep.data.reader import read_columns
from widedeep.data.writer import DatasetWriter
from widedeep.schema import CategoricalFeature, NumericFeature, Schema, SequenceFeature

L = 3
N_USERS, N_ITEMS = 5, 6
SEQUENCES = ("click", "unclick", "dislike")


def make_schema(sequences: bool = True) -> Schema:
    return Schema(
        categorical=[
            CategoricalFeature("user_id", vocabulary=list(range(N_USERS))),
            CategoricalFeature("item_id", vocabulary=list(range(N_ITEMS)), embedding_dim=4),
            CategoricalFeature("city", dtype="string", vocabulary=["paris", "rome"]),
        ],
        numeric=[
            NumericFeature("price", mean=1.5, std=1.0, boundaries=[1.0, 2.0], wide=True),
            NumericFeature("age", mean=30.0, std=10.0),
        ],
        sequences=[SequenceFeature(s, ["item_id"], max_length=L) for s in SEQUENCES]
        if sequences
        else [],
        target_item_features=["item_id"],
    )


def make_rows(n: int, seed: int, label_of_item: np.ndarray | None = None) -> dict:
    """`n` impressions; labels random, or `label_of_item[item]` when given."""
    rng = np.random.default_rng(seed)
    items = rng.integers(0, N_ITEMS, n)
    labels = rng.integers(0, 2, n) if label_of_item is None else label_of_item[items]
    rows = {
        "user_id": rng.integers(0, N_USERS, n),
        "item_id": items,
        "city": rng.choice(np.array(["paris", "rome", ""], dtype=object), n),
        "price": rng.uniform(0.0, 3.0, n).astype(np.float32),
        "age": rng.uniform(20.0, 40.0, n).astype(np.float32),
        "label": labels,
        "feedback": labels.copy(),
    }
    for s in SEQUENCES:
        lengths = rng.integers(0, L + 1, n)
        valid = np.arange(L)[None, :] < lengths[:, None]
        rows[f"{s}_item_id"] = np.where(valid, rng.integers(0, N_ITEMS, (n, L)), -1)
    return rows


def write_dataset(path, train: dict, test: dict, schema: Schema | None = None) -> str:
    schema = schema or make_schema()
    columns = [*schema.input_signature(), "label", "feedback"]
    # Small records over two shards: the rows must still come back in write (time) order.
    writer = DatasetWriter(path, {"train": 2, "test": 1}, rows_per_record=4)
    writer.write("train", {k: train[k] for k in columns})
    writer.write("test", {k: test[k] for k in columns})
    writer.close(schema, {"source": "test"})
    return str(path)


def hand_logloss(y: np.ndarray, p: np.ndarray) -> float:
    return -float(np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))


@pytest.fixture(scope="module")
def random_dataset(tmp_path_factory):
    """40 train rows (30 fit + 10 validation at validation_fraction=0.25), 12 test rows."""
    train, test = make_rows(40, seed=1), make_rows(12, seed=2)
    path = write_dataset(tmp_path_factory.mktemp("random"), train, test)
    return path, train, test, run_baselines(path, validation_fraction=0.25)


def test_rows_are_cut_as_widedeep_train_cuts_them(random_dataset):
    _, train, test, result = random_dataset
    assert result["rows"] == {"fit": 30, "validation": 10, "test": 12}
    assert result["fit_ctr"] == pytest.approx(train["label"][:30].mean())
    assert set(result["baselines"]) == {
        "constant",
        "popularity",
        "logistic_regression",
        "lr_history",
    }


def test_constant_logloss_equals_hand_value(random_dataset):
    _, train, test, result = random_dataset
    p = train["label"][:30].sum() / 30
    constant = result["baselines"]["constant"]
    assert constant["hyperparameters"]["probability"] == pytest.approx(p)
    assert constant["test"]["logloss"] == pytest.approx(hand_logloss(test["label"], p), rel=1e-9)
    assert constant["validation"]["logloss"] == pytest.approx(
        hand_logloss(train["label"][30:], p), rel=1e-9
    )
    assert constant["test"]["auc"] == 0.5
    assert constant["test"]["mean_prediction"] == pytest.approx(p)


def test_popularity_scores_hand_example():
    # Item 7: 1 click in 2 impressions; item 8: 1 in 1; item 9 never seen.
    scores = popularity_scores(
        np.array([7, 7, 8]),
        np.array([1, 0, 1]),
        np.array([7, 8, 9, 7]),
        prior=0.5,
        prior_strength=2.0,
    )
    np.testing.assert_allclose(scores, [(1 + 1) / (2 + 2), (1 + 1) / (1 + 2), 0.5, 0.5])
    strings = popularity_scores(
        np.array([b"a", b"b", b"a"], dtype=object),
        np.array([1, 0, 1]),
        np.array([b"a", b"c"], dtype=object),
        prior=0.25,
        prior_strength=1.0,
    )
    np.testing.assert_allclose(strings, [(2 + 0.25) / 3, 0.25])


def test_popularity_matches_hand_smoothed_ctr(random_dataset):
    _, train, test, result = random_dataset
    fit_items, fit_y = train["item_id"][:30], train["label"][:30]
    ctr = fit_y.mean()

    def hand_scores(items, a):
        out = []
        for i in items:
            n = int(np.sum(fit_items == i))
            c = int(np.sum(fit_y[fit_items == i]))
            out.append((c + a * ctr) / (n + a) if n else ctr)
        return np.array(out)

    grid = (1.0, 3.0, 10.0, 30.0, 100.0)
    validation = {
        a: hand_logloss(train["label"][30:], hand_scores(train["item_id"][30:], a)) for a in grid
    }
    best = min(grid, key=validation.get)
    popularity = result["baselines"]["popularity"]
    assert popularity["item_feature"] == "item_id"
    assert popularity["hyperparameters"]["prior_strength"] == best
    for entry in popularity["grid"]:
        assert entry["validation_logloss"] == pytest.approx(validation[entry["prior_strength"]])
    expected = hand_logloss(test["label"], hand_scores(test["item_id"], best))
    assert popularity["test"]["logloss"] == pytest.approx(expected, rel=1e-9)


def test_history_statistics_hand_values():
    schema = make_schema()
    columns = {
        # row 0: 2 clicks, 1 unclick, 0 dislikes; row 1: empty history; row 2: full windows
        "click_item_id": np.array([[4, 1, -1], [-1, -1, -1], [1, 2, 3]]),
        "unclick_item_id": np.array([[5, -1, -1], [-1, -1, -1], [0, 0, 0]]),
        "dislike_item_id": np.array([[-1, -1, -1], [-1, -1, -1], [2, 2, 2]]),
    }
    stats = history_statistics(columns, schema, prior=0.4)
    assert list(stats) == [
        "history_ctr",
        "log1p_click_length",
        "log1p_unclick_length",
        "log1p_dislike_length",
    ]
    np.testing.assert_allclose(stats["history_ctr"], [2.4 / 4, 0.4 / 1, 3.4 / 10])
    np.testing.assert_allclose(stats["log1p_click_length"], [math.log(3), 0.0, math.log(4)])
    np.testing.assert_allclose(stats["log1p_unclick_length"], [math.log(2), 0.0, math.log(4)])
    np.testing.assert_allclose(stats["log1p_dislike_length"], [0.0, 0.0, math.log(4)])


def test_history_statistics_from_records_are_windowed(tmp_path):
    # Written sequences longer than max_length are read back truncated to the window.
    train = make_rows(8, seed=3)
    train["click_item_id"] = [np.array([1, 2, 3, 4, 5])] + [np.array([0])] * 7
    train["unclick_item_id"] = [np.array([], dtype=np.int64)] * 8
    train["dislike_item_id"] = [np.array([2])] + [np.array([], dtype=np.int64)] * 7
    path = write_dataset(tmp_path, train, make_rows(4, seed=4))
    names = [f"{s}_item_id" for s in SEQUENCES]
    stats = history_statistics(read_columns(path, "train", names), make_schema(), prior=0.5)
    assert stats["history_ctr"][0] == pytest.approx((3 + 0.5) / (3 + 0 + 1 + 1))
    assert stats["history_ctr"][1] == pytest.approx((1 + 0.5) / 2)
    assert stats["log1p_click_length"][0] == pytest.approx(math.log1p(L))


def test_history_statistics_needs_sequences():
    with pytest.raises(ValueError, match="no sequence"):
        history_statistics({}, make_schema(sequences=False), prior=0.5)


def test_lr_learns_a_deterministic_function_of_the_item(tmp_path):
    label_of_item = np.array([1, 0, 0, 1, 0, 1])
    path = write_dataset(
        tmp_path,
        make_rows(200, seed=5, label_of_item=label_of_item),
        make_rows(60, seed=6, label_of_item=label_of_item),
    )
    result = run_baselines(path, validation_fraction=0.2)
    for name in ("logistic_regression", "lr_history"):
        lr = result["baselines"][name]
        assert lr["test"]["auc"] > 0.9, name
        assert lr["validation"]["auc"] > 0.9, name
        assert lr["test"]["logloss"] < result["baselines"]["constant"]["test"]["logloss"]
        assert lr["converged"]
        assert lr["hyperparameters"]["C"] in [g["C"] for g in lr["grid"]]
        chosen = min(lr["grid"], key=lambda g: g["validation_logloss"])
        assert lr["hyperparameters"]["C"] == chosen["C"]
    lr = result["baselines"]["logistic_regression"]
    assert lr["features"] == ["user_id", "item_id", "city", "price"]
    assert lr["bucketised_numeric"] == ["price"]
    assert lr["ignored_numeric"] == ["age"]
    assert result["baselines"]["lr_history"]["history_features"][0] == "history_ctr"


def test_features_override(random_dataset):
    path, train, _, _ = random_dataset
    result = run_baselines(path, validation_fraction=0.25, features=["item_id"], c_grid=(1.0,))
    lr = result["baselines"]["logistic_regression"]
    assert lr["features"] == ["item_id"]
    assert lr["one_hot_columns"] == len(np.unique(train["item_id"][:30]))
    assert [g["C"] for g in lr["grid"]] == [1.0]


def test_unknown_feature_is_named(random_dataset):
    path = random_dataset[0]
    with pytest.raises(ValueError, match="no_such_feature"):
        run_baselines(path, validation_fraction=0.25, features=["item_id", "no_such_feature"])
    with pytest.raises(ValueError, match="age"):
        run_baselines(path, validation_fraction=0.25, features=["age"])


def test_no_validation_slice_is_an_error(random_dataset):
    with pytest.raises(ValueError, match="no validation slice"):
        run_baselines(random_dataset[0], validation_fraction=0.0)


def test_schema_without_sequences_skips_lr_history(tmp_path):
    schema = make_schema(sequences=False)
    path = write_dataset(tmp_path, make_rows(40, seed=7), make_rows(10, seed=8), schema)
    result = run_baselines(path, validation_fraction=0.25, c_grid=(1.0,))
    assert "no sequence" in result["baselines"]["lr_history"]["skipped"]
    assert "test" in result["baselines"]["logistic_regression"]
