"""Warm start across vocabularies: known keys keep their rows and slots, new keys start fresh."""

from __future__ import annotations

import dataclasses
import json
import math

import keras
import numpy as np
import pytest

from tests.conftest import make_batch, make_tiny_schema
from widedeep.checkpointing import global_step
from widedeep.optimizers import OptimizerConfig
from widedeep.schema import Schema
from widedeep.training import TrainConfig, build_model, compile_model
from widedeep.warm_start import WarmStartError, row_keys, warm_start

HP = {"hidden_units": [8], "sequence_pooling": True}


def day_schema(day: int) -> Schema:
    """Day 0 is the tiny schema with an exact cross; day 1 changes every vocabulary."""
    schema = make_tiny_schema()
    schema.crosses = [dataclasses.replace(schema.crosses[0], hash_buckets=64)]  # exact: 4*7 <= 64
    if day == 1:
        f = schema.features
        f["user_id"].vocabulary = list(range(5, 15))  # 0-4 gone, 10-14 new
        f["item_id"].vocabulary = [*range(19, -1, -2), 20, 21]  # odd ids, reordered; 20, 21 new
        f["city"].vocabulary = ["rome", "oslo", "paris"]  # oslo new, order changed
        f["price"].boundaries = [0.0, 1.0, 2.5]  # the last two buckets change
    schema.validate()
    return schema


def model_for(day: int, seed: int, optimizer: OptimizerConfig | None = None):
    model = compile_model(build_model(day_schema(day), "wide_deep", **HP), optimizer)
    model.build_optimizers()
    rng = np.random.default_rng(seed)
    for v in model.weights:
        if "float" in str(v.dtype):
            v.assign(rng.normal(0.0, 0.3, v.shape).astype("float32"))
    for v in [*model.wide_optimizer.variables, *model.deep_optimizer.variables]:
        if "float" in str(v.dtype) and v.name != "learning_rate":  # accumulators stay > 0
            v.assign(rng.uniform(0.1, 0.5, v.shape).astype("float32"))
    model.wide_optimizer.iterations.assign(7)
    model.deep_optimizer.iterations.assign(7)
    return model


def keras_batch(x):
    return {k: (v.astype(object) if v.dtype.kind in "OU" else v) for k, v in x.items()}


def test_row_keys_follow_the_vocabulary():
    model = model_for(1, 0)
    schema = day_schema(1)
    assert row_keys(model, schema, "user_id")[:3] == [("oov", 0), ("value", 5), ("value", 6)]
    assert row_keys(model, schema, "city") == [
        ("oov", 0),
        ("value", "rome"),
        ("value", "oslo"),
        ("value", "paris"),
    ]
    assert row_keys(model, schema, "category")[6] == ("bucket", 6)
    assert row_keys(model, schema, "price")[-1] == ("interval", 2.5, float("inf"))
    cross = row_keys(model, schema, "city_x_category")
    # Mixed radix: index = city * 7 + category; 28 combinations, then unused buckets.
    assert cross[1 * 7 + 3] == (("value", "rome"), ("bucket", 3))
    assert cross[28:] == [None] * (64 - 28)


