"""`HistoryStatistics`: the counts of the feedback sequences, and DFN's use of them."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from widedeep.layers.history import HistoryStatistics
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
    with_stats = build_dfn(tiny_schema, embedding_dim=4, hidden_units=(8,), model_dim=8)
    without = build_dfn(
        tiny_schema, embedding_dim=4, hidden_units=(8,), model_dim=8, use_history_statistics=False
    )
    assert "history_statistics" in [layer.name for layer in with_stats.layers]
    assert "history_statistics" not in [layer.name for layer in without.layers]
    # Four more inputs to the first deep layer: 4 x 8 more kernel weights.
    assert with_stats.count_params() - without.count_params() == 4 * 8
    # The layer sees the click, unclick and dislike masks of the whole histories, in that
    # order, also when the feedback module keeps only the most recent positions.
    counts = [(x[f"{s}_item_id"] >= 0).sum(1) for s in ("click", "unclick", "dislike")]
    assert len({tuple(c) for c in counts}) == 3 and max(c.max() for c in counts) > 2
    expected = np.stack([np.log1p(c) for c in counts] + [counts[0] / (sum(counts) + 1.0)], 1)
    truncated = build_dfn(
        tiny_schema, embedding_dim=4, hidden_units=(8,), model_dim=8, sequence_length=2
    )
    for model in (with_stats, truncated):
        stats = keras.Model(model.inputs, model.get_layer("history_statistics").output)
        np.testing.assert_allclose(np.asarray(stats(x)), expected, rtol=1e-6)
