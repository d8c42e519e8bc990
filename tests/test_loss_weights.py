"""Feedback loss weights: normalised to mean 1, calibrated afterwards, and divergence caught."""

from __future__ import annotations

import json

import keras
import numpy as np
import pytest

from widedeep.data.carve import validation_carve
from widedeep.data.pipeline import make_dataset
from widedeep.data.reader import load_dataset_dir, read_columns
from widedeep.data.simulator import SimulatorConfig, simulate_dataset
from widedeep.layers.calibration import LogitOffset, fit_logit_offset
from widedeep.optimizers import OptimizerConfig
from widedeep.training import (
    DEFAULT_FEEDBACK_WEIGHTS,
    PAPER_FEEDBACK_WEIGHTS,
    TrainConfig,
    TrainingDivergedError,
    normalize_feedback_weights,
    train,
)


def test_normalized_weights_have_mean_one_and_keep_their_ratios():
    counts = np.array([50, 30, 20])
    weights = normalize_feedback_weights((1.0, 1.0, 10.0), counts)
    # By hand: sum n_t w_t = 50 + 30 + 200 = 280 over 100 rows, so the scale is 100 / 280.
    assert weights == pytest.approx((100 / 280, 100 / 280, 1000 / 280))
    assert np.dot(counts, weights) / counts.sum() == pytest.approx(1.0)
    assert weights[2] / weights[0] == pytest.approx(10.0)


def test_uniform_weights_stay_one_and_a_rare_type_barely_moves_them():
    assert normalize_feedback_weights((1.0, 1.0, 1.0), [7, 3, 0]) == pytest.approx((1, 1, 1))
    # 65 dislikes in 94,784 rows (the KuaiRand dev log): the scale is 94784 / (94784 + 9 * 65).
    scale = 94784 / (94784 + 9 * 65)
    assert normalize_feedback_weights((1.0, 1.0, 10.0), [60000, 34719, 65]) == pytest.approx(
        (scale, scale, 10 * scale)
    )


def test_normalize_rejects_counts_of_the_wrong_length():
    with pytest.raises(ValueError, match="one number per feedback type"):
        normalize_feedback_weights((1.0, 1.0, 10.0), [1, 2])


def test_logit_offset_matches_the_closed_form_for_a_constant_prediction():
    # Every prediction 0.5 and a click rate of 0.2: the best offset is logit(0.2) - logit(0.5).
    labels = np.array([1, 0, 0, 0, 0] * 20)
    offset = fit_logit_offset(np.full(100, 0.5), labels)
    assert offset == pytest.approx(np.log(0.2 / 0.8), abs=1e-9)


def test_logit_offset_makes_the_mean_prediction_equal_the_click_rate():
    rng = np.random.default_rng(0)
    p = rng.uniform(0.05, 0.95, 5000)
    labels = (rng.uniform(size=5000) < 0.5 * p).astype(int)  # predictions biased upwards
    offset = fit_logit_offset(p, labels)
    corrected = 1 / (1 + np.exp(-(np.log(p / (1 - p)) + offset)))
    # The first-order condition of the log loss in the offset: mean(q) = mean(y).
    assert corrected.mean() == pytest.approx(labels.mean(), abs=1e-9)

    def logloss(q):
        return -np.mean(labels * np.log(q) + (1 - labels) * np.log(1 - q))

    for nudge in (-0.05, 0.05):
        other = 1 / (1 + np.exp(-(np.log(p / (1 - p)) + offset + nudge)))
        assert logloss(corrected) < logloss(other)
    assert fit_logit_offset(p, np.ones(5000)) == 0.0  # no finite optimum: no correction


def test_logit_offset_layer_adds_its_offset():
    layer = LogitOffset()
    layer.build((None, 1))
    layer.offset.assign(-0.25)
    out = np.asarray(layer(np.array([[0.0], [1.0]], dtype="float32")))
    np.testing.assert_allclose(out, [[-0.25], [0.75]])
    assert layer.trainable_weights == []


@pytest.fixture(scope="module")
def dislike_heavy_dir(tmp_path_factory):
    """A tiny world where about a third of the non-clicks are dislikes."""
    out = str(tmp_path_factory.mktemp("dislikes") / "data")
    config = SimulatorConfig(
        seed=5,
        num_users=80,
        num_items=60,
        num_impressions=4000,
        users_per_round=20,
        max_length=5,
        bias=-1.0,
        dislike_rate=0.35,
    )
    simulate_dataset(out, config)
    return out