def test_known_keys_predict_as_before_and_new_keys_start_fresh():
    old = model_for(0, seed=1)
    new = model_for(1, seed=2, optimizer=OptimizerConfig(deep_learning_rate=0.123))
    for optimizer in (new.wide_optimizer, new.deep_optimizer):
        optimizer.iterations.assign(3)  # the new run's own count (the old model's is 7)
    fresh = {v.path: v.numpy().copy() for v in new.weights}
    fresh_slots = [v.numpy().copy() for v in new.wide_optimizer.variables]
    summary = warm_start(new, old, day_schema(1))

    # user 5..9 kept (5 of 11 rows); items: the 10 odd ids and the OOV row.
    assert summary["embedding 'user_id'"] == {"rows": 11, "kept": 6}
    assert summary["embedding 'item_id'"] == {"rows": 13, "kept": 11}

    x, _ = make_batch(64, seed=3)
    rng = np.random.default_rng(4)
    half = np.arange(64) < 32  # rows made of keys both days know; the others as drawn
    x["user_id"] = np.where(half, rng.integers(5, 10, 64), x["user_id"])
    x["item_id"] = np.where(half, x["item_id"] % 20 | 1, x["item_id"])
    x["city"] = np.where(half, rng.choice(np.array(["paris", "rome", ""], object), 64), x["city"])
    x["price"] = np.where(half, np.minimum(x["price"], 0.9), x["price"]).astype("float32")
    for seq in ("click", "unclick", "dislike"):
        items = x[f"{seq}_item_id"]
        x[f"{seq}_item_id"] = np.where(half[:, None] & (items >= 0), items | 1, items)
    known = (
        np.isin(x["user_id"], [5, 6, 7, 8, 9])
        & np.isin(x["item_id"], list(range(1, 20, 2)))
        & np.isin(x["city"], ["paris", "rome", ""])
        & (x["price"] < 1.0)
    )
    for seq in ("click", "unclick", "dislike"):
        items = x[f"{seq}_item_id"]
        known &= np.all((items == -1) | (items % 2 == 1), axis=1)
    assert known[:32].all() and known.sum() < 60
    old_p = old.predict(keras_batch(x), verbose=0)[:, 0]
    new_p = new.predict(keras_batch(x), verbose=0)[:, 0]
    assert np.abs(new_p[known] - old_p[known]).max() < 1e-6
    assert np.abs(new_p[~known] - old_p[~known]).max() > 1e-3

    # A new user's rows (embedding, wide weight, FTRL slots) keep the new model's own
    # values (random here, so that a copy would show); a known user's rows get the old ones.
    schema0, schema1 = day_schema(0), day_schema(1)
    new_row = row_keys(new, schema1, "user_id").index(("value", 12))
    known_row = row_keys(new, schema1, "user_id").index(("value", 7))
    old_row = row_keys(old, schema0, "user_id").index(("value", 7))
    path = "embedding_user_id/embeddings"
    np.testing.assert_array_equal(
        new.get_layer("embedding_user_id").embeddings[new_row], fresh[path][new_row]
    )
    np.testing.assert_array_equal(
        new.get_layer("embedding_user_id").embeddings[known_row],
        old.get_layer("embedding_user_id").embeddings[old_row],
    )
    wide_new, wide_old = new.wide_optimizer, old.wide_optimizer
    checked = []
    for slot_new, slot_old, slot_fresh in zip(wide_new.variables, wide_old.variables, fresh_slots):
        if slot_new.name in (
            "wide_weights_embeddings_accumulator",
            "wide_weights_embeddings_linear",
        ):
            # user_id is the wide table's first segment: row index = lookup index.
            assert slot_new[new_row].numpy() == slot_fresh[new_row]
            assert slot_new[known_row].numpy() == slot_old[old_row].numpy()
            checked.append(slot_new.name)
    assert len(checked) == 2
    # The new run counts its own steps: the old model's 7 are not carried over.
    assert int(new.wide_optimizer.iterations) == int(new.deep_optimizer.iterations) == 3
    assert float(new.deep_optimizer.learning_rate) == pytest.approx(0.123)


def test_models_of_another_shape_are_refused():
    old = model_for(0, seed=1)
    other = compile_model(
        build_model(day_schema(1), "wide_deep", hidden_units=[16], sequence_pooling=True)
    )
    with pytest.raises(WarmStartError, match="shape .* in the old model .* differ in architecture"):
        warm_start(other, old, day_schema(1))
    with pytest.raises(WarmStartError, match="no such model file"):
        warm_start(other, "/nonexistent/model.keras", day_schema(1))


def test_train_warm_starts_from_yesterdays_model(tmp_path, capsys):
    from widedeep.cli import main
    from widedeep.data.reader import load_dataset_dir
    from widedeep.data.simulator import SimulatorConfig, simulate_dataset

    days = []
    for day, users in enumerate((40, 50)):
        config = SimulatorConfig(
            seed=day,
            num_users=users,
            num_items=30,
            num_impressions=1000,
            users_per_round=10,
            max_length=4,
        )
        simulate_dataset(str(tmp_path / f"day{day}"), config, num_shards={"train": 1, "test": 1})
        days.append(str(tmp_path / f"day{day}"))
    schema0, _ = load_dataset_dir(days[0])
    yesterday = compile_model(build_model(schema0, "wide_deep", hidden_units=[8]))
    yesterday.build_optimizers()
    for optimizer in (yesterday.wide_optimizer, yesterday.deep_optimizer):
        optimizer.iterations.assign(10_000)  # a model trained for many steps
    yesterday.save(tmp_path / "model.keras")

    run = tmp_path / "run"
    argv = ["train", "--data", days[1], "--out", str(run), "--epochs", "1", "--logdir", ""]
    argv += ["--hidden-units", "8", "--early-stopping", "0"]
    assert main([*argv, "--warm-start", str(tmp_path / "model.keras")]) == 0
    metrics = json.loads((run / "metrics.json").read_text())
    # Users 0-39 (and the OOV row) keep yesterday's rows; 40-49 start fresh.
    assert metrics["warm_start"]["tables"]["embedding 'user_id'"] == {"rows": 51, "kept": 41}
    # The epoch was trained: its steps counted from zero, and the deep weights moved.
    _, meta = load_dataset_dir(days[1])
    fit_rows = meta["splits"]["train"]["examples"] - metrics["validation"]["rows"]
    steps = math.ceil(fit_rows / TrainConfig.batch_size)
    today = keras.models.load_model(run / "model.keras")
    assert global_step(today) == steps > 0
    moved = [
        not np.array_equal(a, b)
        for a, b in zip(
            today.get_layer("deep").get_weights(), yesterday.get_layer("deep").get_weights()
        )
    ]
    assert moved and all(moved)
    capsys.readouterr()
    assert main([*argv, "--warm-start", str(tmp_path / "none.keras")]) == 2
    assert "--warm-start: no such model file" in capsys.readouterr().err
