"""Tests of the learnable-ceiling reference model `widedeep.learnable_ceiling`."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from tests.test_simulator import TINY
from widedeep.data.simulator import first_test_round, simulate
from widedeep.data.simulator.world import make_world
from widedeep.learnable_ceiling import (
    FEATURES,
    WellSpecifiedModel,
    fit_well_specified,
    ground_truth_weights,
)
from widedeep.metrics import auc

# The simulator tests' tiny world, with more impressions so that histories fill up.
SMALL = dataclasses.replace(TINY, num_impressions=3000)


@pytest.fixture(scope="module")
def columns() -> dict[str, np.ndarray]:
    return simulate(SMALL)


def test_ground_truth_weights_reproduce_true_probability(columns):
    # The model is well specified: with the world's own numbers it is the simulator.
    model = WellSpecifiedModel(SMALL)
    features = {k: columns[k] for k in FEATURES}
    model(features)
    ground_truth_weights(model, make_world(SMALL, np.random.default_rng(SMALL.seed)))
    logit = np.asarray(model(features), dtype=np.float64)
    # Rows with feedback histories exercise the cosine and position-weight terms.
    assert (columns["click_item_id"][:, 0] >= 0).mean() > 0.3
    assert (columns["dislike_item_id"][:, 0] >= 0).sum() > 10
    np.testing.assert_allclose(1 / (1 + np.exp(-logit)), columns["true_probability"], atol=2e-5)


def test_fit_reports_the_epoch_with_the_best_validation_auc(columns):
    result = fit_well_specified(SMALL, seed=0, epochs=4, patience=1, columns=columns)
    history = result["history"]
    best = max(history, key=lambda h: h["validation_auc"])
    assert result["best_epoch"] == best["epoch"]
    assert result["auc"] == best["test_auc"]
    # patience=1: training stops one epoch after the validation AUC stops improving.
    assert result["epochs_run"] == len(history)
    assert len(history) == 4 or len(history) == best["epoch"] + 1
    test = columns["round"] >= first_test_round(SMALL)
    assert result["oracle_auc"] == auc(columns["label"][test], columns["true_probability"][test])


def test_learning_the_users_only_keeps_every_item_side_number(columns):
    result = fit_well_specified(SMALL, seed=0, epochs=1, learn="users", columns=columns)
    truth = [
        SMALL.click_feedback_effect,
        -SMALL.unclick_feedback_effect,
        -SMALL.dislike_feedback_effect,
    ]
    np.testing.assert_allclose(result["beta"], truth, rtol=1e-6)
    with pytest.raises(ValueError, match="learn must be"):
        fit_well_specified(SMALL, learn="items", columns=columns)
