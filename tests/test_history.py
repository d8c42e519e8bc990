"""`HistoryStatistics`: the counts of the feedback sequences, and DFN's use of them."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from widedeep.layers.history import CandidateHistory, HistoryStatistics
from widedeep.models.dfn import build_dfn


def test_statistics_match_hand_counts():
    click = np.array([[True, True, False], [False, False, False]])
    unclick = np.array([[True, False], [True, True]])
    dislike = np.array([[False, False, False, False], [True, False, False, False]])
    out = np.asarray(HistoryStatistics()([click, unclick, dislike]))
    # Row 0: 2 clicks, 1 unclick, 0 dislikes; row 1: 0, 2, 1.
    expected = np.array(
        [
            [np.log(3.0), np.log(2.0), 0.0, 2.0 / 4.0],
            [0.0, np.log(3.0), np.log(2.0), 0.0],
        ]
    )
    np.testing.assert_allclose(out, expected, rtol=1e-6)


def test_an_empty_history_is_all_zeros_not_nan():
    empty = np.zeros((1, 5), dtype=bool)
    np.testing.assert_array_equal(np.asarray(HistoryStatistics()([empty, empty, empty])), [[0] * 4])


def test_needs_three_masks():
    with pytest.raises(ValueError, match="click, unclick and dislike"):
        HistoryStatistics()([np.zeros((1, 2), dtype=bool)] * 2)


def test_dfn_feeds_the_statistics_to_its_deep_part_and_the_switch_removes_them(
    tiny_schema, tiny_batch
):
    x, _ = tiny_batch
    small = {"embedding_dim": 4, "hidden_units": (8,), "model_dim": 8}
    with_stats = build_dfn(tiny_schema, use_history_statistics=True, **small)
    without = build_dfn(tiny_schema, **small)  # off by default
    assert "history_statistics" in [layer.name for layer in with_stats.layers]
    assert "history_statistics" not in [layer.name for layer in without.layers]
    # Four more inputs to the first deep layer: 4 x 8 more kernel weights.
    assert with_stats.count_params() - without.count_params() == 4 * 8
    # The layer sees the click, unclick and dislike masks of the whole histories, in that
    # order, also when the feedback module keeps only the most recent positions.
    counts = [(x[f"{s}_item_id"] >= 0).sum(1) for s in ("click", "unclick", "dislike")]
    assert len({tuple(c) for c in counts}) == 3 and max(c.max() for c in counts) > 2
    expected = np.stack([np.log1p(c) for c in counts] + [counts[0] / (sum(counts) + 1.0)], 1)
    truncated = build_dfn(tiny_schema, use_history_statistics=True, sequence_length=2, **small)
    for model in (with_stats, truncated):
        stats = keras.Model(model.inputs, model.get_layer("history_statistics").output)
        np.testing.assert_allclose(np.asarray(stats(x)), expected, rtol=1e-6)


def test_candidate_history_is_the_share_of_each_sequence_matching_the_candidate():
    target = [np.array([7, 5]), np.array([1, 2])]  # two rows, two item features
    clicks = [np.array([[7, 3, 7], [5, 5, 0]]), np.array([[1, 1, 9], [2, 4, 2]])]
    unclicks = [np.array([[7, 7]]).repeat(2, 0), np.array([[1, 2]]).repeat(2, 0)]
    masks = [np.array([[True, True, False], [True, True, True]]), np.array([[False, False]] * 2)]
    out = np.asarray(CandidateHistory([-1, -1])([target, [clicks, unclicks], masks]))
    # Row 0 clicks: 2 valid items (7, 3 / 1, 1): one id match, two feature-2 matches, / (2 + 1).
    # Row 1 clicks: 3 valid (5, 5, 0 / 2, 4, 2): two and two matches, / 4. Unclicks: all padding.
    np.testing.assert_allclose(out, [[1 / 3, 2 / 3, 0.0, 0.0], [2 / 4, 2 / 4, 0.0, 0.0]], rtol=1e-6)


def test_dfn_candidate_history_reads_the_target_and_the_whole_histories(tiny_schema, tiny_batch):
    x, _ = tiny_batch
    model = build_dfn(
        tiny_schema,
        embedding_dim=4,
        hidden_units=(8,),
        model_dim=8,
        sequence_length=2,
        use_candidate_history=True,
    )
    features = tiny_schema.target_item_features
    expected = []
    for s in ("click", "unclick", "dislike"):
        valid = x[f"{s}_{features[0]}"] >= 0
        for f in features:
            target = np.asarray(x[f]).reshape(-1, 1)
            same = (x[f"{s}_{f}"] == target) & valid & (target != -1)
            expected.append(same.sum(1) / (valid.sum(1) + 1.0))
    expected = np.stack(expected, 1)
    assert expected.any()
    shares = keras.Model(model.inputs, model.get_layer("candidate_history").output)
    np.testing.assert_allclose(np.asarray(shares(x)), expected, rtol=1e-6)


def test_candidate_history_a_missing_candidate_value_matches_nothing():
    masks = [np.array([[True, True]])]
    shares = CandidateHistory([-1])([[np.array([-1])], [[np.array([[-1, -1]])]], masks])
    np.testing.assert_array_equal(np.asarray(shares), [[0.0]])
