"""Tests of the planted-truth simulator: determinism, causality, effects, oracle metrics, schema."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from tests.conftest import TINY_WORLD
from widedeep.data.pipeline import make_dataset
from widedeep.data.reader import load_dataset_dir, read_columns
from widedeep.data.simulator import (
    SimulatorConfig,
    build_schema,
    click_logit,
    first_test_round,
    simulate,
    simulate_dataset,
)
from widedeep.metrics import auc
from widedeep.schema import FEEDBACK_SEQUENCES, FEEDBACK_TYPES

TINY = TINY_WORLD


@pytest.fixture(scope="module")
def tiny_columns() -> dict[str, np.ndarray]:
    return simulate(TINY)


def test_same_seed_same_columns_other_seed_differs(tiny_columns):
    again = simulate(TINY)
    assert set(again) == set(tiny_columns)
    for name, values in tiny_columns.items():
        np.testing.assert_array_equal(again[name], values, err_msg=name)
    other = simulate(dataclasses.replace(TINY, seed=8))
    assert not np.array_equal(other["item_id"], tiny_columns["item_id"])


def test_sequences_are_causal_most_recent_first_and_exclude_the_impression(tiny_columns):
    c = tiny_columns
    n, length = c["label"].size, TINY.max_length
    assert n == TINY.num_impressions
    assert np.all(np.diff(c["round"]) >= 0)
    histories: dict[tuple[int, str], list[int]] = {}
    last_round: dict[int, int] = {}
    for row in range(n):
        user, rnd = int(c["user_id"][row]), int(c["round"][row])
        assert last_round.get(user, -1) < rnd, "a user appears twice in a round"
        last_round[user] = rnd
        for name in FEEDBACK_SEQUENCES:
            history = histories.get((user, name), [])
            expected = (history + [-1] * length)[:length]
            assert c[f"{name}_item_id"][row].tolist() == expected, (row, name)
            categories = [-1 if i < 0 else None for i in expected]
            got = c[f"{name}_item_category"][row].tolist()
            assert [g if e is None else e for g, e in zip(got, categories, strict=True)] == got
        # The impression joins its user's history only after its own row.
        name = FEEDBACK_TYPES[int(c["feedback"][row])]
        histories[(user, name)] = [int(c["item_id"][row]), *histories.get((user, name), [])]
    # Feedback codes agree with labels and every feedback type occurs.
    np.testing.assert_array_equal(
        c["label"], (c["feedback"] == FEEDBACK_TYPES.index("click")).astype(int)
    )
    assert set(np.unique(c["feedback"])) == {0, 1, 2}
    # Category sequences are the categories of the item sequences.
    item_category = dict(zip(c["item_id"].tolist(), c["item_category"].tolist(), strict=True))
    for name in FEEDBACK_SEQUENCES:
        ids, cats = c[f"{name}_item_id"], c[f"{name}_item_category"]
        for i, k in zip(ids[ids >= 0].tolist(), cats[ids >= 0].tolist(), strict=True):
            assert item_category.get(i, k) == k


def test_click_logit_feedback_effects_have_the_documented_sign():
    config = SimulatorConfig(
        click_feedback_effect=2.0, unclick_feedback_effect=0.5, dislike_feedback_effect=3.0
    )
    # Items 0 and 1 are identical in latent space, item 2 is orthogonal to them.
    similarity = np.array([[1.0, 1.0, 0.0], [1.0, 1.0, 0.0], [0.0, 0.0, 1.0]], dtype=np.float32)
    empty = np.full((1, 4), -1)
    similar = np.array([[1, -1, -1, -1]])
    unrelated = np.array([[2, -1, -1, -1]])
    target = np.array([0])

    def logit(click=empty, unclick=empty, dislike=empty) -> float:
        value, _ = click_logit(
            config,
            static_logit=np.zeros(1),
            similarity=similarity,
            target=target,
            click_history=click,
            unclick_history=unclick,
            dislike_history=dislike,
        )
        return float(value[0])

    assert logit() == 0.0
    assert logit(click=similar) == pytest.approx(2.0)
    assert logit(click=unrelated) == pytest.approx(0.0)
    assert logit(unclick=similar) == pytest.approx(-0.5)
    assert logit(dislike=similar) == pytest.approx(-3.0)
    # Recency: the most recent item weighs more (decay per position).
    recent_first = np.array([[1, 2, -1, -1]])
    recent_last = np.array([[2, 1, -1, -1]])
    assert logit(click=recent_first) > logit(click=recent_last) > 0


def test_targets_similar_to_recent_clicks_are_clicked_more(tiny_columns):
    config = dataclasses.replace(TINY, num_impressions=6000)
    c = simulate(config)
    same_category = (c["click_item_category"][:, 0] == c["item_category"]) & (
        c["click_item_id"][:, 0] >= 0
    )
    other_category = (c["click_item_category"][:, 0] != c["item_category"]) & (
        c["click_item_id"][:, 0] >= 0
    )
    assert (
        c["true_probability"][same_category].mean()
        > c["true_probability"][other_category].mean() + 0.05
    )


def brute_force_auc(labels: np.ndarray, scores: np.ndarray) -> float:
    pos, neg = scores[labels == 1].astype(np.float64), scores[labels == 0].astype(np.float64)
    greater = (pos[:, None] > neg[None, :]).sum()
    ties = (pos[:, None] == neg[None, :]).sum()
    return float((greater + 0.5 * ties) / (pos.size * neg.size))


def test_auc_handles_ties():
    labels = np.array([0, 1, 1, 0, 1, 0])
    scores = np.array([0.1, 0.5, 0.5, 0.5, 0.9, 0.2])
    assert auc(labels, scores) == pytest.approx(brute_force_auc(labels, scores))


def test_dataset_oracle_metrics_split_and_schema(tmp_path, tiny_columns):
    meta = simulate_dataset(str(tmp_path), TINY, num_shards={"train": 3, "test": 2})
    schema, on_disk = load_dataset_dir(tmp_path)
    assert on_disk == meta
    assert meta["settings"] == dataclasses.asdict(TINY)
    test_rows = TINY.num_impressions - first_test_round(TINY) * TINY.users_per_round
    assert meta["splits"]["test"]["examples"] == test_rows == 300
    assert meta["splits"]["train"]["examples"] == 1200

    # The oracle AUC equals one computed independently from the test shards.
    test = read_columns(tmp_path, "test", ["label", "true_probability", "round"])
    assert meta["oracle_auc"] == pytest.approx(
        brute_force_auc(test["label"], test["true_probability"]), abs=1e-12
    )
    train = read_columns(tmp_path, "train", ["label", "true_probability", "round", "item_duration"])
    assert meta["train_oracle_auc"] == pytest.approx(
        brute_force_auc(train["label"], train["true_probability"]), abs=1e-12
    )
    assert train["round"].max() < test["round"].min()  # split by time
    assert meta["base_click_rate"] == pytest.approx(
        (train["label"].sum() + test["label"].sum()) / TINY.num_impressions
    )
    assert sum(meta["feedback_counts"].values()) == TINY.num_impressions

    # The records hold what simulate() returns, in the same order.
    np.testing.assert_array_equal(
        train["true_probability"], tiny_columns["true_probability"][:1200]
    )

    # Numeric statistics come from the train split only.
    duration = schema.feature("item_duration")
    assert duration.mean == pytest.approx(
        train["item_duration"].astype(np.float64).mean(), rel=1e-6
    )
    all_mean = tiny_columns["item_duration"].astype(np.float64).mean()
    assert duration.mean != pytest.approx(all_mean, rel=1e-9)
    assert len(duration.boundaries) <= 9
    assert schema == build_schema(TINY, {"item_duration": train["item_duration"]})
    assert [s.name for s in schema.sequences] == list(FEEDBACK_SEQUENCES)

    # The directory feeds the tf.data pipeline.
    features, label, weight = next(
        iter(make_dataset(tmp_path, "train", batch_size=16, feedback_weights=(1, 1, 10)))
    )
    assert features["click_item_id"].shape == (16, TINY.max_length)
    assert set(features) == set(schema.input_signature())


def test_same_seed_gives_byte_identical_records(tmp_path):
    config = dataclasses.replace(TINY, num_impressions=300)
    simulate_dataset(str(tmp_path / "a"), config)
    simulate_dataset(str(tmp_path / "b"), config)
    for rel in load_dataset_dir(tmp_path / "a")[1]["splits"]["train"]["files"]:
        assert (tmp_path / "a" / rel).read_bytes() == (tmp_path / "b" / rel).read_bytes()


def test_config_validation():
    with pytest.raises(ValueError, match="users_per_round"):
        SimulatorConfig(num_users=10, users_per_round=20)
    with pytest.raises(ValueError, match="test_fraction"):
        SimulatorConfig(test_fraction=1.0)


def test_oracle_decomposition_without_individual_taste_or_feedback(tmp_path):
    # With no individual taste, the attribute-only logit is the static logit; with no
    # feedback effects, the feedback term adds nothing: the four oracles coincide.
    config = dataclasses.replace(
        TINY,
        user_noise=0.0,
        click_feedback_effect=0.0,
        unclick_feedback_effect=0.0,
        dislike_feedback_effect=0.0,
    )
    test = simulate_dataset(str(tmp_path / "flat"), config)["oracle"]["test"]
    assert test["oracle_auc_attributes_only"] == test["oracle_auc_without_feedback"]
    assert test["oracle_auc_attributes_and_feedback"] == test["oracle_auc_attributes_only"]
    assert test["oracle_auc"] == pytest.approx(test["oracle_auc_without_feedback"], abs=1e-3)
    # The default world: individual taste and feedback each carry signal of their own.
    full = simulate_dataset(str(tmp_path / "full"), dataclasses.replace(TINY, num_impressions=6000))
    test = full["oracle"]["test"]
    assert test["oracle_auc_attributes_only"] < test["oracle_auc_without_feedback"]
    assert test["oracle_auc_attributes_only"] < test["oracle_auc_attributes_and_feedback"]
    assert test["oracle_auc_attributes_and_feedback"] < test["oracle_auc"]