@pytest.mark.parametrize("paper_weights", [False, True], ids=["defaults", "paper_1_1_10"])
def test_dislike_heavy_log_trains_dfn_finitely_and_calibrated(
    dislike_heavy_dir, tmp_path, paper_weights
):
    schema, meta = load_dataset_dir(dislike_heavy_dir)
    feedback = read_columns(dislike_heavy_dir, "train", [schema.feedback])[schema.feedback]
    assert np.mean(feedback == 2) > 0.15  # the world is dislike-heavy
    config = TrainConfig(
        data=dislike_heavy_dir,
        out=str(tmp_path / "run"),
        model="dfn",
        epochs=2,
        logdir=None,
        verbose=0,
        hyperparameters={"hidden_units": [16], "model_dim": 8},
        feedback_weights=PAPER_FEEDBACK_WEIGHTS if paper_weights else None,
    )
    metrics = train(config)
    recorded = json.loads((tmp_path / "run" / "config.json").read_text())
    fit_rows = int(round(len(feedback) * (1 - config.validation_fraction)))
    counts = np.bincount(feedback[:fit_rows], minlength=3)
    weights = np.array(recorded["normalized_feedback_weights"])
    assert np.dot(counts, weights) / counts.sum() == pytest.approx(1.0, rel=1e-6)
    assert np.isfinite(metrics["logloss"])
    if paper_weights:
        assert recorded["feedback_weights"] == [1.0, 1.0, 10.0]
        assert weights[2] / weights[0] == pytest.approx(10.0)
        # The 10x weight on dislikes (label 0) pushes predictions down; the offset pushes back.
        assert metrics["calibration_offset"] > 0
    else:
        assert recorded["feedback_weights"] == list(DEFAULT_FEEDBACK_WEIGHTS["dfn"])
        assert list(weights) == [1.0, 1.0, 1.0]
    # Either way one logit offset is fitted on the validation rows, so there the saved model's
    # mean prediction equals their click rate (the log loss's first-order condition).
    model = keras.models.load_model(tmp_path / "run" / "model.keras")
    rows = validation_carve(dislike_heavy_dir, config.validation_fraction).validation_rows
    data = make_dataset(dislike_heavy_dir, "train", schema, batch_size=4096, rows=rows)
    predicted = model.predict(data.map(lambda x, *_: x), verbose=0).reshape(-1)
    labels = read_columns(dislike_heavy_dir, "train", [schema.label])[schema.label]
    assert predicted.mean() == pytest.approx(labels[rows[0] : rows[1]].mean(), abs=1e-3)
    test_ctr = metrics["ctr"]
    constant = -(test_ctr * np.log(test_ctr) + (1 - test_ctr) * np.log(1 - test_ctr))
    assert metrics["logloss"] < constant


def test_a_diverging_run_stops_with_a_message_naming_epoch_and_step(dislike_heavy_dir, tmp_path):
    config = TrainConfig(
        data=dislike_heavy_dir,
        out=str(tmp_path / "run"),
        model="wide_deep",
        epochs=3,
        logdir=None,
        verbose=0,
        # Steps of ~1e38 overflow float32 (max 3.4e38) as soon as two weights add up, whatever
        # the dropout masks draw: at 1e30 the run's fate hung on which units were dropped.
        optimizer=OptimizerConfig(deep_learning_rate=1e38, wide_learning_rate=1e38),
    )
    with pytest.raises(TrainingDivergedError, match=r"epoch 1, step \d+: lower the learning"):
        train(config)
    # No test metrics: metrics.json records the divergence instead (see tests/test_checkpointing.py).
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert "auc" not in metrics and metrics["diverged"]["epoch"] == 1


def test_logit_offset_converges_on_saturated_predictions():
    # Nine predictions at 1 - 1e-6 (second derivative ~1e-6 at b = 0: a Newton step from 0
    # lands near -1e6 and never comes back) and one at 0.5, with one click in ten.
    p = np.array([1 - 1e-6] * 9 + [0.5])
    labels = np.array([0] * 9 + [1])
    offset = fit_logit_offset(p, labels)
    corrected = 1 / (1 + np.exp(-(np.log(p / (1 - p)) + offset)))
    assert np.isfinite(offset) and -40 < offset < 0
    assert corrected.mean() == pytest.approx(0.1, abs=1e-9)


def test_logit_offset_rejects_labels_other_than_0_1_and_non_finite_probabilities():
    with pytest.raises(ValueError, match=r"labels must be 0 or 1. Received: \[0.0, 2.0\]"):
        fit_logit_offset(np.full(4, 0.5), np.array([0, 2, 0, 2]))
    with pytest.raises(ValueError, match="probabilities must be finite"):
        fit_logit_offset(np.array([0.5, np.nan]), np.array([0, 1]))
